public import Foundation
import Attestation
import BinaryFormat
import SEVSNP

/// A weak setting a posture review found in a policy.
public struct PolicyFinding: Sendable, Hashable, Codable {
    public enum Severity: String, Sendable, Hashable, Codable, Comparable, CaseIterable {
        case info, low, medium, high, critical

        var rank: Int { Severity.allCases.firstIndex(of: self)! }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public let policyID: String
    public let severity: Severity
    /// The policy key the finding is about, e.g. `sev-snp.guest-policy.debug`.
    public let key: String
    public let message: String
    /// What to change.
    public let fix: String

    public init(policyID: String, severity: Severity, key: String, message: String, fix: String) {
        self.policyID = policyID
        self.severity = severity
        self.key = key
        self.message = message
        self.fix = fix
    }
}

/// Reviews a policy's posture: flags the settings that let weak evidence through (debug allowed, no minimum TCB,
/// simulated roots, unpinned measurements, expired or long waivers, no freshness, soft revocation ...).
public struct PolicyLinter: Sendable {
    /// The time waivers are judged at.
    public var now: Date
    /// Waivers reaching further than this are flagged as long.
    public var longWaiver: TimeInterval

    public init(now: Date = Date(), longWaiver: TimeInterval = 90 * 86400) {
        self.now = now
        self.longWaiver = longWaiver
    }

    public func review(_ policy: Policy) -> [PolicyFinding] {
        var findings: [PolicyFinding] = []
        func flag(_ severity: PolicyFinding.Severity, _ key: String, _ message: String, _ fix: String) {
            findings.append(PolicyFinding(policyID: policy.id, severity: severity, key: key, message: message, fix: fix))
        }
        let simulated = policy.trust.roots.filter { Policy.simulatedRoots.contains($0) }
        if !simulated.isEmpty {
            flag(.critical, "trust.roots", "trusts the simulated root(s) \(simulated.joined(separator: ", ")): evidence without any hardware protection is admitted",
                 "use this policy for development only; production policies name amd-* or intel-sgx-root")
        }
        if policy.trust.crl == .soft {
            flag(.medium, "trust.crl", "soft revocation: evidence is admitted when no current CRL is at hand",
                 "set crl: hard and keep the collateral cache fresh")
        }
        switch (policy.freshness.reportData, policy.freshness.maxEvidenceAge) {
        case (.none, nil):
            flag(.high, "freshness", "no freshness: REPORT_DATA is not bound to a nonce and evidence age is unlimited, so old evidence can be replayed",
                 "set freshness.report-data: nonce-and-key and max-evidence-age: 5m")
        case (.none, _):
            flag(.medium, "freshness.report-data", "REPORT_DATA is not bound to the request: evidence can be replayed within its age",
                 "set freshness.report-data: nonce or nonce-and-key")
        case (_, nil):
            flag(.low, "freshness.max-evidence-age", "no maximum evidence age", "set max-evidence-age, e.g. 5m")
        default:
            break
        }
        if policy.handover.secrets.isEmpty && policy.handover.volumes.isEmpty && policy.handover.channelPeers.isEmpty {
            flag(.info, "handover", "admission hands nothing over", "name the secrets, volumes and channel peers the instance needs")
        }
        if let snp = policy.snp { reviewSNP(snp, flag) }
        if let tdx = policy.tdx { reviewTDX(tdx, flag) }
        return findings.sorted { ($0.severity, $1.key) > ($1.severity, $0.key) }
    }

    func reviewSNP(_ snp: Policy.SNPRules, _ flag: (PolicyFinding.Severity, String, String, String) -> Void) {
        if snp.debug == .allowed {
            flag(.critical, "sev-snp.guest-policy.debug", "debug is allowed: the host can read and write guest memory",
                 "set debug: forbidden (the default)")
        }
        if snp.migrationAgent == .allowed {
            flag(.high, "sev-snp.guest-policy.migration-agent", "a migration agent is allowed: guest memory can be exported",
                 "set migration-agent: forbidden (the default)")
        }
        if snp.measurement == nil {
            flag(.high, "sev-snp.measurement", "the launch measurement is not pinned: any firmware, kernel and command line is admitted",
                 "add measurement.allow or measurement.reference")
        }
        if snp.tcb.isEmpty {
            flag(.high, "sev-snp.tcb", "no minimum TCB: hosts with known firmware vulnerabilities are admitted",
                 "add tcb minimums for each product you run (milan, genoa, turin)")
        } else if snp.tcb.allSatisfy({ $0.reported == nil }) {
            flag(.medium, "sev-snp.tcb", "no minimum reported TCB (the one the VCEK is derived from)", "add a reported minimum")
        }
        if snp.hostData == nil {
            flag(.low, "sev-snp.host-data", "HOST_DATA is not bound to the instance manifest", "set host-data: manifest")
        }
        if snp.vmpl == nil {
            flag(.low, "sev-snp.vmpl", "the VMPL is not constrained", "set vmpl: 0 (or the level your paravisor uses)")
        }
        if snp.smt == nil {
            flag(.info, "sev-snp.guest-policy.smt", "SMT is not constrained", "state smt: allowed or forbidden")
        }
    }

    func reviewTDX(_ tdx: Policy.TDXRules, _ flag: (PolicyFinding.Severity, String, String, String) -> Void) {
        if tdx.debug == .allowed {
            flag(.critical, "tdx.debug", "debug TDs are allowed: the host can read TD state", "set debug: forbidden (the default)")
        }
        if tdx.mrTD == nil {
            flag(.high, "tdx.mrtd", "MRTD is not pinned: any TD firmware is admitted", "add mrtd.allow or mrtd.reference")
        }
        if tdx.rtmrs.isEmpty {
            flag(.medium, "tdx.rtmr", "no RTMR is pinned: the kernel, initrd and command line are not checked",
                 "pin RTMR1 and RTMR2 (replay the event log with cmk measure replay)")
        }
        if tdx.mrConfigID == nil {
            flag(.low, "tdx.mr-config-id", "MRCONFIGID is not bound to the instance manifest", "set mr-config-id: manifest")
        }
        let weak = tdx.acceptedStatuses.filter { $0.hasPrefix("OutOfDate") }
        if !weak.isEmpty {
            flag(.high, "tdx.tcb.accept", "accepts \(weak.joined(separator: ", ")) outright, with no advisory list and no expiry",
                 "accept UpToDate only and cover known advisories with dated waivers")
        }
        let softer = tdx.acceptedStatuses.filter { $0 != "UpToDate" && !$0.hasPrefix("OutOfDate") }
        if !softer.isEmpty {
            flag(.medium, "tdx.tcb.accept", "accepts \(softer.joined(separator: ", ")) outright",
                 "prefer dated waivers naming the advisories")
        }
        for (index, waiver) in tdx.waivers.enumerated() {
            let key = "tdx.tcb.waivers[\(index)]"
            if waiver.expires <= now {
                flag(.medium, key, "the waiver for \(waiver.status) expired on \(waiver.expires.ISO8601Format())",
                     "remove it, or renew it deliberately with a new date")
            } else if waiver.expires.timeIntervalSince(now) > longWaiver {
                flag(.medium, key, "the waiver for \(waiver.status) runs until \(waiver.expires.ISO8601Format()), more than \(Int(longWaiver / 86400)) days away",
                     "shorten it: waivers should cover the time to the next TCB recovery")
            }
            if waiver.advisories.isEmpty {
                flag(.high, key, "the waiver for \(waiver.status) names no advisories, so it waives any advisory",
                     "list the INTEL-SA advisories it accepts")
            }
        }
    }
}

/// Says in plain words what a policy admits and what it hands over.
public enum PolicyExplanation {
    public static func lines(_ policy: Policy) -> [String] {
        var lines: [String] = []
        lines.append("Policy \(policy.id) version \(policy.version) (digest \(policy.digest.prefix(16))…)")
        if !policy.description.isEmpty { lines.append(policy.description) }
        lines.append("")
        lines.append("It admits \(policy.evidence == .sevSNP ? "AMD SEV-SNP reports" : "Intel TDX quotes") when all of this holds:")
        var items: [String] = []
        let simulated = policy.trust.roots.filter { Policy.simulatedRoots.contains($0) }
        items.append("the signing chain ends in \(policy.trust.roots.joined(separator: " or "))"
            + (simulated.isEmpty ? "" : " — including cmk's SIMULATED platform, which has no hardware protection"))
        items.append(policy.trust.crl == .hard
            ? "no certificate in the chain is revoked, checked against a current CRL (none at hand: rejected)"
            : "no certificate is revoked when a CRL is at hand (without one the evidence is still admitted, with a warning)")
        switch policy.freshness.reportData {
        case .none: items.append("(REPORT_DATA is not checked: the evidence is not tied to a request)")
        case .nonce: items.append("REPORT_DATA is SHA-512 of cmk's label and the nonce issued for this request")
        case .nonceAndKey: items.append("REPORT_DATA is SHA-512 of cmk's label, the nonce and the public key the instance presents")
        }
        if let age = policy.freshness.maxEvidenceAge { items.append("the evidence is at most \(age) seconds old") }
        if let snp = policy.snp { items += snpItems(snp) }
        if let tdx = policy.tdx { items += tdxItems(tdx) }
        lines += items.map { "  - " + $0 }
        lines.append("")
        if policy.handover.isEmpty {
            lines.append("On admission it hands over nothing.")
        } else {
            lines.append("On admission it hands over:")
            if !policy.handover.secrets.isEmpty { lines.append("  - secrets " + policy.handover.secrets.joined(separator: ", ")) }
            if !policy.handover.volumes.isEmpty { lines.append("  - data volumes " + policy.handover.volumes.joined(separator: ", ")) }
            if !policy.handover.channelPeers.isEmpty {
                lines.append("  - sealed channels with " + policy.handover.channelPeers.joined(separator: ", "))
                for (peer, pins) in (policy.handover.channelPeerMeasurements ?? [:]).sorted(by: { $0.key < $1.key }) {
                    lines.append("    (\(peer) must have one of \(pins.count) pinned launch measurement(s))")
                }
            }
        }
        return lines
    }

    static func measurementItems(_ name: String, _ rule: Policy.MeasurementRule?) -> [String] {
        guard let rule else { return ["(\(name) is not checked: any value is admitted)"] }
        var items = ["\(name) is one of \(rule.acceptable.count) value(s):"]
        for value in rule.allow { items.append("    \(value) (written in the policy)") }
        for reference in rule.references {
            let inputs = reference.inputs.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "; ")
            items.append("    \(reference.digest) (derived from \(inputs))")
        }
        return [items.joined(separator: "\n")]
    }

    static func snpItems(_ snp: Policy.SNPRules) -> [String] {
        var items = measurementItems("the launch MEASUREMENT", snp.measurement)
        for entry in snp.tcb {
            for (kind, value) in [("reported", entry.reported), ("committed", entry.committed), ("launch", entry.launch)] {
                if let value { items.append("on \(entry.product.rawValue), the \(kind) TCB is at least \(SNPPolicyRules.describe(value))") }
            }
            let other = ["Milan", "Genoa", "Turin"].filter { name in !snp.tcb.contains { $0.product.rawValue == name } }
            if entry == snp.tcb.last, !other.isEmpty { items.append("reports from \(other.joined(separator: ", ")) are rejected (no TCB minimum for them)") }
        }
        if snp.tcb.isEmpty { items.append("(the TCB is not checked: hosts with known firmware vulnerabilities are admitted)") }
        items.append(snp.debug == .forbidden ? "the guest policy forbids debugging" : "debugging MAY be allowed (the host can read guest memory)")
        items.append(snp.migrationAgent == .forbidden ? "the guest policy forbids a migration agent" : "a migration agent MAY be allowed")
        if let smt = snp.smt { items.append("SMT is \(smt.rawValue)") }
        if let abi = snp.minimumABI { items.append("the guest policy's ABI is at least \(abi)") }
        if !snp.platformRequire.isEmpty { items.append("the platform has \(snp.platformRequire.joined(separator: ", ")) set") }
        if !snp.platformForbid.isEmpty { items.append("the platform has \(snp.platformForbid.joined(separator: ", ")) clear") }
        if let vmpl = snp.vmpl { items.append("the report comes from VMPL \(vmpl)") }
        switch snp.hostData {
        case .manifest?: items.append("HOST_DATA is SHA-256 of the manifest the instance was launched with")
        case .value(let value)?: items.append("HOST_DATA is \(value)")
        case nil: break
        }
        if !snp.signers.isEmpty { items.append("the report is signed by a \(snp.signers.joined(separator: " or "))") }
        if !snp.chipIDs.isEmpty { items.append("the chip is one of \(snp.chipIDs.count) pinned CHIP_IDs") }
        if let svn = snp.minimumGuestSVN { items.append("the guest SVN is at least \(svn)") }
        return items
    }

    static func tdxItems(_ tdx: Policy.TDXRules) -> [String] {
        var items = measurementItems("MRTD", tdx.mrTD)
        for (index, values) in tdx.rtmrs.sorted(by: { $0.key < $1.key }) {
            items.append("RTMR\(index) is one of \(values.map(\.description).joined(separator: ", "))")
        }
        switch tdx.mrConfigID {
        case .manifest?: items.append("MRCONFIGID is SHA-384 of the manifest the TD was launched with")
        case .value(let value)?: items.append("MRCONFIGID is \(value)")
        case nil: break
        }
        if !tdx.mrSeam.isEmpty { items.append("the TDX module (MRSEAM) is one of \(tdx.mrSeam.count) pinned values") }
        items.append(tdx.debug == .forbidden ? "the TD is not a debug TD" : "debug TDs MAY be admitted")
        items.append("Intel's TCB status is \(tdx.acceptedStatuses.joined(separator: " or "))")
        for waiver in tdx.waivers {
            let advisories = waiver.advisories.isEmpty ? "any advisory" : waiver.advisories.joined(separator: ", ")
            items.append("or \(waiver.status) with \(advisories) until \(waiver.expires.ISO8601Format()) (waiver: \(waiver.reason))")
        }
        return items
    }
}
