public import Foundation
public import Hummingbird
import Attestation
import AttestationPolicy
import AttestationResults
import AuditLog
import BinaryFormat
import Crypto
import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
import TDX

/// The request context: Hummingbird's core storage plus the client's address (for the rate limit).
public struct ServiceRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let client: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        client = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    public var maxUploadSize: Int { 256 * 1024 }
}

/// The remote-attestation verification service behind `cmk serve` (docs/api.md): challenges, appraisal into signed
/// EARs, policies and audit per tenant, health and metrics.
public final class VerificationServer: Sendable {
    public let configuration: ServiceConfiguration
    let store: any ServiceStore
    let tenants: TenantRegistry
    let appraiser: EvidenceAppraiser
    let metrics = ServiceMetrics()
    let limiter: RateLimiter
    let challenges: ChallengeIssuer
    let policyCache = Mutex<[String: Policy]>([:])
    let started = ContinuousClock.now

    /// Opens the store (`<state>/serve.sqlite` unless another is given, such as a ``PostgresServiceStore``) and every
    /// tenant's key and audit log.
    public init(configuration: ServiceConfiguration, store: (any ServiceStore)? = nil) throws {
        guard !configuration.tenants.isEmpty else { throw ServiceError("no tenant is configured") }
        self.configuration = configuration
        try FileManager.default.createDirectory(
            at: configuration.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.store = try store ?? SQLiteServiceStore(path: configuration.stateDirectory.appendingPathComponent("serve.sqlite"))
        self.tenants = try TenantRegistry(
            tenants: configuration.tenants, stateDirectory: configuration.stateDirectory, store: self.store,
            earAlgorithm: configuration.earAlgorithm, clock: configuration.clock)
        self.appraiser = EvidenceAppraiser(
            trustAnchors: configuration.trustAnchors, snpCollateral: configuration.snpCollateral.map { SNPCollateralStore(directory: $0) })
        self.limiter = RateLimiter(configuration.rateLimit)
        self.challenges = ChallengeIssuer(store: self.store, lifetime: configuration.nonceLifetime, clock: configuration.clock)
    }

    /// Loads a policy file into `tenant` as a new version, unless that version (or a newer one) is already stored.
    /// Returns false when it was already there.
    @discardableResult
    public func seedPolicy(file: URL, tenant: String, environment: [String: String] = [:]) async throws -> Bool {
        _ = try tenants.resources(tenant)
        let text = try String(contentsOf: file, encoding: .utf8)
        let policy = try PolicyLoader(environment: environment).load(path: file.path)
        if let stored = try await store.policy(tenant: tenant, id: policy.id, version: nil), stored.version >= policy.version {
            return false
        }
        let row = StoredPolicy(
            tenant: tenant, id: policy.id, version: policy.version, digest: policy.digest, yaml: text,
            createdAt: configuration.clock(), baseDirectory: file.deletingLastPathComponent().path)
        do {
            try await store.putPolicy(row)
        } catch let error as StoreError where error.code == .versionConflict {
            // Another replica stored this version (or a newer one) between the read above and the put.
            return false
        }
        policyCache.withLock { $0[Self.cacheKey(row)] = policy }
        try await tenants.resources(tenant).auditLog.append(AuditEntry(
            actor: "cmk serve --policy", kind: .policyChange, tenant: tenant,
            details: ["policy": policy.id, "version": String(policy.version), "digest": policy.digest, "change": "loaded"]))
        return true
    }

    // MARK: Application

    /// The router with every route and middleware.
    public func buildRouter() -> Router<ServiceRequestContext> {
        let router = Router(context: ServiceRequestContext.self)
        router.add(middleware: ObservingMiddleware(server: self))
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: RateLimitMiddleware(server: self))
        addRoutes(to: router)
        return router
    }

    /// The application: HTTP/1.1 on the configured address, the nonce purger beside it; `runService()` on it stops
    /// gracefully on SIGTERM and SIGINT (open requests finish, then the listener closes).
    public func buildApplication(
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        var logger = Logger(label: "cmk.serve")
        logger.logLevel = .info
        return Application(
            router: buildRouter(),
            // The idle timeout is longer than the body timeout: a stalled body must be answered 408 (by `body(_:)`)
            // before the idle handler closes the connection without a word.
            server: .http1(configuration: .init(idleTimeout: .seconds(Int64(max(1, configuration.requestTimeout)) + 5))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "cmk"),
            services: [NoncePurger(store: store, clock: configuration.clock, logger: logger)],
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    static func cacheKey(_ row: StoredPolicy) -> String { "\(row.tenant)\u{0}\(row.id)\u{0}\(row.version)\u{0}\(row.digest)" }

    /// The parsed policy of a stored row, from the cache when it was parsed before.
    func parsed(_ row: StoredPolicy) throws -> Policy {
        let key = Self.cacheKey(row)
        if let cached = policyCache.withLock({ $0[key] }) {
            metrics.cache("policy", hit: true)
            return cached
        }
        metrics.cache("policy", hit: false)
        let policy = try PolicyLoader(environment: [:]).load(
            text: row.yaml, baseDirectory: row.baseDirectory.map { URL(fileURLWithPath: $0) })
        policyCache.withLock { $0[key] = policy }
        return policy
    }
}

/// Issues nonces: 32 random bytes, hex, stored with the tenant and an expiry so any replica can spend each once.
struct ChallengeIssuer: Sendable {
    static let nonceSize = 32
    let store: any ServiceStore
    let lifetime: TimeInterval
    let clock: @Sendable () -> Date

    func issue(
        tenant: String, credential: IssuedCredential? = nil
    ) async throws -> (nonce: String, issuedAt: Date, expiresAt: Date) {
        var generator = SystemRandomNumberGenerator()
        let nonce = Hex.encode((0..<Self.nonceSize).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let now = clock()
        let expires = now.addingTimeInterval(lifetime)
        try await store.issueNonce(nonce, tenant: tenant, issuedAt: now, expiresAt: expires, credential: credential?.encoded)
        return (nonce, now, expires)
    }
}

/// What the service keeps with a nonce it issued with a TPM credential (`POST /v1/challenge` with `tpm`): the EK
/// and the AK Name the credential was made for, and its secret. Stored as three fields, each a u16 big-endian
/// length then the bytes; the store erases it when the nonce is spent, so it serves one attestation at most.
struct IssuedCredential: Sendable, Equatable {
    let endorsementKey: [UInt8]
    let attestationKeyName: [UInt8]
    let secret: [UInt8]

    init(_ challenge: TPMCredentialChallenge) {
        endorsementKey = challenge.endorsementKey
        attestationKeyName = challenge.attestationKeyName
        secret = challenge.secret
    }

    var encoded: [UInt8] {
        [endorsementKey, attestationKeyName, secret].flatMap { field in
            [UInt8(truncatingIfNeeded: field.count >> 8), UInt8(truncatingIfNeeded: field.count)] + field
        }
    }

    /// Nil unless `bytes` is exactly three such fields (what ``encoded`` wrote).
    init?(encoded bytes: [UInt8]) {
        var fields: [[UInt8]] = []
        var index = 0
        while index < bytes.count {
            guard index + 2 <= bytes.count else { return nil }
            let length = Int(bytes[index]) << 8 | Int(bytes[index + 1])
            index += 2
            guard length <= bytes.count - index else { return nil }
            fields.append(Array(bytes[index..<index + length]))
            index += length
        }
        guard fields.count == 3, !fields[2].isEmpty else { return nil }
        endorsementKey = fields[0]
        attestationKeyName = fields[1]
        secret = fields[2]
    }
}

/// Deletes expired nonces once a minute (a spent or expired nonce is refused either way; this keeps the table small).
struct NoncePurger: Service {
    let store: any ServiceStore
    let clock: @Sendable () -> Date
    let logger: Logger

    func run() async throws {
        // Graceful shutdown cancels the sleep, so a SIGTERM never waits for the next minute.
        try? await cancelWhenGracefulShutdown { await self.loop() }
    }

    private func loop() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                return
            }
            // Nonces live for minutes; an hour's grace keeps "expired" (not "unknown") the answer for a late client.
            do {
                _ = try await store.purgeNonces(expiredBefore: clock().addingTimeInterval(-3600))
            } catch {
                logger.warning("could not purge expired nonces", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Counts every answered request and its latency by route pattern; logs method, route and status (never bodies).
struct ObservingMiddleware: RouterMiddleware {
    typealias Context = ServiceRequestContext
    let server: VerificationServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        server.metrics.request(
            route: route, method: request.method.rawValue, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }
}

/// The per-client token bucket; health probes and metrics are exempt.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = ServiceRequestContext
    let server: VerificationServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if !["/healthz", "/readyz", "/metrics"].contains(path) {
            let now = Double((ContinuousClock.now - server.started).components.seconds)
                + Double((ContinuousClock.now - server.started).components.attoseconds) / 1e18
            if let wait = server.limiter.take(client: context.client, now: now) {
                throw Problem(.tooManyRequests, "rate-limited", "too many requests from this client; retry after \(wait) s", retryAfter: wait)
            }
        }
        return try await next(request, context)
    }
}

extension VerificationServer {
    /// Issues a nonce for `tenant` as `POST /v1/challenge` would (benchmarks and embedding callers).
    public func issueNonce(tenant: String) async throws -> String {
        _ = try tenants.resources(tenant)
        return try await challenges.issue(tenant: tenant).nonce
    }
}

extension VerificationServer {
    /// Runs the application until SIGTERM or SIGINT, then stops gracefully (`cmk serve`).
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await buildApplication(onListening: onListening).runService()
    }
}
