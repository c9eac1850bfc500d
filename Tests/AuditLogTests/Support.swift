import AttestationPolicy
import CMKTesting
import Foundation
import Testing

@testable import AuditLog

/// A fresh temporary folder per test, removed when the value goes away.
final class TemporaryFolder: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    var database: URL { url.appendingPathComponent("audit.sqlite") }
    var keys: URL { url.appendingPathComponent("keys") }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// Appraisals, entries and clocks for the tests.
enum Fixture {
    /// 2026-04-01T00:00:00Z.
    static let start = Date(timeIntervalSince1970: 1_775_001_600)

    static func time(hours: Double) -> Date { start.addingTimeInterval(hours * 3_600) }

    /// An SNP appraisal of `policy`: every rule passes unless named in `failing`.
    static func appraisal(
        policy: String = "web", version: Int = 3, failing: Set<String> = [], simulated: Bool = false,
        at time: Date = start, tcb: String = "bootloader 3, tee 0, snp 8, microcode 115",
        expiries: [Expiry] = [], hint: String = "update the host firmware to SNP 1.55.21", waived: Set<String> = []
    ) -> Appraisal {
        func outcome(_ rule: String, expected: String, actual: String, claim: TrustClaim) -> RuleOutcome {
            if failing.contains(rule) {
                return RuleOutcome(
                    rule: rule, status: .fail, expected: expected, actual: actual, hint: hint, trustClaim: claim,
                    trustValue: 96)
            }
            if waived.contains(rule) {
                return RuleOutcome(
                    rule: rule, status: .warn, expected: expected, actual: actual, hint: "waived", trustClaim: claim,
                    trustValue: 32)
            }
            return RuleOutcome(
                rule: rule, status: .pass, expected: expected, actual: actual, trustClaim: claim, trustValue: 2)
        }
        return Appraisal(
            policy: .init(id: policy, version: version, digest: String(repeating: "ab", count: 32)),
            evidenceType: "sev-snp", simulated: simulated, evidenceDigest: String(repeating: "cd", count: 32),
            collateralDigests: ["vcek": String(repeating: "01", count: 32), "ask": String(repeating: "02", count: 32)],
            outcomes: [
                outcome(
                    "snp.tcb.reported.minimum", expected: ">= bootloader 3, tee 0, snp 10, microcode 115", actual: tcb,
                    claim: .hardware),
                outcome(
                    "snp.measurement", expected: "one of 2 allowed launch digests", actual: "5e1f…a9",
                    claim: .executables),
                outcome("snp.debug", expected: "debug disabled", actual: "debug disabled", claim: .configuration),
            ],
            evaluatedAt: time, expiries: expiries, handover: Handover(secrets: ["vault:db/credentials"]))
    }

    static func entry(
        _ appraisal: Appraisal, actor: String = "coordinator", tenant: String = "default", instance: String? = "web-1"
    ) -> AuditEntry {
        .appraisal(
            appraisal, actor: actor, tenant: tenant, instance: instance, resultToken: "eyJhbGciOiJFUzM4NCJ9.e30.sig",
            time: appraisal.evaluatedAt)
    }

    /// A log in `folder` with a fresh key, signing a checkpoint every `interval` records.
    static func log(in folder: TemporaryFolder, interval: Int = 100) throws -> AuditLog {
        try AuditLog(
            path: folder.database, keyDirectory: folder.keys,
            options: AuditLog.Options(checkpointInterval: interval, clock: { Fixture.time(hours: 1_000) }))
    }

    /// Appends `count` appraisals an hour apart, every third one rejected.
    @discardableResult
    static func fill(_ log: AuditLog, count: Int, policy: String = "web") throws -> [AuditRecord] {
        try (0..<count).map { index in
            let failing: Set<String> = index % 3 == 2 ? ["snp.tcb.reported.minimum"] : []
            return try log.append(
                entry(appraisal(policy: policy, failing: failing, at: time(hours: Double(index)))))
        }
    }
}

/// What a person with write access to the file can do: Python's own sqlite3, with the append-only triggers
/// dropped first. `record_hash(row)` (the documented canonical encoding) is defined for the script.
enum Attacker {
    static let prelude = """
        import hashlib, sqlite3, struct, sys
        def field(b): return struct.pack('>I', len(b)) + b
        def text(s): return struct.pack('>I', 0xFFFFFFFF) if s is None else field(s.encode('utf-8'))
        def integer(n): return field(struct.pack('>q', n))
        def record_hash(r):
            encoding = (text('cmk.audit.record.v1') + integer(r['sequence']) + integer(r['time_ms'])
                + text(r['actor']) + text(r['tenant']) + text(r['instance']) + text(r['kind'])
                + text(r['appraisal_json']) + text(r['result_token_digest']) + text(r['details_json'])
                + text(r['previous_hash']))
            return hashlib.sha256(encoding).hexdigest()
        con = sqlite3.connect(sys.argv[1])
        con.isolation_level = None
        con.row_factory = sqlite3.Row
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            con.execute('DROP TRIGGER "%s"' % name)
        def row(sequence):
            return dict(con.execute('SELECT * FROM audit_record WHERE sequence = ?', (sequence,)).fetchone())

        """

    /// Runs `script` (Python, with `con` open on the database) against `database`.
    static func run(_ database: URL, _ script: String) throws {
        let output = try Python.run(prelude + script, arguments: [database.path])
        #expect(output.status == 0, "the attack failed: \(output.standardError)")
    }
}

/// Runs `python3 -c` (the system Python: these scripts need only the standard library).
enum Python {
    static func run(_ script: String, arguments: [String] = []) throws -> ProcessOutput {
        try Subprocess.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script] + arguments)
    }
}

/// Runs a program through the shared test runner (CMKTesting.ExternalTool).
enum Subprocess {
    static func run(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 120
    ) throws -> ProcessOutput {
        try ExternalTool.run(executable, arguments, environment: environment, timeout: timeout)
    }
}

/// What one run of a program printed and returned.
typealias ProcessOutput = BuiltCMK.Output
