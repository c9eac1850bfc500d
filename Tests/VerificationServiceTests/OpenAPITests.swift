import CMKTesting
import Foundation
import Testing
import VerificationService

/// The OpenAPI document is the one in docs/, it is valid OpenAPI 3.1, and the live server keeps to it under
/// schemathesis' generated requests: no 5xx, every status, content type and body as documented.
@Suite("cmk serve: OpenAPI document and schemathesis", .serialized, .timeLimit(.minutes(15)))
struct OpenAPITests {
    @Test("the served /openapi.yaml is docs/openapi.yaml")
    func servedDocumentIsTheDocs() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let served = try await live.request("GET", "/openapi.yaml")
        #expect(served.status == 200)
        let docs = try String(contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        #expect(served.text == docs)
        #expect(served.text.hasPrefix("openapi: 3.1.0"))
    }

    @Test("schemathesis finds no 5xx and no response outside the document")
    func schemathesis() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        #expect(try await live.putPolicy(try ServiceFlowTests.developmentPolicy, id: "development").status == 201)
        let tool = SharedVectors.cacheDirectory.appendingPathComponent("venv/bin/schemathesis")
        try #require(FileManager.default.isExecutableFile(atPath: tool.path), "schemathesis is missing; run scripts/setup")
        let reports = live.directory.appendingPathComponent("schemathesis")
        // Path parameters pinned to a tenant and policy that exist, so the administration endpoints are reached with
        // a valid token (random tenants only ever get 403); the bodies and queries stay generated.
        let config = live.directory.appendingPathComponent("schemathesis.toml")
        try "[parameters]\n\"path.tenant\" = \"alpha\"\n\"path.id\" = \"development\"\n".write(to: config, atomically: true, encoding: .utf8)
        let output = try await offPool {
            try ExternalTool.run(tool, [
                "--config-file", config.path, "run", "\(live.base)/openapi.yaml",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "-H", "Authorization: Bearer \(LiveServer.tokens["alpha"]!)",
                "--max-examples", "25", "--seed", "20261128", "--report-dir", reports.path,
                "--suppress-health-check", "all",
            ], environment: ProcessInfo.processInfo.environment.merging(["NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""]) { $1 },
            // In the server's temporary folder: schemathesis keeps its cache (.schemathesis/) in its working directory.
            timeout: 600, workingDirectory: live.directory)
        }
        #expect(output.status == 0, "schemathesis failed:\n\(output.standardOutput.suffix(6000))\n\(output.standardError.suffix(2000))")
        // It really ran: every operation was exercised.
        #expect(output.standardOutput.contains("Tested: 12"), "\(output.standardOutput.suffix(3000))")
        #expect(!output.standardOutput.contains("Authentication failed"), "\(output.standardOutput.suffix(3000))")
        let metrics = try await live.request("GET", "/metrics")
        #expect(!metrics.text.contains("status=\"500\""))
    }
}
