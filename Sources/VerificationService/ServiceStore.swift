public import Foundation
import GRDB

/// What the service keeps between requests and shares between replicas: issued nonces and versioned policies, each
/// under a tenant. The audit log lives in each tenant's own hash-chained `AuditLog` (see ``TenantRegistry``).
///
/// Calls are synchronous and short (one SQLite transaction each).
public protocol ServiceStore: Sendable {
    /// Records a freshly issued nonce (hex) for `tenant`.
    func issueNonce(_ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date) throws
    /// Marks the nonce used, once: the result says whether it was fresh, expired, already used or unknown.
    func consumeNonce(_ nonce: String, tenant: String, at time: Date) throws -> NonceConsumption
    /// Deletes nonces that expired before `time`; returns how many.
    func purgeNonces(expiredBefore time: Date) throws -> Int
    /// Every policy of `tenant`, newest version of each.
    func policies(tenant: String) throws -> [StoredPolicy]
    /// One policy of `tenant`: a given version, or the newest.
    func policy(tenant: String, id: String, version: Int?) throws -> StoredPolicy?
    /// Stores a new version; fails with ``StoreError/versionConflict`` unless it is newer than every stored version.
    func putPolicy(_ policy: StoredPolicy) throws
}

/// The outcome of presenting a nonce.
public enum NonceConsumption: Sendable, Equatable {
    /// Issued to this tenant, unexpired and unused: now spent. `issuedAt` is when it was issued.
    case fresh(issuedAt: Date)
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
public final class SQLiteServiceStore: ServiceStore {
    let pool: DatabasePool

    public init(path: URL) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.label = "cmk.serve"
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        pool = try DatabasePool(path: path.path, configuration: configuration)
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
        try migrator.migrate(pool)
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func date(_ milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    public func issueNonce(_ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT INTO nonces (nonce, tenant, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                arguments: [nonce, tenant, Self.milliseconds(issuedAt), Self.milliseconds(expiresAt)])
        }
    }

    public func consumeNonce(_ nonce: String, tenant: String, at time: Date) throws -> NonceConsumption {
        try pool.write { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT tenant, issued_at, expires_at, used_at FROM nonces WHERE nonce = ?", arguments: [nonce]),
                (row["tenant"] as String) == tenant
            else { return .unknown }
            if (row["used_at"] as Int64?) != nil { return .reused }
            // Spent even when expired, so an expired nonce is never "fresh" later by a clock step.
            try db.execute(sql: "UPDATE nonces SET used_at = ? WHERE nonce = ?", arguments: [Self.milliseconds(time), nonce])
            if Self.milliseconds(time) >= (row["expires_at"] as Int64) { return .expired }
            return .fresh(issuedAt: Self.date(row["issued_at"]))
        }
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
                    db, sql: "SELECT * FROM policies WHERE tenant = ? AND id = ? AND version = ?", arguments: [tenant, id, version]
                ).map(Self.policy)
            }
            return try Row.fetchOne(
                db, sql: "SELECT * FROM policies WHERE tenant = ? AND id = ? ORDER BY version DESC LIMIT 1", arguments: [tenant, id]
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
