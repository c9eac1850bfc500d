import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("A child's software TPM: swtpm per instance, EK certificate from the installation's local CA")
struct SoftwareTPMTests {
    @Test("starts swtpm with a manufactured state and an EK certificate that chains to the local CA root; stop and remove clean up",
          .timeLimit(.minutes(3)))
    func startsAndStops() async throws {
        let stateDirectory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-vtpm-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: stateDirectory) }
        let ca = VTPMLocalCA(stateDirectory: stateDirectory)
        let directory = SoftwareTPM.stateDirectory(stateDirectory: stateDirectory, instance: "child-1")
        let tpm = try await SoftwareTPM.start(directory: directory, localCA: ca)
        #expect(tpm.isRunning)
        #expect(FileManager.default.fileExists(atPath: tpm.socket.path))
        #expect(tpm.qemuArguments.contains("tpm-tis,tpmdev=cmkvtpm0"))

        // The EK certificate verifies under the local CA (root, then the issuing intermediate), checked by openssl.
        let pem = directory.appendingPathComponent("ek.pem")
        let convert = try await offPool {
            try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/openssl"), ["x509", "-inform", "der", "-in", tpm.ekCertificate.path, "-out", pem.path])
        }
        #expect(convert.status == 0, "\(convert.standardError)")
        let verify = try await offPool {
            try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/openssl"),
                ["verify", "-CAfile", ca.rootCertificate.path, "-untrusted", ca.issuerCertificate.path, pem.path])
        }
        #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")

        await tpm.stop()
        #expect(!tpm.isRunning)
        // A second start reuses the manufactured state (no second swtpm_setup): the EK certificate is unchanged.
        let certificate = try Data(contentsOf: tpm.ekCertificate)
        let again = try await SoftwareTPM.start(directory: directory, localCA: ca)
        #expect(try Data(contentsOf: again.ekCertificate) == certificate)
        await again.stop()
        SoftwareTPM.remove(directory: directory)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        #expect(FileManager.default.fileExists(atPath: ca.rootCertificate.path))
    }

    @Test("reconciliation removes the vTPM state of instances that are no longer live, and only those")
    func removesOrphans() throws {
        let stateDirectory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-vtpm-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: stateDirectory) }
        for id in ["live-1", "gone-1", "gone-2"] {
            let folder = SoftwareTPM.stateDirectory(stateDirectory: stateDirectory, instance: id)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data("state".utf8).write(to: folder.appendingPathComponent("tpm2-00.permall"))
        }
        #expect(SoftwareTPM.removeOrphans(stateDirectory: stateDirectory, keeping: ["live-1"]) == ["gone-1", "gone-2"])
        let left = try FileManager.default.contentsOfDirectory(
            atPath: stateDirectory.appendingPathComponent("vtpm/instances").path)
        #expect(left == ["live-1"])
        #expect(SoftwareTPM.removeOrphans(stateDirectory: stateDirectory, keeping: ["live-1"]).isEmpty)
    }
}
