public import Foundation
import GRDB

/// The append-only, hash-chained audit log of every appraisal and policy decision, in one SQLite file (WAL).
///
/// Each record's hash covers its content and its predecessor's hash; every ``Options/checkpointInterval``
/// records, and on demand, the log signs its head with the installation's P-384 key. Several `AuditLog`
/// values (in one process or several) may append to the same file: SQLite's write lock serializes them, and
/// each append reads the head and inserts the next record in one `BEGIN IMMEDIATE` transaction.
///
/// Calls are synchronous and short (one SQLite transaction); call them off latency-critical paths.
public final class AuditLog: Sendable {
    /// How the log behaves.
    public struct Options: Sendable {
        /// Sign a checkpoint after every this many records; 0 signs only on demand.
        public var checkpointInterval: Int
        /// How long to wait for another writer's lock before failing.
        public var busyTimeout: TimeInterval
        /// The clock for record and checkpoint times (inject a fixed one in tests).
        public var clock: @Sendable () -> Date

        public init(
            checkpointInterval: Int = 100, busyTimeout: TimeInterval = 30,
            clock: @escaping @Sendable () -> Date = { Date() }
        ) {
            self.checkpointInterval = checkpointInterval
            self.busyTimeout = busyTimeout
            self.clock = clock
        }
    }

    /// The SQLite file.
    public let path: URL
    /// The key that signs checkpoints; nil when the log was opened only to read and verify.
    public let signingKey: CheckpointSigningKey?
    /// How the log was opened.
    public let options: Options
    let pool: DatabasePool

    /// Opens (creating and migrating when needed) the log at `path`; without a signing key the log can be read,
    /// queried and verified, but not appended to.
    public init(path: URL, signingKey: CheckpointSigningKey?, options: Options = Options()) throws {
        guard options.checkpointInterval >= 0 else {
            throw AuditLogError(.invalidArgument, "the checkpoint interval must be 0 (on demand only) or more")
        }
        self.path = path
        self.signingKey = signingKey
        self.options = options
        var configuration = Configuration()
        configuration.busyMode = .timeout(options.busyTimeout)
        configuration.label = "cmk.audit"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try Self.database("open the audit log at \(path.path)") {
            try DatabasePool(path: path.path, configuration: configuration)
        }
        try migrate()
    }

    /// Opens the log at `path` with the signing key kept in `keyDirectory`, generating the key on first use
    /// (see ``CheckpointSigningKey/loadOrCreate(in:)``).
    public convenience init(path: URL, keyDirectory: URL, options: Options = Options()) throws {
        try self.init(path: path, signingKey: try CheckpointSigningKey.loadOrCreate(in: keyDirectory), options: options)
    }

    /// The public key that verifies this log's checkpoints, when the log has a signing key.
    public var checkpointKey: CheckpointKey? { signingKey?.publicKey }

    private func migrate() throws {
        let migrator = AuditSchema.migrator
        try Self.database("migrate the audit log schema") {
            if try pool.read({ try migrator.hasBeenSuperseded($0) }) {
                throw AuditLogError(
                    .unsupportedSchema, "the audit log at \(path.path) was written by a newer cmk; upgrade cmk")
            }
            // Two processes opening a new file at once both see "not migrated"; the second one's migration then
            // fails inside its own transaction, and the retry finds the schema in place.
            for attempt in 1...3 {
                do {
                    try migrator.migrate(pool)
                    return
                } catch let error as DatabaseError {
                    if try pool.read({ try migrator.hasCompletedMigrations($0) }) { return }
                    if attempt == 3 { throw error }
                }
            }
        }
    }

    // MARK: Appending

    /// Appends one record in one SQL transaction (signing a checkpoint in the same transaction when the new
    /// sequence number is a multiple of the checkpoint interval), and returns it as stored.
    @discardableResult
    public func append(_ entry: AuditEntry) throws -> AuditRecord {
        try append(entry, beforeCommit: {})
    }

    /// `append`, with a hook that runs inside the transaction after the insert: tests throw from it to show that
    /// a failure mid-append leaves no trace.
    func append(_ entry: AuditEntry, beforeCommit: () throws -> Void) throws -> AuditRecord {
        let prepared = try prepare(entry)
        let appended = try Self.database("append to the audit log") {
            try commit([prepared], beforeCommit: beforeCommit)[0]
        }
        return prepared.record(appended)
    }

    /// Appends several records in one SQL transaction, in order (group commit: one durable commit for all), with
    /// checkpoints where due, and returns each entry's outcome in the same order.
    ///
    /// An entry that is invalid on its own (no actor, a malformed digest, values that do not encode) is refused
    /// alone: its result is the error and the others are appended. A database failure appends none and throws; then
    /// no record of the batch exists, so no caller may report one as stored.
    public func append(batch entries: [AuditEntry]) throws -> [Result<AuditRecord, AuditLogError>] {
        var results: [Result<AuditRecord, AuditLogError>?] = Array(repeating: nil, count: entries.count)
        var prepared: [(index: Int, entry: PreparedEntry)] = []
        for (index, entry) in entries.enumerated() {
            do {
                prepared.append((index, try prepare(entry)))
            } catch let error as AuditLogError {
                results[index] = .failure(error)
            } catch {
                results[index] = .failure(AuditLogError(.encoding, "\(error)"))
            }
        }
        if !prepared.isEmpty {
            let appended = try Self.database("append to the audit log") {
                try commit(prepared.map { $0.entry }, beforeCommit: {})
            }
            for (item, appended) in zip(prepared, appended) { results[item.index] = .success(item.entry.record(appended)) }
        }
        return results.map { $0! }
    }

    /// Appends entries encoded already (by whoever appends, outside the write lock) in one SQL transaction, in order,
    /// with checkpoints where due, and returns where each landed. Nothing is decoded back: a caller that needs the
    /// record as stored makes it with ``AuditRecord/init(_:appended:)``. A database failure appends none and throws.
    public func append(encoded entries: [EncodedAuditEntry]) throws -> [AuditAppend] {
        guard signingKey != nil else {
            throw AuditLogError(.noSigningKey, "the audit log was opened without a signing key; it cannot append")
        }
        let prepared = entries.map {
            PreparedEntry(encoded: $0, timeMilliseconds: Timestamp.milliseconds($0.entry.time ?? options.clock()), decoded: nil)
        }
        return try Self.database("append to the audit log") { try commit(prepared, beforeCommit: {}) }
    }

    /// An entry checked and encoded outside the write lock, with its time; `decoded` holds the appraisal and details
    /// decoded back from the very texts the hash covers, so a returned record says what a later read says (nil when
    /// the caller wants only where the entry landed).
    struct PreparedEntry {
        let encoded: EncodedAuditEntry
        let timeMilliseconds: Int64
        let decoded: AuditRecord.Decoded?

        func record(_ appended: AuditAppend) -> AuditRecord {
            let entry = encoded.entry
            return AuditRecord(
                sequence: appended.head.sequence, time: appended.time,
                actor: entry.actor, tenant: entry.tenant, instance: entry.instance, kind: entry.kind,
                appraisalJSON: encoded.appraisalJSON, resultTokenDigest: entry.resultTokenDigest,
                detailsJSON: encoded.detailsJSON, previousHash: appended.previousHash, hash: appended.head.hash,
                decoded: decoded ?? AuditRecord.Decoded(appraisal: nil, details: [:]))
        }
    }

    func prepare(_ entry: AuditEntry) throws -> PreparedEntry {
        guard signingKey != nil else {
            throw AuditLogError(.noSigningKey, "the audit log was opened without a signing key; it cannot append")
        }
        let encoded = try EncodedAuditEntry(entry)
        return PreparedEntry(
            encoded: encoded, timeMilliseconds: Timestamp.milliseconds(entry.time ?? options.clock()),
            decoded: try AuditRecord.decode(
                appraisalJSON: encoded.appraisalJSON, detailsJSON: encoded.detailsJSON, sequence: nil))
    }

    /// Inserts the prepared entries after the head in one `BEGIN IMMEDIATE` transaction; returns where each landed
    /// once the transaction has committed.
    private func commit(_ entries: [PreparedEntry], beforeCommit: () throws -> Void) throws -> [AuditAppend] {
        guard let signingKey else {
            throw AuditLogError(.noSigningKey, "the audit log was opened without a signing key; it cannot append")
        }
        let interval = Int64(options.checkpointInterval)
        let clock = options.clock
        return try pool.writeWithoutTransaction { db in
            var stored: [AuditAppend] = []
            try db.inTransaction(.immediate) {
                stored = []
                var head = try Self.head(db)
                for prepared in entries {
                    let entry = prepared.encoded.entry
                    let sequence = head.sequence + 1
                    let encoding = AuditRecord.canonicalEncoding(
                        sequence: sequence, timeMilliseconds: prepared.timeMilliseconds, actor: entry.actor,
                        tenant: entry.tenant, instance: entry.instance, kind: entry.kind.rawValue,
                        appraisalJSON: prepared.encoded.appraisalJSON, resultTokenDigest: entry.resultTokenDigest,
                        detailsJSON: prepared.encoded.detailsJSON, previousHash: head.hash)
                    let hash = Digest.sha256Hex(encoding)
                    let columns = prepared.encoded.columns
                    let insert = try db.cachedStatement(
                        sql: """
                            INSERT INTO audit_record (
                                sequence, time_ms, actor, tenant, instance, kind, appraisal_json,
                                result_token_digest, details_json, previous_hash, record_hash,
                                policy_id, policy_version, policy_digest, verdict, evidence_type, simulated)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """)
                    try insert.execute(arguments: [
                        sequence, prepared.timeMilliseconds, entry.actor, entry.tenant, entry.instance,
                        entry.kind.rawValue, prepared.encoded.appraisalJSON, entry.resultTokenDigest,
                        prepared.encoded.detailsJSON, head.hash, hash, columns.policyID, columns.policyVersion,
                        columns.policyDigest, columns.verdict, columns.evidenceType, columns.simulated,
                    ])
                    if interval > 0, sequence % interval == 0 {
                        _ = try Self.insertCheckpoint(
                            db, head: AuditHead(sequence: sequence, hash: hash), time: clock(), key: signingKey)
                    }
                    let appended = AuditHead(sequence: sequence, hash: hash)
                    stored.append(AuditAppend(
                        head: appended, previousHash: head.hash,
                        time: Timestamp.date(milliseconds: prepared.timeMilliseconds)))
                    head = appended
                }
                try beforeCommit()
                return .commit
            }
            return stored
        }
    }

    static func validate(_ entry: AuditEntry) throws {
        guard !entry.actor.isEmpty else { throw AuditLogError(.invalidArgument, "an audit entry needs an actor") }
        guard !entry.tenant.isEmpty else { throw AuditLogError(.invalidArgument, "an audit entry needs a tenant") }
        guard !entry.kind.rawValue.isEmpty else {
            throw AuditLogError(.invalidArgument, "an audit entry needs a kind")
        }
        if let digest = entry.resultTokenDigest, !Digest.isSHA256Hex(digest) {
            throw AuditLogError(
                .invalidArgument,
                "the result token digest must be SHA-256 as 64 lower-case hex digits, not '\(digest)'")
        }
    }

    // MARK: Checkpoints

    /// Signs a checkpoint of the current head now (also on an empty log: sequence 0, the genesis hash).
    @discardableResult
    public func checkpoint() throws -> AuditCheckpoint {
        guard let signingKey else {
            throw AuditLogError(.noSigningKey, "the audit log was opened without a signing key; it cannot sign")
        }
        let time = options.clock()
        return try Self.database("sign an audit checkpoint") {
            try pool.writeWithoutTransaction { db in
                var checkpoint: AuditCheckpoint?
                try db.inTransaction(.immediate) {
                    checkpoint = try Self.insertCheckpoint(db, head: try Self.head(db), time: time, key: signingKey)
                    return .commit
                }
                return checkpoint!
            }
        }
    }

    /// Every checkpoint in the log, oldest first.
    public func checkpoints() throws -> [AuditCheckpoint] {
        try Self.database("read the audit checkpoints") {
            try pool.read { db in try StoredCheckpointRow.fetchAll(db).map { $0.checkpoint() } }
        }
    }

    /// The newest checkpoint, if any.
    public func lastCheckpoint() throws -> AuditCheckpoint? {
        try Self.database("read the last audit checkpoint") {
            try pool.read { db in
                try StoredCheckpointRow.fetchAll(db, sql: "ORDER BY id DESC LIMIT 1").first?.checkpoint()
            }
        }
    }

    /// The head of the chain: the newest record's sequence number and hash (0 and the genesis hash when empty).
    public func head() throws -> AuditHead {
        try Self.database("read the audit log head") { try pool.read { try Self.head($0) } }
    }

    static func head(_ db: Database) throws -> AuditHead {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT sequence, record_hash FROM audit_record ORDER BY sequence DESC LIMIT 1")
        else { return AuditHead(sequence: 0, hash: AuditRecord.genesisHash) }
        guard let sequence = Int64.fromDatabaseValue(row["sequence"]),
            let hash = String.fromDatabaseValue(row["record_hash"])
        else { throw AuditLogError(.malformedRecord, "the newest record's sequence or hash is not readable") }
        return AuditHead(sequence: sequence, hash: hash)
    }

    private static func insertCheckpoint(
        _ db: Database, head: AuditHead, time: Date, key: CheckpointSigningKey
    ) throws -> AuditCheckpoint {
        let signed = try AuditCheckpoint.sign(sequence: head.sequence, headHash: head.hash, time: time, with: key)
        try db.execute(
            sql: """
                INSERT INTO audit_checkpoint (sequence, head_hash, time_ms, key_fingerprint, signature)
                VALUES (?, ?, ?, ?, ?)
                """,
            arguments: [
                signed.sequence, signed.headHash, Timestamp.milliseconds(signed.time), signed.keyFingerprint,
                signed.signature,
            ])
        return AuditCheckpoint(
            id: db.lastInsertedRowID, sequence: signed.sequence, headHash: signed.headHash, time: signed.time,
            keyFingerprint: signed.keyFingerprint, signature: signed.signature)
    }

    // MARK: Errors

    /// Runs `body`, turning SQLite's errors into ``AuditLogError``s that say what was being done.
    static func database<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as AuditLogError {
            throw error
        } catch let error as DatabaseError {
            throw AuditLogError(
                .database, "could not \(what): \(error.message ?? error.description)",
                nativeCode: error.extendedResultCode.rawValue)
        } catch {
            throw AuditLogError(.database, "could not \(what): \(error)")
        }
    }
}

/// The newest record's position in the chain.
/// An audit entry checked and put in its canonical JSON, once, by whoever appends (outside any write lock): the
/// appraisal and details texts are the exact bytes the record stores and its hash covers, so a caller may also hand
/// them on (`cmk serve` writes the same appraisal text in its answer).
public struct EncodedAuditEntry: Sendable, Hashable {
    public let entry: AuditEntry
    /// The appraisal's canonical JSON (nil for entries without one).
    public let appraisalJSON: String?
    /// The details' canonical JSON (nil when there are none).
    public let detailsJSON: String?
    let columns: IndexedAppraisalColumns

    /// Checks the entry as ``AuditLog/append(_:)`` does (actor, tenant, kind, digest form) and encodes it.
    public init(_ entry: AuditEntry) throws {
        try AuditLog.validate(entry)
        self.entry = entry
        appraisalJSON = try entry.appraisal.map { try CanonicalJSON.string($0) }
        detailsJSON = entry.details.isEmpty ? nil : try CanonicalJSON.string(entry.details)
        columns = IndexedAppraisalColumns(entry.appraisal)
    }
}

/// Where an appended entry landed: the new head (its sequence number and record hash), the hash it extends, and
/// the record's time (whole milliseconds).
public struct AuditAppend: Sendable, Hashable {
    public let head: AuditHead
    public let previousHash: String
    public let time: Date

    public init(head: AuditHead, previousHash: String, time: Date) {
        self.head = head
        self.previousHash = previousHash
        self.time = time
    }
}

public struct AuditHead: Sendable, Hashable, Codable {
    /// The number of records (the newest record's sequence number; 0 when empty).
    public let sequence: Int64
    /// The newest record's hash (``AuditRecord/genesisHash`` when empty).
    public let hash: String

    public init(sequence: Int64, hash: String) {
        self.sequence = sequence
        self.hash = hash
    }
}
