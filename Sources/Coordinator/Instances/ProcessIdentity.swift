public import Foundation

/// A process told apart from any later process that gets the same pid: its pid and its start time.
///
/// The start time is field 22 of `/proc/<pid>/stat` (`starttime`, clock ticks after boot, proc(5)). A pid is
/// reused after its process ends; the start time of the new process differs, so a stored identity never
/// matches a stranger.
public struct ProcessIdentity: Sendable, Codable, Hashable, CustomStringConvertible {
    public let pid: Int32
    /// Clock ticks after boot when the process started.
    public let startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    public var description: String { "pid \(pid) (started at tick \(startTime))" }

    /// What `/proc/<pid>/stat` says about a process: its state letter and its start time.
    public struct Stat: Sendable, Hashable {
        /// `R`, `S`, `D`, `Z` (zombie: it has exited, its parent has not collected it), `T`, `X` ...
        public let state: Character
        public let startTime: UInt64

        public init(state: Character, startTime: UInt64) {
            self.state = state
            self.startTime = startTime
        }
    }

    /// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold spaces and
    /// parentheses, so the fields after it are counted from the last ')'.
    public static func parseStat(_ text: String, file: String) throws(CoordinatorError) -> Stat {
        guard let close = text.lastIndex(of: ")"), text.firstIndex(of: "(") != nil else {
            throw CoordinatorError(.malformedHostFile, "\(file) has no '(command)' field")
        }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
        guard fields.count >= 20, fields[0].count == 1, let startTime = UInt64(fields[19]) else {
            throw CoordinatorError(.malformedHostFile, "\(file) does not have a state and a start time (field 22)")
        }
        return Stat(state: fields[0].first!, startTime: startTime)
    }

    /// The identity of the running process `pid`; nil when there is none (or it is a zombie).
    public static func of(pid: Int32, procRoot: URL = URL(fileURLWithPath: "/proc")) -> ProcessIdentity? {
        let file = procRoot.appendingPathComponent("\(pid)/stat").path
        guard pid > 0, let text = try? String(contentsOfFile: file, encoding: .utf8),
            let stat = try? parseStat(text, file: file), stat.state != "Z", stat.state != "X"
        else { return nil }
        return ProcessIdentity(pid: pid, startTime: stat.startTime)
    }

    /// Whether the process `pid` exists, has not exited, and started at `startTime`: the test reconciliation
    /// uses against the real process table.
    public static func isRunning(pid: Int32, startTime: UInt64) -> Bool {
        of(pid: pid)?.startTime == startTime
    }
}
