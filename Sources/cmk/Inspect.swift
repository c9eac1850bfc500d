import ArgumentParser
import Attestation
import AttestationPolicy
import Coordinator
import Foundation
import GuestProtocol

/// One change of state as `cmk inspect --json` prints it: with the time in milliseconds as well, since ISO 8601
/// in cmk's JSON has whole seconds.
struct InspectTransition: Encodable {
    let from: InstanceState?
    let to: InstanceState
    let time: Date
    let timeMilliseconds: Int64
    let reason: String

    init(_ transition: InstanceTransition) {
        from = transition.from
        to = transition.to
        time = transition.time
        timeMilliseconds = Int64((transition.time.timeIntervalSince1970 * 1000).rounded())
        reason = transition.reason
    }
}

/// What `cmk inspect --json` prints.
struct InspectReport: Encodable {
    let instance: InstanceRecord
    let history: [InspectTransition]
    /// Whether the recorded supervisor process still runs.
    let supervisorRunning: Bool
    /// The launch as the supervisor recorded it (absent when it wrote none for this instance).
    let launch: LaunchOutcome?
    let files: [String: String]
}

/// Opens the store for reading or reports why not (exit 2), and finds an instance (exit 6 when unknown).
enum InstanceLookup {
    static func record(_ name: String, state: CMKStateDirectory, json: Bool) throws -> (InstanceRecord, [InstanceTransition]) {
        do {
            let store = try InstanceStore.openForReading(state)
            defer { store?.close() }
            guard let store, let record = try store.instance(name) else {
                let error = CoordinatorError(.unknownInstance, "no instance named \(name) (cmk ps --all lists them)")
                _ = CoordinatorFailure.report(error, json: json)
                throw ExitCode(InstanceExit.unknownInstance)
            }
            return (record, try store.history(of: record.id))
        } catch let error as CoordinatorError {
            throw CoordinatorFailure.report(error, json: json)
        }
    }
}

extension CMK {
    /// `cmk inspect NAME`: everything recorded about one instance.
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one instance: partition, processes, measurement, claims, verdict with every rule, handover, phases, history.",
            discussion: """
                Reads the instance store without the lock, and the launch outcome the supervisor persisted \
                (<state>/instances/NAME.outcome.json). Exit status: 0 shown, 2 the store cannot be read, 6 no such \
                instance.
                """)

        @Argument(help: "The instance name (or id).")
        var name: String

        @Flag(help: "Print as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() throws {
            let stateDirectory = state.state
            let (record, history) = try InstanceLookup.record(name, state: stateDirectory, json: json)
            let files = InstanceFiles(state: stateDirectory, name: record.name)
            let launch = files.readOutcome().flatMap { $0.instanceID == record.id ? $0 : nil }
            let supervisorRunning = record.supervisor.map { ProcessIdentity.isRunning(pid: $0.pid, startTime: $0.startTime) } ?? false
            let report = InspectReport(
                instance: record, history: history.map(InspectTransition.init), supervisorRunning: supervisorRunning, launch: launch,
                files: ["log": files.log.path, "console": files.console.path, "outcome": files.outcome.path])
            if json {
                print(try JSONOutput.encode(report))
            } else {
                print(render(report))
            }
        }

        func render(_ report: InspectReport) -> String {
            let record = report.instance
            var lines: [(String, String)] = [
                ("name", "\(record.name) (\(record.id))"),
                ("state", "\(record.state.rawValue): \(record.reason)"),
                ("partition", "CPUs \(CPUList.format(record.partition.cpus))\(record.partition.shared ? " (shared)" : ""), "
                    + "\(record.partition.memoryMiB) MiB, node \(CPUList.format(record.partition.nodes))"
                    + (record.holdsPartition ? "" : " (released)")),
                ("qemu", record.process.map { "pid \($0.pid)\(ProcessIdentity.isRunning(pid: $0.pid, startTime: $0.startTime) ? " (running)" : " (gone)")" } ?? "-"),
                ("supervisor", record.supervisor.map { "pid \($0.pid)\(report.supervisorRunning ? " (running)" : " (gone)")" } ?? "-"),
                ("policy", record.policy.map { "\($0.id) v\($0.version) (\($0.digest.prefix(16))…)" } ?? "-"),
            ]
            if let launch = report.launch {
                lines.append(("platform", "\(launch.tee ?? "-")\(launch.simulated ? " (SIMULATED)" : "")"))
                if let measurement = launch.measurement { lines.append(("measurement", measurement)) }
                // Each TEE's fields under their own names: HOST_DATA on SEV-SNP, MRCONFIGID / MROWNER / RTMRs on TDX.
                for field in launch.platformFields ?? [] {
                    lines.append((field.name, "\(field.value) (\(field.meaning))"))
                }
                if let digest = launch.manifestDigest { lines.append(("manifest", "SHA-256 \(digest)")) }
                if let claims = launch.tdxClaims {
                    lines.append(("claims", "TD quote v\(claims.quoteVersion), trust anchor \(claims.trustAnchor)"
                                  + "\(claims.simulated ? ", simulated" : ""), debug \(claims.debug ? "on" : "off"), "
                                  + "attributes \(claims.tdAttributeFlags.isEmpty ? "none" : claims.tdAttributeFlags.joined(separator: " "))"))
                }
                if let claims = launch.snpClaims {
                    lines.append(("claims", "SEV-SNP report v\(claims.reportVersion), \(claims.product), signer \(claims.signer), "
                                  + "trust anchor \(claims.trustAnchor)\(claims.simulated ? ", simulated" : "")"))
                    lines.append(("", "policy debug \(claims.policy.debugAllowed ? "allowed" : "off"), migration agent "
                                  + "\(claims.policy.migrationAgentAllowed ? "allowed" : "off"), SMT \(claims.policy.smtAllowed ? "allowed" : "off")"))
                }
                if let appraisal = launch.appraisal {
                    lines.append(("verdict", "\(appraisal.verdict.rawValue.uppercased()) by \(appraisal.policy.id) v\(appraisal.policy.version)"
                                  + (launch.auditSequence.map { ", audit record #\($0)" } ?? "")))
                    for outcome in appraisal.outcomes {
                        let mark = switch outcome.status {
                        case .pass: "pass"
                        case .fail: "FAIL"
                        case .warn: "warn"
                        case .notChecked: "-"
                        }
                        lines.append((
                            "  rule",
                            "\(mark.padding(toLength: 5, withPad: " ", startingAt: 0)) \(outcome.rule): expected "
                                + "\(outcome.expected); actual \(outcome.actual)"))
                    }
                }
                if let error = launch.error { lines.append(("error", "[\(error.code)] \(error.reason)")) }
                if let handover = launch.handover {
                    lines.append(("handover", "\(handover.secrets.count) secret(s) \(handover.secrets.map(\.name)), "
                                  + "\(handover.volumes.count) volume(s) \(handover.volumes.map(\.name)), channel peers "
                                  + "\(handover.channelPeers), sealed secrets SHA-256 \(handover.sealedMessageSHA256 ?? "-")"))
                } else if let references = launch.handoverReferences {
                    lines.append(("handover", "named by the policy: \(references.secrets.count) secret(s) \(references.secrets), "
                                  + "\(references.volumes.count) volume(s) \(references.volumes), channel peers "
                                  + "\(references.channelPeers); not handed over"))
                } else {
                    lines.append(("handover", "none (only an admitted instance gets one)"))
                }
                if let status = launch.guestStatus {
                    lines.append(("guest status", "the rejected child held \(status.secretFiles.count) secret file(s), "
                                  + "\(status.volumes.count) volume(s) when asked before shutdown"))
                }
                for timing in launch.phases {
                    lines.append(("  phase", "\(timing.phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(format: "%7.2f s", timing.seconds))  \(timing.detail)"))
                }
            } else {
                lines.append(("launch", "no launch outcome recorded for this instance"))
            }
            let formatter = ISO8601DateFormatter()
            for step in report.history {
                lines.append(("  history", "\(formatter.string(from: step.time))  \(step.from?.rawValue ?? "-") -> \(step.to.rawValue): \(step.reason)"))
            }
            lines.append(("log", report.files["log"] ?? "-"))
            lines.append(("console", report.files["console"] ?? "-"))
            let width = lines.map(\.0.count).max() ?? 0
            return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
        }
    }

    /// `cmk logs NAME`: the supervisor's log and the guest console.
    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an instance's supervisor log and guest console; --follow keeps printing new lines.",
            discussion: """
                Without --follow: the supervisor log, then the guest console (serial port). With --follow: both as \
                they grow, each line prefixed with its source, until the instance has stopped or failed and its \
                supervisor is gone (or Ctrl-C). --json prints {"supervisorLog", "console"} (each {path, text}), or \
                with --follow one JSON object per line ({"source", "line"}).
                Exit status: 0, 2 the store cannot be read, 6 no such instance.
                """)

        @Argument(help: "The instance name.")
        var name: String

        @Flag(help: "Keep printing new lines as they are written.")
        var follow = false

        @Flag(help: "Print as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        struct Source: Encodable {
            let path: String
            let text: String
        }

        struct LogLine: Encodable {
            let source: String
            let line: String
        }

        func run() async throws {
            let stateDirectory = state.state
            let (record, _) = try InstanceLookup.record(name, state: stateDirectory, json: json)
            let files = InstanceFiles(state: stateDirectory, name: record.name)
            let sources = [("supervisor", files.log), ("console", files.console)]
            if !follow {
                let texts = sources.map { (name, url) in Source(path: url.path, text: Self.read(url)) }
                if json {
                    print(try JSONOutput.encode(["supervisorLog": texts[0], "console": texts[1]]))
                } else {
                    for (index, (label, _)) in sources.enumerated() {
                        print("== \(label == "supervisor" ? "supervisor log" : "guest console") (\(texts[index].path)) ==")
                        print(texts[index].text, terminator: texts[index].text.hasSuffix("\n") || texts[index].text.isEmpty ? "" : "\n")
                    }
                }
                return
            }
            var offsets = [UInt64](repeating: 0, count: sources.count)
            var pending = [String](repeating: "", count: sources.count)
            var quietRounds = 0
            while true {
                var printed = false
                for (index, (label, url)) in sources.enumerated() {
                    guard let handle = try? FileHandle(forReadingFrom: url) else { continue }
                    defer { try? handle.close() }
                    try? handle.seek(toOffset: offsets[index])
                    let data = (try? handle.readToEnd()) ?? Data()
                    guard !data.isEmpty else { continue }
                    offsets[index] += UInt64(data.count)
                    pending[index] += String(decoding: data, as: UTF8.self)
                    let parts = pending[index].split(separator: "\n", omittingEmptySubsequences: false)
                    pending[index] = String(parts.last ?? "")
                    for line in parts.dropLast() {
                        let clean = line.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
                        if json {
                            let encoder = JSONEncoder()
                            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                            FileHandle.standardOutput.write(try encoder.encode(LogLine(source: label, line: clean)) + Data("\n".utf8))
                        } else {
                            FileHandle.standardOutput.write(Data("[\(label)] \(clean)\n".utf8))
                        }
                        printed = true
                    }
                }
                if !printed {
                    // Done once nothing more can be written: the instance is over and its supervisor gone.
                    quietRounds += 1
                    if quietRounds >= 3, !Self.live(record.id, state: stateDirectory) { return }
                } else {
                    quietRounds = 0
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        static func read(_ url: URL) -> String {
            guard let data = FileManager.default.contents(atPath: url.path) else { return "" }
            return String(decoding: data, as: UTF8.self)
        }

        /// Whether anything can still write to the instance's logs.
        static func live(_ id: String, state: CMKStateDirectory) -> Bool {
            guard let store = try? InstanceStore.openForReading(state), let record = try? store.instance(id) else { return false }
            store.close()
            if let supervisor = record.supervisor, ProcessIdentity.isRunning(pid: supervisor.pid, startTime: supervisor.startTime) {
                return true
            }
            if let process = record.process, ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) { return true }
            return false
        }
    }
}
