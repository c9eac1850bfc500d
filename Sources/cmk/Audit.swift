import ArgumentParser
import AttestationPolicy
import AttestationResults
import AuditLog
import Coordinator
import Foundation

extension CMK {
    /// `cmk audit`: the tamper-evident record of every decision.
    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inspect, verify and report on the tamper-evident audit log.",
            subcommands: [Log.self, Verify.self, Checkpoint.self, Report.self])
    }
}

/// A time option: ISO 8601, or a date.
func parseTime(_ text: String) -> Date? {
    if let instant = ISO8601DateFormatter().date(from: text) { return instant }
    let day = ISO8601DateFormatter()
    day.formatOptions = [.withFullDate]
    return day.date(from: text)
}

extension CMK.Audit {
    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit records, newest first.")

        @Option(help: "Only records at or after this time (ISO 8601 or YYYY-MM-DD).")
        var since: String?
        @Option(help: "Only records before this time.")
        var until: String?
        @Option(help: "Only records of this policy id.")
        var policy: String?
        @Option(help: "Only admit or reject.")
        var verdict: String?
        @Option(help: "At most this many records.")
        var limit = 50
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            for (name, value) in [("--since", since), ("--until", until)] {
                if let value, parseTime(value) == nil { throw ValidationError("\(name) '\(value)' is not a time") }
            }
            if let verdict, Verdict(rawValue: verdict) == nil { throw ValidationError("--verdict must be admit or reject") }
            if !(1...10000).contains(limit) { throw ValidationError("--limit must be 1 to 10000") }
        }

        func run() async throws {
            let page: AuditPage
            do {
                page = try state.openAuditLog().records(matching: AuditQuery(
                    since: since.flatMap(parseTime), until: until.flatMap(parseTime), policyID: policy,
                    verdict: verdict.flatMap(Verdict.init(rawValue:)), order: .newestFirst, limit: limit))
            } catch {
                throw StateFailure.report(error, json: json)
            }
            if json {
                print(try JSONOutput.encode(page))
                return
            }
            for record in page.records {
                let what: String
                if let a = record.appraisal {
                    what = "\(a.verdict.rawValue.uppercased()) \(a.evidenceType)\(a.simulated ? " SIMULATED" : "") policy \(a.policy.id) v\(a.policy.version)"
                        + (a.failures.isEmpty ? "" : " failed: " + a.failures.map(\.rule).joined(separator: ", "))
                } else {
                    what = record.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                }
                print("#\(record.sequence) \(record.time.ISO8601Format()) \(record.kind.rawValue) \(record.actor)\(record.instance.map { " " + $0 } ?? ""): \(what)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the hash chain and the signed checkpoints; name the first record that was changed.",
            discussion: """
                Detects modified, deleted, inserted and reordered records, and checkpoints that do not match. \
                --trusted-key verifies checkpoints with a public key kept elsewhere (an auditor's copy) instead of \
                the installation's own; --checkpoints adds checkpoint copies kept outside the log (JSON lines), which \
                reveal a truncated tail.
                Exit status: 0 intact, 1 tampered, 2 the log cannot be opened.
                """)

        @Option(help: "A PEM public key to verify checkpoints with.")
        var trustedKey: String?
        @Option(help: "Checkpoint copies kept outside the log, one JSON object per line.")
        var checkpoints: String?
        @Option(help: "An audit log file to verify (default: the installation's).")
        var file: String?
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let verification: AuditVerification
            do {
                let key = try trustedKey.map { try CheckpointKey(pemRepresentation: String(contentsOfFile: $0, encoding: .utf8)) }
                let external = try checkpoints.map { path in
                    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try AuditCheckpoint(jsonString: String($0)) }
                } ?? []
                let log: AuditLog
                if let file {
                    guard FileManager.default.fileExists(atPath: file) else {
                        throw AuditLogError(.invalidArgument, "'\(file)' does not exist")
                    }
                    log = try AuditLog(path: URL(fileURLWithPath: file), signingKey: nil)
                } else {
                    log = try state.openAuditLog()
                }
                verification = try log.verify(trustedKey: key ?? log.checkpointKey, externalCheckpoints: external)
            } catch {
                throw StateFailure.report(error, json: json)
            }
            if json {
                print(try JSONOutput.encode(VerifyOutput(
                    intact: verification.isIntact, firstProblem: verification.firstProblem, verification: verification)))
            } else {
                print(verification.summary)
            }
            if !verification.isIntact { throw ExitCode(1) }
        }
    }

    struct VerifyOutput: Encodable {
        let intact: Bool
        let firstProblem: AuditProblem?
        let verification: AuditVerification
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a checkpoint of the log's head now; print it (keep a copy outside the log).")

        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON (one line).")
        var json = false

        func run() async throws {
            do {
                let checkpoint = try state.openAuditLog().checkpoint()
                print(json ? try checkpoint.jsonString() : "checkpoint \(checkpoint.id) at record #\(checkpoint.sequence) head \(checkpoint.headHash)\n\(try checkpoint.jsonString())")
            } catch {
                throw StateFailure.report(error, json: json)
            }
        }
    }

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Policy audit report: evaluations, verdicts, failures by rule, TCBs and measurements, expiries, waivers, posture, integrity.",
            discussion: """
                --format html writes one self-contained file with charts; json is stable for machines; md for people \
                in a terminal or a review. Posture findings come from linting the current policy files in --policies.
                Exit status: 0 written (whatever the log holds), 2 the log cannot be read.
                """)

        @Option(help: "Start of the window (ISO 8601 or YYYY-MM-DD; default: 30 days ago).")
        var since: String?
        @Option(help: "End of the window (default: now).")
        var until: String?
        @Option(help: "Only this policy id.")
        var policy: String?
        @Option(help: "html, json or md.")
        var format = "md"
        @Option(help: "Write to this file instead of standard output.")
        var output: String?
        @Option(help: "Folder of policy files to lint for the posture section.")
        var policies: String?
        @Option(help: "Certificates and waivers expiring within this many days are listed.")
        var expiringWithin = 30
        @OptionGroup var state: StateOptions

        func validate() throws {
            for (name, value) in [("--since", since), ("--until", until)] {
                if let value, parseTime(value) == nil { throw ValidationError("\(name) '\(value)' is not a time") }
            }
            if AuditReport.Format(rawValue: format) == nil { throw ValidationError("--format must be html, json or md") }
        }

        func run() async throws {
            let now = Date()
            let end = until.flatMap(parseTime) ?? now
            let start = since.flatMap(parseTime) ?? end.addingTimeInterval(-30 * 86400)
            guard start <= end else { throw ValidationError("--since is after --until") }
            var findings: [PolicyFinding] = []
            if let policies {
                let files = (try? FileManager.default.contentsOfDirectory(atPath: policies))?.filter { $0.hasSuffix(".yaml") }.sorted() ?? []
                for file in files {
                    let path = (policies as NSString).appendingPathComponent(file)
                    do {
                        let loaded = try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: path)
                        findings += PolicyLinter(now: now).review(loaded)
                    } catch {
                        FileHandle.standardError.write(Data("note: posture of \(path) not reviewed: \(error)\n".utf8))
                    }
                }
            }
            let text: String
            do {
                let log = try state.openAuditLog()
                let report = try AuditReport(log: log, options: AuditReport.Options(
                    window: DateInterval(start: start, end: end), policyID: policy, findings: findings,
                    expiryHorizon: TimeInterval(expiringWithin) * 86400, generatedAt: now, trustedKey: log.checkpointKey))
                text = try report.rendered(as: AuditReport.Format(rawValue: format)!)
            } catch {
                throw StateFailure.report(error, json: format == "json")
            }
            if let output {
                do {
                    try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
                } catch {
                    FileHandle.standardError.write(Data("error: cannot write \(output): \(error.localizedDescription)\n".utf8))
                    throw ExitCode(2)
                }
                FileHandle.standardError.write(Data("wrote \(output)\n".utf8))
            } else {
                print(text)
            }
        }
    }
}

extension CMK {
    /// `cmk ear`: the installation's attestation-result signing key and token checks.
    struct EAR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ear", abstract: "Export the EAR signing key (JWKS) and verify attestation result tokens.",
            subcommands: [JWKS.self, VerifyToken.self])
    }
}

extension CMK.EAR {
    struct JWKS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "jwks", abstract: "Print the public key that verifies this installation's EARs, as a JWK Set.")
        @OptionGroup var state: StateOptions

        func run() async throws {
            do {
                let key = try state.earKey()
                print(String(decoding: EARKeySet(keys: [key.publicKey]).jwksJSON(), as: UTF8.self))
            } catch {
                throw StateFailure.report(error, json: true)
            }
        }
    }

    struct VerifyToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Verify an EAR (JWT, or base64url CWT) and print its claims.",
            discussion: "Exit status: 0 valid, 1 invalid (bad signature, expired, unknown key ...), 2 unreadable input.")

        @Argument(help: "The token, or @FILE.")
        var token: String
        @Option(help: "A JWK Set file to verify with (default: this installation's key).")
        var jwks: String?
        @Option(help: "Verification time, ISO 8601 (default: now).")
        var at: String?
        @OptionGroup var state: StateOptions

        func run() async throws {
            let text: String
            let keys: EARKeySet
            do {
                text = token.hasPrefix("@")
                    ? try String(contentsOfFile: String(token.dropFirst()), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                    : token
                keys = try jwks.map { try EARKeySet(jwksJSON: Array(Data(contentsOf: URL(fileURLWithPath: $0)))) }
                    ?? EARKeySet(keys: [try state.earKey().publicKey])
            } catch {
                throw StateFailure.report(error, json: false)
            }
            let time = at.flatMap(parseTime) ?? Date()
            do {
                let claims = text.contains(".")
                    ? try EARJWT.verify(text, keys: keys, now: time)
                    : try EARCWT.verify(try Base64URL.decode(text).orThrow(), keys: keys, now: time)
                print(String(decoding: claims.jsonEncoded(), as: UTF8.self))
            } catch {
                FileHandle.standardError.write(Data("INVALID: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

extension Optional {
    /// The value, or an "invalid token" error.
    func orThrow() throws -> Wrapped {
        guard let self else { throw AttestationResultsError(.malformedToken, "the token is neither a JWT nor base64url") }
        return self
    }
}
