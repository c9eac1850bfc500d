import Glibc

/// Why the guest agent could not do what it was asked: the one error type of the GuestAgent module.
public struct GuestAgentError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The command line is wrong.
        public static let usage = Code("usage")
        /// The interface a provider needs is not on this machine (no device, no configfs-tsm provider, no port).
        public static let unavailable = Code("unavailable")
        /// A system call on a file, socket or port failed.
        public static let io = Code("io")
        /// The guest driver refused or failed an ioctl (the errno and, for SEV, EXITINFO2 are kept).
        public static let device = Code("device")
        /// The firmware, the TDX module or the simulated platform answered with an error status.
        public static let firmware = Code("firmware")
        /// Another process wrote to the configfs-tsm entry while the report was generated.
        public static let concurrentWriter = Code("concurrent-writer")
        /// A response did not have the layout its ABI defines, or was for another REPORT_DATA.
        public static let malformedResponse = Code("malformed-response")
        /// No answer came in time.
        public static let timeout = Code("timeout")
        /// The peer sent a malformed frame or a message that does not belong on this port.
        public static let protocolViolation = Code("protocol-violation")
        /// The peer closed the port.
        public static let peerClosed = Code("peer-closed")
    }

    /// What went wrong.
    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// The errno of the failing system call, when there was one (the native code, kept as it was).
    public let systemError: Int32?
    /// Where in cmk the error was raised.
    public let location: String

    /// Creates an error; `location` is filled in from the call site.
    public init(_ code: Code, _ reason: String, systemError: Int32? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.systemError = systemError
        self.location = "\(file):\(line)"
    }

    /// An error for a failed system call, with the errno's name and text in the reason.
    static func system(
        _ code: Code, _ what: String, errno number: Int32, file: String = #fileID, line: Int = #line
    ) -> GuestAgentError {
        GuestAgentError(code, "\(what): \(describeErrno(number))", systemError: number, file: file, line: line)
    }

    public var description: String { "\(reason) [\(code)]" }
}

/// `ENOENT (No such file or directory)`: the symbolic name where we know it, and the C library's text.
func describeErrno(_ number: Int32) -> String {
    let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
        ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EINVAL: "EINVAL", ENOTTY: "ENOTTY", ENOSPC: "ENOSPC", EPIPE: "EPIPE",
        ENOTSOCK: "ENOTSOCK", ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", ENOTEMPTY: "ENOTEMPTY",
        EOPNOTSUPP: "EOPNOTSUPP", ETIMEDOUT: "ETIMEDOUT",
    ]
    let text = strerror(number).map { String(cString: $0) } ?? "unknown error"
    return "\(names[number] ?? "errno \(number)") (\(text))"
}
