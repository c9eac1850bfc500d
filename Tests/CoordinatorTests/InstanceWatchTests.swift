import CMKTesting
import Coordinator
import Foundation
import GuestProtocol
import Testing

/// The watch over an admitted instance, with real processes and sockets: a real child process stands in for QEMU
/// (the watch only needs a child whose exit it can see), and a thread plays the agent on a real control socket.
@Suite("instance watch: QEMU exit and agent heartbeats", .serialized)
struct InstanceWatchTests {
    /// A control connection: the coordinator's end, and an agent thread that answers pings while `answering`.
    final class FakeAgent: @unchecked Sendable {
        let coordinatorEnd: FramedConnection
        private let agentEnd: FramedConnection
        private let lock = NSLock()
        private var answering = true
        private var stopped = false
        let listener: UnixSocketListener
        let folder: URL

        init() throws {
            folder = URL(fileURLWithPath: "/tmp/cmk-watch-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            listener = try UnixSocketListener(path: folder.appendingPathComponent("control.sock").path)
            agentEnd = try FramedConnection.connect(path: listener.path)
            coordinatorEnd = try listener.accept(timeout: .seconds(5))
            let agent = agentEnd
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    guard let message = try? agent.receive(timeout: .milliseconds(50)) else { continue }
                    if case .ping(let version, let sequence) = message, lock.withLock({ answering }) {
                        try? agent.send(.pong(version: version, sequence: sequence))
                    }
                }
            }
        }

        /// Stops answering (as an agent in a stopped or hung guest).
        func goSilent() { lock.withLock { answering = false } }

        func close() {
            lock.withLock { stopped = true }
            try? FileManager.default.removeItem(at: folder)
        }
    }

    /// Runs the watch on its own thread (it blocks) and returns its report.
    func watch(
        _ settings: InstanceWatch.Settings, agent: FakeAgent, exit: ProcessExitNotifier,
        stop: @escaping @Sendable () -> Bool = { false }
    ) async -> InstanceWatch.Report {
        await withCheckedContinuation { continuation in
            let connection = agent.coordinatorEnd
            Thread.detachNewThread {
                continuation.resume(
                    returning: InstanceWatch(settings: settings).run(connection: connection, exit: exit, stopRequested: stop))
            }
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    @Test("a child killed with SIGKILL is seen at once, not at the next heartbeat", .timeLimit(.minutes(3)))
    func qemuKilled() async throws {
        let agent = try FakeAgent()
        defer { agent.close() }
        let child = try QEMUProcess.start(["sleep", "600"])
        let exit = try ProcessExitNotifier(pid: child.processIdentifier)
        // Heartbeats every 5 s: only the exit notification can explain a fast detection.
        let settings = InstanceWatch.Settings(pingInterval: .seconds(5), answerTimeout: .seconds(30))
        async let report = watch(settings, agent: agent, exit: exit)
        try await Task.sleep(for: .milliseconds(300))
        let killed = ContinuousClock.now
        kill(child.processIdentifier, SIGKILL)
        let result = await report
        #expect(result.ending == .qemuExited)
        let latency = Self.seconds(result.detectedAt - killed)
        #expect(latency < 0.5, "detected \(latency) s after SIGKILL")
        #expect(await child.waitForExit(timeout: .seconds(5)) == 128 + SIGKILL, "the watch left the status to collect")
    }

    @Test(
        "the real cmk-guest, stopped with SIGSTOP, is found silent within the answer timeout plus one interval",
        .timeLimit(.minutes(3)))
    func agentSilent() async throws {
        // The stand-in for QEMU is the agent itself, the real cmk-guest over a UNIX socket: stopping it silences
        // the agent exactly as stopping QEMU does, and its run-queue wait is what the watch reads.
        let folder = URL(fileURLWithPath: "/tmp/cmk-watch-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let control = try UnixSocketListener(path: folder.appendingPathComponent("control.sock").path)
        let platform = try UnixSocketListener(path: folder.appendingPathComponent("platform.sock").path)
        let agentBinary = try GuestAgentBinary.url()
        let agent = try QEMUProcess.start([
            agentBinary.path, "--control", control.path, "--platform", platform.path, "--provider", "simulated-snp",
            "--instance", "watched", "--on-shutdown", "exit",
        ])
        let exit = try ProcessExitNotifier(pid: agent.processIdentifier)
        let connection: FramedConnection = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    let connection = try control.accept(timeout: .seconds(60))
                    guard case .ready = try connection.receive(timeout: .seconds(60)) else {
                        throw CocoaError(.fileReadCorruptFile)
                    }
                    return connection
                })
            }
        }
        let settings = InstanceWatch.Settings(pingInterval: .milliseconds(100), answerTimeout: .milliseconds(700))
        let silent = Locked<ContinuousClock.Instant?>(nil)
        let report: InstanceWatch.Report = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    returning: InstanceWatch(settings: settings).run(connection: connection, exit: exit) { false })
            }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 1.0)
                silent.set(ContinuousClock.now)
                kill(agent.processIdentifier, SIGSTOP)
            }
        }
        let stoppedAt = try #require(silent.get(), "the watch ended before the agent was stopped: \(report.ending)")
        guard case .agentSilent(let silence) = report.ending else {
            Issue.record("ended with \(report.ending)")
            return
        }
        #expect(silence > .milliseconds(700))
        let latency = Self.seconds(report.detectedAt - stoppedAt)
        #expect(latency >= 0 && latency < 1.0, "detected \(latency) s after SIGSTOP")
        #expect(report.answered >= 3, "heartbeats were answered before")
        kill(agent.processIdentifier, SIGCONT)
        _ = platform
        await agent.stop(grace: .zero)
    }

    @Test(
        "time the QEMU process waited for a host CPU does not count as silence, up to the starvation limit",
        .timeLimit(.minutes(3)))
    func starvedIsNotSilent() async throws {
        let agent = try FakeAgent()
        defer { agent.close() }
        // The stand-in and a second busy loop share one CPU: each waits on the run queue about half the time.
        let cpu = "\(ProcessInfo.processInfo.activeProcessorCount - 1)"
        let standIn = try QEMUProcess.start(["taskset", "-c", cpu, "sh", "-c", "while :; do :; done"])
        let rival = try QEMUProcess.start(["taskset", "-c", cpu, "sh", "-c", "while :; do :; done"])
        // Both are killed and reaped when the test lets go of them (QEMUProcess's deinit).
        let exit = try ProcessExitNotifier(pid: standIn.processIdentifier)
        agent.goSilent()
        let settings = InstanceWatch.Settings(
            pingInterval: .milliseconds(100), answerTimeout: .milliseconds(500), starvedLimit: .seconds(8))
        let start = ContinuousClock.now
        let result = await watch(settings, agent: agent, exit: exit)
        guard case .agentSilent = result.ending else {
            Issue.record("ended with \(result.ending)")
            return
        }
        let waited = Self.seconds(result.detectedAt - start)
        // Without the run-queue allowance this would be 0.5 s; with about half the time spent waiting, about 1 s.
        #expect(waited > 0.7, "found silent after \(waited) s although the stand-in waited for a CPU")
        #expect(waited < 8.5, "the starvation limit bounds the wait: \(waited) s")
        #expect(RunQueueWaitProbe.readable(pid: standIn.processIdentifier))
    }

    @Test("a stop request ends the watch within an interval; a healthy agent is never reported", .timeLimit(.minutes(3)))
    func stopRequested() async throws {
        let agent = try FakeAgent()
        defer { agent.close() }
        let child = try QEMUProcess.start(["sleep", "600"])
        let exit = try ProcessExitNotifier(pid: child.processIdentifier)
        let flag = StopFlag()
        let settings = InstanceWatch.Settings(pingInterval: .milliseconds(50), answerTimeout: .milliseconds(700))
        async let report = watch(settings, agent: agent, exit: exit, stop: { flag.value })
        // 4 s at 50 ms: about 80 pings on an idle host, and ten answers even when a loaded CI host schedules the
        // watch and the agent late.
        try await Task.sleep(for: .seconds(4))
        let asked = ContinuousClock.now
        flag.set()
        let result = await report
        #expect(result.ending == .stopRequested)
        #expect(Self.seconds(result.detectedAt - asked) < 0.5)
        #expect(result.answered >= 10)
        #expect(child.isRunning)
        await child.stop(grace: .zero)
    }

    @Test("the exit notifier wakes for a child's exit but leaves its status to be collected")
    func exitNotifier() async throws {
        let child = try QEMUProcess.start(["sh", "-c", "exit 7"])
        let notifier = try ProcessExitNotifier(pid: child.processIdentifier)
        let woke = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: notifier.wait(timeout: .seconds(30))) }
        }
        #expect(woke)
        #expect(notifier.exit != nil)
        #expect(await child.waitForExit(timeout: .seconds(5)) == 7)
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var value: Bool { lock.withLock { flag } }
}

/// Whether the kernel exposes per-thread run-queue waits for a process (the starvation allowance needs it).
enum RunQueueWaitProbe {
    static func readable(pid: Int32) -> Bool {
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return false }
        return threads.contains { FileManager.default.fileExists(atPath: "/proc/\(pid)/task/\($0)/schedstat") }
    }
}

/// A value shared between threads.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ new: Value) { lock.withLock { value = new } }
    func get() -> Value { lock.withLock { value } }
}
