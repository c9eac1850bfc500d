import Foundation
import Testing
@testable import AttestationPolicy

@Suite("AR4SI trust vector")
struct TrustVectorTests {
    @Test("tiers follow AR4SI's ranges", arguments: [
        (Int8(0), TrustVector.Tier.none), (-1, .none), (1, .none), (2, .affirming), (31, .affirming), (-32, .affirming),
        (32, .warning), (95, .warning), (-33, .warning), (96, .contraindicated), (127, .contraindicated), (-128, .contraindicated),
    ])
    func tiers(value: Int8, tier: TrustVector.Tier) {
        #expect(TrustVector.tier(of: value) == tier)
    }

    @Test("an appraisal's claim takes its worst rule, and any failure rejects and withholds the handover")
    func worstRuleWins() {
        let outcomes = [
            RuleOutcome(rule: "a", status: .pass, expected: "x", actual: "x", trustClaim: .hardware, trustValue: 2),
            RuleOutcome(rule: "b", status: .fail, expected: "y", actual: "z", hint: "fix", trustClaim: .hardware, trustValue: 97),
            RuleOutcome(rule: "c", status: .pass, expected: "x", actual: "x", trustClaim: .executables, trustValue: 2),
            RuleOutcome(rule: "d", status: .notChecked, expected: "-", actual: "-", trustClaim: .configuration, trustValue: 0),
        ]
        let appraisal = Appraisal(
            policy: .init(id: "p", version: 1, digest: "00"), evidenceType: "sev-snp", simulated: false, evidenceDigest: "00",
            collateralDigests: [:], outcomes: outcomes, evaluatedAt: .init(timeIntervalSince1970: 0), expiries: [],
            handover: Handover(secrets: ["vault:x"]))
        #expect(appraisal.verdict == .reject)
        #expect(appraisal.trustVector[.hardware] == 97)
        #expect(appraisal.trustVector[.executables] == 2)
        #expect(appraisal.trustVector[.configuration] == nil)
        #expect(appraisal.trustVector.status == .contraindicated)
        #expect(appraisal.handover.isEmpty)
        #expect(appraisal.failures.map(\.rule) == ["b"])
    }
}
