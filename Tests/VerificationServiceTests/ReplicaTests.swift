import AuditLog
import CMKTesting
import Foundation
import Testing
import VerificationService

/// Two `cmk serve` servers on two loopback ports over one real PostgreSQL database, as two replicas behind a load
/// balancer: what one issues or stores, the other honours, once.
@Suite("cmk serve replicas over PostgreSQL", .serialized, .timeLimit(.minutes(5)))
struct ReplicaTests {
    static let vector = "genoa-v5-oak"

    @Test("a nonce from one replica is spent once on the other; a policy put on one is read by the other; the shared audit chain verifies")
    func twoReplicas() async throws {
        let expected = try SharedVectors.json("snp/\(Self.vector)/expected.json")
        let time = try #require((expected["verify_at_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let url = try await PostgresFixture.freshDatabase()
        let storeA = try await PostgresServiceStore.connect(url: url, checkpointInterval: 2, operationLimit: PostgresFixture.busyHostLimit)
        let storeB = try await PostgresServiceStore.connect(url: url, checkpointInterval: 2, operationLimit: PostgresFixture.busyHostLimit)
        // Replicas share the tenants' signing keys (a Secret in deploy/); the rest of their state is in PostgreSQL.
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-replicas-\(UUID().uuidString)")
        let a = try await LiveServer.start(at: time, store: storeA, stateDirectory: shared)
        let b = try await LiveServer.start(at: time, store: storeB, stateDirectory: shared)
        #expect(a.port != b.port)

        // A policy put on A is read (and used) by B.
        let put = try await a.putPolicy(try ServiceFlowTests.vectorPolicy(), id: "vectors")
        #expect(put.status == 201, "\(put.text)")
        let read = try await b.request("GET", "/v1/tenants/alpha/policies/vectors", token: LiveServer.tokens["alpha"])
        #expect(read.status == 200)
        #expect(read.object["version"] as? Int == put.object["version"] as? Int)
        #expect(read.object["digest"] as? String == put.object["digest"] as? String)

        // A nonce issued by A is accepted once by B, then refused by both.
        let report = Data(try SharedVectors.bytes("snp/\(Self.vector)/report.bin")).base64EncodedString()
        let vcek = Data(try SharedVectors.bytes("snp/\(Self.vector)/vcek.der")).base64EncodedString()
        func body(_ nonce: String) -> [String: Any] {
            ["tenant": "alpha", "nonce": nonce, "policy": "vectors",
             "evidence": ["type": "sev-snp", "report": report, "vcek": vcek]]
        }
        let nonce = try await a.challenge()
        let first = try await b.request("POST", "/v1/attest", json: body(nonce))
        #expect(first.status == 200, "\(first.text)")
        #expect(first.object["verdict"] as? String == "admit")
        for replica in [b, a] {
            let replay = try await replica.request("POST", "/v1/attest", json: body(nonce))
            #expect(replay.status == 409)
            #expect(replay.problemCode == "nonce-reused")
        }
        // Both replicas at once with one nonce: exactly one admission.
        let raced = try await a.challenge()
        async let onA = a.request("POST", "/v1/attest", json: body(raced))
        async let onB = b.request("POST", "/v1/attest", json: body(raced))
        let statuses = [try await onA.status, try await onB.status].sorted()
        #expect(statuses == [200, 409])

        // Both replicas' records are in one chain, seen alike from either; it verifies, checkpoints included.
        let fromA = try await a.request("GET", "/v1/tenants/alpha/audit/records?order=oldest-first", token: LiveServer.tokens["alpha"])
        let fromB = try await b.request("GET", "/v1/tenants/alpha/audit/records?order=oldest-first", token: LiveServer.tokens["alpha"])
        let records = try #require(fromA.object["records"] as? [[String: Any]])
        #expect(records.count == 3)  // the policy put, two admissions
        #expect(records.compactMap { $0["sequence"] as? Int } == [1, 2, 3])
        #expect(fromA.text == fromB.text)
        let report2 = try await b.request("GET", "/v1/tenants/alpha/audit/report?format=json", token: LiveServer.tokens["alpha"])
        #expect(report2.status == 200)
        let integrity = try #require(report2.object["integrity"] as? [String: Any])
        #expect(integrity["intact"] as? Bool == true, "\(integrity)")
        let key = try CheckpointSigningKey.loadOrCreate(in: shared.appendingPathComponent("tenants/alpha/keys"))
        let log = try storeA.auditLog(tenant: "alpha", folder: shared, signingKey: key, clock: { time })
        let verification = try await log.verify()
        #expect(verification.isIntact, "\(verification.summary)")
        #expect(verification.checkpointCount == 1)
        #expect(verification.lastCheckpoint?.signature == .valid)

        // Readiness follows the store: B's closed store makes B unready, A stays ready.
        #expect(try await b.request("GET", "/readyz").status == 200)
        await storeB.close()
        let unready = try await b.request("GET", "/readyz")
        #expect(unready.status == 503)
        #expect(unready.problemCode == "not-ready")
        #expect(try await a.request("GET", "/readyz").status == 200)

        await a.stop()
        await b.stop()
        await storeA.close()
        try? FileManager.default.removeItem(at: shared)
    }
}
