import AttestationPolicy
import CMKTesting
import Foundation
import Testing

@testable import AuditLog

/// A log with two policies over one day, one record outside the window, a policy change and a simulated run.
struct ReportFixture {
    let folder: TemporaryFolder
    let log: AuditLog
    static let day = 86_400.0

    static let expiries = [
        Expiry(kind: "certificate", name: "VCEK Milan", notAfter: Fixture.time(hours: 24 * 10)),
        Expiry(kind: "certificate", name: "ASK Milan", notAfter: Fixture.time(hours: 24 * 400)),
        Expiry(kind: "crl", name: "AMD Milan CRL", notAfter: Fixture.time(hours: -24)),
        Expiry(kind: "waiver", name: "CVE-2024-56161 microcode", notAfter: Fixture.time(hours: 24 * 5)),
        Expiry(kind: "waiver", name: "SB-3019 tee", notAfter: Fixture.time(hours: 24 * 90)),
    ]

    init(webPolicy: String = "web", hint: String = "update the host firmware to SNP 1.55.21") throws {
        folder = try TemporaryFolder()
        log = try Fixture.log(in: folder, interval: 5)
        // web: 10 evaluations, hours 0...9; TCB snp 8 until hour 4, snp 10 from hour 5; hours 2 and 4 fail the TCB
        // rule, hour 7 fails debug; hour 9 is simulated.
        for hour in 0..<10 {
            var failing: Set<String> = []
            if hour == 2 || hour == 4 { failing.insert("snp.tcb.reported.minimum") }
            if hour == 7 { failing.insert("snp.debug") }
            let tcb = "bootloader 3, tee 0, snp \(hour < 5 ? 8 : 10), microcode 115"
            let appraisal = Fixture.appraisal(
                policy: webPolicy, failing: failing, simulated: hour == 9, at: Fixture.time(hours: Double(hour)),
                tcb: tcb, expiries: Self.expiries, hint: hint, waived: hour == 3 ? ["snp.measurement"] : [])
            try log.append(Fixture.entry(appraisal, instance: "web-\(hour % 2)"))
        }
        // db: 3 evaluations, one rejected.
        for hour in 0..<3 {
            let appraisal = Fixture.appraisal(
                policy: "db", version: 7, failing: hour == 1 ? ["snp.tcb.reported.minimum"] : [],
                at: Fixture.time(hours: Double(hour) + 0.5))
            try log.append(Fixture.entry(appraisal, instance: "db-0"))
        }
        try log.append(
            AuditEntry(
                actor: "cli:root", kind: .policyChange, details: ["policy": "db", "change": "replaced"],
                time: Fixture.time(hours: 12)))
        // Outside the window.
        try log.append(Fixture.entry(Fixture.appraisal(policy: "db", at: Fixture.time(hours: 30))))
    }

    func report(policyID: String? = nil, findings: [PostureFinding] = []) throws -> AuditReport {
        try AuditReport(
            log: log,
            options: AuditReport.Options(
                window: DateInterval(start: Fixture.start, duration: Self.day), policyID: policyID, findings: findings,
                generatedAt: Fixture.start))
    }
}

@Suite("AuditReport: contents and renderings")
struct AuditReportTests {
    @Test("counts evaluations, admissions and rejections per policy within the window, and failures by rule")
    func countsPerPolicy() throws {
        let report = try ReportFixture().report()
        #expect(report.totals.records == 14)
        #expect(report.totals.evaluations == 13)
        #expect(report.totals.admitted == 9)
        #expect(report.totals.rejected == 4)
        #expect(report.recordsByKind == ["appraisal": 13, "policy-change": 1])
        #expect(report.policies.map(\.id) == ["db", "web"])
        let web = try #require(report.policies.last)
        #expect((web.evaluations, web.admitted, web.rejected, web.simulated) == (10, 7, 3, 1))
        #expect(web.versions == [3])
        #expect(web.evidenceTypes == ["sev-snp"])
        #expect(web.failuresByRule.map(\.rule) == ["snp.tcb.reported.minimum", "snp.debug"])
        #expect(web.failuresByRule.map(\.count) == [2, 1])
        #expect(web.failuresByRule[0].lastHint == "update the host firmware to SNP 1.55.21")
        #expect(web.failuresByRule[0].lastActual == "bootloader 3, tee 0, snp 8, microcode 115")
        #expect(web.warningsByRule.map(\.rule) == ["snp.measurement"])
        let db = report.policies[0]
        #expect((db.evaluations, db.admitted, db.rejected, db.versions) == (3, 2, 1, [7]))
        #expect(report.timeline.bucketSeconds == 3_600)
        #expect(report.timeline.buckets.count == 24)
        #expect(report.timeline.buckets[0].admitted == 2)
        #expect(report.timeline.buckets[2].rejected == 1)
        #expect(report.timeline.buckets.map { $0.admitted + $0.rejected }.reduce(0, +) == 13)

        let filtered = try ReportFixture().report(policyID: "db")
        #expect(filtered.policies.map(\.id) == ["db"])
        #expect(filtered.totals.evaluations == 3)
        #expect(filtered.recordsByKind == ["appraisal": 3, "policy-change": 1])
    }

    @Test("TCB versions and measurements are listed as seen vs required, with when each was seen")
    func tcbAndMeasurementsOverTime() throws {
        let web = try #require(try ReportFixture().report(policyID: "web").policies.first)
        let tcb = web.tcbAndMeasurements.filter { $0.rule == "snp.tcb.reported.minimum" }
        #expect(tcb.map(\.actual) == [
            "bootloader 3, tee 0, snp 8, microcode 115", "bootloader 3, tee 0, snp 8, microcode 115",
            "bootloader 3, tee 0, snp 10, microcode 115",
        ])
        #expect(tcb.map(\.status) == [.pass, .fail, .pass])
        #expect(tcb.map(\.count) == [3, 2, 5])
        #expect(tcb[0].firstSeen == Fixture.time(hours: 0))
        #expect(tcb[0].lastSeen == Fixture.time(hours: 3))
        #expect(tcb[2].firstSeen == Fixture.time(hours: 5))
        #expect(tcb.allSatisfy { $0.expected == ">= bootloader 3, tee 0, snp 10, microcode 115" })
        #expect(web.tcbAndMeasurements.contains { $0.rule == "snp.measurement" })
        #expect(!web.tcbAndMeasurements.contains { $0.rule == "snp.debug" })
    }

    @Test("certificates and collateral expiring within the horizon are listed, and every waiver with its expiry")
    func expiriesAndWaivers() throws {
        let web = try #require(try ReportFixture().report(policyID: "web").policies.first)
        #expect(web.expiringSoon.map(\.name) == ["AMD Milan CRL", "VCEK Milan"])
        #expect(web.expiringSoon.map(\.expired) == [true, false])
        #expect(web.expiringSoon.map(\.daysLeft) == [-1, 10])
        #expect(web.waivers.map(\.name) == ["CVE-2024-56161 microcode", "SB-3019 tee"])
        #expect(web.waivers.map(\.daysLeft) == [5, 90])
        let shortHorizon = try AuditReport(
            log: ReportFixture().log,
            options: AuditReport.Options(
                window: DateInterval(start: Fixture.start, duration: ReportFixture.day), policyID: "web",
                expiryHorizon: 5 * ReportFixture.day, generatedAt: Fixture.start))
        #expect(shortHorizon.policies.first?.expiringSoon.map(\.name) == ["AMD Milan CRL"])
    }

    @Test("posture findings are shown with their policy, also for a policy without evaluations")
    func postureFindings() throws {
        let findings = [
            PostureFinding(policyID: "web", severity: .medium, key: "no-crl", message: "revocation is soft-fail", fix: ""),
            PostureFinding(policyID: "web", severity: .critical, key: "allows-debug", message: "debug is allowed", fix: ""),
            PostureFinding(policyID: "batch", severity: .low, key: "no-expiry", message: "waiver has no expiry", fix: ""),
        ]
        let report = try ReportFixture().report(findings: findings)
        #expect(report.policies.map(\.id) == ["batch", "db", "web"])
        #expect(report.policies[0].evaluations == 0)
        #expect(report.policies[0].findings.map(\.key) == ["no-expiry"])
        #expect(report.policies[2].findings.map(\.key) == ["allows-debug", "no-crl"], "most severe first")
        #expect(report.markdown().contains("| critical | allows-debug | debug is allowed |"))
        #expect(try report.rendered(as: .html).contains("debug is allowed"))
    }

    @Test("simulated evaluations are called out in every rendering")
    func simulatedCalledOut() throws {
        let report = try ReportFixture().report()
        #expect(report.totals.simulated == 1)
        let web = try #require(report.policies.last)
        #expect(web.simulatedEvaluations.map(\.sequence) == [10])
        #expect(report.markdown().contains("**Simulated evidence:** 1 evaluation(s)"))
        #expect(report.html().contains("class=\"callout simulated\""))
        #expect(try report.json().contains("\"simulated\" : 1"))
    }

    @Test("the integrity proof names the head, the last checkpoint's signature and key, and a broken chain")
    func integrityProof() throws {
        let fixture = try ReportFixture()
        let report = try fixture.report()
        let key = try #require(fixture.log.checkpointKey)
        #expect(report.integrity.intact)
        #expect(report.integrity.recordCount == 15)
        #expect(report.integrity.headSequence == 15)
        #expect(report.integrity.headHash == (try fixture.log.head().hash))
        #expect(report.integrity.lastCheckpoint?.sequence == 15)
        #expect(report.integrity.lastCheckpoint?.signature == "valid")
        #expect(report.integrity.lastCheckpoint?.keyFingerprint == key.fingerprint)
        #expect(report.integrity.checkpointCount == 3)
        #expect(
            report.markdown().contains("Checkpoint key fingerprint (SHA-256 of the public key): \(key.fingerprint)"))

        try Attacker.run(fixture.folder.database, "con.execute('DELETE FROM audit_record WHERE sequence = 4')")
        let broken = try fixture.report()
        #expect(!broken.integrity.intact)
        #expect(broken.integrity.firstProblem == "record 4 was deleted: the log goes from 3 to 5")
        #expect(broken.html().contains("data-integrity=\"broken\""))
        #expect(broken.markdown().contains("BROKEN: record 4 was deleted"))
    }

    @Test("JSON is stable: the same bytes every time, sorted keys, the documented top-level fields")
    func stableJSON() throws {
        let report = try ReportFixture().report()
        let first = try report.rendered(as: .json)
        #expect(try report.rendered(as: .json) == first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        let keys = [
            "expiryHorizonDays", "format", "generatedAt", "integrity", "policies", "policyFilter", "recordsByKind",
            "timeline", "totals", "window",
        ]
        #expect(Set(object.keys) == Set(keys).subtracting(["policyFilter"]), "policyFilter is absent when unset")
        #expect(object["format"] as? String == "cmk.audit-report.v1")
        let positions = keys.filter { $0 != "policyFilter" }.map { first.range(of: "\"\($0)\" :")!.lowerBound }
        #expect(positions == positions.sorted(), "keys are sorted")
        #expect(first.contains("\"generatedAt\" : \"2026-04-01T00:00:00.000Z\""))
        let decoded = try CanonicalJSON.decoder().decode(AuditReport.self, from: Data(first.utf8))
        #expect(decoded == report)
    }

    @Test("HTML and Markdown escape a policy id and a hint that contain markup")
    func escapesMarkup() throws {
        let hostile = "<script>alert('x')</script>"
        let hint = "see <img src=x onerror=alert(1)> & \"quotes\""
        let report = try ReportFixture(webPolicy: hostile, hint: hint).report()
        let html = report.html()
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
        #expect(html.contains("see &lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;"))
        #expect(html.contains("data-policy=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\""))
        let markdown = report.markdown()
        #expect(!markdown.contains("<script"))
        #expect(!markdown.contains("<img"))
        #expect(markdown.contains("## Policy &lt;script&gt;alert('x')&lt;/script&gt;"))
    }

    @Test("the HTML is one self-contained file: inline style and SVG, no script, no external resource")
    func selfContainedHTML() throws {
        let html = try ReportFixture().report().html()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<style>"))
        #expect(html.components(separatedBy: "<svg ").count - 1 == 3, "verdicts, timeline, failures")
        for forbidden in ["<script", "<link", "src=", "href=", "@import", "url(", "https://"] {
            #expect(!html.contains(forbidden), "\(forbidden)")
        }
        let namespaces = html.components(separatedBy: "http://").count - 1
        #expect(namespaces == html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1)
    }
}
