import CMKTesting
import Foundation
import Testing
import VerificationService

/// A tenant's token reaches only that tenant's policies and audit; nonces and keys are per tenant.
@Suite("cmk serve: tenants and policy administration", .serialized, .timeLimit(.minutes(5)))
struct TenantIsolationTests {
    @Test("a token for one tenant cannot read or change another's policies or audit")
    func isolation() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let alpha = LiveServer.tokens["alpha"]!
        let beta = LiveServer.tokens["beta"]!
        let policy = try ServiceFlowTests.developmentPolicy
        #expect(try await live.putPolicy(policy, id: "development", tenant: "alpha").status == 201)

        // No token, a wrong token, another tenant's token.
        #expect(try await live.request("GET", "/v1/tenants/alpha/policies").status == 401)
        #expect(try await live.request("GET", "/v1/tenants/alpha/policies", token: "not-a-token-of-anyone").status == 401)
        let crossRead = try await live.request("GET", "/v1/tenants/alpha/policies", token: beta)
        #expect(crossRead.status == 403)
        #expect(crossRead.problemCode == "forbidden")
        #expect(try await live.request("GET", "/v1/tenants/alpha/policies/development", token: beta).status == 403)
        #expect(try await live.request("GET", "/v1/tenants/alpha/audit/records", token: beta).status == 403)
        #expect(try await live.request("GET", "/v1/tenants/alpha/audit/report", token: beta).status == 403)
        let crossWrite = try await live.request(
            "PUT", "/v1/tenants/alpha/policies/development", body: Data(policy.replacingOccurrences(of: "version: 1", with: "version: 2").utf8),
            token: beta)
        #expect(crossWrite.status == 403)
        // The default tenant has no administrator token: nobody administers it.
        #expect(try await live.request("GET", "/v1/tenants/default/policies", token: alpha).status == 403)

        // Beta sees only its own (empty) list; alpha sees its policy.
        let betaList = try await live.request("GET", "/v1/tenants/beta/policies", token: beta)
        #expect(betaList.status == 200)
        #expect((betaList.object["policies"] as? [Any])?.isEmpty == true)
        let alphaList = try await live.request("GET", "/v1/tenants/alpha/policies", token: alpha)
        #expect((alphaList.object["policies"] as? [[String: Any]])?.map { $0["id"] as? String } == ["development"])

        // Beta cannot attest against alpha's policy, nor spend alpha's nonce.
        let alphaNonce = try await live.challenge(tenant: "alpha")
        let betaAttempt = try await live.request("POST", "/v1/attest", json: [
            "tenant": "beta", "nonce": alphaNonce, "policy": "development",
            "evidence": ["type": "sev-snp", "report": Data(repeating: 0, count: 1184).base64EncodedString()],
        ])
        #expect(betaAttempt.status == 404)
        #expect(betaAttempt.problemCode == "unknown-policy")
        #expect(try await live.putPolicy(policy, id: "development", tenant: "beta").status == 201)
        let betaNonceReuse = try await live.request("POST", "/v1/attest", json: [
            "tenant": "beta", "nonce": alphaNonce, "policy": "development",
            "evidence": ["type": "sev-snp", "report": Data(repeating: 0, count: 1184).base64EncodedString()],
        ])
        #expect(betaNonceReuse.status == 400)
        #expect(betaNonceReuse.problemCode == "nonce-unknown")

        // Each tenant signs with its own key.
        let alphaKeys = try await live.request("GET", "/.well-known/jwks.json?tenant=alpha").object["keys"] as? [[String: Any]]
        let betaKeys = try await live.request("GET", "/.well-known/jwks.json?tenant=beta").object["keys"] as? [[String: Any]]
        let allKeys = try await live.request("GET", "/.well-known/jwks.json").object["keys"] as? [[String: Any]]
        #expect(alphaKeys?.count == 1 && betaKeys?.count == 1 && allKeys?.count == 3)
        #expect(alphaKeys?.first?["kid"] as? String != betaKeys?.first?["kid"] as? String)

        // Beta's audit log holds only beta's policy change.
        let betaAudit = try await live.request("GET", "/v1/tenants/beta/audit/records", token: beta)
        let records = try #require(betaAudit.object["records"] as? [[String: Any]])
        #expect(records.count == 1)
        #expect(records.allSatisfy { $0["tenant"] as? String == "beta" })
    }

    @Test("policies are versioned: a new version is stored and used, an old or equal one is a 409, bad YAML a 422")
    func versions() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let token = LiveServer.tokens["alpha"]!
        let v1 = try ServiceFlowTests.developmentPolicy
        let v2 = v1.replacingOccurrences(of: "version: 1", with: "version: 2")
        #expect(try await live.putPolicy(v1, id: "development").status == 201)
        let again = try await live.putPolicy(v1, id: "development")
        #expect(again.status == 409)
        #expect(again.problemCode == "version-conflict")
        #expect(try await live.putPolicy(v2, id: "development").status == 201)
        let newest = try await live.request("GET", "/v1/tenants/alpha/policies/development", token: token)
        #expect(newest.object["version"] as? Int == 2)
        let first = try await live.request("GET", "/v1/tenants/alpha/policies/development?version=1", token: token)
        #expect(first.object["version"] as? Int == 1)
        #expect(first.object["yaml"] as? String == v1)
        let invalid = try await live.putPolicy("id: development\nversion: 3\nevidence: sev-snp\nbogus: 1\n", id: "development")
        #expect(invalid.status == 422)
        #expect(invalid.problemCode == "invalid-policy")
        let mismatch = try await live.putPolicy(v2.replacingOccurrences(of: "version: 2", with: "version: 5"), id: "other")
        #expect(mismatch.status == 422)
        #expect(mismatch.problemCode == "policy-id-mismatch")
        // A policy naming reference artifacts would make the server read its own files: refused before loading.
        let artifacts = v2.replacingOccurrences(of: "version: 2", with: "version: 9")
            .replacingOccurrences(of: "sev-snp:\n", with: "sev-snp:\n  measurement:\n    reference:\n      - firmware: /etc/shadow\n")
        let refused = try await live.putPolicy(artifacts, id: "development")
        #expect(refused.status == 422, "\(refused.text)")
        #expect(refused.problemCode == "reference-artifacts-refused")
        // Every change is in the audit log.
        let changes = try await live.request("GET", "/v1/tenants/alpha/audit/records?kind=policy-change", token: token)
        #expect((changes.object["records"] as? [Any])?.count == 2)
    }
}
