public import Foundation
public import AttestationPolicy

/// The confidential platform a child is launched on.
public enum TEEKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// The simulated SEV-SNP platform under QEMU (TCG or KVM): the embedded default, runs on any host.
    case simulatedSNP = "sim-snp"
    /// The simulated TDX platform under QEMU.
    case simulatedTDX = "sim-tdx"
    /// A real SEV-SNP guest (`sev-snp-guest`): an AMD EPYC host with SNP enabled.
    case snp
    /// A real TD (`tdx-guest`): an Intel host with TDX enabled.
    case tdx

    public var isSimulated: Bool { self == .simulatedSNP || self == .simulatedTDX }
}

/// Whether a platform can run here, from what `cmk doctor` probes plus the host side of SEV-SNP and TDX.
public enum TEEAvailability {
    /// What the host lacks for `tee`; empty when nothing. Checks only files under `root` (fast, no QEMU run).
    public static func missingHostCapabilities(_ tee: TEEKind, root: URL = URL(fileURLWithPath: "/")) -> [String] {
        func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
        func parameterIsOn(_ relative: String) -> Bool {
            guard let text = try? String(contentsOfFile: path(relative), encoding: .utf8) else { return false }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return value == "Y" || value == "1"
        }
        let fm = FileManager.default
        var missing: [String] = []
        switch tee {
        case .simulatedSNP, .simulatedTDX:
            break
        case .snp:
            if !fm.fileExists(atPath: path("dev/kvm")) { missing.append("KVM (/dev/kvm is absent)") }
            if !fm.fileExists(atPath: path("dev/sev")) {
                missing.append("the AMD secure processor device /dev/sev (an AMD EPYC host with the ccp driver)")
            }
            if !parameterIsOn("sys/module/kvm_amd/parameters/sev_snp") {
                missing.append("KVM's SEV-SNP support (/sys/module/kvm_amd/parameters/sev_snp is not Y)")
            }
        case .tdx:
            if !fm.fileExists(atPath: path("dev/kvm")) { missing.append("KVM (/dev/kvm is absent)") }
            if !parameterIsOn("sys/module/kvm_intel/parameters/tdx") {
                missing.append("KVM's TDX support (/sys/module/kvm_intel/parameters/tdx is not Y)")
            }
        }
        return missing
    }

    /// Throws `platformUnavailable` naming what is missing when the host's kernel side cannot run `tee` (KVM, the
    /// AMD secure processor, KVM's SNP or TDX support).
    public static func require(_ tee: TEEKind, root: URL = URL(fileURLWithPath: "/")) throws(CoordinatorError) {
        switch tee {
        case .simulatedSNP, .simulatedTDX:
            return
        case .snp, .tdx:
            let missing = missingHostCapabilities(tee, root: root)
            let name = tee == .snp ? "SEV-SNP" : "TDX"
            guard missing.isEmpty else {
                throw CoordinatorError(
                    .platformUnavailable,
                    "this host cannot run a real \(name) guest: missing \(missing.joined(separator: "; ")) "
                        + "(cmk doctor shows the host's capabilities); use --tee sim-\(tee.rawValue) for the "
                        + "simulated platform")
            }
            // The kernel side is there; the supervisor probes the rest (QEMU's guest object, the firmware, the QGS
            // socket for a TD) with ``HardwareTEEHost/probe`` before it reserves anything.
        }
    }

    /// Throws `policyPlatformMismatch` when the policy cannot appraise what `tee` produces: evidence of another kind
    /// (an SEV-SNP policy for a TD, a TDX policy for an SNP guest), or a real platform under a policy that trusts a
    /// simulated root. Decided from the policy's header before anything is reserved or built; the CLI maps it to
    /// exit 2.
    public static func requireAppraisable(
        _ header: PolicyHeader, by tee: TEEKind, policyPath: String
    ) throws(CoordinatorError) {
        let policy = "policy \(header.id) v\(header.version) (\(policyPath))"
        guard header.evidence == tee.evidence else {
            let suggestion =
                tee.evidence == .tdx
                ? "use a tdx policy (policies/development-tdx.yaml for sim-tdx) or --tee \(tee.isSimulated ? "sim-snp" : "snp")"
                : "use a sev-snp policy (policies/development.yaml for sim-snp) or --tee \(tee.isSimulated ? "sim-tdx" : "tdx")"
            throw CoordinatorError(
                .policyPlatformMismatch,
                "--tee \(tee.rawValue) produces \(tee.evidence.rawValue) evidence (\(tee.evidenceDescription)), but "
                    + "\(policy) appraises \(header.evidence.rawValue) evidence: \(suggestion)")
        }
        // A simulated platform under a policy that trusts only hardware roots is appraisable: it is rejected by the
        // policy's trust.root rule (and recorded), not refused. A real platform is never appraised against a
        // simulated root.
        let simulated = header.trust.roots.filter { Policy.simulatedRoots.contains($0) }
        guard tee.isSimulated || simulated.isEmpty else {
            throw CoordinatorError(
                .policyPlatformMismatch,
                "--tee \(tee.rawValue) is verified against the pinned \(tee.evidence == .tdx ? "Intel" : "AMD") roots "
                    + "only, but \(policy) trusts the simulated root \(simulated.joined(separator: ", ")): remove it "
                    + "from trust.roots (policies/\(tee.evidence == .tdx ? "tdx" : "sev-snp")-production.yaml is an example)")
        }
    }
}

extension TEEKind {
    /// What the platform's evidence is, in words.
    public var evidenceDescription: String {
        evidence == .tdx ? "TDX quotes" : "SEV-SNP attestation reports"
    }
}
