import BinaryFormat
public import GuestProtocol
public import SEVSNP

/// One guest launched on the simulated AMD secure processor: the exact inputs QEMU was given, the launch measurement
/// the secure processor computed from them, and a random REPORT_ID.
///
/// The coordinator never tells the platform a digest: MEASUREMENT is computed here with ``SNPLaunchMeasurement``
/// (firmware pages, SEV metadata sections, one VMSA per vCPU) with the simulation's one stated assumption,
/// ``SNPLaunchMeasurement/KernelHashesPlacement/assumedAmdSev``: when the firmware declares no kernel-hashes section
/// (Debian's OVMF), the kernel-hashes page is measured where an edk2 AmdSevX64 build places it. ``assumption`` says
/// so whenever a launch relies on it.
public struct SimulatedSNPLaunch: Sendable {
    /// What QEMU is given for the launch.
    public struct Inputs: Sendable {
        /// The firmware image mapped below 4 GiB (`-bios`), byte for byte.
        public var firmware: [UInt8]
        /// The kernel file (`-kernel`), as given.
        public var kernel: [UInt8]?
        /// The initrd file (`-initrd`), as given.
        public var initrd: [UInt8]?
        /// The kernel command line (`-append`).
        public var cmdline: String?
        /// The number of vCPUs (`-smp`).
        public var vcpus: Int
        /// The QEMU `-cpu` model, e.g. `EPYC-v4` or `EPYC-Genoa`: its CPUID signature is in each VMSA.
        public var vcpuType: String
        /// SEV_FEATURES of every VMSA (bit 0 SNPActive; 0x1 is QEMU's default).
        public var guestFeatures: UInt64
        /// The guest POLICY (`sev-snp-guest,policy=`): bit 17 must be set, bits 63:26 clear.
        public var guestPolicy: UInt64
        /// HOST_DATA (`sev-snp-guest,host-data=`): 32 bytes, the coordinator's SHA-256 of the instance manifest.
        public var hostData: [UInt8]

        public init(
            firmware: [UInt8], kernel: [UInt8]? = nil, initrd: [UInt8]? = nil, cmdline: String? = nil, vcpus: Int,
            vcpuType: String, guestFeatures: UInt64 = 0x1, guestPolicy: UInt64 = 0x30000,
            hostData: [UInt8] = [UInt8](repeating: 0, count: 32)
        ) {
            self.firmware = firmware
            self.kernel = kernel
            self.initrd = initrd
            self.cmdline = cmdline
            self.vcpus = vcpus
            self.vcpuType = vcpuType
            self.guestFeatures = guestFeatures
            self.guestPolicy = guestPolicy
            self.hostData = hostData
        }

        /// The same inputs as ``SNPLaunchMeasurement`` takes them, with the simulated kernel-hashes placement.
        public func measurementInputs() throws(PlatformSimulatorError) -> SNPLaunchMeasurement.Inputs {
            guard let signature = SNPVCPUType.signature(named: vcpuType) else {
                throw PlatformSimulatorError(
                    .invalidLaunch,
                    "'\(vcpuType)' is not a QEMU vCPU model cmk knows ("
                        + SNPVCPUType.signatures.keys.sorted().joined(separator: ", ") + ")"
                )
            }
            return SNPLaunchMeasurement.Inputs(
                firmware: firmware, kernel: kernel, initrd: initrd, cmdline: cmdline, vcpus: vcpus,
                vcpuSignature: signature,
                guestFeatures: guestFeatures, vmm: .qemu, kernelHashesPlacement: .assumedAmdSev)
        }
    }

    /// The report version the simulated platform emits (v5: with mitigation vectors, as current Genoa firmware).
    public static let reportVersion: UInt32 = 5

    public let inputs: Inputs
    /// MEASUREMENT: the launch digest the secure processor computed from ``inputs`` (48 bytes).
    public let measurement: [UInt8]
    /// The assumption the measurement rests on, when the launch needs one (a kernel with firmware that declares no
    /// kernel-hashes section); nil when the firmware measured everything as declared.
    public let assumption: String?
    /// REPORT_ID: 32 random bytes naming this launch in every report.
    public let reportID: [UInt8]
    /// The platform that launched the guest.
    public let processor: SimulatedAMDSecureProcessor

    /// Measures `inputs` on `processor`; throws when the launch is not one the platform can start (unknown vCPU
    /// model, HOST_DATA not 32 bytes, a guest policy the ABI forbids, firmware without SEV metadata ...).
    public init(_ inputs: Inputs, processor: SimulatedAMDSecureProcessor) throws(PlatformSimulatorError) {
        guard inputs.hostData.count == SNPReport.Layout.hostDataSize else {
            throw PlatformSimulatorError(.invalidLaunch, "HOST_DATA is 32 bytes; \(inputs.hostData.count) were given")
        }
        let policy = SNPGuestPolicy(raw: inputs.guestPolicy)
        guard policy.reservedBitIsOne, policy.unknownBits == 0 else {
            throw PlatformSimulatorError(
                .invalidLaunch,
                "guest policy 0x\(String(inputs.guestPolicy, radix: 16)) must set bit 17 and clear bits 63:26 "
                    + "(SEV-SNP ABI)"
            )
        }
        let measured: SNPLaunchMeasurement
        do {
            measured = try SNPLaunchMeasurement(try inputs.measurementInputs())
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(.invalidLaunch, "the launch cannot be measured: \(error)")
        }
        var random = SystemRandomNumberGenerator()
        self.inputs = inputs
        self.measurement = measured.digest.bytes
        self.assumption = measured.assumption
        self.reportID = (0..<SNPReport.Layout.reportIDSize).map { _ in UInt8.random(in: 0...255, using: &random) }
        self.processor = processor
    }

    /// The certificate table that accompanies every report (GHCB extended guest request): VCEK, ASK, ARK.
    public var certificateTable: [UInt8] { processor.certificateTable.encoded() }

    /// A version 5 ATTESTATION_REPORT (SEV-SNP ABI Table 23) for this launch, signed by the VCEK: REPORT_DATA from the
    /// guest, VMPL from the request, every TCB field the platform's, CHIP_ID the platform's, CPUID naming Genoa.
    public func attestationReport(reportData: [UInt8], vmpl: UInt32) throws(PlatformSimulatorError) -> [UInt8] {
        typealias L = SNPReport.Layout
        guard reportData.count == L.reportDataSize else {
            throw PlatformSimulatorError(.invalidRequest, "REPORT_DATA is 64 bytes; \(reportData.count) were given")
        }
        guard vmpl <= 3 else {
            throw PlatformSimulatorError(.invalidRequest, "VMPL \(vmpl) does not exist (0 to 3)")
        }
        let tcb = processor.tcb.raw
        let firmware = processor.configuration.firmware
        var report = [UInt8](repeating: 0, count: L.size)
        func put(_ offset: Int, _ value: UInt64, _ size: Int) {
            for index in 0..<size { report[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        func copy(_ offset: Int, _ bytes: [UInt8]) {
            report.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        }
        put(L.version, UInt64(Self.reportVersion), 4)
        put(L.guestSVN, 0, 4)
        put(L.policy, inputs.guestPolicy, 8)
        // FAMILY_ID and IMAGE_ID stay zero: no ID block.
        put(L.vmpl, UInt64(vmpl), 4)
        put(L.signatureAlgorithm, UInt64(SNPReport.ecdsaP384SHA384), 4)
        put(L.currentTCB, tcb, 8)
        // PLATFORM_INFO stays zero: the simulation claims no SMT, TSME, ECC or alias-check protection.
        // SIGNER_INFO stays zero: signed by the VCEK, no author key, chip key not masked.
        copy(L.reportData, reportData)
        copy(L.measurement, measurement)
        copy(L.hostData, inputs.hostData)
        // ID_KEY_DIGEST and AUTHOR_KEY_DIGEST stay zero: no ID block.
        copy(L.reportID, reportID)
        copy(L.reportIDMA, [UInt8](repeating: 0xFF, count: L.reportIDMASize))  // no migration agent
        put(L.reportedTCB, tcb, 8)
        let cpuid = SimulatedAMDSecureProcessor.cpuid
        report[L.cpuidFamily] = cpuid.family
        report[L.cpuidModel] = cpuid.model
        report[L.cpuidStepping] = cpuid.stepping
        copy(L.chipID, processor.chipID)
        put(L.committedTCB, tcb, 8)
        report[L.currentBuild] = firmware.build
        report[L.currentMinor] = firmware.minor
        report[L.currentMajor] = firmware.major
        report[L.committedBuild] = firmware.build
        report[L.committedMinor] = firmware.minor
        report[L.committedMajor] = firmware.major
        put(L.launchTCB, tcb, 8)
        put(L.launchMitigationVector, 0, 8)
        put(L.currentMitigationVector, 0, 8)
        try processor.sign(&report)
        // Never hand out what cmk's own strict parser would refuse.
        do {
            _ = try SNPReport(bytes: report)
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "the simulated report does not parse: \(error)")
        }
        return report
    }

    /// Answers a message from the guest's platform port: `.snpReportRequest` with `.snpReportResponse` (report and
    /// certificate table), anything else — or a request that cannot be answered — with `.failure`.
    public func respond(to message: GuestMessage) -> GuestMessage {
        guard case .snpReportRequest(let reportData, let vmpl) = message else {
            return .failure("the simulated AMD secure processor answers SNP report requests only, not \(message.kind)")
        }
        do {
            return .snpReportResponse(
                report: try attestationReport(reportData: reportData, vmpl: vmpl), certificateTable: certificateTable)
        } catch {
            return .failure(error.reason)
        }
    }
}

/// Printing a launch names it by its measurement, not by megabytes of firmware and kernel.
extension SimulatedSNPLaunch: CustomStringConvertible, CustomReflectable {
    public var description: String {
        "simulated SEV-SNP launch (MEASUREMENT \(Hex.encode(measurement)), \(inputs.vcpus) x \(inputs.vcpuType), "
            + "REPORT_ID \(Hex.encode(reportID)))"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "measurement": Hex.encode(measurement), "reportID": Hex.encode(reportID), "vcpus": inputs.vcpus,
                "vcpuType": inputs.vcpuType, "guestPolicy": inputs.guestPolicy, "hostData": Hex.encode(inputs.hostData),
                "assumption": assumption as Any, "processor": processor.description,
            ])
    }
}
