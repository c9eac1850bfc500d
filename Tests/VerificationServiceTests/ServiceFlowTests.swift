import AttestationResults
import AuditLog
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import PlatformSimulator
import Testing
import VerificationService

func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }

/// The whole flow over a real loopback socket: challenge, attest, EAR verified by joserfc against the JWKS, audit.
@Suite("cmk serve: challenge, attest, EAR, audit over a live socket", .serialized, .timeLimit(.minutes(5)))
struct ServiceFlowTests {
    static let joserfc = #"""
        import json, sys
        from joserfc import jwt
        from joserfc.jwk import KeySet
        jwks_text, token, nonce_hex = sys.argv[1:4]
        keys = KeySet.import_key_set(json.loads(jwks_text))
        expected_alg = sys.argv[4] if len(sys.argv) > 4 else "ES256"
        decoded = jwt.decode(token, keys, algorithms=[expected_alg])
        claims = decoded.claims
        assert decoded.header["alg"] == expected_alg, decoded.header
        import base64
        nonce = claims["eat_nonce"]
        padded = nonce + "=" * (-len(nonce) % 4)
        assert base64.urlsafe_b64decode(padded).hex() == nonce_hex, (nonce, nonce_hex)
        print(json.dumps({"kid": decoded.header.get("kid"), "status": claims["submods"]["cpu0"]["ear.status"]}))
        """#

    /// Verifies `token` with joserfc against the JWKS the server publishes; returns joserfc's view of it.
    static func verifyWithJoserfc(
        _ live: LiveServer, token: String, nonce: String, tenant: String, algorithm: String = "ES256"
    ) async throws -> [String: Any] {
        let jwks = try await live.request("GET", "/.well-known/jwks.json?tenant=\(tenant)")
        #expect(jwks.status == 200)
        let output = try await offPool {
            try ExternalTool.run(ExternalTool.python, ["-c", Self.joserfc, jwks.text, token, nonce, algorithm])
        }
        #expect(output.status == 0, "joserfc rejected the EAR: \(output.standardError)")
        return (try? JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8))) as? [String: Any] ?? [:]
    }

    /// Generates the simulated platform and measures its launch once, off the cooperative pool (seconds of work).
    static func warmSimulatedPlatform() async throws {
        _ = try await offPool { () throws -> Int in
            _ = try SimulatedFixture.launch.get()
            return 0
        }
    }

    static func simulatedRequest(nonce: String, publicKey: [UInt8], policy: String = "development", tenant: String = "alpha") throws -> [String: Any] {
        let launch = try SimulatedFixture.launch.get()
        let reportData = ReportData.binding(nonce: Array(Data(hexString: nonce)), publicKey: publicKey)
        let report = try launch.attestationReport(reportData: reportData, vmpl: 0)
        return [
            "tenant": tenant, "nonce": nonce, "policy": policy,
            "evidence": ["type": "sev-snp", "report": Data(report).base64EncodedString(),
                         "certificate_table": Data(launch.certificateTable).base64EncodedString()],
            "public_key": Data(publicKey).base64EncodedString(),
            "manifest": Data(SimulatedFixture.manifest).base64EncodedString(),
            "instance": "web-1",
        ]
    }

    static var developmentPolicy: String {
        get throws { try String(contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8) }
    }

    @Test("a server configured for ES384 creates P-384 tenant keys, publishes them, and its EARs verify with joserfc (ES384 only)")
    func es384Flow() async throws {
        let live = try await LiveServer.start { $0.earAlgorithm = .es384 }
        defer { Task { await live.stop() } }
        #expect(try await live.putPolicy(try Self.developmentPolicy, id: "development").status == 201)
        let nonce = try await live.challenge()
        let key = Array(P256.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
        try await Self.warmSimulatedPlatform()
        let result = try await live.request("POST", "/v1/attest", json: try Self.simulatedRequest(nonce: nonce, publicKey: key))
        #expect(result.status == 200, "\(result.text)")
        let token = try #require(result.object["ear"] as? String)
        let verified = try await Self.verifyWithJoserfc(live, token: token, nonce: nonce, tenant: "alpha", algorithm: "ES384")
        #expect(verified["kid"] as? String == result.object["kid"] as? String)
        let jwks = try await live.request("GET", "/.well-known/jwks.json?tenant=alpha")
        let entry = try #require((jwks.object["keys"] as? [[String: Any]])?.first)
        #expect(entry["crv"] as? String == "P-384" && entry["alg"] as? String == "ES384")
        let identity = try await live.request("GET", "/v1/verifier")
        #expect(identity.object["algorithm"] as? String == "ES384")
        #expect((identity.object["tenant_algorithms"] as? [String: String])?["alpha"] == "ES384")
        // The check can fail: the same token is refused by a verifier that takes ES256 only.
        let strict = try await offPool {
            try ExternalTool.run(ExternalTool.python, ["-c", Self.joserfc, jwks.text, token, nonce, "ES256"])
        }
        #expect(strict.status != 0)
    }

    @Test("by default the server creates P-256 tenant keys and signs ES256 EARs, which joserfc refuses as ES384")
    func defaultAlgorithm() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let jwks = try await live.request("GET", "/.well-known/jwks.json")
        let keys = try #require(jwks.object["keys"] as? [[String: Any]])
        #expect(!keys.isEmpty && keys.allSatisfy { $0["crv"] as? String == "P-256" && $0["alg"] as? String == "ES256" })
        let identity = try await live.request("GET", "/v1/verifier")
        #expect(identity.object["algorithm"] as? String == "ES256")
    }

    @Test("simulated SEV-SNP evidence under the development policy is admitted; the EAR verifies with joserfc; the nonce is single use")
    func simulatedFlow() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        #expect(try await live.putPolicy(try Self.developmentPolicy, id: "development").status == 201)

        let nonce = try await live.challenge()
        let key = Array(P256.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
        try await Self.warmSimulatedPlatform()
        let body = try Self.simulatedRequest(nonce: nonce, publicKey: key)
        let result = try await live.request("POST", "/v1/attest", json: body)
        #expect(result.status == 200, "\(result.text)")
        let object = result.object
        #expect(object["verdict"] as? String == "admit")
        let appraisal = try #require(object["appraisal"] as? [String: Any])
        #expect(appraisal["simulated"] as? Bool == true)
        let outcomes = try #require(appraisal["outcomes"] as? [[String: Any]])
        let rules = Set(outcomes.compactMap { $0["rule"] as? String })
        for rule in ["evidence.verified", "trust.root", "freshness.report-data", "snp.host-data", "snp.guest-policy.debug"] {
            #expect(rules.contains(rule), "missing outcome \(rule): \(rules.sorted())")
        }
        #expect(outcomes.allSatisfy { ($0["status"] as? String) != "fail" })
        let token = try #require(object["ear"] as? String)
        let verified = try await Self.verifyWithJoserfc(live, token: token, nonce: nonce, tenant: "alpha")
        #expect(verified["kid"] as? String == object["kid"] as? String)
        #expect(verified["status"] as? String != nil)

        // The answer's appraisal is the audit record's stored text byte for byte, and the record is the one named.
        let opening = #"{"appraisal":"#
        let audit = try #require(object["audit"] as? [String: Any])
        let answered = try #require(result.text.range(of: #","audit":{"hash":""#).map {
            String(result.text[result.text.index(result.text.startIndex, offsetBy: opening.count)..<$0.lowerBound])
        })
        #expect(result.text.hasPrefix(opening))
        let log = try AuditLog(
            path: live.directory.appendingPathComponent("state/tenants/alpha/audit.sqlite"), signingKey: nil)
        let stored = try #require(try log.records(matching: AuditQuery(kind: .appraisal, limit: 1)).records.first)
        #expect(Int(stored.sequence) == audit["sequence"] as? Int && stored.hash == audit["hash"] as? String)
        #expect(stored.appraisalJSON == answered)
        #expect(stored.resultTokenDigest == AuditRecord.resultTokenDigest(of: token))

        // The same nonce again: refused, whatever the evidence.
        let replay = try await live.request("POST", "/v1/attest", json: body)
        #expect(replay.status == 409)
        #expect(replay.problemCode == "nonce-reused")
        #expect(replay.contentType.hasPrefix("application/problem+json"))

        // A report bound to another key than the one presented: evaluated, rejected, and the failing rule named.
        let nonce2 = try await live.challenge()
        var tampered = try Self.simulatedRequest(nonce: nonce2, publicKey: key)
        tampered["public_key"] = Data(repeating: 7, count: 65).base64EncodedString()
        let rejected = try await live.request("POST", "/v1/attest", json: tampered)
        #expect(rejected.status == 200)
        #expect(rejected.object["verdict"] as? String == "reject")
        let failed = ((rejected.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? [])
            .filter { $0["status"] as? String == "fail" }.compactMap { $0["rule"] as? String }
        #expect(failed == ["freshness.report-data"])

        // Both decisions and the policy change are in alpha's audit log, newest first, paged.
        let page = try await live.request("GET", "/v1/tenants/alpha/audit/records?limit=2", token: LiveServer.tokens["alpha"])
        #expect(page.status == 200)
        let records = try #require(page.object["records"] as? [[String: Any]])
        #expect(records.count == 2)
        #expect(page.object["nextCursor"] as? Int != nil)
        let rejectedOnly = try await live.request(
            "GET", "/v1/tenants/alpha/audit/records?verdict=reject", token: LiveServer.tokens["alpha"])
        #expect((rejectedOnly.object["records"] as? [[String: Any]])?.count == 1)

        // The audit report in each format `cmk audit report` has.
        for (format, type, marker) in [("json", "application/json", "cmk.audit-report.v1"), ("md", "text/markdown", "#"),
                                       ("html", "text/html", "<html")] {
            let report = try await live.request(
                "GET", "/v1/tenants/alpha/audit/report?format=\(format)", token: LiveServer.tokens["alpha"])
            #expect(report.status == 200, "\(format): \(report.text.prefix(300))")
            #expect(report.contentType.hasPrefix(type))
            #expect(report.text.contains(marker), "\(format)")
        }
        let metrics = try await live.request("GET", "/metrics")
        #expect(metrics.text.contains("cmk_serve_verdicts_total{tenant=\"alpha\",policy=\"development\",verdict=\"admit\",reason=\"admitted\"} 1"))
        #expect(metrics.text.contains("reason=\"freshness.report-data\""))
        #expect(metrics.text.contains("cmk_serve_request_duration_seconds_bucket"))
        #expect(metrics.text.contains("cmk_serve_cache_lookups_total{cache=\"policy\",result=\"hit\"}"))
    }

    static let snpVectors = ["milan-v3-oak-oc", "genoa-v5-oak", "turin-v5-oak"]

    /// The shipped production policy, with only what recorded evidence cannot carry relaxed: no CRL in the vectors
    /// (soft), REPORT_DATA and HOST_DATA fixed at capture (not bound), no age.
    static func vectorPolicy() throws -> String {
        var text = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/sev-snp-production.yaml"), encoding: .utf8)
        text = text.replacingOccurrences(of: "id: sev-snp-production", with: "id: vectors")
            .replacingOccurrences(of: "crl: hard", with: "crl: soft")
            .replacingOccurrences(of: "  max-evidence-age: 5m\n", with: "")
            .replacingOccurrences(of: "report-data: nonce-and-key", with: "report-data: none")
            .replacingOccurrences(of: "  host-data: manifest\n", with: "")
        return text
    }

    @Test("real SEV-SNP reports with their VCEK, at each vector's verify_at_time, are admitted and signed", arguments: snpVectors)
    func realVectors(vector: String) async throws {
        let expected = try SharedVectors.json("snp/\(vector)/expected.json")
        let time = try #require((expected["verify_at_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let live = try await LiveServer.start(at: time)
        defer { Task { await live.stop() } }
        let put = try await live.putPolicy(try Self.vectorPolicy(), id: "vectors")
        #expect(put.status == 201, "\(put.text)")
        let nonce = try await live.challenge()
        let result = try await live.request("POST", "/v1/attest", json: [
            "tenant": "alpha", "nonce": nonce, "policy": "vectors",
            "evidence": ["type": "sev-snp", "report": Data(try SharedVectors.bytes("snp/\(vector)/report.bin")).base64EncodedString(),
                         "vcek": Data(try SharedVectors.bytes("snp/\(vector)/vcek.der")).base64EncodedString()],
        ])
        #expect(result.status == 200, "\(result.text)")
        let failures = ((result.object["appraisal"] as? [String: Any])?["outcomes"] as? [[String: Any]] ?? [])
            .filter { $0["status"] as? String == "fail" }.map { "\($0["rule"] ?? ""): \($0["actual"] ?? "")" }
        #expect(result.object["verdict"] as? String == "admit", "\(failures)")
        #expect((result.object["appraisal"] as? [String: Any])?["simulated"] as? Bool == false)
        let token = try #require(result.object["ear"] as? String)
        _ = try await Self.verifyWithJoserfc(live, token: token, nonce: nonce, tenant: "alpha")
        // The same report an hour after the nonce's lifetime: the nonce has expired.
        let late = try await live.challenge()
        live.clock.advance(3600)
        let expired = try await live.request("POST", "/v1/attest", json: [
            "tenant": "alpha", "nonce": late, "policy": "vectors",
            "evidence": ["type": "sev-snp", "report": Data(try SharedVectors.bytes("snp/\(vector)/report.bin")).base64EncodedString()],
        ])
        #expect(expired.status == 400)
        #expect(expired.problemCode == "nonce-expired")
    }
}

extension Data {
    init(hexString: String) {
        var bytes: [UInt8] = []
        var index = hexString.startIndex
        while index < hexString.endIndex {
            let next = hexString.index(index, offsetBy: 2)
            bytes.append(UInt8(hexString[index..<next], radix: 16)!)
            index = next
        }
        self.init(bytes)
    }
}
