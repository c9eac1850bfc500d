/// TPMS_ATTEST, the structure a TPM signs when it quotes PCRs or certifies a key
/// (TPM 2.0 Library Part 2, §10.12.12 Table 131, and §10.12.1–§10.12.8 for its members).
///
/// A value type with the fields a verifier needs; ``init(marshalled:)`` and ``marshalled()`` convert
/// to and from the TPM's wire format through libtss2-mu, so what cmk reads is what the TSS reads.
public struct TPMSAttest: Sendable, Hashable {
    /// TPM_GENERATED_VALUE ("\xFFTCG"): the only magic a TPM ever puts into a structure it signs.
    public static let generatedValue: UInt32 = 0xFF54_4347

    /// TPMI_ST_ATTEST (Part 2 §6.9, Table 19).
    public enum AttestationType: UInt16, Sendable, Hashable {
        case certify = 0x8017
        case quote = 0x8018
        case sessionAudit = 0x8016
        case commandAudit = 0x8015
        case time = 0x8019
        case creation = 0x801A
        case nvCertify = 0x8014
    }

    /// TPMS_CLOCK_INFO (Part 2 §10.11.1).
    public struct ClockInfo: Sendable, Hashable {
        public var clock: UInt64
        public var resetCount: UInt32
        public var restartCount: UInt32
        public var safe: Bool
        public init(clock: UInt64, resetCount: UInt32, restartCount: UInt32, safe: Bool) {
            self.clock = clock
            self.resetCount = resetCount
            self.restartCount = restartCount
            self.safe = safe
        }
    }

    /// TPMS_PCR_SELECTION (Part 2 §10.6.2): one hash bank and the PCRs chosen in it.
    public struct PCRSelection: Sendable, Hashable {
        /// TPMI_ALG_HASH, e.g. 0x000B for SHA-256.
        public var hashAlgorithm: UInt16
        /// The bitmap: bit `i % 8` of byte `i / 8` selects PCR `i` (at most 4 bytes).
        public var bitmap: [UInt8]

        public init(hashAlgorithm: UInt16, bitmap: [UInt8]) {
            self.hashAlgorithm = hashAlgorithm
            self.bitmap = bitmap
        }

        /// Creates a selection of the given PCR indices with a 3-byte bitmap (PCRs 0–23).
        public init(hashAlgorithm: UInt16, pcrs: [Int]) {
            var bitmap = [UInt8](repeating: 0, count: 3)
            for pcr in pcrs where pcr >= 0 && pcr < 24 { bitmap[pcr / 8] |= 1 << UInt8(pcr % 8) }
            self.init(hashAlgorithm: hashAlgorithm, bitmap: bitmap)
        }

        /// The selected PCR indices in ascending order.
        public var pcrs: [Int] {
            bitmap.enumerated().flatMap { index, byte in
                (0..<8).filter { byte & (1 << UInt8($0)) != 0 }.map { index * 8 + $0 }
            }
        }
    }

    /// The type-specific body (TPMU_ATTEST).
    public enum Attested: Sendable, Hashable {
        /// TPMS_QUOTE_INFO: the PCR selection and the digest of the selected PCR values.
        case quote(pcrSelection: [PCRSelection], pcrDigest: [UInt8])
        /// TPMS_CERTIFY_INFO: the certified object's Name and qualified Name.
        case certify(name: [UInt8], qualifiedName: [UInt8])

        var type: AttestationType {
            switch self {
            case .quote: .quote
            case .certify: .certify
            }
        }
    }

    public var magic: UInt32
    /// TPM2B_NAME of the signing key, qualified by its hierarchy.
    public var qualifiedSigner: [UInt8]
    /// TPM2B_DATA supplied by the caller: the verifier's nonce.
    public var extraData: [UInt8]
    public var clockInfo: ClockInfo
    public var firmwareVersion: UInt64
    public var attested: Attested

    /// The attestation type, which follows from the body.
    public var type: AttestationType { attested.type }

    public init(
        magic: UInt32 = TPMSAttest.generatedValue, qualifiedSigner: [UInt8], extraData: [UInt8],
        clockInfo: ClockInfo, firmwareVersion: UInt64, attested: Attested
    ) {
        self.magic = magic
        self.qualifiedSigner = qualifiedSigner
        self.extraData = extraData
        self.clockInfo = clockInfo
        self.firmwareVersion = firmwareVersion
        self.attested = attested
    }
}
