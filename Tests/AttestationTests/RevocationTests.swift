@testable import Attestation
import CMKTesting
import Foundation
import SEVSNP
import Testing

/// A throwaway RSA-PSS certificate authority made with the openssl command-line tool: an independent
/// implementation produces the CRLs that cmk must read and check.
struct OpenSSLTestAuthority {
    let folder: URL
    let root: AttestationCertificate
    let intermediate: AttestationCertificate

    static func run(_ arguments: [String], in folder: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = folder
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        guard process.terminationStatus == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "openssl \(arguments.joined(separator: " ")): \(message)"])
        }
    }

    static let pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:48", "-sigopt", "rsa_mgf1_md:sha384"]

    init() throws {
        let fm = FileManager.default
        folder = fm.temporaryDirectory.appendingPathComponent("cmk-ca-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        try Self.run(
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ark.key", "-out", "ark.pem", "-subj", "/CN=ARK-Test",
             "-days", "30", "-sha384", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"] + Self.pss, in: folder)
        try Self.run(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ask.key", "-out", "ask.csr", "-subj", "/CN=SEV-Test"], in: folder)
        try Self.run(
            ["x509", "-req", "-in", "ask.csr", "-CA", "ark.pem", "-CAkey", "ark.key", "-set_serial", "0x10001", "-days", "30",
             "-sha384", "-out", "ask.pem"] + Self.pss, in: folder)
        try "".write(to: folder.appendingPathComponent("index.txt"), atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = test
            [test]
            database = index.txt
            crlnumber = crlnumber
            default_md = sha384
            default_crl_days = 7
            """.write(to: folder.appendingPathComponent("ca.cnf"), atomically: true, encoding: .utf8)
        try "1000\n".write(to: folder.appendingPathComponent("crlnumber"), atomically: true, encoding: .utf8)
        root = try AttestationCertificate(pem: String(contentsOf: folder.appendingPathComponent("ark.pem"), encoding: .utf8))
        intermediate = try AttestationCertificate(pem: String(contentsOf: folder.appendingPathComponent("ask.pem"), encoding: .utf8))
    }

    /// Writes a CRL (DER) listing `revoked` serials (hex), signed by the root with RSA-PSS SHA-384 salt 48.
    func crl(revoking revoked: [String], extra: [String] = []) throws -> [UInt8] {
        let index = revoked.map { "R\t300101000000Z\t240101000000Z\t\($0)\tunknown\t/CN=revoked" }.joined(separator: "\n")
        try (index.isEmpty ? "" : index + "\n").write(to: folder.appendingPathComponent("index.txt"), atomically: true, encoding: .utf8)
        try Self.run(
            ["ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ark.key", "-cert", "ark.pem", "-out", "crl.pem"] + Self.pss + extra,
            in: folder)
        try Self.run(["crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der"], in: folder)
        return [UInt8](try Data(contentsOf: folder.appendingPathComponent("crl.der")))
    }

    func remove() { try? FileManager.default.removeItem(at: folder) }
}

@Suite("Revocation: CRLs made by openssl, read and checked by cmk", .serialized)
struct RevocationTests {
    @Test("a PSS-signed CRL parses, verifies under its root only, and lists the revoked serials")
    func crlParsesAndVerifies() throws {
        let ca = try OpenSSLTestAuthority()
        defer { ca.remove() }
        let crl = try CertificateRevocationList(der: ca.crl(revoking: ["010001", "2A"]))
        #expect(crl.revokedSerialNumbers == [[0x01, 0x00, 0x01], [0x2A]])
        #expect(crl.signatureAlgorithm == .rsaPSS(.amdSEV))
        try crl.verify(issuedBy: ca.root, at: Date(), requiredAlgorithm: .rsaPSS(.amdSEV))
        #expect(crl.isRevoked(ca.intermediate))
        #expect { try crl.verify(issuedBy: ca.intermediate, at: Date()) } throws: { ($0 as? AttestationError)?.code == .crlInvalid }
        #expect { try crl.verify(issuedBy: ca.root, at: Date().addingTimeInterval(8 * 86400)) } throws: {
            ($0 as? AttestationError)?.code == .crlInvalid
        }
        // One flipped byte near the end (inside the signature) breaks it.
        var tampered = crl.der
        tampered[tampered.count - 3] ^= 0x40
        #expect { try CertificateRevocationList(der: tampered).verify(issuedBy: ca.root, at: Date()) } throws: {
            ($0 as? AttestationError)?.code == .crlInvalid
        }
        for length in stride(from: 0, to: crl.der.count, by: 7) {
            #expect(throws: AttestationError.self) { try CertificateRevocationList(der: Array(crl.der.prefix(length))) }
        }
    }

    @Test("the verifier rejects a revoked intermediate, accepts a clean CRL, and treats a stale one by mode")
    func revocationModes() throws {
        let ca = try OpenSSLTestAuthority()
        defer { ca.remove() }
        let fm = FileManager.default
        let cache = fm.temporaryDirectory.appendingPathComponent("cmk-crl-cache-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: cache) }
        let store = SNPCollateralStore(directory: cache)
        let verifier = SNPVerifier(trustAnchors: try shippedAnchors.get(), collateral: store)
        let roots = AMDRootCertificates(product: .milan, ark: ca.root, ask: ca.intermediate, asvk: nil)
        let now = Date()
        func check(_ mode: RevocationMode, at time: Date = now) throws -> RevocationStatus {
            try verifier.checkRevocation(
                product: .milan, signer: .vcek, roots: roots, issuer: ca.intermediate,
                options: SNPVerificationOptions(validationTime: time, revocation: mode))
        }
        let path = store.crlPath(product: .milan, signer: .vcek)

        try store.write(try ca.crl(revoking: ["010001"]), to: path)
        #expect(code { _ = try check(.hard) } == .certificateRevoked)
        #expect(code { _ = try check(.soft) } == .certificateRevoked)

        try store.write(try ca.crl(revoking: ["77"]), to: path)
        #expect(try check(.hard) == .checked)

        // Seven days later the CRL is out of date: hard refuses, soft records it.
        let later = now.addingTimeInterval(8 * 86400)
        #expect(code { _ = try check(.hard, at: later) } == .crlInvalid)
        #expect(try check(.soft, at: later).notCheckedReason != nil)

        // A listed intermediate is rejected even by an out-of-date CRL, in either mode.
        try store.write(try ca.crl(revoking: ["010001"]), to: path)
        #expect(code { _ = try check(.soft, at: later) } == .certificateRevoked)

        // A CRL issued after the validation time is used: it can only know more.
        try store.write(try ca.crl(revoking: ["77"]), to: path)
        #expect(try check(.hard, at: now.addingTimeInterval(-3 * 86400)) == .checked)

        // A CRL signed with other PSS parameters is refused in either mode.
        try store.write(
            try ca.crl(revoking: [], extra: ["-sigopt", "rsa_pss_saltlen:32"]), to: path)
        #expect(code { _ = try check(.soft) } == .crlInvalid)
    }
}
