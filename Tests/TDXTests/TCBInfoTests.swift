import CMKTesting
import Crypto
import Foundation
import TDX
import Testing

/// The TDX vectors in ../shared/vectors/tdx that carry PCS collateral.
let collateralVectors = [
    "gotdxguest-spr-e4-v4", "dcapqvl-v4-uptodate", "dcapqvl-v5-td15-no-matching-tcb", "gotdxguest-v5-td15",
]

/// Reading vectors and preparing inputs for the collateral tests.
enum CollateralFixtures {
    /// The public key of the first certificate of a PEM issuer chain in a vector folder (the Intel SGX TCB Signing
    /// certificate), read by OpenSSL so the test does not depend on cmk's certificate code.
    static func signingKey(_ vector: String, chain: String) throws -> P256.Signing.PublicKey {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "openssl", "x509", "-in", SharedVectors.url("tdx/\(vector)/\(chain)").path, "-pubkey", "-noout",
        ]
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pem = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        try #require(process.terminationStatus == 0, "openssl could not read \(chain)")
        return try P256.Signing.PublicKey(pemRepresentation: pem)
    }

    /// The offset of the first occurrence of `needle`; fails the test when it is absent.
    static func offset(of needle: String, in bytes: [UInt8]) throws -> Int {
        let needle = Array(needle.utf8)
        return try #require(
            bytes.indices.first { index in
                index + needle.count <= bytes.count && Array(bytes[index..<(index + needle.count)]) == needle
            }, "'\(String(decoding: needle, as: UTF8.self))' does not occur")
    }

    /// `bytes` with the first occurrence of `old` replaced by `new`; fails the test when `old` is absent.
    static func replacing(_ old: String, with new: String, in bytes: [UInt8]) throws -> [UInt8] {
        try replacing(old, with: Array(new.utf8), in: bytes)
    }

    /// `bytes` with the first occurrence of `old` replaced by the raw bytes `new`.
    static func replacing(_ old: String, with new: [UInt8], in bytes: [UInt8]) throws -> [UInt8] {
        let start = try offset(of: old, in: bytes)
        return Array(bytes[..<start]) + new + Array(bytes[(start + old.utf8.count)...])
    }

    static func date(_ text: String) throws -> Date {
        try Date(text, strategy: .iso8601)
    }

    static func hex(_ text: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while utf8.count >= 2 {
            bytes.append(try #require(UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)))
            utf8 = utf8.dropFirst(2)
        }
        try #require(utf8.isEmpty)
        return bytes
    }

    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    /// The document's object for `key` as read by Foundation (an independent reader).
    static func body(_ vector: String, file: String, key: String) throws -> [String: Any] {
        try #require(try SharedVectors.json("tdx/\(vector)/\(file)")[key] as? [String: Any])
    }

    /// The bytes between `{"<key>":` and `,"signature":` in the file as stored: what Intel signed.
    static func rawBody(_ bytes: [UInt8], key: String) throws -> [UInt8] {
        let prefix = Array("{\"\(key)\":".utf8)
        try #require(Array(bytes.prefix(prefix.count)) == prefix)
        let suffix = Array(",\"signature\":\"".utf8)
        let end = try #require(
            bytes.indices.last { index in
                index + suffix.count <= bytes.count && Array(bytes[index..<(index + suffix.count)]) == suffix
            })
        return Array(bytes[prefix.count..<end])
    }

    /// Checks that parsing `json` throws a TDXCollateralError with `code` whose field contains `field`.
    static func expectRejection(
        _ json: [UInt8], code: TDXCollateralError.Code, field: String? = nil,
        parse: ([UInt8]) throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(sourceLocation: sourceLocation) { try parse(json) } throws: { error in
            guard let error = error as? TDXCollateralError else { return false }
            return error.code == code && (field.map { error.field.contains($0) } ?? true)
        }
    }
}

@Suite("TDX TCB Info (PCS v4, version 3)")
struct TCBInfoTests {
    static func load(_ vector: String) throws -> (bytes: [UInt8], info: TDXTCBInfo) {
        let bytes = try SharedVectors.bytes("tdx/\(vector)/tcbinfo.json")
        return (bytes, try TDXTCBInfo(json: bytes))
    }

    static func reject(
        _ json: [UInt8], _ code: TDXCollateralError.Code, field: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        CollateralFixtures.expectRejection(
            json, code: code, field: field, parse: { _ = try TDXTCBInfo(json: $0) }, sourceLocation: sourceLocation)
    }

    @Test("every vector's TCB Info decodes to the values an independent JSON reader sees", arguments: collateralVectors)
    func fieldsMatchIndependentReading(vector: String) throws {
        let (bytes, info) = try Self.load(vector)
        let json = try CollateralFixtures.body(vector, file: "tcbinfo.json", key: "tcbInfo")
        #expect(info.id == "TDX")
        #expect(info.version == 3)
        #expect(info.tcbType == 0)
        #expect(CollateralFixtures.iso(info.issueDate) == json["issueDate"] as? String)
        #expect(CollateralFixtures.iso(info.nextUpdate) == json["nextUpdate"] as? String)
        #expect(info.fmspc == (try CollateralFixtures.hex(try #require(json["fmspc"] as? String))))
        #expect(info.pceID == (try CollateralFixtures.hex(try #require(json["pceId"] as? String))))
        #expect(Int(info.tcbEvaluationDataNumber) == json["tcbEvaluationDataNumber"] as? Int)
        let module = try #require(json["tdxModule"] as? [String: String])
        #expect(info.tdxModule.mrsigner == (try CollateralFixtures.hex(try #require(module["mrsigner"]))))
        #expect(info.tdxModule.attributes == (try CollateralFixtures.hex(try #require(module["attributes"]))))
        #expect(info.tdxModule.attributesMask == (try CollateralFixtures.hex(try #require(module["attributesMask"]))))

        let levels = try #require(json["tcbLevels"] as? [[String: Any]])
        try #require(info.tcbLevels.count == levels.count)
        for (level, reference) in zip(info.tcbLevels, levels) {
            let tcb = try #require(reference["tcb"] as? [String: Any])
            let sgx = try #require(tcb["sgxtcbcomponents"] as? [[String: Any]])
            let tdx = try #require(tcb["tdxtcbcomponents"] as? [[String: Any]])
            #expect(level.sgxSVNs.map(Int.init) == sgx.map { $0["svn"] as? Int ?? -1 })
            #expect(level.tdxSVNs.map(Int.init) == tdx.map { $0["svn"] as? Int ?? -1 })
            #expect(level.sgxComponents.map(\.type) == sgx.map { $0["type"] as? String })
            #expect(level.tdxComponents.map(\.category) == tdx.map { $0["category"] as? String })
            #expect(Int(level.pceSVN) == tcb["pcesvn"] as? Int)
            #expect(CollateralFixtures.iso(level.tcbDate) == reference["tcbDate"] as? String)
            #expect(level.tcbStatus.rawValue == reference["tcbStatus"] as? String)
            #expect(level.advisoryIDs == (reference["advisoryIDs"] as? [String] ?? []))
        }

        let identities = json["tdxModuleIdentities"] as? [[String: Any]]
        #expect(info.tdxModuleIdentities?.map(\.id) == identities?.map { $0["id"] as? String ?? "" })
        for (identity, reference) in zip(info.tdxModuleIdentities ?? [], identities ?? []) {
            let levels = try #require(reference["tcbLevels"] as? [[String: Any]])
            #expect(
                identity.tcbLevels.map { Int($0.isvsvn) }
                    == levels.map { ($0["tcb"] as? [String: Int])?["isvsvn"] ?? -1 })
            #expect(identity.tcbLevels.map(\.tcbStatus.rawValue) == levels.map { $0["tcbStatus"] as? String ?? "" })
            #expect(identity.tcbLevels.map(\.advisoryIDs) == levels.map { $0["advisoryIDs"] as? [String] ?? [] })
        }
        #expect(info.signedBytes == (try CollateralFixtures.rawBody(bytes, key: "tcbInfo")))
        #expect(info.signature.count == 64)
    }

    @Test("Intel's levels are already in evaluation order, and the sort reproduces it", arguments: collateralVectors)
    func levelOrder(vector: String) throws {
        let info = try Self.load(vector).info
        #expect(info.tcbLevelsDescending == info.tcbLevels)
        for identity in info.tdxModuleIdentities ?? [] {
            #expect(identity.tcbLevelsDescending == identity.tcbLevels)
        }
    }

    @Test(
        "the signature verifies with the TCB Signing certificate's key from the issuer chain",
        arguments: collateralVectors)
    func signatureVerifies(vector: String) throws {
        let (_, info) = try Self.load(vector)
        let key = try CollateralFixtures.signingKey(vector, chain: "tcb_info_issuer_chain.pem")
        #expect(info.isSignatureValid(publicKey: key))
        // An unrelated key does not verify it.
        #expect(!info.isSignatureValid(publicKey: P256.Signing.PrivateKey().publicKey))
    }

    @Test(
        "one changed character inside tcbInfo breaks the signature, even when the decoded values stay the same",
        arguments: collateralVectors)
    func signatureCoversExactBytes(vector: String) throws {
        let (bytes, original) = try Self.load(vector)
        let key = try CollateralFixtures.signingKey(vector, chain: "tcb_info_issuer_chain.pem")

        // A value changes: tcbEvaluationDataNumber gains one.
        let number = original.tcbEvaluationDataNumber
        let bumped = try TDXTCBInfo(
            json: try CollateralFixtures.replacing(
                "\"tcbEvaluationDataNumber\":\(number)", with: "\"tcbEvaluationDataNumber\":\(number + 1)", in: bytes))
        #expect(bumped.tcbEvaluationDataNumber == number + 1)
        #expect(!bumped.isSignatureValid(publicKey: key))

        // Only the hex case changes: every decoded value is equal, the signed bytes are not.
        let recased = try TDXTCBInfo(
            json: try CollateralFixtures.replacing(
                "\"attributesMask\":\"FFFFFFFFFFFFFFFF\"", with: "\"attributesMask\":\"fFFFFFFFFFFFFFFF\"", in: bytes))
        #expect(recased.tdxModule == original.tdxModule)
        #expect(recased.tcbLevels == original.tcbLevels)
        #expect(recased.signedBytes != original.signedBytes)
        #expect(!recased.isSignatureValid(publicKey: key))

        // Only whitespace changes (what a pretty-printer or re-serialiser would do).
        let spaced = try TDXTCBInfo(
            json: try CollateralFixtures.replacing("{\"tcbInfo\":{\"id\"", with: "{\"tcbInfo\":{ \"id\"", in: bytes))
        #expect(spaced.tcbLevels == original.tcbLevels)
        #expect(!spaced.isSignatureValid(publicKey: key))

        // The signature itself with one digit changed.
        var resignedBytes = bytes
        let digit = try CollateralFixtures.offset(of: "\"signature\":\"", in: bytes) + 13 + 10
        resignedBytes[digit] = resignedBytes[digit] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        let resigned = try TDXTCBInfo(json: resignedBytes)
        #expect(resigned.signedBytes == original.signedBytes)
        #expect(resigned.signature != original.signature)
        #expect(!resigned.isSignatureValid(publicKey: key))
    }

    @Test(
        "valid at the vector's evaluation time; expired after nextUpdate; not yet valid before issueDate",
        arguments: collateralVectors)
    func validityWindow(vector: String) throws {
        let info = try Self.load(vector).info
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let evalTime = try CollateralFixtures.date(try #require(expected["eval_time"] as? String))
        let expect = try #require(expected["expect"] as? [String: Any])
        #expect(info.checkValidity(at: evalTime).isValid == (expect["tcb_info_time_valid"] as? Bool))
        #expect(info.checkValidity(at: info.nextUpdate) == .valid)
        #expect(info.checkValidity(at: info.nextUpdate.addingTimeInterval(1)) == .expired(nextUpdate: info.nextUpdate))
        #expect(
            info.checkValidity(at: info.issueDate.addingTimeInterval(-1)) == .notYetValid(issueDate: info.issueDate))
        // Every other evaluation time the vector names, where it says what happens to the TCB Info.
        for case let entry as [String: Any] in expected["also_at"] as? [Any] ?? [] {
            let time = try CollateralFixtures.date(try #require(entry["eval_time"] as? String))
            guard let valid = (entry["expect"] as? [String: Any])?["tcb_info_time_valid"] as? Bool else { continue }
            #expect(info.checkValidity(at: time).isValid == valid, "\(vector) at \(entry["eval_time"] ?? "")")
            if !valid { #expect(info.checkValidity(at: time) == .expired(nextUpdate: info.nextUpdate)) }
        }
    }

    @Test("the module identity for a major version is found by its upper-case TDX_%02X id")
    func moduleIdentityLookup() throws {
        let info = try Self.load("gotdxguest-v5-td15").info
        #expect(TDXTCBInfo.moduleIdentityID(majorVersion: 1) == "TDX_01")
        #expect(TDXTCBInfo.moduleIdentityID(majorVersion: 0xAB) == "TDX_AB")
        #expect(info.moduleIdentity(majorVersion: 1)?.id == "TDX_01")
        #expect(info.moduleIdentity(majorVersion: 3)?.id == "TDX_03")
        #expect(info.moduleIdentity(majorVersion: 2) == nil)
        #expect(try Self.load("gotdxguest-spr-e4-v4").info.tdxModuleIdentities == nil)
    }

    // MARK: Malformed input

    @Test("a TCB Info cut short at any offset is rejected, never trapping", arguments: collateralVectors)
    func truncationAtEveryOffset(vector: String) throws {
        let bytes = try SharedVectors.bytes("tdx/\(vector)/tcbinfo.json")
        let end = try #require(bytes.lastIndex(of: UInt8(ascii: "}")))
        var accepted: [Int] = []
        for length in 0...end {
            do {
                _ = try TDXTCBInfo(json: Array(bytes.prefix(length)))
                accepted.append(length)
            } catch {
                #expect(error.code == .malformedJSON, "length \(length): \(error)")
            }
        }
        #expect(accepted.isEmpty, "prefixes accepted: \(accepted)")
        // Whitespace after the outer object is allowed (one vector file ends with a newline).
        _ = try TDXTCBInfo(json: Array(bytes.prefix(end + 1)) + Array(" \r\n\t".utf8))
    }

    @Test("random byte changes are parsed or rejected, never trapping")
    func randomMutations() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        var generator = SeededGenerator(state: 0x7D_C011)
        var rejected = 0
        for _ in 0..<2_000 {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let index = Int.random(in: 0..<mutated.count, using: &generator)
                mutated[index] = UInt8.random(in: 0...255, using: &generator)
            }
            do { _ = try TDXTCBInfo(json: mutated) } catch { rejected += 1 }
        }
        #expect(rejected > 0)
    }

    @Test(
        "id, version and tcbType other than TDX, 3 and 0 are unsupported",
        arguments: [
            ("\"id\":\"TDX\"", "\"id\":\"SGX\"", "tcbInfo.id"),
            ("\"version\":3", "\"version\":2", "tcbInfo.version"),
            ("\"version\":3", "\"version\":4", "tcbInfo.version"),
            ("\"tcbType\":0", "\"tcbType\":1", "tcbInfo.tcbType"),
        ])
    func unsupportedHeader(old: String, new: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        Self.reject(try CollateralFixtures.replacing(old, with: new, in: bytes), .unsupported, field: field)
    }

    @Test(
        "malformed hex, wrong byte lengths and out-of-range numbers are rejected and named",
        arguments: [
            ("\"fmspc\":\"90c06f000000\"", "\"fmspc\":\"90c06f00000g\"", "tcbInfo.fmspc"),
            ("\"fmspc\":\"90c06f000000\"", "\"fmspc\":\"90c06f0000\"", "tcbInfo.fmspc"),
            ("\"fmspc\":\"90c06f000000\"", "\"fmspc\":\"0x90c06f0000\"", "tcbInfo.fmspc"),
            ("\"pceId\":\"0000\"", "\"pceId\":\"00000\"", "tcbInfo.pceId"),
            (
                "\"attributes\":\"0000000000000000\"", "\"attributes\":\"00000000000000\"",
                "tcbInfo.tdxModule.attributes"
            ),
            ("\"mrsigner\":\"0000", "\"mrsigner\":\"Z000", "tcbInfo.tdxModule.mrsigner"),
            ("{\"svn\":3,", "{\"svn\":256,", "tcbInfo.tcbLevels[0].tcb.sgxtcbcomponents[0].svn"),
            ("{\"svn\":3,", "{\"svn\":-1,", "tcbInfo.tcbLevels[0].tcb.sgxtcbcomponents[0].svn"),
            ("\"pcesvn\":13", "\"pcesvn\":65536", "tcbInfo.tcbLevels[0].tcb.pcesvn"),
            ("{\"isvsvn\":3}", "{\"isvsvn\":300}", "tcbInfo.tdxModuleIdentities[0].tcbLevels[0].tcb.isvsvn"),
            ("\"issueDate\":\"2026-02-01T14:49:26Z\"", "\"issueDate\":\"2026-02-30T14:49:26Z\"", "tcbInfo.issueDate"),
            ("\"nextUpdate\":\"2026-03-03T14:49:26Z\"", "\"nextUpdate\":\"2026-03-03 14:49:26\"", "tcbInfo.nextUpdate"),
            (
                "\"tcbDate\":\"2024-11-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"}]}",
                "\"tcbDate\":\"yesterday\",\"tcbStatus\":\"UpToDate\"}]}",
                "tcbInfo.tdxModuleIdentities[0].tcbLevels[0].tcbDate"
            ),
            ("\"tcbEvaluationDataNumber\":18", "\"tcbEvaluationDataNumber\":\"18\"", "tcbInfo.tcbEvaluationDataNumber"),
            ("\"advisoryIDs\":[\"INTEL-SA-01036\"", "\"advisoryIDs\":[\"\"", "advisoryIDs"),
        ])
    func invalidValues(old: String, new: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        Self.reject(try CollateralFixtures.replacing(old, with: new, in: bytes), .invalidValue, field: field)
    }

    @Test(
        "component arrays of 15 or 17 entries are rejected",
        arguments: [
            (
                "{\"svn\":0},{\"svn\":0}],\"pcesvn\"", "{\"svn\":0}],\"pcesvn\"",
                "tcbInfo.tcbLevels[0].tcb.sgxtcbcomponents"
            ),
            (
                "{\"svn\":0},{\"svn\":0}],\"pcesvn\"", "{\"svn\":0},{\"svn\":0},{\"svn\":0}],\"pcesvn\"",
                "tcbInfo.tcbLevels[0].tcb.sgxtcbcomponents"
            ),
            (
                "{\"svn\":0},{\"svn\":0}]},\"tcbDate\"", "{\"svn\":0}]},\"tcbDate\"",
                "tcbInfo.tcbLevels[0].tcb.tdxtcbcomponents"
            ),
        ])
    func componentCount(old: String, new: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let mutated = try CollateralFixtures.replacing(old, with: new, in: bytes)
        #expect { try TDXTCBInfo(json: mutated) } throws: { error in
            guard let error = error as? TDXCollateralError else { return false }
            return error.code == .invalidValue && error.field == field && error.reason.contains("exactly 16")
        }
    }

    @Test(
        "statuses Intel does not define are rejected; module levels allow only UpToDate, OutOfDate and Revoked",
        arguments: [
            (
                "\"tcbStatus\":\"OutOfDate\",\"advisoryIDs\":[\"INTEL-SA-01036\",\"INTEL-SA-01079\"",
                "\"tcbStatus\":\"Outdated\",\"advisoryIDs\":[\"INTEL-SA-01036\",\"INTEL-SA-01079\"",
                "tcbInfo.tcbLevels[1].tcbStatus"
            ),
            (
                "\"tcbStatus\":\"UpToDate\"}]},{\"id\":\"TDX_01\"", "\"tcbStatus\":\"uptodate\"}]},{\"id\":\"TDX_01\"",
                "tcbInfo.tdxModuleIdentities[0].tcbLevels[0].tcbStatus"
            ),
            (
                "\"tcbStatus\":\"UpToDate\"}]},{\"id\":\"TDX_01\"",
                "\"tcbStatus\":\"ConfigurationNeeded\"}]},{\"id\":\"TDX_01\"",
                "tcbInfo.tdxModuleIdentities[0].tcbLevels[0].tcbStatus"
            ),
        ])
    func unknownStatus(old: String, new: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        Self.reject(try CollateralFixtures.replacing(old, with: new, in: bytes), .unknownTCBStatus, field: field)
    }

    @Test(
        "missing fields are named with their JSON path",
        arguments: [
            ("\"pceId\":\"0000\",", "", "tcbInfo.pceId"),
            (
                #""tdxModule":{"mrsigner":""# + String(repeating: "0", count: 96)
                    + #"","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF"},"#,
                "", "tcbInfo.tdxModule"
            ),
            ("\"pcesvn\":13,", "", "tcbInfo.tcbLevels[0].tcb.pcesvn"),
            (",\"signature\":\"", ",\"signatur\":\"", "signatur"),
        ])
    func missingFields(old: String, new: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let mutated = try CollateralFixtures.replacing(old, with: new, in: bytes)
        #expect { try TDXTCBInfo(json: mutated) } throws: { error in
            guard let error = error as? TDXCollateralError else { return false }
            return (error.code == .missingField || error.code == .unexpectedField) && error.field == field
        }
    }

    @Test("the outer object: trailing bytes, unknown or duplicated keys and a non-object body are rejected")
    func outerObject() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        Self.reject(bytes + Array("x".utf8), .trailingBytes)
        Self.reject(bytes + Array("{}".utf8), .trailingBytes)
        Self.reject(bytes + [0], .trailingBytes)
        Self.reject(
            try CollateralFixtures.replacing("{\"tcbInfo\":", with: "{\"note\":1,\"tcbInfo\":", in: bytes),
            .unexpectedField, field: "note")
        let body = try CollateralFixtures.rawBody(bytes, key: "tcbInfo")
        Self.reject(
            try CollateralFixtures.replacing(
                "{\"tcbInfo\":", with: "{\"tcbInfo\":" + String(decoding: body, as: UTF8.self) + ",\"tcbInfo\":",
                in: bytes), .duplicateKey, field: "tcbInfo")
        Self.reject(
            try CollateralFixtures.replacing(
                "{\"tcbInfo\":{\"id\":\"TDX\",", with: "{\"tcbInfo\":{\"id\":\"TDX\",\"id\":\"TDX\",", in: bytes),
            .duplicateKey, field: "tcbInfo.id")
        Self.reject(Array("{\"tcbInfo\":[],\"signature\":\"00\"}".utf8), .invalidValue, field: "tcbInfo")
        Self.reject(Array("{\"tcbInfo\":{},\"signature\":7}".utf8), .invalidValue, field: "signature")
        Self.reject(Array("{\"signature\":\"00\"}".utf8), .missingField, field: "tcbInfo")
        Self.reject(Array("[]".utf8), .malformedJSON)
        Self.reject(Array("\u{FEFF}{}".utf8), .malformedJSON)
        Self.reject([], .malformedJSON)
    }

    @Test("the signature must be 128 hex digits")
    func signatureFormat() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let info = try TDXTCBInfo(json: bytes)
        let stored = info.signature.map { String(format: "%02x", $0) }.joined()
        Self.reject(
            try CollateralFixtures.replacing(stored, with: String(stored.dropLast(2)), in: bytes), .invalidValue,
            field: "signature")
        Self.reject(
            try CollateralFixtures.replacing(stored, with: String(stored.dropLast(1)) + "g", in: bytes), .invalidValue,
            field: "signature")
    }

    @Test("JSON grammar inside tcbInfo is checked: nesting bombs, bad escapes, control characters and bad numbers")
    func innerGrammar() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        func inject(_ text: String) throws -> [UInt8] {
            try CollateralFixtures.replacing("{\"tcbInfo\":{", with: "{\"tcbInfo\":{\"x\":\(text),", in: bytes)
        }
        Self.reject(try inject(String(repeating: "[", count: 100_000)), .malformedJSON)
        Self.reject(try inject(String(repeating: "[", count: 40) + String(repeating: "]", count: 40)), .malformedJSON)
        Self.reject(try inject("\"\\x\""), .malformedJSON)
        Self.reject(try inject("\"\\ud800\""), .malformedJSON)
        Self.reject(try inject("\"\\udc00\""), .malformedJSON)
        Self.reject(try inject("\"\\u12\""), .malformedJSON)
        Self.reject(try inject("\"a\u{01}b\""), .malformedJSON)
        Self.reject(try inject("\"\\ud83d\\u0041\""), .malformedJSON)
        Self.reject(try inject("01"), .malformedJSON)
        Self.reject(try inject("1."), .malformedJSON)
        Self.reject(try inject("1e"), .malformedJSON)
        Self.reject(try inject("-"), .malformedJSON)
        Self.reject(try inject("tru"), .malformedJSON)
        Self.reject(try inject("nul"), .malformedJSON)
        Self.reject(try inject("[1,]"), .malformedJSON)
        Self.reject(try inject("{\"a\":1,}"), .malformedJSON)
        Self.reject(try inject("{1:1}"), .malformedJSON)
        // Bytes that are not UTF-8 inside a string (0xFF; a truncated two-byte sequence).
        Self.reject(
            try CollateralFixtures.replacing(
                "\"x\":\"ab\"", with: Array("\"x\":\"a".utf8) + [0xFF, 0x22], in: try inject("\"ab\"")), .malformedJSON)
        Self.reject(
            try CollateralFixtures.replacing(
                "\"x\":\"ab\"", with: Array("\"x\":\"".utf8) + [0xC3, 0x28, 0x22], in: try inject("\"ab\"")),
            .malformedJSON)
        // Well-formed values the format does not use are accepted (they are signed like everything else).
        _ = try TDXTCBInfo(
            json: try inject("{\"a\":[true,false,null,-0.5e+3,\"\\u00e9\\ud83d\\ude00\\\"}\\\\\"],\"b\":{}}"))
    }

    @Test("strings holding braces, quotes and escapes do not confuse the search for the end of tcbInfo")
    func bracesInsideStrings() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let tricky = "{\"tcbInfo\":{\"note\":\"}\\\"}{\\\\\",\"id\":\"TDX\","
        let mutated = try CollateralFixtures.replacing("{\"tcbInfo\":{\"id\":\"TDX\",", with: tricky, in: bytes)
        let info = try TDXTCBInfo(json: mutated)
        #expect(info.signedBytes == (try CollateralFixtures.rawBody(mutated, key: "tcbInfo")))
        #expect(info.signedBytes.first == UInt8(ascii: "{") && info.signedBytes.last == UInt8(ascii: "}"))
    }

    @Test("duplicated TCB levels, duplicated module identities and empty lists are rejected")
    func duplicatesAndEmptyLists() throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let info = try TDXTCBInfo(json: bytes)
        let text = String(decoding: info.signedBytes, as: UTF8.self)
        let levelsStart = try #require(text.range(of: "\"tcbLevels\":[{\"tcb\":{\"sgxtcbcomponents\""))
        let firstLevelStart = text.index(levelsStart.lowerBound, offsetBy: "\"tcbLevels\":[".count)
        let firstLevelEnd = try #require(
            text.range(of: "\"tcbStatus\":\"UpToDate\"}", range: firstLevelStart..<text.endIndex))
        let firstLevel = String(text[firstLevelStart..<firstLevelEnd.upperBound])
        Self.reject(
            try CollateralFixtures.replacing(firstLevel, with: firstLevel + "," + firstLevel, in: bytes), .invalidValue,
            field: "tcbInfo.tcbLevels[1]")
        Self.reject(
            try CollateralFixtures.replacing("{\"id\":\"TDX_01\"", with: "{\"id\":\"tdx_03\"", in: bytes),
            .invalidValue, field: "tcbInfo.tdxModuleIdentities[1].id")
        let identitiesStart = try #require(text.range(of: "\"tdxModuleIdentities\":"))
        let identitiesEnd = try #require(text.range(of: "],\"tcbLevels\":[{\"tcb\":{\"sgx"))
        let identities = String(text[identitiesStart.lowerBound..<identitiesEnd.lowerBound]) + "]"
        Self.reject(
            try CollateralFixtures.replacing(identities, with: "\"tdxModuleIdentities\":[]", in: bytes), .invalidValue,
            field: "tcbInfo.tdxModuleIdentities")
        let allLevels = String(text[levelsStart.lowerBound..<text.index(before: text.endIndex)])
        Self.reject(
            try CollateralFixtures.replacing(allLevels, with: "\"tcbLevels\":[]", in: bytes), .invalidValue,
            field: "tcbInfo.tcbLevels")
    }
}
