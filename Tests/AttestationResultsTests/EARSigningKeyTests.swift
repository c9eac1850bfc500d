import CMKTesting
import AttestationResults
import Crypto
import Foundation
import Testing

@Suite("The installation's EAR signing key")
struct EARSigningKeyTests {
    /// A fresh folder under the system's temporary folder, removed when `body` returns.
    func withTemporaryFolder(_ body: (URL) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-ear-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try body(folder)
    }

    func mode(_ url: URL) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int)
    }

    @Test("the first use creates a 0700 folder and a 0600 PKCS#8 PEM file; later uses load the same key")
    func createsThenLoads() throws {
        try withTemporaryFolder { base in
            let folder = base.appendingPathComponent("keys")
            let created = try EARSigningKey.loadOrCreate(directory: folder)
            let file = folder.appendingPathComponent(EARSigningKey.defaultFileName)
            #expect(try mode(folder) == 0o700)
            #expect(try mode(file) == 0o600)
            let pem = try String(contentsOf: file, encoding: .utf8)
            #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == [EARSigningKey.defaultFileName])
            let loaded = try EARSigningKey.loadOrCreate(directory: folder)
            #expect(loaded.keyID == created.keyID)
            #expect(try EARSigningKey.load(file: file).keyID == created.keyID)
            // The stored key is the one that signs: a token from the loaded key verifies under the created key's JWKS.
            let token = try EARJWT.sign(EARFixtures.claims(), with: loaded)
            let keys = EARKeySet(keys: [created.publicKey])
            #expect(throws: Never.self) { try EARJWT.verify(token, keys: keys, now: EARFixtures.now) }
        }
    }

    @Test(
        "a key file that group or others can read or write is refused with a clear error",
        arguments: [0o640, 0o604, 0o620, 0o644])
    func refusesLooseMode(permissions: Int) throws {
        try withTemporaryFolder { folder in
            _ = try EARSigningKey.loadOrCreate(directory: folder)
            let file = folder.appendingPathComponent(EARSigningKey.defaultFileName)
            try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: file.path)
            do {
                _ = try EARSigningKey.loadOrCreate(directory: folder)
                Issue.record("a key file with mode \(String(permissions, radix: 8)) was loaded")
            } catch let error as AttestationResultsError {
                #expect(error.code == .insecureKeyFile)
                #expect(error.reason.contains(String(permissions, radix: 8)))
                #expect(error.reason.contains("chmod 600"))
            }
        }
    }

    @Test("a P-256 key file signs with ES256; a new key takes the asked algorithm; a stored key keeps its own")
    func algorithmFollowsTheKey() throws {
        try withTemporaryFolder { folder in
            let created = try EARSigningKey.loadOrCreate(directory: folder, algorithm: .es256)
            #expect(created.algorithm == .es256)
            #expect(created.publicKey.jwk.contains(#""crv":"P-256""#) && created.publicKey.jwk.contains(#""alg":"ES256""#))
            let again = try EARSigningKey.loadOrCreate(directory: folder, algorithm: .es384)
            #expect(again.algorithm == .es256)
            #expect(again.keyID == created.keyID)
            let token = try EARJWT.sign(EARFixtures.claims(), with: again)
            let keys = EARKeySet(keys: [created.publicKey])
            #expect(throws: Never.self) { try EARJWT.verify(token, keys: keys, now: EARFixtures.now) }
            let cwt = try EARCWT.sign(EARFixtures.claims(), with: again)
            #expect(throws: Never.self) { try EARCWT.verify(cwt, keys: keys, now: EARFixtures.now) }
            // The JWK Set round-trips the P-256 key with its algorithm.
            let read = try EARKeySet(jwksJSON: keys.jwksJSON())
            #expect(read.keys.map(\.algorithm) == [.es256])
            #expect(read.keys.first?.keyID == created.keyID)
        }
    }

    @Test("a file that is not a P-384 or P-256 key is refused without echoing its contents")
    func refusesOtherContent() throws {
        try withTemporaryFolder { folder in
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let file = folder.appendingPathComponent(EARSigningKey.defaultFileName)
            let p521 = P521.Signing.PrivateKey().pemRepresentation
            try p521.write(to: file, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
            do {
                _ = try EARSigningKey.load(file: file)
                Issue.record("a P-521 key was loaded as the EAR signing key")
            } catch let error as AttestationResultsError {
                #expect(error.code == .keyFile)
                #expect(!error.reason.contains("BEGIN"))
            }
            #expect(
                errorCode { try EARSigningKey.load(file: folder.appendingPathComponent("missing.pem")) } == .keyFile)
        }
    }

    @Test("OpenSSL reads the stored PKCS#8 key, and a SEC 1 key made by OpenSSL loads", .timeLimit(.minutes(3)))
    func openSSLInterop() throws {
        try withTemporaryFolder { folder in
            let created = try EARSigningKey.loadOrCreate(directory: folder)
            let file = folder.appendingPathComponent(EARSigningKey.defaultFileName)
            let publicDER = folder.appendingPathComponent("public.der")
            let read = try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/env"),
                ["openssl", "pkey", "-in", file.path, "-pubout", "-outform", "DER", "-out", publicDER.path])
            #expect(read.status == 0, "\(read.standardError)")
            #expect(try Array(Data(contentsOf: publicDER)) == created.publicKey.derRepresentation)

            let sec1 = folder.appendingPathComponent("sec1.pem")
            let made = try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/env"), ["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", sec1.path])
            #expect(made.status == 0, "\(made.standardError)")
            #expect(try String(contentsOf: sec1, encoding: .utf8).hasPrefix("-----BEGIN EC PRIVATE KEY-----"))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: sec1.path)
            #expect(throws: Never.self) { try EARSigningKey.load(file: sec1) }
        }
    }

    @Test("printing or dumping the key shows its id, never the private key")
    func neverPrintsPrivateKey() throws {
        let privateKey = P384.Signing.PrivateKey()
        let key = EARSigningKey(privateKey: privateKey)
        var dumped = ""
        dump(key, to: &dumped)
        let secretForms = [
            privateKey.rawRepresentation.base64EncodedString(), privateKey.derRepresentation.base64EncodedString(),
            privateKey.rawRepresentation.map { String(format: "%02x", $0) }.joined(),
        ]
        for shown in [String(describing: key), String(reflecting: key), "\(key)", dumped] {
            #expect(shown.contains(key.keyID))
            for secret in secretForms { #expect(!shown.contains(secret)) }
            #expect(!shown.contains("PRIVATE KEY"))
        }
    }
}
