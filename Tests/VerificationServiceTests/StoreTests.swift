import AttestationPolicy
import AuditLog
import CMKTesting
import Foundation
import Testing
import VerificationService

/// The storage contract, against the embedded SQLite store and a real PostgreSQL server alike: nonces spent once
/// (also by concurrent presenters through different connections, as replicas would), versioned policies, and each
/// tenant's audit chain intact under concurrent appenders.
@Suite("cmk serve storage: SQLite and PostgreSQL", .timeLimit(.minutes(5)))
struct StoreTests {
    static func folder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("cmk-store-\(UUID().uuidString)")
    }

    static func nonce() -> String { (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }

    static func close(_ stores: [any ServiceStore], _ folder: URL) async {
        for store in stores { await store.close() }
        try? FileManager.default.removeItem(at: folder)
    }

    @Test("a nonce is fresh once, then reused; unknown to another tenant; expired after its lifetime", arguments: StoreKind.allCases)
    func nonceLifecycle(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(2, folder: folder)
        let (a, b) = (stores[0], stores[1])
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let nonce = Self.nonce()
        try await a.issueNonce(nonce, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60))
        #expect(try await b.consumeNonce(nonce, tenant: "beta", at: now) == .unknown)
        #expect(try await b.consumeNonce(nonce, tenant: "alpha", at: now.addingTimeInterval(1)) == .fresh(issuedAt: now))
        #expect(try await a.consumeNonce(nonce, tenant: "alpha", at: now.addingTimeInterval(2)) == .reused)
        #expect(try await a.consumeNonce(Self.nonce(), tenant: "alpha", at: now) == .unknown)

        let late = Self.nonce()
        try await b.issueNonce(late, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60))
        #expect(try await a.consumeNonce(late, tenant: "alpha", at: now.addingTimeInterval(61)) == .expired)
        #expect(try await a.consumeNonce(late, tenant: "alpha", at: now.addingTimeInterval(62)) == .reused)
        #expect(try await b.purgeNonces(expiredBefore: now.addingTimeInterval(120)) == 2)
        #expect(try await a.consumeNonce(nonce, tenant: "alpha", at: now) == .unknown)
        await Self.close(stores, folder)
    }

    @Test("a credential stored with a nonce comes back with its one fresh spend, through another store, and never again", arguments: StoreKind.allCases)
    func nonceCredential(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(2, folder: folder)
        let (a, b) = (stores[0], stores[1])
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let credential = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let nonce = Self.nonce()
        try await a.issueNonce(nonce, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60), credential: credential)
        #expect(try await b.consumeNonce(nonce, tenant: "beta", at: now) == .unknown)
        #expect(
            try await b.consumeNonce(nonce, tenant: "alpha", at: now.addingTimeInterval(1))
                == .fresh(issuedAt: now, credential: credential))
        #expect(try await a.consumeNonce(nonce, tenant: "alpha", at: now.addingTimeInterval(2)) == .reused)
        // An expired nonce's credential is erased by the spend that reports it expired, and not returned.
        let late = Self.nonce()
        try await a.issueNonce(late, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60), credential: credential)
        #expect(try await b.consumeNonce(late, tenant: "alpha", at: now.addingTimeInterval(61)) == .expired)
        // Without one: fresh with none.
        let plain = Self.nonce()
        try await b.issueNonce(plain, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60))
        #expect(try await a.consumeNonce(plain, tenant: "alpha", at: now) == .fresh(issuedAt: now, credential: nil))
        await Self.close(stores, folder)
    }

    @Test("of many concurrent presentations of one nonce through two stores, exactly one is fresh", arguments: StoreKind.allCases)
    func concurrentSpend(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(2, folder: folder)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        for round in 0..<5 {
            let nonce = Self.nonce()
            try await stores[round % 2].issueNonce(nonce, tenant: "alpha", issuedAt: now, expiresAt: now.addingTimeInterval(60))
            let outcomes = try await withThrowingTaskGroup(of: NonceConsumption.self) { group in
                for index in 0..<16 {
                    let store = stores[index % 2]
                    group.addTask { try await store.consumeNonce(nonce, tenant: "alpha", at: now) }
                }
                return try await group.reduce(into: [NonceConsumption]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .fresh(issuedAt: now) }.count == 1, "round \(round): \(outcomes)")
            #expect(outcomes.filter { $0 == .reused }.count == 15)
        }
        await Self.close(stores, folder)
    }

    @Test("policies: versions only grow, the newest is listed, any version is readable, tenants are apart", arguments: StoreKind.allCases)
    func policies(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(2, folder: folder)
        let (a, b) = (stores[0], stores[1])
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        func row(_ id: String, _ version: Int, tenant: String = "alpha") -> StoredPolicy {
            StoredPolicy(tenant: tenant, id: id, version: version, digest: "d\(version)", yaml: "id: \(id)\nversion: \(version)\n", createdAt: time)
        }
        try await a.putPolicy(row("web", 1))
        try await b.putPolicy(row("web", 2))
        try await a.putPolicy(row("db", 1, tenant: "alpha"))
        try await a.putPolicy(row("web", 5, tenant: "beta"))
        await #expect(throws: StoreError.self) { try await b.putPolicy(row("web", 2)) }
        do {
            try await a.putPolicy(row("web", 1))
            Issue.record("an older version was stored")
        } catch let error as StoreError {
            #expect(error.code == .versionConflict)
            #expect(error.reason.contains("version 2"))
        }
        #expect(try await b.policy(tenant: "alpha", id: "web", version: nil)?.version == 2)
        #expect(try await a.policy(tenant: "alpha", id: "web", version: 1)?.yaml == "id: web\nversion: 1\n")
        #expect(try await a.policy(tenant: "alpha", id: "web", version: 3) == nil)
        #expect(try await a.policy(tenant: "gamma", id: "web", version: nil) == nil)
        let listed = try await b.policies(tenant: "alpha")
        #expect(listed.map(\.id) == ["db", "web"])
        #expect(listed.map(\.version) == [1, 2])
        #expect(listed.first?.createdAt == time)
        #expect(try await a.policies(tenant: "beta").map(\.version) == [5])

        // Concurrent puts of the same new version through both stores: exactly one wins.
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                let store = stores[index % 2]
                group.addTask {
                    do {
                        try await store.putPolicy(row("web", 3))
                        return true
                    } catch let error as StoreError where error.code == .versionConflict {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 1)
        await Self.close(stores, folder)
    }

    @Test("concurrent appends through two stores form one intact chain, paged and filtered alike; another tenant's entry is refused", arguments: StoreKind.allCases)
    func auditChain(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(2, folder: folder)
        let keys = folder.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = try CheckpointSigningKey.loadOrCreate(in: keys)
        let logs = try stores.map { try $0.auditLog(tenant: "alpha", folder: folder, signingKey: key, clock: { Date() }) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("beta"), withIntermediateDirectories: true)
        let others = try stores[1].auditLog(tenant: "beta", folder: folder.appendingPathComponent("beta"), signingKey: key, clock: { Date() })
        let appended = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<24 {
                let log = logs[index % 2]
                group.addTask {
                    try await log.append(AuditEntry(
                        actor: "writer-\(index % 2)", kind: .policyChange, tenant: "alpha", details: ["n": String(index)])).sequence
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(appended.sorted() == Array(1...24))
        let verification = try await logs[0].verify()
        #expect(verification.isIntact, "\(verification.summary)")
        #expect(verification.recordCount == 24)
        #expect(verification.missingTriggers.isEmpty)
        let page = try await logs[1].records(matching: AuditQuery(tenant: "alpha", order: .oldestFirst, limit: 10))
        #expect(page.records.map(\.sequence) == Array(1...10))
        #expect(page.nextCursor == 10)
        let all = try await logs[1].allRecords(matching: AuditQuery(tenant: "alpha"))
        #expect(all.count == 24)
        #expect(zip(all.dropLast(), all.dropFirst()).allSatisfy { $0.previousHash == $1.hash })
        let filtered = try await logs[0].records(matching: AuditQuery(tenant: "alpha", instance: "none"))
        #expect(filtered.records.isEmpty)
        // An entry of another tenant is refused by this tenant's log; the other tenant's chain starts at 1.
        await #expect(throws: (any Error).self) {
            try await logs[0].append(AuditEntry(actor: "x", kind: .policyChange, tenant: "beta"))
        }
        #expect(try await others.append(AuditEntry(actor: "x", kind: .policyChange, tenant: "beta")).sequence == 1)
        await Self.close(stores, folder)
    }

    @Test("a closed store fails every call and ping with an error, never a crash", arguments: StoreKind.allCases)
    func closedStore(kind: StoreKind) async throws {
        let folder = Self.folder()
        let stores = try await kind.open(1, folder: folder)
        try await stores[0].ping()
        await stores[0].close()
        await #expect(throws: (any Error).self) { try await stores[0].ping() }
        await #expect(throws: (any Error).self) { try await stores[0].policies(tenant: "alpha") }
        try? FileManager.default.removeItem(at: folder)
    }

    @Test("the PostgreSQL URL is checked before any connection")
    func badURLs() async throws {
        for url in ["mysql://u@h/db", "postgres://h/db", "postgres://u@h/", "postgres://u@/db", "postgres://u@h/db?sslmode=require"] {
            await #expect(throws: ServiceError.self, "\(url)") { _ = try await PostgresServiceStore.connect(url: url) }
        }
        // A server that does not answer: a clear database error naming the place, never the password.
        do {
            _ = try await PostgresServiceStore.connect(url: "postgres://cmk:secret-password@127.0.0.1:1/cmk", timeout: .seconds(1))
            Issue.record("connected to nothing")
        } catch let error as StoreError {
            #expect(error.reason.contains("127.0.0.1:1/cmk"))
            #expect(!error.reason.contains("secret-password"))
        }
    }
}
