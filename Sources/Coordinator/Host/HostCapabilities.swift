public import Foundation
import Crypto
import BinaryFormat
import Firmware

/// What this host can do for cmk: confidential-computing devices, KVM, QEMU, firmware, swtpm, the guest
/// kernel. `cmk doctor` prints it; the coordinator uses it to choose a backend.
public struct HostCapabilities: Sendable, Codable, Hashable {
    /// Presence of the guest-side attestation interfaces (only inside a confidential VM).
    public struct ConfidentialInterfaces: Sendable, Codable, Hashable {
        /// `/dev/sev-guest`: SNP_GET_REPORT / SNP_GET_EXT_REPORT ioctls.
        public var sevGuest: Bool
        /// `/dev/tdx_guest`: TDX_CMD_GET_REPORT0.
        public var tdxGuest: Bool
        /// `/sys/kernel/config/tsm/report`: the configfs-tsm report interface (Linux ≥ 6.7).
        public var configfsTSM: Bool
    }

    /// Whether KVM is not only present but runs a guest.
    public struct KVMStatus: Sendable, Codable, Hashable {
        public var deviceNodePresent: Bool
        public var usable: Bool
        public var detail: String
    }

    /// The QEMU found on the host.
    public struct QEMUStatus: Sendable, Codable, Hashable {
        public var path: String
        public var version: String
        /// `sev-snp-guest` is among QEMU's object types (QEMU ≥ 9.1).
        public var supportsSEVSNPGuest: Bool
        /// `tdx-guest` is among QEMU's object types (QEMU ≥ 10.1).
        public var supportsTDXGuest: Bool
        /// A probe guest ran to completion under TCG, so QEMU can boot children here.
        public var tcgProbePassed: Bool
        public var tcgProbeDetail: String
    }

    /// One OVMF build found on the host.
    public struct FirmwareStatus: Sendable, Codable, Hashable {
        public var path: String
        public var size: Int
        public var sha256: String
        public var snpMetadata: Bool
        public var kernelHashes: Bool
        public var tdxMetadata: Bool
        /// Why the image could not be read, when it could not.
        public var error: String?
    }

    /// A helper program and its version.
    public struct ToolStatus: Sendable, Codable, Hashable {
        public var path: String?
        public var version: String?
    }

    /// The guest kernel cache that guest-kernels/ profiles boot.
    public struct GuestKernelStatus: Sendable, Codable, Hashable {
        public var directory: String
        public var kernelPath: String?
        public var release: String?
    }

    public var cmkVersion: String
    public var hostKernel: String
    public var confidentialInterfaces: ConfidentialInterfaces
    public var kvm: KVMStatus
    public var qemu: QEMUStatus?
    public var firmware: [FirmwareStatus]
    public var swtpm: ToolStatus
    public var guestKernel: GuestKernelStatus
    /// What keeps the embedded default (the simulated platform under QEMU) from running; empty when it can.
    public var blockers: [String]

    /// Whether the embedded default can run here.
    public var embeddedDefaultReady: Bool { blockers.isEmpty }
}

/// Probes a host. Paths are relative to `root`, so the detection logic is testable against a prepared tree.
public struct HostProbe: Sendable {
    public var root: URL
    public var qemuBinary: String
    public var paths: CMKPaths
    /// How long a probe guest may take before it counts as hung.
    public var probeTimeout: Duration
    /// OVMF search folders, relative to `root`.
    public var firmwareDirectories: [String]

    public init(
        root: URL = URL(fileURLWithPath: "/"), qemuBinary: String = "qemu-system-x86_64", paths: CMKPaths = .resolve(),
        probeTimeout: Duration = .seconds(8),
        firmwareDirectories: [String] = ["usr/share/ovmf", "usr/share/OVMF", "usr/share/qemu", "usr/share/edk2/ovmf"]
    ) {
        self.root = root
        self.qemuBinary = qemuBinary
        self.paths = paths
        self.probeTimeout = probeTimeout
        self.firmwareDirectories = firmwareDirectories
    }

    private func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// Runs every probe.
    public func run() async -> HostCapabilities {
        let interfaces = confidentialInterfaces()
        let qemu = await probeQEMU()
        let kvm = await probeKVM(qemuAvailable: qemu != nil)
        let firmware = scanFirmware()
        let swtpm = await probeTool("swtpm", ["--version"])
        let kernel = guestKernel()
        var blockers: [String] = []
        if let qemu {
            if !qemu.tcgProbePassed { blockers.append("QEMU cannot run a probe guest: \(qemu.tcgProbeDetail)") }
        } else {
            blockers.append("\(qemuBinary) is not installed (apt-get install qemu-system-x86)")
        }
        if !firmware.contains(where: \.snpMetadata) {
            blockers.append("no OVMF build with SEV-SNP metadata was found (apt-get install ovmf)")
        }
        if kernel.kernelPath == nil {
            blockers.append("no guest kernel in \(kernel.directory) (run scripts/setup)")
        }
        return HostCapabilities(
            cmkVersion: CMKVersion.current, hostKernel: hostKernelRelease(), confidentialInterfaces: interfaces,
            kvm: kvm, qemu: qemu, firmware: firmware, swtpm: swtpm, guestKernel: kernel, blockers: blockers)
    }

    func hostKernelRelease() -> String {
        (try? String(contentsOfFile: path("proc/sys/kernel/osrelease"), encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
    }

    public func confidentialInterfaces() -> HostCapabilities.ConfidentialInterfaces {
        let fm = FileManager.default
        return .init(
            sevGuest: fm.fileExists(atPath: path("dev/sev-guest")),
            tdxGuest: fm.fileExists(atPath: path("dev/tdx_guest")),
            configfsTSM: fm.fileExists(atPath: path("sys/kernel/config/tsm/report")))
    }

    /// Finds OVMF code images (never VARS files) and reads their confidential-launch metadata.
    public func scanFirmware() -> [HostCapabilities.FirmwareStatus] {
        let fm = FileManager.default
        var seen = Set<String>()
        var result: [HostCapabilities.FirmwareStatus] = []
        for directory in firmwareDirectories {
            guard let names = try? fm.contentsOfDirectory(atPath: path(directory)) else { continue }
            for name in names.sorted() where name.hasSuffix(".fd") && !name.uppercased().contains("VARS") {
                let file = path(directory + "/" + name)
                let resolved = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
                guard seen.insert(resolved).inserted, let data = fm.contents(atPath: resolved) else { continue }
                let bytes = [UInt8](data)
                var status = HostCapabilities.FirmwareStatus(
                    path: resolved, size: bytes.count, sha256: Hex.encode(SHA256.hash(data: bytes)),
                    snpMetadata: false, kernelHashes: false, tdxMetadata: false, error: nil)
                do {
                    let image = try OVMFImage(bytes: bytes)
                    status.snpMetadata = image.hasSNPMetadata
                    status.kernelHashes = image.supportsKernelHashes
                    status.tdxMetadata = image.hasTDXMetadata
                } catch {
                    status.error = error.description
                }
                result.append(status)
            }
        }
        return result
    }

    func probeTool(_ name: String, _ arguments: [String]) async -> HostCapabilities.ToolStatus {
        guard let path = CommandRunner.which(name) else { return .init(path: nil, version: nil) }
        let result = try? await CommandRunner.run(path, arguments, timeout: .seconds(10))
        let text = (result?.standardOutputText ?? "") + (result?.standardErrorText ?? "")
        let firstLine = text.split(separator: "\n").first.map(String.init)
        return .init(path: path, version: firstLine)
    }

    /// QEMU's version, its confidential-guest object types, and a TCG probe boot.
    public func probeQEMU() async -> HostCapabilities.QEMUStatus? {
        guard let qemuPath = CommandRunner.which(qemuBinary) else { return nil }
        let versionText = (try? await CommandRunner.run(qemuPath, ["--version"], timeout: .seconds(10)))?.standardOutputText ?? ""
        let objects = (try? await CommandRunner.run(qemuPath, ["-object", "help"], timeout: .seconds(10)))?.standardOutputText ?? ""
        let objectTypes = Set(objects.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) })
        let probe = await ProbeGuest.boot(qemu: qemuPath, accelerator: "tcg", timeout: .seconds(30))
        return .init(
            path: qemuPath, version: QEMUVersion.parse(versionText) ?? versionText,
            supportsSEVSNPGuest: objectTypes.contains("sev-snp-guest"), supportsTDXGuest: objectTypes.contains("tdx-guest"),
            tcgProbePassed: probe.passed, tcgProbeDetail: probe.detail)
    }

    /// KVM is usable only when a probe guest actually runs under it within the probe timeout.
    public func probeKVM(qemuAvailable: Bool) async -> HostCapabilities.KVMStatus {
        let node = path("dev/kvm")
        guard FileManager.default.fileExists(atPath: node) else {
            return .init(deviceNodePresent: false, usable: false, detail: "\(node) does not exist")
        }
        guard qemuAvailable, let qemuPath = CommandRunner.which(qemuBinary) else {
            return .init(deviceNodePresent: true, usable: false, detail: "no QEMU to run a probe guest with")
        }
        let probe = await ProbeGuest.boot(qemu: qemuPath, accelerator: "kvm", timeout: probeTimeout)
        return .init(deviceNodePresent: true, usable: probe.passed, detail: probe.detail)
    }

    /// The newest `boot/vmlinuz-*` in the guest-kernel cache.
    public func guestKernel() -> HostCapabilities.GuestKernelStatus {
        let directory = paths.guestKernelDirectory
        let boot = directory.appendingPathComponent("boot")
        let kernels = ((try? FileManager.default.contentsOfDirectory(atPath: boot.path)) ?? [])
            .filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let newest = kernels.last else { return .init(directory: directory.path, kernelPath: nil, release: nil) }
        return .init(
            directory: directory.path, kernelPath: boot.appendingPathComponent(newest).path,
            release: String(newest.dropFirst("vmlinuz-".count)))
    }
}

/// Parses `qemu-system-x86_64 --version` output.
public enum QEMUVersion {
    /// "QEMU emulator version 7.2.22 (Debian ...)" → "7.2.22".
    public static func parse(_ text: String) -> String? {
        guard let range = text.range(of: "QEMU emulator version ") else { return nil }
        let rest = text[range.upperBound...]
        let version = rest.prefix(while: { $0.isNumber || $0 == "." })
        return version.isEmpty ? nil : String(version)
    }
}

/// The cmk version.
public enum CMKVersion {
    public static let current = "0.1.0"
}
