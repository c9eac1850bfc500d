import Attestation
import BinaryFormat
import SEVSNP

/// The SEV-SNP rules of a policy.
struct SNPPolicyRules {
    let rules: Policy.SNPRules

    /// The claims when the evidence is a verified SNP report.
    static func snp(_ input: AppraisalInput) -> SNPClaims? {
        if case .snp(let result)? = input.claims { return result.claims }
        return nil
    }

    @RuleBuilder var all: [any AppraisalRule] {
        measurement
        for kind in ["reported", "committed", "launch"] { tcb(kind) }
        debug
        migrationAgent
        smt
        abi
        platformInfo
        vmpl
        hostData
        signer
        chipID
        guestSVN
    }

    var measurement: Rule {
        guard let rule = rules.measurement else {
            return Rule("snp.measurement", claim: .executables) { _, r in
                r.unchecked("any", because: "the policy does not pin the launch measurement")
            }
        }
        let origin = rule.references.isEmpty
            ? "add the digest `cmk measure snp` gives for the firmware, kernel, initrd and cmdline you deployed"
            : "the references measure to \(rule.references.map { $0.digest.description.prefix(16) + "…" }.joined(separator: ", ")); the instance booted something else"
        return measurementRule("snp.measurement", acceptable: rule.acceptable, derivedFrom: origin) {
            if case .snp(let result) = $0 { return result.claims.measurement.bytes }
            return nil
        }
    }

    static func describe(_ c: SNPTCBVersion.Components) -> String {
        (c.fmc.map { "fmc \($0), " } ?? "") + "bootloader \(c.bootloader), tee \(c.tee), snp \(c.snp), microcode \(c.microcode)"
    }

    static func shortfalls(_ actual: SNPTCBVersion.Components, _ minimum: SNPTCBVersion.Components) -> [String] {
        var short: [String] = []
        if let want = minimum.fmc, (actual.fmc ?? 0) < want { short.append("fmc \(actual.fmc ?? 0) < \(want)") }
        if actual.bootloader < minimum.bootloader { short.append("bootloader \(actual.bootloader) < \(minimum.bootloader)") }
        if actual.tee < minimum.tee { short.append("tee \(actual.tee) < \(minimum.tee)") }
        if actual.snp < minimum.snp { short.append("snp \(actual.snp) < \(minimum.snp)") }
        if actual.microcode < minimum.microcode { short.append("microcode \(actual.microcode) < \(minimum.microcode)") }
        return short
    }

    func tcb(_ kind: String) -> Rule {
        let table = rules.tcb
        return Rule("snp.tcb.\(kind)", claim: .hardware) { input, rule in
            guard !table.isEmpty else { return rule.unchecked("any", because: "the policy sets no minimum TCB") }
            guard let claims = Self.snp(input) else { return rule.unchecked("a minimum \(kind) TCB") }
            guard let entry = table.first(where: { $0.product == claims.product }) else {
                return rule.fail(
                    "a product the policy lists (\(table.map(\.product.rawValue).joined(separator: ", ")))", claims.product.rawValue,
                    hint: "add a tcb entry for \(claims.product.rawValue.lowercased()) with its own layout", value: AR4SI.unrecognized)
            }
            let minimum: SNPTCBVersion.Components?
            let actual: SNPTCBVersion.Components
            switch kind {
            case "reported": (minimum, actual) = (entry.reported, claims.tcb.reported)
            case "committed": (minimum, actual) = (entry.committed, claims.tcb.committed)
            default: (minimum, actual) = (entry.launch, claims.tcb.launch)
            }
            guard let minimum else {
                return rule.unchecked("any", because: "no minimum \(kind) TCB for \(claims.product.rawValue)")
            }
            let expected = ">= " + Self.describe(minimum)
            let short = Self.shortfalls(actual, minimum)
            if short.isEmpty { return rule.pass(expected, Self.describe(actual)) }
            return rule.fail(
                expected, Self.describe(actual),
                hint: "the host's \(kind) TCB is below the minimum (\(short.joined(separator: ", "))): update the SEV firmware and microcode (see AMD's security bulletins), then commit the new TCB",
                value: AR4SI.knownVulnerabilities)
        }
    }

    var debug: Rule {
        let permission = rules.debug
        return Rule("snp.guest-policy.debug", claim: .runtimeOpaque) { input, rule in
            let expected = permission == .forbidden ? "debug forbidden" : "debug allowed"
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            if !c.policy.debugAllowed { return rule.pass(expected, "debug off") }
            if permission == .allowed {
                return rule.warn(expected, "DEBUG on", hint: "the host can read and write this guest's memory", value: AR4SI.contraindicated)
            }
            return rule.fail(
                expected, "DEBUG on",
                hint: "the guest policy allows debugging, so the host can read its memory; launch without the DEBUG bit (policy bit 19)",
                value: AR4SI.contraindicated)
        }
    }

    var migrationAgent: Rule {
        let permission = rules.migrationAgent
        return Rule("snp.guest-policy.migration-agent", claim: .configuration) { input, rule in
            let expected = "migration agent \(permission.rawValue)"
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            if !c.policy.migrationAgentAllowed || permission == .allowed {
                return rule.pass(expected, c.policy.migrationAgentAllowed ? "allowed" : "not allowed")
            }
            return rule.fail(
                expected, "allowed", hint: "launch without MIGRATE_MA (policy bit 18): a migration agent can export the guest",
                value: AR4SI.contraindicated)
        }
    }

    var smt: Rule {
        let permission = rules.smt
        return Rule("snp.guest-policy.smt", claim: .configuration) { input, rule in
            guard let permission else { return rule.unchecked("any", because: "the policy does not constrain SMT") }
            let expected = "SMT \(permission.rawValue)"
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            if permission == .allowed || !c.policy.smtAllowed { return rule.pass(expected, c.policy.smtAllowed ? "allowed" : "not allowed") }
            return rule.fail(
                expected, "allowed", hint: "launch with the SMT bit clear, on a host with SMT disabled", value: AR4SI.knownVulnerabilities)
        }
    }

    var abi: Rule {
        let minimum = rules.minimumABI
        return Rule("snp.guest-policy.abi", claim: .configuration) { input, rule in
            guard let minimum else { return rule.unchecked("any", because: "the policy sets no minimum ABI") }
            let parts = minimum.split(separator: ".").compactMap { UInt8($0) }
            let expected = ">= \(minimum)"
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            let actual = "\(c.policy.abiMajor).\(c.policy.abiMinor)"
            return (c.policy.abiMajor, c.policy.abiMinor) >= (parts[0], parts[1])
                ? rule.pass(expected, actual)
                : rule.fail(expected, actual, hint: "launch with a guest policy whose ABI minimum is at least \(minimum)", value: AR4SI.knownVulnerabilities)
        }
    }

    var platformInfo: Rule {
        let require = rules.platformRequire, forbid = rules.platformForbid
        return Rule("snp.platform-info", claim: .configuration) { input, rule in
            guard !require.isEmpty || !forbid.isEmpty else {
                return rule.unchecked("any", because: "the policy sets no platform-info requirements")
            }
            let expected = (require.isEmpty ? [] : ["require " + require.joined(separator: " ")])
                + (forbid.isEmpty ? [] : ["forbid " + forbid.joined(separator: " ")])
            guard let c = Self.snp(input) else { return rule.unchecked(expected.joined(separator: "; ")) }
            let flags = Set(c.platformInfo.flags)
            let missing = require.filter { !flags.contains($0) }, present = forbid.filter { flags.contains($0) }
            let actual = c.platformInfo.flags.isEmpty ? "no flags" : c.platformInfo.flags.joined(separator: " ")
            if missing.isEmpty && present.isEmpty { return rule.pass(expected.joined(separator: "; "), actual) }
            let problems = (missing.map { "\($0) missing" } + present.map { "\($0) set" }).joined(separator: ", ")
            return rule.fail(
                expected.joined(separator: "; "), actual, hint: "reconfigure the host (\(problems)) in its BIOS/firmware settings",
                value: AR4SI.knownVulnerabilities)
        }
    }

    var vmpl: Rule {
        let want = rules.vmpl
        return Rule("snp.vmpl", claim: .configuration) { input, rule in
            guard let want else { return rule.unchecked("any", because: "the policy does not constrain the VMPL") }
            guard let c = Self.snp(input) else { return rule.unchecked("VMPL \(want)") }
            return c.vmpl == want
                ? rule.pass("VMPL \(want)", "VMPL \(c.vmpl)")
                : rule.fail(
                    "VMPL \(want)", "VMPL \(c.vmpl)",
                    hint: "the report was requested at another privilege level (a paravisor or SVSM runs at VMPL 0)",
                    value: AR4SI.contraindicated)
        }
    }

    var hostData: Rule {
        guard let binding = rules.hostData else {
            return Rule("snp.host-data", claim: .configuration) { _, r in
                r.unchecked("any", because: "the policy does not bind HOST_DATA")
            }
        }
        return bindingRule("snp.host-data", binding, field: "HOST_DATA") {
            if case .snp(let result) = $0 { return result.claims.hostData.bytes }
            return nil
        }
    }

    var signer: Rule {
        let signers = rules.signers
        return Rule("snp.signer", claim: .instanceIdentity) { input, rule in
            guard !signers.isEmpty else { return rule.unchecked("VCEK or VLEK", because: "the policy accepts either signer") }
            let expected = signers.joined(separator: " or ")
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            return signers.contains(c.signer)
                ? rule.pass(expected, c.signer)
                : rule.fail(expected, c.signer, hint: "the report is signed by a \(c.signer); this policy does not accept one", value: AR4SI.unrecognized)
        }
    }

    var chipID: Rule {
        let chips = rules.chipIDs
        return Rule("snp.chip-id", claim: .instanceIdentity) { input, rule in
            guard !chips.isEmpty else { return rule.unchecked("any", because: "the policy does not pin chips") }
            let expected = "one of \(chips.count) pinned chips"
            guard let c = Self.snp(input) else { return rule.unchecked(expected) }
            let matched = matchesAny(chips, c.chipID.bytes)
            return matched
                ? rule.pass(expected, c.chipID.description)
                : rule.fail(
                    expected, c.chipIDMasked ? "masked by the host" : c.chipID.description,
                    hint: "the evidence comes from a machine the policy does not pin", value: AR4SI.unrecognized)
        }
    }

    var guestSVN: Rule {
        let minimum = rules.minimumGuestSVN
        return Rule("snp.guest-svn", claim: .executables) { input, rule in
            guard let minimum else { return rule.unchecked("any", because: "the policy sets no minimum guest SVN") }
            guard let c = Self.snp(input) else { return rule.unchecked(">= \(minimum)") }
            return Int(c.guestSVN) >= minimum
                ? rule.pass(">= \(minimum)", "\(c.guestSVN)")
                : rule.fail(">= \(minimum)", "\(c.guestSVN)", hint: "the guest image is older than the policy allows", value: AR4SI.knownVulnerabilities)
        }
    }
}
