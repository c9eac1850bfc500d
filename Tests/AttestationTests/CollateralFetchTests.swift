import Attestation
import CollateralHTTP
import CMKTesting
import Foundation
import SEVSNP
import Testing

/// A real HTTP server on loopback (Python's http.server) serving a folder laid out like AMD KDS.
final class LoopbackKDS {
    let process = Process()
    let root: URL
    let port: Int

    init(root: URL) throws {
        self.root = root
        port = Int.random(in: 20000...40000)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", root.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until it accepts connections (bounded).
        for _ in 0..<50 {
            if (try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/")!)) != nil { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw CocoaError(.fileReadUnknown)
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Stops the server: SIGTERM, then SIGKILL if it has not gone within two seconds. Polls `isRunning`
    /// rather than blocking in `waitUntilExit`, which can stall on a Swift concurrency thread.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<40 where process.isRunning { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }
}

@Suite("Collateral fetching over real HTTP", .serialized)
struct CollateralFetchTests {
    @Test("fetchMissing stores the VCEK, chain and CRL under the cache layout, then verification needs no network",
          .timeLimit(.minutes(3)))
    func fetchThenVerifyOffline() async throws {
        let fm = FileManager.default
        let work = fm.temporaryDirectory.appendingPathComponent("cmk-kds-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: work) }
        let v = try SNPVector("genoa-v5-oak")
        // The mirror: the same paths as KDS (http.server ignores the query string).
        let mirror = work.appendingPathComponent("mirror")
        let vcekPath = mirror.appendingPathComponent("vcek/v1/Genoa/" + v.report.chipID.map { String(format: "%02x", $0) }.joined())
        try fm.createDirectory(at: vcekPath.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(v.certificate.der).write(to: vcekPath)
        let chain = try SharedVectors.text("snp/roots/genoa_ask.pem") + SharedVectors.text("snp/roots/genoa_ark.pem")
        try chain.write(to: mirror.appendingPathComponent("vcek/v1/Genoa/cert_chain"), atomically: true, encoding: .utf8)
        let ca = try OpenSSLTestAuthority()
        defer { ca.remove() }
        try Data(try ca.crl(revoking: [])).write(to: mirror.appendingPathComponent("vcek/v1/Genoa/crl"))

        let server = try LoopbackKDS(root: mirror)
        defer { server.stop() }
        let store = SNPCollateralStore(directory: work.appendingPathComponent("cache"))
        let fetched = try await store.fetchMissing(
            for: v.report, product: .genoa, using: HTTPCollateralFetcher(), baseURL: server.baseURL)
        #expect(fetched.count == 3)
        #expect(fetched[0].contains("?blSPL=10&teeSPL=0&snpSPL=25&ucodeSPL=84"))
        // A second run finds everything cached.
        #expect(try await store.fetchMissing(for: v.report, product: .genoa, using: HTTPCollateralFetcher(), baseURL: server.baseURL).isEmpty)
        let offline = SNPVerifier(trustAnchors: try shippedAnchors.get(), collateral: store)
        // The mirror's CRL was not signed by AMD's Genoa ARK: it is refused in either mode, never ignored.
        #expect(code { _ = try offline.verify(SNPEvidence(report: v.report), options: v.options) } == .crlInvalid)
        try fm.removeItem(at: store.crlPath(product: .genoa, signer: .vcek))
        // Offline now: the VCEK comes from the cache; soft mode records the missing CRL.
        let result = try offline.verify(SNPEvidence(report: v.report), options: v.options)
        #expect(result.claims.product == .genoa)
        #expect(result.revocation.notCheckedReason != nil)
    }

    @Test("an HTTP error or an unparseable answer is an error and nothing is cached", .timeLimit(.minutes(3)))
    func fetchFailures() async throws {
        let fm = FileManager.default
        let work = fm.temporaryDirectory.appendingPathComponent("cmk-kds-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: work) }
        let mirror = work.appendingPathComponent("mirror")
        let v = try SNPVector("genoa-v5-oak")
        let vcekPath = mirror.appendingPathComponent("vcek/v1/Genoa/" + v.report.chipID.map { String(format: "%02x", $0) }.joined())
        try fm.createDirectory(at: vcekPath.deletingLastPathComponent(), withIntermediateDirectories: true)
        let server = try LoopbackKDS(root: mirror)
        defer { server.stop() }
        let store = SNPCollateralStore(directory: work.appendingPathComponent("cache"))
        await #expect(throws: (any Error).self) {
            _ = try await store.fetchMissing(for: v.report, product: .genoa, using: HTTPCollateralFetcher(), baseURL: server.baseURL)
        }
        try Data("<html>not a certificate</html>".utf8).write(to: vcekPath)
        await #expect(throws: (any Error).self) {
            _ = try await store.fetchMissing(for: v.report, product: .genoa, using: HTTPCollateralFetcher(), baseURL: server.baseURL)
        }
        #expect(!fm.fileExists(atPath: store.vcekPath(product: .genoa, chipID: v.report.chipID, reportedTCB: v.report.reportedTCB).path))
    }
}
