import CMKTesting
import Foundation
import Testing

/// `cmk policy`, `cmk attest`, `cmk audit` and `cmk ear`, run as a user runs them, each test with its own state folder.
@Suite("cmk policy, attest, audit and ear", .serialized)
struct PolicyAuditCommandTests {
    let state: URL
    let environment: [String: String]

    init() throws {
        state = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-state-\(UUID().uuidString)")
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.path
        self.environment = environment
    }

    func cmk(_ arguments: [String]) throws -> BuiltCMK.Output { try BuiltCMK.run(arguments, environment: environment) }
    func json(_ output: BuiltCMK.Output) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any], "\(output.standardOutput)")
    }

    static let policies = SharedVectors.repositoryRoot.appendingPathComponent("policies").path
    static let tdxVector = SharedVectors.url("tdx/dcapqvl-v4-uptodate").path
    static let tdxTime = "2025-07-19T10:00:34Z"

    @Test("lint: the shipped policies pass at the default threshold; a weak one fails with its findings", .timeLimit(.minutes(3)))
    func lint() throws {
        let shipped = try cmk(["policy", "lint", "\(Self.policies)/sev-snp-production.yaml", "\(Self.policies)/tdx-production.yaml", "--json"])
        #expect(shipped.status == 0, "\(shipped.standardOutput)")
        #expect(try json(shipped)["passed"] as? Bool == true)

        let weak = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-weak-\(UUID().uuidString).yaml")
        try "id: weak\nversion: 1\nevidence: sev-snp\ntrust: {roots: [simulated-amd]}\nsev-snp:\n  guest-policy: {debug: allowed}\n"
            .write(to: weak, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: weak) }
        let output = try cmk(["policy", "lint", weak.path])
        #expect(output.status == 1)
        #expect(output.standardOutput.contains("CRITICAL trust.roots"))
        #expect(output.standardOutput.contains("CRITICAL sev-snp.guest-policy.debug"))
        #expect(try cmk(["policy", "lint", weak.path, "--fail-on", "critical"]).status == 1)
    }

    @Test("a bad policy file is exit 2 with the file, line and key", .timeLimit(.minutes(3)))
    func badPolicy() throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-bad-\(UUID().uuidString).yaml")
        try "id: bad\nversion: 1\nevidence: tdx\ntrust: {roots: [intel-sgx-root]}\ntdx:\n  debgu: forbidden\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        let output = try cmk(["policy", "explain", bad.path])
        #expect(output.status == 2)
        #expect(output.standardError.contains("\(bad.path):6: 'tdx.debgu' unknown key 'debgu' (did you mean 'debug'?)"))
        let asJSON = try cmk(["policy", "test", bad.path, Self.tdxVector, "--json"])
        #expect(asJSON.status == 2)
        #expect(try json(asJSON)["line"] as? Int == 6)
    }

    @Test("policy test: admitted evidence exits 0, rejected 1, and the JSON lists every outcome", .timeLimit(.minutes(3)))
    func policyTest() throws {
        let admitted = try cmk(["policy", "test", "\(Self.policies)/tdx-production.yaml", Self.tdxVector, "--at", Self.tdxTime, "--json"])
        #expect(admitted.status == 0, "\(admitted.standardOutput)")
        let appraisals = try #require(try json(admitted)["appraisals"] as? [[String: Any]])
        let appraisal = try #require(appraisals.first?["appraisal"] as? [String: Any])
        #expect(appraisal["verdict"] as? String == "admit")
        let outcomes = try #require(appraisal["outcomes"] as? [[String: Any]])
        #expect(outcomes.count == 17)
        // No event log came with the quote: tdx-production (if-present) reports it as not checked.
        #expect(outcomes.first { $0["rule"] as? String == "tdx.event-log" }?["status"] as? String == "not-checked")

        // Another TD's event log (GCP's CCEL) with this quote: the replay differs from the quote's RTMRs.
        let foreignLog = try cmk([
            "policy", "test", "\(Self.policies)/tdx-production.yaml", Self.tdxVector, "--at", Self.tdxTime, "--json",
            "--event-log", SharedVectors.url("tdx/gotdxguest-gcp-cos113-ccel/ccel_data.bin").path,
        ])
        #expect(foreignLog.status == 1, "\(foreignLog.standardOutput)")
        let foreignAppraisal = try #require(
            (try json(foreignLog)["appraisals"] as? [[String: Any]])?.first?["appraisal"] as? [String: Any])
        let replay = try #require(
            (foreignAppraisal["outcomes"] as? [[String: Any]])?.first { $0["rule"] as? String == "tdx.event-log" })
        #expect(replay["status"] as? String == "fail")
        #expect((replay["actual"] as? String)?.contains("RTMR0: log") == true, "\(replay)")
        // An event log is a TD's: with an SEV-SNP report it is a usage error.
        let misplaced = try cmk([
            "policy", "test", "\(Self.policies)/sev-snp-production.yaml", SharedVectors.url("snp/milan-v2-gsg").path + "/report.bin",
            "--event-log", SharedVectors.url("tdx/gotdxguest-gcp-cos113-ccel/ccel_data.bin").path,
        ])
        #expect(misplaced.status == 2 && misplaced.standardError.contains("--event-log is for TDX quotes"), "\(misplaced.standardError)")

        let rejected = try cmk([
            "policy", "test", "\(Self.policies)/sev-snp-production.yaml", SharedVectors.url("snp/milan-v2-gsg").path,
            "--at", "2022-09-25T00:55:28Z",
        ])
        #expect(rejected.status == 1)
        #expect(rejected.standardOutput.contains("FAIL snp.guest-policy.debug"))
        #expect(rejected.standardOutput.contains("hint: the guest policy allows debugging"))
    }

    @Test("attest signs an EAR, records it, and the chain verifies until someone edits a record", .timeLimit(.minutes(4)))
    func attestAndAudit() throws {
        defer { try? FileManager.default.removeItem(at: state) }
        let attest = try cmk([
            "attest", "--policy", "\(Self.policies)/tdx-production.yaml", Self.tdxVector, "--at", Self.tdxTime, "--recorded",
            "--instance", "db-1", "--json",
        ])
        #expect(attest.status == 0, "\(attest.standardError)")
        let result = try json(attest)
        let token = try #require(result["token"] as? String)
        #expect(result["auditSequence"] as? Int == 1)

        // The token verifies with the installation's key, and with the exported JWKS.
        let jwks = try cmk(["ear", "jwks"])
        #expect(jwks.status == 0)
        let jwksFile = state.appendingPathComponent("jwks.json")
        try jwks.standardOutput.write(to: jwksFile, atomically: true, encoding: .utf8)
        let verified = try cmk(["ear", "verify", token, "--jwks", jwksFile.path])
        #expect(verified.status == 0, "\(verified.standardError)")
        #expect(verified.standardOutput.contains("policy:cmk/tdx-production@1"))
        var tampered = Array(token)
        tampered[tampered.count - 5] = tampered[tampered.count - 5] == "A" ? "B" : "A"
        #expect(try cmk(["ear", "verify", String(tampered)]).status == 1)

        // A rejected appraisal is recorded too.
        let rejected = try cmk([
            "attest", "--policy", "\(Self.policies)/tdx-production.yaml", Self.tdxVector, "--at", Self.tdxTime, "--json",
        ])
        #expect(rejected.status == 1, "live request without a nonce must fail the freshness rules")
        #expect(try cmk(["audit", "checkpoint"]).status == 0)
        let log = try cmk(["audit", "log"])
        #expect(log.standardOutput.contains("#2") && log.standardOutput.contains("REJECT tdx"))
        #expect(log.standardOutput.contains("#1") && log.standardOutput.contains("db-1: ADMIT tdx"))
        #expect(try cmk(["audit", "verify"]).status == 0)

        // An attacker who can write the file flips the stored verdict of record 2.
        let script = """
            import sqlite3, sys
            con = sqlite3.connect(sys.argv[1]); con.isolation_level = None
            for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                con.execute('DROP TRIGGER "%s"' % name)
            con.execute("UPDATE audit_record SET appraisal_json = replace(appraisal_json, '\\"reject\\"', '\\"admit\\"') WHERE sequence = 2")
            """
        let attack = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, state.appendingPathComponent("audit.sqlite").path])
        #expect(attack.status == 0, "\(attack.standardError)")
        let broken = try cmk(["audit", "verify", "--json"])
        #expect(broken.status == 1)
        let verification = try json(broken)
        #expect(verification["intact"] as? Bool == false)
        #expect(((verification["firstProblem"] as? [String: Any])?["sequence"] as? Int) == 2)
    }

    @Test("audit report writes one self-contained HTML file and stable JSON", .timeLimit(.minutes(4)))
    func auditReport() throws {
        defer { try? FileManager.default.removeItem(at: state) }
        #expect(try cmk(["attest", "--policy", "\(Self.policies)/tdx-production.yaml", Self.tdxVector, "--at", Self.tdxTime, "--recorded"]).status == 0)
        let html = state.appendingPathComponent("report.html")
        let written = try cmk(["audit", "report", "--since", "2020-01-01", "--format", "html", "--output", html.path, "--policies", Self.policies])
        #expect(written.status == 0, "\(written.standardError)")
        let page = try String(contentsOf: html, encoding: .utf8)
        #expect(page.contains("<svg"))
        #expect(page.contains("tdx-production"))
        #expect(!page.contains("src=\"http"))
        let report = try cmk(["audit", "report", "--since", "2020-01-01", "--format", "json"])
        let parsed = try json(report)
        #expect(parsed["format"] as? String == "cmk.audit-report.v1")
        #expect(try cmk(["audit", "report", "--format", "pdf"]).status == 2)
    }
}
