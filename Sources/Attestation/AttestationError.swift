/// Why evidence, a certificate or a trust anchor was not accepted: the Attestation module's one error.
///
/// Every code is distinct and stable, so callers (and the CLI's JSON) can act on it; ``reason`` is a
/// sentence for a person; ``nativeCode`` keeps a C library's own error code where one was involved.
public struct AttestationError: Error, Sendable, Hashable, CustomStringConvertible {
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

        /// DER, PEM or a certificate structure could not be parsed.
        public static let malformedCertificate = Code("malformed-certificate")
        /// A certificate uses a signature algorithm or parameters cmk does not accept.
        public static let unsupportedSignatureAlgorithm = Code("unsupported-signature-algorithm")
        /// A signature did not verify.
        public static let badSignature = Code("bad-signature")
        /// The certificate's issuer name is not its issuer's subject name.
        public static let issuerMismatch = Code("issuer-mismatch")
        /// The validation time lies before notBefore.
        public static let certificateNotYetValid = Code("certificate-not-yet-valid")
        /// The validation time lies after notAfter.
        public static let certificateExpired = Code("certificate-expired")
        /// A certificate carries a critical extension cmk does not understand.
        public static let unhandledCriticalExtension = Code("unhandled-critical-extension")
        /// A public key could not be read, or is not of the kind the chain requires.
        public static let unsupportedPublicKey = Code("unsupported-public-key")
        /// A trust anchor file is missing, unreadable or does not match its manifest.
        public static let trustAnchor = Code("trust-anchor")
        /// A chain ends in a root cmk was not told to trust.
        public static let untrustedRoot = Code("untrusted-root")
        /// A C library failed for a reason other than a bad signature.
        public static let cryptoLibrary = Code("crypto-library")

        // Evidence.
        /// An input file could not be read.
        public static let unreadableInput = Code("unreadable-input")
        /// The evidence itself could not be parsed (wrong size, unknown version, reserved bytes set ...).
        public static let malformedEvidence = Code("malformed-evidence")
        /// The report's signature does not verify under the endorsement key (VCEK/VLEK, PCK ...).
        public static let reportSignatureInvalid = Code("report-signature-invalid")
        /// The product could not be determined, or is not one cmk knows.
        public static let unknownProduct = Code("unknown-product")
        /// Two sources name different products (CPUID bytes, certificate, caller).
        public static let productMismatch = Code("product-mismatch")
        /// The endorsement certificate's TCB differs from the TCB the report says it was signed at.
        public static let tcbMismatch = Code("tcb-mismatch")
        /// The VCEK's hwID is not the report's CHIP_ID.
        public static let chipIDMismatch = Code("chip-id-mismatch")
        /// An AMD certificate extension is missing, malformed, or unknown.
        public static let endorsementExtension = Code("endorsement-extension")
        /// The endorsement key is of the wrong kind for the report (a VLEK for a VCEK-signed report ...).
        public static let signerMismatch = Code("signer-mismatch")
        /// Collateral the verification needs (VCEK, chain, CRL ...) is not available.
        public static let missingCollateral = Code("missing-collateral")
        /// A certificate in the chain is listed in its issuer's CRL.
        public static let certificateRevoked = Code("certificate-revoked")
        /// A CRL is malformed, not signed by the root, or outside its validity.
        public static let crlInvalid = Code("crl-invalid")

        // TPM 2.0 quotes (vTPM / swtpm); see docs/tpm-verification.md.
        /// The quote's signature does not verify under the attestation key (AK).
        public static let tpmQuoteSignatureInvalid = Code("tpm-quote-signature-invalid")
        /// The quote's extraData is not the verifier's nonce: a replayed or foreign quote.
        public static let tpmNonceMismatch = Code("tpm-nonce-mismatch")
        /// The quoted PCR digest is not the digest of the PCR values the event log replays to: the PCRs were
        /// extended by something the log does not show, or the log's digests were changed.
        public static let tpmPCRDigestMismatch = Code("tpm-pcr-digest-mismatch")
        /// PCR values presented beside the quote do not hash to its PCR digest.
        public static let tpmPCRValuesMismatch = Code("tpm-pcr-values-mismatch")
        /// An event's data does not hash to the digest logged for it: the event log was edited after the fact.
        public static let tpmEventDataMismatch = Code("tpm-event-data-mismatch")
        /// The quote selects a PCR or bank the event log cannot account for.
        public static let tpmPCRSelectionUnsupported = Code("tpm-pcr-selection-unsupported")
        /// The attestation key is not a restricted, fixedTPM signing key, or its type and the signature disagree.
        public static let tpmAKUnsuitable = Code("tpm-ak-unsuitable")
        /// SHA-256 of the AK's TPMT_PUBLIC is not in the TEE report's REPORT_DATA.
        public static let tpmAKNotBoundToReport = Code("tpm-ak-not-bound-to-report")
        /// Credential activation did not prove the AK lives in the TPM of the endorsement key.
        public static let tpmAKNotBoundToEK = Code("tpm-ak-not-bound-to-ek")
        /// The EK certificate does not chain to the pinned vTPM root, or certifies another key than the EK.
        public static let tpmEKCertificateInvalid = Code("tpm-ek-certificate-invalid")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// A C library's native error code, when one was involved.
    public let nativeCode: UInt64?
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, nativeCode: UInt64? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }

    /// Whether the error is about the input's form (unreadable, unparseable) or cmk's own setup (its trust
    /// anchors) rather than a verdict on the evidence: the CLI exits 2 for these and 1 for evidence that parsed
    /// but did not verify.
    public var isInputError: Bool {
        [.unreadableInput, .malformedEvidence, .malformedCertificate, .trustAnchor].contains(code)
    }
}
