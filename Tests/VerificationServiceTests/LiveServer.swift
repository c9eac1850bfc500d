import Attestation
import CMKTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import PlatformSimulator
import ServiceLifecycle
import Synchronization
import VerificationService

/// A clock the tests set: the service reads every time from it.
final class TestClock: Sendable {
    private let now: Mutex<Date>
    init(_ start: Date) { now = Mutex(start) }
    func read() -> Date { now.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
    func set(_ date: Date) { now.withLock { $0 = date } }
}

/// A real `cmk serve` application on a loopback port, in its own service group, stopped gracefully at the end.
final class LiveServer: Sendable {
    static let tokens = ["alpha": "alpha-administrator-token-0001", "beta": "beta-administrator-token-00002"]

    let server: VerificationServer
    let port: Int
    let clock: TestClock
    let directory: URL
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    var base: String { "http://127.0.0.1:\(port)" }

    private init(server: VerificationServer, port: Int, clock: TestClock, directory: URL, group: ServiceGroup, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.clock = clock
        self.directory = directory
        self.group = group
        self.task = task
    }

    /// Starts a server with tenants alpha and beta, the pinned roots plus the shared simulated platform's, and the
    /// clock at `time`; `configure` may change the configuration first.
    /// `store` replaces the SQLite store (a PostgreSQL store shared with another server); `stateDirectory` is a state
    /// folder shared with another server (its tenants' signing keys), kept after `stop()`.
    static func start(
        at time: Date = Date(), store: (any ServiceStore)? = nil, stateDirectory: URL? = nil,
        configure: (inout ServiceConfiguration) -> Void = { _ in }
    ) async throws -> LiveServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-serve-\(UUID().uuidString)")
        let clock = TestClock(time)
        let collateral = directory.appendingPathComponent("empty-collateral")
        try FileManager.default.createDirectory(at: collateral, withIntermediateDirectories: true)
        var configuration = ServiceConfiguration(
            host: "127.0.0.1", port: 0, stateDirectory: directory.appendingPathComponent("state"),
            tenants: [
                try Tenant(name: "alpha", token: tokens["alpha"]), try Tenant(name: "beta", token: tokens["beta"]),
                try Tenant(name: "default", token: nil),
            ],
            trustAnchors: try TrustAnchorStore(
                directory: SharedVectors.attestationDirectory, simulated: try SimulatedFixture.processor().directory),
            snpCollateral: collateral, tdxCollateral: collateral, nonceLifetime: 60,
            rateLimit: .unlimited, requestTimeout: 30, verifierBuild: "test", clock: { clock.read() })
        if let stateDirectory { configuration.stateDirectory = stateDirectory }
        configure(&configuration)
        let server = try VerificationServer(configuration: configuration, store: store)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = server.buildApplication { port in continuation.yield(port) }
        var logger = Logger(label: "cmk.serve.test")
        logger.logLevel = .warning
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw ServiceError("the server did not start") }
        return LiveServer(server: server, port: port, clock: clock, directory: directory, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        try? FileManager.default.removeItem(at: directory)
    }

    /// Loads a policy (YAML text) into a tenant through the administration API, with that tenant's token.
    func putPolicy(_ yaml: String, id: String, tenant: String = "alpha") async throws -> HTTPResult {
        try await request("PUT", "/v1/tenants/\(tenant)/policies/\(id)", body: Data(yaml.utf8), token: Self.tokens[tenant])
    }

    func request(
        _ method: String, _ path: String, json: Any? = nil, body: Data? = nil, token: String? = nil,
        headers: [String: String] = [:]
    ) async throws -> HTTPResult {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields[String(describing: name).lowercased()] = String(describing: value) }
        return HTTPResult(status: http.statusCode, headers: fields, body: data)
    }

    func challenge(tenant: String = "alpha") async throws -> String {
        let result = try await request("POST", "/v1/challenge", json: ["tenant": tenant])
        guard result.status == 201, let nonce = result.object["nonce"] as? String else {
            throw ServiceError("challenge failed: \(result.status) \(result.text)")
        }
        return nonce
    }
}

struct HTTPResult: Sendable {
    let status: Int
    let headers: [String: String]
    let body: Data

    var text: String { String(decoding: body, as: UTF8.self) }
    var object: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    var contentType: String { headers["content-type"] ?? "" }
    /// The problem's code: the last component of its `type`.
    var problemCode: String? { (object["type"] as? String)?.components(separatedBy: "/").last }
}

/// One simulated AMD secure processor per test process (key generation takes seconds).
enum SimulatedFixture {
    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-serve-sim-\(UUID().uuidString)")
        atexit { try? FileManager.default.removeItem(at: SimulatedFixture.root) }
        return url
    }()

    static let shared: Result<SimulatedAMDSecureProcessor, any Error> = Result {
        try SimulatedAMDSecureProcessor(directory: root.appendingPathComponent("state/simulated/amd"))
    }

    static func processor() throws -> SimulatedAMDSecureProcessor { try shared.get() }

    static let launch: Result<SimulatedSNPLaunch, any Error> = Result {
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let kernelName = try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("vmlinuz") }
        guard let kernelName else { throw ServiceError("the guest kernel is missing from \(boot.path); run scripts/setup") }
        let inputs = SimulatedSNPLaunch.Inputs(
            firmware: [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/usr/share/ovmf/OVMF.fd"))),
            kernel: [UInt8](try Data(contentsOf: boot.appendingPathComponent(kernelName))),
            initrd: try SharedVectors.bytes("snp-measure/initrd.cpio"), cmdline: "console=ttyS0",
            vcpus: 1, vcpuType: "EPYC-Genoa", guestPolicy: 0x30000, hostData: SimulatedFixture.manifestDigest)
        return try SimulatedSNPLaunch(inputs, processor: try processor())
    }

    static let manifest = Array("{\"instance\":\"web-1\",\"profile\":\"general\"}".utf8)
    static var manifestDigest: [UInt8] { sha256(manifest) }
}
