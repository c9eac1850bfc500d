public import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// What reconciliation needs to know about, and do to, the host's processes: whether a recorded process still
/// runs, which QEMU processes carry an instance's marker, and how to end one that is not this process's child.
///
/// ``host`` reads `/proc` and sends real signals; tests give their own closures.
public struct ProcessTable: Sendable {
    /// Whether the process with this pid exists, is not a zombie, and started at this time.
    public var isRunning: @Sendable (_ pid: Int32, _ startTime: UInt64) -> Bool
    /// The running QEMU processes whose command line carries `-uuid <instanceID>` (``QEMUInstanceMarker``).
    public var markedQEMUs: @Sendable (_ instanceID: String) -> [ProcessIdentity]
    /// Ends a process (SIGKILL) and waits until it is gone; true when it is gone.
    public var kill: @Sendable (ProcessIdentity) -> Bool

    public init(
        isRunning: @escaping @Sendable (Int32, UInt64) -> Bool,
        markedQEMUs: @escaping @Sendable (String) -> [ProcessIdentity] = { _ in [] },
        kill: @escaping @Sendable (ProcessIdentity) -> Bool = { _ in false }
    ) {
        self.isRunning = isRunning
        self.markedQEMUs = markedQEMUs
        self.kill = kill
    }

    /// The real process table.
    public static let host = ProcessTable(
        isRunning: { ProcessIdentity.isRunning(pid: $0, startTime: $1) },
        markedQEMUs: { QEMUInstanceMarker.runningQEMUs(instanceID: $0) },
        kill: { QEMUInstanceMarker.killAndWait($0, timeout: .seconds(5)) })
}

/// How a QEMU started for an instance is recognised in the process table, whoever started it: its command line
/// carries `-uuid <instance id>` (QEMU's SMBIOS system UUID, which no launch measurement covers). A pid alone is not
/// enough (it is reused), nor is a name (another QEMU on the host is not ours); pid, start time and this marker are.
public enum QEMUInstanceMarker {
    /// The arguments that mark a QEMU as the instance's.
    public static func arguments(instanceID: String) -> [String] { ["-uuid", instanceID] }

    /// Whether an argv (as `/proc/<pid>/cmdline` gives it) is a QEMU (or the `taskset` about to become one) marked
    /// with `instanceID`.
    public static func matches(_ argv: [String], instanceID: String) -> Bool {
        guard argv.contains(where: { ($0 as NSString).lastPathComponent.hasPrefix("qemu-system-") }) else {
            return false
        }
        return zip(argv, argv.dropFirst()).contains { $0 == "-uuid" && $1.lowercased() == instanceID.lowercased() }
    }

    /// The running processes in `/proc` marked with `instanceID` (zombies excluded).
    public static func runningQEMUs(instanceID: String, procRoot: URL = URL(fileURLWithPath: "/proc"))
        -> [ProcessIdentity]
    {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: procRoot.path) else { return [] }
        var found: [ProcessIdentity] = []
        for entry in entries {
            guard let pid = Int32(entry), pid > 0 else { continue }
            guard let raw = FileManager.default.contents(atPath: procRoot.appendingPathComponent("\(entry)/cmdline").path),
                !raw.isEmpty
            else { continue }
            let argv = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard matches(argv, instanceID: instanceID), let identity = ProcessIdentity.of(pid: pid, procRoot: procRoot)
            else { continue }
            found.append(identity)
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// SIGKILL to `identity` (only if it is still that process), then waits up to `timeout` until it is gone (its
    /// new parent reaps it); true when it is gone.
    public static func killAndWait(_ identity: ProcessIdentity, timeout: Duration) -> Bool {
        guard ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime) else { return true }
        Glibc.kill(identity.pid, SIGKILL)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime) { return true }
            usleep(5_000)
        }
        return !ProcessIdentity.isRunning(pid: identity.pid, startTime: identity.startTime)
    }
}
