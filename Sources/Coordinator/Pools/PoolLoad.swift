public import Foundation

/// Turns cumulative counters (requests per backend, or CPU ticks per process) into a rate over the last interval.
///
/// A key seen for the first time contributes nothing (no interval yet); a key that went away is forgotten; a counter
/// that went backwards (a restarted process) restarts from its new value.
public struct CounterRate: Sendable {
    private var previous: [String: Double] = [:]
    private var previousTime: Date?

    public init() {}

    /// The summed rate per second of every key since the previous call (0 on the first call).
    public mutating func rate(_ counters: [String: Double], at time: Date) -> Double {
        defer {
            previous = counters
            previousTime = time
        }
        guard let previousTime, time > previousTime else { return 0 }
        let elapsed = time.timeIntervalSince(previousTime)
        var delta = 0.0
        for (key, value) in counters {
            if let before = previous[key], value >= before { delta += value - before }
        }
        return delta / elapsed
    }
}

/// CPU time of host processes, from `/proc/<pid>/stat` (fields 14 `utime` and 15 `stime`, in clock ticks; they cover
/// every thread of the process, so a QEMU's vCPU threads are included).
public enum ProcessCPUTime {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    public static let ticksPerSecond: Double = {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? Double(ticks) : 100
    }()

    /// `utime + stime` in ticks parsed from the text of `/proc/<pid>/stat`, or nil when the text is not one.
    ///
    /// The command name (field 2) is in parentheses and may hold spaces and parentheses, so fields are counted from
    /// the last `)`.
    public static func ticks(statText: String) -> Double? {
        guard let close = statText.lastIndex(of: ")") else { return nil }
        let fields = statText[statText.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return user + system
    }

    /// CPU seconds used so far by `pid`, or nil when it does not run.
    public static func seconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let ticks = ticks(statText: text)
        else { return nil }
        return ticks / ticksPerSecond
    }
}
