public import Attestation
import BinaryFormat
import Crypto
public import AttestationResults
public import Foundation

/// A tenant: a name that scopes policies, nonces, audit records and the signing key, and the SHA-256 of its
/// administrator's bearer token (the token itself is never kept).
public struct Tenant: Sendable, Hashable {
    public let name: String
    let tokenDigest: [UInt8]?

    /// Names are 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter or digit (they become folder names).
    public static func isValidName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), let first = name.utf8.first, first != UInt8(ascii: "-") else { return false }
        return name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == UInt8(ascii: "-") }
    }

    /// A tenant whose administrator presents `token`; nil makes the administration endpoints refuse every request.
    public init(name: String, token: String?) throws(ServiceError) {
        guard Self.isValidName(name) else {
            throw ServiceError("tenant name '\(name)' must be 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'")
        }
        if let token, token.utf8.count < 16 {
            throw ServiceError("the administrator token of tenant '\(name)' is shorter than 16 characters")
        }
        self.name = name
        self.tokenDigest = token.map { Array(SHA256.hash(data: Array($0.utf8))) }
    }

    func accepts(token: String) -> Bool {
        guard let tokenDigest else { return false }
        return constantTimeEqual(Array(SHA256.hash(data: Array(token.utf8))), tokenDigest)
    }
}

/// A configuration error (`cmk serve` prints it and exits 2).
public struct ServiceError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Everything `cmk serve` is told: where to listen, where state lives, who the tenants are, and the limits.
public struct ServiceConfiguration: Sendable {
    /// Per-client token bucket: `requestsPerSecond` sustained, `burst` at once. Clients are told apart by IP address.
    public struct RateLimit: Sendable, Hashable {
        public var requestsPerSecond: Double
        public var burst: Double
        public init(requestsPerSecond: Double, burst: Double) {
            self.requestsPerSecond = requestsPerSecond
            self.burst = burst
        }
        /// No limit (benchmarks).
        public static let unlimited = RateLimit(requestsPerSecond: .infinity, burst: .infinity)
    }

    public var host: String
    /// 0 picks a free port (tests read it from ``VerificationServer/onListening``).
    public var port: Int
    /// The state folder: `serve.sqlite` (nonces, policies) and `tenants/<name>/` (signing key, audit log).
    public var stateDirectory: URL
    public var tenants: [Tenant]
    /// The pinned roots, plus the simulated ones when the operator added them.
    public var trustAnchors: TrustAnchorStore
    /// The offline SEV-SNP collateral cache (VCEKs, CRLs): used when a request brings no VCEK.
    public var snpCollateral: URL?
    /// The offline TDX collateral cache (`intel/tdx/<fmspc>/`): used when a request brings no collateral.
    public var tdxCollateral: URL?
    /// How long a nonce stays valid after it is issued.
    public var nonceLifetime: TimeInterval
    /// How long an issued EAR stays valid (`exp - iat`).
    public var resultLifetime: TimeInterval
    /// The largest request body accepted (413 beyond).
    public var maximumBodySize: Int
    public var rateLimit: RateLimit
    /// A connection idle for this long is closed; a request body that takes longer to arrive is answered 408.
    public var requestTimeout: TimeInterval
    /// The verifier's build, in every EAR's `ear.verifier-id`.
    public var verifierBuild: String
    /// The algorithm of a tenant's EAR signing key when the server creates it (a stored key keeps its own): ES256
    /// (P-256, the default, as Trustee and Veraison use; its signature costs about a fortieth of a P-384 one here)
    /// or ES384 (P-384).
    public var earAlgorithm: EARAlgorithm
    /// The vTPM EK certificate chain this server pins, leaf-ward (the CA that issues EK certificates, then its
    /// self-signed root; or the root alone): an EK certificate sent with a credential activation must chain to it.
    /// Empty: none pinned, and a presented EK certificate fails verification (`tpm-ek-certificate-invalid`).
    public var tpmEndorsementChain: [AttestationCertificate]
    /// The clock every time-based decision reads (nonce expiry, evaluation time, token times); tests pin it.
    public var clock: @Sendable () -> Date

    public init(
        host: String = "127.0.0.1", port: Int = 8080, stateDirectory: URL, tenants: [Tenant], trustAnchors: TrustAnchorStore,
        snpCollateral: URL? = nil, tdxCollateral: URL? = nil, nonceLifetime: TimeInterval = 120,
        resultLifetime: TimeInterval = 300, maximumBodySize: Int = 256 * 1024,
        rateLimit: RateLimit = RateLimit(requestsPerSecond: 100, burst: 200), requestTimeout: TimeInterval = 30,
        verifierBuild: String = "cmk", earAlgorithm: EARAlgorithm = .es256,
        tpmEndorsementChain: [AttestationCertificate] = [], clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.host = host
        self.port = port
        self.stateDirectory = stateDirectory
        self.tenants = tenants
        self.trustAnchors = trustAnchors
        self.snpCollateral = snpCollateral
        self.tdxCollateral = tdxCollateral
        self.nonceLifetime = nonceLifetime
        self.resultLifetime = resultLifetime
        self.maximumBodySize = maximumBodySize
        self.rateLimit = rateLimit
        self.requestTimeout = requestTimeout
        self.verifierBuild = verifierBuild
        self.earAlgorithm = earAlgorithm
        self.tpmEndorsementChain = tpmEndorsementChain
        self.clock = clock
    }
}
