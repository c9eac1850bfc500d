/// Why a guest image could not be built, read or measured: the one error type of the GuestImage module.
public struct GuestImageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new codes do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// No profile of that name exists in the profiles folder.
        public static let unknownProfile = Code("unknown-profile")
        /// A profile's files are missing or break the format (guest-kernels/README.md).
        public static let badProfile = Code("bad-profile")
        /// An input file (kernel, busybox, a module, the agent, the firmware) is missing or unreadable.
        public static let missingInput = Code("missing-input")
        /// An archive entry cannot be written (bad path, duplicate, too large), or an archive cannot be read.
        public static let badArchive = Code("bad-archive")
        /// A kernel module is unknown, unreadable, or its dependencies cannot be ordered.
        public static let badModule = Code("bad-module")
        /// An executable cannot be read as ELF, or its shared libraries cannot be resolved.
        public static let badExecutable = Code("bad-executable")
        /// A helper program (ldd, xz, zstd, gzip, busybox) failed.
        public static let toolFailed = Code("tool-failed")
        /// The image files cannot be written.
        public static let outputFailed = Code("output-failed")
        /// The expected launch measurement cannot be computed for this firmware and image.
        public static let measurementFailed = Code("measurement-failed")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// Where in cmk the error was raised.
    public let location: String

    /// Creates an error; `location` is filled in from the call site.
    public init(_ code: Code, _ reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
