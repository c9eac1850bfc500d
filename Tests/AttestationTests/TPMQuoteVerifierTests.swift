import Attestation
import AttestationPolicy
import BinaryFormat
import CMKTesting
import Crypto
import EventLog
import Foundation
import Testing

/// A real software TPM (swtpm, TCP socket) driven by tpm2-tools on the host, no QEMU: an EK, attestation keys of
/// each kind, PCRs extended with the digests of a real OVMF event log, quotes with a nonce, a credential activation,
/// and a quote taken after one extend more than the log shows. Made once for the suite; swtpm is stopped after.
/// Folders a shared fixture keeps for the whole run, removed when the test process exits (there is no suite-level
/// teardown for a fixture shared by several suites' tests).
enum SuiteFolders {
    nonisolated(unsafe) static var paths: [String] = []
    static let lock = NSLock()

    static func removeAtExit(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        if paths.isEmpty {
            atexit {
                for path in SuiteFolders.paths { try? FileManager.default.removeItem(atPath: path) }
            }
        }
        paths.append(path)
    }
}

struct SWTPMQuotes: Sendable {
    static let nonce: [UInt8] = Array("cmk-tpm-test-nonce-0001".utf8)
    /// The PCRs quoted: the firmware's 0–7 and the EFI stub's 9.
    static let pcrs = "sha256:0,1,2,3,4,5,6,7,9"
    static let logURL = SharedVectors.repositoryRoot.appendingPathComponent(
        "Tests/AttestationTests/Fixtures/ovmf-swtpm-event-log.bin")

    struct Quote: Sendable {
        let ak: [UInt8]
        let akPath: String
        let quote: [UInt8]
        let quotePath: String
        let signature: [UInt8]
        let signaturePath: String
    }

    let directory: URL
    let log: [UInt8]
    let ecdsa: Quote
    let rsassa: Quote
    let rsapss: Quote
    /// A quote over the same PCRs after one more PCR 9 extend than the log records.
    let extended: Quote
    let endorsementKey: [UInt8]
    let secret: [UInt8]
    let activatedSecret: [UInt8]
    let ecdsaName: [UInt8]
    /// The EK certificates swtpm_setup wrote, and the local CA's intermediate and root.
    let ekCertificate: [UInt8]
    let eccEKCertificate: [UInt8]
    let vtpmRoots: [AttestationCertificate]
    /// cmk's own MakeCredential (for the RSA-PSS AK) and what the swtpm's ActivateCredential returned from it.
    let cmkChallenge: TPMCredentialChallenge
    let cmkActivated: [UInt8]
    /// cmk's MakeCredential to an ECC EK (P-256) for the same AK, and what swtpm returned from it.
    let eccEndorsementKey: [UInt8]
    let cmkECCChallenge: TPMCredentialChallenge
    let cmkECCActivated: [UInt8]

    static let shared = Task { try await offPool("swtpm quotes") { try SWTPMQuotes() } }

    /// Runs a tpm2-tools command against the swtpm; fails the setup on a non-zero exit.
    static func tool(_ name: String, _ arguments: [String], tcti: String, in directory: URL) throws -> String {
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/\(name)"), arguments,
            environment: ["TPM2TOOLS_TCTI": tcti, "PATH": "/usr/bin:/bin", "HOME": directory.path], timeout: 60)
        guard output.status == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(name) \(arguments): \(output.standardError)"])
        }
        return output.standardOutput
    }

    init() throws {
        let fm = FileManager.default
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-tpmq-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        // The suite's tests read these files until the run ends: the folder goes when the test process exits.
        SuiteFolders.removeAtExit(directory.path)
        log = [UInt8](try Data(contentsOf: Self.logURL))
        let parsed = try TCGEventLog(bytes: log)

        // Manufacture the TPM as the coordinator does: swtpm_setup, an EK certificate from a local CA of this run.
        let ca = directory.appendingPathComponent("ca")
        try fm.createDirectory(at: ca, withIntermediateDirectories: true)
        try "statedir = \(ca.path)\nsigningkey = \(ca.path)/signkey.pem\nissuercert = \(ca.path)/issuercert.pem\ncertserial = \(ca.path)/certserial\n"
            .write(to: ca.appendingPathComponent("swtpm-localca.conf"), atomically: true, encoding: .utf8)
        try "".write(to: ca.appendingPathComponent("swtpm-localca.options"), atomically: true, encoding: .utf8)
        try "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = \(ca.path)/swtpm-localca.conf\ncreate_certs_tool_options = \(ca.path)/swtpm-localca.options\n"
            .write(to: ca.appendingPathComponent("swtpm_setup.conf"), atomically: true, encoding: .utf8)
        let setup = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/swtpm_setup"),
            ["--tpm2", "--tpmstate", directory.appendingPathComponent("state").path, "--create-ek-cert", "--config",
             ca.appendingPathComponent("swtpm_setup.conf").path, "--pcr-banks", "sha1,sha256,sha384,sha512",
             "--write-ek-cert-files", directory.path],
            timeout: 120)
        guard setup.status == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "swtpm_setup: \(setup.standardOutput)\(setup.standardError)"])
        }
        ekCertificate = [UInt8](try Data(contentsOf: directory.appendingPathComponent("ek-rsa2048.crt")))
        eccEKCertificate = [UInt8](try Data(contentsOf: directory.appendingPathComponent("ek-secp384r1.crt")))
        vtpmRoots = [
            try AttestationCertificate(pem: String(contentsOf: ca.appendingPathComponent("issuercert.pem"), encoding: .utf8)),
            try AttestationCertificate(pem: String(contentsOf: ca.appendingPathComponent("swtpm-localca-rootca-cert.pem"), encoding: .utf8)),
        ]

        // swtpm on a free TCP port (tpm2-tss 3.2's swtpm TCTI speaks TCP only); retry on a port someone holds.
        var swtpm: Process?
        var port = 0
        defer {
            if let swtpm, swtpm.isRunning { swtpm.terminate() }
            if let swtpm { waitForExit(swtpm, timeout: 5) }
        }
        for _ in 0..<10 {
            port = Int.random(in: 20_000..<60_000) & ~1
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
                swtpm = process
                break
            }
        }
        guard swtpm != nil else { throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: "swtpm did not start"]) }
        let tcti = "swtpm:host=127.0.0.1,port=\(port)"
        let d = directory
        func run(_ name: String, _ arguments: [String]) throws -> String {
            let out = try Self.tool(name, arguments, tcti: tcti, in: d)
            // No resource manager between tpm2-tools and swtpm: flush what the command left loaded.
            _ = try Self.tool("tpm2_flushcontext", ["-t"], tcti: tcti, in: d)
            return out
        }
        func path(_ name: String) -> String { d.appendingPathComponent(name).path }
        func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: d.appendingPathComponent(name))) }

        _ = try run("tpm2_createek", ["-c", path("ek.ctx"), "-G", "rsa", "-u", path("ek.pub")])
        _ = try run("tpm2_createak", ["-C", path("ek.ctx"), "-c", path("ecdsa.ctx"), "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", path("ecdsa.pub"), "-n", path("ecdsa.name")])
        _ = try run("tpm2_createak", ["-C", path("ek.ctx"), "-c", path("rsassa.ctx"), "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u", path("rsassa.pub")])
        _ = try run("tpm2_createak", ["-C", path("ek.ctx"), "-c", path("rsapss.ctx"), "-G", "rsa", "-g", "sha256", "-s", "rsapss", "-u", path("rsapss.pub")])

        // Extend every measured event's digests, all four banks, as the firmware did.
        let arguments = parsed.events.filter(\.isMeasured).map { event in
            "\(event.pcrIndex):" + event.digests.map { "\($0.algorithm)=\($0.digest)" }.joined(separator: ",")
        }
        for start in stride(from: 0, to: arguments.count, by: 8) {
            _ = try run("tpm2_pcrextend", Array(arguments[start..<min(start + 8, arguments.count)]))
        }
        let nonceHex = Hex.encode(Self.nonce)
        func quote(_ key: String, _ label: String) throws -> Quote {
            _ = try run("tpm2_quote", [
                "-c", path("\(key).ctx"), "-l", Self.pcrs, "-q", nonceHex, "-g", "sha256", "--scheme", key,
                "-m", path("\(label).msg"), "-s", path("\(label).sig"), "-o", path("\(label).pcrs"),
            ])
            return Quote(
                ak: try read("\(key).pub"), akPath: path("\(key).pub"), quote: try read("\(label).msg"),
                quotePath: path("\(label).msg"), signature: try read("\(label).sig"), signaturePath: path("\(label).sig"))
        }
        ecdsa = try quote("ecdsa", "ecdsa")
        rsassa = try quote("rsassa", "rsassa")
        rsapss = try quote("rsapss", "rsapss")

        // Credential activation for the ECDSA AK: tpm2_makecredential (no TPM), then ActivateCredential in the TPM.
        secret = Array(SHA256.hash(data: Array("a secret only the EK's TPM can recover".utf8)))
        try Data(secret).write(to: d.appendingPathComponent("secret.bin"))
        ecdsaName = try read("ecdsa.name")
        endorsementKey = try read("ek.pub")
        _ = try Self.tool(
            "tpm2_makecredential",
            ["-T", "none", "-u", path("ek.pub"), "-s", path("secret.bin"), "-n", Hex.encode(ecdsaName), "-o", path("cred.bin")],
            tcti: tcti, in: d)
        _ = try Self.tool("tpm2_startauthsession", ["--policy-session", "-S", path("session.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_policysecret", ["-S", path("session.ctx"), "-c", "e"], tcti: tcti, in: d)
        _ = try Self.tool(
            "tpm2_activatecredential",
            ["-c", path("ecdsa.ctx"), "-C", path("ek.ctx"), "-i", path("cred.bin"), "-o", path("activated.bin"),
             "-P", "session:\(path("session.ctx"))"],
            tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", [path("session.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", ["-t"], tcti: tcti, in: d)
        activatedSecret = try read("activated.bin")

        // The same with cmk's MakeCredential in Swift: tpm2_activatecredential must recover the secret.
        var generator = SystemRandomNumberGenerator()
        cmkChallenge = try TPMCredentialChallenge(
            endorsementKey: endorsementKey, attestationKey: try read("rsapss.pub"),
            secret: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) },
            seed: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try Data(cmkChallenge.tpm2ToolsFile).write(to: d.appendingPathComponent("cmk-cred.bin"))
        _ = try Self.tool("tpm2_startauthsession", ["--policy-session", "-S", path("session2.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_policysecret", ["-S", path("session2.ctx"), "-c", "e"], tcti: tcti, in: d)
        _ = try Self.tool(
            "tpm2_activatecredential",
            ["-c", path("rsapss.ctx"), "-C", path("ek.ctx"), "-i", path("cmk-cred.bin"), "-o", path("cmk-activated.bin"),
             "-P", "session:\(path("session2.ctx"))"],
            tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", [path("session2.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", ["-t"], tcti: tcti, in: d)
        cmkActivated = try read("cmk-activated.bin")

        // And to an ECC EK (TCG default template L-2, P-256): ECDH with an ephemeral key gives the seed.
        _ = try run("tpm2_createek", ["-c", path("eccek.ctx"), "-G", "ecc", "-u", path("eccek.pub")])
        eccEndorsementKey = try read("eccek.pub")
        cmkECCChallenge = try TPMCredentialChallenge(
            endorsementKey: eccEndorsementKey, attestationKey: try read("rsapss.pub"),
            secret: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }, seed: [])
        try Data(cmkECCChallenge.tpm2ToolsFile).write(to: d.appendingPathComponent("cmk-ecc-cred.bin"))
        _ = try Self.tool("tpm2_startauthsession", ["--policy-session", "-S", path("session3.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_policysecret", ["-S", path("session3.ctx"), "-c", "e"], tcti: tcti, in: d)
        _ = try Self.tool(
            "tpm2_activatecredential",
            ["-c", path("rsapss.ctx"), "-C", path("eccek.ctx"), "-i", path("cmk-ecc-cred.bin"), "-o",
             path("cmk-ecc-activated.bin"), "-P", "session:\(path("session3.ctx"))"],
            tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", [path("session3.ctx")], tcti: tcti, in: d)
        _ = try Self.tool("tpm2_flushcontext", ["-t"], tcti: tcti, in: d)
        cmkECCActivated = try read("cmk-ecc-activated.bin")

        // Something measured after the log was read.
        _ = try run("tpm2_pcrextend", ["9:sha256=" + Hex.encode(SHA256.hash(data: Array("unlogged".utf8)))])
        extended = try quote("ecdsa", "extended")
    }

    func evidence(_ q: Quote, log: [UInt8]? = nil) -> TPMEvidence {
        TPMEvidence(quote: q.quote, signature: q.signature, attestationKey: q.ak, eventLog: log ?? self.log)
    }

    /// REPORT_DATA as a child would ask for it: SHA-256 of the AK's TPMT_PUBLIC (a TPM2B_PUBLIC file less its size).
    static func reportData(for ak: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array(ak.dropFirst(2)))) + [UInt8](repeating: 0, count: 32)
    }

    /// An RSA-PSS quote checked by pyca/cryptography (the venv scripts/setup makes): salt length = digest size.
    func checkPSSWithPython(_ q: Quote) throws -> Int32 {
        let script = """
            import struct, sys
            from cryptography.hazmat.primitives.asymmetric import rsa, padding
            from cryptography.hazmat.primitives import hashes
            pub = open(sys.argv[1], 'rb').read()[2:]
            o = 8; n, = struct.unpack_from('>H', pub, o); o += 2 + n
            sym, = struct.unpack_from('>H', pub, o); o += 2 if sym == 0x10 else 6
            scheme, = struct.unpack_from('>H', pub, o); o += 2 if scheme == 0x10 else 4
            bits, exponent = struct.unpack_from('>HI', pub, o); o += 6
            size, = struct.unpack_from('>H', pub, o)
            key = rsa.RSAPublicNumbers(exponent or 65537, int.from_bytes(pub[o + 2:o + 2 + size], 'big')).public_key()
            sig = open(sys.argv[2], 'rb').read(); length, = struct.unpack_from('>H', sig, 4)
            key.verify(sig[6:6 + length], open(sys.argv[3], 'rb').read(),
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
            """
        return try ExternalTool.run(ExternalTool.python, ["-c", script, q.akPath, q.signaturePath, q.quotePath], timeout: 60).status
    }

    /// `tpm2_checkquote` on the same files: the independent verdict.
    func checkquote(_ q: Quote, nonce: [UInt8] = SWTPMQuotes.nonce) throws -> Int32 {
        try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/tpm2_checkquote"),
            ["-u", q.akPath, "-m", q.quotePath, "-s", q.signaturePath, "-g", "sha256", "-q", Hex.encode(nonce)],
            timeout: 60
        ).status
    }
}

@Suite("TPM 2.0 quotes from a real swtpm, checked against a real OVMF event log", .serialized)
struct TPMQuoteVerifierTests {
    func fixture() async throws -> SWTPMQuotes { try await SWTPMQuotes.shared.value }

    func expectRejected(
        _ code: AttestationError.Code, _ evidence: TPMEvidence, _ options: TPMVerificationOptions,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try TPMVerifier().verify(evidence, options: options)
            Issue.record("accepted evidence that must fail with \(code)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("quotes by ECDSA P-256, RSASSA and RSA-PSS keys verify, bound to nonce, TEE report and EK; tpm2_checkquote agrees",
          .timeLimit(.minutes(3)))
    func verifiesEveryKeyKind() async throws {
        let f = try await fixture()
        let replay = try TCGEventLog(bytes: f.log).replay()
        for q in [f.ecdsa, f.rsassa, f.rsapss] {
            let activation = q.ak == f.ecdsa.ak
                ? TPMCredentialActivation(
                    endorsementKey: f.endorsementKey, attestationKeyName: f.ecdsaName, secret: f.secret,
                    activatedSecret: f.activatedSecret)
                : nil
            let result = try TPMVerifier().verify(
                f.evidence(q),
                options: TPMVerificationOptions(
                    nonce: SWTPMQuotes.nonce, teeReportData: SWTPMQuotes.reportData(for: q.ak), credentialActivation: activation))
            let c = result.claims
            #expect(c.pcrs == [0, 1, 2, 3, 4, 5, 6, 7, 9])
            #expect(c.bank == "sha256")
            #expect(c.nonce.bytes == SWTPMQuotes.nonce)
            #expect(c.boundToTEEReport == true)
            #expect(c.boundToEndorsementKey == (activation == nil ? nil : true))
            for pcr in c.pcrs { #expect(c.pcrValues[String(pcr)] == replay.bank(.sha256)?.value(at: UInt32(pcr))) }
            // The event claims of this boot: one application in PCR 4 (the kernel), the initrd, Secure Boot off.
            #expect(c.boot.bootApplications.count == 1)
            #expect(c.boot.initrdSHA256 != nil && c.boot.commandLineSHA256 != nil)
            #expect(c.boot.secureBoot == false)
            #expect(c.boot.actions.contains("Exit Boot Services Invocation"))
            #expect(Set(result.checks.keys).isSuperset(of: ["quote_signature", "nonce", "pcr_digest_replay", "event_data", "ak_bound_to_tee_report"]))
            if q.ak == f.rsapss.ak {
                // tpm2_checkquote 5.4 rejects every RSA-PSS quote (salt handling), so pyca/cryptography checks this one.
                #expect(try f.checkPSSWithPython(q) == 0, "pyca/cryptography rejects the RSA-PSS quote cmk accepted")
            } else {
                #expect(try f.checkquote(q) == 0, "tpm2_checkquote rejects what cmk accepted")
            }
        }
    }

    @Test("a quote whose extraData is another request's nonce is rejected as tpm-nonce-mismatch, as by tpm2_checkquote",
          .timeLimit(.minutes(3)))
    func rejectsReplayedNonce() async throws {
        let f = try await fixture()
        let fresh = Array("the nonce of a newer request".utf8)
        expectRejected(.tpmNonceMismatch, f.evidence(f.ecdsa), TPMVerificationOptions(nonce: fresh))
        #expect(try f.checkquote(f.ecdsa, nonce: fresh) != 0)
    }

    @Test("a quote by a key whose digest is not in REPORT_DATA is rejected as tpm-ak-not-bound-to-report",
          .timeLimit(.minutes(3)))
    func rejectsKeyNotBoundToReport() async throws {
        let f = try await fixture()
        // The TEE vouched for the RSA AK; the quote comes from the ECDSA one.
        expectRejected(
            .tpmAKNotBoundToReport, f.evidence(f.ecdsa),
            TPMVerificationOptions(nonce: SWTPMQuotes.nonce, teeReportData: SWTPMQuotes.reportData(for: f.rsassa.ak)))
    }

    @Test("a quote presented with another AK fails its signature check (tpm-quote-signature-invalid)", .timeLimit(.minutes(3)))
    func rejectsQuoteUnderAnotherKey() async throws {
        let f = try await fixture()
        let swapped = TPMEvidence(quote: f.rsassa.quote, signature: f.rsassa.signature, attestationKey: f.rsapss.ak, eventLog: f.log)
        expectRejected(.tpmQuoteSignatureInvalid, swapped, TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
        var changed = f.ecdsa.quote
        changed[changed.count - 10] ^= 0x01  // inside the PCR digest
        expectRejected(
            .tpmQuoteSignatureInvalid,
            TPMEvidence(quote: changed, signature: f.ecdsa.signature, attestationKey: f.ecdsa.ak, eventLog: f.log),
            TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
    }

    @Test("an event log whose event data was edited after the fact is rejected as tpm-event-data-mismatch",
          .timeLimit(.minutes(3)))
    func rejectsEditedEventData() async throws {
        let f = try await fixture()
        let original = Array("Calling EFI Application from Boot Option".utf8)
        let edited = Array("Calling EFI Application from Boot Opti0n".utf8)
        var log = f.log
        let at = try #require((0...(log.count - original.count)).first { Array(log[$0..<($0 + original.count)]) == original })
        log.replaceSubrange(at..<(at + original.count), with: edited)
        expectRejected(.tpmEventDataMismatch, f.evidence(f.ecdsa, log: log), TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
    }

    @Test("an event log whose kernel digest was swapped no longer replays to the quote (tpm-pcr-digest-mismatch)",
          .timeLimit(.minutes(3)))
    func rejectsEditedDigest() async throws {
        let f = try await fixture()
        let parsed = try TCGEventLog(bytes: f.log)
        let kernel = try #require(parsed.events.first { $0.eventType == .efiBootServicesApplication }?.digest(for: .sha256))
        var log = f.log
        let at = try #require((0...(log.count - 32)).first { Array(log[$0..<($0 + 32)]) == kernel })
        log[at] ^= 0xFF
        expectRejected(.tpmPCRDigestMismatch, f.evidence(f.ecdsa, log: log), TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
    }

    @Test("every truncation of the quote, signature, AK and event log is refused with an AttestationError, never a crash",
          .timeLimit(.minutes(3)))
    func refusesTruncations() async throws {
        let f = try await fixture()
        let codes = try await offPool("tpm truncations") { () -> Set<String> in
            var codes: Set<String> = []
            func attempt(_ evidence: TPMEvidence) {
                do {
                    _ = try TPMVerifier().verify(evidence, options: TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
                    codes.insert("accepted")
                } catch {
                    codes.insert(error.code.name)
                }
            }
            let q = f.ecdsa
            for n in 0..<q.quote.count {
                attempt(TPMEvidence(quote: Array(q.quote.prefix(n)), signature: q.signature, attestationKey: q.ak, eventLog: f.log))
            }
            for n in 0..<q.signature.count {
                attempt(TPMEvidence(quote: q.quote, signature: Array(q.signature.prefix(n)), attestationKey: q.ak, eventLog: f.log))
            }
            for n in 0..<q.ak.count {
                attempt(TPMEvidence(quote: q.quote, signature: q.signature, attestationKey: Array(q.ak.prefix(n)), eventLog: f.log))
            }
            for n in stride(from: 0, to: f.log.count, by: 7) {
                attempt(TPMEvidence(quote: q.quote, signature: q.signature, attestationKey: q.ak, eventLog: Array(f.log.prefix(n))))
            }
            return codes
        }
        #expect(!codes.contains("accepted"))
        #expect(codes.isSubset(of: ["malformed-evidence", "tpm-pcr-digest-mismatch", "tpm-quote-signature-invalid", "tpm-ak-unsuitable"]),
                "\(codes)")
    }

    @Test("a quote taken after an extend the log does not show is rejected as tpm-pcr-digest-mismatch; tpm2_checkquote still accepts its signature",
          .timeLimit(.minutes(3)))
    func rejectsUnloggedExtend() async throws {
        let f = try await fixture()
        expectRejected(.tpmPCRDigestMismatch, f.evidence(f.extended), TPMVerificationOptions(nonce: SWTPMQuotes.nonce))
        #expect(try f.checkquote(f.extended) == 0)
    }

    @Test("cmk's MakeCredential is activated by the swtpm holding the EK, and binds the RSA-PSS AK to it",
          .timeLimit(.minutes(3)))
    func makeCredentialInteroperates() async throws {
        let f = try await fixture()
        #expect(f.cmkActivated == f.cmkChallenge.secret)
        let result = try TPMVerifier().verify(
            f.evidence(f.rsapss),
            options: TPMVerificationOptions(nonce: SWTPMQuotes.nonce, credentialActivation: f.cmkChallenge.activation(returned: f.cmkActivated)))
        #expect(result.claims.boundToEndorsementKey == true)
        #expect(result.claims.endorsementKeyDigest?.bytes == Array(SHA256.hash(data: Array(f.endorsementKey.dropFirst(2)))))
    }

    @Test("cmk's MakeCredential to an ECC (P-256) EK is activated by swtpm and binds the AK to that EK",
          .timeLimit(.minutes(3)))
    func makeCredentialToECCEndorsementKey() async throws {
        let f = try await fixture()
        #expect(f.cmkECCActivated == f.cmkECCChallenge.secret)
        let result = try TPMVerifier().verify(
            f.evidence(f.rsapss),
            options: TPMVerificationOptions(
                nonce: SWTPMQuotes.nonce, credentialActivation: f.cmkECCChallenge.activation(returned: f.cmkECCActivated)))
        #expect(result.claims.boundToEndorsementKey == true)
        #expect(result.claims.endorsementKeyDigest?.bytes == Array(SHA256.hash(data: Array(f.eccEndorsementKey.dropFirst(2)))))
    }

    @Test("the EK certificate from swtpm's local CA chains to the pinned vTPM root and certifies the activated EK; another key's certificate or a broken chain is tpm-ek-certificate-invalid",
          .timeLimit(.minutes(3)))
    func endorsementCertificate() async throws {
        let f = try await fixture()
        func options(_ certificate: [UInt8], roots: [AttestationCertificate]) -> TPMVerificationOptions {
            TPMVerificationOptions(
                nonce: SWTPMQuotes.nonce, credentialActivation: f.cmkChallenge.activation(returned: f.cmkActivated),
                endorsementRoots: roots, endorsementCertificate: certificate)
        }
        let result = try TPMVerifier().verify(f.evidence(f.rsapss), options: options(f.ekCertificate, roots: f.vtpmRoots))
        #expect(result.checks["ek_certificate"] != nil)
        expectRejected(.tpmEKCertificateInvalid, f.evidence(f.rsapss), options(f.eccEKCertificate, roots: f.vtpmRoots))
        expectRejected(.tpmEKCertificateInvalid, f.evidence(f.rsapss), options(f.ekCertificate, roots: [f.vtpmRoots[1]]))
        expectRejected(.tpmEKCertificateInvalid, f.evidence(f.rsapss), options(f.ekCertificate, roots: []))
    }

    @Test("a credential activation that returned another secret, or was made for another AK, is tpm-ak-not-bound-to-ek",
          .timeLimit(.minutes(3)))
    func rejectsFailedActivation() async throws {
        let f = try await fixture()
        var wrong = f.activatedSecret
        wrong[0] ^= 1
        expectRejected(
            .tpmAKNotBoundToEK, f.evidence(f.ecdsa),
            TPMVerificationOptions(
                nonce: SWTPMQuotes.nonce,
                credentialActivation: TPMCredentialActivation(
                    endorsementKey: f.endorsementKey, attestationKeyName: f.ecdsaName, secret: f.secret, activatedSecret: wrong)))
        expectRejected(
            .tpmAKNotBoundToEK, f.evidence(f.rsassa),
            TPMVerificationOptions(
                nonce: SWTPMQuotes.nonce,
                credentialActivation: TPMCredentialActivation(
                    endorsementKey: f.endorsementKey, attestationKeyName: f.ecdsaName, secret: f.secret,
                    activatedSecret: f.activatedSecret)))
    }

    @Test("cmk evidence verify --tpm: exit 0 with the claims in JSON; a wrong nonce exits 1 naming tpm-nonce-mismatch",
          .timeLimit(.minutes(3)))
    func commandLine() async throws {
        let f = try await fixture()
        let logPath = f.directory.appendingPathComponent("eventlog.bin").path
        try Data(f.log).write(to: URL(fileURLWithPath: logPath))
        let base = ["evidence", "verify", "--tpm", f.ecdsa.quotePath, "--sig", f.ecdsa.signaturePath, "--ak", f.ecdsa.akPath,
                    "--eventlog", logPath]
        let ok = try await offPool {
            try BuiltCMK.run(base + ["--nonce", Hex.encode(SWTPMQuotes.nonce), "--report-data",
                                     Hex.encode(SWTPMQuotes.reportData(for: f.ecdsa.ak)), "--json"])
        }
        #expect(ok.status == 0, "\(ok.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(ok.standardOutput.utf8)) as? [String: Any])
        #expect(json["valid"] as? Bool == true)
        let bad = try await offPool { try BuiltCMK.run(base + ["--nonce", "00", "--json"]) }
        #expect(bad.status == 1)
        #expect(bad.standardOutput.contains("tpm-nonce-mismatch"))
        let text = try await offPool { try BuiltCMK.run(base + ["--nonce", Hex.encode(SWTPMQuotes.nonce)]) }
        #expect(text.status == 0 && text.standardOutput.hasPrefix("VALID: TPM 2.0 quote"))
        let unreadable = try await offPool { try BuiltCMK.run(["evidence", "verify", "--tpm", "/nonexistent", "--sig", "x", "--ak", "y", "--eventlog", "z"]) }
        #expect(unreadable.status == 2)
    }

    /// A policy with a `tpm` section pinning the kernel, the initrd and Secure Boot off.
    static func policy(kernel: String, initrd: String) throws -> Policy {
        try PolicyLoader().load(text: """
            id: tpm-boot
            version: 1
            evidence: sev-snp
            trust:
              roots: [amd-milan]
              crl: soft
            freshness:
              report-data: nonce
            sev-snp:
              guest-policy:
                debug: forbidden
            tpm:
              kernel: [\(kernel)]
              initrd: [\(initrd)]
              secure-boot: false
              ak-bound-to-ek: false
            """)
    }

    @Test("a policy pinned to the booted kernel's Authenticode digest passes tpm.kernel; pinned to another kernel, it fails",
          .timeLimit(.minutes(3)))
    func policyPinsKernel() async throws {
        let f = try await fixture()
        let result = try TPMVerifier().verify(
            f.evidence(f.ecdsa),
            options: TPMVerificationOptions(nonce: SWTPMQuotes.nonce, teeReportData: SWTPMQuotes.reportData(for: f.ecdsa.ak)))
        let kernel = try #require(result.claims.boot.kernelAuthenticodeSHA256)
        let initrd = try #require(result.claims.boot.initrdSHA256)
        func outcomes(_ policy: Policy) -> [String: RuleStatus] {
            let input = AppraisalInput(
                evidenceType: "sev-snp", verification: .failure(AttestationError(.malformedEvidence, "no TEE report in this test")),
                evidenceDigest: "", context: AppraisalContext(evaluationTime: Date()), tpm: .success(result))
            return Dictionary(uniqueKeysWithValues: policy.evaluate(input).outcomes.map { ($0.rule, $0.status) })
        }
        let pinned = outcomes(try Self.policy(kernel: kernel.description, initrd: initrd.description))
        #expect(pinned["tpm.verified"] == .pass)
        #expect(pinned["tpm.kernel"] == .pass)
        #expect(pinned["tpm.initrd"] == .pass)
        #expect(pinned["tpm.secure-boot"] == .pass)
        #expect(pinned["tpm.ak-bound-to-tee"] == .pass)
        #expect(pinned["tpm.ak-bound-to-ek"] == .notChecked)
        let other = outcomes(try Self.policy(kernel: String(repeating: "ab", count: 32), initrd: initrd.description))
        #expect(other["tpm.kernel"] == .fail)
        #expect(other["tpm.initrd"] == .pass)
        // No vTPM evidence at all, under a policy that asks for it.
        let missing = try Self.policy(kernel: kernel.description, initrd: initrd.description).evaluate(AppraisalInput(
            evidenceType: "sev-snp", verification: .failure(AttestationError(.malformedEvidence, "none")), evidenceDigest: "",
            context: AppraisalContext(evaluationTime: Date())))
        #expect(missing.outcomes.first { $0.rule == "tpm.verified" }?.status == .fail)
    }
}
