public import Crypto
public import Foundation

/// Intel TDX TCB Info, version 3 (Intel PCS API v4 `GET /tdx/certification/v4/tcb?fmspc=…`; TDX.md §5
/// "Collateral"; QVL `TcbInfo.cpp`, `TcbLevel.cpp`): for one platform model (FMSPC), the TCB levels Intel has
/// evaluated and the status of each, plus the identities of the TDX modules Intel signs.
///
/// The PCS body is `{"tcbInfo":{…},"signature":"<128 hex digits: r ‖ s>"}`. The `tcbInfo` value is kept byte for
/// byte as received in ``signedBytes`` — the signature covers those exact bytes — and the typed fields are decoded
/// from those same bytes, so what is verified is what is read.
///
/// Parsing rejects what cmk cannot evaluate: an id other than "TDX", a version other than 3, a tcbType other than
/// 0, component arrays that do not hold 16 entries, statuses Intel does not define, hex of the wrong length,
/// duplicated TCB levels or module identities, empty level lists, and anything after the outer object.
public struct TDXTCBInfo: Sendable, Hashable {
    /// The constants of the format.
    public enum Format {
        /// The key of the signed body in the PCS document.
        public static let bodyKey = "tcbInfo"
        public static let id = "TDX"
        public static let version = 3
        /// QVL accepts only tcbType 0 (TcbInfo.cpp, 4.1.2.7.4).
        public static let tcbType = 0
        /// Entries in `sgxtcbcomponents` and `tdxtcbcomponents`.
        public static let componentCount = 16
        public static let fmspcSize = 6
        public static let pceIDSize = 2
        /// MRSIGNERSEAM / TDX module `mrsigner`.
        public static let mrsignerSize = 48
        /// SEAMATTRIBUTES / TDX module `attributes` and `attributesMask`.
        public static let attributesSize = 8
        /// ECDSA P-256 r ‖ s.
        public static let signatureSize = 64
        /// The statuses a TDX module identity's level may carry (QVL `VALID_MODULE_TCB_STATUSES`).
        public static let moduleStatuses: Set<TDXTCBLevelStatus> = [.upToDate, .outOfDate, .revoked]
    }

    /// One entry of `sgxtcbcomponents` or `tdxtcbcomponents`.
    public struct TCBComponent: Sendable, Hashable {
        public let svn: UInt8
        /// Intel's label, e.g. "BIOS" or "OS/VMM", when present.
        public let category: String?
        /// Intel's label, e.g. "SEAMLDR ACM" or "TDX Module", when present.
        public let type: String?

        public init(svn: UInt8, category: String? = nil, type: String? = nil) {
            self.svn = svn
            self.category = category
            self.type = type
        }
    }

    /// One platform TCB level: the SGX component SVNs and PCESVN a PCK certificate must reach, and the TDX
    /// component SVNs TEE_TCB_SVN must reach.
    public struct TCBLevel: Sendable, Hashable {
        /// The level's values, shared by every copy: an evaluation copies the levels it selects, and one reference
        /// is cheaper to copy than the arrays and text a level holds.
        private final class Storage: Sendable {
            let sgxComponents: [TCBComponent]
            let pceSVN: UInt16
            let tdxComponents: [TCBComponent]
            let tcbDate: Date
            let tcbStatus: TDXTCBLevelStatus
            let advisoryIDs: [String]
            let sgxSVNs: [UInt8]
            let tdxSVNs: [UInt8]
            let tcbDateText: String

            init(
                sgxComponents: [TCBComponent], pceSVN: UInt16, tdxComponents: [TCBComponent], tcbDate: Date,
                tcbStatus: TDXTCBLevelStatus, advisoryIDs: [String]
            ) {
                self.sgxComponents = sgxComponents
                self.pceSVN = pceSVN
                self.tdxComponents = tdxComponents
                self.tcbDate = tcbDate
                self.tcbStatus = tcbStatus
                self.advisoryIDs = advisoryIDs
                sgxSVNs = sgxComponents.map(\.svn)
                tdxSVNs = tdxComponents.map(\.svn)
                tcbDateText = tcbDate.formatted(.iso8601)
            }
        }

        private let storage: Storage

        /// `tcb.sgxtcbcomponents`, 16 entries.
        public var sgxComponents: [TCBComponent] { storage.sgxComponents }
        /// `tcb.pcesvn`.
        public var pceSVN: UInt16 { storage.pceSVN }
        /// `tcb.tdxtcbcomponents`, 16 entries.
        public var tdxComponents: [TCBComponent] { storage.tdxComponents }
        public var tcbDate: Date { storage.tcbDate }
        public var tcbStatus: TDXTCBLevelStatus { storage.tcbStatus }
        /// Intel security advisories (INTEL-SA-…) that apply at this level; empty when none are listed.
        public var advisoryIDs: [String] { storage.advisoryIDs }
        /// The 16 SGX component SVNs.
        public var sgxSVNs: [UInt8] { storage.sgxSVNs }
        /// The 16 TDX component SVNs.
        public var tdxSVNs: [UInt8] { storage.tdxSVNs }
        /// ``tcbDate`` as ISO 8601 text, formatted once when the level is read: reasons quote it.
        var tcbDateText: String { storage.tcbDateText }

        init(
            sgxComponents: [TCBComponent], pceSVN: UInt16, tdxComponents: [TCBComponent], tcbDate: Date,
            tcbStatus: TDXTCBLevelStatus, advisoryIDs: [String]
        ) {
            storage = Storage(
                sgxComponents: sgxComponents, pceSVN: pceSVN, tdxComponents: tdxComponents, tcbDate: tcbDate,
                tcbStatus: tcbStatus, advisoryIDs: advisoryIDs)
        }

        public static func == (a: TCBLevel, b: TCBLevel) -> Bool {
            a.storage === b.storage
                || (a.sgxComponents == b.sgxComponents && a.pceSVN == b.pceSVN && a.tdxComponents == b.tdxComponents
                    && a.tcbDate == b.tcbDate && a.tcbStatus == b.tcbStatus && a.advisoryIDs == b.advisoryIDs)
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(sgxComponents)
            hasher.combine(pceSVN)
            hasher.combine(tdxComponents)
            hasher.combine(tcbDate)
            hasher.combine(tcbStatus)
            hasher.combine(advisoryIDs)
        }

        /// QVL's order (TcbLevel::operator>): SGX SVNs lexicographically, then PCESVN, then TDX SVNs.
        static func isHigher(_ a: Self, than b: Self) -> Bool {
            if a.sgxSVNs != b.sgxSVNs { return a.sgxSVNs.lexicographicallyPrecedes(b.sgxSVNs) == false }
            if a.pceSVN != b.pceSVN { return a.pceSVN > b.pceSVN }
            return b.tdxSVNs.lexicographicallyPrecedes(a.tdxSVNs)
        }
    }

    /// `tdxModule`: the identity of a TDX module whose major version is 0 (or of every module, before
    /// `tdxModuleIdentities` existed).
    public struct TDXModule: Sendable, Hashable {
        /// Expected MRSIGNERSEAM (48 bytes; zero for Intel-signed modules).
        public let mrsigner: [UInt8]
        /// Expected SEAMATTRIBUTES under ``attributesMask`` (8 bytes).
        public let attributes: [UInt8]
        public let attributesMask: [UInt8]
    }

    /// One level of a TDX module identity: TEE_TCB_SVN[0] (the module's minor SVN) must reach ``isvsvn``.
    public struct ModuleTCBLevel: Sendable, Hashable {
        public let isvsvn: UInt8
        public let tcbDate: Date
        /// UpToDate, OutOfDate or Revoked.
        public let tcbStatus: TDXTCBLevelStatus
        public let advisoryIDs: [String]
    }

    /// One entry of `tdxModuleIdentities`: the module of one major version, "TDX_%02X" of TEE_TCB_SVN[1].
    public struct TDXModuleIdentity: Sendable, Hashable {
        /// "TDX_01", "TDX_03", …
        public let id: String
        public let mrsigner: [UInt8]
        public let attributes: [UInt8]
        public let attributesMask: [UInt8]
        /// The levels as listed (Intel lists them newest first).
        public let tcbLevels: [ModuleTCBLevel]
        /// The levels in evaluation order: descending ISVSVN (stable for equal values), sorted once when read.
        public let tcbLevelsDescending: [ModuleTCBLevel]
        /// The TDX module major version ``id`` names ("TDX_%02X", case-insensitive as in QVL); nil for other ids.
        let majorVersion: UInt8?

        init(id: String, mrsigner: [UInt8], attributes: [UInt8], attributesMask: [UInt8], tcbLevels: [ModuleTCBLevel]) {
            self.id = id
            self.mrsigner = mrsigner
            self.attributes = attributes
            self.attributesMask = attributesMask
            self.tcbLevels = tcbLevels
            tcbLevelsDescending = tcbLevels.enumerated()
                .sorted { ($0.element.isvsvn, -$0.offset) > ($1.element.isvsvn, -$1.offset) }.map(\.element)
            // Exactly the ids `moduleIdentityID(majorVersion:)` produces, compared after upper-casing as QVL does.
            let upper = id.uppercased()
            let digits = upper.dropFirst(4)
            majorVersion =
                upper.hasPrefix("TDX_") && digits.count == 2 && digits.allSatisfy(\.isHexDigit)
                ? UInt8(digits, radix: 16) : nil
        }
    }

    public let id: String
    public let version: Int
    public let issueDate: Date
    public let nextUpdate: Date
    /// The platform model these levels apply to (6 bytes); must equal the PCK certificate's FMSPC.
    public let fmspc: [UInt8]
    /// 2 bytes; must equal the PCK certificate's PCE-ID.
    public let pceID: [UInt8]
    public let tcbType: Int
    /// Intel's TCB recovery counter; policies may require a minimum.
    public let tcbEvaluationDataNumber: UInt32
    public let tdxModule: TDXModule
    /// `tdxModuleIdentities`, nil when the TCB Info predates them.
    public let tdxModuleIdentities: [TDXModuleIdentity]?
    /// The levels as listed in the document (Intel lists them newest first); see ``tcbLevelsDescending``.
    public let tcbLevels: [TCBLevel]

    /// The exact bytes of the `tcbInfo` value as received: what the signature covers.
    public let signedBytes: [UInt8]
    /// The raw ECDSA P-256 signature r ‖ s (64 bytes) by the Intel SGX TCB Signing key.
    public let signature: [UInt8]

    /// The levels in QVL's evaluation order (descending; TDX.md §6.1 step 1), sorted once when the document is read.
    public let tcbLevelsDescending: [TCBLevel]

    /// Parses a PCS TCB Info document (the HTTP response body, or the same bytes from a cache).
    public init(json: [UInt8]) throws(TDXCollateralError) {
        let envelope = try SignedCollateralEnvelope(json: json, bodyKey: Format.bodyKey)
        let root = Format.bodyKey
        let header = try CollateralText.decode(Header.self, from: envelope.bodyBytes, root: root)
        guard header.version == Format.version else {
            throw TDXCollateralError(
                .unsupported, field: "\(root).version",
                "TCB Info version \(header.version) is not the TDX TCB Info version 3 cmk evaluates")
        }
        guard header.id == Format.id else {
            throw TDXCollateralError(
                .unsupported, field: "\(root).id",
                "TCB Info id \"\(header.id)\" is not \"TDX\" (an SGX TCB Info cannot appraise a TD)")
        }
        guard header.tcbType == Format.tcbType else {
            throw TDXCollateralError(
                .unsupported, field: "\(root).tcbType",
                "tcbType \(header.tcbType) is not 0, the only type QVL evaluates")
        }
        let wire = try CollateralText.decode(Wire.self, from: envelope.bodyBytes, root: root)

        id = wire.id
        version = wire.version
        tcbType = wire.tcbType
        issueDate = try CollateralText.date(wire.issueDate, field: "\(root).issueDate")
        nextUpdate = try CollateralText.date(wire.nextUpdate, field: "\(root).nextUpdate")
        fmspc = try CollateralText.hex(wire.fmspc, bytes: Format.fmspcSize, field: "\(root).fmspc")
        pceID = try CollateralText.hex(wire.pceId, bytes: Format.pceIDSize, field: "\(root).pceId")
        tcbEvaluationDataNumber = try CollateralText.unsigned(
            wire.tcbEvaluationDataNumber, field: "\(root).tcbEvaluationDataNumber")
        tdxModule = try Self.module(wire.tdxModule, field: "\(root).tdxModule")
        tdxModuleIdentities = try wire.tdxModuleIdentities.map { identities throws(TDXCollateralError) in
            try Self.moduleIdentities(identities, field: "\(root).tdxModuleIdentities")
        }
        tcbLevels = try Self.levels(wire.tcbLevels, field: "\(root).tcbLevels")
        tcbLevelsDescending = tcbLevels.sorted(by: TCBLevel.isHigher)
        signedBytes = envelope.bodyBytes
        signature = try CollateralText.signature(envelope.signatureText)
    }

    /// Whether ``signature`` is a valid ECDSA P-256 / SHA-256 signature over ``signedBytes`` by `publicKey`
    /// (the Intel SGX TCB Signing certificate's key; checking that certificate's chain is the caller's job).
    public func isSignatureValid(publicKey: P256.Signing.PublicKey) -> Bool {
        CollateralText.isValidSignature(signature, over: signedBytes, publicKey: publicKey)
    }

    /// Whether the TCB Info may be used at `time` (TDX.md §6 B: T ≤ nextUpdate; also issueDate ≤ T).
    public func checkValidity(at time: Date) -> TDXCollateralValidity {
        .check(at: time, issueDate: issueDate, nextUpdate: nextUpdate)
    }

    /// The module identity id for a TDX module major version (TEE_TCB_SVN[1]): "TDX_%02X".
    public static func moduleIdentityID(majorVersion: UInt8) -> String {
        let digits = String(majorVersion, radix: 16, uppercase: true)
        return "TDX_" + (digits.count < 2 ? "0" + digits : digits)
    }

    /// The identity of the TDX module with `majorVersion`, matched case-insensitively as QVL does; nil when the
    /// TCB Info lists none for it (or lists no identities at all).
    public func moduleIdentity(majorVersion: UInt8) -> TDXModuleIdentity? {
        tdxModuleIdentities?.first { $0.majorVersion == majorVersion }
    }

    // MARK: Decoding

    private struct Header: Decodable {
        let id: String
        let version: Int
        let tcbType: Int
    }

    private struct Wire: Decodable {
        struct Component: Decodable {
            let svn: Int
            let category: String?
            let type: String?
        }
        struct TCB: Decodable {
            let sgxtcbcomponents: [Component]
            let pcesvn: Int
            let tdxtcbcomponents: [Component]
        }
        struct Level: Decodable {
            let tcb: TCB
            let tcbDate: String
            let tcbStatus: String
            let advisoryIDs: [String]?
        }
        struct Module: Decodable {
            let mrsigner: String
            let attributes: String
            let attributesMask: String
        }
        struct ModuleTCB: Decodable {
            let isvsvn: Int
        }
        struct ModuleLevel: Decodable {
            let tcb: ModuleTCB
            let tcbDate: String
            let tcbStatus: String
            let advisoryIDs: [String]?
        }
        struct ModuleIdentity: Decodable {
            let id: String
            let mrsigner: String
            let attributes: String
            let attributesMask: String
            let tcbLevels: [ModuleLevel]
        }

        let id: String
        let version: Int
        let issueDate: String
        let nextUpdate: String
        let fmspc: String
        let pceId: String
        let tcbType: Int
        let tcbEvaluationDataNumber: Int
        let tdxModule: Module
        let tdxModuleIdentities: [ModuleIdentity]?
        let tcbLevels: [Level]
    }

    private static func module(_ wire: Wire.Module, field: String) throws(TDXCollateralError) -> TDXModule {
        TDXModule(
            mrsigner: try CollateralText.hex(wire.mrsigner, bytes: Format.mrsignerSize, field: "\(field).mrsigner"),
            attributes: try CollateralText.hex(
                wire.attributes, bytes: Format.attributesSize, field: "\(field).attributes"),
            attributesMask: try CollateralText.hex(
                wire.attributesMask, bytes: Format.attributesSize, field: "\(field).attributesMask"))
    }

    private static func moduleIdentities(
        _ wire: [Wire.ModuleIdentity], field: String
    ) throws(TDXCollateralError) -> [TDXModuleIdentity] {
        guard !wire.isEmpty else {
            throw TDXCollateralError(.invalidValue, field: field, "tdxModuleIdentities is present but empty")
        }
        var identities: [TDXModuleIdentity] = []
        var seen: Set<String> = []
        for (index, entry) in wire.enumerated() {
            let path = "\(field)[\(index)]"
            guard seen.insert(entry.id.uppercased()).inserted else {
                throw TDXCollateralError(
                    .invalidValue, field: "\(path).id", "module identity \"\(entry.id)\" is listed twice")
            }
            let module = try Self.module(
                Wire.Module(
                    mrsigner: entry.mrsigner, attributes: entry.attributes, attributesMask: entry.attributesMask),
                field: path)
            guard !entry.tcbLevels.isEmpty else {
                throw TDXCollateralError(
                    .invalidValue, field: "\(path).tcbLevels", "module identity \(entry.id) lists no TCB levels")
            }
            var levels: [ModuleTCBLevel] = []
            for (levelIndex, level) in entry.tcbLevels.enumerated() {
                let levelPath = "\(path).tcbLevels[\(levelIndex)]"
                levels.append(
                    ModuleTCBLevel(
                        isvsvn: try CollateralText.unsigned(level.tcb.isvsvn, field: "\(levelPath).tcb.isvsvn"),
                        tcbDate: try CollateralText.date(level.tcbDate, field: "\(levelPath).tcbDate"),
                        tcbStatus: try CollateralText.status(
                            level.tcbStatus, field: "\(levelPath).tcbStatus", allowed: Format.moduleStatuses),
                        advisoryIDs: try CollateralText.advisoryIDs(
                            level.advisoryIDs, field: "\(levelPath).advisoryIDs")))
            }
            identities.append(
                TDXModuleIdentity(
                    id: entry.id, mrsigner: module.mrsigner, attributes: module.attributes,
                    attributesMask: module.attributesMask, tcbLevels: levels))
        }
        return identities
    }

    private static func components(_ wire: [Wire.Component], field: String) throws(TDXCollateralError) -> [TCBComponent]
    {
        guard wire.count == Format.componentCount else {
            throw TDXCollateralError(
                .invalidValue, field: field,
                "holds \(wire.count) components; a TCB level has exactly \(Format.componentCount)")
        }
        var components: [TCBComponent] = []
        for (index, component) in wire.enumerated() {
            components.append(
                TCBComponent(
                    svn: try CollateralText.unsigned(component.svn, field: "\(field)[\(index)].svn"),
                    category: component.category, type: component.type))
        }
        return components
    }

    private static func levels(_ wire: [Wire.Level], field: String) throws(TDXCollateralError) -> [TCBLevel] {
        guard !wire.isEmpty else {
            throw TDXCollateralError(.invalidValue, field: field, "the TCB Info lists no TCB levels")
        }
        var levels: [TCBLevel] = []
        for (index, entry) in wire.enumerated() {
            let path = "\(field)[\(index)]"
            let level = TCBLevel(
                sgxComponents: try components(entry.tcb.sgxtcbcomponents, field: "\(path).tcb.sgxtcbcomponents"),
                pceSVN: try CollateralText.unsigned(entry.tcb.pcesvn, field: "\(path).tcb.pcesvn"),
                tdxComponents: try components(entry.tcb.tdxtcbcomponents, field: "\(path).tcb.tdxtcbcomponents"),
                tcbDate: try CollateralText.date(entry.tcbDate, field: "\(path).tcbDate"),
                tcbStatus: try CollateralText.status(entry.tcbStatus, field: "\(path).tcbStatus"),
                advisoryIDs: try CollateralText.advisoryIDs(entry.advisoryIDs, field: "\(path).advisoryIDs"))
            if let twin = levels.firstIndex(where: {
                $0.sgxSVNs == level.sgxSVNs && $0.pceSVN == level.pceSVN && $0.tdxSVNs == level.tdxSVNs
            }) {
                throw TDXCollateralError(
                    .invalidValue, field: path,
                    "duplicates the components of \(field)[\(twin)]; QVL rejects duplicated TCB levels")
            }
            levels.append(level)
        }
        return levels
    }
}
