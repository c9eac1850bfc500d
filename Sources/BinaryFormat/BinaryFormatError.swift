/// Why a binary structure could not be read: the one error type of the BinaryFormat module.
public struct BinaryFormatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The input ended before the field did.
        public static let truncated = Code("truncated")
        /// A reserved range held a non-zero byte.
        public static let reservedNonZero = Code("reserved-non-zero")
        /// Bytes followed the end of the structure.
        public static let trailingBytes = Code("trailing-bytes")
        /// A field held a value the format does not allow.
        public static let invalidValue = Code("invalid-value")
        /// The structure declares a version or kind this implementation does not know.
        public static let unsupported = Code("unsupported")
    }

    /// What went wrong.
    public let code: Code
    /// The field being read, as the specification names it.
    public let field: String
    /// The absolute offset of the offending byte.
    public let offset: Int
    /// A sentence a person can act on.
    public let reason: String
    /// Where in cmk the error was raised.
    public let location: String

    /// Creates an error; `location` is filled in from the call site.
    public init(
        _ code: Code, field: String, offset: Int, _ reason: String,
        file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.field = field
        self.offset = offset
        self.reason = reason
        self.location = "\(file):\(line)"
    }

    public var description: String {
        "\(field) at offset 0x\(String(offset, radix: 16)): \(reason) [\(code)]"
    }
}
