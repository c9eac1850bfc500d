import CMKTesting
import Coordinator
import Foundation
import Testing

/// A fixed, advancing clock for store tests.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var now = Date(timeIntervalSince1970: 1_800_000_000)

    func read() -> Date { lock.withLock { now } }
    func advance(_ seconds: TimeInterval) { lock.withLock { now += seconds } }
}

@Suite("the instance store: records, one writer, reconciliation", .serialized)
struct InstanceStoreTests {
    let folder: TemporaryFolder
    let state: CMKStateDirectory
    let clock = TestClock()
    /// 1 socket × 4 cores, 16 GiB: with the default reserve cpus 1-3 and 15360 MiB are free.
    let host: HostInventory

    init() throws {
        folder = try TemporaryFolder()
        state = CMKStateDirectory(folder.url.appendingPathComponent("state"))
        host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 1, memoryMiB: 16_384)
    }

    /// Closing a store releases its lock only once no process holds a copy of the lock file's descriptor. A
    /// process this test process is spawning at that moment (this suite's children, or another suite's running in
    /// parallel) holds one between its fork and its exec; under load that lasts long enough for a reopening store to
    /// see `state-locked`. So stores here wait for the lock, as supervisors do; only the tests of the refusal itself
    /// (``immediate``) do not.
    var options: InstanceStore.Options {
        let clock = clock
        return InstanceStore.Options(clock: { clock.read() }, lockWait: .seconds(10))
    }

    /// Fails at once when the lock is held.
    var immediate: InstanceStore.Options {
        var options = options
        options.lockWait = .zero
        return options
    }

    func request(_ name: String, cpus: Int = 1, memoryMiB: Int = 1024, shared: Bool = false) -> InstanceRequest {
        InstanceRequest(
            name: name, resources: PartitionRequest(cpuCount: cpus, memoryMiB: memoryMiB, allowSharedCores: shared),
            profile: "minimal",
            policy: PolicyReference(id: "web-snp", version: 3, digest: String(repeating: "ab", count: 32)))
    }

    @Test("a reserved instance is stored with its partition, and its transitions with times and reasons")
    func reserveAndTransition() throws {
        let store = try InstanceStore(state, options: options)
        let record = try store.reserve(request("web", cpus: 2), on: host)
        #expect(record.state == .reserved && record.holdsPartition)
        #expect(record.partition == Partition(cpus: [1, 2], nodes: [0], memoryMiB: 1024, shared: false))
        #expect(FileManager.default.fileExists(atPath: state.url.appendingPathComponent("instances.sqlite").path))

        clock.advance(5)
        let identity = ProcessIdentity(pid: 4242, startTime: 99)
        try store.transition(
            "web", to: .booting, reason: "QEMU started",
            changes: InstanceChanges(process: identity, sockets: ["qmp": "/run/cmk/web.qmp"]))
        clock.advance(5)
        try store.transition("web", to: .attesting, reason: "guest asked for a nonce")
        clock.advance(5)
        let admitted = try store.transition(
            record.id, to: .admitted, reason: "policy web-snp@3 admitted it",
            changes: InstanceChanges(evidenceDigest: String(repeating: "cd", count: 32), auditSequence: 17))
        #expect(admitted.process == identity && admitted.sockets == ["qmp": "/run/cmk/web.qmp"])
        #expect(admitted.auditSequence == 17 && admitted.evidenceDigest?.count == 64)
        #expect(admitted.createdAt == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(admitted.updatedAt == Date(timeIntervalSince1970: 1_800_000_015))

        let history = try store.history(of: record.id)
        #expect(history.map(\.to) == [.requested, .reserved, .booting, .attesting, .admitted])
        #expect(history[1].reason == "given cpus 1-2 on node 0 and 1024 MiB")
        #expect(history[3].time == Date(timeIntervalSince1970: 1_800_000_010))
        store.close()

        // Everything is still there for the next coordinator, and for readers.
        let reopened = try InstanceStore(state, options: options)
        #expect(try reopened.instance("web") == admitted)
        reopened.close()
        let reader = try #require(try InstanceStore.openForReading(state))
        #expect(try reader.instances() == [admitted])
        #expect(!reader.isWritable)
        #expect(throws: CoordinatorError.self) { try reader.transition("web", to: .stopping, reason: "x") }
    }

    @Test("illegal transitions are refused and leave the record as it was")
    func illegalTransitions() throws {
        let store = try InstanceStore(state, options: options)
        let record = try store.reserve(request("web"), on: host)
        #expect { try store.transition("web", to: .admitted, reason: "skip") } throws: {
            ($0 as? CoordinatorError)?.code == .illegalTransition
        }
        #expect {
            try store.transition("web", to: .booting, reason: "no pid")
        } throws: { ($0 as? CoordinatorError)?.reason.contains("pid and start time") == true }
        #expect(try store.instance("web") == record)
        #expect(try store.history(of: record.id).count == 2)
        #expect { try store.transition("nope", to: .failed, reason: "x") } throws: {
            ($0 as? CoordinatorError)?.code == .unknownInstance
        }
    }

    @Test("names are unique among live instances and free again once the instance is stopped")
    func uniqueNames() throws {
        let store = try InstanceStore(state, options: options)
        let first = try store.reserve(request("web"), on: host)
        #expect { try store.reserve(request("web"), on: host) } throws: {
            ($0 as? CoordinatorError)?.code == .nameInUse
                && ($0 as? CoordinatorError)?.reason.contains("reserved") == true
        }
        for bad in ["", "Web", "-web", "a/b", String(repeating: "a", count: 64)] {
            #expect { try store.reserve(request(bad), on: host) } throws: {
                ($0 as? CoordinatorError)?.code == .invalidArgument
            }
        }
        try store.transition("web", to: .failed, reason: "QEMU would not start")
        try store.transition("web", to: .stopping, reason: "operator")
        try store.transition("web", to: .stopped, reason: "nothing to tear down")
        let second = try store.reserve(request("web"), on: host)
        #expect(second.id != first.id)
        #expect(try store.instance("web")?.id == second.id)
        #expect(try store.instance(first.id)?.state == .stopped)
        #expect(try store.instances().map(\.id) == [second.id])
        #expect(try store.instances(includeStopped: true).map(\.id) == [first.id, second.id])
    }

    @Test("partitions come from the store: held ones block CPUs, released ones return them")
    func partitionsFromStore() throws {
        let store = try InstanceStore(state, options: options)
        let a = try store.reserve(request("a", cpus: 2), on: host)
        let b = try store.reserve(request("b"), on: host)
        #expect(Set(a.partition.cpus + b.partition.cpus) == [1, 2, 3])
        #expect {
            try store.reserve(request("c"), on: host)
        } throws: { error in
            (error as? CoordinatorError)?.reason
                == "asked for 1 CPU and 1024 MiB; free: no CPU and 13312 MiB after the host reserve of 1 CPU and "
                + "1024 MiB"
        }
        #expect(try store.instance("c") == nil, "a refused request leaves no trace")
        // Failed with its QEMU still running: it keeps the partition until it is stopped.
        try store.transition(
            "a", to: .booting, reason: "QEMU started", changes: .init(process: .init(pid: 7, startTime: 7)))
        try store.transition("a", to: .failed, reason: "boot timed out")
        #expect(try store.instance("a")?.holdsPartition == true)
        #expect(throws: CoordinatorError.self) { try store.reserve(request("c", cpus: 2), on: host) }
        try store.transition("a", to: .stopping, reason: "tearing down")
        try store.transition("a", to: .stopped, reason: "QEMU reaped")
        #expect(try store.instance("a")?.holdsPartition == false)
        #expect(try store.reserve(request("c", cpus: 2), on: host).partition.cpus == a.partition.cpus)
        // Failed before any QEMU: released at once.
        try store.transition("b", to: .failed, reason: "firmware missing")
        #expect(try store.allocator(for: host).available().cpus == b.partition.cpus)
    }

    @Test("a second coordinator in this process is refused with the holder's pid")
    func lockInProcess() throws {
        let store = try InstanceStore(state, options: options)
        #expect {
            try InstanceStore(state, options: immediate)
        } throws: { error in
            let error = error as? CoordinatorError
            return error?.code == .stateLocked
                && error?.reason.hasPrefix("another cmk coordinator (pid \(getpid())) holds the state lock") == true
        }
        // Readers need no lock.
        #expect(try InstanceStore.openForReading(state) != nil)
        store.close()
        #expect(try InstanceStore(state, options: options).isWritable)
    }

    @Test("a coordinator in another process holds the lock until it dies", .timeLimit(.minutes(3)))
    func lockAcrossProcesses() throws {
        try state.prepare()
        let lockPath = state.url.appendingPathComponent("coordinator.lock").path
        // sh becomes flock(1), which takes the lock without forking and becomes a shell that writes its pid (the
        // same pid throughout) and becomes sleep.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = [
            "-c", "exec flock -F -x \"$0\" sh -c 'echo $$ > \"$0\"; exec sleep 600' \"$0\"", lockPath,
        ]
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        let expected = "another cmk coordinator (pid \(holder.processIdentifier)) holds the state lock"
        var refusal: CoordinatorError?
        for _ in 0..<1000 where refusal?.reason.contains(expected) != true {
            do {
                try InstanceStore(state, options: immediate).close()
            } catch {
                refusal = error
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let error = try #require(refusal)
        #expect(error.code == .stateLocked)
        #expect(error.reason.contains(expected))
        // The holder crashes: the kernel drops its lock, the next coordinator gets in.
        kill(holder.processIdentifier, SIGKILL)
        waitForExit(holder)
        let store = try InstanceStore(state, options: options)
        #expect(store.isWritable)
    }

    @Test(
        "reconciliation re-adopts instances whose QEMU runs and fails the rest, so no core has two owners",
        .timeLimit(.minutes(3)))
    func reconcileAfterCrash() throws {
        let live = try ChildProcess.sleep()
        let liveIdentity = try #require(ProcessIdentity.of(pid: live.pid))
        let dead = try ChildProcess.sleep()
        let deadIdentity = try #require(ProcessIdentity.of(pid: dead.pid))
        dead.reap()
        // A pid that exists (this test process) with another start time: a reused pid, not our QEMU.
        let reused = ProcessIdentity(
            pid: getpid(), startTime: try #require(ProcessIdentity.of(pid: getpid())).startTime + 1)

        let crashed = try InstanceStore(state, options: options)
        let a = try crashed.reserve(request("alive"), on: host)
        let b = try crashed.reserve(request("dead"), on: host)
        let c = try crashed.reserve(request("reused"), on: host)
        for (name, identity) in [("alive", liveIdentity), ("dead", deadIdentity), ("reused", reused)] {
            try crashed.transition(name, to: .booting, reason: "QEMU started", changes: .init(process: identity))
            try crashed.transition(name, to: .attesting, reason: "evidence asked for")
        }
        try crashed.transition("alive", to: .admitted, reason: "admitted")
        try crashed.transition("dead", to: .admitted, reason: "admitted")
        crashed.close()  // the coordinator dies

        let successor = try InstanceStore(state, options: options)
        let outcomes = try successor.reconcile()
        #expect(outcomes.map(\.name) == ["alive", "dead", "reused"])
        #expect(outcomes.map(\.action) == [.readopted, .failed, .failed])
        #expect(
            outcomes[1].reason.contains("pid \(deadIdentity.pid)") && outcomes[1].reason.contains("no longer running"))
        #expect(try successor.instance("alive")?.state == .admitted)
        #expect(try successor.instance("alive")?.holdsPartition == true)
        for name in ["dead", "reused"] {
            let record = try #require(try successor.instance(name))
            #expect(record.state == .failed && !record.holdsPartition)
            #expect(try successor.history(of: record.id).last?.reason.contains("found while reconciling") == true)
        }
        // Reconciling again changes nothing but re-adopts the live one.
        #expect(try successor.reconcile().map(\.action) == [.readopted])
        // The reclaimed CPUs go to a new instance; the live one's never do.
        let next = try successor.reserve(request("next", cpus: 2), on: host)
        #expect(Set(next.partition.cpus) == Set(b.partition.cpus + c.partition.cpus))
        #expect(Set(next.partition.cpus).isDisjoint(with: a.partition.cpus))
        #expect(throws: CoordinatorError.self) { try successor.reserve(request("more"), on: host) }
        live.reap()
    }

    @Test("reconciliation leaves an instance alone while its supervisor runs, even in the middle of its launch")
    func reconcileLeavesSupervised() throws {
        let me = try #require(ProcessIdentity.of(pid: getpid()))
        let store = try InstanceStore(state, options: options)
        var supervised = request("mid-launch")
        supervised.supervisor = me
        let record = try store.reserve(supervised, on: host)
        #expect(record.supervisor == me)
        let outcomes = try store.reconcile()
        #expect(outcomes.map(\.action) == [.supervised])
        #expect(try store.instance("mid-launch")?.state == .reserved)
        #expect(try store.instance("mid-launch")?.holdsPartition == true)
        // Readers see the supervisor too.
        store.close()
        #expect(try #require(try InstanceStore.openForReading(state)).instance("mid-launch")?.supervisor == me)
    }

    @Test(
        "a launch whose supervisor died has every QEMU carrying its marker killed, recorded or not, and its CPUs freed",
        .timeLimit(.minutes(3)))
    func reconcileKillsOrphanedQEMU() throws {
        let deadSupervisor = try ChildProcess.sleep()
        let deadIdentity = try #require(ProcessIdentity.of(pid: deadSupervisor.pid))
        deadSupervisor.reap()
        let store = try InstanceStore(state, options: options)
        var unrecorded = request("unrecorded")
        unrecorded.supervisor = deadIdentity
        var booting = request("booting")
        booting.supervisor = deadIdentity
        let a = try store.reserve(unrecorded, on: host)
        let b = try store.reserve(booting, on: host)
        // Real QEMUs, idle (no machine, CPUs stopped), marked as the launcher marks them.
        let qemuA = try ChildProcess.spawn(idleQEMU(marker: a.id))
        let qemuB = try ChildProcess.spawn(idleQEMU(marker: b.id))
        defer {
            qemuA.reap()
            qemuB.reap()
        }
        let identityB = try #require(ProcessIdentity.of(pid: qemuB.pid))
        // The marker is readable from /proc as soon as QEMU runs.
        var seen: [ProcessIdentity] = []
        for _ in 0..<500 where seen.count < 1 {
            seen = QEMUInstanceMarker.runningQEMUs(instanceID: a.id)
            if seen.isEmpty { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(seen.map(\.pid) == [qemuA.pid])
        #expect(QEMUInstanceMarker.runningQEMUs(instanceID: UUID().uuidString.lowercased()).isEmpty)
        // "unrecorded": the supervisor died after starting QEMU, before recording it; "booting": after.
        try store.transition("booting", to: .booting, reason: "QEMU started", changes: .init(process: identityB))

        let outcomes = try store.reconcile()
        #expect(outcomes.map(\.action) == [.killed, .killed])
        for (name, pid) in [("unrecorded", qemuA.pid), ("booting", qemuB.pid)] {
            let record = try #require(try store.instance(name))
            #expect(record.state == .failed && !record.holdsPartition, "\(name)")
            #expect(record.reason.contains("pid \(pid)") && record.reason.contains("was killed"), "\(record.reason)")
            #expect(record.reason.contains("supervisor") && record.reason.contains("found while reconciling"))
        }
        #expect(ProcessIdentity.of(pid: qemuA.pid) == nil && ProcessIdentity.of(pid: qemuB.pid) == nil)
        #expect(QEMUInstanceMarker.runningQEMUs(instanceID: a.id).isEmpty)
        #expect(try store.allocator(for: host).available().cpus == [1, 2, 3])
    }

    func idleQEMU(marker: String) -> [String] {
        [
            CommandRunner.which("qemu-system-x86_64") ?? "/usr/bin/qemu-system-x86_64", "-machine", "none", "-S",
            "-display", "none", "-nodefaults", "-monitor", "none",
        ] + QEMUInstanceMarker.arguments(instanceID: marker)
    }

    @Test("reconciliation finishes stopping, reclaims gone rejected instances, fails unbooted ones")
    func reconcileOtherStates() throws {
        let crashed = try InstanceStore(state, options: options)
        _ = try crashed.reserve(request("unbooted"), on: host)
        _ = try crashed.reserve(request("stopping"), on: host)
        _ = try crashed.reserve(request("rejected"), on: host)
        let gone = ProcessIdentity(pid: 999_999, startTime: 1)
        for name in ["stopping", "rejected"] {
            try crashed.transition(name, to: .booting, reason: "QEMU started", changes: .init(process: gone))
        }
        try crashed.transition("stopping", to: .failed, reason: "crashed")
        try crashed.transition("stopping", to: .stopping, reason: "tearing down")
        try crashed.transition("rejected", to: .rejected, reason: "measurement not allowed")
        crashed.close()

        let successor = try InstanceStore(state, options: options)
        let outcomes = try successor.reconcile(liveProcess: { _, _ in false })
        #expect(
            Dictionary(uniqueKeysWithValues: outcomes.map { ($0.name, $0.action) })
                == ["unbooted": .failed, "stopping": .stopped, "rejected": .reclaimed])
        #expect(try successor.instance("rejected")?.state == .rejected)
        #expect(try successor.allocator(for: host).available().cpus == [1, 2, 3])
    }

    @Test("a store edited to give one CPU to two exclusive partitions is refused, not trusted")
    func inconsistentStore() throws {
        let store = try InstanceStore(state, options: options)
        for name in ["a", "b"] {
            _ = try store.reserve(request(name), on: host)
            try store.transition(
                name, to: .booting, reason: "QEMU started", changes: .init(process: .init(pid: 1, startTime: 1)))
        }
        store.close()
        let database = state.url.appendingPathComponent("instances.sqlite").path
        let edit = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/env"),
            [
                "python3", "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                    + "c.execute(\"UPDATE instance SET cpus='1'\"); c.commit()", database,
            ])
        #expect(edit.status == 0, "\(edit.standardError)")
        let reopened = try InstanceStore(state, options: options)
        #expect { try reopened.reserve(request("c"), on: host) } throws: {
            ($0 as? CoordinatorError)?.code == .inconsistentStore
                && ($0 as? CoordinatorError)?.reason.contains("cpu1") == true
        }
        #expect { try reopened.reconcile(liveProcess: { _, _ in true }) } throws: {
            ($0 as? CoordinatorError)?.code == .inconsistentStore
        }
    }

    @Test("random reserve/fail/stop sequences through the store match an in-memory allocator", .timeLimit(.minutes(4)))
    func storeMatchesModel() throws {
        let big = try SyntheticHost.inventory(sockets: 2, cores: 4, threads: 2, memoryMiB: 16_384)
        let store = try InstanceStore(state, options: options)
        var model = try PartitionAllocator(inventory: big, reserve: options.reserve)
        var generator = SeededGenerator(state: 42)
        var live: [String] = []
        for step in 0..<150 {
            if live.isEmpty || Double.random(in: 0..<1, using: &generator) < 0.55 {
                let resources = PartitionRequest(
                    cpuCount: Int.random(in: 1...5, using: &generator),
                    memoryMiB: Int.random(in: 1...4000, using: &generator),
                    allowSharedCores: Double.random(in: 0..<1, using: &generator) < 0.2)
                let name = "i\(step)"
                do {
                    let record = try store.reserve(InstanceRequest(name: name, resources: resources), on: big)
                    #expect(try model.allocate(resources, for: record.id) == record.partition, "step \(step)")
                    live.append(record.id)
                } catch {
                    #expect(error.code == .insufficientResources, "step \(step)")
                    #expect(throws: CoordinatorError.self) { try model.allocate(resources, for: "probe") }
                }
            } else {
                let id = live.remove(at: Int.random(in: 0..<live.count, using: &generator))
                try store.transition(id, to: .failed, reason: "random failure", changes: .init(processGone: true))
                model.release(id)
                if Bool.random(using: &generator) {
                    try store.transition(id, to: .stopping, reason: "cleanup")
                    try store.transition(id, to: .stopped, reason: "gone")
                }
            }
            let rebuilt = try store.allocator(for: big)
            #expect(rebuilt.partitions == model.partitions, "step \(step)")
        }
    }
}
