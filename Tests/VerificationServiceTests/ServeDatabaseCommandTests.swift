import CMKTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The real `cmk serve` process over PostgreSQL ($CMK_SERVE_DATABASE_URL): what one process stores, a second one
/// with another data folder finds there.
@Suite("cmk serve --database: the command over PostgreSQL", .serialized, .timeLimit(.minutes(3)))
struct ServeDatabaseCommandTests {
    /// Starts `cmk serve` with a fresh data folder; returns the process, its port and what it printed before listening.
    static func start(database: String, token: URL, folder: URL) async throws -> (Process, Int, String) {
        let process = Process()
        process.executableURL = try BuiltCMK.executable()
        process.arguments = [
            "serve", "--port", "0", "--data-dir", folder.appendingPathComponent("data-\(UUID().uuidString)").path,
            "--tenant", "alpha=\(token.path)",
            "--policy", SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml").path,
        ]
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["CMK_STATE_DIR": folder.path, "CMK_SERVE_DATABASE_URL": database]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let (port, text): (Int, String) = try await offPool {
            var text = ""
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline {
                let chunk = errors.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
                if let range = text.range(of: "listening on http://127.0.0.1:") {
                    let digits = text[range.upperBound...].prefix { $0.isNumber }
                    if let port = Int(digits), text[range.upperBound...].dropFirst(digits.count).first == "\n" { return (port, text) }
                }
            }
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no listening line: \(text)"])
        }
        return (process, port, text)
    }

    static func stop(_ process: Process) async throws {
        kill(process.processIdentifier, SIGTERM)
        try await offPool { waitForExit(process, timeout: 30); return 0 }
    }

    @Test("a policy loaded by one cmk serve is in PostgreSQL for the next; /readyz answers; a bad URL exits 2")
    func database() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-serve-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let token = folder.appendingPathComponent("alpha.token")
        try "alpha-administrator-token-0001\n".write(to: token, atomically: true, encoding: .utf8)
        let url = try await PostgresFixture.freshDatabase()

        let (first, port, printed) = try await Self.start(database: url, token: token, folder: folder)
        #expect(printed.contains("store postgres://postgres@"), "\(printed)")
        #expect(printed.contains("loaded for tenant alpha"), "\(printed)")
        let (_, ready) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/readyz")!)
        #expect((ready as? HTTPURLResponse)?.statusCode == 200)
        try await Self.stop(first)
        #expect(first.terminationStatus == 0)

        // Another data folder, the same database: the policy version is already there.
        let (second, _, printedAgain) = try await Self.start(database: url, token: token, folder: folder)
        #expect(printedAgain.contains("already stored for tenant alpha"), "\(printedAgain)")
        try await Self.stop(second)
        #expect(second.terminationStatus == 0)

        let bad = try await offPool { try BuiltCMK.run(["serve", "--port", "0", "--database", "mysql://u@h/db"]) }
        #expect(bad.status == 2)
        #expect(bad.standardError.contains("postgres://"), "\(bad.standardError)")
    }
}
