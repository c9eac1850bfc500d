public import Foundation

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

    /// Throws `platformUnavailable` naming what is missing when `tee` cannot run here or in this build.
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
            throw CoordinatorError(
                .platformUnavailable,
                "this host has the \(name) host interfaces, but cmk launch cannot start a real \(name) guest in "
                    + "this build yet (the QEMU command exists, the launch path does not); use --tee sim-snp")
        }
    }
}
