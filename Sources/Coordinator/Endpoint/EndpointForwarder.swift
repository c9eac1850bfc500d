public import Foundation
import Synchronization

/// One place an endpoint can send a request to: an instance's workload (``RelayBackend``) in cmk, anything in tests.
public protocol EndpointBackend: AnyObject, Sendable {
    /// The instance name (what `setBackends` and the statistics name).
    var name: String { get }
    /// Sends one request and returns the answer; throws when the backend cannot be reached or does not answer.
    func call(_ request: [UInt8], timeout: Duration) throws(CoordinatorError) -> [UInt8]
    /// Drops any connection the backend holds.
    func close()
}

/// The host side of a stable endpoint: forwards each request to one backend of a set (round-robin), which can be
/// replaced atomically (``setBackends(_:)``), and can be held (``hold(timeout:)``: new requests wait, the ones in
/// flight finish) while an update moves state, so clients see a pause, never an error (docs/updates.md).
///
/// Shared by `cmk update` (one backend, switched once) and pools (many backends, replaced as the pool grows and
/// shrinks); per-backend request and failure counters and a request rate are what a pool scales on.
public final class EndpointForwarder: @unchecked Sendable {
    /// What one backend has served.
    public struct BackendStats: Codable, Sendable, Hashable {
        public let name: String
        /// Whether the backend is in the current set (a replaced one keeps its counters, listed as inactive).
        public let active: Bool
        public let requests: UInt64
        public let failures: UInt64
        /// Requests per second over the last ``rateWindowSeconds`` seconds.
        public let ratePerSecond: Double
    }

    /// The window of ``BackendStats/ratePerSecond``.
    public static let rateWindowSeconds = 5

    private final class Counter {
        var requests: UInt64 = 0
        var failures: UInt64 = 0
        /// Requests per whole second (seconds since the forwarder started), the last few only.
        var buckets: [Int: UInt64] = [:]
    }

    private let condition = NSCondition()
    private var backends: [any EndpointBackend] = []
    private var next = 0
    private var held = false
    private var inFlight = 0
    private var counters: [String: Counter] = [:]
    private var order: [String] = []
    private let started = ContinuousClock.now
    /// How long a request waits for a backend while the endpoint is held or has none.
    public let waitLimit: Duration
    /// How long one backend may take to answer.
    public let callTimeout: Duration
    /// The longest a request waited because the endpoint was held (the client-visible pause of an update).
    public private(set) var longestHoldWait: Duration = .zero

    public init(backends: [any EndpointBackend] = [], waitLimit: Duration = .seconds(60), callTimeout: Duration = .seconds(30)) {
        self.waitLimit = waitLimit
        self.callTimeout = callTimeout
        setBackends(backends)
    }

    /// Replaces the whole set at once: every request that starts afterwards goes to the new set; requests in flight
    /// finish on the backend they started on. Backends no longer listed are closed once nothing uses them.
    public func setBackends(_ list: [any EndpointBackend]) {
        condition.lock()
        let old = backends
        backends = list
        next = 0
        for backend in list where counters[backend.name] == nil {
            counters[backend.name] = Counter()
            order.append(backend.name)
        }
        condition.broadcast()
        condition.unlock()
        for backend in old where !list.contains(where: { $0 === backend }) {
            // In-flight calls hold their own connection; closing drops only idle ones.
            backend.close()
        }
    }

    /// The names of the current backends.
    public var backendNames: [String] {
        condition.lock()
        defer { condition.unlock() }
        return backends.map(\.name)
    }

    public var isHeld: Bool {
        condition.lock()
        defer { condition.unlock() }
        return held
    }

    /// Stops handing out requests and waits until none is in flight; true when drained within `timeout` (else the
    /// hold is undone and false returned).
    public func hold(timeout: Duration) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        held = true
        let deadline = Date().addingTimeInterval(Self.seconds(timeout))
        while inFlight > 0 {
            if !condition.wait(until: deadline) && inFlight > 0 {
                held = false
                condition.broadcast()
                return false
            }
        }
        return true
    }

    /// Lets waiting and new requests through again.
    public func release() {
        condition.lock()
        held = false
        condition.broadcast()
        condition.unlock()
    }

    /// Forwards one request; the answer, or `ERR unavailable <reason>` when no backend answered in time.
    public func forward(_ request: [UInt8]) -> [UInt8] {
        let arrived = ContinuousClock.now
        condition.lock()
        let deadline = Date().addingTimeInterval(Self.seconds(waitLimit))
        var waitedOnHold = false
        while held || backends.isEmpty {
            waitedOnHold = waitedOnHold || held
            if !condition.wait(until: deadline), held || backends.isEmpty {
                condition.unlock()
                return Array("ERR unavailable the endpoint had no backend for \(Self.seconds(waitLimit)) s".utf8)
            }
        }
        if waitedOnHold {
            let waited = ContinuousClock.now - arrived
            if waited > longestHoldWait { longestHoldWait = waited }
        }
        let backend = backends[next % backends.count]
        next = (next + 1) % max(1, backends.count)
        inFlight += 1
        condition.unlock()

        var answer: [UInt8]
        var failed = false
        do throws(CoordinatorError) {
            answer = try backend.call(request, timeout: callTimeout)
        } catch {
            // One retry on a fresh connection (the backend reconnects), then the client hears why.
            do throws(CoordinatorError) {
                answer = try backend.call(request, timeout: callTimeout)
            } catch {
                failed = true
                answer = Array("ERR unavailable \(backend.name): \(error.reason)".utf8)
            }
        }
        condition.lock()
        inFlight -= 1
        if let counter = counters[backend.name] {
            counter.requests += 1
            if failed { counter.failures += 1 }
            let second = Int(Self.seconds(ContinuousClock.now - started))
            counter.buckets[second, default: 0] += 1
            counter.buckets = counter.buckets.filter { $0.key > second - 2 * Self.rateWindowSeconds }
        }
        condition.broadcast()
        condition.unlock()
        return answer
    }

    /// Every backend ever used, current ones marked active.
    public func stats() -> [BackendStats] {
        condition.lock()
        defer { condition.unlock() }
        let now = Int(Self.seconds(ContinuousClock.now - started))
        let active = Set(backends.map(\.name))
        return order.compactMap { name in
            guard let counter = counters[name] else { return nil }
            let recent = counter.buckets.filter { $0.key > now - Self.rateWindowSeconds && $0.key <= now }.values.reduce(0, +)
            return BackendStats(
                name: name, active: active.contains(name), requests: counter.requests, failures: counter.failures,
                ratePerSecond: Double(recent) / Double(Self.rateWindowSeconds))
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
