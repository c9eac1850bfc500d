import CMKTesting
import Foundation
import TPM2
import Testing

@Suite("TPM 2.0 structures through libtss2")
struct TPMSAttestTests {
    static let quote = TPMSAttest(
        qualifiedSigner: [0x00, 0x0B] + [UInt8](repeating: 0x5A, count: 32),
        extraData: Array("cmk-nonce-0123456789abcdef".utf8),
        clockInfo: .init(clock: 123_456_789, resetCount: 3, restartCount: 7, safe: true),
        firmwareVersion: 0x2023_0612_0000_0001,
        attested: .quote(
            pcrSelection: [.init(hashAlgorithm: 0x000B, pcrs: [0, 1, 2, 3, 4, 5, 6, 7]), .init(hashAlgorithm: 0x000C, pcrs: [7, 14])],
            pcrDigest: [UInt8](repeating: 0xC3, count: 32)))

    @Test("a TPMS_ATTEST quote survives marshal and unmarshal unchanged")
    func quoteRoundTrip() throws {
        let bytes = try Self.quote.marshalled()
        // magic (4) ‖ type (2) ‖ TPM2B_NAME (2 + 34) ‖ TPM2B_DATA (2 + 26) ‖ clock info (17) ‖ firmware (8) ‖ quote info.
        #expect(Array(bytes.prefix(6)) == [0xFF, 0x54, 0x43, 0x47, 0x80, 0x18])
        let decoded = try TPMSAttest(marshalled: bytes)
        #expect(decoded == Self.quote)
        #expect(try decoded.marshalled() == bytes)
        if case .quote(let selection, _) = decoded.attested {
            #expect(selection[1].pcrs == [7, 14])
        }
    }

    @Test("a certify TPMS_ATTEST survives the round trip")
    func certifyRoundTrip() throws {
        let certify = TPMSAttest(
            qualifiedSigner: [0x00, 0x0B] + [UInt8](repeating: 1, count: 32), extraData: [],
            clockInfo: .init(clock: 1, resetCount: 0, restartCount: 0, safe: false), firmwareVersion: 0,
            attested: .certify(name: [0x00, 0x0B] + [UInt8](repeating: 2, count: 32), qualifiedName: [0x00, 0x0B] + [UInt8](repeating: 3, count: 32)))
        #expect(try TPMSAttest(marshalled: certify.marshalled()) == certify)
    }

    @Test("tpm2_print, an independent decoder, reads the structure cmk marshalled")
    func tpm2PrintAgrees() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-attest-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(try Self.quote.marshalled()).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tpm2_print")
        process.arguments = ["-t", "TPMS_ATTEST", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        #expect(process.terminationStatus == 0)
        #expect(output.contains("magic: ff544347"))
        #expect(output.contains("type: 8018"))
        #expect(output.contains("clock: 123456789"))
        #expect(output.contains("resetCount: 3"))
        #expect(output.contains("restartCount: 7"))
        #expect(output.contains(Data("cmk-nonce-0123456789abcdef".utf8).map { String(format: "%02x", $0) }.joined()))
        #expect(output.contains(String(repeating: "c3", count: 32)))
    }

    @Test("a TPMS_ATTEST not made by a TPM is rejected")
    func rejectsForeignMagic() throws {
        var bytes = try Self.quote.marshalled()
        bytes[0] = 0x00
        #expect { try TPMSAttest(marshalled: bytes) } throws: { ($0 as? TPM2Error)?.code == .notTPMGenerated }
    }

    @Test("trailing bytes after a TPMS_ATTEST are rejected")
    func rejectsTrailingBytes() throws {
        let bytes = try Self.quote.marshalled() + [0]
        #expect { try TPMSAttest(marshalled: bytes) } throws: { ($0 as? TPM2Error)?.code == .trailingBytes }
    }

    @Test("every truncation of a TPMS_ATTEST is rejected with libtss2's own code kept")
    func rejectsEveryTruncation() throws {
        let bytes = try Self.quote.marshalled()
        for length in 0..<bytes.count {
            do {
                _ = try TPMSAttest(marshalled: Array(bytes.prefix(length)))
                Issue.record("a \(length)-byte prefix must not parse")
            } catch {
                #expect(error.code == .marshalling)
                #expect(error.nativeCode != nil)
            }
        }
    }

    @Test("a TPM2B_DIGEST round-trips and an oversized digest is refused")
    func digestRoundTrip() throws {
        let digest = [UInt8](repeating: 0xAB, count: 48)
        let wire = try TPM2BDigest.marshal(digest)
        #expect(wire.prefix(2) == [0x00, 0x30])
        #expect(try TPM2BDigest.unmarshal(wire) == digest)
        #expect(throws: TPM2Error.self) { try TPM2BDigest.marshal([UInt8](repeating: 0, count: 65)) }
        #expect(throws: TPM2Error.self) { try TPM2BDigest.unmarshal([0x00, 0x41] + [UInt8](repeating: 0, count: 65)) }
    }

    @Test("TPM response codes decode to libtss2-rc's text")
    func responseCodes() {
        #expect(TPM2ResponseCode(0).isSuccess)
        #expect(TPM2ResponseCode(0x100).text.contains("TPM not initialized"))
        #expect(TPM2ResponseCode(0x100).layer == 0)
        // TPM_RC_VALUE for parameter 1 (format one).
        let value = TPM2ResponseCode(0x1C4)
        #expect(value.isFormatOne)
        #expect(value.text.contains("value is out of range"))
        // A marshalling-layer code (layer 9).
        #expect(TPM2ResponseCode(0x9000A).layer == 9)
    }
}
