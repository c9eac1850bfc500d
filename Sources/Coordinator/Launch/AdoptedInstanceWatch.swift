public import Foundation
import AuditLog
import GuestProtocol

/// Re-supervises an admitted instance whose supervisor died (SIGKILL, a crash): a detached per-instance watcher
/// process (`cmk supervise --instance ID`, started by whatever cmk command reconciled and found it re-adopted)
/// takes the instance over and watches it as its launch supervisor did — QEMU's exit and the agent's heartbeat —
/// until `cmk stop` or a failure.
///
/// The QEMU is not this process's child, so its exit is seen by polling its pid and start time every 10 ms
/// (``ProcessExitNotifier/init(watching:interval:)``). The heartbeat resumes over the same control port: the new
/// watcher listens on the instance's control socket path again, QEMU's chardev (a client with `reconnect`)
/// connects to it within its reconnect interval, and the admitted agent, which waits for a coordinator when its port
/// closes after the handover, answers the pings. An agent that does not answer within the heartbeat timeout after
/// the reconnect, or a QEMU that does not reconnect within ``reconnectWait``, fails the instance: a child nobody can
/// watch is not kept. The simulated platform port is not served again (an admitted child has its evidence).
public final class AdoptedInstanceWatch: @unchecked Sendable {
    /// How the watch ended.
    public struct Ending: Sendable {
        /// `stopped` (asked to stop) or `failed`.
        public let state: InstanceState
        public let reason: String
        /// For a failure: seconds from noticing it to the store saying `failed` with the partition released.
        public let recordSeconds: Double?
    }

    public let state: CMKStateDirectory
    /// The instance's id or name.
    public let instance: String
    public let settings: InstanceWatch.Settings
    /// How long QEMU may take to reconnect its control port to the new listener (its reconnect interval is 1 s).
    public let reconnectWait: Duration
    let progress: @Sendable (String) -> Void

    public init(
        state: CMKStateDirectory, instance: String, settings: InstanceWatch.Settings = .default,
        reconnectWait: Duration = .seconds(5), progress: @escaping @Sendable (String) -> Void
    ) {
        self.state = state
        self.instance = instance
        self.settings = settings
        self.reconnectWait = reconnectWait
        self.progress = progress
    }

    func withStore<T>(_ body: (InstanceStore) throws -> T) throws -> T {
        let store = try InstanceStore(state, options: InstanceSupervisor.storeOptions())
        defer { store.close() }
        return try body(store)
    }

    /// Claims the instance for this process: it must be admitted with its QEMU running and no other live supervisor
    /// (decided under the state lock, so two watchers started by two reconciliations never both take it).
    ///
    /// - Throws: `unknownInstance`; `nameInUse` when another supervisor runs it; `launch` when it is not an admitted
    ///   instance with a running QEMU.
    public func claim() throws -> InstanceRecord {
        guard let me = ProcessIdentity.of(pid: getpid()) else {
            throw CoordinatorError(.launch, "cannot read this process's own identity")
        }
        return try withStore { store in
            guard let record = try store.instance(instance) else {
                throw CoordinatorError(.unknownInstance, "no instance \(instance)")
            }
            if let supervisor = record.supervisor, supervisor != me,
                ProcessIdentity.isRunning(pid: supervisor.pid, startTime: supervisor.startTime)
            {
                throw CoordinatorError(.nameInUse, "\(record.name) is supervised by \(supervisor) already")
            }
            guard record.state == .admitted, let process = record.process,
                ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime)
            else {
                throw CoordinatorError(
                    .launch, "\(record.name) is \(record.state.rawValue) without a running QEMU: nothing to watch")
            }
            guard record.sockets["control"] != nil else {
                throw CoordinatorError(.launch, "\(record.name) has no control socket recorded")
            }
            return try store.update(record.id, InstanceChanges(supervisor: me))
        }
    }

    /// Claims the instance, resumes its heartbeat and watches it until it fails or `stopRequested` turns true.
    public func run(stopRequested: @escaping @Sendable () -> Bool) async throws -> Ending {
        let record = try claim()
        let qemu = record.process!
        let controlPath = record.sockets["control"]!
        progress("re-adopted \(record.name) (QEMU \(qemu)); listening on \(controlPath) for its control port")
        let exit = try ProcessExitNotifier(watching: qemu)
        let listener = try UnixSocketListener(path: controlPath)
        let started = ContinuousClock.now
        // QEMU reconnects its chardev to the new listener; the watch starts once it has.
        let connection: FramedConnection? = await Self.offPool {
            let deadline = ContinuousClock.now + self.reconnectWait
            while ContinuousClock.now < deadline, exit.exit == nil, !stopRequested() {
                if let connection = try? listener.accept(timeout: .milliseconds(50)) { return connection }
            }
            return nil
        }
        guard let connection else {
            if stopRequested() { return await stop(record, connection: nil, reason: "stop requested") }
            let reason =
                exit.exit != nil
                ? "its QEMU (pid \(qemu.pid)) exited before its control port reconnected (re-adopted)"
                : "its control port did not reconnect within \(reconnectWait) after re-adoption; its QEMU (pid "
                    + "\(qemu.pid)) was killed"
            return await fail(record, reason: reason, detectedAt: .now, detectedDate: Date(), answered: 0, slowest: .zero)
        }
        progress(
            "control port reconnected after \(Int(InstanceSupervisor.seconds(ContinuousClock.now - started) * 1000)) ms; "
                + "heartbeat resumed (every \(settings.pingInterval), timeout \(settings.answerTimeout))")
        let watch = InstanceWatch(settings: settings)
        let report = await Self.offPool { watch.run(connection: connection, exit: exit, stopRequested: stopRequested) }
        withExtendedLifetime(listener) {}
        switch report.ending {
        case .stopRequested:
            return await stop(record, connection: connection, reason: "stop requested")
        case .qemuExited:
            return await fail(
                record, reason: "its QEMU (pid \(qemu.pid)) exited while admitted (re-adopted)",
                detectedAt: report.detectedAt, detectedDate: report.detectedDate, answered: report.answered,
                slowest: report.slowestAnswer)
        case .agentSilent(let silence):
            return await fail(
                record,
                reason: "cmk-guest stopped answering heartbeats (no answer for "
                    + "\(Int(InstanceSupervisor.seconds(silence) * 1000)) ms, re-adopted); its QEMU (pid \(qemu.pid)) "
                    + "was killed",
                detectedAt: report.detectedAt, detectedDate: report.detectedDate, answered: report.answered,
                slowest: report.slowestAnswer)
        case .controlFailed(let detail):
            return await fail(
                record,
                reason: "its control port failed (\(detail), re-adopted); its QEMU (pid \(qemu.pid)) was killed",
                detectedAt: report.detectedAt, detectedDate: report.detectedDate, answered: report.answered,
                slowest: report.slowestAnswer)
        }
    }

    /// A failure: QEMU killed at once if it still runs, `failed` with the partition released, an audit record.
    private func fail(
        _ record: InstanceRecord, reason: String, detectedAt: ContinuousClock.Instant, detectedDate: Date,
        answered: Int, slowest: Duration
    ) async -> Ending {
        let qemu = record.process!
        _ = QEMUInstanceMarker.killAndWait(qemu, timeout: .seconds(5))
        var recorded: Double?
        do {
            try withStore { store in
                _ = try store.transition(record.id, to: .failed, reason: reason, changes: InstanceChanges(processGone: true))
            }
            recorded = InstanceSupervisor.seconds(ContinuousClock.now - detectedAt)
        } catch {
            progress("cannot record the failure: \(error)")
        }
        progress("FAILED: \(reason); recorded \(Int((recorded ?? -1) * 1000)) ms after detection; partition released")
        appendAudit(
            record,
            [
                "event": "failed", "reason": reason, "instanceID": record.id, "watcher": "re-adopted",
                "detectedAt": ISO8601DateFormatter().string(from: detectedDate), "heartbeatsAnswered": String(answered),
                "slowestHeartbeatMs": String(Int(InstanceSupervisor.seconds(slowest) * 1000)),
            ])
        return Ending(state: .failed, reason: reason, recordSeconds: recorded)
    }

    /// A stop: the child is asked to shut down, QEMU given 3 s and then killed, `stopping → stopped`.
    private func stop(_ record: InstanceRecord, connection: FramedConnection?, reason: String) async -> Ending {
        let qemu = record.process!
        try? connection?.send(.shutdown)
        let deadline = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < deadline, ProcessIdentity.isRunning(pid: qemu.pid, startTime: qemu.startTime) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let gone = QEMUInstanceMarker.killAndWait(qemu, timeout: .seconds(5))
        connection?.close()
        do {
            try withStore { store in
                if let current = try store.instance(record.id), current.state != .stopped {
                    if current.state != .stopping { _ = try store.transition(record.id, to: .stopping, reason: reason) }
                    if gone {
                        _ = try store.transition(
                            record.id, to: .stopped, reason: reason, changes: InstanceChanges(processGone: true))
                    }
                }
            }
        } catch {
            progress("cannot record the stop: \(error)")
        }
        appendAudit(record, ["event": "stopped", "reason": reason, "instanceID": record.id, "watcher": "re-adopted"])
        return Ending(state: gone ? .stopped : .stopping, reason: reason, recordSeconds: nil)
    }

    private func appendAudit(_ record: InstanceRecord, _ details: [String: String]) {
        do {
            let audit = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
            _ = try audit.append(
                AuditEntry(actor: "coordinator", kind: .instanceEvent, instance: record.name, details: details))
        } catch {
            progress("cannot append to the audit log: \(error)")
        }
    }

    /// Runs blocking work on its own thread, never on the cooperative pool.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }

    /// Starts a detached watcher (`cmk supervise --instance ID`, in its own session, appending to the instance's
    /// log) for each admitted instance `outcomes` says was re-adopted; returns the watchers' pids. `executable` is
    /// the `cmk` to run (nil: the one beside the running executable; nothing is started when there is none).
    @discardableResult
    public static func startWatchers(
        for outcomes: [ReconciliationOutcome], state: CMKStateDirectory, executable: URL? = nil
    ) -> [Int32] {
        let adopted = outcomes.filter { $0.action == .readopted && $0.state == .admitted }
        guard !adopted.isEmpty else { return [] }
        let cmk =
            executable
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("cmk")
        guard FileManager.default.isExecutableFile(atPath: cmk.path) else { return [] }
        var pids: [Int32] = []
        for outcome in adopted {
            let log = state.url.appendingPathComponent("instances/\(outcome.name).log")
            if !FileManager.default.fileExists(atPath: log.path) {
                FileManager.default.createFile(atPath: log.path, contents: nil)
            }
            guard let handle = try? FileHandle(forWritingTo: log) else { continue }
            _ = try? handle.seekToEnd()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = [cmk.path, "supervise", "--instance", outcome.instanceID, "--state-dir", state.url.path]
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            if (try? process.run()) != nil { pids.append(process.processIdentifier) }
            try? handle.close()
        }
        return pids
    }
}
