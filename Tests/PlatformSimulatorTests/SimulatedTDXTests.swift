import Attestation
import BinaryFormat
import CMKTesting
import Crypto
import EventLog
import Foundation
import GuestProtocol
import PlatformSimulator
import SEVSNP
import TDX
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("The simulated TDX module: keys, certificates and collateral")
struct SimulatedTDXModuleTests {
    static func mode(_ url: URL) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    static let keyFiles = ["root.key", "pck-ca.key", "pck.key", "tcb-signing.key", "attestation.key"]

    @Test("generated once: folder 0700, every key 0600, and a second open loads the same platform")
    func persistsAndReloads() throws {
        let shared = try SimulatedTDXFixture.platform()
        #expect(shared.module.wasGenerated)
        #expect(try Self.mode(shared.directory) == 0o700)
        for key in Self.keyFiles {
            #expect(try Self.mode(shared.directory.appendingPathComponent(key)) == 0o600, "\(key)")
        }
        for file in ["root.pem", "pck-ca.pem", "pck.pem", "tcb-signing.pem", "anchors.json", "platform.json"] {
            #expect(try Self.mode(shared.directory.appendingPathComponent(file)) == 0o644, "\(file)")
        }
        let again = try SimulatedTDXModule(directory: shared.directory)
        #expect(!again.wasGenerated)
        #expect(again.configuration == shared.module.configuration)
        #expect(again.root.der == shared.module.root.der && again.pck.der == shared.module.pck.der)
        #expect(again.attestationPublicKey == shared.module.attestationPublicKey)
        // The keys are never printed.
        let dump = String(reflecting: again) + "\(again)"
        for key in Self.keyFiles {
            let text = try String(contentsOf: shared.directory.appendingPathComponent(key), encoding: .utf8)
            let body = text.split(separator: "\n").dropFirst().first.map(String.init) ?? "?"
            #expect(!dump.contains(body))
        }
    }

    @Test("every name says cmk simulated, none is Intel's, and the manifest names simulated-intel")
    func namesSaySimulated() throws {
        let module = try SimulatedTDXFixture.platform().module
        for certificate in [module.root, module.pckCA, module.pck, module.tcbSigning] {
            let name = try #require(certificate.subjectCommonName)
            #expect(name.hasSuffix(" (cmk simulated)") && !name.contains("Intel"), "\(name)")
            // The organization (a UTF8String, so its bytes appear as they are in the DER) says what it is not.
            #expect(
                String(decoding: certificate.der, as: UTF8.self).contains("cmk simulated platform (not Intel hardware)")
            )
        }
        let manifest = try JSONDecoder().decode(
            TrustAnchorStore.Manifest.self,
            from: Data(contentsOf: module.directory.appendingPathComponent("anchors.json")))
        #expect(
            manifest.anchors.map(\.root) == ["simulated-intel"] && manifest.anchors.allSatisfy { $0.simulated == true })
        let store = try SimulatedTDXFixture.storeWithSimulatedRoot()
        #expect(store.isSimulated(root: "simulated-intel"))
        #expect(store.simulatedIntelRoot()?.der == module.root.der)
        #expect(try store.intelSGXRoot().subjectCommonName == "Intel SGX Root CA")
        // The AMD and Intel simulated folders of one installation load side by side; the same one twice does not.
        let both = try store.adding(simulatedDirectory: try SimulatedPlatformFixture.platform().directory)
        #expect(both.simulatedAMDRoots(.genoa) != nil && both.simulatedIntelRoot() != nil)
        #expect(throws: AttestationError.self) { try store.adding(simulatedDirectory: module.directory) }
    }

    @Test("the PCK certificate carries Intel's SGX extension with the platform's identity")
    func pckExtension() throws {
        let module = try SimulatedTDXFixture.platform().module
        let sgx = try PCKExtensions(certificate: module.pck)
        typealias I = SimulatedTDXModule.Identity
        #expect(sgx.fmspc.bytes == I.fmspc && sgx.pceID.bytes == I.pceID && sgx.sgxType == 1)
        #expect(sgx.sgxTCBComponents == I.sgxTCBComponents && sgx.pceSVN == I.pceSVN && sgx.cpuSVN.bytes == I.cpuSVN)
        #expect(sgx.ppid == module.configuration.ppid)
        #expect(sgx.platformInstanceID == module.configuration.platformInstanceID)
        #expect(sgx.dynamicPlatform == false && sgx.cachedKeys == true && sgx.smtEnabled == false)
    }

    @Test("a key file others may read, a swapped key or a missing certificate is refused")
    func refusesBadState() throws {
        let source = try SimulatedTDXFixture.platform().directory
        func copy() throws -> URL {
            let folder = try SimulatedPlatformFixture.temporaryFolder("tdx-copy").appendingPathComponent("intel")
            try FileManager.default.copyItem(at: source, to: folder)
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: folder.path)
            return folder
        }
        for key in Self.keyFiles {
            let folder = try copy()
            try FileManager.default.setAttributes(
                [.posixPermissions: 0o644], ofItemAtPath: folder.appendingPathComponent(key).path)
            #expect(throws: PlatformSimulatorError.self) { try SimulatedTDXModule(directory: folder) }
            do {
                _ = try SimulatedTDXModule(directory: folder)
            } catch {
                #expect(error.code == .insecureKeyFile, "\(key): \(error)")
            }
        }
        let swapped = try copy()
        let pck = swapped.appendingPathComponent("pck.key")
        let ca = swapped.appendingPathComponent("pck-ca.key")
        let pckText = try Data(contentsOf: pck)
        try Data(contentsOf: ca).write(to: pck)
        try pckText.write(to: ca)
        for url in [pck, ca] {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        }
        do {
            _ = try SimulatedTDXModule(directory: swapped)
            Issue.record("a platform with swapped keys loaded")
        } catch {
            #expect(error.code == .inconsistentState)
        }
        let missing = try copy()
        try FileManager.default.removeItem(at: missing.appendingPathComponent("pck.pem"))
        #expect(throws: PlatformSimulatorError.self) { try SimulatedTDXModule(directory: missing) }
    }

    @Test("the collateral parses as Intel's: TCB Info TDX v3, QE Identity TD_QE v2, signatures over the exact bodies")
    func collateralFormat() throws {
        let module = try SimulatedTDXFixture.platform().module
        let now = Date()
        let collateral = try module.collateral(at: now)
        let tcbInfo = try TDXTCBInfo(json: try #require(collateral.tcbInfoJSON))
        #expect(tcbInfo.id == "TDX" && tcbInfo.version == 3 && tcbInfo.fmspc == SimulatedTDXModule.Identity.fmspc)
        #expect(tcbInfo.moduleIdentity(majorVersion: 1)?.id == "TDX_01")
        #expect(tcbInfo.checkValidity(at: now).isValid)
        #expect(!tcbInfo.checkValidity(at: now.addingTimeInterval(31 * 86_400)).isValid)
        let signer = try P256.Signing.PublicKey(derRepresentation: module.tcbSigning.subjectPublicKeyInfo)
        #expect(tcbInfo.isSignatureValid(publicKey: signer))
        let qe = try TDXQEIdentity(json: try #require(collateral.qeIdentityJSON))
        #expect(qe.id == "TD_QE" && qe.version == 2 && qe.isSignatureValid(publicKey: signer))
        // The signature covers the body's exact bytes: one changed digit in the body breaks it.
        var json = try #require(collateral.tcbInfoJSON)
        let index = try #require(json.firstIndex(of: UInt8(ascii: "3")))
        json[index] = UInt8(ascii: "4")
        if let altered = try? TDXTCBInfo(json: json) { #expect(!altered.isSignatureValid(publicKey: signer)) }
        // The CRLs are signed by their issuers and list nothing.
        try #require(collateral.rootCACRL).verify(issuedBy: module.root, at: now, requiredAlgorithm: .ecdsaWithSHA256)
        try #require(collateral.pckCRL).verify(issuedBy: module.pckCA, at: now, requiredAlgorithm: .ecdsaWithSHA256)
        #expect(collateral.pckCRL?.revokedSerialNumbers.isEmpty == true)
        // Written to a folder, it reads back as a collateral folder.
        let folder = try SimulatedPlatformFixture.temporaryFolder("tdx-collateral")
        try module.writeCollateral(to: folder, at: now)
        let read = try TDXCollateral(directory: folder)
        #expect(read.tcbInfoIssuerChain.map(\.der) == [module.tcbSigning.der, module.root.der])
        #expect(read.pckCRL != nil && read.rootCACRL != nil)
    }
}

@Suite("Simulated TDX quotes, verified by the real TDXVerifier")
struct SimulatedTDXQuoteTests {
    static func reportData() -> [UInt8] { (0..<64).map { _ in UInt8.random(in: 0...255) } }

    static func verify(
        _ quote: [UInt8], store: TrustAnchorStore? = nil, collateral: TDXCollateral? = nil, at time: Date = Date()
    ) throws -> TDXVerificationResult {
        let anchors = try store ?? SimulatedTDXFixture.storeWithSimulatedRoot()
        let chosen = try collateral ?? SimulatedTDXFixture.platform().module.collateral(at: time)
        return try TDXVerifier(trustAnchors: anchors).verify(
            try TDXQuote(bytes: quote), collateral: chosen, options: TDXVerificationOptions(evaluationTime: time))
    }

    @Test("a quote verifies end to end: every check passes, TCB UpToDate, and the claims say simulated")
    func verifiesEndToEnd() throws {
        let launch = try SimulatedTDXFixture.launch()
        let data = Self.reportData()
        var quote: [UInt8] = []
        let generation = ContinuousClock().measure { quote = (try? launch.quote(reportData: data)) ?? [] }
        let parsed = try TDXQuote(bytes: quote)
        #expect(parsed.version == 4 && parsed.attestationKeyType == 2 && parsed.teeType == 0x81)
        #expect(parsed.qeVendorID == TDXQuote.intelQEVendorID && parsed.trailingBytes == 0)

        let anchors = try SimulatedTDXFixture.storeWithSimulatedRoot()
        let verifier = TDXVerifier(trustAnchors: anchors)
        let prepared = try verifier.prepare(try SimulatedTDXFixture.platform().module.collateral())
        let options = TDXVerificationOptions(evaluationTime: Date(), revocation: .hard)
        var result = try verifier.verify(parsed, prepared: prepared, options: options)
        #expect(result.valid, "\(result.failures)")
        #expect(result.failures.isEmpty)
        #expect(result.checks.count == TDXCheck.allCases.count, "\(result.checks.keys.sorted())")
        #expect(result.tcbStatus == "UpToDate" && result.qeTCBStatus == "UpToDate" && result.advisoryIDs.isEmpty)
        let claims = result.claims
        #expect(claims.simulated && claims.trustAnchor == "simulated-intel")
        #expect(claims.reportData.bytes == data)
        #expect(claims.mrConfigID.bytes == [UInt8](repeating: 0x22, count: 48))
        #expect(!claims.debug && claims.tdAttributeFlags == ["SEPT_VE_DISABLE"] && claims.xfam == 0x602E7)
        #expect(claims.mrTD.bytes == launch.mrTD && claims.rtmrs.map(\.bytes) == launch.rtmrs)
        #expect(claims.fmspc?.bytes == SimulatedTDXModule.Identity.fmspc)
        // The claims survive a round trip through JSON, the simulated mark included.
        let decoded = try JSONDecoder().decode(TDXClaims.self, from: JSONEncoder().encode(claims))
        #expect(decoded == claims && decoded.simulated)

        // Timing: a cold verification (chain parsed), then warm ones (chain cached), as the coordinator sees them.
        let warm = ContinuousClock().measure {
            for _ in 0..<20 { result = (try? verifier.verify(parsed, prepared: prepared, options: options)) ?? result }
        }
        let cold = ContinuousClock().measure {
            _ = try? TDXVerifier(trustAnchors: anchors).verify(
                parsed, collateral: try? SimulatedTDXFixture.platform().module.collateral(), options: options)
        }
        print(
            String(
                format: "simulated TDX: quote of %d bytes generated in %.2f ms; verified in %.2f ms cold (collateral "
                    + "prepared, chain parsed), %.2f ms warm", quote.count, SimulatedTDXQuoteTests.ms(generation),
                SimulatedTDXQuoteTests.ms(cold), SimulatedTDXQuoteTests.ms(warm) / 20))
    }

    static func ms(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    @Test("MRTD is what `cmk measure tdx` computes for the same OVMF, and MRCONFIGID is the launch's")
    func mrtdMatchesMeasure() throws {
        let launch = try SimulatedTDXFixture.launch()
        let output = try BuiltCMK.run(["measure", "tdx", "--firmware", SimulatedTDXFixture.firmwarePath])
        #expect(output.status == 0, "\(output.standardError)")
        #expect(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == Hex.encode(launch.mrTD))
        let quote = try TDXQuote(bytes: try launch.quote(reportData: Self.reportData()))
        #expect(quote.body.mrTD == launch.mrTD)
        #expect(quote.body.mrConfigID == launch.inputs.mrConfigID)
    }

    @Test("one flipped byte fails exactly the check that covers it")
    func flippedBytes() throws {
        let launch = try SimulatedTDXFixture.launch()
        let quote = try launch.quote(reportData: Self.reportData())
        let parsed = try TDXQuote(bytes: quote)
        let signatureData = TDXQuote.Layout.headerSize + TDXQuote.Layout.td10BodySize + 4
        let qeReport = signatureData + 64 + 64 + 2 + 4
        typealias QE = TDXQuote.QEReport.Layout
        let cases: [(what: String, offset: Int, failed: [TDXCheck])] = [
            (
                "a byte of MRTD in the body", TDXQuote.Layout.headerSize + TDXQuote.TDReport.Layout.mrTD,
                [.quoteSignature]
            ),
            (
                "a byte of REPORTDATA", TDXQuote.Layout.headerSize + TDXQuote.TDReport.Layout.reportData + 5,
                [.quoteSignature]
            ),
            ("the header's user data (QE_ID)", TDXQuote.Layout.userData, [.quoteSignature]),
            ("the quote signature", signatureData + 10, [.quoteSignature]),
            ("the attestation key", signatureData + 64 + 3, [.quoteSignature, .qeReportDataBinding]),
            ("the QE report's MRENCLAVE", qeReport + QE.mrEnclave, [.qeReportSignature]),
            ("the QE report's REPORTDATA", qeReport + QE.reportData, [.qeReportSignature, .qeReportDataBinding]),
            ("the QE report's MRSIGNER", qeReport + QE.mrSigner, [.qeReportSignature, .qeIdentityMatch]),
            ("the QE report signature", qeReport + 384 + 7, [.qeReportSignature]),
            ("the QE auth data", qeReport + 384 + 64 + 2 + 1, [.qeReportDataBinding]),
        ]
        #expect(parsed.qeReport.mrEnclave == SimulatedTDXModule.Identity.qeMREnclave)
        for entry in cases {
            var bytes = quote
            bytes[entry.offset] ^= 0x01
            let result = try Self.verify(bytes)
            #expect(!result.valid, "\(entry.what)")
            let failed = Set(result.failures.keys)
            let expected = Set(entry.failed.map(\.name) + ["signature_chain_valid"])
            #expect(failed == expected, "\(entry.what): \(result.failures)")
        }
    }

    @Test("collateral signed under another installation's root fails its signing chains and CRLs")
    func collateralFromAnotherRoot() throws {
        let other = try SimulatedTDXModule(
            directory: try SimulatedPlatformFixture.temporaryFolder("other-intel").appendingPathComponent("intel"))
        let launch = try SimulatedTDXFixture.launch()
        let quote = try launch.quote(reportData: Self.reportData())
        let result = try Self.verify(quote, collateral: try other.collateral())
        #expect(!result.valid)
        for check: TDXCheck in [.tcbInfoSigningChain, .qeIdentitySigningChain, .rootCACRLSignature, .pckCRLSignature] {
            #expect(result.outcome(of: check) == false, "\(check): \(result.failures)")
        }
        #expect(result.outcome(of: .quoteSignature) == true && result.outcome(of: .pckChainSignatures) == true)
        // And a quote from the other installation does not anchor in this installation's root.
        let foreign = try other.launch(try SimulatedTDXFixture.launchInputs()).quote(reportData: Self.reportData())
        let anchored = try Self.verify(foreign)
        #expect(anchored.outcome(of: .pckChainAnchoredToTrustedRoot) == false)
        #expect(!anchored.valid)
    }

    @Test("without the simulated folder the verifier refuses the quote: untrusted-root")
    func simulatedRootNotLoaded() throws {
        let quote = try TDXQuote(bytes: try SimulatedTDXFixture.launch().quote(reportData: Self.reportData()))
        let pinned = try TrustAnchorStore(directory: SharedVectors.attestationDirectory)
        let verifier = TDXVerifier(trustAnchors: pinned)
        do {
            _ = try verifier.verify(
                quote, collateral: nil, options: TDXVerificationOptions(evaluationTime: Date()))
            Issue.record("a simulated quote verified without the simulated root")
        } catch {
            #expect(error.code == .untrustedRoot, "\(error)")
            #expect(error.reason.contains("simulated"))
        }
        #expect(throws: AttestationError.self) {
            try verifier.prepare(try SimulatedTDXFixture.platform().module.collateral())
        }
        // The SEV-SNP simulated folder alone does not make the TDX root trusted either.
        let amdOnly = try SimulatedPlatformFixture.storeWithSimulatedRoots()
        #expect(throws: AttestationError.self) {
            try TDXVerifier(trustAnchors: amdOnly).verify(
                quote, collateral: nil, options: TDXVerificationOptions(evaluationTime: Date()))
        }
    }

    @Test("Intel's real quotes verify as before under a store that also holds the simulated root")
    func realVectorsUnchanged() throws {
        let bytes = try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")
        let folder = SharedVectors.url("tdx/dcapqvl-v4-uptodate")
        let expected = try SharedVectors.json("tdx/dcapqvl-v4-uptodate/expected.json")
        let time = try #require((expected["eval_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let result = try TDXVerifier(trustAnchors: try SimulatedTDXFixture.storeWithSimulatedRoot()).verify(
            try TDXQuote(bytes: bytes), collateral: try TDXCollateral(directory: folder),
            options: TDXVerificationOptions(evaluationTime: time))
        #expect(result.valid && result.tcbStatus == "UpToDate")
        #expect(!result.claims.simulated && result.claims.trustAnchor == "intel-sgx-root")
    }

    @Test("the event log parses as a CCEL log and replays to the quote's RTMRs; each input moves only its RTMR")
    func eventLogReplays() throws {
        let launch = try SimulatedTDXFixture.launch()
        let quote = try TDXQuote(bytes: try launch.quote(reportData: Self.reportData()))
        let log = try TCGEventLog(bytes: launch.eventLog)
        #expect(log.algorithms == [.sha384])
        #expect(log.events.map(\.pcrIndex) == [2, 2, 2, 3, 3, 2, 2])
        #expect(
            log.events.map(\.eventType) == [
                .efiBootServicesApplication, .efiAction, .separator, .eventTag, .eventTag, .efiAction, .efiAction,
            ])
        let replayed = try TDXMeasurementRegisters(log: log)
        #expect(replayed.rtmrs.map(\.bytes) == quote.body.rtmrs)
        #expect(quote.body.rtmrs[0] == [UInt8](repeating: 0, count: 48) && quote.body.rtmrs[1] != quote.body.rtmrs[0])
        // The initrd is measured as the Linux EFI stub does: SHA-384 of its bytes, tagged "Linux initrd".
        let initrd = try #require(launch.inputs.initrd)
        #expect(log.events[4].digest(for: .sha384) == Array(SHA384.hash(data: initrd)))
        #expect(log.events[4].eventData.suffix(13) == Array("Linux initrd\0".utf8))

        var changedInitrd = initrd
        changedInitrd[100] ^= 1
        let other = try SimulatedTDXFixture.platform().module.launch(
            try SimulatedTDXFixture.launchInputs(initrd: changedInitrd))
        #expect(other.rtmrs[1] == launch.rtmrs[1] && other.rtmrs[2] != launch.rtmrs[2] && other.mrTD == launch.mrTD)
        var changedKernel = launch.inputs.kernel
        changedKernel[changedKernel.count / 2] ^= 1
        let otherKernel = try SimulatedTDXFixture.platform().module.launch(
            try SimulatedTDXFixture.launchInputs(kernel: changedKernel))
        #expect(otherKernel.rtmrs[1] != launch.rtmrs[1] && otherKernel.rtmrs[2] == launch.rtmrs[2])
        // A debug TD is not a launch the simulated module starts.
        #expect(throws: PlatformSimulatorError.self) {
            try SimulatedTDXFixture.platform().module.launch(
                try SimulatedTDXFixture.launchInputs(tdAttributes: 0x1000_0001))
        }
    }

    @Test("Python's cryptography verifies the quote and QE report signatures, the PCK chain and the RTMR replay")
    func independentCheck() throws {
        let launch = try SimulatedTDXFixture.launch()
        let module = try SimulatedTDXFixture.platform().module
        let folder = try SimulatedPlatformFixture.temporaryFolder("tdx-python")
        try Data(try launch.quote(reportData: Self.reportData())).write(to: folder.appendingPathComponent("quote.bin"))
        try Data(launch.eventLog).write(to: folder.appendingPathComponent("ccel.bin"))
        try Data(PEMText.certificate(module.root.der).utf8).write(to: folder.appendingPathComponent("root.pem"))
        let script = #"""
            import hashlib, struct, sys
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
            d = sys.argv[1]
            q = open(d + "/quote.bin", "rb").read()
            signed = q[:0x278]
            sd = q[0x27C:]
            def verify(pub, sig, msg):
                pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), msg, ec.ECDSA(hashes.SHA256()))
            ak = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + sd[64:128])
            verify(ak, sd[:64], signed)
            cert = sd[134:]
            qe_report, qe_sig = cert[:384], cert[384:448]
            auth_len = struct.unpack_from("<H", cert, 448)[0]
            auth = cert[450:450 + auth_len]
            assert qe_report[320:352] == hashlib.sha256(sd[64:128] + auth).digest() and qe_report[352:384] == bytes(32)
            ctype, csize = struct.unpack_from("<HI", cert, 450 + auth_len)
            assert ctype == 5
            pem = cert[456 + auth_len:456 + auth_len + csize]
            assert pem.endswith(b"\0")
            chain = x509.load_pem_x509_certificates(pem.rstrip(b"\0"))
            root = x509.load_pem_x509_certificate(open(d + "/root.pem", "rb").read())
            assert chain[2] == root
            for child, parent in ((chain[0], chain[1]), (chain[1], chain[2]), (chain[2], chain[2])):
                child.verify_directly_issued_by(parent)
            verify(chain[0].public_key(), qe_sig, qe_report)
            log = open(d + "/ccel.bin", "rb").read()
            off = 32 + struct.unpack_from("<I", log, 28)[0]
            rtmr = [bytes(48)] * 4
            while off < len(log):
                mr, typ, count, alg = struct.unpack_from("<IIIH", log, off)
                assert count == 1 and alg == 0x0C
                digest = log[off + 14:off + 62]
                size = struct.unpack_from("<I", log, off + 62)[0]
                rtmr[mr - 1] = hashlib.sha384(rtmr[mr - 1] + digest).digest()
                off += 66 + size
            body = q[0x30:0x278]
            assert [body[328 + 48 * i:376 + 48 * i] for i in range(4)] == rtmr
            print("ok", chain[0].subject.rfc4514_string())
            """#
        let output = try ExternalTool.run(ExternalTool.python, ["-c", script, folder.path])
        #expect(output.status == 0, "\(output.standardError)")
        #expect(output.standardOutput.hasPrefix("ok "))
        #expect(output.standardOutput.contains("SGX PCK Certificate (cmk simulated)"))
    }

    @Test("cmk evidence verify --tdx says SIMULATED with the simulated folder, and refuses the quote without it")
    func commandLine() throws {
        let module = try SimulatedTDXFixture.platform().module
        let folder = try SimulatedPlatformFixture.temporaryFolder("tdx-cli")
        let quote = folder.appendingPathComponent("quote.bin")
        try Data(try SimulatedTDXFixture.launch().quote(reportData: Self.reportData())).write(to: quote)
        let collateral = folder.appendingPathComponent("collateral")
        try module.writeCollateral(to: collateral)
        let arguments = ["evidence", "verify", "--tdx", quote.path, "--collateral", collateral.path]
        let verified = try BuiltCMK.run(arguments + ["--simulated", module.directory.path])
        #expect(verified.status == 0, "\(verified.standardOutput)\(verified.standardError)")
        let first = verified.standardOutput.split(separator: "\n").first ?? ""
        #expect(first.hasPrefix("VALID: TDX quote v4, TCB status UpToDate"))
        #expect(first.contains("SIMULATED platform (simulated-intel): no hardware isolation"))
        #expect(verified.standardOutput.contains("root         simulated-intel (SIMULATED, not Intel)"))
        let json = try BuiltCMK.run(arguments + ["--simulated", module.directory.path, "--json"])
        #expect(
            json.standardOutput.contains("\"simulated\":true") || json.standardOutput.contains("\"simulated\" : true"))
        let refused = try BuiltCMK.run(arguments)
        #expect(refused.status != 0)
        #expect((refused.standardOutput + refused.standardError).contains("simulated"))
    }

    @Test("the platform service answers a TDX quote request over a real socket with the quote and the event log")
    func serviceAnswers() throws {
        let launch = try SimulatedTDXFixture.launch()
        let path = "/tmp/cmk-tdx-platform-\(UInt32.random(in: 0...UInt32.max)).sock"
        let service = try SimulatedPlatformService(socketPath: path, launch: launch)
        defer { service.stop() }
        let data = Self.reportData()
        let answers = try PlatformSocketClient.exchange(
            path: path, messages: [.tdxQuoteRequest(reportData: data), .snpReportRequest(reportData: data, vmpl: 0)])
        guard answers.count == 2, case .tdxQuoteResponse(let quote, let eventLog) = answers[0] else {
            Issue.record("expected a TDX quote response, got \(answers)")
            return
        }
        #expect(try TDXQuote(bytes: quote).body.reportData == data)
        #expect(eventLog == launch.eventLog)
        guard case .failure(let reason) = answers[1] else {
            Issue.record("an SEV-SNP request to the TDX module was answered with \(answers[1])")
            return
        }
        #expect(reason.contains("TDX"))
    }
}

/// PEM text for a test's files.
enum PEMText {
    static func certificate(_ der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN CERTIFICATE-----\n\(base64)\n-----END CERTIFICATE-----\n"
    }
}

/// A blocking client of the platform socket, run on its own thread (never on the cooperative pool).
enum PlatformSocketClient {
    static func exchange(path: String, messages: [GuestMessage]) throws -> [GuestMessage] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(connected == 0)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        for message in messages {
            let bytes = message.encoded()
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try #require(sent == bytes.count)
        }
        var decoder = GuestFrameDecoder()
        var answers: [GuestMessage] = []
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while answers.count < messages.count {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            decoder.append(buffer[0..<count])
            while let message = try decoder.next() { answers.append(message) }
        }
        return answers
    }
}
