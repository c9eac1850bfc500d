import ArgumentParser
import Attestation
import AttestationPolicy
import BinaryFormat
import Coordinator
import Foundation

extension CMK {
    /// `cmk policy`: review, explain and dry-run attestation policies.
    struct PolicyCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "policy",
            abstract: "Review, explain and test attestation policies (policies/*.yaml).",
            subcommands: [Lint.self, Explain.self, Test.self])
    }
}

/// Loads policy files for the CLI, mapping load errors to exit status 2 with the line and key named.
enum PolicyFiles {
    static func load(_ path: String, json: Bool) throws -> AttestationPolicy.Policy {
        do {
            return try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: path)
        } catch {
            if json {
                print((try? JSONOutput.encode(LoadFailure(file: path, code: error.code.name, line: error.line, key: error.keyPath, reason: error.reason))) ?? "{}")
            } else {
                FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            }
            throw ExitCode(2)
        }
    }

    struct LoadFailure: Encodable {
        let file: String
        let code: String
        let line: Int?
        let key: String?
        let reason: String
    }
}

extension CMK.PolicyCommand {
    struct Lint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Review policies for weak settings (debug allowed, no minimum TCB, simulated roots, ...).",
            discussion: """
                Each finding has a severity (info, low, medium, high, critical), the key it is about and a fix.
                Exit status: 0 no finding at or above --fail-on, 1 some finding is, 2 a policy cannot be loaded.
                """)

        @Argument(help: "Policy files.")
        var files: [String]

        @Option(help: "Lowest severity that makes the exit status 1 (info, low, medium, high, critical).")
        var failOn: SeverityArgument = SeverityArgument(argument: "high")!

        @Option(help: "The time waivers are judged at, ISO 8601 (default: now).")
        var at: String?

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if let at, ISO8601DateFormatter().date(from: at) == nil { throw ValidationError("--at '\(at)' is not an ISO 8601 time") }
        }

        func run() async throws {
            let linter = PolicyLinter(now: at.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date())
            var reports: [LintReport] = []
            for file in files {
                let policy = try PolicyFiles.load(file, json: json)
                reports.append(LintReport(file: file, policy: policy.id, version: policy.version, digest: policy.digest, findings: linter.review(policy)))
            }
            let failing = reports.flatMap(\.findings).contains { $0.severity >= failOn.value }
            if json {
                print(try JSONOutput.encode(LintOutput(failOn: failOn.value, passed: !failing, policies: reports)))
            } else {
                for report in reports {
                    print("\(report.file): \(report.policy) v\(report.version) — \(report.findings.isEmpty ? "no findings" : "\(report.findings.count) finding(s)")")
                    for finding in report.findings {
                        print("  \(finding.severity.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)) \(finding.key): \(finding.message)")
                        print("           fix: \(finding.fix)")
                    }
                }
            }
            if failing { throw ExitCode(1) }
        }
    }

    struct LintReport: Encodable {
        let file: String
        let policy: String
        let version: Int
        let digest: String
        let findings: [PolicyFinding]
    }

    struct LintOutput: Encodable {
        let failOn: PolicyFinding.Severity
        let passed: Bool
        let policies: [LintReport]
    }

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say in plain words what a policy admits and what it hands over.",
            discussion: "With --json, prints the policy as loaded: derived reference values and the content digest included.")

        @Argument(help: "A policy file.")
        var file: String

        @Flag(help: "Print the loaded policy as JSON.")
        var json = false

        func run() async throws {
            let policy = try PolicyFiles.load(file, json: json)
            print(json ? try JSONOutput.encode(policy) : PolicyExplanation.lines(policy).joined(separator: "\n"))
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate recorded evidence against a policy (a dry run: nothing is recorded or handed over).",
            discussion: """
                EVIDENCE is an SEV-SNP report or TDX quote file, or a folder holding report.bin (with vcek.der, \
                ask.pem, ark.pem or certs.bin) or quote.bin (with tcbinfo.json, qeidentity.json, the issuer chains \
                and CRLs, and the TD's event log as ccel.bin, CCEL or ccel_data.bin, replayed against the quote's RTMRs). Recorded evidence has no live request: the freshness and manifest bindings are reported as \
                not checked unless --nonce, --key, --manifest and --collected-at are given.
                Exit status: 0 every evidence admitted, 1 some rejected, 2 usage error or unreadable input.
                """)

        @Argument(help: "The policy file.")
        var file: String

        @Argument(help: "Evidence files or folders.")
        var evidence: [String]

        @Option(help: "Evaluation time, ISO 8601 (default: now).")
        var at: String?

        @Option(help: "TDX collateral folder, or the SEV-SNP collateral cache (VCEKs, CRLs).")
        var collateral: String?

        @Option(help: "The VCEK or VLEK certificate for a report file.")
        var vcek: String?

        @Option(help: "The extended-report certificate table for a report file.")
        var certTable: String?

        @Option(help: "The TD's CCEL event log for a quote file (replayed against its RTMRs; the tdx.event-log rule).")
        var eventLog: String?

        @Option(help: "The nonce that was issued, hex.")
        var nonce: String?

        @Option(help: "The public key the instance presented (a file, raw bytes).")
        var key: String?

        @Option(help: "The instance manifest the instance was launched with (a file).")
        var manifest: String?

        @Option(help: "When the evidence was collected, ISO 8601.")
        var collectedAt: String?

        @Flag(help: "Print JSON: one appraisal per evidence.")
        var json = false

        func validate() throws {
            for (name, value) in [("--at", at), ("--collected-at", collectedAt)] {
                if let value, ISO8601DateFormatter().date(from: value) == nil {
                    throw ValidationError("\(name) '\(value)' is not an ISO 8601 time such as 2025-07-18T17:04:46Z")
                }
            }
            if let nonce, Hex.decode(nonce) == nil { throw ValidationError("--nonce '\(nonce)' is not hex") }
        }

        func run() async throws {
            let policy = try PolicyFiles.load(file, json: json)
            let time = at.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date()
            let context: AppraisalContext
            let appraiser: EvidenceAppraiser
            var presented: [(String, PresentedEvidence)] = []
            do {
                context = AppraisalContext(
                    evaluationTime: time, nonce: nonce.flatMap(Hex.decode), boundKey: try key.map { try SNPEvidenceFiles.read($0, what: "key") },
                    manifest: try manifest.map { try SNPEvidenceFiles.read($0, what: "manifest") },
                    collectedAt: collectedAt.flatMap { ISO8601DateFormatter().date(from: $0) }, recordedEvidence: true)
                let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
                let cache = CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral")
                let snpCache = collateral.map { URL(fileURLWithPath: $0) } ?? cache
                appraiser = EvidenceAppraiser(trustAnchors: anchors, snpCollateral: SNPCollateralStore(directory: snpCache))
                let options = EvidenceBundle.Options(
                    collateral: collateral, vcek: vcek, certTable: certTable, eventLog: eventLog)
                for path in evidence { presented.append((path, try EvidenceBundle.load(path, options: options))) }
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            var appraisals: [TestOutput.Entry] = []
            for (path, item) in presented {
                appraisals.append(.init(evidence: path, appraisal: appraiser.appraise(item, policy: policy, context: context)))
            }
            if json {
                print(try JSONOutput.encode(TestOutput(policy: policy.reference, appraisals: appraisals)))
            } else {
                for entry in appraisals { print(AppraisalText.lines(entry.appraisal, evidence: entry.evidence).joined(separator: "\n")) }
            }
            if appraisals.contains(where: { $0.appraisal.verdict == .reject }) { throw ExitCode(1) }
        }
    }

    struct TestOutput: Encodable {
        struct Entry: Encodable {
            let evidence: String
            let appraisal: Appraisal
        }

        let policy: Appraisal.PolicyReference
        let appraisals: [Entry]
    }
}

/// How an appraisal reads on a terminal.
enum AppraisalText {
    static func lines(_ a: Appraisal, evidence: String) -> [String] {
        var lines = [
            "\(a.verdict == .admit ? "ADMIT" : "REJECT")  \(evidence)  (\(a.evidenceType)\(a.simulated ? ", SIMULATED" : ""); policy \(a.policy.id) v\(a.policy.version); EAR status \(a.trustVector.status.rawValue))",
        ]
        let width = max(24, a.outcomes.map(\.rule.count).max() ?? 0)
        for outcome in a.outcomes {
            let mark: String
            switch outcome.status {
            case .pass: mark = "pass"
            case .fail: mark = "FAIL"
            case .warn: mark = "warn"
            case .notChecked: mark = "  - "
            }
            let rule = outcome.rule.padding(toLength: width, withPad: " ", startingAt: 0)
            switch outcome.status {
            case .notChecked:
                lines.append("  \(mark) \(rule) not checked: \(outcome.actual)")
            case .pass:
                lines.append("  \(mark) \(rule) \(outcome.actual)")
            case .fail, .warn:
                lines.append("  \(mark) \(rule) expected \(outcome.expected); actual \(outcome.actual)")
                if let hint = outcome.hint { lines.append("       \(String(repeating: " ", count: width)) hint: \(hint)") }
            }
        }
        return lines
    }
}

/// A finding severity named on the command line.
struct SeverityArgument: ExpressibleByArgument {
    let value: PolicyFinding.Severity
    init?(argument: String) {
        guard let severity = PolicyFinding.Severity(rawValue: argument) else { return nil }
        value = severity
    }
    static var allValueStrings: [String] { PolicyFinding.Severity.allCases.map(\.rawValue) }
    var defaultValueDescription: String { value.rawValue }
}
