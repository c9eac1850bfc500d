public import Foundation
public import AttestationPolicy
public import Attestation
import TDX

/// What this host offers a real SEV-SNP or TDX launch: what is missing for it (empty when the host can), the
/// firmware QEMU boots, the vCPU model and, for a TD, where the Quote Generation Service listens. Probed from the
/// host (`cmk doctor`'s ``HostProbe`` plus the host-side KVM and device files) or injected (tests, and hosts whose
/// operator knows better than the probe).
public struct HardwareTEEHost: Sendable, Hashable {
    /// What the host lacks for the platform, each naming where cmk looked; empty when it can launch.
    public var missing: [String]
    /// The OVMF build QEMU is given: one with SEV-SNP metadata (and kernel hashes), or a TDVF for a TD.
    public var firmware: String
    /// `-cpu` for an SEV-SNP guest (a TD always runs `-cpu host`).
    public var cpuModel: String
    /// Where the host's Quote Generation Service listens (TDX only): QEMU turns the TD's TDREPORT into a quote there.
    public var quoteGenerationSocket: TDXLaunchCommand.QuoteGenerationSocket?
    /// The collateral cache evidence is verified with: VCEKs and CRLs for SEV-SNP, `intel/tdx/<fmspc>/` for TDX
    /// (`cmk evidence fetch` fills it; verification itself never goes to the network).
    public var collateralCache: URL

    public init(
        missing: [String], firmware: String, cpuModel: String = "EPYC-v4",
        quoteGenerationSocket: TDXLaunchCommand.QuoteGenerationSocket? = nil, collateralCache: URL
    ) {
        self.missing = missing
        self.firmware = firmware
        self.cpuModel = cpuModel
        self.quoteGenerationSocket = quoteGenerationSocket
        self.collateralCache = collateralCache
    }

    /// The usual place of the QGS socket on TDX hosts (Intel's DCAP packages).
    public static let defaultQGSSocket = "var/run/tdx-qgs/qgs.socket"

    /// Probes this host for `tee` (`snp` or `tdx`): the KVM and device files, QEMU's `sev-snp-guest` / `tdx-guest`
    /// objects and the firmware `cmk doctor` reports, and the QGS socket for a TD.
    public static func probe(
        _ tee: TEEKind, paths: CMKPaths = .resolve(), root: URL = URL(fileURLWithPath: "/")
    ) async -> HardwareTEEHost {
        var missing = TEEAvailability.missingHostCapabilities(tee, root: root)
        let cache = paths.cacheDirectory.appendingPathComponent("collateral")
        // Only ask QEMU and read firmware when the kernel side is there: on a host without KVM the answer is known.
        guard missing.isEmpty else { return HardwareTEEHost(missing: missing, firmware: "", collateralCache: cache) }
        let probe = HostProbe(root: root, paths: paths)
        let capabilities = await probe.run()
        var firmware = ""
        var qgs: TDXLaunchCommand.QuoteGenerationSocket?
        switch tee {
        case .snp:
            if capabilities.qemu?.supportsSEVSNPGuest != true {
                missing.append("a QEMU with the sev-snp-guest object (QEMU 9.1 or later; cmk doctor shows the QEMU found)")
            }
            if let image = capabilities.firmware.first(where: { $0.snpMetadata && $0.kernelHashes }) {
                firmware = image.path
            } else {
                missing.append("an OVMF build with SEV-SNP metadata and kernel hashes (AmdSev OVMF; cmk doctor lists the builds found)")
            }
        case .tdx:
            if capabilities.qemu?.supportsTDXGuest != true {
                missing.append("a QEMU with the tdx-guest object (QEMU 10.1 or later; cmk doctor shows the QEMU found)")
            }
            if let image = capabilities.firmware.first(where: \.tdxMetadata) {
                firmware = image.path
            } else {
                missing.append("a TDVF (OVMF with TDX metadata; cmk doctor lists the builds found)")
            }
            let socket = root.appendingPathComponent(defaultQGSSocket).path
            if FileManager.default.fileExists(atPath: socket) {
                qgs = .unix(path: socket)
            } else {
                missing.append("the Quote Generation Service socket /\(defaultQGSSocket) (Intel DCAP's qgsd)")
            }
        case .simulatedSNP, .simulatedTDX:
            break
        }
        return HardwareTEEHost(missing: missing, firmware: firmware, quoteGenerationSocket: qgs, collateralCache: cache)
    }

    /// Throws `platformUnavailable` naming what is missing, as ``TEEAvailability/require(_:root:)`` does.
    public func require(_ tee: TEEKind) throws(CoordinatorError) {
        guard missing.isEmpty else {
            let name = tee.evidence == .tdx ? "TDX" : "SEV-SNP"
            throw CoordinatorError(
                .platformUnavailable,
                "this host cannot run a real \(name) guest: missing \(missing.joined(separator: "; ")) "
                    + "(cmk doctor shows the host's capabilities); use --tee sim-\(tee.evidence == .tdx ? "tdx" : "snp") "
                    + "for the simulated platform")
        }
    }
}

/// How a real child's evidence is verified: against the pinned hardware roots the policy names (never a simulated
/// one), with collateral from the offline cache, under the policy's revocation mode.
public struct VerifierConfiguration: Sendable, Hashable, Codable {
    public let evidence: Policy.EvidenceKind
    /// The roots the policy trusts (hardware roots only).
    public let trustedRoots: [String]
    /// Whether the simulated platform's roots are loaded at all (never for a real child).
    public let simulatedRootsLoaded: Bool
    /// The collateral cache (`<cache>/collateral`): SEV-SNP VCEKs and CRLs, TDX `intel/tdx/<fmspc>/`.
    public let collateralCache: String
    /// The evidence as the guest presents it: an extended report with its certificate table (configfs-tsm
    /// auxblob or SNP_GET_EXT_REPORT), or a TD quote with its PCK chain.
    public let presentation: String
    public let revocation: RevocationMode

    /// The configuration a real `tee` child on `host` is verified with under `policy`.
    public static func forHardware(tee: TEEKind, host: HardwareTEEHost, policy: PolicyHeader) -> VerifierConfiguration {
        VerifierConfiguration(
            evidence: tee.evidence, trustedRoots: policy.trust.roots.filter { !Policy.simulatedRoots.contains($0) },
            simulatedRootsLoaded: false, collateralCache: host.collateralCache.path,
            presentation: tee.evidence == .sevSNP
                ? "extended report with its certificate table (VCEK from the cache when the table is empty)"
                : "TD quote with its PCK chain; TCB Info and QE Identity from intel/tdx/<fmspc>/ in the cache",
            revocation: policy.trust.crl)
    }
}

/// The exact QEMU command a real SEV-SNP or TDX launch starts, and how its evidence is verified: computed from the
/// request, the host, the policy and the manifest, before anything starts (so tests can check both on a host that
/// cannot run them).
public struct HardwareLaunchPlan: Sendable {
    public let command: any QEMULaunchCommand
    /// The whole argv: taskset, QEMU, its arguments and the instance marker.
    public let arguments: [String]
    public let verifier: VerifierConfiguration

    /// - Parameters:
    ///   - settings: the instance's QEMU settings (no platform port: a real child asks its own hardware).
    ///   - hostData: HOST_DATA for SEV-SNP (SHA-256 of the manifest); `mrConfigID` MRCONFIGID for TDX (SHA-384).
    public init(
        tee: TEEKind, host: HardwareTEEHost, settings: QEMUInstanceSettings, instanceID: String, policy: PolicyHeader,
        hostData: [UInt8], mrConfigID: [UInt8], idBlock: (block: [UInt8], auth: [UInt8])? = nil
    ) throws(CoordinatorError) {
        precondition(!tee.isSimulated, "a hardware launch plan is for snp or tdx")
        var settings = settings
        settings.firmware = host.firmware
        settings.platformSocket = nil
        let command: any QEMULaunchCommand
        switch tee {
        case .snp:
            command = SEVSNPLaunchCommand(
                settings: settings, cpuModel: host.cpuModel, kernelHashes: true, hostData: hostData,
                idBlock: idBlock?.block, idAuth: idBlock?.auth)
        default:
            command = TDXLaunchCommand(
                settings: settings, mrConfigID: mrConfigID, quoteGenerationSocket: host.quoteGenerationSocket)
        }
        do {
            arguments = try command.commandLine() + QEMUInstanceMarker.arguments(instanceID: instanceID)
        } catch {
            throw CoordinatorError(.launch, "cannot build the QEMU command: \(error)")
        }
        self.command = command
        verifier = VerifierConfiguration.forHardware(tee: tee, host: host, policy: policy)
    }

    /// The evidence as the verifier is given it: the report with its certificate table, or the quote with the
    /// cached collateral for its FMSPC. Files the cache lacks are absent here, and verification fails closed naming
    /// each one; a quote whose FMSPC cannot be read gets no collateral (the verifier rejects the quote itself, with
    /// the parser's reason). A cache file that exists but cannot be parsed is the host's fault, not the evidence's:
    /// it throws, naming the folder and the parser's reason, instead of passing for "missing".
    public static func presented(
        kind: String, evidence: [UInt8], auxiliary: [UInt8], verifier: VerifierConfiguration
    ) throws(CoordinatorError) -> PresentedEvidence {
        guard verifier.evidence == .tdx else {
            return .snp(report: evidence, certificateTable: auxiliary.isEmpty ? nil : auxiliary, endorsement: nil, chain: [])
        }
        // The TD's CCEL (cmk-guest sends it beside the quote) is replayed by the policy's `tdx.event-log` rule.
        let eventLog = auxiliary.isEmpty ? nil : auxiliary
        guard let quote = try? TDXQuote(bytes: evidence), let platform = try? TDXCollateralFetch.platform(of: quote) else {
            return .tdx(quote: evidence, collateral: nil, eventLog: eventLog)
        }
        let folder = TDXCollateral.cacheFolder(URL(fileURLWithPath: verifier.collateralCache), fmspc: platform.fmspc)
        let collateral: TDXCollateral
        do {
            collateral = try TDXCollateral(directory: folder)
        } catch {
            throw CoordinatorError(.launch, "the TDX collateral cache \(folder.path) cannot be read: \(error.reason)")
        }
        return .tdx(quote: evidence, collateral: collateral, eventLog: eventLog)
    }
}
