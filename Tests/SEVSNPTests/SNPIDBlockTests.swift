import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import SEVSNP
import Testing

@Suite("ID block and ID auth against sev-snp-measure's snp-create-id-block", .serialized)
struct SNPIDBlockTests {
    /// Runs snp-create-id-block from the project venv and returns its output fields.
    static func reference(measurement: [UInt8], idKey: P384.Signing.PrivateKey, authorKey: P384.Signing.PrivateKey) throws -> [String: [UInt8]] {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-idblock-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: folder) }
        try idKey.pemRepresentation.write(to: folder.appendingPathComponent("id.pem"), atomically: true, encoding: .utf8)
        try authorKey.pemRepresentation.write(to: folder.appendingPathComponent("author.pem"), atomically: true, encoding: .utf8)
        let cache = SharedVectors.cacheDirectory
        let process = Process()
        process.executableURL = cache.appendingPathComponent("venv/bin/snp-create-id-block")
        process.arguments = [
            "--measurement", Data(measurement).base64EncodedString(),
            "--idkey", folder.appendingPathComponent("id.pem").path, "--authorkey", folder.appendingPathComponent("author.pem").path,
        ]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        var fields: [String: [UInt8]] = [:]
        for part in text.split(whereSeparator: { $0 == "\n" || $0 == "," }) {
            let pair = part.split(separator: part.contains("=") ? "=" : ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, let data = Data(base64Encoded: pair[1]) { fields[pair[0]] = [UInt8](data) }
        }
        return fields
    }

    @Test("the ID block and both key digests equal the reference's; each side's ID auth verifies under the other's reading")
    func crossCheck() throws {
        let measurement = (0..<48).map { _ in UInt8.random(in: 0...255) }
        let idKey = P384.Signing.PrivateKey()
        let authorKey = P384.Signing.PrivateKey()
        let reference = try Self.reference(measurement: measurement, idKey: idKey, authorKey: authorKey)
        let block = try SNPIDBlock(launchDigest: measurement)
        #expect(block.bytes == reference["id-block"])
        #expect(AMDPublicKeyFormat.digest(idKey.publicKey) == reference["id_key_hash"])
        #expect(AMDPublicKeyFormat.digest(authorKey.publicKey) == reference["author_key"])
        // ECDSA signatures differ run to run; each side's must verify by cmk's reading of the structure.
        let theirs = try #require(reference["id-auth"])
        #expect(theirs.count == SNPIDAuth.size)
        #expect(SNPIDAuth.isValid(theirs, for: block))
        let ours = try SNPIDAuth(signing: block, idKey: idKey, authorKey: authorKey)
        #expect(SNPIDAuth.isValid(ours.bytes, for: block))
        // Everything but the two signatures is byte-identical.
        var masked = ours.bytes
        var maskedTheirs = theirs
        for range in [0x040..<0x240, 0x680..<0x880] {
            masked.replaceSubrange(range, with: [UInt8](repeating: 0, count: range.count))
            maskedTheirs.replaceSubrange(range, with: [UInt8](repeating: 0, count: range.count))
        }
        #expect(masked == maskedTheirs)
    }

    @Test("a changed ID block, a foreign key or a flipped signature byte fails verification")
    func tampering() throws {
        let block = try SNPIDBlock(launchDigest: [UInt8](repeating: 7, count: 48), guestSVN: 3)
        let auth = try SNPIDAuth(signing: block, idKey: P384.Signing.PrivateKey())
        #expect(SNPIDAuth.isValid(auth.bytes, for: block))
        #expect(!SNPIDAuth.isValid(auth.bytes, for: try SNPIDBlock(launchDigest: [UInt8](repeating: 7, count: 48), guestSVN: 4)))
        var flipped = auth.bytes
        flipped[0x040] ^= 1
        #expect(!SNPIDAuth.isValid(flipped, for: block))
        #expect(throws: SNPMeasurementError.self) { try SNPIDBlock(launchDigest: [1, 2, 3]) }
        #expect(throws: SNPMeasurementError.self) { try SNPIDBlock(launchDigest: [UInt8](repeating: 0, count: 48), policy: 0x10000) }
    }
}
