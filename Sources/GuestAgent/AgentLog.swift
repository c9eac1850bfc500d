import Glibc

/// Where the agent says what it does: one line per event, on standard error (the child's console) by default.
///
/// Lines never carry secrets: no private key, no handed-over secret, no evidence bytes (sizes and kinds only).
public struct AgentLog: Sendable {
    let sink: @Sendable (String) -> Void

    /// A log that hands each line to `sink`.
    public init(_ sink: @escaping @Sendable (String) -> Void) { self.sink = sink }

    /// Lines on standard error, prefixed `cmk-guest: `.
    public static let standardError = AgentLog { line in
        let bytes = Array("cmk-guest: \(line)\n".utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// Discards every line.
    public static let silent = AgentLog { _ in }

    /// Logs one line.
    public func write(_ line: String) { sink(line) }
}
