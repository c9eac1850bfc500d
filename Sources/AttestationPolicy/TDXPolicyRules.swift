import Attestation
import BinaryFormat
import Foundation

/// The TDX rules of a policy.
struct TDXPolicyRules {
    let rules: Policy.TDXRules

    static func tdx(_ input: AppraisalInput) -> TDXVerificationResult? {
        if case .tdx(let result)? = input.claims { return result }
        return nil
    }

    @RuleBuilder var all: [any AppraisalRule] {
        mrTD
        for index in 0...3 { rtmr(index) }
        eventLog
        mrConfigID
        mrSeam
        debug
        tcbStatus
    }

    var mrTD: Rule {
        guard let rule = rules.mrTD else {
            return Rule("tdx.mrtd", claim: .executables) { _, r in r.unchecked("any", because: "the policy does not pin MRTD") }
        }
        let origin = rule.references.isEmpty
            ? "add the MRTD `cmk measure tdx` gives for the firmware you deployed"
            : "the reference firmware measures to \(rule.references.map { $0.digest.description.prefix(16) + "…" }.joined(separator: ", ")); the TD booted other firmware"
        return measurementRule("tdx.mrtd", acceptable: rule.acceptable, derivedFrom: origin) {
            if case .tdx(let result) = $0 { return result.claims.mrTD.bytes }
            return nil
        }
    }

    func rtmr(_ index: Int) -> Rule {
        guard let values = rules.rtmrs[index] else {
            return Rule("tdx.rtmr.\(index)", claim: .executables) { _, r in
                r.unchecked("any", because: "the policy does not pin RTMR\(index)")
            }
        }
        return measurementRule(
            "tdx.rtmr.\(index)", acceptable: values,
            derivedFrom: "replay the TD's event log with `cmk measure replay` to see which component changed"
        ) {
            if case .tdx(let result) = $0, result.claims.rtmrs.count > index { return result.claims.rtmrs[index].bytes }
            return nil
        }
    }

    /// The TD's event log, when presented, must replay to the RTMRs its verified quote carries: otherwise the log
    /// describes another boot, and every event-level claim read from it would be a lie.
    var eventLog: Rule {
        let requirement = rules.eventLog
        return Rule("tdx.event-log", claim: .executables) { input, rule in
            let expected = requirement == .required
                ? "an event log that replays to RTMR0–3" : "an event log, when presented, that replays to RTMR0–3"
            guard let result = Self.tdx(input) else { return rule.unchecked(expected) }
            switch input.eventLog {
            case nil:
                if requirement == .ifPresent { return rule.unchecked(expected, because: "no event log was presented") }
                return rule.fail(
                    expected, "no event log presented",
                    hint: "send the TD's CCEL (/sys/firmware/acpi/tables/data/CCEL) with the quote", value: AR4SI.unrecognized)
            case .unreadable(let reason, let size)?:
                return rule.fail(
                    expected, "an event log of \(size) bytes that cannot be replayed: \(reason)",
                    hint: "the log is damaged or not a CCEL (TCG crypto-agile with a SHA-384 bank)", value: AR4SI.unrecognized)
            case .tdx(let rtmrs, let events, _)?:
                let quoted = result.claims.rtmrs
                let differing = (0..<4).filter { $0 >= rtmrs.count || $0 >= quoted.count || rtmrs[$0] != quoted[$0] }
                guard differing.isEmpty else {
                    let detail = differing.map { index in
                        "RTMR\(index): log \(index < rtmrs.count ? rtmrs[index].description.prefix(16) + "…" : "none"), quote "
                            + (index < quoted.count ? quoted[index].description.prefix(16) + "…" : "none")
                    }
                    return rule.fail(
                        expected, detail.joined(separator: "; "),
                        hint: "the event log describes another boot than the quote (edited, truncated or from another TD): "
                            + "replay it with `cmk measure replay` to see which events differ",
                        value: AR4SI.unrecognized)
                }
                return rule.pass(expected, "\(events) measured events replay to RTMR0–3")
            }
        }
    }

    var mrConfigID: Rule {
        guard let binding = rules.mrConfigID else {
            return Rule("tdx.mr-config-id", claim: .configuration) { _, r in
                r.unchecked("any", because: "the policy does not bind MRCONFIGID")
            }
        }
        return bindingRule("tdx.mr-config-id", binding, field: "MRCONFIGID") {
            if case .tdx(let result) = $0 { return result.claims.mrConfigID.bytes }
            return nil
        }
    }

    var mrSeam: Rule {
        guard !rules.mrSeam.isEmpty else {
            return Rule("tdx.mr-seam", claim: .executables) { _, r in
                r.unchecked("any", because: "the policy does not pin the TDX module (TCB Info's module identities still apply)")
            }
        }
        return measurementRule(
            "tdx.mr-seam", acceptable: rules.mrSeam, derivedFrom: "the TDX module is not one the policy lists; update the list after a module update"
        ) {
            if case .tdx(let result) = $0 { return result.claims.mrSeam.bytes }
            return nil
        }
    }

    var debug: Rule {
        let permission = rules.debug
        return Rule("tdx.debug", claim: .runtimeOpaque) { input, rule in
            let expected = permission == .forbidden ? "debug forbidden" : "debug allowed"
            guard let result = Self.tdx(input) else { return rule.unchecked(expected) }
            if !result.claims.debug { return rule.pass(expected, "debug off") }
            if permission == .allowed {
                return rule.warn(expected, "DEBUG on", hint: "the host can read this TD's state", value: AR4SI.contraindicated)
            }
            return rule.fail(
                expected, "DEBUG on", hint: "TD attribute DEBUG (bit 0) is set: launch the TD without debug",
                value: AR4SI.contraindicated)
        }
    }

    var tcbStatus: Rule {
        let accepted = rules.acceptedStatuses, waivers = rules.waivers
        return Rule("tdx.tcb-status", claim: .hardware) { input, rule in
            let expected = accepted.joined(separator: " or ")
                + (waivers.isEmpty ? "" : ", or a waived status (\(waivers.map(\.status).joined(separator: ", ")))")
            guard let result = Self.tdx(input) else { return rule.unchecked(expected) }
            guard let status = result.tcbStatus else {
                return rule.fail(
                    expected, "not evaluated (no collateral)",
                    hint: "give the TCB Info and QE Identity collateral for this FMSPC", value: AR4SI.cryptoFailed)
            }
            let advisories = result.advisoryIDs
            let actual = status + (advisories.isEmpty ? "" : " (\(advisories.joined(separator: ", "))))")
            if status == "Revoked" {
                return rule.fail(expected, actual, hint: "Intel revoked this platform's TCB: do not trust it", value: AR4SI.contraindicated)
            }
            if status.hasPrefix("TCB_") || status.hasSuffix("_MISMATCH") {
                return rule.fail(
                    expected, actual,
                    hint: "the platform matches no TCB level in Intel's TCB Info (not merely out of date): check the FMSPC's collateral and the TDX module",
                    value: AR4SI.unrecognized)
            }
            if status == "UpToDate" && accepted.contains(status) { return rule.pass(expected, actual) }
            if accepted.contains(status) { return rule.pass(expected, actual, value: AR4SI.knownVulnerabilities) }
            let time = input.context.evaluationTime
            let matching = waivers.filter { $0.status == status && Set(advisories).isSubset(of: $0.advisories) }
            if let waiver = matching.filter({ $0.expires > time }).max(by: { $0.expires < $1.expires }) {
                return rule.warn(
                    expected, actual,
                    hint: "accepted by a waiver until \(waiver.expires.ISO8601Format()) (\(waiver.reason)); update the platform before then",
                    value: AR4SI.knownVulnerabilities)
            }
            if let expired = matching.max(by: { $0.expires < $1.expires }) {
                return rule.fail(
                    expected, actual,
                    hint: "the waiver for \(status) expired on \(expired.expires.ISO8601Format()): update the platform (TCB recovery) or renew the waiver deliberately",
                    value: AR4SI.knownVulnerabilities)
            }
            let uncovered = waivers.contains { $0.status == status }
                ? " (advisories not covered by any waiver: \(advisories.filter { a in !waivers.contains { $0.advisories.contains(a) } }.joined(separator: ", ")))"
                : ""
            return rule.fail(
                expected, actual,
                hint: "update the platform (BIOS/microcode, TDX module) to reach an accepted TCB level\(uncovered)",
                value: AR4SI.knownVulnerabilities)
        }
    }
}
