import Attestation
import BinaryFormat
import CMKTesting
import Foundation
import TDX
import Testing

let tdxCollateralVectors = ["gotdxguest-spr-e4-v4", "dcapqvl-v4-uptodate", "dcapqvl-v5-td15-no-matching-tcb", "gotdxguest-v5-td15"]

struct TDXVector {
    let name: String
    let bytes: [UInt8]
    let quote: TDXQuote
    let json: [String: Any]
    let expect: [String: Any]
    let time: Date
    let collateral: TDXCollateral?

    init(_ name: String) throws {
        self.name = name
        bytes = try SharedVectors.bytes("tdx/\(name)/quote.bin")
        quote = try TDXQuote(bytes: bytes)
        json = try SharedVectors.json("tdx/\(name)/expected.json")
        expect = try #require(json["expect"] as? [String: Any])
        time = try #require((json["eval_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let folder = SharedVectors.url("tdx/\(name)")
        collateral = FileManager.default.fileExists(atPath: folder.appendingPathComponent("tcbinfo.json").path)
            ? try TDXCollateral(directory: folder) : nil
    }

    func verify(_ quote: TDXQuote? = nil, at time: Date? = nil) throws -> TDXVerificationResult {
        try TDXVerifier(trustAnchors: try shippedAnchors.get())
            .verify(quote ?? self.quote, collateral: collateral, options: TDXVerificationOptions(evaluationTime: time ?? self.time))
    }
}

@Suite("TDX verification against the real Intel-signed vectors")
struct TDXVerifierTests {
    @Test("every expected check, the TCB status and the QE status hold at eval_time", arguments: tdxCollateralVectors)
    func expectedChecks(name: String) throws {
        let v = try TDXVector(name)
        let result = try v.verify()
        var compared = 0
        for (check, value) in v.expect {
            guard let expected = value as? Bool, let ours = result.checks[check] else { continue }
            #expect(ours == expected, "\(name) \(check): \(result.failures[check] ?? "")")
            compared += 1
        }
        #expect(compared >= 25, "only \(compared) checks compared")
        #expect(result.tcbStatus == v.expect["tcb_status"] as? String)
        #expect(result.qeTCBStatus == v.expect["qe_tcb_status"] as? String)
        #expect(result.claims.debug == v.expect["debug_td"] as? Bool)
        #expect(result.valid == (v.expect["tcb_status"] as? String == "UpToDate"))
        if let pck = v.json["pck"] as? [String: Any] {
            #expect(result.claims.fmspc?.description == pck["fmspc"] as? String)
            #expect(result.claims.pceID?.description == pck["pceid"] as? String)
        }
    }

    @Test("the PCK certificate's SGX extension equals the vectors' decoding", arguments: tdxCollateralVectors + ["gotdxguest-gcp-cos113-ccel"])
    func pckExtensions(name: String) throws {
        let v = try TDXVector(name)
        let leaf = try AttestationCertificate(pem: v.quote.pckCertificateChainPEM)
        let pck = try PCKExtensions(certificate: leaf)
        let expected = try #require(v.json["pck"] as? [String: Any])
        #expect(pck.sgxTCBComponents.map(Int.init) == expected["sgx_tcb_comp_svns"] as? [Int])
        #expect(Int(pck.pceSVN) == expected["pcesvn"] as? Int)
        #expect(pck.cpuSVN.description == expected["cpusvn"] as? String)
        #expect(pck.fmspc.description == expected["fmspc"] as? String)
        #expect(pck.pceID.description == expected["pceid"] as? String)
        #expect(pck.ppid.description == expected["ppid"] as? String)
        #expect(pck.sgxType == expected["sgx_type"] as? Int)
        #expect(pck.platformInstanceID?.description == expected["platform_instance_id"] as? String)
    }

    @Test("later evaluation times expire exactly the collateral expected.json names (also_at)", arguments: tdxCollateralVectors)
    func alsoAt(name: String) throws {
        let v = try TDXVector(name)
        for entry in (v.json["also_at"] as? [[String: Any]]) ?? [] {
            let time = try #require((entry["eval_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
            let result = try v.verify(at: time)
            for (check, value) in (entry["expect"] as? [String: Any]) ?? [:] {
                guard let expected = value as? Bool else { continue }
                #expect(result.checks[check] == expected, "\(name) at \(time) \(check)")
            }
            #expect(!result.valid)
        }
    }

    @Test("every listed byte flip breaks exactly the checks expected.json names", arguments: tdxCollateralVectors + ["gotdxguest-gcp-cos113-ccel"])
    func mutations(name: String) throws {
        let v = try TDXVector(name)
        for mutation in (v.json["mutations"] as? [[String: Any]]) ?? [] {
            let offset = try #require(mutation["offset"] as? Int)
            var bytes = v.bytes
            bytes[offset] ^= 0x01
            let result = try v.verify(try TDXQuote(bytes: bytes))
            for (check, value) in (mutation["expect"] as? [String: Any]) ?? [:] {
                if check == "debug_td" {
                    #expect(result.claims.debug == value as? Bool, "\(name) \(mutation["what"] ?? "")")
                } else if let expected = value as? Bool {
                    #expect(result.checks[check] == expected, "\(name) \(mutation["what"] ?? "") \(check)")
                }
            }
            #expect(!result.valid)
        }
    }

    @Test("without collateral, the signature chain is checked and no TCB status is claimed")
    func noCollateral() throws {
        let v = try TDXVector("gotdxguest-gcp-cos113-ccel")
        let result = try v.verify()
        #expect(result.checks["signature_chain_valid"] == true)
        #expect(result.checks["quote_signature"] == true)
        #expect(result.tcbStatus == nil)
        #expect(!result.valid)
    }

    @Test("a quote whose chain ends in another root is rejected")
    func otherRoot() throws {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-intel-root-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: folder) }
        try fm.copyItem(at: SharedVectors.attestationDirectory, to: folder)
        // A self-signed P-256 "Intel SGX Root CA" that is not Intel's.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", folder.appendingPathComponent("k.pem").path,
            "-out", folder.appendingPathComponent("intel/sgx_root_ca.pem").path, "-days", "10000",
            "-subj", "/CN=Intel SGX Root CA/O=Intel Corporation/L=Santa Clara/ST=CA/C=US", "-sha256",
        ]
        process.standardError = FileHandle.nullDevice
        try process.run()
        waitForExit(process)
        let der = try AttestationCertificate(pem: String(contentsOf: folder.appendingPathComponent("intel/sgx_root_ca.pem"), encoding: .utf8)).der
        let manifestURL = folder.appendingPathComponent("anchors.json")
        var manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any])
        manifest["anchors"] = ((manifest["anchors"] as? [[String: Any]]) ?? []).map { entry in
            var entry = entry
            if entry["root"] as? String == "intel-sgx-root" { entry["sha256"] = Hex.encode(SHA256Digest.of(der)) }
            return entry
        }
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        let v = try TDXVector("dcapqvl-v4-uptodate")
        let result = try TDXVerifier(trustAnchors: try TrustAnchorStore(directory: folder))
            .verify(v.quote, collateral: v.collateral, options: TDXVerificationOptions(evaluationTime: v.time))
        #expect(result.checks["pck_chain_anchored_to_trusted_root"] == false)
        #expect(result.checks["tcb_info_signing_chain"] == false)
        #expect(!result.valid)
    }

    @Test("check names are unique, and a result's typed outcomes agree with its checks and failures by name")
    func typedChecks() throws {
        #expect(Set(TDXCheck.allCases.map(\.name)).count == TDXCheck.allCases.count)
        for check in TDXCheck.allCases { #expect(TDXCheck(name: check.name) == check) }
        #expect(TDXCheck(name: "no_such_check") == nil)
        for name in ["gotdxguest-v5-td15", "dcapqvl-v5-td15-no-matching-tcb"] {
            let v = try TDXVector(name)
            var bytes = v.bytes
            bytes[0x100] ^= 1  // inside the TD report: the quote signature fails
            for result in [try v.verify(), try v.verify(try TDXQuote(bytes: bytes))] {
                let checks = result.checks
                #expect(checks.count == TDXCheck.allCases.filter { result.outcome(of: $0) != nil }.count)
                for check in TDXCheck.allCases {
                    #expect(checks[check.name] == result.outcome(of: check), "\(name) \(check)")
                    #expect(result.failures[check.name] == result.failure(of: check), "\(name) \(check)")
                    #expect((result.failure(of: check) != nil) == (result.outcome(of: check) == false))
                }
            }
        }
    }

    @Test("a result and its claims survive JSON: the same checks, failures, statuses and claims")
    func resultJSON() throws {
        for name in tdxCollateralVectors + ["gotdxguest-gcp-cos113-ccel"] {
            let v = try TDXVector(name)
            let result = try v.verify()
            let json = try JSONEncoder().encode(result)
            let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            #expect(Set(object.keys).isSuperset(of: ["checks", "failures", "advisoryIDs", "claims", "warnings"]))
            let claims = try #require(object["claims"] as? [String: Any])
            #expect(claims["mrTD"] as? String == Hex.encode(v.quote.body.mrTD))
            #expect(claims["debug"] as? Bool == v.quote.body.isDebug)
            #expect((claims["rtmrs"] as? [String])?.count == 4)
            let decoded = try JSONDecoder().decode(TDXVerificationResult.self, from: json)
            #expect(decoded.checks == result.checks)
            #expect(decoded.failures == result.failures)
            #expect(decoded.tcbStatus == result.tcbStatus && decoded.qeTCBStatus == result.qeTCBStatus)
            #expect(decoded.valid == result.valid)
            #expect(decoded.claims == result.claims)
            #expect(decoded.claims.rtmrs == result.claims.rtmrs)
            #expect(decoded.claims.mrServiceTD == result.claims.mrServiceTD)
            let sorted = JSONEncoder()
            sorted.outputFormatting = .sortedKeys
            #expect(try sorted.encode(decoded.claims) == sorted.encode(result.claims))
        }
    }

    @Test("claims read back from JSON are rejected when DEBUG contradicts TDATTRIBUTES, or a size is wrong")
    func claimsJSONRejections() throws {
        let v = try TDXVector("gotdxguest-v5-td15")
        let json = try JSONEncoder().encode(try v.verify().claims)
        var object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["debug"] = !(object["debug"] as? Bool ?? false)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(TDXClaims.self, from: JSONSerialization.data(withJSONObject: object))
        }
        object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["mrTD"] = "00"
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(TDXClaims.self, from: JSONSerialization.data(withJSONObject: object))
        }
    }
}
