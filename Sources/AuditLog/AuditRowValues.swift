public import Foundation
import GRDB

/// One audit record's stored columns, for a store other than the log's own SQLite file (the PostgreSQL store of
/// `cmk serve`). The chain, hashes, checkpoints and verification are the same as ``AuditLog``'s: this type only
/// moves the values; the store must serialise appends so each record extends the head it read (docs/audit.md).
public struct AuditRowValues: Sendable, Hashable {
    public let sequence: Int64
    public let timeMilliseconds: Int64
    public let actor: String
    public let tenant: String
    public let instance: String?
    public let kind: String
    public let appraisalJSON: String?
    public let resultTokenDigest: String?
    public let detailsJSON: String?
    public let previousHash: String
    public let recordHash: String
    public let policyID: String?
    public let policyVersion: Int64?
    public let policyDigest: String?
    public let verdict: String?
    public let evidenceType: String?
    public let simulated: Int64?

    public init(
        sequence: Int64, timeMilliseconds: Int64, actor: String, tenant: String, instance: String?, kind: String,
        appraisalJSON: String?, resultTokenDigest: String?, detailsJSON: String?, previousHash: String,
        recordHash: String, policyID: String?, policyVersion: Int64?, policyDigest: String?, verdict: String?,
        evidenceType: String?, simulated: Int64?
    ) {
        self.sequence = sequence
        self.timeMilliseconds = timeMilliseconds
        self.actor = actor
        self.tenant = tenant
        self.instance = instance
        self.kind = kind
        self.appraisalJSON = appraisalJSON
        self.resultTokenDigest = resultTokenDigest
        self.detailsJSON = detailsJSON
        self.previousHash = previousHash
        self.recordHash = recordHash
        self.policyID = policyID
        self.policyVersion = policyVersion
        self.policyDigest = policyDigest
        self.verdict = verdict
        self.evidenceType = evidenceType
        self.simulated = simulated
    }

    /// The record that extends `head` with `entry` (validated as ``AuditLog/append(_:)`` validates it), at `time`
    /// unless the entry carries its own.
    public static func appending(_ entry: AuditEntry, after head: AuditHead, time: Date) throws -> AuditRowValues {
        appending(try EncodedAuditEntry(entry), after: head, time: time)
    }

    /// The record that extends `head` with an entry encoded already, at `time` unless the entry carries its own.
    public static func appending(_ encoded: EncodedAuditEntry, after head: AuditHead, time: Date) -> AuditRowValues {
        let entry = encoded.entry
        let milliseconds = Timestamp.milliseconds(entry.time ?? time)
        let sequence = head.sequence + 1
        let columns = encoded.columns
        let hash = Digest.sha256Hex(
            AuditRecord.canonicalEncoding(
                sequence: sequence, timeMilliseconds: milliseconds, actor: entry.actor, tenant: entry.tenant,
                instance: entry.instance, kind: entry.kind.rawValue, appraisalJSON: encoded.appraisalJSON,
                resultTokenDigest: entry.resultTokenDigest, detailsJSON: encoded.detailsJSON, previousHash: head.hash))
        return AuditRowValues(
            sequence: sequence, timeMilliseconds: milliseconds, actor: entry.actor, tenant: entry.tenant,
            instance: entry.instance, kind: entry.kind.rawValue, appraisalJSON: encoded.appraisalJSON,
            resultTokenDigest: entry.resultTokenDigest, detailsJSON: encoded.detailsJSON, previousHash: head.hash,
            recordHash: hash, policyID: columns.policyID, policyVersion: columns.policyVersion,
            policyDigest: columns.policyDigest, verdict: columns.verdict, evidenceType: columns.evidenceType,
            simulated: columns.simulated)
    }

    /// Where the record landed.
    public var appended: AuditAppend {
        AuditAppend(
            head: AuditHead(sequence: sequence, hash: recordHash), previousHash: previousHash,
            time: Timestamp.date(milliseconds: timeMilliseconds))
    }

    /// The record, decoded (an appraisal or details that do not decode is a `malformed-record` error).
    public func record() throws -> AuditRecord {
        try AuditRecord(
            sequence: sequence, time: Timestamp.date(milliseconds: timeMilliseconds), actor: actor, tenant: tenant,
            instance: instance, kind: AuditKind(kind), appraisalJSON: appraisalJSON,
            resultTokenDigest: resultTokenDigest, detailsJSON: detailsJSON, previousHash: previousHash,
            hash: recordHash)
    }

    /// The values as a GRDB row with the audit_record column names (what the chain walker reads).
    var row: Row {
        let values: [String: (any DatabaseValueConvertible)?] = [
            "sequence": sequence, "time_ms": timeMilliseconds, "actor": actor, "tenant": tenant, "instance": instance,
            "kind": kind, "appraisal_json": appraisalJSON, "result_token_digest": resultTokenDigest,
            "details_json": detailsJSON, "previous_hash": previousHash, "record_hash": recordHash,
            "policy_id": policyID, "policy_version": policyVersion, "policy_digest": policyDigest,
            "verdict": verdict, "evidence_type": evidenceType, "simulated": simulated,
        ]
        return Row(values)
    }
}

extension AuditCheckpoint {
    /// Signs a checkpoint of `head` at `time` (for stores other than the log's own file).
    public static func signing(head: AuditHead, time: Date, with key: CheckpointSigningKey) throws -> AuditCheckpoint {
        try sign(sequence: head.sequence, headHash: head.hash, time: time, with: key)
    }

    /// The same checkpoint with the id its store gave it.
    public func withID(_ id: Int64) -> AuditCheckpoint {
        AuditCheckpoint(
            id: id, sequence: sequence, headHash: headHash, time: time, keyFingerprint: keyFingerprint,
            signature: signature)
    }
}
