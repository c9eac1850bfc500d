import CMKTesting
import Foundation
import TDX
import Testing

/// Small TCB Info and QE Identity documents written in code, in the PCS format, for the status rules.
/// Their signatures are zero: these tests are about evaluation, not about Intel's signature.
enum CollateralBuilder {
    static let zeroSigner = String(repeating: "0", count: 96)
    static let zeroSignature = String(repeating: "00", count: 64)
    static let intelQESigner = "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5"

    struct Level {
        var sgx: [Int]
        var pcesvn: Int
        var tdx: [Int]
        var status: String
        var date = "2024-01-01T00:00:00Z"
        var advisories: [String]? = nil
    }

    struct ModuleLevel {
        var isvsvn: Int
        var status: String
        var advisories: [String]? = nil
    }

    struct ModuleIdentity {
        var id: String
        var levels: [ModuleLevel]
        var mrsigner = zeroSigner
        var attributes = "0000000000000000"
        var attributesMask = "FFFFFFFFFFFFFFFF"
    }

    /// 16 SVNs starting with `values`.
    static func svns(_ values: Int...) -> [Int] { values + Array(repeating: 0, count: 16 - values.count) }

    static func bytes(_ values: Int...) -> [UInt8] {
        (values + Array(repeating: 0, count: 16 - values.count)).map(UInt8.init)
    }

    private static func list(_ strings: [String]?) -> String {
        guard let strings else { return "" }
        return #","advisoryIDs":["# + strings.map { #""\#($0)""# }.joined(separator: ",") + "]"
    }

    private static func components(_ svns: [Int]) -> String {
        "[" + svns.map { #"{"svn":\#($0)}"# }.joined(separator: ",") + "]"
    }

    private static func moduleLevel(_ level: ModuleLevel) -> String {
        #"{"tcb":{"isvsvn":\#(level.isvsvn)},"tcbDate":"2024-01-01T00:00:00Z","#
            + #""tcbStatus":"\#(level.status)"\#(list(level.advisories))}"#
    }

    private static func moduleIdentity(_ identity: ModuleIdentity) -> String {
        #"{"id":"\#(identity.id)","mrsigner":"\#(identity.mrsigner)","attributes":"\#(identity.attributes)","#
            + #""attributesMask":"\#(identity.attributesMask)","tcbLevels":["#
            + identity.levels.map(moduleLevel).joined(separator: ",") + "]}"
    }

    private static func level(_ level: Level) -> String {
        #"{"tcb":{"sgxtcbcomponents":\#(components(level.sgx)),"pcesvn":\#(level.pcesvn),"#
            + #""tdxtcbcomponents":\#(components(level.tdx))},"tcbDate":"\#(level.date)","#
            + #""tcbStatus":"\#(level.status)"\#(list(level.advisories))}"#
    }

    static func tcbInfo(
        levels: [Level], identities: [ModuleIdentity]?, fmspc: String = "90c06f000000", pceID: String = "0000",
        moduleSigner: String = zeroSigner, moduleAttributes: String = "0000000000000000"
    ) -> [UInt8] {
        var body = #"{"id":"TDX","version":3,"issueDate":"2026-02-01T00:00:00Z","nextUpdate":"2026-03-03T00:00:00Z","#
        body += #""fmspc":"\#(fmspc)","pceId":"\#(pceID)","tcbType":0,"tcbEvaluationDataNumber":18,"#
        body += #""tdxModule":{"mrsigner":"\#(moduleSigner)","attributes":"\#(moduleAttributes)","#
        body += #""attributesMask":"FFFFFFFFFFFFFFFF"},"#
        if let identities {
            body += #""tdxModuleIdentities":["# + identities.map(moduleIdentity).joined(separator: ",") + "],"
        }
        body += #""tcbLevels":["# + levels.map(level).joined(separator: ",") + "]}"
        return Array(#"{"tcbInfo":\#(body),"signature":"\#(zeroSignature)"}"#.utf8)
    }

    static func qeIdentity(levels: [(Int, String)], advisories: [Int: [String]] = [:]) -> [UInt8] {
        var body = #"{"id":"TD_QE","version":2,"issueDate":"2026-02-18T10:42:15Z","nextUpdate":"2026-03-20T10:42:15Z","#
        body += #""tcbEvaluationDataNumber":18,"miscselect":"00000000","miscselectMask":"FFFFFFFF","#
        body += #""attributes":"11000000000000000000000000000000","attributesMask":"FBFFFFFFFFFFFFFF0000000000000000","#
        body += #""mrsigner":"\#(intelQESigner)","isvprodid":2,"tcbLevels":["#
        body += levels.map { isvsvn, status in
            #"{"tcb":{"isvsvn":\#(isvsvn)},"tcbDate":"2024-01-01T00:00:00Z","tcbStatus":"\#(status)""#
                + list(advisories[isvsvn]) + "}"
        }.joined(separator: ",")
        body += "]}"
        return Array(#"{"enclaveIdentity":\#(body),"signature":"\#(zeroSignature)"}"#.utf8)
    }

    /// The QE match of a QE with ISVSVN 7 against an identity whose only level (ISVSVN 4) has `status`.
    static func qe(_ status: String, advisories: [String]? = nil) throws -> TDXQEIdentityMatch {
        try qeMatch(levels: [(4, status)], isvsvn: 7, advisories: advisories.map { [4: $0] } ?? [:])
    }

    static func qeMatch(
        levels: [(Int, String)], isvsvn: UInt16, advisories: [Int: [String]] = [:], mrsigner: [UInt8]? = nil
    ) throws -> TDXQEIdentityMatch {
        let identity = try TDXQEIdentity(json: qeIdentity(levels: levels, advisories: advisories))
        let attributes: [UInt8] = [0x15] + Array(repeating: 0, count: 7) + [0xE7] + Array(repeating: 0, count: 7)
        return identity.match(
            miscselect: [0, 0, 0, 0], attributes: attributes, mrsigner: mrsigner ?? identity.mrsigner, isvprodid: 2,
            isvsvn: isvsvn)
    }
}

/// The default synthetic platform: two levels and a TDX_01 module identity, shaped like Intel's 2026 collateral.
struct StatusScenario {
    var levels = [
        CollateralBuilder.Level(
            sgx: CollateralBuilder.svns(3, 3, 2, 2, 4, 1, 0, 5), pcesvn: 13, tdx: CollateralBuilder.svns(5, 0, 3),
            status: "UpToDate", date: "2024-11-13T00:00:00Z"),
        CollateralBuilder.Level(
            sgx: CollateralBuilder.svns(2, 2, 2, 2, 3, 1, 0, 5), pcesvn: 13, tdx: CollateralBuilder.svns(5, 0, 2),
            status: "OutOfDate", date: "2024-03-13T00:00:00Z", advisories: ["INTEL-SA-01079", "INTEL-SA-01036"]),
    ]
    var identities: [CollateralBuilder.ModuleIdentity]? = [
        .init(id: "TDX_03", levels: [.init(isvsvn: 3, status: "UpToDate")]),
        .init(
            id: "TDX_01",
            levels: [
                .init(isvsvn: 6, status: "UpToDate"),
                .init(isvsvn: 4, status: "OutOfDate", advisories: ["INTEL-SA-01099", "INTEL-SA-01036"]),
                .init(isvsvn: 2, status: "Revoked", advisories: ["INTEL-SA-00001"]),
            ]),
    ]
    var moduleSigner = CollateralBuilder.zeroSigner
    var pckSVNs = CollateralBuilder.bytes(3, 3, 2, 2, 4, 1, 0, 5)
    var pckPCESVN: UInt16 = 13
    var pckFMSPC: [UInt8] = [0x90, 0xC0, 0x6F, 0, 0, 0]
    var pckPCEID: [UInt8] = [0, 0]
    var quoteVersion: UInt16 = 4
    var tee = CollateralBuilder.bytes(6, 1, 3)
    var tee2: [UInt8]? = nil
    var mrSignerSEAM = [UInt8](repeating: 0, count: 48)
    var seamAttributes = [UInt8](repeating: 0, count: 8)
    var qe: TDXQEIdentityMatch? = nil

    func tcbInfo() throws -> TDXTCBInfo {
        try TDXTCBInfo(
            json: CollateralBuilder.tcbInfo(levels: levels, identities: identities, moduleSigner: moduleSigner))
    }

    func evaluate() throws -> TDXTCBEvaluation {
        let inputs = try TDXTCBEvaluation.Inputs(
            pckSGXComponentSVNs: pckSVNs, pckPCESVN: pckPCESVN, pckFMSPC: pckFMSPC, pckPCEID: pckPCEID,
            quoteVersion: quoteVersion, teeTCBSVN: tee, teeTCBSVN2: tee2, mrSignerSEAM: mrSignerSEAM,
            seamAttributes: seamAttributes, qeIdentity: try qe ?? CollateralBuilder.qe("UpToDate"))
        return TDXTCBEvaluation(tcbInfo: try tcbInfo(), inputs: inputs)
    }

    /// The scenario with the first level's status replaced.
    func withFirstLevel(status: String) -> Self {
        var copy = self
        copy.levels[0].status = status
        return copy
    }
}

@Suite("TDX TCB status (TDX.md §6.1)")
struct TCBStatusTests {
    // MARK: The real vectors

    @Test("each vector's TCB status and the levels behind it equal expected.json", arguments: collateralVectors)
    func vectorStatus(vector: String) throws {
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let verdict = try #require(expected["verdict"] as? [String: Any])
        let detail = try #require(verdict["tcb_detail"] as? [String: Any])
        let expect = try #require(expected["expect"] as? [String: Any])
        let quote = try #require(expected["quote"] as? [String: Any])
        let pck = try #require(expected["pck"] as? [String: Any])

        let tcbInfo = try TDXTCBInfo(json: try SharedVectors.bytes("tdx/\(vector)/tcbinfo.json"))
        let qeIdentity = try TDXQEIdentity(json: try SharedVectors.bytes("tdx/\(vector)/qeidentity.json"))
        let qeMatch = try VectorQEReport(vector).match(qeIdentity)
        #expect(qeMatch.tcbStatus?.rawValue == expect["qe_tcb_status"] as? String)

        let pckSVNs = try #require(detail["pck_comp_svns"] as? [Int])
        #expect(pckSVNs == pck["sgx_tcb_comp_svns"] as? [Int])
        #expect(detail["pck_pcesvn"] as? Int == pck["pcesvn"] as? Int)
        #expect(detail["tee_tcb_svn"] as? String == expect["tee_tcb_svn"] as? String)
        let inputs = try TDXTCBEvaluation.Inputs(
            pckSGXComponentSVNs: pckSVNs.map(UInt8.init), pckPCESVN: UInt16(try #require(detail["pck_pcesvn"] as? Int)),
            pckFMSPC: try CollateralFixtures.hex(try #require(pck["fmspc"] as? String)),
            pckPCEID: try CollateralFixtures.hex(try #require(pck["pceid"] as? String)),
            quoteVersion: UInt16(try #require(quote["version"] as? Int)),
            teeTCBSVN: try CollateralFixtures.hex(try #require(detail["tee_tcb_svn"] as? String)),
            teeTCBSVN2: try (expect["tee_tcb_svn2"] as? String).map(CollateralFixtures.hex),
            mrSignerSEAM: try CollateralFixtures.hex(try #require(expect["mr_signer_seam"] as? String)),
            seamAttributes: try CollateralFixtures.hex(try #require(expect["seam_attributes"] as? String)),
            qeIdentity: qeMatch)
        #expect((inputs.teeTCBSVN2 != nil) == ((quote["body_type"] as? String)?.contains("TD15") == true))

        let evaluation = TDXTCBEvaluation(tcbInfo: tcbInfo, inputs: inputs)
        #expect(evaluation.outcome.name == verdict["tcb_status"] as? String, "\(vector): \(evaluation)")
        #expect(evaluation.outcome.name == expect["tcb_status"] as? String)
        // tdx_module_identity: true means step .4.11 passed.
        #expect((evaluation.failure != .tdxModuleMismatch) == (expect["tdx_module_identity"] as? Bool))

        if let sgx = detail["sgx_level"] as? [String: Any] {
            let level = try #require(evaluation.sgxLevel)
            #expect(CollateralFixtures.iso(level.tcbDate) == sgx["tcbDate"] as? String)
            #expect(level.tcbStatus.rawValue == sgx["tcbStatus"] as? String)
        }
        if let tdx = detail["tdx_level"] as? [String: Any] {
            let level = try #require(evaluation.tdxLevel)
            #expect(CollateralFixtures.iso(level.tcbDate) == tdx["tcbDate"] as? String)
            #expect(level.tcbStatus.rawValue == tdx["tcbStatus"] as? String)
            #expect(level.advisoryIDs == tdx["advisoryIDs"] as? [String])
            #expect(evaluation.advisoryIDs == tdx["advisoryIDs"] as? [String])
        }
        if let module = detail["module"] as? [String: Any] {
            let level = try #require(evaluation.moduleLevel)
            #expect(level.identityID == module["id"] as? String)
            #expect(Int(level.level.isvsvn) == module["isvsvn"] as? Int)
            #expect(level.level.tcbStatus.rawValue == module["tcbStatus"] as? String)
        }
        if let afterRelaunch = detail["after_relaunch_check"] as? String {
            #expect(evaluation.status?.rawValue == afterRelaunch)
        }
        if (detail["reason"] as? String)?.contains("no TCB level matches PCK cert SGX components") == true {
            // Not supported because of the SGX components, not a later step.
            #expect(evaluation.sgxLevel == nil)
            #expect(evaluation.reason.contains("SGX components"))
        }
        #expect(evaluation.qeLevel == qeMatch.matchedLevel)
    }

    // MARK: §6.1 step 4: the TDX module

    @Test(
        "an out-of-date TDX module degrades the TDX level's status",
        arguments: [
            ("UpToDate", TDXTCBStatus.outOfDate), ("SWHardeningNeeded", .outOfDate),
            ("ConfigurationNeeded", .outOfDateConfigurationNeeded),
            ("ConfigurationAndSWHardeningNeeded", .outOfDateConfigurationNeeded),
            ("OutOfDate", .outOfDate), ("OutOfDateConfigurationNeeded", .outOfDateConfigurationNeeded),
            ("Revoked", .revoked),
        ])
    func moduleOutOfDate(levelStatus: String, expected: TDXTCBStatus) throws {
        var scenario = StatusScenario().withFirstLevel(status: levelStatus)
        scenario.tee = CollateralBuilder.bytes(5, 1, 3)  // module SVN 5: the TDX_01 level with isvsvn 4, OutOfDate
        let evaluation = try scenario.evaluate()
        #expect(evaluation.status == expected, "\(evaluation)")
        #expect(evaluation.moduleLevel?.identityID == "TDX_01")
        #expect(evaluation.moduleLevel?.level.isvsvn == 4)
        #expect(evaluation.advisoryIDs == ["INTEL-SA-01036", "INTEL-SA-01099"])
    }

    @Test("an up-to-date TDX module leaves the TDX level's status as it is", arguments: TDXTCBLevelStatus.allCases)
    func moduleUpToDate(levelStatus: TDXTCBLevelStatus) throws {
        let evaluation = try StatusScenario().withFirstLevel(status: levelStatus.rawValue).evaluate()
        #expect(evaluation.status == TDXTCBStatus(levelStatus))
        #expect(evaluation.moduleLevel?.level.tcbStatus == .upToDate)
    }

    @Test(
        "a revoked TDX module makes the TD Revoked, whatever the TDX level and the QE say",
        arguments: ["UpToDate", "ConfigurationNeeded", "OutOfDate"])
    func moduleRevoked(levelStatus: String) throws {
        var scenario = StatusScenario().withFirstLevel(status: levelStatus)
        scenario.tee = CollateralBuilder.bytes(3, 1, 3)  // module SVN 3: the level with isvsvn 2, Revoked
        #expect(try scenario.evaluate().status == .revoked)
        #expect(try scenario.evaluate().advisoryIDs == ["INTEL-SA-00001"])
        // QVL returns Revoked before it looks at the QE's status.
        scenario.qe = try CollateralBuilder.qeMatch(levels: [(10, "UpToDate")], isvsvn: 7)
        #expect(try scenario.evaluate().status == .revoked)
    }

    @Test("a module SVN below every level of its identity is not supported")
    func moduleBelowEveryLevel() throws {
        var scenario = StatusScenario()
        scenario.tee = CollateralBuilder.bytes(1, 1, 3)
        let evaluation = try scenario.evaluate()
        #expect(evaluation.failure == .tcbNotSupported)
        #expect(evaluation.moduleLevel == nil)
        #expect(evaluation.tdxLevel != nil)
    }

    // MARK: §6.1 step 6: the QE

    @Test(
        "the QE's status is combined last: OutOfDate degrades, Revoked revokes",
        arguments: [
            ("UpToDate", "OutOfDate", TDXTCBStatus.outOfDate), ("SWHardeningNeeded", "OutOfDate", .outOfDate),
            ("ConfigurationNeeded", "OutOfDate", .outOfDateConfigurationNeeded),
            ("ConfigurationAndSWHardeningNeeded", "OutOfDate", .outOfDateConfigurationNeeded),
            ("OutOfDate", "OutOfDate", .outOfDate), ("UpToDate", "Revoked", .revoked),
            ("ConfigurationNeeded", "Revoked", .revoked),
            // QVL's EnclaveReportVerifier reads every QE status other than UpToDate and Revoked as out of date.
            ("UpToDate", "SWHardeningNeeded", .outOfDate),
            ("ConfigurationNeeded", "OutOfDateConfigurationNeeded", .outOfDateConfigurationNeeded),
            ("SWHardeningNeeded", "UpToDate", .swHardeningNeeded),
        ])
    func qeStatus(levelStatus: String, qeStatus: String, expected: TDXTCBStatus) throws {
        var scenario = StatusScenario().withFirstLevel(status: levelStatus)
        scenario.qe = try CollateralBuilder.qe(qeStatus)
        let evaluation = try scenario.evaluate()
        #expect(evaluation.status == expected, "\(evaluation)")
        #expect(evaluation.qeLevel?.tcbStatus.rawValue == qeStatus)
    }

    @Test("a QE below every QE Identity level makes the TCB not supported; a foreign QE is a QE identity mismatch")
    func qeNotSupportedOrMismatched() throws {
        var scenario = StatusScenario()
        scenario.qe = try CollateralBuilder.qeMatch(levels: [(10, "UpToDate")], isvsvn: 7)
        let notSupported = try scenario.evaluate()
        #expect(notSupported.failure == .tcbNotSupported)
        #expect(notSupported.reason.contains("QE"))
        #expect(notSupported.tdxLevel != nil)

        scenario.qe = try CollateralBuilder.qeMatch(
            levels: [(4, "UpToDate")], isvsvn: 7, mrsigner: [UInt8](repeating: 1, count: 32))
        #expect(try scenario.evaluate().failure == .qeIdentityMismatch)
        // The QE is checked (step .4.15) before the TCB levels: a mismatch wins over an unsupported platform.
        scenario.pckSVNs = CollateralBuilder.bytes(1, 1, 1)
        #expect(try scenario.evaluate().failure == .qeIdentityMismatch)
    }

    // MARK: §6.1 step 5: TD relaunch (TD 1.5)

    /// A TD 1.5 quote whose running module (SVN 5) is out of date while the platform already runs SVN 6.
    static func relaunchScenario() -> StatusScenario {
        var scenario = StatusScenario()
        scenario.quoteVersion = 5
        scenario.tee = CollateralBuilder.bytes(5, 1, 3)
        scenario.tee2 = CollateralBuilder.bytes(6, 1, 3)
        return scenario
    }

    @Test(
        "TD relaunch is advised when only the module made the TD out of date and TEE_TCB_SVN2 reaches the newest level"
    )
    func relaunchAdvised() throws {
        let evaluation = try Self.relaunchScenario().evaluate()
        #expect(evaluation.status == .tdRelaunchAdvised, "\(evaluation)")
        #expect(evaluation.reason.contains("relaunch"))
        #expect(evaluation.advisoryIDs == ["INTEL-SA-01036", "INTEL-SA-01099"])

        let configuration = try Self.relaunchScenario().withFirstLevel(status: "ConfigurationNeeded").evaluate()
        #expect(configuration.status == .tdRelaunchAdvisedConfigurationNeeded)
        let hardening = try Self.relaunchScenario().withFirstLevel(status: "ConfigurationAndSWHardeningNeeded")
            .evaluate()
        #expect(hardening.status == .tdRelaunchAdvisedConfigurationNeeded)
        let software = try Self.relaunchScenario().withFirstLevel(status: "SWHardeningNeeded").evaluate()
        #expect(software.status == .tdRelaunchAdvised)
    }

    @Test(
        "no relaunch advice without TEE_TCB_SVN2, below the newest level, with an outdated QE or an up-to-date module"
    )
    func relaunchNotAdvised() throws {
        var tdx10 = Self.relaunchScenario()
        tdx10.tee2 = nil
        #expect(try tdx10.evaluate().status == .outOfDate)

        var olderModule = Self.relaunchScenario()
        olderModule.tee2 = CollateralBuilder.bytes(5, 1, 3)
        #expect(try olderModule.evaluate().status == .outOfDate)

        var olderMicrocode = Self.relaunchScenario()
        olderMicrocode.tee2 = CollateralBuilder.bytes(6, 1, 2)
        #expect(try olderMicrocode.evaluate().status == .outOfDate)

        var qeOutOfDate = Self.relaunchScenario()
        qeOutOfDate.qe = try CollateralBuilder.qe("OutOfDate")
        #expect(try qeOutOfDate.evaluate().status == .outOfDate)

        // The TDX level is out of date because of the late microcode (TEE_TCB_SVN[2]), not the module.
        var microcode = Self.relaunchScenario()
        microcode.tee = CollateralBuilder.bytes(6, 1, 2)
        #expect(try microcode.evaluate().status == .outOfDate)
        #expect(try microcode.evaluate().moduleLevel?.level.tcbStatus == .upToDate)

        // The SGX level is itself out of date.
        var sgxOutOfDate = Self.relaunchScenario()
        sgxOutOfDate.pckSVNs = CollateralBuilder.bytes(2, 2, 2, 2, 3, 1, 0, 5)
        let evaluation = try sgxOutOfDate.evaluate()
        #expect(evaluation.status == .outOfDate)
        #expect(evaluation.sgxLevel?.tcbStatus == .outOfDate)
    }

    @Test("with TEE_TCB_SVN2[1] = 0 the relaunch check compares against the newest level's TDX components 0 and 2")
    func relaunchWithoutModuleIdentity() throws {
        var scenario = Self.relaunchScenario()
        scenario.tee2 = CollateralBuilder.bytes(5, 0, 3)
        #expect(try scenario.evaluate().status == .tdRelaunchAdvised)
        scenario.tee2 = CollateralBuilder.bytes(4, 0, 3)
        #expect(try scenario.evaluate().status == .outOfDate)
        // TEE_TCB_SVN2 naming a module major version the TCB Info does not know.
        scenario.tee2 = CollateralBuilder.bytes(6, 2, 3)
        #expect(try scenario.evaluate().failure == .tdxModuleMismatch)
    }

    // MARK: §6.1 steps 1–2: the levels

    @Test("the SGX level and the TDX level can differ: the TDX level decides the status")
    func sgxAndTDXLevelsDiffer() throws {
        var scenario = StatusScenario()
        scenario.tee = CollateralBuilder.bytes(6, 1, 2)  // late microcode 2 < the newest level's 3
        let evaluation = try scenario.evaluate()
        #expect(evaluation.sgxLevel?.tcbDate == (try CollateralFixtures.date("2024-11-13T00:00:00Z")))
        #expect(evaluation.tdxLevel?.tcbDate == (try CollateralFixtures.date("2024-03-13T00:00:00Z")))
        #expect(evaluation.status == .outOfDate)
        #expect(evaluation.advisoryIDs == ["INTEL-SA-01036", "INTEL-SA-01079"])
    }

    @Test("levels are sorted before the walk: a list in ascending order selects the same levels")
    func levelOrder() throws {
        var scenario = StatusScenario()
        scenario.levels.reverse()
        #expect(try scenario.tcbInfo().tcbLevelsDescending.first?.tcbStatus == .upToDate)
        #expect(try scenario.evaluate().status == .upToDate)
        scenario.tee = CollateralBuilder.bytes(6, 1, 2)
        #expect(try scenario.evaluate().status == .outOfDate)
    }

    @Test("TDX components 0 and 1 are not compared when TEE_TCB_SVN[1] > 0; they are when it is 0")
    func moduleComponentsSkipped() throws {
        var scenario = StatusScenario()
        scenario.levels[0].tdx = CollateralBuilder.svns(200, 200, 3)
        #expect(try scenario.evaluate().status == .upToDate)

        // Major version 0 on a v4 quote: all 16 components count, and the module is UpToDate without an identity.
        var major0 = StatusScenario()
        major0.identities = nil
        major0.tee = CollateralBuilder.bytes(5, 0, 3)
        let evaluation = try major0.evaluate()
        #expect(evaluation.status == .upToDate)
        #expect(evaluation.moduleLevel == nil)
        major0.tee = CollateralBuilder.bytes(4, 0, 3)
        let below = try major0.evaluate()
        #expect(below.failure == .tcbNotSupported)
        #expect(below.sgxLevel != nil)
        #expect(below.tdxLevel == nil)
    }

    @Test("PCK SGX components or PCESVN below a level skip it; below every level the TCB is not supported")
    func sgxComponentsAndPCESVN() throws {
        var scenario = StatusScenario()
        scenario.pckPCESVN = 12
        let noLevel = try scenario.evaluate()
        #expect(noLevel.failure == .tcbNotSupported)
        #expect(noLevel.sgxLevel == nil)

        scenario.levels.append(
            .init(
                sgx: CollateralBuilder.svns(2, 2, 2, 2, 3, 1, 0, 5), pcesvn: 5, tdx: CollateralBuilder.svns(5, 0, 2),
                status: "OutOfDate", date: "2018-01-04T00:00:00Z", advisories: ["INTEL-SA-00106"]))
        let oldPCE = try scenario.evaluate()
        #expect(oldPCE.status == .outOfDate)
        #expect(oldPCE.tdxLevel?.pceSVN == 5)
        #expect(oldPCE.advisoryIDs == ["INTEL-SA-00106"])

        scenario.pckPCESVN = 13
        scenario.pckSVNs = CollateralBuilder.bytes(3, 3, 2, 2, 4, 1, 0, 4)  // SEAMLDR ACM 4 < 5, as in dcapqvl-v5-td15
        #expect(try scenario.evaluate().failure == .tcbNotSupported)
    }

    // MARK: Steps .4.10 and .4.11

    @Test("FMSPC or PCE-ID other than the TCB Info's is a TCB Info mismatch")
    func platformMismatch() throws {
        var scenario = StatusScenario()
        scenario.pckFMSPC = [0x50, 0x80, 0x6F, 0, 0, 0]
        #expect(try scenario.evaluate().failure == .tcbInfoMismatch)
        scenario = StatusScenario()
        scenario.pckPCEID = [0, 1]
        #expect(try scenario.evaluate().failure == .tcbInfoMismatch)
    }

    @Test("the TDX module identity: signer, attributes and major version must be the TCB Info's")
    func moduleIdentity() throws {
        var signer = StatusScenario()
        signer.mrSignerSEAM[0] = 1
        #expect(try signer.evaluate().failure == .tdxModuleMismatch)

        var attributes = StatusScenario()
        attributes.seamAttributes[7] = 0x80
        #expect(try attributes.evaluate().failure == .tdxModuleMismatch)

        var unknownMajor = StatusScenario()
        unknownMajor.tee = CollateralBuilder.bytes(6, 2, 3)
        let mismatch = try unknownMajor.evaluate()
        #expect(mismatch.failure == .tdxModuleMismatch)
        #expect(mismatch.reason.contains("TDX_02"))

        var noIdentities = StatusScenario()
        noIdentities.identities = nil
        #expect(try noIdentities.evaluate().failure == .tcbInfoMismatch)

        var lowerCase = StatusScenario()
        lowerCase.identities?[1].id = "tdx_01"
        #expect(try lowerCase.evaluate().status == .upToDate)
        #expect(try lowerCase.evaluate().moduleLevel?.identityID == "tdx_01")

        // The identity's signer is the one that counts when TEE_TCB_SVN[1] > 0, tdxModule's when it is 0.
        var identitySigner = StatusScenario()
        identitySigner.moduleSigner = String(repeating: "11", count: 48)
        #expect(try identitySigner.evaluate().status == .upToDate)
        identitySigner.tee = CollateralBuilder.bytes(5, 0, 3)
        #expect(try identitySigner.evaluate().failure == .tdxModuleMismatch)
        identitySigner.mrSignerSEAM = [UInt8](repeating: 0x11, count: 48)
        #expect(try identitySigner.evaluate().status == .upToDate)
    }

    @Test("advisory ids are the union of the selected levels', QE level included, sorted and each once")
    func advisoryUnion() throws {
        var scenario = StatusScenario()
        scenario.tee = CollateralBuilder.bytes(5, 1, 2)  // TDX level 2024-03-13, module level isvsvn 4
        scenario.qe = try CollateralBuilder.qe("OutOfDate", advisories: ["INTEL-SA-00999", "INTEL-SA-01036"])
        let evaluation = try scenario.evaluate()
        #expect(evaluation.status == .outOfDate)
        #expect(evaluation.advisoryIDs == ["INTEL-SA-00999", "INTEL-SA-01036", "INTEL-SA-01079", "INTEL-SA-01099"])
    }

    @Test("inputs of the wrong size are rejected before any evaluation")
    func inputSizes() throws {
        let qe = try CollateralBuilder.qe("UpToDate")
        func inputs(
            svns: Int = 16, fmspc: Int = 6, pceid: Int = 2, tee: Int = 16, tee2: Int? = nil, signer: Int = 48,
            attributes: Int = 8
        ) throws {
            _ = try TDXTCBEvaluation.Inputs(
                pckSGXComponentSVNs: Array(repeating: 0, count: svns), pckPCESVN: 0,
                pckFMSPC: Array(repeating: 0, count: fmspc),
                pckPCEID: Array(repeating: 0, count: pceid), quoteVersion: 4,
                teeTCBSVN: Array(repeating: 0, count: tee),
                teeTCBSVN2: tee2.map { Array(repeating: 0, count: $0) },
                mrSignerSEAM: Array(repeating: 0, count: signer),
                seamAttributes: Array(repeating: 0, count: attributes), qeIdentity: qe)
        }
        try inputs()
        try inputs(tee2: 16)
        let wrongSizes: [() throws -> Void] = [
            { try inputs(svns: 15) }, { try inputs(fmspc: 5) }, { try inputs(pceid: 3) }, { try inputs(tee: 15) },
            { try inputs(tee2: 17) }, { try inputs(signer: 32) }, { try inputs(attributes: 0) },
        ]
        for bad in wrongSizes {
            #expect(throws: TDXCollateralError.self) { try bad() }
        }
    }

    @Test("Intel's names for every status and failure")
    func names() {
        #expect(
            TDXTCBStatus.allCases.map(\.rawValue) == [
                "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                "OutOfDate",
                "OutOfDateConfigurationNeeded", "Revoked", "TDRelaunchAdvised", "TDRelaunchAdvisedConfigurationNeeded",
            ])
        #expect(
            TDXTCBFailure.allCases.map(\.rawValue) == [
                "TCB_NOT_SUPPORTED", "TDX_MODULE_MISMATCH", "TCB_INFO_MISMATCH", "QE_IDENTITY_MISMATCH",
            ])
        #expect(TDXTCBEvaluation.Outcome.failure(.tcbNotSupported).name == "TCB_NOT_SUPPORTED")
    }
}

extension TDXQEIdentityMatch {
    /// The matched level, nil otherwise.
    var matchedLevel: TDXQEIdentity.TCBLevel? {
        if case .matched(let level) = self { return level }
        return nil
    }
}
