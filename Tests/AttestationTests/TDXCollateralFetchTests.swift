import Attestation
import BinaryFormat
import CMKTesting
import Foundation
import TDX
import Testing

/// A local stand-in for Intel PCS v4: `python3` serving one vector's collateral at the PCS paths, with the issuer
/// chains URL-encoded in the headers PCS uses, and the Root CA CRL at `/IntelSGXRootCA.der`. Anything else, an
/// FMSPC other than the vector's, and the paths listed in `failing` answer 404.
final class LocalPCS {
    let process = Process()
    let baseURL: String

    static let script = #"""
        import http.server, json, os, sys, urllib.parse
        folder, fmspc, failing = sys.argv[1], sys.argv[2], set(sys.argv[3].split(",")) - {""}
        def read(name): return open(os.path.join(folder, name), "rb").read()
        def chain(name): return urllib.parse.quote(read(name).decode())
        routes = {  # path: (required query, body file, issuer-chain header, chain file)
            "/tdx/certification/v4/tcb":
                ({"fmspc": fmspc}, "tcbinfo.json", "TCB-Info-Issuer-Chain", "tcb_info_issuer_chain.pem"),
            "/tdx/certification/v4/qe/identity":
                ({}, "qeidentity.json", "SGX-Enclave-Identity-Issuer-Chain", "qe_identity_issuer_chain.pem"),
            "/sgx/certification/v4/pckcrl":
                ({"ca": "platform", "encoding": "der"}, "pck_crl.der", "SGX-PCK-CRL-Issuer-Chain",
                 "pck_crl_issuer_chain.pem"),
            "/IntelSGXRootCA.der": ({}, "root_ca_crl.der", None, None),
        }
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                route = routes.get(url.path)
                if route is None or url.path in failing or any(query.get(k) != v for k, v in route[0].items()):
                    self.send_response(404); self.end_headers(); return
                body = read(route[1])
                self.send_response(200)
                if route[2] and route[2] not in failing: self.send_header(route[2], chain(route[3]))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args): pass
        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        with open(sys.argv[4] + ".part", "w") as f: f.write(str(server.server_address[1]))
        os.rename(sys.argv[4] + ".part", sys.argv[4])
        server.serve_forever()
        """#

    init(vector: String, fmspc: String, failing: [String] = []) throws {
        // The port comes back in a file, not a pipe: no pipe end for other children of the test process to inherit.
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-pcs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: portFile) }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", Self.script, SharedVectors.url("tdx/\(vector)").path, fmspc,
            failing.joined(separator: ","), portFile.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var port: String?
        for _ in 0..<200 where port == nil && process.isRunning {
            port = try? String(contentsOf: portFile, encoding: .utf8)
            if port == nil { usleep(50_000) }
        }
        baseURL = "http://127.0.0.1:\(try #require(port))"
    }

    deinit {
        // SIGKILL: a child spawned from the test process inherits its blocked signals, SIGTERM among them.
        kill(process.processIdentifier, SIGKILL)
        waitForExit(process, timeout: 10)
    }
}

@Suite("Fetching TDX collateral from a PCS v4 server", .serialized)
struct TDXCollateralFetchTests {
    static func scratchFolder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("cmk-tdx-fetch-\(UUID().uuidString)")
    }

    @Test("the fetched folder verifies the vector's quote offline exactly as the vector's own folder does",
          .timeLimit(.minutes(3)))
    func fetchThenVerify() async throws {
        let v = try TDXVector("gotdxguest-v5-td15")
        let platform = try TDXCollateralFetch.platform(of: v.quote)
        #expect(Hex.encode(platform.fmspc) == "90c06f000000")
        #expect(platform.ca == "platform")
        let server = try LocalPCS(vector: v.name, fmspc: Hex.encode(platform.fmspc))
        let folder = Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let fetch = TDXCollateralFetch(baseURL: server.baseURL, rootCACRLURL: server.baseURL + "/IntelSGXRootCA.der")
        let files = try await fetch.fetch(
            fmspc: platform.fmspc, ca: platform.ca, using: CurlCollateralTransport(), into: folder)
        #expect(Set(files.map(\.lastPathComponent)) == Set(TDXCollateral.fileNames + ["pck_crl_issuer_chain.pem"]))
        for name in TDXCollateral.fileNames + ["pck_crl_issuer_chain.pem"] {
            let fetched = try Data(contentsOf: folder.appendingPathComponent(name))
            #expect(fetched == (try Data(contentsOf: SharedVectors.url("tdx/\(v.name)/\(name)"))), "\(name)")
        }
        // Verification reads only the folder: no server, no network.
        let verifier = TDXVerifier(trustAnchors: try shippedAnchors.get())
        let options = TDXVerificationOptions(evaluationTime: v.time)
        let fetched = try verifier.verify(v.quote, collateral: try TDXCollateral(directory: folder), options: options)
        let reference = try v.verify()
        #expect(fetched.valid)
        #expect(fetched.checks == reference.checks)
        #expect(fetched.tcbStatus == "UpToDate")
        #expect(fetched.tcbStatus == reference.tcbStatus && fetched.qeTCBStatus == reference.qeTCBStatus)
    }

    @Test("a status other than 200, or a missing issuer-chain header, fails naming the URL and writes nothing",
          .timeLimit(.minutes(3)))
    func failures() async throws {
        let v = try TDXVector("gotdxguest-v5-td15")
        let platform = try TDXCollateralFetch.platform(of: v.quote)
        let cases: [(failing: [String], fmspc: String, expected: String)] = [
            ([], "00606a000000", "HTTP 404"),
            (["/tdx/certification/v4/qe/identity"], Hex.encode(platform.fmspc), "qe/identity answered HTTP 404"),
            (["SGX-PCK-CRL-Issuer-Chain"], Hex.encode(platform.fmspc), "sent no SGX-PCK-CRL-Issuer-Chain header"),
            (["/IntelSGXRootCA.der"], Hex.encode(platform.fmspc), "IntelSGXRootCA.der answered HTTP 404"),
        ]
        for test in cases {
            let server = try LocalPCS(vector: v.name, fmspc: test.fmspc, failing: test.failing)
            let folder = Self.scratchFolder()
            defer { try? FileManager.default.removeItem(at: folder) }
            let fetch = TDXCollateralFetch(
                baseURL: server.baseURL + "/", rootCACRLURL: server.baseURL + "/IntelSGXRootCA.der")
            do throws(AttestationError) {
                try await fetch.fetch(
                    fmspc: platform.fmspc, ca: platform.ca, using: CurlCollateralTransport(), into: folder)
                Issue.record("\(test.failing) fetched")
            } catch {
                #expect(error.code == .missingCollateral)
                #expect(error.reason.contains(test.expected), "\(error.reason)")
            }
            #expect(!FileManager.default.fileExists(atPath: folder.path))
        }
    }

    @Test("cmk evidence fetch-collateral, run as a user runs it: fetch, then verify offline; a 404 is status 1, a bad URL 2",
          .timeLimit(.minutes(3)))
    func commandLine() throws {
        let v = try TDXVector("dcapqvl-v4-uptodate")
        let fmspc = Hex.encode(try TDXCollateralFetch.platform(of: v.quote).fmspc)
        let quote = SharedVectors.url("tdx/\(v.name)/quote.bin").path
        let folder = Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let server = try LocalPCS(vector: v.name, fmspc: fmspc)
        let fetched = try BuiltCMK.run([
            "evidence", "fetch-collateral", quote, "--collateral", folder.path, "--base-url", server.baseURL,
            "--root-crl-url", server.baseURL + "/IntelSGXRootCA.der", "--json",
        ])
        #expect(fetched.status == 0, "\(fetched.standardError)")
        let output = try #require(
            try JSONSerialization.jsonObject(with: Data(fetched.standardOutput.utf8)) as? [String: Any])
        #expect(output["fmspc"] as? String == fmspc)
        #expect(Set(output["files"] as? [String] ?? []) == Set(TDXCollateral.fileNames + ["pck_crl_issuer_chain.pem"]))
        let verified = try BuiltCMK.run([
            "evidence", "verify", "--tdx", quote, "--collateral", folder.path,
            "--at", ISO8601DateFormatter().string(from: v.time), "--json",
        ])
        #expect(verified.status == 0, "\(verified.standardOutput)\(verified.standardError)")
        #expect(verified.standardOutput.contains("\"valid\" : true"))

        let failing = try LocalPCS(vector: v.name, fmspc: fmspc, failing: ["/tdx/certification/v4/qe/identity"])
        let other = Self.scratchFolder()
        let refused = try BuiltCMK.run([
            "evidence", "fetch-collateral", quote, "--collateral", other.path, "--base-url", failing.baseURL,
            "--root-crl-url", failing.baseURL + "/IntelSGXRootCA.der",
        ])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("answered HTTP 404"), "\(refused.standardError)")
        #expect(!FileManager.default.fileExists(atPath: other.path))

        let usage = try BuiltCMK.run(["evidence", "fetch-collateral", quote, "--base-url", "ftp://example"])
        #expect(usage.status == 2)
        #expect(usage.standardError.contains("is not an http(s) URL"))
    }

    @Test("curl's header dump is read from the last response block, names as sent")
    func curlHeaders() {
        let dump = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTCB-Info-Issuer-Chain: a%20b\r\nX: y: z\r\n\r\n"
        let headers = CurlCollateralTransport.headers(dump)
        #expect(headers == ["TCB-Info-Issuer-Chain": "a%20b", "X": "y: z"])
        let response = CollateralResponse(status: 200, headers: headers, body: [])
        #expect(response.header("tcb-info-issuer-chain") == "a%20b")
    }
}
