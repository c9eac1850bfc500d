@testable import Attestation
import BinaryFormat
import CMKTesting
import Foundation
import GuestAgent
import Testing
import TPM2

/// cmk-guest's own TPM 2.0 commands (no libtss2 in the static agent) against a real swtpm manufactured as the
/// coordinator does it (swtpm_setup, EK certificate from a local CA), reached over swtpm's UNIX server socket, which
/// carries the same raw command bytes as /dev/tpmrm0 in a child. tpm2-tools checks the quote independently.
@Suite("cmk-guest's TPM commands against a real swtpm")
struct GuestTPMCommandTests {
    @Test("the agent finds the EK, creates a restricted signing AK, activates cmk's credential and quotes PCRs 0-9 with the nonce; tpm2_checkquote agrees",
          .timeLimit(.minutes(3)))
    func createsActivatesAndQuotes() async throws {
        let directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-tpmq-agent-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (swtpm, socket) = try await offPool { try Self.startSWTPM(in: directory) }
        defer {
            swtpm.terminate()
            waitForExit(swtpm, timeout: 10)
        }
        let eventLog = directory.appendingPathComponent("eventlog.bin")
        try Data([1, 2, 3]).write(to: eventLog)

        // The agent's side, off the cooperative pool (swtpm generates two RSA keys): keys, two activations, a quote.
        struct AgentRun: Sendable {
            var endorsementKey: [UInt8], attestationKey: [UInt8], secret: [UInt8], activated: [UInt8]
            var otherNameRefused: Bool, nonce: [UInt8], quote: [UInt8], signature: [UInt8], eventLog: [UInt8]
        }
        let run = try await offPool { () throws -> AgentRun in
            let device = TPMDevice(descriptor: try FileDescriptor.connect(unixSocket: socket.path), path: socket.path)
            let attester = try VTPMAttester(device: device, eventLogPath: eventLog.path, mountSecurityFS: false)
            // MakeCredential by the verifier, ActivateCredential by the agent's own commands.
            let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
            let challenge = try TPMCredentialChallenge(
                endorsementKey: attester.endorsementKey, attestationKey: attester.attestationKey, secret: secret,
                seed: (0..<32).map { _ in UInt8.random(in: 0...255) })
            let activated = try attester.activate(
                credentialBlob: challenge.credentialBlob, encryptedSecret: challenge.encryptedSecret)
            // A credential made for another object's Name is refused by the TPM (the integrity HMAC covers the Name).
            let other = try TPMCredentialChallenge(
                endorsementKey: attester.endorsementKey, attestationKey: attester.endorsementKey, secret: secret,
                seed: (0..<32).map { _ in UInt8.random(in: 0...255) })
            let refused = (try? attester.activate(credentialBlob: other.credentialBlob, encryptedSecret: other.encryptedSecret)) == nil
            let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
            let quote = try attester.quote(nonce: nonce)
            return AgentRun(
                endorsementKey: attester.endorsementKey, attestationKey: attester.attestationKey, secret: secret,
                activated: activated, otherNameRefused: refused, nonce: nonce, quote: quote.quote,
                signature: quote.signature, eventLog: quote.eventLog)
        }
        let ek = try TPMTPublic(marshalled: run.endorsementKey)
        let ak = try TPMTPublic(marshalled: run.attestationKey)
        #expect(ek.attributes.contains(.restricted) && ek.attributes.contains(.decrypt))
        #expect(ak.attributes.contains(.restricted) && ak.attributes.contains(.sign) && ak.attributes.contains(.fixedTPM))
        #expect(run.activated == run.secret)
        #expect(run.otherNameRefused)
        let attest = try TPMSAttest(marshalled: run.quote)
        #expect(attest.extraData == run.nonce)
        #expect(run.eventLog == [1, 2, 3])
        // The EK the agent found is the one swtpm_setup certified under the local CA.
        let certificate = try AttestationCertificate(
            der: [UInt8](try Data(contentsOf: directory.appendingPathComponent("ek-rsa2048.crt"))))
        guard case .rsa(_, let exponent, let modulus) = ek.key else { Issue.record("the EK is not RSA"); return }
        #expect(certificate.subjectPublicKeyInfo == RSASubjectPublicKeyInfo.der(modulus: modulus, exponent: exponent == 0 ? 65537 : exponent))

        // tpm2_checkquote: the signature by this AK over these bytes, with this nonce; and not with another nonce.
        let files = (ak: directory.appendingPathComponent("ak.pub"), msg: directory.appendingPathComponent("quote.msg"),
                     sig: directory.appendingPathComponent("quote.sig"))
        let sized = [UInt8(run.attestationKey.count >> 8), UInt8(run.attestationKey.count & 0xFF)] + run.attestationKey
        try Data(sized).write(to: files.ak)
        try Data(run.quote).write(to: files.msg)
        try Data(run.signature).write(to: files.sig)
        @Sendable func checkquote(_ nonce: [UInt8]) throws -> Int32 {
            try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/tpm2_checkquote"),
                ["-u", files.ak.path, "-m", files.msg.path, "-s", files.sig.path, "-g", "sha256", "-q", Hex.encode(nonce)],
                timeout: 60
            ).status
        }
        #expect(try await offPool { try checkquote(run.nonce) } == 0)
        #expect(try await offPool { try checkquote(Array(run.nonce.reversed())) } != 0)
    }

    /// swtpm_setup with an EK certificate from a local CA in `directory`, then swtpm serving raw commands on a UNIX
    /// socket (started up, as OVMF would have done).
    static func startSWTPM(in directory: URL) throws -> (Process, URL) {
        let fm = FileManager.default
        let state = directory.appendingPathComponent("state")
        let ca = directory.appendingPathComponent("ca")
        try fm.createDirectory(at: state, withIntermediateDirectories: true)
        try fm.createDirectory(at: ca, withIntermediateDirectories: true)
        try "statedir = \(ca.path)\nsigningkey = \(ca.path)/signkey.pem\nissuercert = \(ca.path)/issuercert.pem\ncertserial = \(ca.path)/certserial\n"
            .write(to: ca.appendingPathComponent("swtpm-localca.conf"), atomically: true, encoding: .utf8)
        try "".write(to: ca.appendingPathComponent("swtpm-localca.options"), atomically: true, encoding: .utf8)
        try "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = \(ca.path)/swtpm-localca.conf\ncreate_certs_tool_options = \(ca.path)/swtpm-localca.options\n"
            .write(to: ca.appendingPathComponent("swtpm_setup.conf"), atomically: true, encoding: .utf8)
        let setup = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/swtpm_setup"),
            ["--tpm2", "--tpmstate", state.path, "--create-ek-cert", "--config", ca.appendingPathComponent("swtpm_setup.conf").path,
             "--pcr-banks", "sha256", "--write-ek-cert-files", directory.path],
            timeout: 120)
        guard setup.status == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "swtpm_setup: \(setup.standardOutput)\(setup.standardError)"])
        }
        let socket = directory.appendingPathComponent("tpm.sock")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/swtpm")
        process.arguments = [
            "socket", "--tpm2", "--tpmstate", "dir=\(state.path)", "--server", "type=unixio,path=\(socket.path)",
            "--ctrl", "type=unixio,path=\(directory.appendingPathComponent("ctrl.sock").path)",
            "--flags", "not-need-init,startup-clear",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !fm.fileExists(atPath: socket.path) {
            guard process.isRunning, Date() < deadline else {
                throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: "swtpm did not open \(socket.path)"])
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return (process, socket)
    }
}
