import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Runs a helper program (ldd, xz, zstd, gzip, busybox) to completion: pipes drained and the exit awaited on threads
/// of their own (never `waitUntilExit` on a concurrency thread), a time limit with a defined teardown (SIGTERM, then
/// SIGKILL two seconds later). A non-zero exit is a result, not an error.
enum HostTool {
    struct Outcome: Sendable {
        let status: Int32
        let output: [UInt8]
        let errorOutput: [UInt8]
        let timedOut: Bool

        var errorText: String { String(decoding: errorOutput, as: UTF8.self) }
    }

    /// Resolves `name` through `PATH` (a name with a slash is taken as a path).
    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func run(
        _ executable: String, _ arguments: [String], timeout: Duration = .seconds(120)
    )
        async throws(GuestImageError) -> Outcome
    {
        guard let path = which(executable) else {
            throw GuestImageError(
                .toolFailed, "\(executable) is not installed (not found in PATH); scripts/setup installs it")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        // The C locale, so that tools print the messages this module parses.
        process.environment = ProcessInfo.processInfo.environment.merging(["LC_ALL": "C"]) { _, new in new }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw GuestImageError(.toolFailed, "cannot start \(path): \(error)")
        }
        let box = RunningTool(process)
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return await withCheckedContinuation { continuation in
            let readers = DispatchGroup()
            for (index, pipe) in [stdout, stderr].enumerated() {
                readers.enter()
                Thread.detachNewThread {
                    box.store(index, pipe.fileHandleForReading.readDataToEndOfFile())
                    readers.leave()
                }
            }
            Thread.detachNewThread {
                let deadline = Date().addingTimeInterval(seconds)
                while box.process.isRunning {
                    if Date() >= deadline { box.terminate() }
                    Thread.sleep(forTimeInterval: 0.005)
                }
                readers.wait()
                continuation.resume(returning: box.outcome())
            }
        }
    }
}

/// The process and what it printed, shared between the reader threads and the waiter under a lock.
private final class RunningTool: @unchecked Sendable {
    let process: Process
    private let lock = NSLock()
    private var outputs: [Data] = [Data(), Data()]
    private var terminatedAt: Date?

    init(_ process: Process) { self.process = process }

    func store(_ index: Int, _ data: Data) { lock.withLock { outputs[index] = data } }

    /// SIGTERM once; SIGKILL when the process outlives it by two seconds.
    func terminate() {
        lock.withLock {
            guard process.isRunning else { return }
            if let terminatedAt {
                if Date().timeIntervalSince(terminatedAt) > 2 { kill(process.processIdentifier, SIGKILL) }
            } else {
                terminatedAt = Date()
                process.terminate()
            }
        }
    }

    func outcome() -> HostTool.Outcome {
        lock.withLock {
            HostTool.Outcome(
                status: process.terminationStatus, output: [UInt8](outputs[0]), errorOutput: [UInt8](outputs[1]),
                timedOut: terminatedAt != nil)
        }
    }
}
