public import BinaryFormat
public import Foundation
import SEVSNP
import TDX

/// What a correct launch of an image must measure, for the platforms cmk launches children on.
///
/// - SEV-SNP: the launch digest of the firmware, the kernel-hashes page (kernel, initrd, command line as QEMU's
///   `kernel-hashes=on` hashes them) and one VMSA per vCPU. Debian's OVMF declares no kernel-hashes section, so for
///   the simulated platform the page is placed where an edk2 AmdSevX64 build puts it
///   (``SNPLaunchMeasurement/KernelHashesPlacement/assumedAmdSev``); the result names that assumption.
/// - TDX: MRTD, the firmware alone (the kernel, initrd and command line go into RTMRs at boot, not into MRTD). A
///   firmware without TDVF metadata has no MRTD; ``TDXResult/error`` then says why.
public struct ExpectedMeasurements: Sendable, Hashable, Codable {
    /// The SEV-SNP launch digest and what it was computed over.
    public struct SEVSNPResult: Sendable, Hashable, Codable {
        public let launchDigest: HexBytes
        /// The digest after the firmware pages (sev-snp-measure's `snp:ovmf-hash`).
        public let firmwareDigest: HexBytes
        public let vcpus: Int
        public let vcpuType: String
        /// CPUID(1).EAX of the vCPU type, as put into each VMSA's RDX.
        public let vcpuSignature: String
        /// SEV_FEATURES of the VMSAs.
        public let guestFeatures: String
        public let vmm: String
        public let kernelHashesPlacement: String
        /// The assumption the digest rests on, when there is one.
        public let assumption: String?
    }

    /// MRTD, or why there is none for this firmware.
    public struct TDXResult: Sendable, Hashable, Codable {
        public let mrtd: HexBytes?
        public let error: String?
    }

    /// The vCPU model the simulated platform launches (QEMU `-cpu`).
    public static let defaultVCPUType = "EPYC-v4"
    /// QEMU's default SEV_FEATURES for an SNP guest: SNPActive only.
    public static let defaultGuestFeatures: UInt64 = 0x1

    public let firmware: ImageFile
    public let sevSnp: SEVSNPResult
    public let tdx: TDXResult

    /// Computes both measurements for one launch.
    ///
    /// Throws ``GuestImageError/Code/missingInput`` when the firmware cannot be read and
    /// ``GuestImageError/Code/measurementFailed`` when no SNP launch digest can be computed (unknown vCPU type, a
    /// firmware without SEV metadata, vCPUs out of range).
    public static func compute(
        firmware: URL, kernel: [UInt8], initrd: [UInt8], commandLine: String, vcpus: Int,
        vcpuType: String = defaultVCPUType, guestFeatures: UInt64 = defaultGuestFeatures,
        kernelHashesPlacement: SNPKernelHashesPlacement = .assumedAmdSev
    ) throws(GuestImageError) -> ExpectedMeasurements {
        guard let data = FileManager.default.contents(atPath: firmware.path) else {
            throw GuestImageError(.missingInput, "cannot read the firmware \(firmware.path) (apt install ovmf)")
        }
        let firmwareBytes = [UInt8](data)
        guard let signature = SNPVCPUType.signature(named: vcpuType) else {
            throw GuestImageError(
                .measurementFailed,
                "unknown vCPU type '\(vcpuType)'; known: "
                    + SNPVCPUType.signatures.keys.sorted().joined(separator: ", ")
            )
        }
        let snp: SNPLaunchMeasurement
        do {
            snp = try SNPLaunchMeasurement(
                .init(
                    firmware: firmwareBytes, kernel: kernel, initrd: initrd, cmdline: commandLine, vcpus: vcpus,
                    vcpuSignature: signature, guestFeatures: guestFeatures, vmm: .qemu,
                    kernelHashesPlacement: kernelHashesPlacement.placement))
        } catch {
            throw GuestImageError(
                .measurementFailed, "no SEV-SNP launch digest for \(firmware.path): \(error.description)")
        }
        let tdx: TDXResult
        do {
            tdx = TDXResult(mrtd: try TDXMRTD(firmware: firmwareBytes).digest, error: nil)
        } catch {
            tdx = TDXResult(mrtd: nil, error: error.description)
        }
        return ExpectedMeasurements(
            firmware: ImageFile(path: firmware.path, bytes: firmwareBytes),
            sevSnp: SEVSNPResult(
                launchDigest: snp.digest, firmwareDigest: snp.firmwareDigest, vcpus: vcpus, vcpuType: vcpuType,
                vcpuSignature: "0x" + String(signature, radix: 16),
                guestFeatures: "0x" + String(guestFeatures, radix: 16),
                vmm: SNPVMMType.qemu.rawValue, kernelHashesPlacement: kernelHashesPlacement.rawValue,
                assumption: snp.assumption),
            tdx: tdx)
    }
}

/// Where the SEV-SNP kernel-hashes page is measured (mirrors ``SNPLaunchMeasurement/KernelHashesPlacement`` so
/// callers need not import SEVSNP).
public enum SNPKernelHashesPlacement: String, Sendable, Hashable, Codable, CaseIterable {
    /// Only where the firmware declares it (real hardware, AmdSev firmware).
    case firmware
    /// cmk's simulated platform: at GPA 0x810000 when the firmware declares none (Debian's OVMF).
    case assumedAmdSev = "assumed-amdsev"

    var placement: SNPLaunchMeasurement.KernelHashesPlacement {
        switch self {
        case .firmware: .firmware
        case .assumedAmdSev: .assumedAmdSev
        }
    }
}
