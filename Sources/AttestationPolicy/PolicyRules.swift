import Attestation
import BinaryFormat
import Crypto
import Foundation
import GuestProtocol
import SEVSNP

extension Policy {
    /// Evaluates the policy: every rule runs, and the appraisal lists each outcome with expected vs actual.
    public func evaluate(_ input: AppraisalInput) -> Appraisal {
        let outcomes = AllOfRules { rules }.evaluate(input)
        var expiries: [Expiry] = []
        if case .snp(let result)? = input.claims {
            expiries += result.chain.map { Expiry(kind: "certificate", name: "\($0.role) \($0.subject)", notAfter: $0.notAfter) }
        }
        for waiver in tdx?.waivers ?? [] {
            let advisories = waiver.advisories.isEmpty ? "" : " (\(waiver.advisories.joined(separator: ", ")))"
            expiries.append(Expiry(kind: "waiver", name: "TDX \(waiver.status)\(advisories)", notAfter: waiver.expires))
        }
        return Appraisal(
            policy: reference, evidenceType: input.evidenceType, simulated: input.claims?.simulated ?? false,
            evidenceDigest: input.evidenceDigest, collateralDigests: input.collateralDigests, outcomes: outcomes,
            evaluatedAt: input.context.evaluationTime, expiries: expiries, handover: handover)
    }

    /// The policy's rules, in the order they are reported.
    @RuleBuilder public var rules: [any AppraisalRule] {
        CommonRules.evidenceType(evidence)
        CommonRules.evidenceVerified
        CommonRules.trustedRoot(trust.roots)
        CommonRules.simulatedPlatform
        CommonRules.revocation(trust.crl)
        CommonRules.reportData(freshness.reportData)
        CommonRules.evidenceAge(freshness.maxEvidenceAge)
        if let snp { SNPPolicyRules(rules: snp).all }
        if let tdx { TDXPolicyRules(rules: tdx).all }
        if let tpm { TPMPolicyRules(rules: tpm).all }
    }
}

/// Whether `actual` equals one of `candidates`, comparing every candidate in constant time (so the time taken does
/// not say which one matched).
func matchesAny(_ candidates: [HexBytes], _ actual: [UInt8]) -> Bool {
    var found = false
    for candidate in candidates { found = constantTimeEqual(candidate.bytes, actual) || found }
    return found
}

/// Formats bytes for an outcome: short enough to read, long enough to recognise.
func shown(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

/// The AR4SI values the rules use (SERVICES.md §4.2).
enum AR4SI {
    static let approved: Int8 = 2
    static let knownVulnerabilities: Int8 = 32
    static let unrecognizedRuntime: Int8 = 33
    static let contraindicated: Int8 = 96
    static let unrecognized: Int8 = 97
    static let cryptoFailed: Int8 = 99
    static let unexpectedEvidence: Int8 = 1
}

/// Rules every policy has, whatever the evidence type.
enum CommonRules {
    static func evidenceType(_ kind: Policy.EvidenceKind) -> Rule {
        Rule("evidence.type", claim: .configuration) { input, rule in
            input.evidenceType == kind.rawValue
                ? rule.pass(kind.rawValue, input.evidenceType)
                : rule.fail(
                    kind.rawValue, input.evidenceType,
                    hint: "this policy appraises \(kind.rawValue) evidence; use a \(input.evidenceType) policy",
                    value: AR4SI.unexpectedEvidence)
        }
    }

    static let evidenceVerified = Rule("evidence.verified", claim: .hardware) { input, rule in
        let expected = "signature and certificate chain valid at the evaluation time"
        switch input.verification {
        case .failure(let error):
            return rule.fail(expected, "\(error.code): \(error.reason)", hint: hint(for: error), value: AR4SI.cryptoFailed)
        case .success(.snp):
            return rule.pass(expected, "valid")
        case .success(.tdx(let result)):
            let failed = result.checks.filter { !$0.value }.keys.sorted()
            if failed.isEmpty { return rule.pass(expected, "valid (\(result.checks.count) checks)") }
            let reasons = failed.map { "\($0): \(result.failures[$0] ?? "failed")" }.joined(separator: "; ")
            return rule.fail(
                expected, reasons,
                hint: "the quote or its collateral did not verify; if collateral expired, fetch current TCB Info, QE Identity and CRLs",
                value: AR4SI.cryptoFailed)
        }
    }

    static func hint(for error: AttestationError) -> String {
        switch error.code {
        case .missingCollateral: "fetch the missing collateral into the cache (VCEK and CRL from AMD KDS, or Intel PCS collateral)"
        case .certificateExpired, .crlInvalid: "refresh the collateral: a certificate or CRL is outside its validity"
        case .certificateRevoked: "the platform's key is revoked: do not trust this host"
        case .untrustedRoot: "the chain does not end in a pinned root; check which vendor's evidence this is"
        case .tcbMismatch, .chipIDMismatch: "the endorsement certificate is for another TCB or chip: fetch the VCEK for this report"
        case .malformedEvidence, .unreadableInput: "the evidence is not a valid report or quote; collect it again"
        default: "the evidence cannot be trusted as presented: \(error.reason)"
        }
    }

    static func trustedRoot(_ roots: [String]) -> Rule {
        Rule("trust.root", claim: .hardware) { input, rule in
            let expected = "one of " + roots.joined(separator: ", ")
            guard let claims = input.claims else { return rule.unchecked(expected) }
            if roots.contains(claims.trustAnchor) { return rule.pass(expected, claims.trustAnchor) }
            let hint = Policy.simulatedRoots.contains(claims.trustAnchor)
                ? "the evidence comes from cmk's simulated platform; only a development policy may name \(claims.trustAnchor)"
                : "the chain ends in \(claims.trustAnchor), which this policy does not trust; add it to trust.roots only if you mean to"
            return rule.fail(expected, claims.trustAnchor, hint: hint, value: AR4SI.unrecognized)
        }
    }

    static let simulatedPlatform = Rule("trust.simulated", claim: .hardware) { input, rule in
        let expected = "hardware-protected platform"
        guard let claims = input.claims else { return rule.unchecked(expected) }
        guard claims.simulated else { return rule.pass(expected, "hardware (\(claims.trustAnchor))") }
        return rule.warn(
            expected, "SIMULATED platform (\(claims.trustAnchor)): no hardware isolation",
            hint: "simulated evidence proves the software path only; never admit it in production",
            value: AR4SI.knownVulnerabilities)
    }

    static func revocation(_ mode: RevocationMode) -> Rule {
        Rule("trust.revocation", claim: .hardware) { input, rule in
            let expected = mode == .hard ? "checked against a current CRL" : "checked when a CRL is available (soft)"
            switch input.claims {
            case nil:
                return rule.unchecked(expected)
            case .snp(let result)?:
                switch result.revocation {
                case .checked:
                    return rule.pass(expected, "checked")
                case .notChecked(let why):
                    if mode == .hard {
                        return rule.fail(expected, "not checked: \(why)", hint: "fetch the CRL into the collateral cache", value: AR4SI.cryptoFailed)
                    }
                    return rule.warn(
                        expected, "not checked: \(why)",
                        hint: "soft revocation let this through without a CRL; fetch the CRL and use crl: hard",
                        value: AR4SI.knownVulnerabilities)
                }
            case .tdx(let result)?:
                let crlChecks = result.checks.filter { $0.key.contains("crl") }
                if crlChecks.isEmpty {
                    return mode == .hard
                        ? rule.fail(expected, "no CRL was checked", hint: "give the collateral folder with the CRLs", value: AR4SI.cryptoFailed)
                        : rule.warn(expected, "no CRL was checked", hint: "give the CRLs and use crl: hard", value: AR4SI.knownVulnerabilities)
                }
                let failed = crlChecks.filter { !$0.value }.keys.sorted()
                return failed.isEmpty
                    ? rule.pass(expected, "checked (\(crlChecks.keys.sorted().joined(separator: ", ")))")
                    : rule.fail(expected, "failed: \(failed.joined(separator: ", "))", hint: "refresh the CRLs", value: AR4SI.cryptoFailed)
            }
        }
    }

    static func reportData(_ binding: Policy.ReportDataBinding) -> Rule {
        Rule("freshness.report-data", claim: .instanceIdentity) { input, rule in
            let expected: String
            switch binding {
            case .none: return rule.unchecked("not bound", because: "the policy does not bind REPORT_DATA")
            case .nonce: expected = "SHA-512(cmk/report-data/v1, nonce)"
            case .nonceAndKey: expected = "SHA-512(cmk/report-data/v1, nonce, key)"
            }
            guard let claims = input.claims else { return rule.unchecked(expected) }
            guard let nonce = input.context.nonce else {
                if input.context.recordedEvidence {
                    return rule.unchecked(expected, because: "dry run of recorded evidence: no nonce given")
                }
                return rule.fail(expected, "no nonce was issued for this evidence",
                                 hint: "request a nonce (POST /v1/challenge, or the coordinator's launch) and put its hash in REPORT_DATA",
                                 value: AR4SI.contraindicated)
            }
            var key: [UInt8] = []
            if binding == .nonceAndKey {
                guard let bound = input.context.boundKey else {
                    return rule.fail(expected, "no key was presented", hint: "present the public key the instance bound", value: AR4SI.contraindicated)
                }
                key = bound
            }
            let want = ReportData.binding(nonce: nonce, publicKey: key)
            let actual = claims.reportData
            if constantTimeEqual(want, actual) { return rule.pass(expected, "bound") }
            return rule.fail(
                "\(expected) = \(shown(want))", shown(actual),
                hint: "REPORT_DATA does not carry this request's nonce: the evidence is stale, replayed or for another session",
                value: AR4SI.contraindicated)
        }
    }

    static func evidenceAge(_ maximum: Int?) -> Rule {
        Rule("freshness.max-age", claim: .instanceIdentity) { input, rule in
            guard let maximum else { return rule.unchecked("any age", because: "the policy sets no max-evidence-age") }
            let expected = "at most \(maximum) s old"
            guard let collected = input.context.collectedAt else {
                if input.context.recordedEvidence {
                    return rule.unchecked(expected, because: "dry run of recorded evidence: collection time not given")
                }
                return rule.fail(expected, "collection time unknown",
                                 hint: "evidence age is measured from the nonce's issue time; request a nonce first",
                                 value: AR4SI.contraindicated)
            }
            let age = input.context.evaluationTime.timeIntervalSince(collected)
            if age < -60 {
                return rule.fail(expected, "collected \(Int(-age)) s in the future", hint: "check the clocks", value: AR4SI.contraindicated)
            }
            return age <= Double(maximum)
                ? rule.pass(expected, "\(Int(age.rounded())) s")
                : rule.fail(expected, "\(Int(age.rounded())) s", hint: "collect fresh evidence", value: AR4SI.contraindicated)
        }
    }
}

/// Checks a binding (HOST_DATA, MRCONFIGID) against the manifest digest or a fixed value.
func bindingRule(_ id: String, _ binding: Policy.Binding, field: String, value: @escaping @Sendable (EvidenceClaims) -> [UInt8]?)
    -> Rule
{
    Rule(id, claim: .configuration) { input, rule in
        let expected: [UInt8]
        let description: String
        switch binding {
        case .value(let bytes):
            expected = bytes.bytes
            description = shown(bytes.bytes)
        case .manifest:
            guard let manifest = input.context.manifest else {
                if input.context.recordedEvidence {
                    return rule.unchecked("digest of the instance manifest", because: "dry run of recorded evidence: no manifest given")
                }
                return rule.fail(
                    "digest of the instance manifest", "no manifest presented",
                    hint: "the coordinator must present the manifest it launched the instance with", value: AR4SI.contraindicated)
            }
            expected = field == "HOST_DATA" ? Array(SHA256.hash(data: manifest)) : Array(SHA384.hash(data: manifest))
            description = "manifest digest \(shown(expected))"
        }
        guard let claims = input.claims, let actual = value(claims) else { return rule.unchecked(description) }
        return constantTimeEqual(expected, actual)
            ? rule.pass(description, shown(actual))
            : rule.fail(
                description, shown(actual),
                hint: "\(field) is not this instance's manifest digest: it was launched with another manifest, or by someone else",
                value: AR4SI.contraindicated)
    }
}

/// Checks a measurement against a list of acceptable values.
func measurementRule(_ id: String, acceptable: [HexBytes], derivedFrom: String, value: @escaping @Sendable (EvidenceClaims) -> [UInt8]?)
    -> Rule
{
    Rule(id, claim: .executables) { input, rule in
        let expected = acceptable.count == 1 ? shown(acceptable[0].bytes) : "one of \(acceptable.count) values"
        guard let claims = input.claims, let actual = value(claims) else { return rule.unchecked(expected) }
        // Evaluate every candidate so the time does not depend on which one matches.
        let matched = matchesAny(acceptable, actual)
        return matched
            ? rule.pass(expected, shown(actual))
            : rule.fail(
                expected, shown(actual),
                hint: "this value is not one the policy allows: \(derivedFrom)",
                value: AR4SI.unrecognizedRuntime)
    }
}
