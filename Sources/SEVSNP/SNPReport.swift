public import BinaryFormat

/// An SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI spec #56860, Table 23 "ATTESTATION_REPORT Structure"),
/// versions 2 to 5, exactly 1184 bytes, all integers little-endian.
///
/// Parsing rejects what cmk cannot vouch for: versions other than 2–5, a signature algorithm other than
/// ECDSA P-384 with SHA-384, a signing key other than VCEK or VLEK, a guest policy with its must-be-one bit
/// clear or must-be-zero bits set, and any non-zero byte in a reserved range (including the 24 high bytes of
/// each 72-byte signature component and the 368 reserved signature bytes). The signed bytes
/// [0x000, 0x2A0) are kept exactly as received.
public struct SNPReport: Sendable, Hashable {
    /// Offsets and sizes of every field (Table 23).
    public enum Layout {
        public static let size = 0x4A0
        public static let version = 0x000
        public static let guestSVN = 0x004
        public static let policy = 0x008
        public static let familyID = 0x010, familyIDSize = 16
        public static let imageID = 0x020, imageIDSize = 16
        public static let vmpl = 0x030
        public static let signatureAlgorithm = 0x034
        public static let currentTCB = 0x038
        public static let platformInfo = 0x040
        public static let signerInfo = 0x048
        public static let reserved04C = 0x04C, reserved04CSize = 4
        public static let reportData = 0x050, reportDataSize = 64
        public static let measurement = 0x090, measurementSize = 48
        public static let hostData = 0x0C0, hostDataSize = 32
        public static let idKeyDigest = 0x0E0, idKeyDigestSize = 48
        public static let authorKeyDigest = 0x110, authorKeyDigestSize = 48
        public static let reportID = 0x140, reportIDSize = 32
        public static let reportIDMA = 0x160, reportIDMASize = 32
        public static let reportedTCB = 0x180
        /// v3+: CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP; v2: reserved.
        public static let cpuidFamily = 0x188, cpuidModel = 0x189, cpuidStepping = 0x18A
        public static let reserved18B = 0x18B, reserved18BSize = 21
        public static let chipID = 0x1A0, chipIDSize = 64
        public static let committedTCB = 0x1E0
        public static let currentBuild = 0x1E8, currentMinor = 0x1E9, currentMajor = 0x1EA, reserved1EB = 0x1EB
        public static let committedBuild = 0x1EC, committedMinor = 0x1ED, committedMajor = 0x1EE, reserved1EF = 0x1EF
        public static let launchTCB = 0x1F0
        /// v5: LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR; before v5: reserved.
        public static let launchMitigationVector = 0x1F8, currentMitigationVector = 0x200
        public static let reserved208 = 0x208, reserved208Size = 0x2A0 - 0x208
        public static let signedSize = 0x2A0
        public static let signatureR = 0x2A0, signatureS = 0x2E8, signatureComponentSize = 72
        /// Significant little-endian bytes of each P-384 signature component; the other 24 must be zero.
        public static let signatureSignificantSize = 48
        public static let reservedSignature = 0x330, reservedSignatureSize = 0x4A0 - 0x330
    }

    /// The versions cmk parses. Version 4 has version 3's layout (firmware 1.55.31 emitted it).
    public static let supportedVersions: ClosedRange<UInt32> = 2...5
    /// SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384.
    public static let ecdsaP384SHA384: UInt32 = 1

    /// The CPUID identification carried by v3+ reports.
    public struct CPUID: Sendable, Hashable, Codable {
        public let family: UInt8
        public let model: UInt8
        public let stepping: UInt8
    }

    /// A firmware version MAJOR.MINOR.BUILD.
    public struct FirmwareVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
        public let major: UInt8
        public let minor: UInt8
        public let build: UInt8
        public var description: String { "\(major).\(minor).\(build)" }
        public static func < (a: Self, b: Self) -> Bool { (a.major, a.minor, a.build) < (b.major, b.minor, b.build) }
    }

    /// All 1184 bytes as received.
    public let bytes: [UInt8]
    public let version: UInt32
    public let guestSVN: UInt32
    public let policy: SNPGuestPolicy
    public let familyID: [UInt8]
    public let imageID: [UInt8]
    public let vmpl: UInt32
    public let signatureAlgorithm: UInt32
    public let currentTCB: SNPTCBVersion
    public let platformInfo: SNPPlatformInfo
    public let signerInfo: SNPSignerInfo
    public let reportData: [UInt8]
    public let measurement: [UInt8]
    public let hostData: [UInt8]
    public let idKeyDigest: [UInt8]
    public let authorKeyDigest: [UInt8]
    public let reportID: [UInt8]
    public let reportIDMA: [UInt8]
    public let reportedTCB: SNPTCBVersion
    /// CPUID identification (v3 and later); nil for v2.
    public let cpuid: CPUID?
    public let chipID: [UInt8]
    public let committedTCB: SNPTCBVersion
    public let currentVersion: FirmwareVersion
    public let committedVersion: FirmwareVersion
    public let launchTCB: SNPTCBVersion
    /// Mitigation vectors (v5 and later); nil before v5.
    public let launchMitigationVector: UInt64?
    public let currentMitigationVector: UInt64?
    /// The signature components r and s, big-endian, 48 bytes each.
    public let signatureR: [UInt8]
    public let signatureS: [UInt8]

    /// The bytes the signature covers: [0x000, 0x2A0).
    public var signedBytes: ArraySlice<UInt8> { bytes[0..<Layout.signedSize] }

    /// The signature as P-384 raw r ‖ s (big-endian), the form signature APIs take.
    public var rawSignature: [UInt8] { signatureR + signatureS }

    /// The product the CPUID bytes name (v3+), nil when absent or unknown.
    public var productFromCPUID: AMDProduct? {
        cpuid.flatMap { AMDProduct.identify(family: $0.family, model: $0.model) }
    }

    /// Whether the host masked CHIP_ID (it is then all zero).
    public var chipIDIsMasked: Bool { chipID.allSatisfy { $0 == 0 } }

    /// Parses a report.
    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        guard bytes.count == Layout.size else {
            throw BinaryFormatError(
                bytes.count < Layout.size ? .truncated : .trailingBytes, field: "ATTESTATION_REPORT",
                offset: min(bytes.count, Layout.size),
                "an SEV-SNP report is \(Layout.size) bytes; this input has \(bytes.count)")
        }
        var c = ByteCursor(bytes)
        let version = try c.readLittleEndian(UInt32.self, field: "VERSION")
        guard Self.supportedVersions.contains(version) else {
            throw BinaryFormatError(
                .unsupported, field: "VERSION", offset: Layout.version,
                "report version \(version) is not one cmk verifies (2, 3, 4 and 5 are)")
        }
        self.bytes = bytes
        self.version = version
        guestSVN = try c.readLittleEndian(field: "GUEST_SVN")
        policy = SNPGuestPolicy(raw: try c.readLittleEndian(field: "POLICY"))
        guard policy.reservedBitIsOne else {
            throw BinaryFormatError(.invalidValue, field: "POLICY", offset: Layout.policy, "reserved policy bit 17 must be one")
        }
        guard policy.unknownBits == 0 else {
            throw BinaryFormatError(
                .reservedNonZero, field: "POLICY", offset: Layout.policy,
                "reserved policy bits 63:26 are set (0x\(String(policy.unknownBits, radix: 16)))")
        }
        familyID = try c.readBytes(Layout.familyIDSize, field: "FAMILY_ID")
        imageID = try c.readBytes(Layout.imageIDSize, field: "IMAGE_ID")
        vmpl = try c.readLittleEndian(field: "VMPL")
        guard vmpl <= 3 else {
            throw BinaryFormatError(.invalidValue, field: "VMPL", offset: Layout.vmpl, "VMPL \(vmpl) is not 0 to 3")
        }
        signatureAlgorithm = try c.readLittleEndian(field: "SIGNATURE_ALGO")
        guard signatureAlgorithm == Self.ecdsaP384SHA384 else {
            throw BinaryFormatError(
                .unsupported, field: "SIGNATURE_ALGO", offset: Layout.signatureAlgorithm,
                "signature algorithm \(signatureAlgorithm) is not ECDSA P-384 with SHA-384 (1)")
        }
        currentTCB = SNPTCBVersion(raw: try c.readLittleEndian(field: "CURRENT_TCB"))
        platformInfo = SNPPlatformInfo(raw: try c.readLittleEndian(field: "PLATFORM_INFO"))
        let signer: UInt32 = try c.readLittleEndian(field: "SIGNER_INFO")
        guard signer >> 5 == 0 else {
            throw BinaryFormatError(.reservedNonZero, field: "SIGNER_INFO", offset: Layout.signerInfo, "reserved bits 31:5 are set")
        }
        let keyValue = UInt8((signer >> 2) & 0x7)
        guard let signingKey = SNPSignerInfo.SigningKey(rawValue: keyValue) else {
            throw BinaryFormatError(
                .unsupported, field: "SIGNER_INFO.SIGNING_KEY", offset: Layout.signerInfo,
                "signing key \(keyValue) is reserved (0 VCEK, 1 VLEK, 7 none)")
        }
        guard signingKey != .none else {
            throw BinaryFormatError(
                .unsupported, field: "SIGNER_INFO.SIGNING_KEY", offset: Layout.signerInfo,
                "the report is unsigned (signing key 7, MASK_CHIP_KEY): there is nothing to verify")
        }
        signerInfo = SNPSignerInfo(raw: signer, signingKey: signingKey)
        try c.readReserved(Layout.reserved04CSize, field: "reserved 0x04C")
        reportData = try c.readBytes(Layout.reportDataSize, field: "REPORT_DATA")
        measurement = try c.readBytes(Layout.measurementSize, field: "MEASUREMENT")
        hostData = try c.readBytes(Layout.hostDataSize, field: "HOST_DATA")
        idKeyDigest = try c.readBytes(Layout.idKeyDigestSize, field: "ID_KEY_DIGEST")
        authorKeyDigest = try c.readBytes(Layout.authorKeyDigestSize, field: "AUTHOR_KEY_DIGEST")
        reportID = try c.readBytes(Layout.reportIDSize, field: "REPORT_ID")
        reportIDMA = try c.readBytes(Layout.reportIDMASize, field: "REPORT_ID_MA")
        reportedTCB = SNPTCBVersion(raw: try c.readLittleEndian(field: "REPORTED_TCB"))
        if version >= 3 {
            cpuid = CPUID(
                family: try c.readUInt8(field: "CPUID_FAM_ID"), model: try c.readUInt8(field: "CPUID_MOD_ID"),
                stepping: try c.readUInt8(field: "CPUID_STEP"))
        } else {
            try c.readReserved(3, field: "reserved 0x188 (v2)")
            cpuid = nil
        }
        try c.readReserved(Layout.reserved18BSize, field: "reserved 0x18B")
        chipID = try c.readBytes(Layout.chipIDSize, field: "CHIP_ID")
        committedTCB = SNPTCBVersion(raw: try c.readLittleEndian(field: "COMMITTED_TCB"))
        let currentBuild = try c.readUInt8(field: "CURRENT_BUILD")
        let currentMinor = try c.readUInt8(field: "CURRENT_MINOR")
        let currentMajor = try c.readUInt8(field: "CURRENT_MAJOR")
        try c.readReserved(1, field: "reserved 0x1EB")
        currentVersion = FirmwareVersion(major: currentMajor, minor: currentMinor, build: currentBuild)
        let committedBuild = try c.readUInt8(field: "COMMITTED_BUILD")
        let committedMinor = try c.readUInt8(field: "COMMITTED_MINOR")
        let committedMajor = try c.readUInt8(field: "COMMITTED_MAJOR")
        try c.readReserved(1, field: "reserved 0x1EF")
        committedVersion = FirmwareVersion(major: committedMajor, minor: committedMinor, build: committedBuild)
        launchTCB = SNPTCBVersion(raw: try c.readLittleEndian(field: "LAUNCH_TCB"))
        if version >= 5 {
            launchMitigationVector = try c.readLittleEndian(field: "LAUNCH_MIT_VECTOR")
            currentMitigationVector = try c.readLittleEndian(field: "CURRENT_MIT_VECTOR")
        } else {
            try c.readReserved(16, field: "reserved 0x1F8 (before v5)")
            launchMitigationVector = nil
            currentMitigationVector = nil
        }
        try c.readReserved(Layout.reserved208Size, field: "reserved 0x208")
        signatureR = try Self.readSignatureComponent(&c, field: "SIGNATURE.R")
        signatureS = try Self.readSignatureComponent(&c, field: "SIGNATURE.S")
        try c.readReserved(Layout.reservedSignatureSize, field: "reserved signature bytes 0x330")
        try c.expectEnd(field: "ATTESTATION_REPORT")
    }

    /// Reads a 72-byte little-endian signature component: 48 significant bytes, then 24 zero bytes.
    private static func readSignatureComponent(_ c: inout ByteCursor, field: String) throws(BinaryFormatError) -> [UInt8] {
        let littleEndian = try c.readBytes(Layout.signatureSignificantSize, field: field)
        try c.readReserved(Layout.signatureComponentSize - Layout.signatureSignificantSize, field: field + " high bytes")
        return littleEndian.reversed()
    }
}
