import Attestation
import BinaryFormat
import CMKTesting
import Foundation
import GuestProtocol
import PlatformSimulator
import SEVSNP
import Testing

@Suite("Simulated SEV-SNP evidence, verified by the same verifier as hardware evidence")
struct SimulatedSNPEvidenceTests {
    static let reportData = (0..<64).map { UInt8($0 * 3 & 0xFF) }

    static func launch(_ inputs: SimulatedSNPLaunch.Inputs? = nil) throws -> SimulatedSNPLaunch {
        try SimulatedPlatformFixture.platform().processor.launch(inputs ?? SimulatedPlatformFixture.launchInputs())
    }

    static func evidence(_ launch: SimulatedSNPLaunch, vmpl: UInt32 = 0) throws -> SNPEvidence {
        let report = try SNPReport(bytes: try launch.attestationReport(reportData: reportData, vmpl: vmpl))
        return try SNPEvidence(
            report: report, certificateTable: try SNPCertificateTable(bytes: launch.certificateTable))
    }

    static func options(_ revocation: RevocationMode = .soft) -> SNPVerificationOptions {
        SNPVerificationOptions(validationTime: Date(), revocation: revocation)
    }

    @Test("the report is a strict-parsing version 5 Genoa report with the request's REPORT_DATA and VMPL")
    func reportParses() throws {
        let launch = try Self.launch()
        let processor = launch.processor
        let bytes = try launch.attestationReport(reportData: Self.reportData, vmpl: 2)
        #expect(bytes.count == 0x4A0)
        let report = try SNPReport(bytes: bytes)
        #expect(report.version == 5)
        #expect(report.productFromCPUID == .genoa)
        #expect(report.reportData == Self.reportData)
        #expect(report.vmpl == 2)
        #expect(report.measurement == launch.measurement)
        #expect(report.hostData == launch.inputs.hostData)
        #expect(report.reportID == launch.reportID)
        #expect(report.reportIDMA == [UInt8](repeating: 0xFF, count: 32))
        #expect(report.chipID == processor.chipID)
        #expect(report.policy.raw == 0x30000)
        #expect(report.signerInfo.signingKey == .vcek)
        for tcb in [report.currentTCB, report.reportedTCB, report.committedTCB, report.launchTCB] {
            #expect(tcb.components(.milanGenoa) == SimulatedAMDSecureProcessor.defaultTCB)
            #expect(tcb.reservedBytesAreZero(in: .milanGenoa))
        }
        #expect(report.currentVersion.description == "1.55.43")
        #expect(report.launchMitigationVector == 0 && report.currentMitigationVector == 0)
        // Two reports of one launch share REPORT_ID and MEASUREMENT; ECDSA signatures differ.
        let second = try SNPReport(bytes: try launch.attestationReport(reportData: Self.reportData, vmpl: 2))
        #expect(second.reportID == report.reportID && second.signatureR != report.signatureR)

        let table = try SNPCertificateTable(bytes: launch.certificateTable)
        #expect(table.data(for: SNPCertificateTable.GUID.vcek) == processor.vcek.der)
        #expect(table.data(for: SNPCertificateTable.GUID.ask) == processor.ask.der)
        #expect(table.data(for: SNPCertificateTable.GUID.ark) == processor.ark.der)
        #expect(table.entries.count == 3)
    }

    @Test(
        "SNPVerifier with the simulated folder loaded verifies it: simulated, simulated-amd, the computed measurement")
    func verifiesUnderSimulatedRoot() throws {
        let inputs = try SimulatedPlatformFixture.launchInputs()
        let launch = try Self.launch(inputs)
        let verifier = SNPVerifier(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let result = try verifier.verify(try Self.evidence(launch), options: Self.options())
        #expect(result.claims.simulated)
        #expect(result.claims.trustAnchor == "simulated-amd")
        #expect(result.claims.product == .genoa)
        #expect(result.chipIDMatchesHardwareID == true)
        #expect(
            result.chain.map(\.subject) == [
                "SEV-VCEK (cmk simulated)", "SEV-Genoa (cmk simulated)", "ARK-Genoa (cmk simulated)",
            ])
        #expect(result.revocation.notCheckedReason?.contains("simulated") == true)
        // MEASUREMENT is what cmk's launch-digest calculator gives for the same artifacts, computed independently here.
        let expected = try SNPLaunchMeasurement(
            .init(
                firmware: inputs.firmware, kernel: inputs.kernel, initrd: inputs.initrd, cmdline: inputs.cmdline,
                vcpus: inputs.vcpus, vcpuSignature: try #require(SNPVCPUType.signature(named: "EPYC-Genoa")),
                guestFeatures: 0x1, kernelHashesPlacement: .assumedAmdSev))
        #expect(result.claims.measurement.bytes == expected.digest.bytes)
        #expect(launch.assumption == expected.assumption)
        #expect(launch.assumption?.contains("0x810000") == true)
        #expect(result.claims.hostData.bytes == inputs.hostData)
    }

    @Test("a store without the simulated folder rejects the report: untrusted root")
    func rejectedWithoutSimulatedFolder() throws {
        let pinnedOnly = SNPVerifier(trustAnchors: try TrustAnchorStore(directory: SharedVectors.attestationDirectory))
        let evidence = try Self.evidence(try Self.launch())
        for presented in [
            evidence, SNPEvidence(report: evidence.report, endorsementCertificate: evidence.endorsementCertificate),
        ] {
            let error = try #require(throws: AttestationError.self) {
                try pinnedOnly.verify(presented, options: Self.options())
            }
            #expect(error.code == .untrustedRoot, "\(error)")
        }
    }

    @Test("hard revocation refuses simulated evidence: the simulated platform publishes no CRL")
    func hardRevocationRefuses() throws {
        let verifier = SNPVerifier(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let error = try #require(throws: AttestationError.self) {
            try verifier.verify(try Self.evidence(try Self.launch()), options: Self.options(.hard))
        }
        #expect(error.code == .missingCollateral)
    }

    @Test("a flipped byte anywhere in the signed region fails, in the parser or the verifier")
    func flippedSignedByteFails() throws {
        let launch = try Self.launch()
        let verifier = SNPVerifier(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let original = try launch.attestationReport(reportData: Self.reportData, vmpl: 0)
        let table = try SNPCertificateTable(bytes: launch.certificateTable)
        var parserRefused = 0
        var verifierRefused: [AttestationError.Code: Int] = [:]
        for offset in 0..<SNPReport.Layout.signedSize {
            var bytes = original
            bytes[offset] ^= 0x01
            guard let report = try? SNPReport(bytes: bytes) else {
                parserRefused += 1  // reserved bytes, policy bits, signature algorithm ...
                continue
            }
            let error = try #require(throws: AttestationError.self, "offset 0x\(String(offset, radix: 16))") {
                try verifier.verify(try SNPEvidence(report: report, certificateTable: table), options: Self.options())
            }
            verifierRefused[error.code, default: 0] += 1
            // Only the CPUID bytes are read before the signature is checked: they change the product.
            if ![SNPReport.Layout.cpuidFamily, SNPReport.Layout.cpuidModel, SNPReport.Layout.cpuidStepping].contains(
                offset)
            {
                #expect(error.code == .reportSignatureInvalid, "offset 0x\(String(offset, radix: 16)): \(error)")
            }
        }
        #expect(parserRefused + verifierRefused.values.reduce(0, +) == SNPReport.Layout.signedSize)
        #expect(verifierRefused[.reportSignatureInvalid, default: 0] > 400)
        // The unmodified report still verifies (the loop did not fail for want of a valid report).
        let report = try SNPReport(bytes: original)
        _ = try verifier.verify(try SNPEvidence(report: report, certificateTable: table), options: Self.options())
    }

    @Test("another installation's simulated VCEK does not verify under this installation's roots")
    func otherInstallationRejected() throws {
        let other = try SimulatedAMDSecureProcessor(directory: SimulatedPlatformFixture.temporaryFolder("other"))
        let launch = try other.launch(try SimulatedPlatformFixture.launchInputs())
        let verifier = SNPVerifier(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let report = try SNPReport(bytes: try launch.attestationReport(reportData: Self.reportData, vmpl: 0))
        // With its own chain presented, and with the VCEK alone: neither gains trust.
        let table = try SNPCertificateTable(bytes: launch.certificateTable)
        #expect(throws: AttestationError.self) {
            try verifier.verify(try SNPEvidence(report: report, certificateTable: table), options: Self.options())
        }
        let error = try #require(throws: AttestationError.self) {
            try verifier.verify(
                SNPEvidence(report: report, endorsementCertificate: try AttestationCertificate(der: other.vcek.der)),
                options: Self.options())
        }
        #expect([.issuerMismatch, .badSignature].contains(error.code), "\(error)")
    }

    @Test("one changed initrd byte gives a different measurement; the same inputs give the same one")
    func measurementFollowsInputs() throws {
        let inputs = try SimulatedPlatformFixture.launchInputs()
        var changed = inputs
        changed.initrd![100] ^= 0x01
        let a = try Self.launch(inputs), b = try Self.launch(inputs), c = try Self.launch(changed)
        #expect(a.measurement == b.measurement)
        #expect(a.reportID != b.reportID)
        #expect(a.measurement != c.measurement)
        var cpus = inputs
        cpus.vcpus = 4
        #expect(try Self.launch(cpus).measurement != a.measurement)
    }

    @Test("launches the platform cannot measure or the ABI forbids are refused")
    func invalidLaunchesRefused() throws {
        let processor = try SimulatedPlatformFixture.platform().processor
        var unknownCPU = try SimulatedPlatformFixture.launchInputs()
        unknownCPU.vcpuType = "Pentium-4"
        var shortHostData = try SimulatedPlatformFixture.launchInputs()
        shortHostData.hostData = [1, 2, 3]
        var badPolicy = try SimulatedPlatformFixture.launchInputs()
        badPolicy.guestPolicy = 0x10000  // bit 17 clear
        var noMetadata = try SimulatedPlatformFixture.launchInputs()
        noMetadata.firmware = [UInt8](repeating: 0, count: 8192)
        for inputs in [unknownCPU, shortHostData, badPolicy, noMetadata] {
            #expect { try processor.launch(inputs) } throws: { ($0 as? PlatformSimulatorError)?.code == .invalidLaunch }
        }
    }

    @Test("respond(to:) answers a report request with report and table, and anything else with a failure")
    func respondsToGuestMessages() throws {
        let launch = try Self.launch()
        guard
            case .snpReportResponse(let report, let table) = launch.respond(
                to: .snpReportRequest(reportData: Self.reportData, vmpl: 1))
        else {
            Issue.record("no report response")
            return
        }
        #expect(try SNPReport(bytes: report).vmpl == 1)
        #expect(table == launch.certificateTable)
        guard case .failure(let reason) = launch.respond(to: .snpReportRequest(reportData: Self.reportData, vmpl: 4))
        else {
            Issue.record("VMPL 4 was answered")
            return
        }
        #expect(reason.contains("VMPL"))
        for message: GuestMessage in [
            .tdxQuoteRequest(reportData: Self.reportData), .shutdown, .attestRequest(nonce: [1]),
        ] {
            guard case .failure = launch.respond(to: message) else {
                Issue.record("\(message.kind) was answered")
                continue
            }
        }
    }
}
