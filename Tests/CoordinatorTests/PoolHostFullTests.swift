import AuditLog
import Coordinator
import Foundation
import Testing

/// A pool whose bounds exceed what the host's partitions hold, decided against real partition state without booting:
/// the real controller, the real endpoint, a real instance store and its allocator (on a synthetic 4-CPU host), and
/// members whose launch makes the real reservation `cmk launch` makes — they stand in for the boot only, and stay
/// `starting`. The controller launches what fits, says `host-full` (status and audit record) for the rest, retries
/// after the cool-down, and never holds more partitions than the host has.
@Suite("pool: a host too small for the pool")
struct PoolHostFullTests {
    /// Launches that reserve a partition exactly as `cmk launch` does (one transaction in the instance store, refused
    /// with `insufficient-resources` when it does not fit), then wait, starting, until stopped.
    final class ReservingLaunches: PoolInstanceActions, @unchecked Sendable {
        let state: CMKStateDirectory
        let inventory: HostInventory
        let request: PartitionRequest
        private let lock = NSLock()
        private var launched: [String] = []
        private var stopped: Set<String> = []

        init(state: CMKStateDirectory, inventory: HostInventory, request: PartitionRequest) {
            self.state = state
            self.inventory = inventory
            self.request = request
        }

        var launches: [String] { lock.withLock { launched } }

        func launch(_ name: String, spec: PoolSpec) async -> PoolLaunchResult {
            lock.withLock { launched.append(name) }
            do {
                let store = try InstanceStore(state)
                defer { store.close() }
                _ = try store.reserve(
                    InstanceRequest(name: name, resources: request, profile: spec.profile,
                                    supervisor: ProcessIdentity.of(pid: getpid())),
                    on: inventory)
            } catch {
                return PoolLaunchResult(admitted: false, errorCode: error.code.name, reason: error.reason)
            }
            while !lock.withLock({ stopped.contains(name) }) { try? await Task.sleep(for: .milliseconds(20)) }
            return PoolLaunchResult(admitted: false, errorCode: CoordinatorError.Code.launch.name, reason: "stopped before a verdict")
        }

        func stop(_ name: String) async -> String? {
            lock.withLock { _ = stopped.insert(name) }
            do {
                let store = try InstanceStore(state)
                defer { store.close() }
                if let record = try store.instance(name), record.state != .stopped {
                    try store.transition(name, to: .stopping, reason: "stopped by the pool before it booted")
                    try store.transition(name, to: .stopped, reason: "stopped by the pool before it booted")
                }
                return nil
            } catch {
                return error.reason
            }
        }

        func backendAddress(of name: String) async -> String? { nil }
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }

    /// The partitions the store holds now, by instance name.
    static func held(_ state: CMKStateDirectory) throws -> [String] {
        guard let store = try InstanceStore.openForReading(state) else { return [] }
        defer { store.close() }
        return try store.instances().filter(\.holdsPartition).map(\.name).sorted()
    }

    @Test(
        "wanting more members than the host's partitions hold, the pool launches what fits, says host-full in its status and audit log, retries after the cool-down and never exceeds the host",
        .timeLimit(.minutes(3)))
    func launchesOnlyWhatFits() async throws {
        let folder = URL(fileURLWithPath: "/tmp/cmk-pool-host-full-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: folder) }
        let state = CMKStateDirectory(folder)
        try state.prepare()
        // 4 CPUs, one kept for the host; another instance already holds one exclusively: two are left.
        let inventory = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 1, memoryMiB: 16_384)
        let member = PartitionRequest(cpuCount: 1, memoryMiB: 512)
        do {
            let store = try InstanceStore(state)
            defer { store.close() }
            _ = try store.reserve(
                InstanceRequest(name: "other", resources: member, supervisor: ProcessIdentity.of(pid: getpid())),
                on: inventory)
        }
        let capacity = PoolHostCapacity(state: state, request: member, inventory: { inventory })
        #expect(capacity.room(wanted: 5)?.fits == 2)
        #expect(capacity.room(wanted: 2) == PoolHostCapacity.Room(wanted: 2, fits: 2, refusal: nil))
        #expect(capacity.room(wanted: 1, pending: ["big-1", "big-2"])?.fits == 0, "members still starting count")
        #expect(capacity.room(wanted: 5)?.refusal?.contains("free: no CPU") == true, "\(capacity.room(wanted: 5)?.refusal ?? "")")

        // min 4, max 6: the rule wants four; the host holds two more.
        let spec = PoolSpec(
            name: "big", profile: "general", policyPath: "/nonexistent.yaml",
            rule: ScalingRule(metric: .requests, target: 5, minimum: 4, maximum: 6, scaleOutCooldown: 1),
            allowSharedCores: false, vcpus: 1, memoryMiB: 512, intervalSeconds: 0.1)
        try PoolFiles(state: state, name: "big").writeSpec(spec)
        let launches = ReservingLaunches(state: state, inventory: inventory, request: member)
        let traffic = try await PoolEndpoint.open(spec: spec, state: state)
        let controller = PoolController(
            spec: spec, state: state, traffic: traffic, actions: launches, capacity: capacity, log: { _ in })
        let stop = Flag()
        let running = Task { await controller.run { stop.isSet } }

        // Two members reserve; the third is refused before any launch; at least one retry after the cool-down.
        var mostHeld = 0
        let deadline = Date().addingTimeInterval(60)
        var refusals = 0
        while Date() < deadline {
            mostHeld = max(mostHeld, try Self.held(state).filter { $0.hasPrefix("big-") }.count)
            refusals = controller.currentStatus.events.filter { $0.event == "cannot-grow" }.count
            if refusals >= 2 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let status = try #require(PoolFiles(state: state, name: "big").readStatus())
        #expect(refusals >= 2, "\(status.events.map { "\($0.event): \($0.detail)" })")
        #expect(status.condition == .hostFull, "\(status.condition): \(status.reason)")
        #expect(status.reason.contains("free: no CPU"), "\(status.reason)")
        #expect(status.members.map(\.name).sorted() == ["big-1", "big-2"])
        #expect(launches.launches == ["big-1", "big-2"], "no launch was tried that could not fit")
        #expect(mostHeld == 2)
        #expect(try Self.held(state) == ["big-1", "big-2", "other"])

        // The refusal is in the audit log, with what was wanted and what fits.
        let log = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
        let records = try log.records(matching: AuditQuery(order: .oldestFirst, limit: 1000)).records
        let refused = records.filter { $0.kind.rawValue == "pool-event" && $0.details["event"] == "cannot-grow" }
        #expect(refused.count >= 2)
        #expect(refused.first?.details["why"] == "host-full")
        #expect(refused.first?.details["fits"] == "0")
        #expect(refused.first?.details["reason"]?.contains("asked for 1 CPU and 512 MiB") == true, "\(refused.first?.details ?? [:])")
        #expect(try log.verify().problems.isEmpty)

        // Deleting the pool stops both and gives their partitions back.
        stop.set()
        await running.value
        let finalStatus = PoolFiles(state: state, name: "big").readStatus()
        #expect(try Self.held(state) == ["other"], "\(finalStatus?.events.suffix(8).map { "\($0.event) \($0.instance ?? ""): \($0.detail)" } ?? [])")
        #expect(PoolFiles(state: state, name: "big").readStatus()?.condition == .stopped)
    }
}
