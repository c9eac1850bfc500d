/// Why the audit log could not be opened, written, read or reported on: the AuditLog module's one error.
///
/// A damaged chain is not an error: ``AuditLog/verify(trustedKey:externalCheckpoints:)`` returns it as a
/// result. Errors are for what stops the log from working at all (the database, the key, bad input).
public struct AuditLogError: Error, Sendable, Hashable, CustomStringConvertible {
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

        /// SQLite failed (the native code is SQLite's extended result code).
        public static let database = Code("database")
        /// The database was written by a newer cmk, or its schema is not the audit log's.
        public static let unsupportedSchema = Code("unsupported-schema")
        /// The checkpoint signing key is missing, unreadable or not a P-384 key.
        public static let signingKey = Code("signing-key")
        /// The key file or key folder can be read or written by someone other than its owner.
        public static let insecurePermissions = Code("insecure-permissions")
        /// The log was opened without a signing key, and the operation needs one (append, checkpoint).
        public static let noSigningKey = Code("no-signing-key")
        /// An entry to append, a query or report option is not valid.
        public static let invalidArgument = Code("invalid-argument")
        /// A stored record or checkpoint cannot be decoded (run verify: the log has likely been tampered with).
        public static let malformedRecord = Code("malformed-record")
        /// A value could not be encoded (JSON) for storage or a report.
        public static let encoding = Code("encoding")
        /// A file could not be read or written.
        public static let fileSystem = Code("file-system")
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
