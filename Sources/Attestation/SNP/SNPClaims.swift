public import BinaryFormat
public import SEVSNP

/// What verified SEV-SNP evidence says, as typed values: what the policy layer reads. Parsing and chain
/// checks put values here; they never decide whether the values are acceptable.
public struct SNPClaims: Sendable, Hashable, Codable {
    public struct GuestPolicy: Sendable, Hashable, Codable {
        public let raw: UInt64
        public let abiMajor: UInt8
        public let abiMinor: UInt8
        public let smtAllowed: Bool
        public let migrationAgentAllowed: Bool
        public let debugAllowed: Bool
        public let singleSocketRequired: Bool
        public let cxlAllowed: Bool
        public let memAES256XTSRequired: Bool
        public let raplDisabledRequired: Bool
        public let ciphertextHidingRequired: Bool
        public let pageSwapDisabled: Bool
    }

    public struct PlatformInfo: Sendable, Hashable, Codable {
        public let raw: UInt64
        public let flags: [String]
        public let unknownBits: UInt64
    }

    public struct TCBs: Sendable, Hashable, Codable {
        public let layout: SNPTCBVersion.Layout
        public let current: SNPTCBVersion.Components
        public let reported: SNPTCBVersion.Components
        public let committed: SNPTCBVersion.Components
        public let launch: SNPTCBVersion.Components
    }

    /// `sev-snp`.
    public let evidenceType: String
    /// Whether the evidence comes from cmk's simulated platform (its roots are not AMD's).
    public let simulated: Bool
    /// The trust anchor the chain ended in, e.g. `amd-genoa`.
    public let trustAnchor: String
    public let product: AMDProduct
    /// `VCEK` or `VLEK`.
    public let signer: String
    public let reportVersion: UInt32
    public let measurement: HexBytes
    public let reportData: HexBytes
    public let hostData: HexBytes
    public let guestSVN: UInt32
    public let policy: GuestPolicy
    public let platformInfo: PlatformInfo
    public let vmpl: UInt32
    public let familyID: HexBytes
    public let imageID: HexBytes
    public let idKeyDigest: HexBytes
    public let authorKeyDigest: HexBytes
    public let authorKeyEnabled: Bool
    public let reportID: HexBytes
    public let reportIDMA: HexBytes
    public let chipID: HexBytes
    public let chipIDMasked: Bool
    public let tcb: TCBs
    public let currentFirmware: String
    public let committedFirmware: String
    public let launchMitigationVector: UInt64?
    public let currentMitigationVector: UInt64?
    /// The cloud provider a VLEK was issued to.
    public let cspID: String?

    init(report r: SNPReport, product: AMDProduct, trustAnchor: String, simulated: Bool, cspID: String?) {
        let layout = product.tcbLayout
        evidenceType = "sev-snp"
        self.simulated = simulated
        self.trustAnchor = trustAnchor
        self.product = product
        signer = r.signerInfo.signingKey.name
        reportVersion = r.version
        measurement = HexBytes(r.measurement)
        reportData = HexBytes(r.reportData)
        hostData = HexBytes(r.hostData)
        guestSVN = r.guestSVN
        policy = GuestPolicy(
            raw: r.policy.raw, abiMajor: r.policy.abiMajor, abiMinor: r.policy.abiMinor, smtAllowed: r.policy.smtAllowed,
            migrationAgentAllowed: r.policy.migrationAgentAllowed, debugAllowed: r.policy.debugAllowed,
            singleSocketRequired: r.policy.singleSocketRequired, cxlAllowed: r.policy.cxlAllowed,
            memAES256XTSRequired: r.policy.memAES256XTSRequired, raplDisabledRequired: r.policy.raplDisabledRequired,
            ciphertextHidingRequired: r.policy.ciphertextHidingRequired, pageSwapDisabled: r.policy.pageSwapDisabled)
        platformInfo = PlatformInfo(raw: r.platformInfo.raw, flags: r.platformInfo.flagNames, unknownBits: r.platformInfo.unknownBits)
        vmpl = r.vmpl
        familyID = HexBytes(r.familyID)
        imageID = HexBytes(r.imageID)
        idKeyDigest = HexBytes(r.idKeyDigest)
        authorKeyDigest = HexBytes(r.authorKeyDigest)
        authorKeyEnabled = r.signerInfo.authorKeyEnabled
        reportID = HexBytes(r.reportID)
        reportIDMA = HexBytes(r.reportIDMA)
        chipID = HexBytes(r.chipID)
        chipIDMasked = r.chipIDIsMasked
        tcb = TCBs(
            layout: layout, current: r.currentTCB.components(layout), reported: r.reportedTCB.components(layout),
            committed: r.committedTCB.components(layout), launch: r.launchTCB.components(layout))
        currentFirmware = r.currentVersion.description
        committedFirmware = r.committedVersion.description
        launchMitigationVector = r.launchMitigationVector
        currentMitigationVector = r.currentMitigationVector
        self.cspID = cspID
    }
}
