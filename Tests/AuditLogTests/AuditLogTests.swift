import AttestationPolicy
import CMKTesting
import Crypto
import Foundation
import Synchronization
import Testing

@testable import AuditLog

@Suite("AuditLog: appending, checkpoints, keys and queries")
struct AuditLogTests {
    @Test("appended records chain from the genesis hash, each hash covering its content, and verify intact")
    func appendsAChain() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        let records = try Fixture.fill(log, count: 5)
        #expect(records.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(records[0].previousHash == AuditRecord.genesisHash)
        for (previous, record) in zip(records, records.dropFirst()) { #expect(record.previousHash == previous.hash) }
        for record in records { #expect(record.hash == record.computedHash) }
        let verification = try log.verify()
        #expect(verification.isIntact)
        #expect(verification.recordCount == 5)
        #expect(verification.head == AuditHead(sequence: 5, hash: records[4].hash))
        #expect(verification.uncheckpointedRecords == 5)
        #expect(verification.missingTriggers.isEmpty)
        #expect(try log.head() == verification.head)
    }

    @Test("the appraisal is stored as canonical JSON and read back equal, with its indexed columns")
    func storesTheAppraisal() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        let appraisal = Fixture.appraisal(
            policy: "db/primary", failing: ["snp.debug"], simulated: true,
            expiries: [Expiry(kind: "certificate", name: "VCEK", notAfter: Fixture.time(hours: 24 * 300))])
        let stored = try log.append(Fixture.entry(appraisal, tenant: "tenant-a"))
        #expect(stored.appraisal == appraisal)
        #expect(stored.resultTokenDigest == AuditRecord.resultTokenDigest(of: "eyJhbGciOiJFUzM4NCJ9.e30.sig"))
        let json = try #require(stored.appraisalJSON)
        #expect(json.hasPrefix("{\"collateralDigests\":{\"ask\":"), "keys are sorted")
        #expect(json.contains("\"policy\":{\"digest\":\"abab"))
        #expect(json.contains("\"id\":\"db/primary\""), "slashes are not escaped")
        #expect(json.contains("\"evaluatedAt\":\"2026-04-01T00:00:00.000Z\""))
        let page = try log.records(matching: AuditQuery(policyID: "db/primary", tenant: "tenant-a", verdict: .reject))
        #expect(page.records == [stored])
    }

    @Test("entries encoded by the caller land where a later read finds them, with the same texts, hashes and chain")
    func appendsEncodedEntries() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        let first = try log.append(Fixture.entry(Fixture.appraisal(policy: "web", failing: []), tenant: "tenant-a"))
        let entries = try [
            EncodedAuditEntry(Fixture.entry(Fixture.appraisal(policy: "web", failing: ["snp.debug"]), tenant: "tenant-a")),
            EncodedAuditEntry(AuditEntry(actor: "cli:root", kind: .policyChange, details: ["policy": "web"])),
        ]
        let appended = try log.append(encoded: entries)
        #expect(appended.map(\.head.sequence) == [2, 3])
        #expect(appended[0].previousHash == first.hash && appended[1].previousHash == appended[0].head.hash)
        let stored = try log.records(matching: AuditQuery(order: .oldestFirst)).records
        #expect(stored.count == 3)
        for (index, encoded) in entries.enumerated() {
            let record = stored[index + 1]
            #expect(record.hash == appended[index].head.hash && record.hash == record.computedHash)
            #expect(record.appraisalJSON == encoded.appraisalJSON && record.detailsJSON == encoded.detailsJSON)
            #expect(try AuditRecord(encoded, appended: appended[index]) == record)
        }
        #expect(try log.verify().isIntact)
        // Validation happens when the entry is encoded: nothing invalid reaches the log.
        #expect(throws: AuditLogError.self) { try EncodedAuditEntry(AuditEntry(actor: "", kind: .policyChange)) }
        #expect(throws: AuditLogError.self) {
            try EncodedAuditEntry(AuditEntry(actor: "a", kind: .appraisal, resultTokenDigest: "not-hex"))
        }
    }

    @Test("the record hash is SHA-256 over the documented length-prefixed encoding")
    func recordHashEncoding() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        let record = try log.append(
            AuditEntry(
                actor: "cli:root", kind: .policyChange, details: ["policy": "web"],
                time: Date(timeIntervalSince1970: 1.5)))
        func field(_ bytes: [UInt8]) -> [UInt8] {
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init) + bytes
        }
        func integer(_ value: Int64) -> [UInt8] { field(withUnsafeBytes(of: value.bigEndian, Array.init)) }
        let absent: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        var expected = field(Array("cmk.audit.record.v1".utf8))
        expected += integer(1) + integer(1_500)
        expected += field(Array("cli:root".utf8)) + field(Array("default".utf8)) + absent
        expected += field(Array("policy-change".utf8)) + absent + absent
        expected += field(Array("{\"policy\":\"web\"}".utf8))
        expected += field(Array(String(repeating: "0", count: 64).utf8))
        #expect(record.canonicalEncoding == expected)
        let digest = SHA256.hash(data: expected).map { String(format: "%02x", $0) }.joined()
        #expect(record.hash == digest)
    }

    @Test("a checkpoint is signed every N records, in the same transaction as the record")
    func checkpointsEveryNRecords() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 5)
        let records = try Fixture.fill(log, count: 12)
        let checkpoints = try log.checkpoints()
        #expect(checkpoints.map(\.sequence) == [5, 10])
        #expect(checkpoints.map(\.headHash) == [records[4].hash, records[9].hash])
        #expect(checkpoints.map(\.id) == [1, 2])
        let key = try #require(log.checkpointKey)
        #expect(checkpoints.allSatisfy { $0.isValid(under: key) })
        let verification = try log.verify()
        #expect(verification.isIntact)
        #expect(verification.checkpointCount == 2)
        #expect(verification.lastCheckpoint?.signature == .valid)
        #expect(verification.lastCheckpoint?.matchesChain == true)
        #expect(verification.uncheckpointedRecords == 2)
        #expect(verification.summary.contains("not yet checkpointed: 2 record(s)"))
    }

    @Test("an on-demand checkpoint covers the head and verifies under the exported public key alone")
    func checkpointOnDemand() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        let empty = try log.checkpoint()
        #expect(empty.sequence == 0)
        #expect(empty.headHash == AuditRecord.genesisHash)
        let records = try Fixture.fill(log, count: 3)
        let checkpoint = try log.checkpoint()
        #expect(checkpoint.sequence == 3)
        #expect(checkpoint.headHash == records[2].hash)
        let pem = try String(
            contentsOf: folder.keys.appendingPathComponent(CheckpointSigningKey.publicKeyFileName), encoding: .utf8)
        let exported = try CheckpointKey(pemRepresentation: pem)
        #expect(exported == log.checkpointKey)
        #expect(checkpoint.keyFingerprint == exported.fingerprint)
        #expect(checkpoint.isValid(under: exported))
        #expect(!checkpoint.isValid(under: CheckpointSigningKey().publicKey))
        let copy = try AuditCheckpoint(jsonString: checkpoint.jsonString())
        #expect(copy == checkpoint)
        #expect(try log.lastCheckpoint() == checkpoint)
        let verification = try log.verify()
        #expect(verification.isIntact)
        #expect(verification.uncheckpointedRecords == 0)
    }

    @Test("SQL triggers refuse to update or delete records and checkpoints, and inserts that skip the chain")
    func triggersEnforceAppendOnly() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 2)
        try Fixture.fill(log, count: 3)
        let statements = [
            "UPDATE audit_record SET actor = 'mallory' WHERE sequence = 2",
            "DELETE FROM audit_record WHERE sequence = 3",
            "UPDATE audit_checkpoint SET sequence = 1",
            "DELETE FROM audit_checkpoint",
            "INSERT INTO audit_record (sequence, time_ms, actor, tenant, kind, previous_hash, record_hash) "
                + "VALUES (9, 0, 'x', 'default', 'appraisal', 'bad', 'bad')",
            "INSERT OR REPLACE INTO audit_record (sequence, time_ms, actor, tenant, kind, previous_hash, record_hash) "
                + "VALUES (2, 0, 'x', 'default', 'appraisal', 'bad', 'bad')",
            "INSERT INTO audit_checkpoint (sequence, head_hash, time_ms, key_fingerprint, signature) "
                + "VALUES (3, 'forged', 0, 'k', 's')",
        ]
        for statement in statements {
            let output = try Python.run(
                "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\ncon.execute(sys.argv[2])\ncon.commit()",
                arguments: [folder.database.path, statement])
            #expect(output.status != 0, "\(statement) was allowed")
            #expect(output.standardError.contains("audit_"), "\(output.standardError)")
        }
        #expect(try log.verify().isIntact)
    }

    @Test("an error inside the append transaction leaves no half record and no checkpoint behind")
    func failedAppendLeavesNoTrace() throws {
        struct Crash: Error {}
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 5)
        try Fixture.fill(log, count: 4)
        // Record 5 would also sign a checkpoint: both must vanish.
        let error = #expect(throws: AuditLogError.self) {
            try log.append(
                Fixture.entry(Fixture.appraisal(at: Fixture.time(hours: 5))), beforeCommit: { throw Crash() })
        }
        #expect(error?.reason.contains("Crash") == true)
        #expect(try log.head().sequence == 4)
        #expect(try log.checkpoints().isEmpty)
        #expect(try log.verify().isIntact)
        let next = try log.append(Fixture.entry(Fixture.appraisal(at: Fixture.time(hours: 6))))
        #expect(next.sequence == 5)
        #expect(try log.checkpoints().map(\.sequence) == [5])
        #expect(try log.verify().isIntact)
    }

    @Test("two AuditLog values appending concurrently to one file produce one valid chain")
    func concurrentWritersKeepOneChain() throws {
        let folder = try TemporaryFolder()
        let first = try Fixture.log(in: folder, interval: 10)
        let second = try Fixture.log(in: folder, interval: 10)
        let logs = [first, second]
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { writer in
            for index in 0..<40 {
                do {
                    try logs[writer].append(
                        AuditEntry(actor: "writer-\(writer)", kind: .instanceEvent, details: ["n": String(index)]))
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        let verification = try first.verify()
        #expect(verification.isIntact, "\(verification.summary)")
        #expect(verification.recordCount == 80)
        #expect(verification.checkpointCount == 8)
        #expect(verification.lastCheckpoint?.signature == .valid)
        for writer in 0..<2 {
            let mine = try first.allRecords(matching: AuditQuery(order: .oldestFirst)).filter {
                $0.actor == "writer-\(writer)"
            }
            #expect(mine.map { $0.details["n"] } == (0..<40).map { String($0) }, "each writer's order is kept")
        }
    }

    @Test(
        "a process killed with SIGKILL in the middle of appending leaves a log that verifies",
        .enabled(if: ProcessInfo.processInfo.environment[CrashChild.databaseVariable] == nil))
    func killedWriterLeavesAValidLog() throws {
        let folder = try TemporaryFolder()
        let reader = try Fixture.log(in: folder, interval: 7)
        var heads: [Int64] = []
        for round in 0..<3 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            child.arguments = CrashChild.arguments
            var environment = ProcessInfo.processInfo.environment
            environment[CrashChild.databaseVariable] = folder.database.path
            environment[CrashChild.keysVariable] = folder.keys.path
            child.environment = environment
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            // Let it append for a while (at least a few records past the previous round), then kill it mid-flight.
            let deadline = Date().addingTimeInterval(90)
            let target = (heads.last ?? 0) + 20 + Int64(round * 7)
            while try reader.head().sequence < target, Date() < deadline, child.isRunning {
                Thread.sleep(forTimeInterval: 0.02)
            }
            kill(child.processIdentifier, SIGKILL)
            waitForExit(child, timeout: 10)
            let verification = try reader.verify()
            #expect(verification.isIntact, "round \(round): \(verification.summary)")
            heads.append(verification.head.sequence)
        }
        #expect(heads[0] >= 20 && heads[1] >= heads[0] + 20, "the child appended: \(heads)")
        #expect(heads == heads.sorted())
        // The log goes on after the crashes.
        let next = try reader.append(AuditEntry(actor: "cli:root", kind: .instanceEvent))
        #expect(next.sequence == (heads.last ?? 0) + 1)
        #expect(try reader.verify().isIntact)
    }

    @Test(
        "crash-test child: appends until killed (runs only when launched by the crash test)",
        .enabled(if: ProcessInfo.processInfo.environment[CrashChild.databaseVariable] != nil))
    func crashChild() throws {
        let environment = ProcessInfo.processInfo.environment
        let log = try AuditLog(
            path: URL(fileURLWithPath: environment[CrashChild.databaseVariable]!),
            keyDirectory: URL(fileURLWithPath: environment[CrashChild.keysVariable]!),
            options: AuditLog.Options(checkpointInterval: 7))
        let deadline = Date().addingTimeInterval(120)
        var index = 0
        while Date() < deadline {
            try log.append(
                Fixture.entry(Fixture.appraisal(failing: index % 2 == 0 ? [] : ["snp.debug"], at: Date())))
            index += 1
        }
    }

    @Test("the key folder is created 0700 and the key 0600; a readable key or writable folder is refused")
    func keyPermissions() throws {
        let folder = try TemporaryFolder()
        let key = try CheckpointSigningKey.loadOrCreate(in: folder.keys)
        let keyFile = folder.keys.appendingPathComponent(CheckpointSigningKey.privateKeyFileName)
        #expect(try mode(folder.keys) == 0o700)
        #expect(try mode(keyFile) == 0o600)
        #expect(try String(contentsOf: keyFile, encoding: .utf8).hasPrefix("-----BEGIN PRIVATE KEY-----"))
        // The second time, the same key is loaded.
        #expect(try CheckpointSigningKey.loadOrCreate(in: folder.keys).publicKey == key.publicKey)

        for insecure in [0o640, 0o604, 0o660] {
            try FileManager.default.setAttributes([.posixPermissions: insecure], ofItemAtPath: keyFile.path)
            let error = #expect(throws: AuditLogError.self) { try CheckpointSigningKey.loadOrCreate(in: folder.keys) }
            #expect(error?.code == .insecurePermissions)
            #expect(error?.reason.contains("chmod 600") == true)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.keys.path)
        let error = #expect(throws: AuditLogError.self) {
            try AuditLog(path: folder.database, keyDirectory: folder.keys)
        }
        #expect(error?.code == .insecurePermissions)
    }

    @Test("without a signing key the log can be read and verified against the exported key, but not appended to")
    func readOnlyWithoutKey() throws {
        let folder = try TemporaryFolder()
        let writer = try Fixture.log(in: folder, interval: 2)
        try Fixture.fill(writer, count: 4)
        let exported = try #require(writer.checkpointKey)
        let auditor = try AuditLog(path: folder.database, signingKey: nil)
        let error = #expect(throws: AuditLogError.self) {
            try auditor.append(AuditEntry(actor: "mallory", kind: .instanceEvent))
        }
        #expect(error?.code == .noSigningKey)
        #expect(throws: AuditLogError.self) { try auditor.checkpoint() }
        let unchecked = try auditor.verify()
        #expect(unchecked.isIntact)
        #expect(unchecked.lastCheckpoint?.signature == .unchecked)
        let checked = try auditor.verify(trustedKey: exported)
        #expect(checked.isIntact)
        #expect(checked.lastCheckpoint?.signature == .valid)
        #expect(checked.trustedKeyFingerprint == exported.fingerprint)
    }

    @Test("queries filter by time, policy, tenant, verdict, kind and instance, and page in both orders")
    func queries() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        try Fixture.fill(log, count: 9, policy: "web")  // hours 0...8, rejected at 2, 5, 8
        try Fixture.fill(log, count: 3, policy: "db")  // hours 0...2, rejected at 2
        try log.append(
            AuditEntry(
                actor: "cli:root", kind: .policyChange, tenant: "tenant-b", details: ["policy": "web"],
                time: Fixture.time(hours: 4)))

        let rejected = try log.allRecords(matching: AuditQuery(verdict: .reject))
        #expect(rejected.map(\.sequence) == [12, 9, 6, 3])
        let web = try log.allRecords(matching: AuditQuery(policyID: "web", order: .oldestFirst))
        #expect(web.map(\.sequence) == Array(1...9))
        let window = try log.allRecords(
            matching: AuditQuery(since: Fixture.time(hours: 2), until: Fixture.time(hours: 4), order: .oldestFirst))
        #expect(window.map(\.sequence) == [3, 4, 12])
        #expect(try log.allRecords(matching: AuditQuery(tenant: "tenant-b")).map(\.kind) == [.policyChange])
        #expect(try log.allRecords(matching: AuditQuery(kind: .appraisal)).count == 12)
        #expect(try log.allRecords(matching: AuditQuery(instance: "web-1")).count == 12)

        var query = AuditQuery(limit: 5)
        var seen: [Int64] = []
        var pages = 0
        while true {
            let page = try log.records(matching: query)
            seen += page.records.map(\.sequence)
            pages += 1
            guard let cursor = page.nextCursor else { break }
            query.cursor = cursor
        }
        #expect(seen == Array((1...13).reversed()))
        #expect(pages == 3)
        let oldest = try log.records(matching: AuditQuery(order: .oldestFirst, limit: 4, cursor: 4))
        #expect(oldest.records.map(\.sequence) == [5, 6, 7, 8])
        #expect(oldest.nextCursor == 8)
        #expect(throws: AuditLogError.self) { try log.records(matching: AuditQuery(limit: 0)) }
    }

    @Test("entries without an actor or with a malformed token digest are refused")
    func validatesEntries() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder)
        for entry in [
            AuditEntry(actor: "", kind: .instanceEvent),
            AuditEntry(actor: "coordinator", kind: .instanceEvent, tenant: ""),
            AuditEntry(actor: "coordinator", kind: .appraisal, resultTokenDigest: "not-a-digest"),
            AuditEntry(actor: "coordinator", kind: .appraisal, resultTokenDigest: String(repeating: "A", count: 64)),
        ] {
            let error = #expect(throws: AuditLogError.self) { try log.append(entry) }
            #expect(error?.code == .invalidArgument)
        }
        #expect(try log.head().sequence == 0)
    }

    @Test("a database migrated by a newer cmk is refused")
    func refusesANewerSchema() throws {
        let folder = try TemporaryFolder()
        _ = try Fixture.log(in: folder)
        let output = try Python.run(
            "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1])\n"
                + "con.execute(\"INSERT INTO grdb_migrations VALUES ('v99-from-the-future')\")\ncon.commit()",
            arguments: [folder.database.path])
        #expect(output.status == 0, "\(output.standardError)")
        let error = #expect(throws: AuditLogError.self) { try Fixture.log(in: folder) }
        #expect(error?.code == .unsupportedSchema)
    }

    private func mode(_ url: URL) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? NSNumber).intValue
    }
}

/// How the crash test launches this test binary again to run only ``AuditLogTests/crashChild()``.
enum CrashChild {
    static let databaseVariable = "CMK_AUDIT_CRASH_CHILD_DATABASE"
    static let keysVariable = "CMK_AUDIT_CRASH_CHILD_KEYS"
    static let arguments = ["--testing-library", "swift-testing", "--filter", "AuditLogTests/crashChild"]
}
