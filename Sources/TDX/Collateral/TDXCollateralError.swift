public import Foundation

/// Why a piece of Intel TDX collateral (TCB Info, QE Identity) or the inputs to a TCB evaluation could not be read.
///
/// Parsing collateral throws this error; appraising a quote against collateral never does, it returns a
/// ``TDXTCBEvaluation`` whose outcome names the failed step.
public struct TDXCollateralError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases do not break callers that switch on it.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The text is not well-formed JSON (this includes input that ends early).
        public static let malformedJSON = Code("malformed-json")
        /// Bytes other than whitespace follow the outer JSON object.
        public static let trailingBytes = Code("trailing-bytes")
        /// An object holds the same key twice, so two readers could see different values.
        public static let duplicateKey = Code("duplicate-key")
        /// A required field is absent.
        public static let missingField = Code("missing-field")
        /// The outer object holds a field the PCS format does not define (it would not be covered by the signature).
        public static let unexpectedField = Code("unexpected-field")
        /// A field has the wrong JSON type, length, range or encoding (hex, date).
        public static let invalidValue = Code("invalid-value")
        /// The collateral declares an id, version or type cmk does not evaluate.
        public static let unsupported = Code("unsupported")
        /// A TCB level names a status that is not one Intel defines for that structure.
        public static let unknownTCBStatus = Code("unknown-tcb-status")
    }

    /// What went wrong.
    public let code: Code
    /// The field, as a JSON path (`tcbInfo.tcbLevels[2].tcb.pcesvn`) or an input name.
    public let field: String
    /// The byte offset in the document where the problem was seen, when the problem is positional.
    public let offset: Int?
    /// A sentence a person can act on.
    public let reason: String
    /// Where in cmk the error was raised.
    public let location: String

    /// Creates an error; `location` is filled in from the call site.
    public init(
        _ code: Code, field: String, offset: Int? = nil, _ reason: String,
        file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.field = field
        self.offset = offset
        self.reason = reason
        self.location = "\(file):\(line)"
    }

    public var description: String {
        let position = offset.map { " at byte \($0)" } ?? ""
        return "\(field)\(position): \(reason) [\(code)]"
    }
}

/// Whether a piece of collateral may be used at an evaluation time (TDX.md §6 B/C: QVL rejects collateral once
/// the evaluation time is past `nextUpdate`; cmk also refuses collateral issued after the evaluation time).
public enum TDXCollateralValidity: Sendable, Hashable {
    /// `issueDate ≤ time ≤ nextUpdate`.
    case valid
    /// The evaluation time is before `issueDate`: the clock or the collateral is wrong.
    case notYetValid(issueDate: Date)
    /// The evaluation time is after `nextUpdate`: fetch fresh collateral from Intel PCS or the PCCS cache.
    case expired(nextUpdate: Date)

    /// Whether the collateral may be used.
    public var isValid: Bool { self == .valid }

    static func check(at time: Date, issueDate: Date, nextUpdate: Date) -> Self {
        if time < issueDate { return .notYetValid(issueDate: issueDate) }
        if time > nextUpdate { return .expired(nextUpdate: nextUpdate) }
        return .valid
    }
}
