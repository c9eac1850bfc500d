public import Foundation

/// The pool's endpoint: the coordinator's forwarder (shared with `cmk update`) behind a TCP listener on 127.0.0.1,
/// one ``RelayBackend`` per serving member, wrapped to count the requests in flight on each (for the drain).
public final class PoolForwarderTraffic: PoolTraffic, @unchecked Sendable {
    let server: EndpointServer
    let forwarder: EndpointForwarder
    let state: CMKStateDirectory
    private let lock = NSLock()
    private var wrappers: [String: CountingBackend] = [:]

    init(server: EndpointServer, forwarder: EndpointForwarder, state: CMKStateDirectory) {
        self.server = server
        self.forwarder = forwarder
        self.state = state
    }

    public var endpoint: String { "127.0.0.1:\(server.port)" }

    public func setBackends(_ backends: [PoolBackendAddress]) async {
        let list: [any EndpointBackend] = lock.withLock {
            backends.map { address in
                if let existing = wrappers[address.name] { return existing }
                let wrapper = CountingBackend(RelayBackend(state: state, instance: address.name))
                wrappers[address.name] = wrapper
                return wrapper
            }
        }
        forwarder.setBackends(list)
        try? server.persist()
    }

    public func counts() async -> [String: PoolBackendCount] {
        var result: [String: PoolBackendCount] = [:]
        for stats in forwarder.stats() {
            let inFlight = lock.withLock { wrappers[stats.name]?.inFlight ?? 0 }
            result[stats.name] = PoolBackendCount(requests: Int(stats.requests), inFlight: inFlight)
        }
        return result
    }

    public func close() async {
        forwarder.setBackends([])
        server.stop()
    }
}

/// A backend that counts its requests in flight.
final class CountingBackend: EndpointBackend, @unchecked Sendable {
    let inner: any EndpointBackend
    private let lock = NSLock()
    private var running = 0

    init(_ inner: any EndpointBackend) { self.inner = inner }

    var name: String { inner.name }
    var inFlight: Int { lock.withLock { running } }

    func call(_ request: [UInt8], timeout: Duration) throws(CoordinatorError) -> [UInt8] {
        lock.withLock { running += 1 }
        defer { lock.withLock { running -= 1 } }
        return try inner.call(request, timeout: timeout)
    }

    func close() { inner.close() }
}

/// Opening a pool's endpoint, and where a member's workload is reached.
public enum PoolEndpoint {
    /// Listens on 127.0.0.1:`spec.port` (0: any free port) and records the endpoint `pool-NAME` in the state folder.
    public static func open(spec: PoolSpec, state: CMKStateDirectory) async throws -> any PoolTraffic {
        let forwarder = EndpointForwarder()
        let server = try EndpointServer(
            name: "pool-\(spec.name)", state: state, port: spec.port, forwarder: forwarder,
            makeBackend: { RelayBackend(state: state, instance: $0) },
            log: { FileHandle.standardError.write(Data("endpoint: \($0)\n".utf8)) })
        server.start()
        try server.persist()
        return PoolForwarderTraffic(server: server, forwarder: forwarder, state: state)
    }

    /// An admitted member's workload is reached through its supervisor's relay (by instance name).
    public static func backendAddress(of member: String, state: CMKStateDirectory) async -> String? {
        guard let store = try? InstanceStore.openForReading(state), let record = try? store.instance(member) else {
            return nil
        }
        store.close()
        return record.state == .admitted ? member : nil
    }
}
