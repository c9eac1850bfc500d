import Foundation
import GRDB
import AttestationPolicy

/// One place where the log is not what the audit log wrote.
public struct AuditProblem: Sendable, Hashable, Codable, CustomStringConvertible {
    /// What is wrong.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A record's content no longer gives its hash, or a record was re-hashed after a change.
        case modified
        /// Records are missing from the chain.
        case deleted
        /// A record that the log did not write was put into the chain.
        case inserted
        /// Records are in a different order than they were written.
        case reordered
        /// Records a checkpoint covers are missing at the end of the log.
        case truncated
        /// A checkpoint's signature does not verify under the trusted key.
        case checkpointSignature = "checkpoint-signature"
        /// A checkpoint's head hash is not the hash of the record it names: the chain was rewritten.
        case checkpointMismatch = "checkpoint-mismatch"
    }

    public let kind: Kind
    /// The sequence number where the problem is (for a checkpoint problem: the sequence it covers).
    public let sequence: Int64
    /// A sentence for a person: `record 17 was modified: its content does not match its hash`.
    public let message: String

    public init(kind: Kind, sequence: Int64, message: String) {
        self.kind = kind
        self.sequence = sequence
        self.message = message
    }

    public var description: String { message }
}

/// A checkpoint and what verification found about it.
public struct CheckpointStatus: Sendable, Hashable, Codable {
    /// Whether a checkpoint's signature verified.
    public enum Signature: String, Sendable, Hashable, Codable {
        /// It verifies under the trusted key.
        case valid
        /// It names another key, or does not verify.
        case invalid
        /// No trusted key was given, so the signature was not checked.
        case unchecked
    }

    public let checkpoint: AuditCheckpoint
    public let signature: Signature
    /// Whether the record the checkpoint names is in the log with the checkpoint's head hash.
    public let matchesChain: Bool
}

/// What ``AuditLog/verify(trustedKey:externalCheckpoints:)`` found: the chain's head and every problem, the first
/// broken place first.
public struct AuditVerification: Sendable, Hashable, Codable {
    /// How many records the log holds.
    public let recordCount: Int64
    /// The newest record's sequence number and hash.
    public let head: AuditHead
    /// Every problem found (at most ``maximumProblems``), ordered by sequence number.
    public let problems: [AuditProblem]
    /// How many checkpoints the log holds.
    public let checkpointCount: Int
    /// The newest checkpoint in the log and its status.
    public let lastCheckpoint: CheckpointStatus?
    /// Records after the newest checkpoint: not an error, but not yet covered by a signature.
    public let uncheckpointedRecords: Int64
    /// The fingerprint of the key checkpoint signatures were checked against (nil: not checked).
    public let trustedKeyFingerprint: String?
    /// The append-only triggers that are missing: someone with write access to the file dropped them.
    public let missingTriggers: [String]

    /// verify() stops collecting after this many problems (the first ones matter).
    public static let maximumProblems = 100

    /// The first broken place, if any.
    public var firstProblem: AuditProblem? { problems.first }

    /// Whether no problem was found.
    public var isIntact: Bool { problems.isEmpty }

    /// A few lines for a person: the verdict, the head, the last checkpoint, what is not yet checkpointed.
    public var summary: String {
        var lines: [String] = []
        if let first = firstProblem {
            let more = problems.count > 1 ? " (and \(problems.count - 1) more problem(s))" : ""
            lines.append("BROKEN: \(first.message)\(more)")
        } else {
            lines.append("intact: \(recordCount) record(s), head \(head.sequence) \(head.hash)")
        }
        if let last = lastCheckpoint {
            let checkpoint = last.checkpoint
            lines.append(
                "last checkpoint: \(checkpoint.id.map { "#\($0) " } ?? "")at sequence \(checkpoint.sequence), "
                    + "\(Timestamp.string(checkpoint.time)), signature \(last.signature.rawValue) "
                    + "(key \(checkpoint.keyFingerprint)), "
                    + (last.matchesChain ? "matches the chain" : "does NOT match the chain"))
        } else {
            lines.append("no checkpoint yet")
        }
        if uncheckpointedRecords > 0 { lines.append("not yet checkpointed: \(uncheckpointedRecords) record(s)") }
        if !missingTriggers.isEmpty {
            lines.append("append-only triggers missing: \(missingTriggers.joined(separator: ", "))")
        }
        return lines.joined(separator: "\n")
    }
}

extension AuditLog {
    /// Re-computes every record's hash and link, and checks every checkpoint, naming the first broken place.
    ///
    /// - Parameters:
    ///   - trustedKey: the key checkpoints must be signed with; defaults to this log's own signing key. Without
    ///     either, signatures are reported as unchecked.
    ///   - externalCheckpoints: checkpoints kept outside the log (``AuditCheckpoint/jsonString()``): against them
    ///     a truncation or rewrite after the log's own last checkpoint shows.
    public func verify(
        trustedKey: CheckpointKey? = nil, externalCheckpoints: [AuditCheckpoint] = []
    ) throws -> AuditVerification {
        let key = trustedKey ?? checkpointKey
        return try Self.database("verify the audit log") {
            try pool.read { db in
                var walker = try ChainWalker(db)
                let records = try Row.fetchCursor(
                    db, sql: "SELECT \(StoredRecordRow.columns) FROM audit_record ORDER BY sequence")
                var index = 0
                while let row = try records.next() {
                    walker.visit(row, at: index)
                    index += 1
                }
                var problems = walker.problems
                let stored = try Row.fetchAll(
                    db,
                    sql: "SELECT id, sequence, head_hash, time_ms, key_fingerprint, signature FROM audit_checkpoint "
                        + "ORDER BY id")
                var checkpoints: [AuditCheckpoint] = []
                for row in stored {
                    do {
                        checkpoints.append(try StoredCheckpointRow(row).checkpoint())
                    } catch let error as MalformedColumn {
                        let id = Int64.fromDatabaseValue(row["id"]).map(String.init) ?? "?"
                        let sequence = Int64.fromDatabaseValue(row["sequence"]) ?? 0
                        problems.append(
                            AuditProblem(
                                kind: .checkpointMismatch, sequence: sequence,
                                message: "checkpoint \(id) was modified: \(error.reason)"))
                    }
                }
                var statuses: [CheckpointStatus] = []
                for checkpoint in checkpoints {
                    statuses.append(walker.check(checkpoint, external: false, key: key, problems: &problems))
                }
                for checkpoint in externalCheckpoints {
                    _ = walker.check(checkpoint, external: true, key: key, problems: &problems)
                }
                let triggers = Set(
                    try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'trigger'"))
                return walker.verification(
                    problems: problems, checkpoints: statuses, key: key,
                    missingTriggers: AuditSchema.triggers.filter { !triggers.contains($0) })
            }
        }
    }
}

extension AuditLog {
    /// ``verify(trustedKey:externalCheckpoints:)`` over records and checkpoints read from another store (the
    /// PostgreSQL store of `cmk serve`): `rows` in sequence order, `checkpoints` in the order they were written.
    /// `missingTriggers` names the store's own append-only guards found missing.
    public static func verify(
        rows: [AuditRowValues], checkpoints: [AuditCheckpoint], trustedKey: CheckpointKey?,
        missingTriggers: [String] = []
    ) -> AuditVerification {
        var walker = ChainWalker(rows: rows)
        for (index, row) in rows.enumerated() { walker.visit(row.row, at: index) }
        var problems = walker.problems
        var statuses: [CheckpointStatus] = []
        for checkpoint in checkpoints {
            statuses.append(walker.check(checkpoint, external: false, key: trustedKey, problems: &problems))
        }
        return walker.verification(
            problems: problems, checkpoints: statuses, key: trustedKey, missingTriggers: missingTriggers)
    }
}

extension ChainWalker {
    /// The outcome of a walk: `problems` (the walker's and the checkpoints') in a stable order — record problems in
    /// chain order, checkpoint problems after them at the same sequence — capped, and `checkpoints` in the order
    /// they were written.
    func verification(
        problems: [AuditProblem], checkpoints: [CheckpointStatus], key: CheckpointKey?, missingTriggers: [String]
    ) -> AuditVerification {
        let ordered = problems.enumerated().sorted {
            ($0.element.sequence, $0.offset) < ($1.element.sequence, $1.offset)
        }.map(\.element)
        let last = checkpoints.last
        return AuditVerification(
            recordCount: Int64(count), head: head,
            problems: Array(ordered.prefix(AuditVerification.maximumProblems)),
            checkpointCount: checkpoints.count, lastCheckpoint: last,
            uncheckpointedRecords: max(0, head.sequence - (last?.checkpoint.sequence ?? 0)),
            trustedKeyFingerprint: key?.fingerprint, missingTriggers: missingTriggers)
    }
}

/// Walks the chain in sequence order and diagnoses the first break at each place (docs/audit.md, "Verification").
///
/// A first pass loads every record's sequence number, previous hash and hash, so that a broken link can be
/// told apart: a link to a later record is a reordering, a record its successor links past was inserted, a link
/// to no record at all is a deletion (or a modified record whose hash was recomputed).
private struct ChainWalker {
    private(set) var problems: [AuditProblem] = []
    private let sequences: [Int64]
    private let previousHashes: [String]
    private let hashes: [String]
    private let indexOfHash: [String: Int]
    private let indexOfSequence: [Int64: Int]
    /// Links up to this index are explained by a reordering already reported.
    private var explainedThrough = -1

    /// A walker over rows already read (stores other than the log's own file), in sequence order.
    init(rows: [AuditRowValues]) {
        sequences = rows.map(\.sequence)
        previousHashes = rows.map(\.previousHash)
        hashes = rows.map(\.recordHash)
        indexOfHash = Dictionary(hashes.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        indexOfSequence = Dictionary(
            sequences.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    init(_ db: Database) throws {
        var sequences: [Int64] = []
        var previousHashes: [String] = []
        var hashes: [String] = []
        let rows = try Row.fetchCursor(
            db, sql: "SELECT sequence, previous_hash, record_hash FROM audit_record ORDER BY sequence")
        while let row = try rows.next() {
            sequences.append(Int64.fromDatabaseValue(row["sequence"]) ?? 0)
            previousHashes.append(String.fromDatabaseValue(row["previous_hash"]) ?? "")
            hashes.append(String.fromDatabaseValue(row["record_hash"]) ?? "")
        }
        self.sequences = sequences
        self.previousHashes = previousHashes
        self.hashes = hashes
        indexOfHash = Dictionary(hashes.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        indexOfSequence = Dictionary(
            sequences.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    var count: Int { sequences.count }

    var head: AuditHead {
        guard let sequence = sequences.last, let hash = hashes.last else {
            return AuditHead(sequence: 0, hash: AuditRecord.genesisHash)
        }
        return AuditHead(sequence: sequence, hash: hash)
    }

    private func hash(before index: Int) -> String { index > 0 ? hashes[index - 1] : AuditRecord.genesisHash }

    private mutating func report(_ kind: AuditProblem.Kind, _ sequence: Int64, _ message: String) {
        guard problems.count < AuditVerification.maximumProblems else { return }
        problems.append(AuditProblem(kind: kind, sequence: sequence, message: message))
    }

    mutating func visit(_ row: Row, at index: Int) {
        let stored: StoredRecordRow
        do {
            stored = try StoredRecordRow(row)
        } catch {
            report(.modified, sequences[index], "record \(sequences[index]) was modified: \(error.reason)")
            return
        }
        let sequence = stored.sequence
        let expectedSequence = index > 0 ? sequences[index - 1] + 1 : 1
        let expectedPrevious = hash(before: index)
        let selfConsistent = stored.computedHash == stored.recordHash
        if sequence > expectedSequence {
            let missing = sequence - expectedSequence == 1
                ? "record \(expectedSequence) was deleted"
                : "records \(expectedSequence)…\(sequence - 1) were deleted"
            report(.deleted, expectedSequence, "\(missing): the log goes from \(expectedSequence - 1) to \(sequence)")
        } else if stored.previousHash != expectedPrevious && index > explainedThrough {
            diagnoseBrokenLink(stored, at: index, selfConsistent: selfConsistent)
        } else if !selfConsistent {
            report(.modified, sequence, "record \(sequence) was modified: its content does not match its hash")
        } else if let column = stored.indexed.firstDifference(from: indexedColumns(of: stored)) {
            report(
                .modified, sequence,
                "record \(sequence) was modified: its column \(column) disagrees with its stored appraisal")
        }
    }

    private mutating func diagnoseBrokenLink(_ stored: StoredRecordRow, at index: Int, selfConsistent: Bool) {
        let sequence = stored.sequence
        let linked = indexOfHash[stored.previousHash]
        if let later = linked, later > index {
            report(
                .reordered, sequence,
                "records \(sequence) and \(sequences[later]) are out of order: record \(sequence) links to record "
                    + "\(sequences[later]), which comes after it")
            explainedThrough = later
        } else if index + 1 < sequences.count, previousHashes[index + 1] == hash(before: index) {
            report(
                .inserted, sequence,
                "record \(sequence) was inserted: record \(sequences[index + 1]) links past it to "
                    + (index > 0 ? "record \(sequences[index - 1])" : "the start of the log"))
        } else if index >= 1, stored.previousHash == hash(before: index - 1) {
            report(
                .inserted, sequences[index - 1],
                "record \(sequences[index - 1]) was inserted: record \(sequence) links past it to "
                    + (index > 1 ? "record \(sequences[index - 2])" : "the start of the log"))
        } else if let earlier = linked, earlier < index - 1 {
            let first = sequences[earlier + 1]
            let last = sequences[index - 1]
            report(
                .inserted, first,
                (first == last ? "record \(first) was inserted" : "records \(first)…\(last) were inserted")
                    + ": record \(sequence) links past them to record \(sequences[earlier])")
        } else if selfConsistent && index > 0 {
            let previous = sequences[index - 1]
            report(
                .modified, previous,
                "record \(previous) was modified: its hash was recomputed, but record \(sequence) still links to "
                    + "its original hash")
        } else if selfConsistent {
            report(
                .modified, sequence,
                "record \(sequence) was modified: it is the first record but does not link to the start of the log")
        } else {
            report(
                .deleted, sequence,
                "a record before record \(sequence) was deleted: record \(sequence) links to a record that is not "
                    + "in the log, and the records after it were renumbered")
        }
    }

    private func indexedColumns(of stored: StoredRecordRow) -> IndexedAppraisalColumns {
        guard let json = stored.appraisalJSON else { return IndexedAppraisalColumns(nil) }
        let decoded = try? CanonicalJSON.decoder().decode(Appraisal.self, from: Data(json.utf8))
        // An appraisal that no longer decodes cannot match any indexed column: report it as a difference.
        return decoded.map { IndexedAppraisalColumns($0) }
            ?? IndexedAppraisalColumns(
                policyID: "\u{0}undecodable", policyVersion: nil, policyDigest: nil, verdict: nil, evidenceType: nil,
                simulated: nil)
    }

    /// Checks one checkpoint's signature and its head hash against the chain.
    mutating func check(
        _ checkpoint: AuditCheckpoint, external: Bool, key: CheckpointKey?, problems: inout [AuditProblem]
    ) -> CheckpointStatus {
        let name = external
            ? "the external checkpoint at sequence \(checkpoint.sequence)"
            : "checkpoint \(checkpoint.id.map(String.init) ?? "?") (sequence \(checkpoint.sequence))"
        var signature = CheckpointStatus.Signature.unchecked
        if let key {
            signature = checkpoint.isValid(under: key) ? .valid : .invalid
            if signature == .invalid {
                let why = checkpoint.keyFingerprint == key.fingerprint
                    ? "has an invalid signature"
                    : "is signed by key \(checkpoint.keyFingerprint), not the trusted key \(key.fingerprint)"
                problems.append(
                    AuditProblem(kind: .checkpointSignature, sequence: checkpoint.sequence, message: "\(name) \(why)"))
            }
        }
        let headSequence = head.sequence
        var matches = false
        if checkpoint.sequence > headSequence {
            let first = headSequence + 1
            let range = first == checkpoint.sequence
                ? "record \(first), which is missing" : "records \(first)…\(checkpoint.sequence), which are missing"
            problems.append(
                AuditProblem(
                    kind: .truncated, sequence: first,
                    message: "the log was truncated: \(name) covers \(range)"))
        } else if checkpoint.sequence == 0 {
            matches = checkpoint.headHash == AuditRecord.genesisHash
        } else if let index = indexOfSequence[checkpoint.sequence] {
            matches = hashes[index] == checkpoint.headHash
            if !matches {
                problems.append(
                    AuditProblem(
                        kind: .checkpointMismatch, sequence: checkpoint.sequence,
                        message: "\(name) does not match the chain: it signs head hash \(checkpoint.headHash), but "
                            + "record \(checkpoint.sequence) has hash \(hashes[index]); the records up to "
                            + "\(checkpoint.sequence) were rewritten"))
            }
        }
        // A checkpoint naming a deleted record: the deletion itself is already reported by the walk.
        return CheckpointStatus(checkpoint: checkpoint, signature: signature, matchesChain: matches)
    }
}
