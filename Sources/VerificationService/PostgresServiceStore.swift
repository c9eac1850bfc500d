import AttestationPolicy
public import AuditLog
public import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The shared store of `cmk serve` replicas: nonces, policies and every tenant's audit log in one PostgreSQL
/// database (postgres-nio), so any replica behind a load balancer spends a nonce at most once, reads the policy
/// another replica stored, and extends the same audit chain.
///
/// - A nonce is spent by one `UPDATE ... WHERE used_at IS NULL RETURNING`: PostgreSQL's row lock lets exactly one
///   of several concurrent presentations see the row unused.
/// - Policy puts and audit appends take a transaction-scoped advisory lock (per tenant and policy id, per tenant's
///   log), so a new version is checked against the newest stored one, and each record extends the head it read.
///   The primary key (tenant, sequence) and the append-only triggers refuse anything else.
public final class PostgresServiceStore: ServiceStore {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (TLS: `?sslmode=disable` only, for loopback and private
    /// networks; say so in the deployment).
    public struct Location: Sendable, Hashable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public let user: String
        let password: String?
        public let database: String

        public init(url text: String) throws(ServiceError) {
            guard let components = URLComponents(string: text), ["postgres", "postgresql"].contains(components.scheme ?? "")
            else { throw ServiceError("the database URL must be postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE") }
            guard let host = components.host, !host.isEmpty else { throw ServiceError("the database URL names no host") }
            guard let user = components.user, !user.isEmpty else { throw ServiceError("the database URL names no user") }
            let database = String(components.path.drop { $0 == "/" })
            guard !database.isEmpty, !database.contains("/") else { throw ServiceError("the database URL names no database") }
            for item in components.queryItems ?? [] {
                guard item.name == "sslmode", item.value == "disable" else {
                    throw ServiceError("the database URL's query '\(item.name)=\(item.value ?? "")' is not supported (only sslmode=disable)")
                }
            }
            self.host = host
            self.port = components.port ?? 5432
            self.user = user
            self.password = components.password
            self.database = database
        }

        /// The URL without the password (for logs and errors).
        public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }
    }

    public let location: Location
    let client: PostgresClient
    let runner: Task<Void, Never>
    let logger: Logger
    /// Sign a checkpoint after every this many records of a tenant's log (as ``AuditLog/Options/checkpointInterval``).
    let checkpointInterval: Int64
    /// How long one operation may wait for the database (a connection, a lock, the answer) before it fails.
    let operationLimit: Duration?

    /// Connects, waits until the database answers (up to `timeout`), and creates or checks the schema.
    public static func connect(
        url: String, timeout: Duration = .seconds(30), checkpointInterval: Int = 100, operationLimit: Duration = .seconds(10)
    ) async throws -> PostgresServiceStore {
        let store = try PostgresServiceStore(
            location: Location(url: url), checkpointInterval: checkpointInterval, operationLimit: operationLimit)
        do {
            try await store.waitUntilAnswering(timeout: timeout)
            try await store.migrate()
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    init(location: Location, checkpointInterval: Int, operationLimit: Duration?) throws {
        self.location = location
        self.operationLimit = operationLimit
        self.checkpointInterval = Int64(max(0, checkpointInterval))
        var logger = Logger(label: "cmk.serve.postgres")
        logger.logLevel = .warning
        self.logger = logger
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.maximumConnections = 8
        configuration.options.connectTimeout = .seconds(10)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.runner = Task { await client.run() }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    private func waitUntilAnswering(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                // A slow first answer (a loaded host, a server still starting) counts as long as it comes before
                // the deadline; only a refused or failed connection is retried.
                try await ping(limit: max(.seconds(1), deadline - ContinuousClock.now))
                return
            } catch {
                if ContinuousClock.now >= deadline { throw error }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Answers within `limit` or throws: the connection pool waits for a connection that cannot be made rather than
    /// failing, so an unreachable server must not hold a readiness probe.
    public func ping() async throws {
        try await ping(limit: .seconds(5))
    }

    func ping(limit: Duration) async throws {
        let client = self.client
        let logger = self.logger
        let location = self.location
        try await database("reach the database") { [self] in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    let rows = try await client.query("SELECT 1::BIGINT", logger: logger)
                    for try await _ in rows {}
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: limit)
                    return false
                }
                defer { group.cancelAll() }
                guard try await group.next() == true else {
                    throw StoreError(.database, "the database \(location) did not answer within \(limit)")
                }
            }
        }
    }

    /// Every statement of the schema; run under a session advisory lock so replicas starting together do not race.
    static let schema: [PostgresQuery] = [
        "CREATE TABLE IF NOT EXISTS cmk_schema (version BIGINT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS cmk_nonce (
            nonce TEXT PRIMARY KEY, tenant TEXT NOT NULL, issued_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
            used_at BIGINT)
        """,
        "CREATE INDEX IF NOT EXISTS cmk_nonce_expiry ON cmk_nonce (expires_at)",
        """
        CREATE TABLE IF NOT EXISTS cmk_policy (
            tenant TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, digest TEXT NOT NULL, yaml TEXT NOT NULL,
            created_at BIGINT NOT NULL, base_directory TEXT, PRIMARY KEY (tenant, id, version))
        """,
        """
        CREATE TABLE IF NOT EXISTS cmk_audit_record (
            tenant TEXT NOT NULL, sequence BIGINT NOT NULL, time_ms BIGINT NOT NULL, actor TEXT NOT NULL,
            instance TEXT, kind TEXT NOT NULL, appraisal_json TEXT, result_token_digest TEXT, details_json TEXT,
            previous_hash TEXT NOT NULL, record_hash TEXT NOT NULL, policy_id TEXT, policy_version BIGINT,
            policy_digest TEXT, verdict TEXT, evidence_type TEXT, simulated BIGINT,
            PRIMARY KEY (tenant, sequence))
        """,
        "CREATE INDEX IF NOT EXISTS cmk_audit_record_by_time ON cmk_audit_record (tenant, time_ms)",
        """
        CREATE TABLE IF NOT EXISTS cmk_audit_checkpoint (
            id BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, sequence BIGINT NOT NULL, head_hash TEXT NOT NULL,
            time_ms BIGINT NOT NULL, key_fingerprint TEXT NOT NULL, signature TEXT NOT NULL)
        """,
        """
        CREATE OR REPLACE FUNCTION cmk_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '% is append-only: rows cannot be updated or deleted', TG_TABLE_NAME; END $$
        """,
        "DROP TRIGGER IF EXISTS cmk_audit_record_append_only ON cmk_audit_record",
        """
        CREATE TRIGGER cmk_audit_record_append_only BEFORE UPDATE OR DELETE ON cmk_audit_record
        FOR EACH ROW EXECUTE FUNCTION cmk_audit_append_only()
        """,
        "DROP TRIGGER IF EXISTS cmk_audit_checkpoint_append_only ON cmk_audit_checkpoint",
        """
        CREATE TRIGGER cmk_audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON cmk_audit_checkpoint
        FOR EACH ROW EXECUTE FUNCTION cmk_audit_append_only()
        """,
        // Version 2: the TPM credential made with a nonce, erased when the nonce is spent.
        "ALTER TABLE cmk_nonce ADD COLUMN IF NOT EXISTS credential BYTEA",
    ]

    /// The schema version this build writes; a database written by a newer cmk is refused.
    static let schemaVersion: Int64 = 2
    /// The first key of every advisory lock this store takes (the second says what is locked).
    static let lockSpace: Int32 = 0x636D_6B00  // "cmk\0"

    private func migrate() async throws {
        // No limit: another replica may hold the schema lock while it migrates.
        try await database("create the schema", bounded: false) { [self] in
            try await client.withConnection { connection in
                try await connection.query("SELECT pg_advisory_lock(\(Self.lockSpace), 0)", logger: logger)
                do {
                    try await connection.query(Self.schema[0], logger: logger)
                    var stored: Int64?
                    for try await version in try await connection.query("SELECT MAX(version) FROM cmk_schema", logger: logger)
                        .decode(Int64?.self)
                    { stored = version }
                    if let stored, stored > Self.schemaVersion {
                        throw StoreError(.database, "the database \(location) was written by a newer cmk (schema \(stored)); upgrade cmk")
                    }
                    if stored != Self.schemaVersion {
                        for statement in Self.schema.dropFirst() { try await connection.query(statement, logger: logger) }
                        try await connection.query("INSERT INTO cmk_schema (version) VALUES (\(Self.schemaVersion))", logger: logger)
                    }
                    try await connection.query("SELECT pg_advisory_unlock(\(Self.lockSpace), 0)", logger: logger)
                } catch {
                    _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockSpace), 0)", logger: logger)
                    throw error
                }
            }
        }
    }

    /// Runs `body` within ``operationLimit`` (unless `bounded` is false: then it waits as long as it takes), turning
    /// PostgreSQL's errors into ``StoreError``s that say what was being done (never the password).
    ///
    /// The limit matters when the server is gone: the connection pool keeps a query waiting for a connection it
    /// retries to make (until its circuit breaker opens after 15 s), so without it a request would hang; with it the
    /// request fails (a 503) and the pool reconnects by itself once the server is back.
    func database<T: Sendable>(
        _ what: String, bounded: Bool = true, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard bounded, let limit = operationLimit else { return try await mapped(what, body) }
        let location = self.location
        return try await mapped(what) {
            try await withThrowingTaskGroup(of: T?.self, returning: T.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: limit)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw StoreError(.database, "the database \(location) did not answer within \(limit) (trying to \(what))")
                }
                return value
            }
        }
    }

    private func mapped<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StoreError {
            throw error
        } catch let error as AuditLogError {
            throw error
        } catch let error as PostgresTransactionError {
            // What failed inside the transaction (a version conflict, say) is the error to report.
            if let inner = error.closureError as? StoreError { throw inner }
            if let inner = error.closureError as? AuditLogError { throw inner }
            let cause = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            if let psql = cause as? PSQLError {
                let detail = psql.serverInfo?[.message] ?? psql.underlying.map { "\($0)" } ?? "\(psql.code)"
                throw StoreError(.database, "could not \(what) in \(location): \(detail)")
            }
            throw StoreError(.database, "could not \(what) in \(location): \(cause.map { "\($0)" } ?? "transaction failed")")
        } catch let error as PSQLError {
            let detail = error.serverInfo?[.message] ?? error.underlying.map { "\($0)" } ?? "\(error.code)"
            throw StoreError(.database, "could not \(what) in \(location): \(detail)")
        } catch {
            throw StoreError(.database, "could not \(what) in \(location): \(error)")
        }
    }

    static func milliseconds(_ date: Date) -> Int64 { SQLiteServiceStore.milliseconds(date) }

    // MARK: Nonces

    public func issueNonce(
        _ nonce: String, tenant: String, issuedAt: Date, expiresAt: Date, credential: [UInt8]?
    ) async throws {
        let credential = credential.map { ByteBuffer(bytes: $0) }
        try await database("store a nonce") { [self] in
            try await client.query(
                """
                INSERT INTO cmk_nonce (nonce, tenant, issued_at, expires_at, credential)
                VALUES (\(nonce), \(tenant), \(Self.milliseconds(issuedAt)), \(Self.milliseconds(expiresAt)), \(credential))
                """, logger: logger)
        }
    }

    public func consumeNonce(_ nonce: String, tenant: String, at time: Date) async throws -> NonceConsumption {
        let now = Self.milliseconds(time)
        return try await database("spend a nonce") { [self] in
            // One statement: of several replicas presenting the same nonce at once, exactly one updates the row.
            // Spent even when expired, so an expired nonce is never "fresh" later by a clock step.
            // The credential stored with it is returned and erased by the same statement (the old row's value).
            var spent: (Int64, Int64, ByteBuffer?)?
            for try await row in try await client.query(
                """
                UPDATE cmk_nonce AS n SET used_at = \(now), credential = NULL
                FROM (SELECT nonce, credential FROM cmk_nonce WHERE nonce = \(nonce) FOR UPDATE) AS old
                WHERE n.nonce = old.nonce AND n.tenant = \(tenant) AND n.used_at IS NULL
                RETURNING n.issued_at, n.expires_at, old.credential
                """, logger: logger
            ).decode((Int64, Int64, ByteBuffer?).self) { spent = row }
            if let spent {
                let credential = spent.2.map { Array($0.readableBytesView) }
                return now >= spent.1
                    ? .expired : .fresh(issuedAt: SQLiteServiceStore.date(spent.0), credential: credential)
            }
            var known = false
            for try await _ in try await client.query(
                "SELECT 1::BIGINT FROM cmk_nonce WHERE nonce = \(nonce) AND tenant = \(tenant)", logger: logger
            ) { known = true }
            return known ? .reused : .unknown
        }
    }

    public func purgeNonces(expiredBefore time: Date) async throws -> Int {
        try await database("purge expired nonces") { [self] in
            var count: Int64 = 0
            for try await value in try await client.query(
                """
                WITH gone AS (DELETE FROM cmk_nonce WHERE expires_at < \(Self.milliseconds(time)) RETURNING 1)
                SELECT COUNT(*)::BIGINT FROM gone
                """, logger: logger
            ).decode(Int64.self) { count = value }
            return Int(count)
        }
    }

    // MARK: Policies

    static func policy(_ row: PostgresRow) throws -> StoredPolicy {
        let (tenant, id, version, digest, yaml, created, base) = try row.decode(
            (String, String, Int64, String, String, Int64, String?).self)
        return StoredPolicy(
            tenant: tenant, id: id, version: Int(version), digest: digest, yaml: yaml,
            createdAt: SQLiteServiceStore.date(created), baseDirectory: base)
    }

    public func policies(tenant: String) async throws -> [StoredPolicy] {
        try await database("read the policies") { [self] in
            var result: [StoredPolicy] = []
            for try await row in try await client.query(
                """
                SELECT DISTINCT ON (id) tenant, id, version, digest, yaml, created_at, base_directory
                FROM cmk_policy WHERE tenant = \(tenant) ORDER BY id, version DESC
                """, logger: logger) { result.append(try Self.policy(row)) }
            return result
        }
    }

    public func policy(tenant: String, id: String, version: Int?) async throws -> StoredPolicy? {
        try await database("read a policy") { [self] in
            let rows: PostgresRowSequence
            if let version {
                rows = try await client.query(
                    """
                    SELECT tenant, id, version, digest, yaml, created_at, base_directory FROM cmk_policy
                    WHERE tenant = \(tenant) AND id = \(id) AND version = \(Int64(version))
                    """, logger: logger)
            } else {
                rows = try await client.query(
                    """
                    SELECT tenant, id, version, digest, yaml, created_at, base_directory FROM cmk_policy
                    WHERE tenant = \(tenant) AND id = \(id) ORDER BY version DESC LIMIT 1
                    """, logger: logger)
            }
            var found: StoredPolicy?
            for try await row in rows { found = try Self.policy(row) }
            return found
        }
    }

    public func putPolicy(_ policy: StoredPolicy) async throws {
        let logger = self.logger
        try await database("store a policy") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                // Serialises puts of one policy across replicas: the check and the insert see the same newest version.
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(Self.lockSpace + 1), hashtext(\(policy.tenant + "/" + policy.id)))",
                    logger: logger)
                var newest: Int64?
                for try await value in try await connection.query(
                    "SELECT MAX(version) FROM cmk_policy WHERE tenant = \(policy.tenant) AND id = \(policy.id)", logger: logger
                ).decode(Int64?.self) { newest = value }
                if let newest, newest >= Int64(policy.version) {
                    throw StoreError(
                        .versionConflict,
                        "policy '\(policy.id)' is at version \(newest); a new version must be greater (got \(policy.version))")
                }
                try await connection.query(
                    """
                    INSERT INTO cmk_policy (tenant, id, version, digest, yaml, created_at, base_directory)
                    VALUES (\(policy.tenant), \(policy.id), \(Int64(policy.version)), \(policy.digest), \(policy.yaml),
                            \(Self.milliseconds(policy.createdAt)), \(policy.baseDirectory))
                    """, logger: logger)
            }
        }
    }

    // MARK: Audit

    public func auditLog(
        tenant: String, folder: URL, signingKey: CheckpointSigningKey, clock: @escaping @Sendable () -> Date
    ) throws -> any TenantAuditLog {
        PostgresTenantAuditLog(store: self, tenant: tenant, signingKey: signingKey, clock: clock)
    }
}

/// One tenant's audit log in the shared database: appends serialise on a per-tenant advisory lock, so records from
/// every replica form one chain.
struct PostgresTenantAuditLog: TenantAuditLog {
    let store: PostgresServiceStore
    let tenant: String
    let signingKey: CheckpointSigningKey
    let clock: @Sendable () -> Date

    var checkpointKey: CheckpointKey? { signingKey.publicKey }

    static let columns = """
        sequence, time_ms, actor, tenant, instance, kind, appraisal_json, result_token_digest, details_json, \
        previous_hash, record_hash, policy_id, policy_version, policy_digest, verdict, evidence_type, simulated
        """

    static func values(_ row: PostgresRow) throws -> AuditRowValues {
        let cells = row.makeRandomAccess()
        func text(_ name: String) throws -> String { try cells[name].decode(String.self) }
        func optionalText(_ name: String) throws -> String? { try cells[name].decode(String?.self) }
        func integer(_ name: String) throws -> Int64 { try cells[name].decode(Int64.self) }
        func optionalInteger(_ name: String) throws -> Int64? { try cells[name].decode(Int64?.self) }
        return AuditRowValues(
            sequence: try integer("sequence"), timeMilliseconds: try integer("time_ms"), actor: try text("actor"),
            tenant: try text("tenant"), instance: try optionalText("instance"), kind: try text("kind"),
            appraisalJSON: try optionalText("appraisal_json"), resultTokenDigest: try optionalText("result_token_digest"),
            detailsJSON: try optionalText("details_json"), previousHash: try text("previous_hash"),
            recordHash: try text("record_hash"), policyID: try optionalText("policy_id"),
            policyVersion: try optionalInteger("policy_version"), policyDigest: try optionalText("policy_digest"),
            verdict: try optionalText("verdict"), evidenceType: try optionalText("evidence_type"),
            simulated: try optionalInteger("simulated"))
    }

    func append(encoded entry: EncodedAuditEntry) async throws -> AuditAppend {
        guard entry.entry.tenant == tenant else {
            throw AuditLogError(
                .invalidArgument, "an entry of tenant '\(entry.entry.tenant)' cannot go into the log of '\(tenant)'")
        }
        let logger = store.logger
        let tenant = self.tenant
        let signingKey = self.signingKey
        let interval = store.checkpointInterval
        let now = clock()
        let row: AuditRowValues = try await store.database("append to the audit log of tenant '\(tenant)'") {
            try await store.client.withTransaction(logger: logger) { connection in
                // Every replica appending to this tenant's log waits here: the head read below is the head the new
                // record extends, and no other record can come between.
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(PostgresServiceStore.lockSpace + 2), hashtext(\(tenant)))", logger: logger)
                var head = AuditHead(sequence: 0, hash: AuditRecord.genesisHash)
                for try await (sequence, hash) in try await connection.query(
                    """
                    SELECT sequence, record_hash FROM cmk_audit_record WHERE tenant = \(tenant)
                    ORDER BY sequence DESC LIMIT 1
                    """, logger: logger
                ).decode((Int64, String).self) { head = AuditHead(sequence: sequence, hash: hash) }
                let row = AuditRowValues.appending(entry, after: head, time: now)
                try await connection.query(
                    """
                    INSERT INTO cmk_audit_record (\(unescaped: Self.columns))
                    VALUES (\(row.sequence), \(row.timeMilliseconds), \(row.actor), \(row.tenant), \(row.instance),
                            \(row.kind), \(row.appraisalJSON), \(row.resultTokenDigest), \(row.detailsJSON),
                            \(row.previousHash), \(row.recordHash), \(row.policyID), \(row.policyVersion),
                            \(row.policyDigest), \(row.verdict), \(row.evidenceType), \(row.simulated))
                    """, logger: logger)
                if interval > 0, row.sequence % interval == 0 {
                    try await Self.insertCheckpoint(
                        connection, tenant: tenant, head: AuditHead(sequence: row.sequence, hash: row.recordHash),
                        time: now, key: signingKey, logger: logger)
                }
                return row
            }
        }
        return row.appended
    }

    static func insertCheckpoint(
        _ connection: PostgresConnection, tenant: String, head: AuditHead, time: Date, key: CheckpointSigningKey,
        logger: Logger
    ) async throws {
        let signed = try AuditCheckpoint.signing(head: head, time: time, with: key)
        try await connection.query(
            """
            INSERT INTO cmk_audit_checkpoint (tenant, sequence, head_hash, time_ms, key_fingerprint, signature)
            VALUES (\(tenant), \(signed.sequence), \(signed.headHash), \(PostgresServiceStore.milliseconds(signed.time)),
                    \(signed.keyFingerprint), \(signed.signature))
            """, logger: logger)
    }

    /// Signs a checkpoint of the current head now.
    func checkpoint() async throws {
        let logger = store.logger
        let tenant = self.tenant
        let signingKey = self.signingKey
        let now = clock()
        try await store.database("sign an audit checkpoint of tenant '\(tenant)'") {
            try await store.client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(PostgresServiceStore.lockSpace + 2), hashtext(\(tenant)))", logger: logger)
                var head = AuditHead(sequence: 0, hash: AuditRecord.genesisHash)
                for try await (sequence, hash) in try await connection.query(
                    "SELECT sequence, record_hash FROM cmk_audit_record WHERE tenant = \(tenant) ORDER BY sequence DESC LIMIT 1",
                    logger: logger
                ).decode((Int64, String).self) { head = AuditHead(sequence: sequence, hash: hash) }
                try await Self.insertCheckpoint(connection, tenant: tenant, head: head, time: now, key: signingKey, logger: logger)
            }
        }
    }

    func records(matching query: AuditQuery) async throws -> AuditPage {
        guard (1...10_000).contains(query.limit) else {
            throw AuditLogError(.invalidArgument, "a page holds 1 to 10000 records, not \(query.limit)")
        }
        var sql = PostgresQuery(unsafeSQL: "SELECT \(Self.columns) FROM cmk_audit_record WHERE tenant = $1")
        sql.binds.append(tenant)
        func add(_ condition: String, _ value: some PostgresDynamicTypeEncodable) {
            sql.binds.append(value)
            sql.sql += " AND \(condition) $\(sql.binds.count)"
        }
        if let since = query.since { add("time_ms >=", PostgresServiceStore.milliseconds(since)) }
        if let until = query.until { add("time_ms <", PostgresServiceStore.milliseconds(until)) }
        if let policyID = query.policyID { add("policy_id =", policyID) }
        if let other = query.tenant, other != tenant { return AuditPage(records: [], nextCursor: nil) }
        if let verdict = query.verdict { add("verdict =", verdict.rawValue) }
        if let kind = query.kind { add("kind =", kind.rawValue) }
        if let instance = query.instance { add("instance =", instance) }
        let newestFirst = query.order == .newestFirst
        if let cursor = query.cursor { add(newestFirst ? "sequence <" : "sequence >", cursor) }
        sql.sql += " ORDER BY sequence \(newestFirst ? "DESC" : "ASC") LIMIT \(query.limit + 1)"
        let statement = sql
        let fetched: [AuditRecord] = try await store.database("query the audit log of tenant '\(tenant)'") {
            var records: [AuditRecord] = []
            for try await row in try await store.client.query(statement, logger: store.logger) {
                records.append(try Self.values(row).record())
            }
            return records
        }
        let page = Array(fetched.prefix(query.limit))
        return AuditPage(records: page, nextCursor: fetched.count > query.limit ? page.last?.sequence : nil)
    }

    func verify() async throws -> AuditVerification {
        let tenant = self.tenant
        let logger = store.logger
        return try await store.database("verify the audit log of tenant '\(tenant)'") {
            // One snapshot for records and checkpoints, so a concurrent append cannot make them disagree.
            try await store.client.withConnection { connection in
                try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    var rows: [AuditRowValues] = []
                    for try await row in try await connection.query(
                        "SELECT \(unescaped: Self.columns) FROM cmk_audit_record WHERE tenant = \(tenant) ORDER BY sequence",
                        logger: logger) { rows.append(try Self.values(row)) }
                    var checkpoints: [AuditCheckpoint] = []
                    for try await (id, sequence, head, time, fingerprint, signature) in try await connection.query(
                        """
                        SELECT id, sequence, head_hash, time_ms, key_fingerprint, signature FROM cmk_audit_checkpoint
                        WHERE tenant = \(tenant) ORDER BY id
                        """, logger: logger
                    ).decode((Int64, Int64, String, Int64, String, String).self) {
                        checkpoints.append(AuditCheckpoint(
                            id: id, sequence: sequence, headHash: head, time: SQLiteServiceStore.date(time),
                            keyFingerprint: fingerprint, signature: signature))
                    }
                    var triggers: Set<String> = []
                    for try await name in try await connection.query(
                        """
                        SELECT tgname::TEXT FROM pg_trigger
                        WHERE tgname IN ('cmk_audit_record_append_only', 'cmk_audit_checkpoint_append_only')
                        """, logger: logger
                    ).decode(String.self) { triggers.insert(name) }
                    try await connection.query("COMMIT", logger: logger)
                    return AuditLog.verify(
                        rows: rows, checkpoints: checkpoints, trustedKey: signingKey.publicKey,
                        missingTriggers: ["cmk_audit_record_append_only", "cmk_audit_checkpoint_append_only"]
                            .filter { !triggers.contains($0) })
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }
}
