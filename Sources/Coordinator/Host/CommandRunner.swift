public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished child process left behind. A non-zero exit is a result, not an error.
public struct CommandResult: Sendable, Hashable {
    public let exitCode: Int32
    public let standardOutput: [UInt8]
    public let standardError: [UInt8]
    /// Whether cmk stopped the process because it outlived its time limit.
    public let timedOut: Bool

    public var standardOutputText: String { String(decoding: standardOutput, as: UTF8.self) }
    public var standardErrorText: String { String(decoding: standardError, as: UTF8.self) }
}

/// Why a command could not be run at all.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public let executable: String
    public let reason: String
    public var description: String { "cannot run \(executable): \(reason)" }
}

/// Runs short-lived host tools (QEMU probes, `swtpm --version` ...) with a time limit, an output limit and a
/// defined teardown: SIGTERM when the limit passes, SIGKILL two seconds later.
public enum CommandRunner {
    /// Resolves an executable name through `PATH`; returns nil when it is not installed.
    public static func which(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `executable` with `arguments`, standard input closed.
    ///
    /// - Parameters:
    ///   - timeout: the wall-clock limit; past it the process is terminated and `timedOut` is true.
    ///   - outputLimit: bytes kept of each output stream; the rest is read and discarded.
    public static func run(
        _ executable: String, _ arguments: [String], timeout: Duration, outputLimit: Int = 1 << 20
    ) async throws(CommandError) -> CommandResult {
        guard let path = which(executable) else {
            throw CommandError(executable: executable, reason: "not found in PATH")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let box = ProcessBox(process)
        do {
            try process.run()
        } catch {
            throw CommandError(executable: executable, reason: "\(error)")
        }
        // Blocking reads and the wait run on threads of their own, never on a shared queue whose few workers
        // they could all occupy (on a 2-core host the timeout would then never get to run).
        let result: CommandResult = await withCheckedContinuation { continuation in
            let collected = OutputBox()
            let readers = DispatchGroup()
            for (index, pipe) in [stdout, stderr].enumerated() {
                readers.enter()
                Thread.detachNewThread {
                    let handle = pipe.fileHandleForReading
                    var kept: [UInt8] = []
                    while true {
                        let chunk = handle.availableData
                        if chunk.isEmpty { break }
                        if kept.count < outputLimit { kept += chunk.prefix(outputLimit - kept.count) }
                    }
                    collected.set(index, kept)
                    readers.leave()
                }
            }
            let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            Thread.detachNewThread {
                let deadline = Date().addingTimeInterval(seconds)
                while box.process.isRunning {
                    if Date() >= deadline { box.terminateIfRunning() }
                    Thread.sleep(forTimeInterval: 0.01)
                }
                readers.wait()
                continuation.resume(returning: CommandResult(
                    exitCode: box.process.terminationStatus, standardOutput: collected.get(0),
                    standardError: collected.get(1), timedOut: box.didTimeOut))
            }
        }
        return result
    }
}

/// Shares a Process between the waiting thread and the timeout; access is serialised by a lock.
private final class ProcessBox: @unchecked Sendable {
    let process: Process
    private let lock = NSLock()
    private var timedOut = false
    private var terminatedAt: Date?

    init(_ process: Process) { self.process = process }

    var didTimeOut: Bool { lock.withLock { timedOut } }

    /// SIGTERM once; SIGKILL if the process is still there two seconds later.
    func terminateIfRunning() {
        let now = Date()
        lock.withLock {
            guard process.isRunning else { return }
            if !timedOut {
                timedOut = true
                terminatedAt = now
                process.terminate()
            } else if let terminatedAt, now.timeIntervalSince(terminatedAt) > 2 {
                kill(process.processIdentifier, SIGKILL)
            }
        }
    }
}

private final class OutputBox: @unchecked Sendable {
    private let lock = NSLock()
    private var outputs: [[UInt8]] = [[], []]
    func set(_ index: Int, _ bytes: [UInt8]) { lock.withLock { outputs[index] = bytes } }
    func get(_ index: Int) -> [UInt8] { lock.withLock { outputs[index] } }
}
