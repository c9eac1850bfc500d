/// Why a policy file was not accepted: the AttestationPolicy module's one error.
///
/// Loading fails at the first problem it cannot recover from and names the file, the line and the key path
/// (`snp.tcb.milan.reported.fmc`), so the person editing the file knows where to look.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible.
    public struct Code: Sendable, Hashable, CustomStringConvertible, Codable {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The file could not be read.
        public static let unreadable = Code("unreadable-policy")
        /// The file is not valid YAML.
        public static let syntax = Code("yaml-syntax")
        /// A key the policy language does not have (often a typo).
        public static let unknownKey = Code("unknown-key")
        /// A required key is absent.
        public static let missingKey = Code("missing-key")
        /// A key appears twice in one mapping.
        public static let duplicateKey = Code("duplicate-key")
        /// A value has the wrong type (a string where a number belongs ...).
        public static let wrongType = Code("wrong-type")
        /// A value is of the right type but impossible (an SVN above 255, a digest of the wrong length ...).
        public static let invalidValue = Code("invalid-value")
        /// A TCB names a component its product does not have (FMC on Milan or Genoa).
        public static let wrongProduct = Code("wrong-product")
        /// A waiver has no expiry date, or the policy is otherwise unsafe to load.
        public static let unsafe = Code("unsafe-policy")
        /// A reference artifact (firmware, kernel ...) cannot be read or measured.
        public static let referenceArtifact = Code("reference-artifact")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// The file, when the policy came from one.
    public let file: String?
    /// 1-based line of the offending key or value, when known.
    public let line: Int?
    /// Dotted key path, e.g. `snp.guest-policy.debug`.
    public let keyPath: String?

    public init(_ code: Code, _ reason: String, file: String? = nil, line: Int? = nil, keyPath: String? = nil) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
        self.keyPath = keyPath
    }

    /// The same error, attributed to a file.
    func `in`(file: String?) -> PolicyError {
        PolicyError(code, reason, file: file ?? self.file, line: line, keyPath: keyPath)
    }

    public var description: String {
        var location = file ?? "policy"
        if let line { location += ":\(line)" }
        let key = keyPath.map { " '\($0)'" } ?? ""
        return "\(location):\(key) \(reason) [\(code)]"
    }
}
