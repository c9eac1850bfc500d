public import Foundation
public import GuestProtocol
#if canImport(Glibc)
    import Glibc
#endif

/// Turns "this child process exited" into a readable descriptor, so one `poll(2)` can wait for the process and a
/// socket together.
///
/// A dedicated thread blocks in `waitid(P_PID, pid, WEXITED | WNOWAIT)`: it wakes the moment the process exits but
/// does not reap it, so ``QEMUProcess`` still collects the status. Then it writes one byte into a pipe whose read
/// end is ``descriptor``. Only for children of this process. The pipe is closed when the last user (the waiting
/// thread included) lets go, so the descriptor is never reused under a reader.
public final class ProcessExitNotifier: @unchecked Sendable {
    /// Readable once the process has exited.
    public let descriptor: Int32
    private let writeEnd: Int32
    public let pid: Int32
    private let lock = NSLock()
    private var exitedAt: ContinuousClock.Instant?
    private var exitedDate: Date?

    /// Starts watching the child `pid`.
    public init(pid: Int32) throws(CoordinatorError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw CoordinatorError(.launch, "pipe: \(String(cString: strerror(errno)))", nativeCode: errno)
        }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        descriptor = ends[0]
        writeEnd = ends[1]
        self.pid = pid
        Thread.detachNewThread { [self] in
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            // Exited (or ECHILD: already reaped by someone else, so gone all the same).
            lock.withLock {
                exitedAt = ContinuousClock.now
                exitedDate = Date()
            }
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
        }
    }

    /// Starts watching `process`, which need not be a child of this process (an instance re-adopted after its
    /// supervisor died): `waitid` cannot wait for it, so a thread looks at its pid and start time every
    /// `interval` (10 ms: an exit is seen well within the second crash detection allows).
    public init(watching process: ProcessIdentity, interval: Duration = .milliseconds(10)) throws(CoordinatorError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw CoordinatorError(.launch, "pipe: \(String(cString: strerror(errno)))", nativeCode: errno)
        }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        descriptor = ends[0]
        writeEnd = ends[1]
        pid = process.pid
        let microseconds = useconds_t(max(1, interval.components.attoseconds / 1_000_000_000_000))
        Thread.detachNewThread { [self] in
            while ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) { usleep(microseconds) }
            lock.withLock {
                exitedAt = ContinuousClock.now
                exitedDate = Date()
            }
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
        }
    }

    deinit {
        close(descriptor)
        close(writeEnd)
    }

    /// When the exit was seen (monotonic and wall clock); nil while the process runs.
    public var exit: (instant: ContinuousClock.Instant, date: Date)? {
        lock.withLock { exitedAt.map { ($0, exitedDate!) } }
    }

    /// Waits up to `timeout` for the exit, blocking the calling thread; true when it happened.
    public func wait(timeout: Duration) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = max(.zero, ContinuousClock.now.duration(to: deadline)).components
            let milliseconds = Int32(clamping: left.seconds * 1000 + left.attoseconds / 1_000_000_000_000_000)
            let result = poll(&entry, 1, milliseconds)
            if result > 0 { return true }
            if result == 0 || (result < 0 && errno != EINTR) { return exit != nil }
        }
    }
}

/// Watches an admitted instance: its QEMU (``ProcessExitNotifier``) and its agent (a `ping` every
/// ``Settings/pingInterval`` on the control port, which must be answered within ``Settings/answerTimeout``), until
/// one of them fails or a stop is requested. ``run(connection:exit:stopRequested:)`` blocks: call it on a
/// dedicated thread, never on a concurrency thread.
public struct InstanceWatch: Sendable {
    /// How often to ask and how long an answer may take.
    public struct Settings: Sendable, Hashable, Codable {
        public var pingInterval: Duration
        /// The longest time without a `pong` before the agent counts as unresponsive — time in which QEMU could
        /// run: time its threads spent waiting for a host CPU does not count (see ``run(connection:exit:stopRequested:)``).
        public var answerTimeout: Duration
        /// The longest wall-clock time without a `pong`, however starved QEMU was.
        public var starvedLimit: Duration

        public init(pingInterval: Duration, answerTimeout: Duration, starvedLimit: Duration? = nil) {
            self.pingInterval = pingInterval
            self.answerTimeout = answerTimeout
            self.starvedLimit = starvedLimit ?? answerTimeout * 10
        }

        /// 100 ms between pings, 700 ms without an answer: an unresponsive agent is found within 0.8 s.
        public static let `default` = Settings(pingInterval: .milliseconds(100), answerTimeout: .milliseconds(700))
    }

    /// Why watching ended.
    public enum Ending: Sendable, Hashable {
        /// QEMU exited.
        case qemuExited
        /// The agent did not answer a ping for this long.
        case agentSilent(Duration)
        /// The control port failed (closed by QEMU, a malformed frame, a `failure` from the agent) while QEMU runs.
        case controlFailed(String)
        /// The caller asked to stop.
        case stopRequested
    }

    /// What watching saw.
    public struct Report: Sendable {
        public let ending: Ending
        /// When the ending was noticed.
        public let detectedAt: ContinuousClock.Instant
        public let detectedDate: Date
        /// Pings answered, and the slowest round trip.
        public let answered: Int
        public let slowestAnswer: Duration
    }

    public let settings: Settings

    public init(settings: Settings = .default) { self.settings = settings }

    /// Watches until something ends it; blocking.
    ///
    /// Silence is measured in time QEMU could have used: when the answer timeout has passed, the run-queue wait of
    /// QEMU's threads since the last answer (`/proc/<pid>/task/*/schedstat`, the busiest thread) is subtracted, so a
    /// child starved of CPU by an overloaded host is not declared dead, up to ``Settings/starvedLimit``. A stopped
    /// QEMU (SIGSTOP) or a hung agent in a guest that gets the CPU whenever it wants it waits on no run queue, and is
    /// found at the timeout.
    ///
    /// `other` receives every message that is not a heartbeat answer (channel frames and events for the relay).
    public func run(
        connection: FramedConnection, exit: ProcessExitNotifier, stopRequested: @Sendable () -> Bool,
        other: (GuestMessage) -> Void = { _ in }
    ) -> Report {
        let clock = ContinuousClock()
        var sequence: UInt64 = 0
        var sent: [UInt64: ContinuousClock.Instant] = [:]
        var lastAnswer = clock.now
        var waitAtLastAnswer = RunQueueWait.read(pid: exit.pid)
        var nextPing = clock.now
        var answered = 0
        var slowest = Duration.zero
        func report(_ ending: Ending) -> Report {
            Report(
                ending: ending, detectedAt: clock.now, detectedDate: Date(), answered: answered, slowestAnswer: slowest)
        }
        /// A closed or broken port usually means QEMU is going away: give its exit a moment to show.
        func controlFailed(_ reason: String) -> Report {
            if exit.wait(timeout: .milliseconds(200)) { return report(.qemuExited) }
            return report(.controlFailed(reason))
        }
        while true {
            if stopRequested() { return report(.stopRequested) }
            if exit.exit != nil { return report(.qemuExited) }
            let now = clock.now
            let silence = now - lastAnswer
            var deadline = lastAnswer + settings.answerTimeout
            if silence > settings.answerTimeout {
                // Check QEMU once more: a dead QEMU is the better reason.
                if exit.wait(timeout: .zero) { return report(.qemuExited) }
                // Answers already waiting in the socket count: this thread may itself have been kept off a CPU.
                var drained = false
                while let waiting = try? connection.receive(timeout: .zero, watching: exit.descriptor),
                    case .message(let message) = waiting
                {
                    if case .pong(_, let answeredSequence) = message, sent.removeValue(forKey: answeredSequence) != nil {
                        sent = sent.filter { $0.key > answeredSequence }
                        drained = true
                        answered += 1
                    } else if case .pong = message {
                    } else {
                        other(message)
                    }
                }
                if drained {
                    lastAnswer = clock.now
                    waitAtLastAnswer = RunQueueWait.read(pid: exit.pid)
                    continue
                }
                let starved = RunQueueWait.since(waitAtLastAnswer, pid: exit.pid)
                if silence - starved > settings.answerTimeout || silence > settings.starvedLimit {
                    return report(.agentSilent(silence))
                }
                // QEMU waited for a host CPU: that time does not count; look again a little later.
                deadline = min(lastAnswer + settings.starvedLimit, now + (settings.answerTimeout - (silence - starved)))
            }
            if now >= nextPing {
                sequence += 1
                do {
                    try connection.send(.ping(version: GuestMessage.heartbeatVersion, sequence: sequence))
                } catch {
                    return controlFailed("cannot send a heartbeat: \(error)")
                }
                sent[sequence] = now
                nextPing = now + settings.pingInterval
            }
            let wake = min(nextPing, deadline + .milliseconds(1))
            let received: FramedConnection.WatchedReceive
            do {
                received = try connection.receive(timeout: max(.zero, now.duration(to: wake)), watching: exit.descriptor)
            } catch {
                return controlFailed("\(error)")
            }
            switch received {
            case .watchedReadable:
                return report(.qemuExited)
            case .timedOut:
                continue
            case .message(.pong(_, let answeredSequence)):
                guard let asked = sent.removeValue(forKey: answeredSequence) else { continue }
                // Older pings are answered by this one too: the agent answers in order.
                sent = sent.filter { $0.key > answeredSequence }
                let now = clock.now
                lastAnswer = max(lastAnswer, asked)
                if now - asked > slowest { slowest = now - asked }
                lastAnswer = now
                waitAtLastAnswer = RunQueueWait.read(pid: exit.pid)
                answered += 1
            case .message(.failure(let reason)):
                return controlFailed("the agent reported: \(reason)")
            case .message(let message):
                // Channel frames and events go to the relay; anything else is noted there and dropped.
                other(message)
                continue
            }
        }
    }
}

/// How long a process's threads have waited on a run queue (runnable, but no host CPU free), from
/// `/proc/<pid>/task/<tid>/schedstat` (second field, nanoseconds).
enum RunQueueWait {
    /// Each thread's total wait so far, by thread id; empty when unreadable.
    static func read(pid: Int32) -> [Int: UInt64] {
        let folder = "/proc/\(pid)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [:] }
        var waits: [Int: UInt64] = [:]
        for thread in threads {
            guard let id = Int(thread),
                let text = try? String(contentsOfFile: "\(folder)/\(thread)/schedstat", encoding: .utf8)
            else { continue }
            let fields = text.split(separator: " ")
            if fields.count >= 2, let wait = UInt64(fields[1]) { waits[id] = wait }
        }
        return waits
    }

    /// The longest any one thread has waited since `earlier`.
    static func since(_ earlier: [Int: UInt64], pid: Int32) -> Duration {
        var longest: UInt64 = 0
        for (thread, wait) in read(pid: pid) {
            let before = earlier[thread] ?? 0
            if wait > before { longest = max(longest, wait - before) }
        }
        return .nanoseconds(Int64(clamping: longest))
    }
}
