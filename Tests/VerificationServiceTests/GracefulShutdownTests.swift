import CMKTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The real `cmk serve` process: it binds, answers, and stops with exit status 0 on SIGTERM.
@Suite("cmk serve: the command", .timeLimit(.minutes(3)))
struct GracefulShutdownTests {
    @Test("cmk serve answers /healthz and exits 0 on SIGTERM; a bad flag exits 2")
    func sigterm() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-serve-cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let token = folder.appendingPathComponent("alpha.token")
        try "alpha-administrator-token-0001\n".write(to: token, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = try BuiltCMK.executable()
        process.arguments = [
            "serve", "--port", "0", "--data-dir", folder.appendingPathComponent("data").path, "--tenant", "alpha=\(token.path)",
            "--policy", SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml").path,
        ]
        process.environment = ProcessInfo.processInfo.environment.merging(["CMK_STATE_DIR": folder.path]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Read standard error until the listening line names the port.
        let port: Int = try await offPool {
            var text = ""
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let chunk = errors.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
                if let range = text.range(of: "listening on http://127.0.0.1:") {
                    let digits = text[range.upperBound...].prefix { $0.isNumber }
                    if let port = Int(digits), text[range.upperBound...].dropFirst(digits.count).first == "\n" { return port }
                }
            }
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no listening line: \(text)"])
        }
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect(String(decoding: data, as: UTF8.self).contains("ok"))
        kill(process.processIdentifier, SIGTERM)
        try await offPool { waitForExit(process, timeout: 30); return 0 }
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)

        let bad = try await offPool { try BuiltCMK.run(["serve", "--port", "70000"]) }
        #expect(bad.status == 2)
        let badTenant = try await offPool { try BuiltCMK.run(["serve", "--tenant", "Alpha=/nonexistent", "--port", "0"]) }
        #expect(badTenant.status == 2)
        #expect(badTenant.standardError.contains("token file") || badTenant.standardError.contains("tenant"))
        // A vTPM EK chain that cannot be read, or that holds no certificate: refused before listening.
        let chainFolder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-ekchain-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: chainFolder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: chainFolder) }
        let empty = chainFolder.appendingPathComponent("empty.pem")
        try Data("no certificate here\n".utf8).write(to: empty)
        // Two unrelated self-signed roots as "intermediate, root": the first is not signed by the second.
        for name in ["first", "second"] {
            let run = try ExternalTool.run(
                URL(fileURLWithPath: "/usr/bin/openssl"),
                ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                 chainFolder.appendingPathComponent("\(name).key").path, "-subj", "/CN=\(name)", "-days", "1", "-out",
                 chainFolder.appendingPathComponent("\(name).pem").path])
            try #require(run.status == 0, "\(run.standardError)")
        }
        let unrelated = chainFolder.appendingPathComponent("unrelated.pem")
        try Data(
            try Data(contentsOf: chainFolder.appendingPathComponent("first.pem"))
                + Data(contentsOf: chainFolder.appendingPathComponent("second.pem"))
        ).write(to: unrelated)
        for (path, reason) in [
            ("/nonexistent/chain.pem", "cannot read"), (empty.path, "no PEM certificate"),
            (unrelated.path, "certificate 1 is not signed by certificate 2"),
        ] {
            let badChain = try await offPool {
                try BuiltCMK.run(["serve", "--tpm-ek-chain", path, "--port", "0", "--data-dir", chainFolder.appendingPathComponent("data").path])
            }
            #expect(badChain.status == 2)
            #expect(badChain.standardError.contains(reason), "\(badChain.standardError)")
        }
    }
}
