/// Why the coordinator could not read the host, place an instance, change its state or keep its records: the
/// Coordinator module's one error.
///
/// `CommandError` (running a host tool) predates this type and stays separate; new failures use this one.
public struct CoordinatorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases never break a caller's `switch`.
    public struct Code: Sendable, Hashable, CustomStringConvertible, Codable {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        public init(from decoder: any Decoder) throws { name = try decoder.singleValueContainer().decode(String.self) }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(name)
        }

        /// A host file under /sys or /proc could not be read.
        public static let hostFileUnreadable = Code("host-file-unreadable")
        /// A host file under /sys or /proc does not hold what the kernel writes there.
        public static let malformedHostFile = Code("malformed-host-file")
        /// The host has not enough free CPUs or memory for the request (the reason says what is free).
        public static let insufficientResources = Code("insufficient-resources")
        /// A request, a name or an option is not valid.
        public static let invalidArgument = Code("invalid-argument")
        /// The life cycle does not allow the requested change of state.
        public static let illegalTransition = Code("illegal-transition")
        /// Another coordinator process holds the state folder's lock.
        public static let stateLocked = Code("state-locked")
        /// A live instance already has the requested name.
        public static let nameInUse = Code("name-in-use")
        /// No instance has the given id or name.
        public static let unknownInstance = Code("unknown-instance")
        /// The stored partitions contradict each other (a CPU in two exclusive partitions): the store was
        /// changed by something other than cmk.
        public static let inconsistentStore = Code("inconsistent-store")
        /// SQLite failed (the native code is SQLite's extended result code).
        public static let database = Code("database")
        /// The instance store was written by a newer cmk.
        public static let unsupportedSchema = Code("unsupported-schema")
        /// A file or folder of the state folder could not be created, opened or locked.
        public static let fileSystem = Code("file-system")
        /// A launch could not proceed: no agent, no profile, a child that did not answer as the protocol says.
        public static let launch = Code("launch")
        /// QEMU's machine protocol (QMP) failed or QEMU refused a command.
        public static let qmp = Code("qmp")
        /// The handover to an admitted child could not complete: a secret or volume the policy names is missing, the
        /// child refused or did not confirm a delivery, or a vCPU could not be pinned.
        public static let handover = Code("handover")
        /// The confidential platform asked for cannot run on this host or in this build (the reason names what is
        /// missing).
        public static let platformUnavailable = Code("platform-unavailable")
        /// The policy cannot appraise what the chosen platform produces (evidence of another kind, or a real
        /// platform under a policy that trusts a simulated root).
        public static let policyPlatformMismatch = Code("policy-platform-mismatch")
        /// The operator stopped the instance (`cmk stop`) before it was admitted.
        public static let stoppedByOperator = Code("stopped-by-operator")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// SQLite's extended result code or `errno`, when one was involved.
    public let nativeCode: Int32?
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, nativeCode: Int32? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
