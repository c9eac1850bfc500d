import Foundation

/// The TCB status of a TD, judged from a TCB Info and the QE identity match (TDX.md §6 steps .4.10, .4.11, .4.15
/// and .4.17 / §6.1; QVL `QuoteVerifier.cpp`, `TcbLevelCheck.cpp`, `TdxModuleCheck.cpp`, `TDRelaunchCheck.cpp`).
///
/// The evaluation never throws: it ends in a status or in a failure, and always says why and which levels it
/// chose. It checks, in QVL's order:
/// 1. FMSPC and PCE-ID of the PCK certificate equal the TCB Info's (.4.10, else TCB_INFO_MISMATCH).
/// 2. The TDX module identity (.4.11): with TEE_TCB_SVN[1] > 0 on a quote newer than v3 the identity
///    "TDX_%02X" of TEE_TCB_SVN[1] (TCB Info without identities ⇒ TCB_INFO_MISMATCH, none with that id ⇒
///    TDX_MODULE_MISMATCH), else `tdxModule`; MRSIGNERSEAM must equal its mrsigner, SEAMATTRIBUTES must be all
///    zero and, under its attributesMask, equal its attributes (else TDX_MODULE_MISMATCH).
/// 3. The QE identity match (.4.15): any field mismatch ⇒ QE_IDENTITY_MISMATCH.
/// 4. §6.1 steps 1–2: levels sorted descending; the first whose SGX components and PCESVN the PCK certificate
///    reaches is the SGX level; the first such level whose TDX components TEE_TCB_SVN reaches (from index 2 when
///    TEE_TCB_SVN[1] > 0, else from 0) is the TDX level. Either missing ⇒ TCB_NOT_SUPPORTED.
/// 5. Step 3: the module level (first level, descending ISVSVN, with ISVSVN ≤ TEE_TCB_SVN[0]); UpToDate without a
///    lookup when the quote is newer than v3 and TEE_TCB_SVN[1] = 0.
/// 6. Step 4: module OutOfDate degrades the TDX level's status, module Revoked ⇒ Revoked (final, as in QVL).
/// 7. Step 5 (TD 1.5 bodies only): the TD relaunch check with TEE_TCB_SVN2, skipped when the QE is out of date,
///    revoked or unsupported (as in QVL).
/// 8. Step 6: QE OutOfDate (any status other than UpToDate and Revoked) degrades as in step 4, QE Revoked ⇒
///    Revoked, QE ISVSVN below every level ⇒ TCB_NOT_SUPPORTED.
///
/// The advisory ids are the union of the selected SGX, TDX, module and QE levels' advisoryIDs, sorted, each once.
public struct TDXTCBEvaluation: Sendable, Hashable, CustomStringConvertible {
    /// What the quote, its PCK certificate and the QE identity match contribute to the evaluation.
    public struct Inputs: Sendable, Hashable {
        /// SGX TCB comp01..16 SVNs from the PCK certificate's SGX extension (OID …13.1.2.1–16) — not CPUSVN.
        public let pckSGXComponentSVNs: [UInt8]
        /// PCESVN from the PCK certificate's SGX extension (OID …13.1.2.17).
        public let pckPCESVN: UInt16
        /// FMSPC from the PCK certificate (6 bytes).
        public let pckFMSPC: [UInt8]
        /// PCE-ID from the PCK certificate (2 bytes).
        public let pckPCEID: [UInt8]
        /// The quote's version (4 or 5 for TDX).
        public let quoteVersion: UInt16
        /// TEE_TCB_SVN of the TD report (16 bytes): [0] module SVN, [1] module major version, [2] late microcode.
        public let teeTCBSVN: [UInt8]
        /// TEE_TCB_SVN2 (16 bytes) of a TD 1.5 report body; nil for TD 1.0 bodies.
        public let teeTCBSVN2: [UInt8]?
        /// MRSIGNERSEAM (48 bytes).
        public let mrSignerSEAM: [UInt8]
        /// SEAMATTRIBUTES (8 bytes).
        public let seamAttributes: [UInt8]
        /// The QE report matched against the QE Identity.
        public let qeIdentity: TDXQEIdentityMatch

        /// Collects the inputs; throws when an array does not have the size the TD report or certificate gives it.
        public init(
            pckSGXComponentSVNs: [UInt8], pckPCESVN: UInt16, pckFMSPC: [UInt8], pckPCEID: [UInt8], quoteVersion: UInt16,
            teeTCBSVN: [UInt8], teeTCBSVN2: [UInt8]?, mrSignerSEAM: [UInt8], seamAttributes: [UInt8],
            qeIdentity: TDXQEIdentityMatch
        ) throws(TDXCollateralError) {
            func require(_ bytes: [UInt8], _ count: Int, _ field: String) throws(TDXCollateralError) {
                guard bytes.count == count else {
                    throw TDXCollateralError(.invalidValue, field: field, "needs \(count) bytes, got \(bytes.count)")
                }
            }
            try require(pckSGXComponentSVNs, TDXTCBInfo.Format.componentCount, "pckSGXComponentSVNs")
            try require(pckFMSPC, TDXTCBInfo.Format.fmspcSize, "pckFMSPC")
            try require(pckPCEID, TDXTCBInfo.Format.pceIDSize, "pckPCEID")
            try require(teeTCBSVN, TDXTCBInfo.Format.componentCount, "TEE_TCB_SVN")
            if let teeTCBSVN2 { try require(teeTCBSVN2, TDXTCBInfo.Format.componentCount, "TEE_TCB_SVN2") }
            try require(mrSignerSEAM, TDXTCBInfo.Format.mrsignerSize, "MRSIGNERSEAM")
            try require(seamAttributes, TDXTCBInfo.Format.attributesSize, "SEAMATTRIBUTES")
            self.pckSGXComponentSVNs = pckSGXComponentSVNs
            self.pckPCESVN = pckPCESVN
            self.pckFMSPC = pckFMSPC
            self.pckPCEID = pckPCEID
            self.quoteVersion = quoteVersion
            self.teeTCBSVN = teeTCBSVN
            self.teeTCBSVN2 = teeTCBSVN2
            self.mrSignerSEAM = mrSignerSEAM
            self.seamAttributes = seamAttributes
            self.qeIdentity = qeIdentity
        }

        /// TEE_TCB_SVN[1]: the TDX module's major version.
        public var moduleMajorVersion: UInt8 { teeTCBSVN[1] }
        /// TEE_TCB_SVN[0]: the TDX module's SVN within its major version.
        public var moduleSVN: UInt8 { teeTCBSVN[0] }
    }

    /// How the evaluation ended.
    public enum Outcome: Sendable, Hashable, CustomStringConvertible {
        case status(TDXTCBStatus)
        case failure(TDXTCBFailure)

        /// Intel's name: a status ("UpToDate") or a failure ("TCB_NOT_SUPPORTED").
        public var name: String {
            switch self {
            case .status(let status): status.rawValue
            case .failure(let failure): failure.rawValue
            }
        }

        public var description: String { name }
    }

    /// The module identity level that judged the TDX module.
    public struct ModuleLevel: Sendable, Hashable {
        /// The identity's id, "TDX_01", …
        public let identityID: String
        public let level: TDXTCBInfo.ModuleTCBLevel
    }

    public let outcome: Outcome
    /// Why the evaluation ended this way, rendered into ``reason`` only when someone asks.
    private let explanation: Explanation
    /// The first level whose SGX components and PCESVN the PCK certificate reaches; nil when none does.
    public let sgxLevel: TDXTCBInfo.TCBLevel?
    /// The level that decided the TDX status; nil when none matched (or the evaluation stopped earlier).
    public let tdxLevel: TDXTCBInfo.TCBLevel?
    /// The TDX module identity level; nil when TEE_TCB_SVN[1] = 0 (the module is then UpToDate by rule) or the
    /// evaluation stopped earlier.
    public let moduleLevel: ModuleLevel?
    /// The QE's TCB level, when the QE matched.
    public let qeLevel: TDXQEIdentity.TCBLevel?
    /// The advisories of the selected levels: sorted, each once.
    public let advisoryIDs: [String]

    /// The status, nil when the evaluation failed.
    public var status: TDXTCBStatus? {
        if case .status(let status) = outcome { return status }
        return nil
    }

    /// The failure, nil when the evaluation produced a status.
    public var failure: TDXTCBFailure? {
        if case .failure(let failure) = outcome { return failure }
        return nil
    }

    public var description: String { "\(outcome.name): \(reason)" }

    /// Why the evaluation ended this way, in a sentence a person can act on.
    public var reason: String {
        switch explanation {
        case .failure(let text):
            return text
        case .status(let moduleRevoked, let relaunchSVN2, let qeNoted):
            guard let tdxLevel else { return "" }
            var why = "TDX TCB level \(Self.dateText(tdxLevel)) is \(TDXTCBStatus(tdxLevel.tcbStatus))"
            if let module = moduleLevel {
                why += "; module \(module.identityID) level isvsvn \(module.level.isvsvn) is \(module.level.tcbStatus)"
            }
            if moduleRevoked { return why + ": the TDX module is revoked" }
            if let relaunchSVN2 {
                why += "; TEE_TCB_SVN2 \(Self.hex(relaunchSVN2)) already reaches the newest level: "
                    + "relaunch the TD to run the updated TDX module"
            }
            if qeNoted, let qeLevel { why += "; QE level isvsvn \(qeLevel.isvsvn) is \(qeLevel.tcbStatus)" }
            return why
        }
    }

    /// What ``reason`` says: the sentence of a failure, or the notes a status collected on its way — the TDX level
    /// and module always, then a revoked module, a relaunch advice (with TEE_TCB_SVN2), and the QE's status.
    private enum Explanation: Sendable, Hashable {
        case failure(String)
        case status(moduleRevoked: Bool, relaunchSVN2: [UInt8]?, qeNoted: Bool)
    }

    /// Evaluates `inputs` against `tcbInfo`.
    public init(tcbInfo: TDXTCBInfo, inputs: Inputs) {
        var selectedSGX: TDXTCBInfo.TCBLevel?
        var selectedTDX: TDXTCBInfo.TCBLevel?
        var selectedModule: ModuleLevel?
        let qeLevel: TDXQEIdentity.TCBLevel? = if case .matched(let level) = inputs.qeIdentity { level } else { nil }

        func finish(_ outcome: Outcome, _ explanation: Explanation) -> TDXTCBEvaluation {
            var advisories: [String] = []
            if let ids = qeLevel?.advisoryIDs { advisories += ids }
            if let ids = selectedSGX?.advisoryIDs { advisories += ids }
            if let ids = selectedTDX?.advisoryIDs { advisories += ids }
            if let ids = selectedModule?.level.advisoryIDs { advisories += ids }
            return TDXTCBEvaluation(
                outcome: outcome, explanation: explanation, sgxLevel: selectedSGX, tdxLevel: selectedTDX,
                moduleLevel: selectedModule, qeLevel: qeLevel, advisoryIDs: Self.sortedUnique(advisories))
        }
        func fail(_ failure: TDXTCBFailure, _ reason: String) -> TDXTCBEvaluation {
            finish(.failure(failure), .failure(reason))
        }
        let hex = Self.hex
        let major = inputs.moduleMajorVersion
        // Reasons are built only on the paths that end in them.
        var moduleID: String { TDXTCBInfo.moduleIdentityID(majorVersion: major) }

        // .4.10: the TCB Info must be the one for this platform.
        guard inputs.pckFMSPC == tcbInfo.fmspc else {
            self = fail(
                .tcbInfoMismatch,
                "the PCK certificate's FMSPC \(hex(inputs.pckFMSPC)) is not the TCB Info's \(hex(tcbInfo.fmspc)): "
                    + "fetch the TCB Info for this platform"
            )
            return
        }
        guard inputs.pckPCEID == tcbInfo.pceID else {
            self = fail(
                .tcbInfoMismatch,
                "the PCK certificate's PCE-ID \(hex(inputs.pckPCEID)) is not the TCB Info's \(hex(tcbInfo.pceID))")
            return
        }

        // .4.11: the TDX module's identity.
        let expectedSigner: [UInt8]
        let expectedAttributes: [UInt8]
        let attributesMask: [UInt8]
        let identityID: String?
        var knownIdentity: TDXTCBInfo.TDXModuleIdentity?
        if inputs.quoteVersion > 3 && major > 0 {
            guard let identities = tcbInfo.tdxModuleIdentities else {
                self = fail(
                    .tcbInfoMismatch,
                    "TEE_TCB_SVN[1] = \(major) names TDX module major version \(major), but the TCB Info has no "
                        + "tdxModuleIdentities: it predates TDX module 1.5 collateral; fetch a current one"
                )
                return
            }
            guard let identity = tcbInfo.moduleIdentity(majorVersion: major) else {
                self = fail(
                    .tdxModuleMismatch,
                    "the TCB Info lists no module identity \(moduleID) for TDX module major version \(major) "
                        + "(it has \(identities.map(\.id).joined(separator: ", ")))"
                )
                return
            }
            (expectedSigner, expectedAttributes, attributesMask) = (
                identity.mrsigner, identity.attributes, identity.attributesMask
            )
            identityID = identity.id
            knownIdentity = identity
        } else {
            let module = tcbInfo.tdxModule
            (expectedSigner, expectedAttributes, attributesMask) = (
                module.mrsigner, module.attributes, module.attributesMask
            )
            identityID = nil
        }
        var identityName: String { identityID.map { "module identity \($0)" } ?? "tdxModule" }
        guard inputs.mrSignerSEAM == expectedSigner else {
            self = fail(
                .tdxModuleMismatch,
                "MRSIGNERSEAM \(hex(inputs.mrSignerSEAM)) is not the mrsigner of the TCB Info's \(identityName) "
                    + "(\(hex(expectedSigner))): the TDX module was not signed by the expected signer"
            )
            return
        }
        guard inputs.seamAttributes.allSatisfy({ $0 == 0 }),
            Self.masked(inputs.seamAttributes, attributesMask, equals: expectedAttributes)
        else {
            self = fail(
                .tdxModuleMismatch,
                "SEAMATTRIBUTES \(hex(inputs.seamAttributes)) must be zero in TDX 1.x and, under mask "
                    + "\(hex(attributesMask)), equal the \(identityName) attributes \(hex(expectedAttributes))"
            )
            return
        }

        // .4.15: the quoting enclave.
        if case .mismatch(let field, let why) = inputs.qeIdentity {
            self = fail(.qeIdentityMismatch, "the quoting enclave is not Intel's TD QE (\(field.rawValue)): \(why)")
            return
        }

        // §6.1 steps 1–2: the SGX and TDX levels.
        let levels = tcbInfo.tcbLevelsDescending
        let firstTDXIndex = major > 0 ? 2 : 0
        var sgxIndex: Int?
        for index in levels.indices {
            let sgxReached =
                zip(inputs.pckSGXComponentSVNs, levels[index].sgxSVNs).allSatisfy { $0 >= $1 }
                && inputs.pckPCESVN >= levels[index].pceSVN
            guard sgxReached else { continue }
            if sgxIndex == nil { sgxIndex = index }
            let tdxSVNs = levels[index].tdxSVNs
            if (firstTDXIndex..<TDXTCBInfo.Format.componentCount).allSatisfy({ inputs.teeTCBSVN[$0] >= tdxSVNs[$0] }) {
                selectedTDX = levels[index]
                break
            }
        }
        selectedSGX = sgxIndex.map { levels[$0] }
        guard let sgxLevel = selectedSGX else {
            self = fail(
                .tcbNotSupported,
                "no TCB level matches the PCK certificate's SGX components "
                    + "\(inputs.pckSGXComponentSVNs.map(String.init).joined(separator: ",")) "
                    + "and PCESVN \(inputs.pckPCESVN): "
                    + "the platform's firmware (microcode, SEAMLDR, …) is older than every level Intel lists"
            )
            return
        }
        guard let tdxLevel = selectedTDX else {
            self = fail(
                .tcbNotSupported,
                "no TCB level at or below the SGX level (\(sgxLevel.tcbStatus), \(Self.dateText(sgxLevel))) matches "
                    + "TEE_TCB_SVN \(hex(inputs.teeTCBSVN)) (components from index \(firstTDXIndex))"
            )
            return
        }

        // Step 3: the TDX module's status.
        let moduleStatus: TDXTCBLevelStatus
        if inputs.quoteVersion > 3 && major == 0 {
            moduleStatus = .upToDate
        } else {
            guard let identity = knownIdentity ?? tcbInfo.moduleIdentity(majorVersion: major) else {
                self = fail(
                    .tdxModuleMismatch,
                    "the TCB Info lists no module identity \(moduleID) to judge TDX module SVN \(inputs.moduleSVN)")
                return
            }
            guard let level = identity.tcbLevelsDescending.first(where: { $0.isvsvn <= inputs.moduleSVN }) else {
                self = fail(
                    .tcbNotSupported,
                    "TDX module SVN \(inputs.moduleSVN) (TEE_TCB_SVN[0]) is below every level of module identity "
                        + "\(identity.id)"
                )
                return
            }
            selectedModule = ModuleLevel(identityID: identity.id, level: level)
            moduleStatus = level.tcbStatus
        }

        // Step 4: combine the TDX level with the module.
        var status = TDXTCBStatus(tdxLevel.tcbStatus)
        switch moduleStatus {
        case .outOfDate: status = status.degradedByOutOfDateComponent()
        case .revoked:
            self = finish(.status(.revoked), .status(moduleRevoked: true, relaunchSVN2: nil, qeNoted: false))
            return
        default: break
        }
        if status == .revoked {
            self = finish(.status(.revoked), .status(moduleRevoked: false, relaunchSVN2: nil, qeNoted: false))
            return
        }

        // Step 5: TD 1.5 relaunch check.
        var relaunchSVN2: [UInt8]?
        let qeStatus = inputs.qeIdentity.tcbStatus
        let qeCurrent = qeStatus == .upToDate
        if let svn2 = inputs.teeTCBSVN2, qeCurrent, Self.isCurrentOrNeedsOnlyChanges(sgxLevel.tcbStatus),
            status == .outOfDate || status == .outOfDateConfigurationNeeded, moduleStatus == .outOfDate,
            let newest = levels.first
        {
            let reachesNewest: Bool
            if svn2[1] == 0 {
                reachesNewest = svn2[0] >= newest.tdxSVNs[0] && svn2[2] >= newest.tdxSVNs[2]
            } else {
                guard let identity2 = tcbInfo.moduleIdentity(majorVersion: svn2[1]) else {
                    self = fail(
                        .tdxModuleMismatch,
                        "TEE_TCB_SVN2[1] = \(svn2[1]) names module identity "
                            + "\(TDXTCBInfo.moduleIdentityID(majorVersion: svn2[1])), which the TCB Info does not list"
                    )
                    return
                }
                guard let newestModule = identity2.tcbLevelsDescending.first else {
                    self = fail(.tcbNotSupported, "module identity \(identity2.id) lists no TCB levels")
                    return
                }
                reachesNewest = svn2[0] >= newestModule.isvsvn && svn2[2] >= newest.tdxSVNs[2]
            }
            if reachesNewest {
                let configuration = TDXTCBStatus(sgxLevel.tcbStatus).needsConfiguration || status.needsConfiguration
                status = configuration ? .tdRelaunchAdvisedConfigurationNeeded : .tdRelaunchAdvised
                relaunchSVN2 = svn2
            }
        }

        // Step 6: combine with the QE.
        var qeNoted = false
        switch inputs.qeIdentity {
        case .tcbNotSupported(let isvsvn):
            self = fail(.tcbNotSupported, "the QE's ISVSVN \(isvsvn) is below every level of the QE Identity")
            return
        case .matched(let level):
            switch level.tcbStatus {
            case .upToDate: break
            case .revoked:
                status = .revoked
                qeNoted = true
            default:
                status = status.degradedByOutOfDateComponent()
                qeNoted = true
            }
        case .mismatch:
            break  // Handled at .4.15.
        }
        self = finish(.status(status), .status(moduleRevoked: false, relaunchSVN2: relaunchSVN2, qeNoted: qeNoted))
    }

    private init(
        outcome: Outcome, explanation: Explanation, sgxLevel: TDXTCBInfo.TCBLevel?, tdxLevel: TDXTCBInfo.TCBLevel?,
        moduleLevel: ModuleLevel?, qeLevel: TDXQEIdentity.TCBLevel?, advisoryIDs: [String]
    ) {
        self.outcome = outcome
        self.explanation = explanation
        self.sgxLevel = sgxLevel
        self.tdxLevel = tdxLevel
        self.moduleLevel = moduleLevel
        self.qeLevel = qeLevel
        self.advisoryIDs = advisoryIDs
    }

    /// Lower-case hex of `bytes`, for reasons.
    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private static func dateText(_ level: TDXTCBInfo.TCBLevel) -> String {
        "of " + level.tcbDateText
    }

    /// Whether a level status is UpToDate, SWHardeningNeeded or one of the ConfigurationNeeded statuses (not out of
    /// date, not revoked): the SGX statuses under which the relaunch check runs.
    private static func isCurrentOrNeedsOnlyChanges(_ status: TDXTCBLevelStatus) -> Bool {
        switch status {
        case .upToDate, .swHardeningNeeded, .configurationNeeded, .configurationAndSWHardeningNeeded: true
        case .outOfDate, .outOfDateConfigurationNeeded, .revoked: false
        }
    }

    /// Whether `value` under `mask`, byte by byte over their common length, equals `expected`.
    private static func masked(_ value: [UInt8], _ mask: [UInt8], equals expected: [UInt8]) -> Bool {
        let count = min(value.count, mask.count)
        guard count == expected.count else { return false }
        for index in 0..<count where value[index] & mask[index] != expected[index] { return false }
        return true
    }

    /// The advisory ids sorted, each once.
    private static func sortedUnique(_ ids: [String]) -> [String] {
        var all = ids
        guard all.count > 1 else { return all }
        all.sort()
        var unique: [String] = []
        unique.reserveCapacity(all.count)
        for id in all where id != unique.last { unique.append(id) }
        return unique
    }
}
