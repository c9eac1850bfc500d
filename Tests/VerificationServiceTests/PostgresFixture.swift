import CMKTesting
import Foundation
import Synchronization
import VerificationService

/// The real PostgreSQL server the storage and replica tests use: `$CMK_TEST_POSTGRES_URL` when scripts/test started
/// one, otherwise one started here (scripts/test-postgres) for this test process and stopped when it exits.
/// Each test gets a database of its own.
enum PostgresFixture {
    struct Server: Sendable {
        let url: String
        let folder: String?
    }

    static let started: Result<Server, any Error> = Result {
        if let url = ProcessInfo.processInfo.environment["CMK_TEST_POSTGRES_URL"], !url.isEmpty {
            return Server(url: url, folder: nil)
        }
        let output = try ExternalTool.run(script, ["start"], timeout: 180)
        let fields = output.standardOutput.split(whereSeparator: \.isWhitespace).map(String.init)
        guard output.status == 0, fields.count == 2 else {
            throw ServiceError("scripts/test-postgres could not start PostgreSQL: \(output.standardError)")
        }
        atexit { PostgresFixture.stop() }
        return Server(url: fields[1], folder: fields[0])
    }

    /// The operation limit of the stores the concurrency tests open. Those tests queue dozens of writers on one
    /// advisory lock while QEMU boots share the CI host's 2 cores, so the last writer can wait longer than the
    /// production default (10 s) without anything being wrong; what that limit does when the server is gone is
    /// StoreOutageTests' subject.
    static let busyHostLimit: Duration = .seconds(120)

    static var script: URL { SharedVectors.repositoryRoot.appendingPathComponent("scripts/test-postgres") }

    static func stop() {
        guard case .success(let server) = started, let folder = server.folder else { return }
        _ = try? ExternalTool.run(script, ["stop", folder], timeout: 120)
    }

    /// A new, empty database on the server: its URL.
    static func freshDatabase() async throws -> String {
        try await offPool("postgres fixture") {
            let server = try started.get()
            let name = "cmk_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let output = try ExternalTool.run(script, ["createdb", server.url, name])
            guard output.status == 0 else { throw ServiceError("CREATE DATABASE \(name) failed: \(output.standardError)") }
            guard let slash = server.url.range(of: "/", options: .backwards) else { throw ServiceError("bad URL \(server.url)") }
            return server.url[..<slash.lowerBound] + "/" + name
        }
    }
}

/// The two stores every storage test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres
    var description: String { rawValue }

    /// Opens `count` stores over one shared database (as `count` replicas would), in `folder` for SQLite.
    func open(_ count: Int, folder: URL) async throws -> [any ServiceStore] {
        switch self {
        case .sqlite:
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            return try (0..<count).map { _ in try SQLiteServiceStore(path: folder.appendingPathComponent("serve.sqlite")) }
        case .postgres:
            let url = try await PostgresFixture.freshDatabase()
            var stores: [any ServiceStore] = []
            for _ in 0..<count { stores.append(try await PostgresServiceStore.connect(url: url, checkpointInterval: 10, operationLimit: PostgresFixture.busyHostLimit)) }
            return stores
        }
    }
}
