import BinaryFormat
import CMKTesting
import Foundation
import TDX
import Testing

let tdxVectors = [
    "gotdxguest-spr-e4-v4", "dcapqvl-v4-uptodate", "dcapqvl-v5-td15-no-matching-tcb", "gotdxguest-v5-td15",
    "gotdxguest-gcp-cos113-ccel",
]

@Suite("TDX DCAP quotes v4 and v5")
struct TDXQuoteTests {
    static func load(_ name: String) throws -> (TDXQuote, [String: Any]) {
        let quote = try TDXQuote(bytes: try SharedVectors.bytes("tdx/\(name)/quote.bin"))
        return (quote, try SharedVectors.json("tdx/\(name)/expected.json"))
    }

    @Test("every header, body and QE report field equals the vector's expected.json", arguments: tdxVectors)
    func fields(name: String) throws {
        let (q, json) = try Self.load(name)
        let header = try #require(json["quote"] as? [String: Any])
        let expect = try #require(json["expect"] as? [String: Any])
        #expect(q.bytes.count == header["size"] as? Int)
        #expect(Int(q.version) == header["version"] as? Int)
        #expect(Int(q.attestationKeyType) == header["att_key_type"] as? Int)
        #expect("0x" + String(q.teeType, radix: 16) == header["tee_type"] as? String)
        #expect(Hex.encode(q.qeVendorID) == header["qe_vendor_id"] as? String)
        #expect(Hex.encode(q.userData) == header["user_data"] as? String)
        #expect(q.trailingBytes == header["trailing_bytes"] as? Int)
        #expect(q.qeAuthData.count == header["qe_auth_data_len"] as? Int)
        #expect((header["body_type"] as? String)?.hasPrefix(q.bodyType == .td15 ? "TD15" : "TD10") == true)
        let b = q.body
        let fields: [(String, [UInt8]?)] = [
            ("tee_tcb_svn", b.teeTCBSVN), ("mr_seam", b.mrSeam), ("mr_signer_seam", b.mrSignerSeam),
            ("seam_attributes", b.seamAttributes), ("td_attributes", b.tdAttributes), ("xfam", b.xfam), ("mr_td", b.mrTD),
            ("mr_config_id", b.mrConfigID), ("mr_owner", b.mrOwner), ("mr_owner_config", b.mrOwnerConfig),
            ("rtmr0", b.rtmrs[0]), ("rtmr1", b.rtmrs[1]), ("rtmr2", b.rtmrs[2]), ("rtmr3", b.rtmrs[3]),
            ("report_data", b.reportData), ("tee_tcb_svn2", b.teeTCBSVN2), ("mr_servicetd", b.mrServiceTD),
        ]
        for (key, value) in fields {
            #expect(value.map(Hex.encode) == (expect[key] as? String)?.lowercased(), "\(name) \(key)")
        }
        #expect(b.isDebug == expect["debug_td"] as? Bool)
        #expect("0x" + String(b.tdAttributesValue, radix: 16) == expect["td_attributes_u64"] as? String)
        #expect("0x" + String(b.xfamValue, radix: 16) == expect["xfam_u64"] as? String)
        #expect(b.tdAttributeFlags == expect["td_attributes_flags"] as? [String])
        if let qe = json["qe_report"] as? [String: Any] {
            #expect(Hex.encode(q.qeReport.mrSigner) == qe["mr_signer"] as? String)
            #expect(Int(q.qeReport.isvProdID) == qe["isv_prod_id"] as? Int)
            #expect(Int(q.qeReport.isvSVN) == qe["isv_svn"] as? Int)
            #expect(Hex.encode(q.qeReport.attributes) == qe["attributes"] as? String)
            #expect(Hex.encode(q.qeReport.mrEnclave) == qe["mr_enclave"] as? String)
        }
        #expect(q.pckCertificateChainPEM.components(separatedBy: "-----BEGIN CERTIFICATE-----").count == 4)
        #expect(q.signedLength == (q.version == 5 ? 0x36 + (q.bodyType == .td15 ? 648 : 584) : 0x278))
    }

    @Test("truncation at every offset is rejected without a crash", arguments: ["dcapqvl-v4-uptodate", "gotdxguest-v5-td15"])
    func truncation(name: String) throws {
        let bytes = try SharedVectors.bytes("tdx/\(name)/quote.bin")
        let (q, _) = try Self.load(name)
        let end = bytes.count - q.trailingBytes
        for length in 0..<end {
            #expect(throws: BinaryFormatError.self) { try TDXQuote(bytes: Array(bytes.prefix(length))) }
        }
    }

    @Test("every listed mutation still parses (it must break a signature, which verification checks)", arguments: tdxVectors)
    func mutationsParse(name: String) throws {
        let bytes = try SharedVectors.bytes("tdx/\(name)/quote.bin")
        let mutations = (try SharedVectors.json("tdx/\(name)/expected.json")["mutations"] as? [[String: Any]]) ?? []
        for mutation in mutations {
            let offset = try #require(mutation["offset"] as? Int)
            var mutated = bytes
            mutated[offset] ^= 0x01
            let parsed = try TDXQuote(bytes: mutated)
            #expect(parsed.bytes != bytes)
        }
    }

    @Test("unknown versions, key types, TEE types, reserved bytes, body types and sizes are rejected and named")
    func rejections() throws {
        let v4 = try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")
        let v5 = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/quote.bin")
        func field(_ bytes: [UInt8]) -> String? {
            do { _ = try TDXQuote(bytes: bytes); return nil } catch { return error.field }
        }
        var m = v4; m[0] = 3
        #expect(field(m) == "version")
        m = v4; m[2] = 3
        #expect(field(m) == "attestation key type")
        m = v4; m[4] = 0
        #expect(field(m) == "TEE type")
        m = v4; m[9] = 1
        #expect(field(m) == "header reserved")
        m = v5; m[0x30] = 1  // SGX enclave body
        #expect(field(m) == "body type")
        m = v5; m[0x32] = 0x48  // size 584 for a TD 1.5 body
        #expect(field(m) == "body size")
        // Bytes after the signature data are outside every signature: tolerated and reported.
        m = v4; m[m.count - 1] = 1
        #expect(field(m) == nil)
        #expect(try TDXQuote(bytes: m).trailingBytesAreZero == false)
        #expect(try TDXQuote(bytes: v4).trailingBytesAreZero)
        // Certification data types.
        let (q, _) = try Self.load("dcapqvl-v4-uptodate")
        let certTypeOffset = q.signedLength + 4 + 128
        m = v4; m[certTypeOffset] = 5
        #expect(field(m) == "certification data type")
        let innerTypeOffset = certTypeOffset + 6 + 384 + 64 + 2 + q.qeAuthData.count
        m = v4; m[innerTypeOffset] = 4
        #expect(field(m) == "PCK certification data type")
        // A signature data length that leaves bytes inside it, or runs past the end.
        m = v4; m[q.signedLength] &+= 1
        #expect(field(m) != nil)
    }

    @Test("seeded mutations anywhere never trap")
    func fuzz() throws {
        let seed = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/quote.bin")
        var rng = SeededGenerator(state: 0x7D)
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[index] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))) }
            _ = try? TDXQuote(bytes: bytes)
        }
    }

    @Test("the PCK chain must be UTF-8 text without a NUL: ASCII, other UTF-8, a NUL and invalid UTF-8")
    func chainText() throws {
        let v4 = try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")
        let (q, _) = try Self.load("dcapqvl-v4-uptodate")
        let chainStart = q.signedLength + 4 + 128 + 6 + 384 + 64 + 2 + q.qeAuthData.count + 6
        #expect(Array(q.pckCertificateChainBytes) == Array(q.pckCertificateChainPEM.utf8))
        #expect(q.pckCertificateChainBytes.startIndex == chainStart)
        func field(_ bytes: [UInt8]) -> String? {
            do { _ = try TDXQuote(bytes: bytes); return nil } catch { return error.field }
        }
        // A NUL anywhere but at the very end, in each position of an eight-byte block.
        for offset in 100..<108 {
            var m = v4
            m[chainStart + offset] = 0
            #expect(field(m) == "PCK certificate chain")
        }
        var m = v4
        m[chainStart + 100] = 0xFF
        #expect(field(m) == "PCK certificate chain")
        m = v4
        m[chainStart + 100] = 0xC3
        m[chainStart + 101] = 0xA9  // "é": text, though not PEM; reading the chain is verification's job
        #expect(field(m) == nil)
    }

    @Test("report fields are cut from the quote's bytes, and a report from bytes alone has the body's size")
    func reportFromBytes() throws {
        let (q, _) = try Self.load("gotdxguest-v5-td15")
        let body = Array(q.body.bytes)
        #expect(q.body.bytes.startIndex == q.signedLength - body.count)
        let copy = try TDXQuote.TDReport(bytes: body, type: .td15)
        #expect(copy == q.body)
        #expect(copy.mrTD == q.body.mrTD && copy.rtmrs == q.body.rtmrs && copy.mrServiceTD == q.body.mrServiceTD)
        #expect(throws: BinaryFormatError.self) { try TDXQuote.TDReport(bytes: body, type: .td10) }
        #expect(throws: BinaryFormatError.self) { try TDXQuote.TDReport(bytes: Array(body.dropLast()), type: .td15) }
        #expect(Array(q.qeReport.signedBytes) == q.qeReport.bytes)
        #expect(q.qeReport.bytes.count == TDXQuote.Layout.qeReportSize)
    }
}
