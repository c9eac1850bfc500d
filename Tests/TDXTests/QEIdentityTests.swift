import CMKTesting
import Crypto
import Foundation
import TDX
import Testing

/// The QE report fields of a vector's quote, as expected.json decodes them.
struct VectorQEReport {
    let miscselect: [UInt8]
    let attributes: [UInt8]
    let mrsigner: [UInt8]
    let isvprodid: UInt16
    let isvsvn: UInt16

    init(_ vector: String) throws {
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let report = try #require(expected["qe_report"] as? [String: Any])
        miscselect = try CollateralFixtures.hex(try #require(report["misc_select"] as? String))
        attributes = try CollateralFixtures.hex(try #require(report["attributes"] as? String))
        mrsigner = try CollateralFixtures.hex(try #require(report["mr_signer"] as? String))
        isvprodid = UInt16(try #require(report["isv_prod_id"] as? Int))
        isvsvn = UInt16(try #require(report["isv_svn"] as? Int))
    }

    func match(_ identity: TDXQEIdentity) -> TDXQEIdentityMatch {
        identity.match(
            miscselect: miscselect, attributes: attributes, mrsigner: mrsigner, isvprodid: isvprodid, isvsvn: isvsvn)
    }
}

@Suite("TDX QE Identity (PCS v4, version 2)")
struct QEIdentityTests {
    static func load(_ vector: String) throws -> (bytes: [UInt8], identity: TDXQEIdentity) {
        let bytes = try SharedVectors.bytes("tdx/\(vector)/qeidentity.json")
        return (bytes, try TDXQEIdentity(json: bytes))
    }

    static func reject(
        _ json: [UInt8], _ code: TDXCollateralError.Code, field: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        CollateralFixtures.expectRejection(
            json, code: code, field: field, parse: { _ = try TDXQEIdentity(json: $0) }, sourceLocation: sourceLocation)
    }

    @Test(
        "every vector's QE Identity decodes to the values an independent JSON reader sees", arguments: collateralVectors
    )
    func fieldsMatchIndependentReading(vector: String) throws {
        let (bytes, identity) = try Self.load(vector)
        let json = try CollateralFixtures.body(vector, file: "qeidentity.json", key: "enclaveIdentity")
        #expect(identity.id == "TD_QE")
        #expect(identity.version == 2)
        #expect(CollateralFixtures.iso(identity.issueDate) == json["issueDate"] as? String)
        #expect(CollateralFixtures.iso(identity.nextUpdate) == json["nextUpdate"] as? String)
        #expect(Int(identity.tcbEvaluationDataNumber) == json["tcbEvaluationDataNumber"] as? Int)
        for (value, key) in [
            (identity.miscselect, "miscselect"), (identity.miscselectMask, "miscselectMask"),
            (identity.attributes, "attributes"), (identity.attributesMask, "attributesMask"),
            (identity.mrsigner, "mrsigner"),
        ] {
            #expect(value == (try CollateralFixtures.hex(try #require(json[key] as? String))), "\(key)")
        }
        #expect(Int(identity.isvprodid) == json["isvprodid"] as? Int)
        let levels = try #require(json["tcbLevels"] as? [[String: Any]])
        #expect(
            identity.tcbLevels.map { Int($0.isvsvn) } == levels.map { ($0["tcb"] as? [String: Int])?["isvsvn"] ?? -1 })
        #expect(identity.tcbLevels.map(\.tcbStatus.rawValue) == levels.map { $0["tcbStatus"] as? String ?? "" })
        #expect(
            identity.tcbLevels.map { CollateralFixtures.iso($0.tcbDate) }
                == levels.map { $0["tcbDate"] as? String ?? "" })
        #expect(identity.signedBytes == (try CollateralFixtures.rawBody(bytes, key: "enclaveIdentity")))
        // Intel's TD QE signer (TDX.md §5).
        #expect(
            identity.mrsigner
                == (try CollateralFixtures.hex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")))
    }

    @Test(
        "the signature verifies with the issuer chain's leaf key and fails after one changed character",
        arguments: collateralVectors)
    func signature(vector: String) throws {
        let (bytes, original) = try Self.load(vector)
        let key = try CollateralFixtures.signingKey(vector, chain: "qe_identity_issuer_chain.pem")
        #expect(original.isSignatureValid(publicKey: key))
        #expect(!original.isSignatureValid(publicKey: P256.Signing.PrivateKey().publicKey))

        let otherProduct = try TDXQEIdentity(
            json: try CollateralFixtures.replacing("\"isvprodid\":2", with: "\"isvprodid\":3", in: bytes))
        #expect(otherProduct.isvprodid == 3)
        #expect(!otherProduct.isSignatureValid(publicKey: key))

        let recased = try TDXQEIdentity(
            json: try CollateralFixtures.replacing("\"mrsigner\":\"DC9E", with: "\"mrsigner\":\"dC9E", in: bytes))
        #expect(recased.mrsigner == original.mrsigner)
        #expect(recased.tcbLevels == original.tcbLevels)
        #expect(!recased.isSignatureValid(publicKey: key))
    }

    @Test(
        "each vector's QE report matches its QE Identity with the status expected.json states",
        arguments: collateralVectors)
    func vectorMatch(vector: String) throws {
        let identity = try Self.load(vector).identity
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let expect = try #require(expected["expect"] as? [String: Any])
        let match = try VectorQEReport(vector).match(identity)
        guard case .matched(let level) = match else {
            Issue.record("\(vector): \(match)")
            return
        }
        #expect(expect["qe_identity_match"] as? Bool == true)
        #expect(level.tcbStatus.rawValue == expect["qe_tcb_status"] as? String)
        #expect(level == identity.tcbLevelsDescending.first)
    }

    @Test("MISCSELECT and ATTRIBUTES are compared under their masks, byte by byte; MRSIGNER and ISVPRODID exactly")
    func maskedComparison() throws {
        let identity = try Self.load("gotdxguest-v5-td15").identity
        let report = try VectorQEReport("gotdxguest-v5-td15")
        // Bits outside attributesMask (FBFF…FF 0000…00) may differ: byte 0 bit 2, and the whole upper half.
        var attributes = report.attributes
        attributes[0] ^= 0x04
        attributes[15] = 0xFF
        #expect(
            identity.match(
                miscselect: report.miscselect, attributes: attributes, mrsigner: report.mrsigner, isvprodid: 2,
                isvsvn: 7
            ).tcbStatus == .upToDate)
        // Bits inside it may not.
        attributes = report.attributes
        attributes[0] ^= 0x01
        #expect(
            isMismatch(
                identity.match(
                    miscselect: report.miscselect, attributes: attributes, mrsigner: report.mrsigner, isvprodid: 2,
                    isvsvn: 7), .attributes))
        attributes = report.attributes
        attributes[7] = 0x01
        #expect(
            isMismatch(
                identity.match(
                    miscselect: report.miscselect, attributes: attributes, mrsigner: report.mrsigner, isvprodid: 2,
                    isvsvn: 7), .attributes))
        #expect(
            isMismatch(
                identity.match(
                    miscselect: [0, 0, 0, 0x80], attributes: report.attributes, mrsigner: report.mrsigner, isvprodid: 2,
                    isvsvn: 7), .miscselect))
        #expect(
            isMismatch(
                identity.match(
                    miscselect: UInt32(0x8000_0000), attributes: report.attributes, mrsigner: report.mrsigner,
                    isvprodid: 2, isvsvn: 7), .miscselect))
        #expect(
            identity.match(
                miscselect: UInt32(0), attributes: report.attributes, mrsigner: report.mrsigner, isvprodid: 2, isvsvn: 7
            ).tcbStatus == .upToDate)
        var signer = report.mrsigner
        signer[31] ^= 1
        #expect(
            isMismatch(
                identity.match(
                    miscselect: report.miscselect, attributes: report.attributes, mrsigner: signer, isvprodid: 2,
                    isvsvn: 7), .mrsigner))
        #expect(
            isMismatch(
                identity.match(
                    miscselect: report.miscselect, attributes: report.attributes, mrsigner: Array(signer.prefix(31)),
                    isvprodid: 2, isvsvn: 7), .mrsigner))
        #expect(
            isMismatch(
                identity.match(
                    miscselect: report.miscselect, attributes: report.attributes, mrsigner: report.mrsigner,
                    isvprodid: 1, isvsvn: 7), .isvprodid))
        #expect(
            isMismatch(
                identity.match(
                    miscselect: [0, 0, 0], attributes: report.attributes, mrsigner: report.mrsigner, isvprodid: 2,
                    isvsvn: 7), .miscselect))
    }

    func isMismatch(_ match: TDXQEIdentityMatch, _ field: TDXQEIdentityMatch.Field) -> Bool {
        if case .mismatch(let found, let reason) = match { return found == field && !reason.isEmpty }
        return false
    }

    @Test(
        "the QE TCB level is the first, by descending ISVSVN, at or below the QE's ISVSVN; none means not supported"
    )
    func levelSelection() throws {
        // Levels listed out of order on purpose: 2 Revoked, 8 UpToDate, 5 OutOfDate.
        let json = CollateralBuilder.qeIdentity(levels: [(2, "Revoked"), (8, "UpToDate"), (5, "OutOfDate")])
        let identity = try TDXQEIdentity(json: json)
        #expect(identity.tcbLevelsDescending.map(\.isvsvn) == [8, 5, 2])
        func status(_ isvsvn: UInt16) -> TDXQEIdentityMatch {
            identity.match(
                miscselect: [0, 0, 0, 0], attributes: identity.attributes, mrsigner: identity.mrsigner, isvprodid: 2,
                isvsvn: isvsvn)
        }
        #expect(status(9).tcbStatus == .upToDate)
        #expect(status(8).tcbStatus == .upToDate)
        #expect(status(7).tcbStatus == .outOfDate)
        #expect(status(5).tcbStatus == .outOfDate)
        #expect(status(4).tcbStatus == .revoked)
        #expect(status(2).tcbStatus == .revoked)
        #expect(status(1) == .tcbNotSupported(isvsvn: 1))
        #expect(status(1).tcbStatus == nil)
    }

    @Test(
        "valid at the vector's evaluation time; expired after nextUpdate; not yet valid before issueDate",
        arguments: collateralVectors)
    func validityWindow(vector: String) throws {
        let identity = try Self.load(vector).identity
        let expected = try SharedVectors.json("tdx/\(vector)/expected.json")
        let evalTime = try CollateralFixtures.date(try #require(expected["eval_time"] as? String))
        let expect = try #require(expected["expect"] as? [String: Any])
        #expect(identity.checkValidity(at: evalTime).isValid == (expect["qe_identity_time_valid"] as? Bool))
        #expect(
            identity.checkValidity(at: identity.nextUpdate.addingTimeInterval(1))
                == .expired(nextUpdate: identity.nextUpdate))
        #expect(
            identity.checkValidity(at: identity.issueDate.addingTimeInterval(-1))
                == .notYetValid(issueDate: identity.issueDate))
        for case let entry as [String: Any] in expected["also_at"] as? [Any] ?? [] {
            let time = try CollateralFixtures.date(try #require(entry["eval_time"] as? String))
            let entryExpect = entry["expect"] as? [String: Any] ?? [:]
            // also_at names the TCB Info's expiry; the QE Identity (issued within days of it, valid for 30)
            // expires too.
            if let valid = entryExpect["qe_identity_time_valid"] as? Bool ?? entryExpect["tcb_info_time_valid"] as? Bool
            {
                #expect(identity.checkValidity(at: time).isValid == valid, "\(vector) at \(entry["eval_time"] ?? "")")
            }
        }
    }

    @Test("a QE Identity cut short at any offset is rejected, never trapping", arguments: collateralVectors)
    func truncationAtEveryOffset(vector: String) throws {
        let bytes = try SharedVectors.bytes("tdx/\(vector)/qeidentity.json")
        let end = try #require(bytes.lastIndex(of: UInt8(ascii: "}")))
        for length in 0...end {
            #expect(throws: TDXCollateralError.self) { try TDXQEIdentity(json: Array(bytes.prefix(length))) }
        }
    }

    @Test(
        "wrong id, version, hex, lengths and statuses are rejected and named",
        arguments: [
            ("\"id\":\"TD_QE\"", "\"id\":\"QE\"", "unsupported", "enclaveIdentity.id"),
            ("\"version\":2", "\"version\":1", "unsupported", "enclaveIdentity.version"),
            (
                "\"miscselect\":\"00000000\"", "\"miscselect\":\"0000000\"", "invalid-value",
                "enclaveIdentity.miscselect"
            ),
            (
                "\"attributesMask\":\"FBFF", "\"attributesMask\":\"FBFG", "invalid-value",
                "enclaveIdentity.attributesMask"
            ),
            ("\"mrsigner\":\"DC9E2A7C", "\"mrsigner\":\"DC9E2A7", "invalid-value", "enclaveIdentity.mrsigner"),
            ("\"isvprodid\":2", "\"isvprodid\":70000", "invalid-value", "enclaveIdentity.isvprodid"),
            (
                "\"tcbStatus\":\"UpToDate\"", "\"tcbStatus\":\"Fine\"", "unknown-tcb-status",
                "enclaveIdentity.tcbLevels[0].tcbStatus"
            ),
            (
                "{\"tcb\":{\"isvsvn\":4}", "{\"tcb\":{\"svn\":4}", "missing-field",
                "enclaveIdentity.tcbLevels[0].tcb.isvsvn"
            ),
            ("\"isvprodid\":2,", "", "missing-field", "enclaveIdentity.isvprodid"),
            ("2392bf\"}", "2392bf\"}x", "trailing-bytes", "(document)"),
            ("2392bf\"}", "2392bf\",\"signature\":\"\"}", "duplicate-key", "signature"),
        ])
    func malformed(old: String, new: String, code: String, field: String) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/qeidentity.json")
        let mutated = try CollateralFixtures.replacing(old, with: new, in: bytes)
        #expect { try TDXQEIdentity(json: mutated) } throws: { error in
            guard let error = error as? TDXCollateralError else { return false }
            return error.code.description == code && error.field == field
        }
    }

    @Test(
        "dates are ISO 8601 UTC with an optional fraction; anything else is rejected",
        arguments: [
            ("2026-02-18T10:42:15Z", 1_771_411_335.0), ("2026-02-18T10:42:15.5Z", 1_771_411_335.5),
            ("2024-02-29T00:00:00Z", 1_709_164_800.0), ("2000-02-29T23:59:59Z", 951_868_799.0),
            ("1970-01-01T00:00:00.000000001Z", 0.000000001),
            ("2026-02-18T10:42:60Z", nil), ("2026-02-18T24:00:00Z", nil), ("2026-02-18T10:60:00Z", nil),
            ("2026-13-01T00:00:00Z", nil), ("2026-00-01T00:00:00Z", nil), ("2025-02-29T00:00:00Z", nil),
            ("1900-02-29T00:00:00Z", nil),
            ("2026-04-31T00:00:00Z", nil), ("2026-02-18T10:42:15z", nil), ("2026-02-18T10:42:15+00:00", nil),
            ("2026-02-18 10:42:15Z", nil), ("2026-02-18T10:42:15.Z", nil), ("2026-02-18T10:42:15.1234567890Z", nil),
            ("2026-2-18T10:42:15Z", nil), ("+026-02-18T10:42:15Z", nil), ("", nil),
        ] as [(String, Double?)])
    func dates(text: String, seconds: Double?) throws {
        let bytes = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/qeidentity.json")
        let mutated = try CollateralFixtures.replacing(
            "\"issueDate\":\"2026-02-18T10:42:15Z\"", with: "\"issueDate\":\"\(text)\"", in: bytes)
        if let seconds {
            let identity = try TDXQEIdentity(json: mutated)
            #expect(abs(identity.issueDate.timeIntervalSince1970 - seconds) < 1e-6)
        } else {
            Self.reject(mutated, .invalidValue, field: "enclaveIdentity.issueDate")
        }
    }

    @Test("a TCB Info is not a QE Identity, nor the other way round")
    func wrongDocument() throws {
        let tcbInfo = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/tcbinfo.json")
        let qeIdentity = try SharedVectors.bytes("tdx/gotdxguest-v5-td15/qeidentity.json")
        Self.reject(tcbInfo, .unexpectedField, field: "tcbInfo")
        TCBInfoTests.reject(qeIdentity, .unexpectedField, field: "enclaveIdentity")
        Self.reject(Array(#"{"enclaveIdentity":{"id":"TD_QE","version":2},"signature":""}"#.utf8), .missingField)
        Self.reject(CollateralBuilder.qeIdentity(levels: []), .invalidValue, field: "enclaveIdentity.tcbLevels")
    }
}
