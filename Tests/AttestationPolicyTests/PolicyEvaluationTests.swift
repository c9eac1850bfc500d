import Attestation
import AttestationPolicy
import CMKTesting
import Foundation
import Testing

/// Evaluates the shipped production policies over the real evidence in ../shared/vectors.
@Suite("Policy evaluation over real evidence")
struct PolicyEvaluationTests {
    let appraiser: EvidenceAppraiser

    init() throws {
        appraiser = EvidenceAppraiser(trustAnchors: try TrustAnchorStore(directory: SharedVectors.attestationDirectory))
    }

    static func shipped(_ name: String) throws -> Policy {
        try PolicyLoader().load(path: SharedVectors.repositoryRoot.appendingPathComponent("policies/\(name).yaml").path)
    }

    static func time(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    func snp(_ vector: String) throws -> (PresentedEvidence, Date) {
        let folder = "snp/\(vector)"
        let expected = try SharedVectors.json("\(folder)/expected.json")
        let chain = try ["ask.pem", "ark.pem"].map { try AttestationCertificate(pem: SharedVectors.text("\(folder)/\($0)")) }
        let evidence = PresentedEvidence.snp(
            report: try SharedVectors.bytes("\(folder)/report.bin"), certificateTable: nil,
            endorsement: try AttestationCertificate(der: SharedVectors.bytes("\(folder)/vcek.der")), chain: chain)
        return (evidence, Self.time(expected["verify_at_time"] as! String))
    }

    func tdx(_ vector: String) throws -> (PresentedEvidence, Date, [String: Any]) {
        let folder = SharedVectors.url("tdx/\(vector)")
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let evidence = PresentedEvidence.tdx(
            quote: try SharedVectors.bytes("tdx/\(vector)/quote.bin"), collateral: try TDXCollateral(directory: folder))
        return (evidence, Self.time(expected["eval_time"] as! String), expected)
    }

    func failed(_ appraisal: Appraisal) -> [String] { appraisal.failures.map(\.rule) }

    @Test("the strict SNP policy admits its images on every product; only the absent AMD CRL stops them",
          arguments: ["milan-v3-oak-oc", "genoa-v5-oak", "turin-v5-oak"])
    func strictSNPAdmitsIntendedEvidence(vector: String) throws {
        let (evidence, time) = try snp(vector)
        let policy = try Self.shipped("sev-snp-production")
        let appraisal = appraiser.appraise(evidence, policy: policy, context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        // The vectors carry no AMD CRL, and the policy requires one: that is the one failure, and it says so.
        #expect(failed(appraisal) == ["trust.revocation"])
        let revocation = try #require(appraisal.outcomes.first { $0.rule == "trust.revocation" })
        #expect(revocation.actual.contains("no") && revocation.actual.contains("CRL"))
        for rule in ["evidence.verified", "trust.root", "snp.measurement", "snp.tcb.reported", "snp.tcb.committed",
                     "snp.guest-policy.debug", "snp.vmpl", "snp.platform-info", "snp.signer"] {
            #expect(appraisal.outcomes.first { $0.rule == rule }?.status == .pass, "\(rule)")
        }
        #expect(appraisal.verdict == .reject)
        #expect(appraisal.handover.isEmpty)
        #expect(!appraisal.simulated)
    }

    @Test("the go-sev-guest report has DEBUG set: the strict SNP policy rejects it and says every reason at once")
    func strictSNPRejectsDebugReport() throws {
        let (evidence, time) = try snp("milan-v2-gsg")
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.shipped("sev-snp-production"), context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        #expect(appraisal.verdict == .reject)
        #expect(Set(failed(appraisal)) == [
            "trust.revocation", "snp.measurement", "snp.tcb.reported", "snp.tcb.committed", "snp.guest-policy.debug",
            "snp.platform-info",
        ])
        let debug = try #require(appraisal.outcomes.first { $0.rule == "snp.guest-policy.debug" })
        #expect(debug.expected == "debug forbidden" && debug.actual == "DEBUG on")
        #expect(debug.hint?.contains("host can read") == true)
        let tcb = try #require(appraisal.outcomes.first { $0.rule == "snp.tcb.reported" })
        #expect(tcb.hint?.contains("microcode 68 < 219") == true)
        #expect(appraisal.trustVector[.runtimeOpaque] == 96)
        #expect(appraisal.trustVector.status == .contraindicated)
    }

    @Test("the strict TDX policy admits the up-to-date quotes", arguments: ["dcapqvl-v4-uptodate", "gotdxguest-v5-td15"])
    func strictTDXAdmits(vector: String) throws {
        let (evidence, time, _) = try tdx(vector)
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.shipped("tdx-production"), context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        #expect(appraisal.verdict == .admit, "\(failed(appraisal))")
        #expect(appraisal.trustVector.status == .affirming)
        #expect(appraisal.handover.secrets == ["vault:production/instance-identity"])
        #expect(appraisal.collateralDigests.keys.sorted() == ["pck-crl", "qe-identity", "root-ca-crl", "tcb-info"])
        #expect(appraisal.expiries.contains { $0.kind == "waiver" })
    }

    @Test("a quote that matches no TCB level is rejected as not supported, not as out of date")
    func tcbNotSupported() throws {
        let (evidence, time, _) = try tdx("gotdxguest-spr-e4-v4")
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.shipped("tdx-production"), context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        #expect(appraisal.verdict == .reject)
        let status = try #require(appraisal.outcomes.first { $0.rule == "tdx.tcb-status" })
        #expect(status.status == .fail)
        #expect(status.actual == "TCB_NOT_SUPPORTED")
        #expect(status.hint?.contains("not merely out of date") == true)
    }

    @Test("after the collateral's nextUpdate the quote no longer verifies, and the outcome names the expired items")
    func expiredCollateral() throws {
        let (evidence, time, _) = try tdx("dcapqvl-v4-uptodate")
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.shipped("tdx-production"),
            context: AppraisalContext(evaluationTime: time.addingTimeInterval(400 * 86400), recordedEvidence: true))
        let verified = try #require(appraisal.outcomes.first { $0.rule == "evidence.verified" })
        #expect(verified.status == .fail)
        #expect(verified.actual.contains("time_valid"))
    }

    @Test("a waiver accepts a status until it expires, then fails with the date")
    func waivers() throws {
        let (evidence, time, _) = try tdx("dcapqvl-v4-uptodate")
        let yaml = """
            id: waiver-test
            version: 1
            evidence: tdx
            trust: {roots: [intel-sgx-root]}
            tdx:
              tcb:
                accept: [SWHardeningNeeded]
                waivers:
                  - {status: UpToDate, expires: "2025-08-01", reason: test}
            """
        let policy = try PolicyLoader().load(text: yaml)
        let before = appraiser.appraise(evidence, policy: policy, context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        let waived = try #require(before.outcomes.first { $0.rule == "tdx.tcb-status" })
        #expect(waived.status == .warn)
        #expect(waived.hint?.contains("2025-08-01") == true)
        #expect(before.verdict == .admit)
        // The collateral is still valid a day after the waiver expires? No: so judge the waiver alone at a later time
        // by evaluating the same verified input with a later evaluation time for the rules.
        var input = appraiser.input(evidence, revocation: .hard, context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        input.context.evaluationTime = Self.time("2025-08-02T00:00:00Z")
        let after = policy.evaluate(input)
        let expired = try #require(after.outcomes.first { $0.rule == "tdx.tcb-status" })
        #expect(expired.status == .fail)
        #expect(expired.hint?.contains("expired on 2025-08-01") == true)
    }

    @Test("live requests must bind REPORT_DATA: no nonce fails, a wrong nonce fails, with the expected digest shown")
    func reportDataBinding() throws {
        let (evidence, time, _) = try tdx("dcapqvl-v4-uptodate")
        let policy = try Self.shipped("tdx-production")
        let live = appraiser.appraise(evidence, policy: policy, context: AppraisalContext(evaluationTime: time))
        #expect(Set(failed(live)).isSuperset(of: ["freshness.report-data", "freshness.max-age", "tdx.mr-config-id"]))
        let wrong = appraiser.appraise(
            evidence, policy: policy,
            context: AppraisalContext(evaluationTime: time, nonce: Array(repeating: 7, count: 32), boundKey: [1, 2, 3], manifest: [9],
                                      collectedAt: time.addingTimeInterval(-10)))
        let binding = try #require(wrong.outcomes.first { $0.rule == "freshness.report-data" })
        #expect(binding.status == .fail)
        #expect(binding.expected.hasPrefix("SHA-512(cmk/report-data/v1, nonce, key) = "))
        #expect(wrong.outcomes.first { $0.rule == "freshness.max-age" }?.status == .pass)
        let manifest = try #require(wrong.outcomes.first { $0.rule == "tdx.mr-config-id" })
        #expect(manifest.status == .fail && manifest.hint?.contains("another manifest") == true)
    }

    @Test("evidence of the wrong type is rejected by the type rule")
    func wrongEvidenceType() throws {
        let (evidence, time) = try snp("genoa-v5-oak")
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.shipped("tdx-production"), context: AppraisalContext(evaluationTime: time, recordedEvidence: true))
        #expect(failed(appraisal).contains("evidence.type"))
        #expect(appraisal.verdict == .reject)
    }

    @Test("bytes that are no report become a failed outcome, not a crash")
    func garbageEvidence() throws {
        let policy = try Self.shipped("sev-snp-production")
        let appraisal = appraiser.appraise(
            .snp(report: [1, 2, 3], certificateTable: nil, endorsement: nil, chain: []), policy: policy,
            context: AppraisalContext(evaluationTime: Date()))
        let verified = try #require(appraisal.outcomes.first { $0.rule == "evidence.verified" })
        #expect(verified.status == .fail)
        #expect(verified.actual.hasPrefix("malformed-evidence"))
    }
}

@Suite("Policy posture review")
struct PolicyLintTests {
    static let weak = """
        id: weak
        version: 1
        evidence: sev-snp
        trust:
          roots: [amd-milan, simulated-amd]
          crl: soft
        sev-snp:
          guest-policy:
            debug: allowed
            migration-agent: allowed
        """

    @Test("flags every weak setting with its severity")
    func flagsWeakSettings() throws {
        let findings = PolicyLinter().review(try PolicyLoader().load(text: Self.weak))
        let byKey = Dictionary(findings.map { ($0.key, $0.severity) }, uniquingKeysWith: max)
        #expect(byKey["trust.roots"] == .critical)
        #expect(byKey["sev-snp.guest-policy.debug"] == .critical)
        #expect(byKey["sev-snp.guest-policy.migration-agent"] == .high)
        #expect(byKey["sev-snp.measurement"] == .high)
        #expect(byKey["sev-snp.tcb"] == .high)
        #expect(byKey["freshness"] == .high)
        #expect(byKey["trust.crl"] == .medium)
        #expect(findings.first?.severity == .critical)
    }

    @Test("flags expired, long and advisory-less waivers and outdated statuses accepted outright")
    func flagsWaivers() throws {
        let yaml = """
            id: waivers
            version: 1
            evidence: tdx
            trust: {roots: [intel-sgx-root]}
            tdx:
              tcb:
                accept: [UpToDate, OutOfDate]
                waivers:
                  - {status: SWHardeningNeeded, advisories: [INTEL-SA-00615], expires: "2026-01-01", reason: old}
                  - {status: ConfigurationNeeded, expires: "2030-01-01", reason: long}
            """
        let findings = PolicyLinter(now: PolicyEvaluationTests.time("2026-11-27T00:00:00Z")).review(try PolicyLoader().load(text: yaml))
        #expect(findings.contains { $0.key == "tdx.tcb.accept" && $0.severity == .high })
        #expect(findings.contains { $0.key == "tdx.tcb.waivers[0]" && $0.message.contains("expired") })
        #expect(findings.contains { $0.key == "tdx.tcb.waivers[1]" && $0.message.contains("more than 90 days") })
        #expect(findings.contains { $0.key == "tdx.tcb.waivers[1]" && $0.severity == .high && $0.message.contains("no advisories") })
    }

    @Test("the strict production policies have no finding above medium")
    func productionPoliciesAreStrict() throws {
        for name in ["sev-snp-production", "tdx-production"] {
            let findings = PolicyLinter(now: PolicyEvaluationTests.time("2026-11-27T00:00:00Z"))
                .review(try PolicyEvaluationTests.shipped(name))
            #expect(findings.allSatisfy { $0.severity <= .medium }, "\(name): \(findings)")
        }
    }

    @Test("explain names the roots, the measurement and the handover in words")
    func explain() throws {
        let text = PolicyExplanation.lines(try PolicyEvaluationTests.shipped("sev-snp-production")).joined(separator: "\n")
        #expect(text.contains("amd-milan or amd-genoa or amd-turin"))
        #expect(text.contains("the guest policy forbids debugging"))
        #expect(text.contains("on Turin, the reported TCB is at least fmc 0, bootloader 1, tee 0, snp 2, microcode 71"))
        #expect(text.contains("secrets vault:production/instance-identity"))
        let weak = PolicyExplanation.lines(try PolicyLoader().load(text: Self.weak)).joined(separator: "\n")
        #expect(weak.contains("SIMULATED platform"))
    }
}
