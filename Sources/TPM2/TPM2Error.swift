/// Why a TPM 2.0 structure could not be marshalled, unmarshalled or accepted: the TPM2 module's error.
public struct TPM2Error: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The TSS marshalling library rejected the structure; `nativeCode` holds its TSS2_RC.
        public static let marshalling = Code("marshalling")
        /// A field exceeds the capacity the TPM 2.0 specification gives it.
        public static let fieldTooLarge = Code("field-too-large")
        /// The structure is of a kind cmk does not handle.
        public static let unsupported = Code("unsupported")
        /// The structure was not produced by a TPM (TPMS_ATTEST.magic is not TPM_GENERATED_VALUE).
        public static let notTPMGenerated = Code("not-tpm-generated")
        /// Bytes followed the structure.
        public static let trailingBytes = Code("trailing-bytes")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// The TSS2 response code behind the failure, when one exists.
    public let nativeCode: UInt32?
    public let location: String

    public init(_ code: Code, _ reason: String, nativeCode: UInt32? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.location = "\(file):\(line)"
    }

    public var description: String {
        if let nativeCode {
            return "\(reason) [\(code); \(TPM2ResponseCode(nativeCode))]"
        }
        return "\(reason) [\(code)]"
    }
}
