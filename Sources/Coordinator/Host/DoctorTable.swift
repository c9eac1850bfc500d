/// Renders ``HostCapabilities`` as the table `cmk doctor` prints.
public enum DoctorTable {
    public static func render(_ report: HostCapabilities) -> String {
        var rows: [(String, String, String)] = []
        func yes(_ flag: Bool) -> String { flag ? "yes" : "no" }
        let tee = report.confidentialInterfaces
        rows.append(("/dev/sev-guest", yes(tee.sevGuest), "SNP guest attestation device (inside an SNP guest)"))
        rows.append(("/dev/tdx_guest", yes(tee.tdxGuest), "TDX guest attestation device (inside a TD)"))
        rows.append(("configfs-tsm", yes(tee.configfsTSM), "/sys/kernel/config/tsm/report"))
        rows.append(("KVM", report.kvm.usable ? "usable" : (report.kvm.deviceNodePresent ? "not usable" : "absent"), report.kvm.detail))
        if let qemu = report.qemu {
            rows.append(("QEMU", qemu.version, qemu.path))
            rows.append(("  TCG probe", qemu.tcgProbePassed ? "ok" : "failed", qemu.tcgProbeDetail))
            rows.append(("  sev-snp-guest", yes(qemu.supportsSEVSNPGuest), "needs QEMU >= 9.1 and an SNP host"))
            rows.append(("  tdx-guest", yes(qemu.supportsTDXGuest), "needs QEMU >= 10.1 and a TDX host"))
        } else {
            rows.append(("QEMU", "missing", "apt-get install qemu-system-x86"))
        }
        if report.firmware.isEmpty { rows.append(("OVMF", "missing", "apt-get install ovmf")) }
        for firmware in report.firmware {
            let traits: String
            if let error = firmware.error {
                traits = "unreadable: \(error)"
            } else {
                traits = "SNP metadata \(yes(firmware.snpMetadata)), kernel hashes \(yes(firmware.kernelHashes)), TDX metadata \(yes(firmware.tdxMetadata))"
            }
            rows.append(("OVMF", firmware.path, traits))
        }
        rows.append(("swtpm", report.swtpm.version ?? "missing", report.swtpm.path ?? "apt-get install swtpm swtpm-tools"))
        rows.append(("guest kernel", report.guestKernel.release ?? "missing", report.guestKernel.kernelPath ?? report.guestKernel.directory))
        let widths = (rows.map(\.0.count).max() ?? 0, rows.map(\.1.count).max() ?? 0)
        func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        var lines = ["cmk \(report.cmkVersion) on Linux \(report.hostKernel)", ""]
        lines += rows.map { "\(pad($0.0, widths.0))  \(pad($0.1, widths.1))  \($0.2)" }
        lines.append("")
        if report.embeddedDefaultReady {
            lines.append("What the embedded default (simulated SEV-SNP platform under QEMU) needs is present on this host.")
        } else {
            lines.append("The embedded default cannot run on this host yet:")
            lines += report.blockers.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}
