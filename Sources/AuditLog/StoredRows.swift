import Foundation
import GRDB

/// A column that does not hold what the schema says (NULL in a NOT NULL column, a number for text ...): the
/// row was written by something other than the audit log.
struct MalformedColumn: Error {
    let column: String
    let value: DatabaseValue

    var reason: String { "its column \(column) holds \(value)" }
}

extension Row {
    func text(_ column: String) throws(MalformedColumn) -> String {
        let value: DatabaseValue = self[column]
        guard case .string(let text) = value.storage else { throw MalformedColumn(column: column, value: value) }
        return text
    }

    func optionalText(_ column: String) throws(MalformedColumn) -> String? {
        let value: DatabaseValue = self[column]
        switch value.storage {
        case .null: return nil
        case .string(let text): return text
        default: throw MalformedColumn(column: column, value: value)
        }
    }

    func integer(_ column: String) throws(MalformedColumn) -> Int64 {
        let value: DatabaseValue = self[column]
        guard case .int64(let number) = value.storage else { throw MalformedColumn(column: column, value: value) }
        return number
    }

    func optionalInteger(_ column: String) throws(MalformedColumn) -> Int64? {
        let value: DatabaseValue = self[column]
        switch value.storage {
        case .null: return nil
        case .int64(let number): return number
        default: throw MalformedColumn(column: column, value: value)
        }
    }
}

/// One `audit_record` row exactly as stored, before any decoding: what verify() checks.
struct StoredRecordRow {
    static let columns = """
        sequence, time_ms, actor, tenant, instance, kind, appraisal_json, result_token_digest, details_json,
        previous_hash, record_hash, policy_id, policy_version, policy_digest, verdict, evidence_type, simulated
        """

    let sequence: Int64
    let timeMilliseconds: Int64
    let actor: String
    let tenant: String
    let instance: String?
    let kind: String
    let appraisalJSON: String?
    let resultTokenDigest: String?
    let detailsJSON: String?
    let previousHash: String
    let recordHash: String
    let indexed: IndexedAppraisalColumns

    init(_ row: Row) throws(MalformedColumn) {
        sequence = try row.integer("sequence")
        timeMilliseconds = try row.integer("time_ms")
        actor = try row.text("actor")
        tenant = try row.text("tenant")
        instance = try row.optionalText("instance")
        kind = try row.text("kind")
        appraisalJSON = try row.optionalText("appraisal_json")
        resultTokenDigest = try row.optionalText("result_token_digest")
        detailsJSON = try row.optionalText("details_json")
        previousHash = try row.text("previous_hash")
        recordHash = try row.text("record_hash")
        indexed = IndexedAppraisalColumns(
            policyID: try row.optionalText("policy_id"), policyVersion: try row.optionalInteger("policy_version"),
            policyDigest: try row.optionalText("policy_digest"), verdict: try row.optionalText("verdict"),
            evidenceType: try row.optionalText("evidence_type"), simulated: try row.optionalInteger("simulated"))
    }

    var computedHash: String {
        Digest.sha256Hex(
            AuditRecord.canonicalEncoding(
                sequence: sequence, timeMilliseconds: timeMilliseconds, actor: actor, tenant: tenant,
                instance: instance, kind: kind, appraisalJSON: appraisalJSON, resultTokenDigest: resultTokenDigest,
                detailsJSON: detailsJSON, previousHash: previousHash))
    }

    func record() throws -> AuditRecord {
        try AuditRecord(
            sequence: sequence, time: Timestamp.date(milliseconds: timeMilliseconds), actor: actor, tenant: tenant,
            instance: instance, kind: AuditKind(kind), appraisalJSON: appraisalJSON,
            resultTokenDigest: resultTokenDigest, detailsJSON: detailsJSON, previousHash: previousHash,
            hash: recordHash)
    }

    /// Decodes every row `sql` (a `WHERE ... ORDER BY ...` tail) selects into records, failing on a malformed one.
    static func records(_ db: Database, where sql: String, arguments: StatementArguments) throws -> [AuditRecord] {
        try Row.fetchAll(db, sql: "SELECT \(columns) FROM audit_record \(sql)", arguments: arguments).map { row in
            do {
                return try StoredRecordRow(row).record()
            } catch let malformed as MalformedColumn {
                let sequence = Int64.fromDatabaseValue(row["sequence"]).map(String.init) ?? "?"
                throw AuditLogError(
                    .malformedRecord, "record \(sequence) cannot be read: \(malformed.reason); run verify")
            }
        }
    }
}

/// One `audit_checkpoint` row as stored.
struct StoredCheckpointRow {
    let id: Int64
    let sequence: Int64
    let headHash: String
    let timeMilliseconds: Int64
    let keyFingerprint: String
    let signature: String

    init(_ row: Row) throws(MalformedColumn) {
        id = try row.integer("id")
        sequence = try row.integer("sequence")
        headHash = try row.text("head_hash")
        timeMilliseconds = try row.integer("time_ms")
        keyFingerprint = try row.text("key_fingerprint")
        signature = try row.text("signature")
    }

    func checkpoint() -> AuditCheckpoint {
        AuditCheckpoint(
            id: id, sequence: sequence, headHash: headHash, time: Timestamp.date(milliseconds: timeMilliseconds),
            keyFingerprint: keyFingerprint, signature: signature)
    }

    /// The rows `tail` (an `ORDER BY ...` clause) selects; a malformed row is an error.
    static func fetchAll(_ db: Database, sql tail: String = "ORDER BY id") throws -> [StoredCheckpointRow] {
        try Row.fetchAll(
            db, sql: "SELECT id, sequence, head_hash, time_ms, key_fingerprint, signature FROM audit_checkpoint \(tail)"
        ).map { row in
            do {
                return try StoredCheckpointRow(row)
            } catch let malformed as MalformedColumn {
                throw AuditLogError(.malformedRecord, "a checkpoint cannot be read: \(malformed.reason); run verify")
            }
        }
    }
}
