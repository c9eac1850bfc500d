import Attestation
import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import PlatformSimulator
import SEVSNP
import Testing

@Suite("The simulated AMD secure processor's keys and certificates")
struct SimulatedAMDSecureProcessorTests {
    static func mode(_ url: URL) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? NSNumber).intValue
    }

    @Test("is generated once into a 0700 folder with 0600 keys, and loads again unchanged")
    func generatedOnceAndReloaded() throws {
        let shared = try SimulatedPlatformFixture.platform()
        #expect(shared.processor.wasGenerated)
        #expect(try Self.mode(shared.directory) == 0o700)
        for key in ["ark.key", "ask.key", "vcek.key"] {
            #expect(try Self.mode(shared.directory.appendingPathComponent(key)) == 0o600, "\(key)")
        }
        let again = try SimulatedAMDSecureProcessor(directory: shared.directory)
        #expect(!again.wasGenerated)
        #expect(
            again.ark == shared.processor.ark && again.ask == shared.processor.ask
                && again.vcek == shared.processor.vcek)
        #expect(again.configuration == shared.processor.configuration)
        #expect(again.chipID.count == 64 && !again.chipID.allSatisfy { $0 == 0 })
    }

    @Test("the chain has AMD's RSA-PSS parameters and key sizes, AMD's VCEK extensions, and says simulated everywhere")
    func certificatesFollowAMDsFormat() throws {
        let processor = try SimulatedPlatformFixture.platform().processor
        for certificate in [processor.ark, processor.ask, processor.vcek] {
            #expect(certificate.signatureAlgorithm == .rsaPSS(.amdSEV))
            #expect(certificate.subjectCommonName?.hasSuffix(" (cmk simulated)") == true)
            #expect(certificate.version == 3)
        }
        #expect(processor.ark.subjectCommonName == "ARK-Genoa (cmk simulated)")
        #expect(processor.ask.subjectCommonName == "SEV-Genoa (cmk simulated)")
        #expect(processor.vcek.subjectCommonName == "SEV-VCEK (cmk simulated)")
        #expect(try processor.ark.rsaKeyBits() == 4096 && processor.ask.rsaKeyBits() == 4096)
        #expect(try processor.vcek.rsaKeyBits() == nil)
        try AMDRootCertificates(product: .genoa, ark: processor.ark, ask: processor.ask, asvk: nil, simulated: true)
            .verify(at: Date())
        try processor.vcek.verifySignature(issuedBy: processor.ask, requiredAlgorithm: .rsaPSS(.amdSEV))
        let extensions = try VCEKExtensions(certificate: processor.vcek)
        #expect(extensions.structVersion == 0)
        #expect(extensions.productName == "Genoa-cmk-simulated")
        #expect(AMDProduct.fromCertificateProductName(extensions.productName) == .genoa)
        #expect(extensions.hardwareID == processor.chipID)
        #expect(extensions.tcb == processor.configuration.tcb)
        #expect(extensions.spl4 == 0 && extensions.fmcSPL == nil && extensions.cspID == nil)
        // The VCEK is valid for seven years from a day before generation, as KDS issues them.
        let vcekYears = processor.vcek.notAfter.timeIntervalSince(processor.vcek.notBefore) / (365.25 * 86_400)
        #expect(abs(vcekYears - 7) < 0.01)
    }

    @Test("openssl shows the PSS parameters and verifies ARK -> ASK -> VCEK")
    func opensslAgrees() throws {
        let directory = try SimulatedPlatformFixture.platform().directory
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        for name in ["ark.pem", "ask.pem", "vcek.pem"] {
            let text = try SimulatedPlatformFixture.openssl(["x509", "-in", path(name), "-noout", "-text"])
            #expect(text.status == 0, "\(text.standardError)")
            for line in [
                "Signature Algorithm: rsassaPss", "Hash Algorithm: sha384", "Mask Algorithm: mgf1 with sha384",
                "Salt Length: 0x30", "cmk simulated",
            ] {
                #expect(text.standardOutput.contains(line), "\(name): \(line)")
            }
        }
        let vcek = try SimulatedPlatformFixture.openssl(["x509", "-in", path("vcek.pem"), "-noout", "-text"])
        #expect(vcek.standardOutput.contains("ASN1 OID: secp384r1"))
        #expect(vcek.standardOutput.contains("1.3.6.1.4.1.3704.1.4"))
        #expect(vcek.standardOutput.contains("Genoa-cmk-simulated"))
        let verify = try SimulatedPlatformFixture.openssl([
            "verify", "-CAfile", path("ark.pem"), "-untrusted", path("ask.pem"), path("vcek.pem"),
        ])
        #expect(verify.status == 0, "\(verify.standardOutput) \(verify.standardError)")
        #expect(verify.standardOutput.contains("vcek.pem: OK"))
        // And a VCEK is not accepted under a root that did not issue it.
        let wrongRoot = try SimulatedPlatformFixture.openssl([
            "verify", "-CAfile", SharedVectors.url("snp/roots/genoa_ark.pem").path, "-untrusted", path("ask.pem"),
            path("vcek.pem"),
        ])
        #expect(wrongRoot.status != 0)
    }

    @Test("a private key that group or others can read is refused, whichever key it is")
    func readableKeyRefused() throws {
        for key in ["ark.key", "ask.key", "vcek.key"] {
            let copy = try SimulatedPlatformFixture.copyOfPlatform()
            _ = try SimulatedAMDSecureProcessor(directory: copy)  // the copy itself loads
            try FileManager.default.setAttributes(
                [.posixPermissions: 0o644], ofItemAtPath: copy.appendingPathComponent(key).path)
            let error = try #require(throws: PlatformSimulatorError.self) {
                try SimulatedAMDSecureProcessor(directory: copy)
            }
            #expect(error.code == .insecureKeyFile, "\(key): \(error)")
            #expect(error.reason.contains("chmod 600"))
        }
    }

    @Test("a folder others may write is refused; so is a key that is not its certificate's")
    func tamperedStateRefused() throws {
        let writable = try SimulatedPlatformFixture.copyOfPlatform()
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: writable.path)
        #expect { try SimulatedAMDSecureProcessor(directory: writable) } throws: {
            ($0 as? PlatformSimulatorError)?.code == .stateFolder
        }

        let swapped = try SimulatedPlatformFixture.copyOfPlatform()
        let ark = swapped.appendingPathComponent("ark.key"), ask = swapped.appendingPathComponent("ask.key")
        let arkBytes = try Data(contentsOf: ark)
        try Data(contentsOf: ask).write(to: ark)
        try arkBytes.write(to: ask)
        for url in [ark, ask] {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        }
        #expect { try SimulatedAMDSecureProcessor(directory: swapped) } throws: {
            ($0 as? PlatformSimulatorError)?.code == .inconsistentState
        }

        let missing = try SimulatedPlatformFixture.copyOfPlatform()
        try FileManager.default.removeItem(at: missing.appendingPathComponent("vcek.pem"))
        #expect { try SimulatedAMDSecureProcessor(directory: missing) } throws: {
            ($0 as? PlatformSimulatorError)?.code == .inconsistentState
        }
    }

    @Test("generation time is measured and stays within a minute", .timeLimit(.minutes(4)))
    func generationTime() throws {
        let shared = try SimulatedPlatformFixture.platform()
        #expect(shared.generationSeconds < 60)
    }
}

@Suite("The simulated platform keeps its secrets out of logs")
struct SimulatedPlatformSecretTests {
    @Test("printing or dumping the platform and a launch shows no private key")
    func noKeyInOutput() throws {
        let shared = try SimulatedPlatformFixture.platform()
        let launch = try shared.processor.launch(try SimulatedPlatformFixture.launchInputs())
        var dumped = ""
        dump(shared.processor, to: &dumped)
        dump(launch, to: &dumped)
        let printed = "\(shared.processor) \(launch) \(String(reflecting: shared.processor)) " + dumped
        let vcekKey = try String(contentsOf: shared.directory.appendingPathComponent("vcek.key"), encoding: .utf8)
        let body = vcekKey.split(separator: "\n").dropFirst().dropLast().joined()
        let scalar = try P384.Signing.PrivateKey(pemRepresentation: vcekKey).rawRepresentation
        // Neither the PEM nor the scalar (hex, or the decimal bytes an array dump would show) appears.
        #expect(!printed.contains(String(body.prefix(40))))
        #expect(!printed.contains(Hex.encode(Array(scalar))))
        #expect(!printed.contains(Array(scalar.prefix(6)).map(String.init).joined(separator: "\n")))
        #expect(!printed.contains("PRIVATE KEY"))
        #expect(printed.contains("simulated"))
    }
}
