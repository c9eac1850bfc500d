import Attestation
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import Testing
import VerificationService

/// A real software TPM (swtpm on a loopback TCP port) driven by tpm2-tools: an EK, an ECDSA attestation key, and
/// quotes over the nonce the service issued. Stopped by `stop()`.
final class SoftwareTPM: @unchecked Sendable {
    let directory: URL
    let process: Process
    let tcti: String

    init() throws {
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-serve-tpm-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        var started: (Process, Int)?
        for _ in 0..<10 {
            let port = Int.random(in: 20_000..<60_000) & ~1
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/swtpm")
            process.arguments = [
                "socket", "--tpm2", "--tpmstate", "dir=\(directory.appendingPathComponent("state").path)",
                "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1", "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: 0.5)
            if process.isRunning {
                started = (process, port)
                break
            }
            waitForExit(process, timeout: 5)
        }
        guard let (process, port) = started else { throw ServiceError("swtpm did not start") }
        self.process = process
        tcti = "swtpm:host=127.0.0.1,port=\(port)"
    }

    func stop() {
        if process.isRunning { process.terminate() }
        waitForExit(process, timeout: 10)
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: directory.appendingPathComponent(name))) }

    /// Runs a tpm2-tools command, then flushes what it left loaded (no resource manager between them and swtpm).
    @discardableResult
    func run(_ name: String, _ arguments: [String]) throws -> String {
        func tool(_ name: String, _ arguments: [String]) throws -> String {
            let output = try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/\(name)"), arguments,
                environment: ["TPM2TOOLS_TCTI": tcti, "PATH": "/usr/bin:/bin", "HOME": directory.path], timeout: 60)
            guard output.status == 0 else { throw ServiceError("\(name) \(arguments): \(output.standardError)") }
            return output.standardOutput
        }
        let out = try tool(name, arguments)
        _ = try tool("tpm2_flushcontext", ["-t"])
        return out
    }

    /// Makes the EK and an ECDSA P-256 AK under it; returns the AK's TPM2B_PUBLIC.
    func createAttestationKey() throws -> [UInt8] {
        try run("tpm2_createek", ["-c", path("ek.ctx"), "-G", "rsa", "-u", path("ek.pub")])
        try run("tpm2_createak", [
            "-C", path("ek.ctx"), "-c", path("ak.ctx"), "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", path("ak.pub"),
        ])
        return try read("ak.pub")
    }

    /// tpm2_activatecredential of a credential file (`tpm2_makecredential`'s format) for the AK under the EK, in a
    /// policy session satisfying the EK's PolicySecret(endorsement); returns the recovered secret.
    func activate(credential: [UInt8], label: String) throws -> [UInt8] {
        try Data(credential).write(to: directory.appendingPathComponent("\(label).cred"))
        let session = path("\(label).session")
        let environment = ["TPM2TOOLS_TCTI": tcti, "PATH": "/usr/bin:/bin", "HOME": directory.path]
        for (name, arguments) in [
            ("tpm2_startauthsession", ["--policy-session", "-S", session]),
            ("tpm2_policysecret", ["-S", session, "-c", "e"]),
            ("tpm2_activatecredential", [
                "-c", path("ak.ctx"), "-C", path("ek.ctx"), "-i", path("\(label).cred"), "-o", path("\(label).secret"),
                "-P", "session:\(session)",
            ]),
            ("tpm2_flushcontext", [session]),
            ("tpm2_flushcontext", ["-t"]),
        ] {
            let output = try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/\(name)"), arguments, environment: environment, timeout: 60)
            guard output.status == 0 else { throw ServiceError("\(name) \(arguments): \(output.standardError)") }
        }
        return try read("\(label).secret")
    }

    /// Quotes SHA-256 PCRs 0-7 with `nonce` as extraData: (TPMS_ATTEST, TPMT_SIGNATURE).
    func quote(nonce: [UInt8], label: String) throws -> (quote: [UInt8], signature: [UInt8]) {
        try run("tpm2_quote", [
            "-c", path("ak.ctx"), "-l", "sha256:0,1,2,3,4,5,6,7", "-q", nonce.map { String(format: "%02x", $0) }.joined(),
            "-g", "sha256", "-m", path("\(label).msg"), "-s", path("\(label).sig"),
        ])
        return (try read("\(label).msg"), try read("\(label).sig"))
    }
}

/// `POST /v1/attest` with a vTPM quote beside simulated SEV-SNP evidence: the quote from a real swtpm over the
/// service's nonce, the AK bound by the report's REPORT_DATA, appraised by the policy's `tpm:` section.
@Suite("cmk serve: vTPM evidence (swtpm, tpm2-tools)", .serialized, .timeLimit(.minutes(5)))
struct TPMServeTests {
    /// The first event of a crypto-agile log is the Spec ID event that declares the banks; with no measurement after
    /// it, every PCR replays to zero, which is what a fresh swtpm's PCRs 0-7 hold.
    static func specIDOnlyLog() throws -> [UInt8] {
        let log = [UInt8](try Data(contentsOf: SharedVectors.repositoryRoot.appendingPathComponent(
            "Tests/AttestationTests/Fixtures/ovmf-swtpm-event-log.bin")))
        let size = Int(log[28]) | Int(log[29]) << 8 | Int(log[30]) << 16 | Int(log[31]) << 24
        return Array(log.prefix(32 + size))
    }

    static let policy = """
        id: development-tpm
        version: 1
        description: development, plus a vTPM quote bound to the report (test)
        evidence: sev-snp
        trust:
          roots: [simulated-amd]
          crl: soft
        freshness:
          report-data: nonce-and-key
        sev-snp:
          guest-policy:
            debug: forbidden
          host-data: manifest
        tpm:
          ak-bound-to-tee: true
          ak-bound-to-ek: false
        """

    @Test("a quote over the nonce, its AK bound by REPORT_DATA, is admitted; a PCR the log does not explain is rejected by name")
    func vtpmQuote() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let put = try await live.putPolicy(Self.policy, id: "development-tpm")
        #expect(put.status == 201, "\(put.text)")
        try await ServiceFlowTests.warmSimulatedPlatform()
        let tpm = try await offPool { try SoftwareTPM() }
        defer { tpm.stop() }
        let akPublic = try await offPool { try tpm.createAttestationKey() }
        // SHA-256 of the AK's TPMT_PUBLIC (the TPM2B_PUBLIC without its size): the key REPORT_DATA binds.
        let akDigest = Array(SHA256.hash(data: Array(akPublic.dropFirst(2))))
        let log = try Self.specIDOnlyLog()

        func attest(label: String, tpmFields: (([String: Any]) -> [String: Any])? = nil) async throws -> HTTPResult {
            let nonce = try await live.challenge()
            let quoted = try await offPool { try tpm.quote(nonce: Array(Data(hexString: nonce)), label: label) }
            var body = try ServiceFlowTests.simulatedRequest(nonce: nonce, publicKey: akDigest, policy: "development-tpm")
            var fields: [String: Any] = [
                "quote": Data(quoted.quote).base64EncodedString(), "signature": Data(quoted.signature).base64EncodedString(),
                "attestation_key": Data(akPublic).base64EncodedString(), "event_log": Data(log).base64EncodedString(),
            ]
            if let tpmFields { fields = tpmFields(fields) }
            body["tpm"] = fields
            return try await live.request("POST", "/v1/attest", json: body)
        }
        func outcomes(_ result: HTTPResult) -> [String: String] {
            let list = (result.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? []
            return Dictionary(list.compactMap { o in (o["rule"] as? String).map { ($0, o["status"] as? String ?? "") } }, uniquingKeysWith: { a, _ in a })
        }

        let admitted = try await attest(label: "good")
        #expect(admitted.status == 200, "\(admitted.text)")
        #expect(admitted.object["verdict"] as? String == "admit", "\(outcomes(admitted))")
        #expect(outcomes(admitted)["tpm.verified"] == "pass")
        #expect(outcomes(admitted)["tpm.ak-bound-to-tee"] == "pass")

        // The first quote again (over the first nonce) with this request's signature: refused.
        let first = Data(try tpm.read("good.msg")).base64EncodedString()
        let foreign = try await attest(label: "foreign") { fields in
            var fields = fields
            fields["quote"] = first
            return fields
        }
        #expect(foreign.object["verdict"] as? String == "reject")
        #expect(outcomes(foreign)["tpm.verified"] == "fail", "\(foreign.text.prefix(400))")

        // PCR 0 extended past what the log shows: the replay no longer matches; rejected, the rule named.
        _ = try await offPool { try tpm.run("tpm2_pcrextend", ["0:sha256=" + String(repeating: "ab", count: 32)]) }
        let extended = try await attest(label: "extended")
        #expect(extended.status == 200)
        #expect(extended.object["verdict"] as? String == "reject")
        #expect(outcomes(extended)["tpm.verified"] == "fail")
        let detail = ((extended.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? [])
            .first { $0["rule"] as? String == "tpm.verified" }
        #expect("\(detail ?? [:])".contains("replays"), "\(detail ?? [:])")

        // Not base64: a 400 naming the field.
        let bad = try await attest(label: "bad") { fields in
            var fields = fields
            fields["signature"] = "not*base64"
            return fields
        }
        #expect(bad.status == 400)
        #expect(bad.problemCode == "bad-base64")
        #expect((bad.object["detail"] as? String)?.contains("tpm.signature") == true)
    }

    @Test("credential activation over the API: the challenge seals a secret to the EK for the AK, swtpm's TPM recovers it, the attestation binds AK to EK; a wrong, missing or unissued secret is refused")
    func credentialActivation() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let policy = Self.policy.replacingOccurrences(of: "id: development-tpm", with: "id: development-tpm-ek")
            .replacingOccurrences(of: "ak-bound-to-ek: false", with: "ak-bound-to-ek: true")
        #expect(try await live.putPolicy(policy, id: "development-tpm-ek").status == 201)
        try await ServiceFlowTests.warmSimulatedPlatform()
        let tpm = try await offPool { try SoftwareTPM() }
        defer { tpm.stop() }
        let akPublic = try await offPool { try tpm.createAttestationKey() }
        let ekPublic = try tpm.read("ek.pub")
        let akDigest = Array(SHA256.hash(data: Array(akPublic.dropFirst(2))))
        let log = try Self.specIDOnlyLog()
        let keys = ["endorsement_key": Data(ekPublic).base64EncodedString(), "attestation_key": Data(akPublic).base64EncodedString()]

        /// A challenge (with the TPM keys, or without), the TPM's answer to its credential, and an attestation.
        func attest(label: String, credential: Bool, secret: (([UInt8]) -> [UInt8]?)? = nil) async throws -> HTTPResult {
            var challengeBody: [String: Any] = ["tenant": "alpha"]
            if credential { challengeBody["tpm"] = keys }
            let challenge = try await live.request("POST", "/v1/challenge", json: challengeBody)
            #expect(challenge.status == 201, "\(challenge.text)")
            let nonce = try #require(challenge.object["nonce"] as? String)
            var activated: [UInt8]?
            if credential {
                let made = try #require(challenge.object["tpm_credential"] as? [String: String])
                let file = try #require(made["tpm2_tools"].flatMap { Data(base64Encoded: $0) })
                #expect(made["credential_blob"] != nil && made["encrypted_secret"] != nil)
                activated = try await offPool { try tpm.activate(credential: [UInt8](file), label: label) }
                #expect(activated?.count == 32)
            } else {
                #expect(challenge.object["tpm_credential"] == nil)
            }
            if let secret { activated = secret(activated ?? []) }
            let quoted = try await offPool { try tpm.quote(nonce: Array(Data(hexString: nonce)), label: label) }
            var body = try ServiceFlowTests.simulatedRequest(nonce: nonce, publicKey: akDigest, policy: "development-tpm-ek")
            var fields: [String: Any] = [
                "quote": Data(quoted.quote).base64EncodedString(), "signature": Data(quoted.signature).base64EncodedString(),
                "attestation_key": Data(akPublic).base64EncodedString(), "event_log": Data(log).base64EncodedString(),
            ]
            if let activated { fields["activated_secret"] = Data(activated).base64EncodedString() }
            body["tpm"] = fields
            return try await live.request("POST", "/v1/attest", json: body)
        }
        func outcome(_ result: HTTPResult, _ rule: String) -> String? {
            let list = (result.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? []
            return list.first { $0["rule"] as? String == rule }?["status"] as? String
        }

        let admitted = try await attest(label: "activated", credential: true)
        #expect(admitted.status == 200, "\(admitted.text)")
        #expect(admitted.object["verdict"] as? String == "admit", "\(admitted.text.prefix(600))")
        #expect(outcome(admitted, "tpm.ak-bound-to-ek") == "pass")
        #expect(outcome(admitted, "tpm.ak-bound-to-tee") == "pass")

        // One byte of the recovered secret changed: the quote does not verify, so the attestation is rejected.
        let wrong = try await attest(label: "wrong", credential: true) { secret in
            var secret = secret
            secret[0] ^= 0x01
            return secret
        }
        #expect(wrong.status == 200)
        #expect(wrong.object["verdict"] as? String == "reject")
        #expect(outcome(wrong, "tpm.verified") == "fail", "\(wrong.text.prefix(600))")

        // The credential issued, but no secret returned: the binding was not shown, and the policy requires it.
        let unanswered = try await attest(label: "unanswered", credential: true) { _ in nil }
        #expect(unanswered.object["verdict"] as? String == "reject")
        #expect(outcome(unanswered, "tpm.ak-bound-to-ek") == "fail")

        // A secret for a nonce issued without a credential (the first secret replayed): a 400 naming why.
        let first = try await attest(label: "replayed", credential: false) { _ in [UInt8](repeating: 7, count: 32) }
        #expect(first.status == 400)
        #expect(first.problemCode == "no-tpm-credential")

        // Keys that are not TPM public areas: a 422 at the challenge.
        let badKeys = try await live.request(
            "POST", "/v1/challenge",
            json: ["tenant": "alpha", "tpm": ["endorsement_key": Data([1, 2, 3]).base64EncodedString(), "attestation_key": keys["attestation_key"]!]])
        #expect(badKeys.status == 422)
        #expect(badKeys.problemCode == "bad-tpm-key")
    }

    /// Runs openssl in `folder`; fails the test's setup with openssl's own message.
    static func openssl(_ arguments: [String], in folder: URL) throws {
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/openssl"), arguments, environment: ["PATH": "/usr/bin:/bin", "HOME": folder.path],
            timeout: 60, workingDirectory: folder)
        guard output.status == 0 else { throw ServiceError("openssl \(arguments): \(output.standardError)") }
    }

    /// A vTPM CA made here with openssl (a self-signed P-256 root), and DER certificates it issues for a public key in
    /// PEM (`-force_pubkey`): the shape of swtpm's local CA and the EK certificates it writes into the TPM's NV.
    static func makeCA(_ name: String, in folder: URL) throws -> [UInt8] {
        try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(name).key"], in: folder)
        try openssl([
            "req", "-x509", "-new", "-key", "\(name).key", "-subj", "/CN=\(name) vTPM EK CA (test)", "-days", "2",
            "-sha256", "-out", "\(name).pem",
        ], in: folder)
        return [UInt8](try Data(contentsOf: folder.appendingPathComponent("\(name).pem")))
    }

    static func issue(by ca: String, publicKeyPEM: String, label: String, in folder: URL) throws -> [UInt8] {
        try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(label).csr.key"], in: folder)
        try openssl(["req", "-new", "-key", "\(label).csr.key", "-subj", "/CN=\(label)", "-out", "\(label).csr"], in: folder)
        try openssl([
            "x509", "-req", "-in", "\(label).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key", "-CAcreateserial",
            "-force_pubkey", publicKeyPEM, "-days", "1", "-sha256", "-outform", "DER", "-out", "\(label).der",
        ], in: folder)
        return [UInt8](try Data(contentsOf: folder.appendingPathComponent("\(label).der")))
    }

    @Test("an EK certificate chaining to the pinned vTPM CA and certifying the activated EK passes tpm.ek-certificate; another CA's, another key's, or none is refused")
    func endorsementCertificate() async throws {
        let tpm = try await offPool { try SoftwareTPM() }
        defer { tpm.stop() }
        let akPublic = try await offPool { try tpm.createAttestationKey() }
        let ekPublic = try tpm.read("ek.pub")
        _ = try await offPool { try tpm.run("tpm2_readpublic", ["-c", tpm.path("ek.ctx"), "-f", "pem", "-o", tpm.path("ek.pem")]) }
        let folder = tpm.directory
        let pinned = try Self.makeCA("pinned", in: folder)
        _ = try Self.makeCA("other", in: folder)
        try Self.openssl(["genrsa", "-out", "stranger.key", "2048"], in: folder)
        try Self.openssl(["rsa", "-in", "stranger.key", "-pubout", "-out", "stranger.pem"], in: folder)
        let genuine = try Self.issue(by: "pinned", publicKeyPEM: tpm.path("ek.pem"), label: "genuine", in: folder)
        let otherCA = try Self.issue(by: "other", publicKeyPEM: tpm.path("ek.pem"), label: "other-ca", in: folder)
        let otherKey = try Self.issue(by: "pinned", publicKeyPEM: tpm.path("stranger.pem"), label: "other-key", in: folder)
        let root = try AttestationCertificate(pem: String(decoding: pinned, as: UTF8.self))

        let live = try await LiveServer.start { $0.tpmEndorsementChain = [root] }
        defer { Task { await live.stop() } }
        let policy = Self.policy.replacingOccurrences(of: "id: development-tpm", with: "id: development-tpm-ekcert")
            .replacingOccurrences(of: "ak-bound-to-ek: false", with: "ak-bound-to-ek: true\n  ek-certificate: true")
        #expect(try await live.putPolicy(policy, id: "development-tpm-ekcert").status == 201)
        try await ServiceFlowTests.warmSimulatedPlatform()
        let akDigest = Array(SHA256.hash(data: Array(akPublic.dropFirst(2))))
        let log = try Self.specIDOnlyLog()
        let keys = ["endorsement_key": Data(ekPublic).base64EncodedString(), "attestation_key": Data(akPublic).base64EncodedString()]

        func attest(label: String, certificate: [UInt8]?, activate: Bool = true) async throws -> HTTPResult {
            let challenge = try await live.request("POST", "/v1/challenge", json: ["tenant": "alpha", "tpm": keys])
            let nonce = try #require(challenge.object["nonce"] as? String)
            let made = try #require(challenge.object["tpm_credential"] as? [String: String])
            let file = try #require(made["tpm2_tools"].flatMap { Data(base64Encoded: $0) })
            let activated = try await offPool { try tpm.activate(credential: [UInt8](file), label: label) }
            let quoted = try await offPool { try tpm.quote(nonce: Array(Data(hexString: nonce)), label: label) }
            var body = try ServiceFlowTests.simulatedRequest(nonce: nonce, publicKey: akDigest, policy: "development-tpm-ekcert")
            var fields: [String: Any] = [
                "quote": Data(quoted.quote).base64EncodedString(), "signature": Data(quoted.signature).base64EncodedString(),
                "attestation_key": Data(akPublic).base64EncodedString(), "event_log": Data(log).base64EncodedString(),
            ]
            if activate { fields["activated_secret"] = Data(activated).base64EncodedString() }
            if let certificate { fields["ek_certificate"] = Data(certificate).base64EncodedString() }
            body["tpm"] = fields
            return try await live.request("POST", "/v1/attest", json: body)
        }
        func outcome(_ result: HTTPResult, _ rule: String) -> [String: Any]? {
            let list = (result.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? []
            return list.first { $0["rule"] as? String == rule }
        }

        let admitted = try await attest(label: "genuine", certificate: genuine)
        #expect(admitted.status == 200, "\(admitted.text)")
        #expect(admitted.object["verdict"] as? String == "admit", "\(admitted.text.prefix(800))")
        #expect(outcome(admitted, "tpm.ek-certificate")?["status"] as? String == "pass")
        #expect(outcome(admitted, "tpm.ak-bound-to-ek")?["status"] as? String == "pass")

        // Issued by a CA the server does not pin: the quote's verification fails, naming the chain.
        let foreign = try await attest(label: "other-ca", certificate: otherCA)
        #expect(foreign.object["verdict"] as? String == "reject")
        #expect(outcome(foreign, "tpm.verified")?["status"] as? String == "fail")
        #expect("\(outcome(foreign, "tpm.verified") ?? [:])".contains("does not chain"), "\(foreign.text.prefix(800))")

        // Issued by the pinned CA, for another key than the EK the credential was made for.
        let stranger = try await attest(label: "other-key", certificate: otherKey)
        #expect(stranger.object["verdict"] as? String == "reject")
        #expect("\(outcome(stranger, "tpm.verified") ?? [:])".contains("another key"), "\(stranger.text.prefix(800))")

        // No certificate: the credential activation still binds AK to EK, but the policy wants the certificate.
        let missing = try await attest(label: "missing", certificate: nil)
        #expect(missing.object["verdict"] as? String == "reject")
        #expect(outcome(missing, "tpm.ak-bound-to-ek")?["status"] as? String == "pass")
        #expect(outcome(missing, "tpm.ek-certificate")?["status"] as? String == "fail")

        // A certificate without the activation whose EK it would certify: a 400.
        let alone = try await attest(label: "alone", certificate: genuine, activate: false)
        #expect(alone.status == 400)
        #expect(alone.problemCode == "ek-certificate-without-activation")
    }
}
