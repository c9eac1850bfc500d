public import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A running QEMU (or `taskset` exec'ing QEMU: the same process) with a defined teardown: ``stop(grace:)`` sends
/// SIGTERM, waits, then SIGKILLs and waits again. Waiting polls with `Task.sleep`, never blocking a concurrency
/// thread. A process still running when the last reference goes away is killed.
///
/// QEMU is started with `posix_spawn`, an empty signal mask and default signal dispositions. Foundation's `Process`
/// passes on the caller's mask, and a Swift process (its Dispatch threads, a test runner) blocks SIGTERM: QEMU then
/// never sees the SIGTERM that asks it to shut down, and only SIGKILL ends it. QEMU gets standard input, output and
/// error and no other descriptor of the caller's.
public final class QEMUProcess: Sendable {
    /// The bytes of standard output and standard error kept for diagnosis.
    public static let outputLimit = 64 << 10

    public let processIdentifier: Int32
    public let commandLine: [String]
    public let startedAt: ContinuousClock.Instant
    private let state: SpawnedProcess

    private init(state: SpawnedProcess, commandLine: [String], startedAt: ContinuousClock.Instant) {
        self.processIdentifier = state.pid
        self.commandLine = commandLine
        self.startedAt = startedAt
        self.state = state
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; Swift's Glibc module does not export it),
    /// looked up once. Nil on an older C library, where the descriptors are passed on as before.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(
            symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Closes every descriptor from `lowest` up in the spawned process.
    static func addCloseFrom(_ actions: inout posix_spawn_file_actions_t, _ lowest: Int32) {
        _ = closeFrom?(&actions, lowest)
    }

    /// Starts `commandLine` (from a ``QEMULaunchCommand``) with standard input from /dev/null and standard output and
    /// error collected.
    public static func start(_ commandLine: [String]) throws(QEMULaunchError) -> QEMUProcess {
        guard let executable = commandLine.first, let path = CommandRunner.which(executable) else {
            throw QEMULaunchError(
                .cannotStart, "\(commandLine.first ?? "(empty command)") is not installed (scripts/setup)")
        }
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            throw QEMULaunchError(.cannotStart, "pipe: \(String(cString: strerror(errno)))")
        }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        // Nothing else the caller has open reaches QEMU: posix_spawn passes on every descriptor not marked
        // close-on-exec, and a long-lived QEMU holding the write end of someone else's pipe (another child's output,
        // read to its end on another thread) keeps that reader waiting for as long as QEMU runs.
        Self.addCloseFrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in Int32(1)..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let arguments = [path] + commandLine.dropFirst()
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let startedAt = ContinuousClock.now
        let result = posix_spawn(&pid, path, &actions, &attributes, &argv, environ)
        close(writeEnd)
        guard result == 0 else {
            close(readEnd)
            throw QEMULaunchError(.cannotStart, "cannot start \(path): \(String(cString: strerror(result)))")
        }
        let state = SpawnedProcess(pid: pid)
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                state.appendOutput(buffer[0..<count])
            }
            close(readEnd)
        }
        return QEMUProcess(state: state, commandLine: commandLine, startedAt: startedAt)
    }

    deinit { state.killAndReap() }

    public var isRunning: Bool { state.exitStatus == nil }

    /// The exit code, or 128 + the signal number when a signal ended QEMU (the shell's convention), -1 when another
    /// part of the process reaped it first; nil while running.
    public var exitStatus: Int32? { state.exitStatus }

    /// What QEMU printed so far (both streams, the first ``outputLimit`` bytes).
    public var output: String { state.outputText }

    /// Waits until the process exits or `timeout` passes; returns the status, or nil if it is still running.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = state.exitStatus { return status }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Stops QEMU: SIGTERM (QEMU stops the guest and exits), up to `grace` to exit, then SIGKILL. Returns once the
    /// process is gone and reaped, with its status. Calling it again, or after QEMU exited, returns at once.
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) async -> Int32 {
        if let status = state.exitStatus { return status }
        state.signal(SIGTERM)
        if let status = await waitForExit(timeout: grace) { return status }
        state.signal(SIGKILL)
        while true {
            if let status = state.exitStatus { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// The spawned process and its collected output, under a lock. The process is reaped (waitpid) by whoever asks for
/// its status first after it exits, so no zombie stays behind and its pid is never signalled after reuse.
private final class SpawnedProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var collected: [UInt8] = []
    private var status: Int32?

    init(pid: pid_t) { self.pid = pid }

    /// Reaps the process if it has exited; the caller holds the lock.
    private func reap() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        if result < 0 && errno == ECHILD {
            // Someone else reaped it (a process-wide SIGCHLD handler): it is gone, its status unknown.
            status = -1
            return status
        }
        guard result == pid else { return nil }
        let signal = raw & 0x7F
        status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
        return status
    }

    var exitStatus: Int32? { lock.withLock { reap() } }

    func appendOutput(_ chunk: ArraySlice<UInt8>) {
        lock.withLock {
            if collected.count < QEMUProcess.outputLimit {
                collected += chunk.prefix(QEMUProcess.outputLimit - collected.count)
            }
        }
    }

    var outputText: String { lock.withLock { String(decoding: collected, as: UTF8.self) } }

    func signal(_ signal: Int32) {
        lock.withLock {
            if reap() == nil { kill(pid, signal) }
        }
    }

    func killAndReap() {
        lock.withLock {
            guard reap() == nil else { return }
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            status = 128 + SIGKILL
        }
    }
}

/// The guest's console as QEMU writes it to the serial log file.
public struct SerialConsoleLog: Sendable, Hashable {
    public let url: URL

    public init(url: URL) { self.url = url }

    /// The log so far (invalid UTF-8 repaired).
    public func text() -> String {
        guard let data = FileManager.default.contents(atPath: url.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The first line holding `marker`, without its line ending.
    public func firstLine(containing marker: String) -> String? {
        text().split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            .first(where: { $0.contains(marker) }).map(String.init)
    }
}
