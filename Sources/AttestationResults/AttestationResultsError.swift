/// Why an attestation result (EAR as JWT or CWT), its CBOR or JSON, or the signing key was not accepted: the
/// AttestationResults module's one error.
///
/// Every code is distinct and stable, so callers (and the CLI's JSON) can act on it; ``reason`` is a sentence for a
/// person; ``nativeCode`` keeps libcbor's error code or an `errno` where one was involved.
public struct AttestationResultsError: Error, Sendable, Hashable, CustomStringConvertible {
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

        // CBOR.
        /// The bytes are not well-formed CBOR (libcbor's own error code is kept).
        public static let malformed = Code("malformed")
        /// Well-formed CBOR of a kind cmk does not accept (float, undefined, indefinite length ...).
        public static let unsupported = Code("unsupported")
        /// Bytes follow the top-level item.
        public static let trailingBytes = Code("trailing-bytes")
        /// Nesting deeper than cmk allows.
        public static let tooDeep = Code("too-deep")
        /// libcbor could not allocate.
        public static let allocation = Code("allocation")
        /// The CBOR is well formed but is not the structure expected (e.g. not a COSE_Sign1).
        public static let invalidStructure = Code("invalid-structure")

        // JSON and JWS.
        /// The JSON is not well formed, repeats an object member, or nests too deeply.
        public static let malformedJSON = Code("malformed-json")
        /// A JWT is not three base64url parts, or its header is not a JSON object.
        public static let malformedToken = Code("malformed-token")
        /// The token names an algorithm other than ES384 (`none`, `HS256`, `ES256` ...) or critical extensions.
        public static let algorithmNotAllowed = Code("algorithm-not-allowed")
        /// The token's key id names no key in the verifier's key set.
        public static let unknownKey = Code("unknown-key")
        /// The signature does not verify under the key the token names.
        public static let badSignature = Code("bad-signature")

        // EAR claims.
        /// The token's `exp` lies before the validation time.
        public static let expired = Code("expired")
        /// The token's `iat` lies after the validation time (beyond the allowed clock skew).
        public static let issuedInFuture = Code("issued-in-future")
        /// A claim is missing, of the wrong type, or out of range.
        public static let invalidClaims = Code("invalid-claims")
        /// `eat_profile` names a profile cmk does not read.
        public static let unknownProfile = Code("unknown-profile")
        /// An appraisal's status is better than the worst tier of its trustworthiness vector.
        public static let statusBetterThanTrustVector = Code("status-better-than-trust-vector")

        // The signing key.
        /// The key file or its folder cannot be read, written or parsed.
        public static let keyFile = Code("key-file")
        /// The key file is readable or writable by group or others.
        public static let insecureKeyFile = Code("insecure-key-file")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// libcbor's error code or position, or an `errno`, when one was involved.
    public let nativeCode: Int?
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, nativeCode: Int? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
