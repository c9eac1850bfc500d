import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("telling our QEMU from a process that reuses its pid")
struct ProcessIdentityTests {
    @Test("field 22 of /proc/<pid>/stat is found even when the command name holds spaces and parentheses")
    func parsesStat() throws {
        let plain =
            "29766 (cat) R 29758 29758 26224 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 1096522 3133440 390 "
            + "18446744073709551615 94408711274496 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        #expect(
            try ProcessIdentity.parseStat(plain, file: "/proc/29766/stat") == .init(state: "R", startTime: 1_096_522))
        let tricky = "4242 (qemu (cmk) x) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 1 1 1"
        #expect(try ProcessIdentity.parseStat(tricky, file: "/proc/4242/stat") == .init(state: "S", startTime: 777))
        for broken in [
            "", "4242 qemu S 1", "4242 (qemu) S 1 2 3", "4242 (qemu) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x",
        ] {
            #expect {
                try ProcessIdentity.parseStat(broken, file: "/proc/4242/stat")
            } throws: { ($0 as? CoordinatorError)?.reason.contains("/proc/4242/stat") == true }
        }
    }

    @Test(
        "a running child is running; after it exits (zombie or reaped), or with another start time, it is not",
        .timeLimit(.minutes(3)))
    func liveness() throws {
        let child = try ChildProcess.sleep()
        let identity = try #require(ProcessIdentity.of(pid: child.pid))
        #expect(ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime))
        #expect(!ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime + 1))
        // Killed but not yet collected: a zombie counts as gone.
        kill(child.pid, SIGKILL)
        var zombie = false
        for _ in 0..<500 where !zombie {
            zombie =
                (try? String(contentsOfFile: "/proc/\(child.pid)/stat", encoding: .utf8))
                .flatMap { try? ProcessIdentity.parseStat($0, file: "stat") }?.state == "Z"
            if !zombie { Thread.sleep(forTimeInterval: 0.01) }
        }
        if zombie { #expect(!ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime)) }
        child.reap()
        #expect(!ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime))
        #expect(ProcessIdentity.of(pid: -1) == nil)
    }
}

/// A real child process for liveness tests, started with fork/exec so that no Foundation thread reaps it behind
/// the test's back.
final class ChildProcess {
    let pid: Int32
    private var reaped = false

    private init(pid: Int32) { self.pid = pid }

    /// `sleep 600`.
    static func sleep() throws -> ChildProcess { try spawn(["/usr/bin/sleep", "600"]) }

    /// Any program, by absolute path.
    static func spawn(_ arguments: [String]) throws -> ChildProcess {
        var pid: Int32 = 0
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let status = posix_spawn(&pid, arguments[0], nil, nil, &argv, environ)
        guard status == 0 else { throw CocoaError(.executableLoad) }
        return ChildProcess(pid: pid)
    }

    /// Kills and collects the child.
    func reap() {
        guard !reaped else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true
    }

    deinit { reap() }
}
