import AttestationPolicy
import CMKTesting
import Foundation
import Testing

@testable import AuditLog

/// Each test plays an attacker with write access to the file: triggers dropped, rows changed with raw SQL.
@Suite("AuditLog verify(): names the first broken place")
struct AuditVerificationTests {
    /// 25 records, checkpoints at 10 and 20.
    private static func tamperedLog(_ attack: String) throws -> (TemporaryFolder, AuditLog, AuditVerification) {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 10)
        try Fixture.fill(log, count: 25)
        #expect(try log.verify().isIntact)
        try Attacker.run(folder.database, attack)
        return (folder, log, try log.verify())
    }

    @Test("a record changed in place is reported as modified")
    func modifiedRecord() throws {
        let (_, _, result) = try Self.tamperedLog(
            "con.execute(\"UPDATE audit_record SET actor = 'mallory' WHERE sequence = 17\")")
        #expect(result.firstProblem?.kind == .modified)
        #expect(result.firstProblem?.sequence == 17)
        #expect(result.firstProblem?.message == "record 17 was modified: its content does not match its hash")
        #expect(result.missingTriggers.count == AuditSchema.triggers.count)
        #expect(result.summary.hasPrefix("BROKEN: record 17 was modified"))
    }

    @Test("an indexed column changed to hide a rejection is reported as modified")
    func modifiedIndexedColumn() throws {
        let (_, _, result) = try Self.tamperedLog(
            "con.execute(\"UPDATE audit_record SET verdict = 'admit' WHERE sequence = 3\")")
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .modified, sequence: 3,
                    message: "record 3 was modified: its column verdict disagrees with its stored appraisal"))
    }

    @Test("a record changed and re-hashed is reported as modified, found through its successor's link")
    func modifiedAndRehashed() throws {
        let (_, _, result) = try Self.tamperedLog(
            """
            r = row(17); r['actor'] = 'mallory'
            con.execute('UPDATE audit_record SET actor = ?, record_hash = ? WHERE sequence = 17',
                        ('mallory', record_hash(r)))
            """)
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .modified, sequence: 17,
                    message: "record 17 was modified: its hash was recomputed, but record 18 still links to its "
                        + "original hash"))
    }

    @Test("a deleted record is reported as deleted, with the gap")
    func deletedRecord() throws {
        let (_, _, result) = try Self.tamperedLog("con.execute('DELETE FROM audit_record WHERE sequence = 17')")
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .deleted, sequence: 17, message: "record 17 was deleted: the log goes from 16 to 18"))
        let (_, _, range) = try Self.tamperedLog(
            "con.execute('DELETE FROM audit_record WHERE sequence BETWEEN 15 AND 17')")
        #expect(range.firstProblem?.message == "records 15…17 were deleted: the log goes from 14 to 18")
    }

    @Test("a deleted record whose successors were renumbered is reported as deleted")
    func deletedAndRenumbered() throws {
        let (_, _, result) = try Self.tamperedLog(
            """
            con.execute('DELETE FROM audit_record WHERE sequence = 17')
            for sequence in range(18, 26):
                con.execute('UPDATE audit_record SET sequence = ? WHERE sequence = ?', (sequence - 1, sequence))
            """)
        #expect(result.firstProblem?.kind == .deleted)
        #expect(result.firstProblem?.sequence == 17)
        #expect(
            result.firstProblem?.message
                == "a record before record 17 was deleted: record 17 links to a record that is not in the log, "
                + "and the records after it were renumbered")
    }

    @Test("a forged record inserted into the chain is reported as inserted")
    func insertedRecord() throws {
        let (_, _, result) = try Self.tamperedLog(
            """
            for sequence in range(25, 16, -1):
                con.execute('UPDATE audit_record SET sequence = ? WHERE sequence = ?', (sequence + 1, sequence))
            forged = row(16)
            forged.update(sequence=17, actor='mallory', previous_hash=row(16)['record_hash'],
                          appraisal_json=row(18)['appraisal_json'].replace('"verdict":"reject"', '"verdict":"admit"'))
            forged['record_hash'] = record_hash(forged)
            columns = ', '.join(forged.keys())
            con.execute('INSERT INTO audit_record (%s) VALUES (%s)' % (columns, ', '.join('?' * len(forged))),
                        list(forged.values()))
            """)
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .inserted, sequence: 17,
                    message: "record 17 was inserted: record 18 links past it to record 16"))
    }

    @Test("two records swapped are reported as reordered")
    func reorderedRecords() throws {
        let (_, _, result) = try Self.tamperedLog(
            """
            a, b = row(17), row(18)
            for target, source in ((17, b), (18, a)):
                values = {k: v for k, v in source.items() if k != 'sequence'}
                assignments = ', '.join('%s = ?' % k for k in values)
                con.execute('UPDATE audit_record SET %s WHERE sequence = ?' % assignments,
                            list(values.values()) + [target])
            """)
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .reordered, sequence: 17,
                    message: "records 17 and 18 are out of order: record 17 links to record 18, which comes after it"))
    }

    @Test("a tail cut below a checkpoint is reported as truncated")
    func truncatedTailAfterCheckpoint() throws {
        let (_, _, result) = try Self.tamperedLog("con.execute('DELETE FROM audit_record WHERE sequence >= 18')")
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .truncated, sequence: 18,
                    message: "the log was truncated: checkpoint 2 (sequence 20) covers records 18…20, which are "
                        + "missing"))
        #expect(result.recordCount == 17)
        #expect(result.lastCheckpoint?.matchesChain == false)
    }

    @Test("a tail cut after the last checkpoint shows only against an external copy of a later checkpoint")
    func truncationAgainstAnExternalCheckpoint() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 10)
        try Fixture.fill(log, count: 25)
        let kept = try AuditCheckpoint(jsonString: try log.checkpoint().jsonString())
        try Attacker.run(
            folder.database,
            """
            con.execute('DELETE FROM audit_record WHERE sequence > 20')
            con.execute('DELETE FROM audit_checkpoint WHERE sequence > 20')
            """)
        let alone = try log.verify()
        #expect(alone.isIntact, "without the copy the cut is invisible")
        #expect(alone.uncheckpointedRecords == 0)
        let against = try log.verify(externalCheckpoints: [kept])
        #expect(
            against.firstProblem
                == AuditProblem(
                    kind: .truncated, sequence: 21,
                    message: "the log was truncated: the external checkpoint at sequence 25 covers records 21…25, "
                        + "which are missing"))
    }

    @Test("records after the last checkpoint are reported as not yet checkpointed, not as an error")
    func notYetCheckpointed() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 10)
        try Fixture.fill(log, count: 25)
        let result = try log.verify()
        #expect(result.isIntact)
        #expect(result.uncheckpointedRecords == 5)
        #expect(result.summary.contains("not yet checkpointed: 5 record(s)"))
    }

    @Test("a chain rewritten from record 5 on, with every hash recomputed, fails against the first checkpoint")
    func rewrittenChain() throws {
        let (_, _, result) = try Self.tamperedLog(
            """
            previous = row(4)['record_hash']
            for sequence in range(5, 26):
                r = row(sequence)
                if sequence == 5: r['actor'] = 'mallory'
                r['previous_hash'] = previous
                r['record_hash'] = previous = record_hash(r)
                con.execute('UPDATE audit_record SET actor = ?, previous_hash = ?, record_hash = ? WHERE sequence = ?',
                            (r['actor'], r['previous_hash'], r['record_hash'], sequence))
            """)
        #expect(result.firstProblem?.kind == .checkpointMismatch)
        #expect(result.firstProblem?.sequence == 10)
        #expect(result.firstProblem?.message.hasPrefix("checkpoint 1 (sequence 10) does not match the chain") == true)
        #expect(result.firstProblem?.message.hasSuffix("the records up to 10 were rewritten") == true)
    }

    @Test("a checkpoint whose signature was altered, or made with another key, fails")
    func badCheckpointSignature() throws {
        let (_, log, result) = try Self.tamperedLog(
            """
            signature = con.execute('SELECT signature FROM audit_checkpoint WHERE id = 1').fetchone()[0]
            flipped = signature[:-2] + ('00' if signature[-2:] != '00' else '01')
            con.execute('UPDATE audit_checkpoint SET signature = ? WHERE id = 1', (flipped,))
            """)
        #expect(
            result.firstProblem
                == AuditProblem(
                    kind: .checkpointSignature, sequence: 10,
                    message: "checkpoint 1 (sequence 10) has an invalid signature"))
        let stranger = CheckpointSigningKey().publicKey
        let other = try log.verify(trustedKey: stranger)
        let fingerprint = try #require(log.checkpointKey?.fingerprint)
        #expect(
            other.firstProblem?.message
                == "checkpoint 1 (sequence 10) is signed by key \(fingerprint), not the trusted key "
                + "\(stranger.fingerprint)")
        #expect(other.lastCheckpoint?.signature == .invalid)
    }

    @Test("the documented Python and openssl procedure re-verifies the chain and the checkpoints by hand")
    func documentedProcedure() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 10)
        try Fixture.fill(log, count: 25)
        try log.append(AuditEntry(actor: "cli:root", kind: .policyChange, details: ["policy": "web", "to": "v4"]))
        let script = try Self.documentedScript()
        let publicKey = folder.keys.appendingPathComponent(CheckpointSigningKey.publicKeyFileName).path
        let intact = try Python.run(script, arguments: [folder.database.path, publicKey])
        #expect(intact.status == 0, "\(intact.standardError)")
        #expect(intact.standardOutput.contains("OK: 26 records, 2 checkpoints verified"), "\(intact.standardOutput)")

        try Attacker.run(folder.database, "con.execute(\"UPDATE audit_record SET tenant = 'x' WHERE sequence = 7\")")
        let broken = try Python.run(script, arguments: [folder.database.path, publicKey])
        #expect(broken.status != 0)
        #expect(broken.standardOutput.contains("record 7: hash mismatch"), "\(broken.standardOutput)")
    }

    /// The Python block under "Verify by hand" in docs/audit.md.
    static func documentedScript() throws -> String {
        let doc = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("docs/audit.md"), encoding: .utf8)
        let marker = try #require(doc.range(of: "<!-- verify-by-hand -->"))
        let rest = doc[marker.upperBound...]
        let open = try #require(rest.range(of: "```python\n"))
        let close = try #require(rest[open.upperBound...].range(of: "```"))
        return String(rest[open.upperBound..<close.lowerBound])
    }
}
