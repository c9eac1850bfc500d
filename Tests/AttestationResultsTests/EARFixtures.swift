import AttestationPolicy
import AttestationResults
import Foundation

/// Appraisals, claims and keys the EAR tests share.
enum EARFixtures {
    static let evaluatedAt = Date(timeIntervalSince1970: 1_787_000_000)
    static let policy = Appraisal.PolicyReference(
        id: "payments-api", version: 3,
        digest: "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e")
    static let verifier = EARVerifierID.cmk(version: "0.4.0")

    /// Outcomes of a policy that admits with one warning (known vulnerabilities in the configuration).
    static let admittingOutcomes: [RuleOutcome] = [
        RuleOutcome(
            rule: "snp.measurement", status: .pass, expected: "one of 1 approved measurements",
            actual: "9f2c…", trustClaim: .executables, trustValue: 2),
        RuleOutcome(
            rule: "snp.tcb.reported.minimum", status: .warn, expected: ">= bootloader 3, tee 0, snp 8, microcode 115",
            actual: "bootloader 3, tee 0, snp 8, microcode 110", hint: "waived until 2026-12-31 (advisory AMD-SB-3019)",
            trustClaim: .configuration, trustValue: 32),
        RuleOutcome(
            rule: "snp.chain", status: .pass, expected: "VCEK chains to ARK Milan", actual: "chained",
            trustClaim: .hardware, trustValue: 2),
        RuleOutcome(
            rule: "snp.debug", status: .pass, expected: "debug disabled", actual: "debug disabled",
            trustClaim: .runtimeOpaque, trustValue: 2),
        RuleOutcome(
            rule: "snp.host-data", status: .notChecked, expected: "any", actual: "00…",
            trustClaim: .instanceIdentity, trustValue: 0),
    ]

    static func appraisal(simulated: Bool = true, outcomes: [RuleOutcome] = admittingOutcomes) -> Appraisal {
        Appraisal(
            policy: policy, evidenceType: "sev-snp", simulated: simulated,
            evidenceDigest: "aa11bb22cc33dd44ee55ff6600778899aa11bb22cc33dd44ee55ff6600778899",
            collateralDigests: [
                "vcek": "01" + String(repeating: "ab", count: 31), "ask": String(repeating: "cd", count: 32),
            ],
            outcomes: outcomes, evaluatedAt: evaluatedAt, expiries: [], handover: Handover(secrets: ["vault:db"]))
    }

    static func claims(
        profile: EARProfile = .veraison, simulated: Bool = true, nonce: [UInt8]? = Array(0..<16),
        lifetime: TimeInterval = 300
    ) throws -> EARClaims {
        try EARClaims(
            appraisal: appraisal(simulated: simulated), verifierID: verifier, issuedAt: evaluatedAt,
            expiresAt: evaluatedAt.addingTimeInterval(lifetime), issuer: "cmk", nonce: nonce, profile: profile)
    }

    /// A time inside the fixtures' validity.
    static let now = evaluatedAt.addingTimeInterval(10)

    static let expectedPolicyID = "policy:cmk/payments-api@3#3f1c0e2a9b8d7c6e"
}

extension [UInt8] {
    init(utf8 text: String) { self = Array(text.utf8) }
    var utf8String: String { String(decoding: self, as: UTF8.self) }
}

/// Base64url without padding, for tests that build tokens by hand.
func base64url(_ bytes: some Sequence<UInt8>) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

func unbase64url(_ text: some StringProtocol) -> [UInt8]? {
    var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while standard.count % 4 != 0 { standard += "=" }
    return Data(base64Encoded: standard).map(Array.init)
}
