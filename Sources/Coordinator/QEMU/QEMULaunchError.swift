/// Why a child could not be launched, watched or stopped under QEMU.
public struct QEMULaunchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new codes do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A launch setting is out of range or malformed (vCPUs, memory, a blob of the wrong length, a CPU list).
        public static let invalidSetting = Code("invalid-setting")
        /// QEMU (or taskset) could not be started.
        public static let cannotStart = Code("cannot-start")
        /// A host socket for a guest port could not be created.
        public static let socketFailed = Code("socket-failed")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
