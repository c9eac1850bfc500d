import CMKTesting
import Crypto
import Foundation
import Testing
import VerificationService

/// Every kind of bad input is a precise 4xx with an RFC 9457 body, never a 5xx.
@Suite("cmk serve: bad input and limits", .serialized, .timeLimit(.minutes(5)))
struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let status: Int
        let code: String
        /// Builds the request body from a fresh nonce.
        let body: @Sendable (String) -> Data
        var testDescription: String { name }
    }

    static func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    static func snp(_ nonce: String, report: String = Data(repeating: 0, count: 1184).base64EncodedString(),
                    policy: String = "development", extra: [String: Any] = [:]) -> Data {
        var evidence: [String: Any] = ["type": "sev-snp", "report": report]
        for (key, value) in extra { evidence[key] = value }
        return json(["tenant": "alpha", "nonce": nonce, "policy": policy, "evidence": evidence])
    }

    static let cases: [Case] = [
        Case(name: "malformed JSON", status: 400, code: "malformed-json") { _ in Data("{\"nonce\": ".utf8) },
        Case(name: "a JSON array, not an object", status: 400, code: "malformed-json") { _ in Data("[1,2]".utf8) },
        Case(name: "a required field missing", status: 400, code: "malformed-json") { nonce in json(["nonce": nonce, "policy": "development"]) },
        Case(name: "a field of the wrong type", status: 400, code: "malformed-json") { nonce in
            json(["nonce": nonce, "policy": 7, "evidence": ["type": "sev-snp"]])
        },
        Case(name: "report not base64", status: 400, code: "bad-base64") { nonce in snp(nonce, report: "not*base64!") },
        Case(name: "report of the wrong size", status: 400, code: "report-size") { nonce in
            snp(nonce, report: Data(repeating: 1, count: 1000).base64EncodedString())
        },
        Case(name: "nonce not hex", status: 400, code: "bad-nonce") { _ in snp("zz") },
        Case(name: "nonce never issued", status: 400, code: "nonce-unknown") { _ in snp(String(repeating: "ab", count: 32)) },
        Case(name: "unknown policy", status: 404, code: "unknown-policy") { nonce in snp(nonce, policy: "no-such-policy") },
        Case(name: "unknown evidence type", status: 400, code: "unknown-evidence-type") { nonce in
            json(["tenant": "alpha", "nonce": nonce, "policy": "development", "evidence": ["type": "sgx"]])
        },
        Case(name: "unknown tenant", status: 404, code: "unknown-tenant") { nonce in
            json(["tenant": "gamma", "nonce": nonce, "policy": "development", "evidence": ["type": "sev-snp"]])
        },
        Case(name: "a VCEK that is not a certificate", status: 422, code: "bad-certificate") { nonce in
            snp(nonce, extra: ["vcek": Data("not a certificate".utf8).base64EncodedString()])
        },
        Case(name: "TDX evidence for an SEV-SNP policy", status: 422, code: "evidence-type-mismatch") { nonce in
            json(["tenant": "alpha", "nonce": nonce, "policy": "development",
                  "evidence": ["type": "tdx", "quote": Data(try! SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")).base64EncodedString()]])
        },
    ]

    @Test("each bad request gets its own 4xx problem", arguments: cases)
    func badRequest(_ testCase: Case) async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        #expect(try await live.putPolicy(try ServiceFlowTests.developmentPolicy, id: "development").status == 201)
        let nonce = try await live.challenge()
        let result = try await live.request("POST", "/v1/attest", body: testCase.body(nonce), headers: ["Content-Type": "application/json"])
        #expect(result.status == testCase.status, "\(result.text)")
        #expect(result.problemCode == testCase.code, "\(result.text)")
        #expect(result.contentType.hasPrefix("application/problem+json"))
        #expect(result.object["status"] as? Int == testCase.status)
        #expect((result.object["detail"] as? String)?.isEmpty == false)
    }

    @Test("a report without VCEK, certificate table or cached VCEK is a 422 naming the VCEK")
    func missingVCEK() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        #expect(try await live.putPolicy(try ServiceFlowTests.developmentPolicy, id: "development").status == 201)
        let nonce = try await live.challenge()
        let key = Array(P256.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
        try await ServiceFlowTests.warmSimulatedPlatform()
        var body = try ServiceFlowTests.simulatedRequest(nonce: nonce, publicKey: key)
        var evidence = body["evidence"] as! [String: Any]
        evidence["certificate_table"] = nil
        body["evidence"] = evidence
        let result = try await live.request("POST", "/v1/attest", json: body)
        #expect(result.status == 422, "\(result.text)")
        #expect(result.problemCode == "missing-collateral")
        #expect(result.object["missing"] as? [String] == ["vcek"], "\(result.text)")
    }

    @Test("a TDX quote without collateral, none cached, is a 422 naming the missing items")
    func missingTDXCollateral() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let policy = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/development-tdx.yaml"), encoding: .utf8)
        let put = try await live.putPolicy(policy, id: "development-tdx")
        #expect(put.status == 201, "\(put.text)")
        let nonce = try await live.challenge()
        let result = try await live.request("POST", "/v1/attest", json: [
            "tenant": "alpha", "nonce": nonce, "policy": "development-tdx",
            "evidence": ["type": "tdx", "quote": Data(try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")).base64EncodedString()],
        ])
        #expect(result.status == 422, "\(result.text)")
        #expect(result.problemCode == "missing-collateral")
        #expect((result.object["missing"] as? [String])?.isEmpty == false, "\(result.text)")
    }

    @Test("a TDX quote that names no platform is a 422; a cached collateral file that does not parse is a 500 naming it, never 'missing'")
    func unreadableTDXCollateral() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let policy = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/development-tdx.yaml"), encoding: .utf8)
        #expect(try await live.putPolicy(policy, id: "development-tdx").status == 201)
        let quote = try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/quote.bin")
        func attest(_ bytes: [UInt8]) async throws -> HTTPResult {
            try await live.request("POST", "/v1/attest", json: [
                "tenant": "alpha", "nonce": try await live.challenge(), "policy": "development-tdx",
                "evidence": ["type": "tdx", "quote": Data(bytes).base64EncodedString()],
            ])
        }
        let truncated = try await attest(Array(quote.prefix(700)))
        #expect(truncated.status == 422, "\(truncated.text)")
        #expect(truncated.problemCode == "malformed-quote")
        #expect((truncated.object["detail"] as? String)?.contains("FMSPC") == true)

        // The vector's platform (FMSPC B0C06F000000, its tcbinfo.json) with a corrupt issuer chain in the cache.
        let folder = live.directory.appendingPathComponent("empty-collateral/intel/tdx/b0c06f000000")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/tcbinfo.json")).write(to: folder.appendingPathComponent("tcbinfo.json"))
        try Data("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)
            .write(to: folder.appendingPathComponent("tcb_info_issuer_chain.pem"))
        let corrupt = try await attest(quote)
        #expect(corrupt.status == 500, "\(corrupt.text)")
        #expect(corrupt.problemCode == "collateral-cache-unreadable")
        #expect((corrupt.object["detail"] as? String)?.contains("b0c06f000000") == true, "\(corrupt.text)")
    }

    static let slowClient = #"""
        import socket, sys, time
        port = int(sys.argv[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        body = b'{"tenant": "alpha", "nonce": "'
        s.sendall(b"POST /v1/attest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + b"Content-Length: 4000\r\n\r\n" + body)
        start = time.monotonic()
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
        print(received.split(b"\r\n")[0].decode() if received else "CLOSED")
        print(round(time.monotonic() - start, 1))
        """#

    @Test("a request body that stops arriving is answered 408 over the socket, not dropped")
    func slowBody() async throws {
        let live = try await LiveServer.start { $0.requestTimeout = 2 }
        defer { Task { await live.stop() } }
        let port = live.port
        let output = try await offPool { try ExternalTool.run(ExternalTool.python, ["-c", Self.slowClient, String(port)], timeout: 90) }
        #expect(output.status == 0, "\(output.standardError)")
        let lines = output.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first == "HTTP/1.1 408 Request Timeout", "\(output.standardOutput)")
        // Still serving: the stalled connection took nothing else down.
        #expect(try await live.request("GET", "/healthz").status == 200)
    }

    @Test("a body over the limit is 413; a client over its rate is 429 with Retry-After")
    func limits() async throws {
        let live = try await LiveServer.start { configuration in
            configuration.maximumBodySize = 4096
            configuration.rateLimit = .init(requestsPerSecond: 0.5, burst: 3)
        }
        defer { Task { await live.stop() } }
        let large = try await live.request("POST", "/v1/attest", body: Data(repeating: 0x20, count: 100_000))
        #expect(large.status == 413)
        #expect(large.problemCode == "body-too-large")
        var statuses: [Int] = []
        var limited: HTTPResult?
        for _ in 0..<5 {
            let result = try await live.request("POST", "/v1/challenge", json: ["tenant": "alpha"])
            statuses.append(result.status)
            if result.status == 429 { limited = result }
        }
        #expect(statuses.contains(429), "\(statuses)")
        #expect(limited?.problemCode == "rate-limited")
        #expect(limited?.headers["retry-after"] != nil)
        // Probes are never limited.
        #expect(try await live.request("GET", "/healthz").status == 200)
        #expect(try await live.request("GET", "/readyz").status == 200)
    }

    @Test("unknown paths and methods are problems too")
    func unknownRoutes() async throws {
        let live = try await LiveServer.start()
        defer { Task { await live.stop() } }
        let missing = try await live.request("GET", "/v1/nothing")
        #expect(missing.status == 404)
        #expect(missing.contentType.hasPrefix("application/problem+json"))
        let wrongMethod = try await live.request("DELETE", "/v1/attest")
        #expect((400..<500).contains(wrongMethod.status))
        #expect(wrongMethod.contentType.hasPrefix("application/problem+json"))
    }
}
