public import AuditLog
public import Foundation
import GRDB

/// What the service keeps between requests and shares between replicas: issued nonces, versioned policies and each
/// tenant's hash-chained audit log, each under a tenant.
///
/// Two implementations: ``SQLiteServiceStore`` (embedded, one host) and ``PostgresServiceStore`` (shared by every
/// replica behind a load balancer). A nonce is spent once across every replica that shares the store.
public protocol ServiceStore: Sendable {
    /// Records a freshly issued nonce (hex) for `tenant`, with the TPM credential made with it (opaque bytes the
    /// store keeps until the nonce is spent, then forgets).
    func issueNonce(_ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date, credential: [UInt8]?) async throws
    /// Marks the nonce used, once: the result says whether it was fresh (with the credential issued with it, which
    /// the store erases in the same write), expired, already used or unknown.
    func consumeNonce(_ nonce: String, tenant: String, at time: Date) async throws -> NonceConsumption
    /// Deletes nonces that expired before `time`; returns how many.
    func purgeNonces(expiredBefore time: Date) async throws -> Int
    /// Every policy of `tenant`, newest version of each.
    func policies(tenant: String) async throws -> [StoredPolicy]
    /// One policy of `tenant`: a given version, or the newest.
    func policy(tenant: String, id: String, version: Int?) async throws -> StoredPolicy?
    /// Stores a new version; fails with ``StoreError/versionConflict`` unless it is newer than every stored version.
    func putPolicy(_ policy: StoredPolicy) async throws
    /// The audit log of `tenant`, whose checkpoints `signingKey` signs. `folder` is the tenant's own state folder
    /// (the SQLite store keeps the log there; a shared store ignores it).
    func auditLog(
        tenant: String, folder: URL, signingKey: CheckpointSigningKey, clock: @escaping @Sendable () -> Date
    ) throws -> any TenantAuditLog
    /// Throws unless the store answers a trivial query now (GET /readyz).
    func ping() async throws
    /// Releases connections (the SQLite store has nothing to release).
    func close() async
}

/// One tenant's audit log, wherever it is kept: appends extend the hash chain one record at a time, whichever
/// replica appends.
public protocol TenantAuditLog: Sendable {
    /// The key that verifies the log's checkpoints.
    var checkpointKey: CheckpointKey? { get }
    /// Appends one record encoded already (and a signed checkpoint when due) and returns where it landed.
    func append(encoded entry: EncodedAuditEntry) async throws -> AuditAppend
    /// One page of the records `query` selects.
    func records(matching query: AuditQuery) async throws -> AuditPage
    /// Re-computes every hash and link and checks every checkpoint (``AuditLog/verify(trustedKey:externalCheckpoints:)``).
    func verify() async throws -> AuditVerification
}

extension ServiceStore {
    /// Records a freshly issued nonce without a TPM credential.
    public func issueNonce(_ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date) async throws {
        try await issueNonce(nonce, tenant: tenant, issuedAt: issuedAt, expiresAt: expiresAt, credential: nil)
    }
}

extension TenantAuditLog {
    /// Appends one record (and a signed checkpoint when due) and returns it as stored, its texts decoded back.
    @discardableResult
    public func append(_ entry: AuditEntry) async throws -> AuditRecord {
        let encoded = try EncodedAuditEntry(entry)
        return try AuditRecord(encoded, appended: try await append(encoded: encoded))
    }

    /// Every record `query` selects (its limit and cursor ignored), page by page.
    public func allRecords(matching query: AuditQuery) async throws -> [AuditRecord] {
        var query = query
        query.limit = 1000
        query.cursor = nil
        var records: [AuditRecord] = []
        while true {
            let page = try await self.records(matching: query)
            records += page.records
            guard let next = page.nextCursor else { return records }
            query.cursor = next
        }
    }
}

/// The SQLite audit log (`<state>/tenants/<name>/audit.sqlite`) as a ``TenantAuditLog``.
///
/// Appends are group-committed: the entries waiting at one moment go into one transaction (``AuditLog/append(batch:)``,
/// chained in order, checkpoints where due) with one sync, and each caller gets its record only after the commit.
/// The chain is exactly what one-by-one appends would have made; only the number of syncs differs.
final class SQLiteTenantAuditLog: TenantAuditLog {
    let log: AuditLog
    let tenant: String
    private let appends: GroupCommitter<EncodedAuditEntry, AuditAppend>

    /// Entries come encoded (by the request, in parallel): the committer's one thread only inserts and commits.
    init(log: AuditLog, tenant: String) {
        self.log = log
        self.tenant = tenant
        appends = GroupCommitter(label: "cmk.serve.audit.\(tenant)") { batch in
            try log.append(encoded: batch).map { .success($0) }
        }
    }

    var checkpointKey: CheckpointKey? { log.checkpointKey }
    func append(encoded entry: EncodedAuditEntry) async throws -> AuditAppend {
        guard entry.entry.tenant == tenant else {
            throw AuditLogError(
                .invalidArgument, "an entry of tenant '\(entry.entry.tenant)' cannot go into the log of '\(tenant)'")
        }
        return try await appends.submit(entry)
    }
    func records(matching query: AuditQuery) async throws -> AuditPage { try log.records(matching: query) }
    func verify() async throws -> AuditVerification { try log.verify() }
}

/// The outcome of presenting a nonce.
public enum NonceConsumption: Sendable, Equatable {
    /// Issued to this tenant, unexpired and unused: now spent. `issuedAt` is when it was issued; `credential` is
    /// what was stored with it (a TPM credential's secret and keys), now erased from the store.
    case fresh(issuedAt: Date, credential: [UInt8]? = nil)
    case expired
    case reused
    /// Never issued, or issued to another tenant (the two are not told apart).
    case unknown
}

/// One stored version of a policy: the YAML as presented and what identifies it.
public struct StoredPolicy: Sendable, Hashable, Codable {
    public let tenant: String
    public let id: String
    public let version: Int
    /// SHA-256 over the policy's canonical form (`Policy.digest`).
    public let digest: String
    public let yaml: String
    public let createdAt: Date
    /// The folder relative reference-artifact paths resolve against, for policies loaded from files at startup.
    public let baseDirectory: String?

    public init(tenant: String, id: String, version: Int, digest: String, yaml: String, createdAt: Date, baseDirectory: String? = nil) {
        self.tenant = tenant
        self.id = id
        self.version = version
        self.digest = digest
        self.yaml = yaml
        self.createdAt = createdAt
        self.baseDirectory = baseDirectory
    }
}

/// A storage failure the caller can act on.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case versionConflict = "version-conflict", database }
    public let code: Code
    public let reason: String
    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
    public var description: String { "\(code.rawValue): \(reason)" }
}

/// The embedded store: one SQLite file (WAL) through GRDB. Several processes on one host may share the file; replicas
/// on several hosts need the PostgreSQL store.
///
/// Durability: WAL with `synchronous = FULL`, so a committed transaction survives a power loss, not only a crash.
/// Nonce issues and spends are group-committed (``GroupCommitter``): the writes waiting at one moment share one
/// transaction and one sync, and each caller learns its outcome only after that commit — a nonce handed out is
/// stored, and a nonce reported fresh is durably spent.
public final class SQLiteServiceStore: ServiceStore {
    let pool: DatabasePool
    private let nonceWrites: GroupCommitter<NonceWrite, NonceConsumption?>

    enum NonceWrite: Sendable {
        case issue(nonce: String, tenant: String, issuedAt: Date, expiresAt: Date, credential: [UInt8]?)
        case spend(nonce: String, tenant: String, time: Date)
    }

    public init(path: URL) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.label = "cmk.serve"
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        let pool = try DatabasePool(path: path.path, configuration: configuration)
        self.pool = pool
        nonceWrites = GroupCommitter(label: "cmk.serve.nonces") { batch in
            // A statement that fails fails its own item only (SQLite undoes that statement, not the transaction);
            // every item is answered only after the commit, and a failed commit fails them all.
            try pool.write { db in
                batch.map { write in Result { try SQLiteServiceStore.apply(write, db) } }
            }
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE nonces (
                    nonce TEXT PRIMARY KEY NOT NULL,
                    tenant TEXT NOT NULL,
                    issued_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    used_at INTEGER
                );
                CREATE INDEX nonces_expiry ON nonces(expires_at);
                CREATE TABLE policies (
                    tenant TEXT NOT NULL,
                    id TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    digest TEXT NOT NULL,
                    yaml TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    base_directory TEXT,
                    PRIMARY KEY (tenant, id, version)
                );
                """)
        }
        migrator.registerMigration("v2-tpm-credential") { db in
            // The TPM credential made with a nonce (POST /v1/challenge with `tpm`), erased when the nonce is spent.
            try db.execute(sql: "ALTER TABLE nonces ADD COLUMN credential BLOB")
        }
        try migrator.migrate(pool)
    }

    public func auditLog(
        tenant: String, folder: URL, signingKey: CheckpointSigningKey, clock: @escaping @Sendable () -> Date
    ) throws -> any TenantAuditLog {
        SQLiteTenantAuditLog(log: try AuditLog(
            path: folder.appendingPathComponent("audit.sqlite"), signingKey: signingKey,
            options: AuditLog.Options(clock: clock)), tenant: tenant)
    }

    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    /// Closes the file; every call after it fails (GET /readyz answers 503).
    public func close() async {
        try? pool.close()
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func date(_ milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    public func issueNonce(
        _ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date, credential: [UInt8]?
    ) async throws {
        _ = try await nonceWrites.submit(
            .issue(nonce: nonce, tenant: tenant, issuedAt: issuedAt, expiresAt: expiresAt, credential: credential))
    }

    public func consumeNonce(_ nonce: String, tenant: String, at time: Date) async throws -> NonceConsumption {
        guard let outcome = try await nonceWrites.submit(.spend(nonce: nonce, tenant: tenant, time: time)) else {
            throw StoreError(.database, "the nonce store answered a spend without an outcome")
        }
        return outcome
    }

    static func apply(_ write: NonceWrite, _ db: Database) throws -> NonceConsumption? {
        switch write {
        case .issue(let nonce, let tenant, let issuedAt, let expiresAt, let credential):
            try db.cachedStatement(
                sql: "INSERT INTO nonces (nonce, tenant, issued_at, expires_at, credential) VALUES (?, ?, ?, ?, ?)"
            ).execute(arguments: [nonce, tenant, milliseconds(issuedAt), milliseconds(expiresAt), credential.map { Data($0) }])
            return nil
        case .spend(let nonce, let tenant, let time):
            return try consume(db, nonce: nonce, tenant: tenant, time: time)
        }
    }

    /// One spend inside the batch's transaction; a nonce presented twice in one batch is fresh once, then reused.
    static func consume(_ db: Database, nonce: String, tenant: String, time: Date) throws -> NonceConsumption {
        // Cached statements: prepared once per connection, not once per spend.
        let select = try db.cachedStatement(
            sql: "SELECT tenant, issued_at, expires_at, used_at, credential FROM nonces WHERE nonce = ?")
        guard let row = try Row.fetchOne(select, arguments: [nonce]), (row["tenant"] as String) == tenant
        else { return .unknown }
        if (row["used_at"] as Int64?) != nil { return .reused }
        // Spent even when expired, so an expired nonce is never "fresh" later by a clock step; the credential is
        // erased with the spend (it is good for this one attestation).
        let now = milliseconds(time)
        try db.cachedStatement(sql: "UPDATE nonces SET used_at = ?, credential = NULL WHERE nonce = ?")
            .execute(arguments: [now, nonce])
        if now >= (row["expires_at"] as Int64) { return .expired }
        return .fresh(issuedAt: date(row["issued_at"]), credential: (row["credential"] as Data?).map { [UInt8]($0) })
    }

    public func purgeNonces(expiredBefore time: Date) throws -> Int {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM nonces WHERE expires_at < ?", arguments: [Self.milliseconds(time)])
            return db.changesCount
        }
    }

    static func policy(_ row: Row) -> StoredPolicy {
        StoredPolicy(
            tenant: row["tenant"], id: row["id"], version: row["version"], digest: row["digest"], yaml: row["yaml"],
            createdAt: date(row["created_at"]), baseDirectory: row["base_directory"])
    }

    public func policies(tenant: String) throws -> [StoredPolicy] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT p.* FROM policies p
                WHERE p.tenant = ? AND p.version = (SELECT MAX(version) FROM policies q WHERE q.tenant = p.tenant AND q.id = p.id)
                ORDER BY p.id
                """, arguments: [tenant]).map(Self.policy)
        }
    }

    public func policy(tenant: String, id: String, version: Int?) throws -> StoredPolicy? {
        try pool.read { db in
            if let version {
                return try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT * FROM policies WHERE tenant = ? AND id = ? AND version = ?"),
                    arguments: [tenant, id, version]
                ).map(Self.policy)
            }
            return try Row.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM policies WHERE tenant = ? AND id = ? ORDER BY version DESC LIMIT 1"),
                arguments: [tenant, id]
            ).map(Self.policy)
        }
    }

    public func putPolicy(_ policy: StoredPolicy) throws {
        try pool.write { db in
            let newest = try Int.fetchOne(
                db, sql: "SELECT MAX(version) FROM policies WHERE tenant = ? AND id = ?", arguments: [policy.tenant, policy.id])
            if let newest, newest >= policy.version {
                throw StoreError(
                    .versionConflict,
                    "policy '\(policy.id)' is at version \(newest); a new version must be greater (got \(policy.version))")
            }
            try db.execute(
                sql: """
                    INSERT INTO policies (tenant, id, version, digest, yaml, created_at, base_directory)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    policy.tenant, policy.id, policy.version, policy.digest, policy.yaml, Self.milliseconds(policy.createdAt),
                    policy.baseDirectory,
                ])
        }
    }
}
