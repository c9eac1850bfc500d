import CMKTesting
import Foundation
import Testing
import VerificationService

/// `cmk serve --database` while the PostgreSQL server itself stops and starts again: the service stays up, says it is
/// not ready, refuses attestations with a 503 that names the cause (never a 500, never a hang), and recovers by
/// itself once the server is back.
@Suite("cmk serve when its PostgreSQL server stops", .serialized, .timeLimit(.minutes(5)))
struct StoreOutageTests {
    /// A PostgreSQL server of this test's own (stopping the shared one would fail the other tests): folder and URL.
    static func privateServer() async throws -> (folder: String, url: String) {
        try await offPool("start a private PostgreSQL") {
            let started = try ExternalTool.run(PostgresFixture.script, ["start"], timeout: 180)
            let fields = started.standardOutput.split(whereSeparator: \.isWhitespace).map(String.init)
            guard started.status == 0, fields.count == 2 else {
                throw ServiceError("scripts/test-postgres could not start PostgreSQL: \(started.standardError)")
            }
            let created = try ExternalTool.run(PostgresFixture.script, ["createdb", fields[1], "cmk_outage"])
            guard created.status == 0 else { throw ServiceError("CREATE DATABASE failed: \(created.standardError)") }
            let slash = fields[1].range(of: "/", options: .backwards)!
            return (fields[0], fields[1][..<slash.lowerBound] + "/cmk_outage")
        }
    }

    static func postgres(_ command: String, _ folder: String) async throws {
        let output = try await offPool("postgres \(command)") {
            try ExternalTool.run(PostgresFixture.script, [command, folder], timeout: 120)
        }
        guard output.status == 0 else { throw ServiceError("scripts/test-postgres \(command) failed: \(output.standardError)") }
    }

    @Test("PostgreSQL stopped: /readyz 503, attest and challenge a 503 store-unavailable problem, health still 200; restarted: attestations succeed again and the audit chain is whole")
    func stoppedAndRestarted() async throws {
        let expected = try SharedVectors.json("snp/genoa-v5-oak/expected.json")
        let time = try #require((expected["verify_at_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let (folder, url) = try await Self.privateServer()
        do {
            let store = try await PostgresServiceStore.connect(url: url, checkpointInterval: 2, operationLimit: .seconds(15))
            let server = try await LiveServer.start(at: time, store: store)
            let report = Data(try SharedVectors.bytes("snp/genoa-v5-oak/report.bin")).base64EncodedString()
            let vcek = Data(try SharedVectors.bytes("snp/genoa-v5-oak/vcek.der")).base64EncodedString()
            func attest(_ nonce: String) async throws -> HTTPResult {
                try await server.request("POST", "/v1/attest", json: [
                    "tenant": "alpha", "nonce": nonce, "policy": "vectors",
                    "evidence": ["type": "sev-snp", "report": report, "vcek": vcek],
                ])
            }
            #expect(try await server.putPolicy(try ServiceFlowTests.vectorPolicy(), id: "vectors").status == 201)
            let before = try await attest(try await server.challenge())
            #expect(before.status == 200, "\(before.text)")
            let pending = try await server.challenge()
            #expect(try await server.request("GET", "/readyz").status == 200)

            try await Self.postgres("halt", folder)
            let unready = try await server.request("GET", "/readyz")
            #expect(unready.status == 503)
            #expect(unready.problemCode == "not-ready")
            let refused = try await attest(pending)
            #expect(refused.status == 503, "\(refused.text)")
            #expect(refused.problemCode == "store-unavailable")
            #expect(refused.contentType == "application/problem+json")
            #expect(refused.headers["retry-after"] == "5")
            #expect(!refused.text.contains("127.0.0.1"), "the answer names the database's location: \(refused.text)")
            let noNonce = try await server.request("POST", "/v1/challenge", json: ["tenant": "alpha"])
            #expect(noNonce.status == 503, "\(noNonce.text)")
            #expect(noNonce.problemCode == "store-unavailable")
            #expect(try await server.request("GET", "/healthz").status == 200)

            try await Self.postgres("restart", folder)
            // The connection pool retries with a growing back-off (at most a few seconds after an outage this short).
            var ready = false
            for _ in 0..<120 where !ready {
                ready = try await server.request("GET", "/readyz").status == 200
                if !ready { try await Task.sleep(for: .milliseconds(500)) }
            }
            #expect(ready, "/readyz did not recover within 60 s of the restart")
            // The nonce issued before the outage was not spent by the refused attempt: nothing was recorded then.
            let resumed = try await attest(pending)
            #expect(resumed.status == 200, "\(resumed.text)")
            #expect(resumed.object["verdict"] as? String == "admit")
            let after = try await attest(try await server.challenge())
            #expect(after.status == 200, "\(after.text)")
            let audit = try await server.request(
                "GET", "/v1/tenants/alpha/audit/report?format=json", token: LiveServer.tokens["alpha"])
            let integrity = try #require(audit.object["integrity"] as? [String: Any])
            #expect(integrity["intact"] as? Bool == true, "\(integrity)")
            let records = try await server.request(
                "GET", "/v1/tenants/alpha/audit/records?order=oldest-first", token: LiveServer.tokens["alpha"])
            #expect((records.object["records"] as? [[String: Any]])?.compactMap { $0["sequence"] as? Int } == [1, 2, 3, 4])
            await server.stop()
            await store.close()
        } catch {
            try? await Self.postgres("stop", folder)
            throw error
        }
        try await Self.postgres("stop", folder)
    }
}
