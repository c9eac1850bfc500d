/// The guest POLICY of an SNP launch (SEV-SNP ABI spec, Table 9 "Guest Policy Structure"), decoded.
///
/// Bit 17 is reserved and must be one; bits 63:26 are reserved and must be zero. A report whose policy
/// breaks either rule is rejected when parsed, because the meaning of such a policy is unknown.
public struct SNPGuestPolicy: Sendable, Hashable, CustomStringConvertible {
    public let raw: UInt64

    public enum Bit {
        public static let smt: UInt64 = 1 << 16
        public static let reservedMustBeOne: UInt64 = 1 << 17
        public static let migrationAgent: UInt64 = 1 << 18
        public static let debug: UInt64 = 1 << 19
        public static let singleSocket: UInt64 = 1 << 20
        public static let cxlAllowed: UInt64 = 1 << 21
        public static let memAES256XTS: UInt64 = 1 << 22
        public static let raplDisabled: UInt64 = 1 << 23
        public static let ciphertextHiding: UInt64 = 1 << 24
        public static let pageSwapDisabled: UInt64 = 1 << 25
        /// Bits 63:26.
        public static let reservedMustBeZero: UInt64 = ~((1 << 26) - 1)
    }

    public init(raw: UInt64) { self.raw = raw }

    /// The minimum ABI minor version the guest requires.
    public var abiMinor: UInt8 { UInt8(truncatingIfNeeded: raw) }
    /// The minimum ABI major version the guest requires.
    public var abiMajor: UInt8 { UInt8(truncatingIfNeeded: raw >> 8) }
    public var smtAllowed: Bool { raw & Bit.smt != 0 }
    public var reservedBitIsOne: Bool { raw & Bit.reservedMustBeOne != 0 }
    public var migrationAgentAllowed: Bool { raw & Bit.migrationAgent != 0 }
    public var debugAllowed: Bool { raw & Bit.debug != 0 }
    public var singleSocketRequired: Bool { raw & Bit.singleSocket != 0 }
    public var cxlAllowed: Bool { raw & Bit.cxlAllowed != 0 }
    public var memAES256XTSRequired: Bool { raw & Bit.memAES256XTS != 0 }
    public var raplDisabledRequired: Bool { raw & Bit.raplDisabled != 0 }
    public var ciphertextHidingRequired: Bool { raw & Bit.ciphertextHiding != 0 }
    public var pageSwapDisabled: Bool { raw & Bit.pageSwapDisabled != 0 }
    /// Set bits in the must-be-zero range 63:26.
    public var unknownBits: UInt64 { raw & Bit.reservedMustBeZero }

    /// The names of the set flags, in bit order, as cmk prints them.
    public var flagNames: [String] {
        [
            (Bit.smt, "SMT"), (Bit.reservedMustBeOne, "RESERVED_MBO"), (Bit.migrationAgent, "MIGRATE_MA"),
            (Bit.debug, "DEBUG"), (Bit.singleSocket, "SINGLE_SOCKET"), (Bit.cxlAllowed, "CXL_ALLOW"),
            (Bit.memAES256XTS, "MEM_AES_256_XTS"), (Bit.raplDisabled, "RAPL_DIS"),
            (Bit.ciphertextHiding, "CIPHERTEXT_HIDING"), (Bit.pageSwapDisabled, "PAGE_SWAP_DISABLE"),
        ].filter { raw & $0.0 != 0 }.map(\.1)
    }

    public var description: String { "0x" + String(raw, radix: 16) }
}

/// PLATFORM_INFO (SEV-SNP ABI spec, Table 23): how the platform was configured when the report was made.
///
/// Bits beyond those cmk names are kept in ``unknownBits`` rather than rejected: AMD adds bits in new
/// firmware (bit 6 appeared on Turin), and whether an unknown bit is acceptable is a policy decision.
public struct SNPPlatformInfo: Sendable, Hashable, CustomStringConvertible {
    public let raw: UInt64

    public enum Bit {
        public static let smtEnabled: UInt64 = 1 << 0
        public static let tsmeEnabled: UInt64 = 1 << 1
        public static let eccEnabled: UInt64 = 1 << 2
        public static let raplDisabled: UInt64 = 1 << 3
        public static let ciphertextHidingEnabled: UInt64 = 1 << 4
        public static let aliasCheckComplete: UInt64 = 1 << 5
        public static let iommuWriteSafe: UInt64 = 1 << 6
        public static let sevTIOEnabled: UInt64 = 1 << 7
        static let known: UInt64 = (1 << 8) - 1
    }

    public init(raw: UInt64) { self.raw = raw }

    public var smtEnabled: Bool { raw & Bit.smtEnabled != 0 }
    public var tsmeEnabled: Bool { raw & Bit.tsmeEnabled != 0 }
    public var eccEnabled: Bool { raw & Bit.eccEnabled != 0 }
    public var raplDisabled: Bool { raw & Bit.raplDisabled != 0 }
    public var ciphertextHidingEnabled: Bool { raw & Bit.ciphertextHidingEnabled != 0 }
    public var aliasCheckComplete: Bool { raw & Bit.aliasCheckComplete != 0 }
    public var iommuWriteSafe: Bool { raw & Bit.iommuWriteSafe != 0 }
    public var sevTIOEnabled: Bool { raw & Bit.sevTIOEnabled != 0 }
    /// Set bits cmk has no name for (63:8).
    public var unknownBits: UInt64 { raw & ~Bit.known }

    public var flagNames: [String] {
        [
            (Bit.smtEnabled, "SMT_EN"), (Bit.tsmeEnabled, "TSME_EN"), (Bit.eccEnabled, "ECC_EN"),
            (Bit.raplDisabled, "RAPL_DIS"), (Bit.ciphertextHidingEnabled, "CIPHERTEXT_HIDING_DRAM_EN"),
            (Bit.aliasCheckComplete, "ALIAS_CHECK_COMPLETE"), (Bit.iommuWriteSafe, "IOMMU_WRITE_SAFE"),
            (Bit.sevTIOEnabled, "SEV_TIO_EN"),
        ].filter { raw & $0.0 != 0 }.map(\.1)
    }

    public var description: String { "0x" + String(raw, radix: 16) }
}

/// SIGNER_INFO (a.k.a. KEY_INFO, SEV-SNP ABI spec Table 23, offset 0x48): which key signed the report.
public struct SNPSignerInfo: Sendable, Hashable {
    /// SIGNING_KEY values (bits 4:2).
    public enum SigningKey: UInt8, Sendable, Hashable, Codable {
        case vcek = 0
        case vlek = 1
        case none = 7

        public var name: String {
            switch self {
            case .vcek: "VCEK"
            case .vlek: "VLEK"
            case .none: "NONE"
            }
        }
    }

    public let raw: UInt32
    /// Bit 0: AUTHOR_KEY_EN, the ID block was signed by an author key.
    public var authorKeyEnabled: Bool { raw & 1 != 0 }
    /// Bit 1: MASK_CHIP_KEY, the host masked the VCEK (the report is then unsigned).
    public var maskChipKey: Bool { raw & 2 != 0 }
    public let signingKey: SigningKey

    public init(raw: UInt32, signingKey: SigningKey) {
        self.raw = raw
        self.signingKey = signingKey
    }
}
