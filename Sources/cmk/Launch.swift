import ArgumentParser
import AttestationPolicy
import Coordinator
import Dispatch
import Foundation

extension CMK {
    /// `cmk launch`: an attested instance on an exclusive partition.
    struct Launch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Launch an attested child kernel on an exclusive partition (the simulated SEV-SNP platform by default).",
            discussion: """
                Reserves an exclusive set of host CPUs and memory, builds the profile's image (guest-kernels/), starts \
                the simulated platform and QEMU pinned to the partition, waits for cmk-guest, asks it for fresh \
                evidence bound to a nonce and its key, appraises it against the policy, signs the EAR and records the \
                decision in the audit log — and only then hands over what the policy names. A rejected or failed child \
                is shut down and its partition given back.
                The instance keeps running under a supervisor process after this command returns; `cmk ps` lists it \
                and `cmk stop NAME` stops it. Progress goes to standard error; --json prints the outcome.
                Exit status: 0 admitted, 1 rejected or failed, 2 usage error or unreadable input.
                """)

        @Option(help: "The guest-kernels/ profile: general, database, realtime.")
        var profile = "general"

        @Option(help: "Instance name (default: the profile and four random hex digits).")
        var name: String?

        @Option(help: "The policy file (default: policies/development.yaml, which trusts the simulated platform).")
        var policy: String?

        @Option(help: "vCPUs (default: the profile's).")
        var vcpus: Int?

        @Option(help: "Memory in MiB (default: the profile's).")
        var memory: Int?

        @Flag(help: "Allow host CPUs shared with other shared instances when no exclusive ones are free (cmk ps says so).")
        var allowSharedCores = false

        @Flag(help: "Use KVM (only where `cmk doctor` found it usable); TCG otherwise.")
        var kvm = false

        @Option(help: "Seconds the child may take to boot to its agent.")
        var bootTimeout = 180

        @Flag(help: "Stay in the foreground and supervise the instance until it stops (what the supervisor runs).")
        var foreground = false

        @OptionGroup var state: StateOptions

        @Flag(help: "Print the outcome as JSON.")
        var json = false

        func validate() throws {
            if let vcpus, !(1...64).contains(vcpus) { throw ValidationError("--vcpus must be 1 to 64") }
            if let memory, !(128...262_144).contains(memory) { throw ValidationError("--memory must be 128 to 262144 MiB") }
            if let name, name.isEmpty || name.count > 63 || !name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) {
                throw ValidationError("--name must be 1 to 63 letters, digits, '-', '_' or '.'")
            }
            if !(5...3600).contains(bootTimeout) { throw ValidationError("--boot-timeout must be 5 to 3600 seconds") }
        }

        var instanceName: String { name ?? "\(profile)-\(String(format: "%04x", UInt16.random(in: 0...UInt16.max)))" }

        func policyPath() throws -> String {
            if let policy { return policy }
            var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<8 {
                let candidate = folder.appendingPathComponent("policies/development.yaml")
                if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
                folder.deleteLastPathComponent()
            }
            throw ValidationError("no policies/development.yaml found near cmk; name one with --policy")
        }

        func run() async throws {
            let resolvedPolicy = try policyPath()
            do {
                _ = try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: resolvedPolicy)
            } catch where error.code != .referenceArtifact {
                // A reference to an image not built yet is fine: the launch builds it before loading the policy.
                FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
                throw ExitCode(2)
            } catch {}
            let name = instanceName
            if foreground {
                try await runSupervisor(name: name, policy: resolvedPolicy)
            } else {
                try await detach(name: name, policy: resolvedPolicy)
            }
        }

        /// Starts the supervisor in its own session and follows the instance's state until a verdict.
        func detach(name: String, policy: String) async throws {
            let stateDirectory = state.state
            try stateDirectory.prepare()
            let logs = stateDirectory.url.appendingPathComponent("instances")
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let log = logs.appendingPathComponent("\(name).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let outcomeFile = logs.appendingPathComponent("\(name).outcome.json")
            try? FileManager.default.removeItem(at: outcomeFile)
            var arguments = [CommandLine.arguments[0], "launch", "--foreground", "--name", name, "--profile", profile,
                             "--policy", policy, "--state-dir", stateDirectory.url.path, "--boot-timeout", String(bootTimeout)]
            if let vcpus { arguments += ["--vcpus", String(vcpus)] }
            if let memory { arguments += ["--memory", String(memory)] }
            if allowSharedCores { arguments.append("--allow-shared-cores") }
            if kvm { arguments.append("--kvm") }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = arguments
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            FileHandle.standardError.write(Data("cmk launch: \(name): supervisor pid \(process.processIdentifier), log \(log.path)\n".utf8))
            // Follow the log for progress until the supervisor writes its outcome (or dies).
            var shown = 0
            let deadline = Date().addingTimeInterval(TimeInterval(bootTimeout + 240))
            while Date() < deadline {
                if let text = try? String(contentsOf: log, encoding: .utf8) {
                    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                    for line in lines.dropFirst(shown).dropLast() where line.hasPrefix("cmk: ") {
                        FileHandle.standardError.write(Data("  \(line.dropFirst(5))\n".utf8))
                    }
                    shown = max(shown, lines.count - 1)
                }
                if let data = try? Data(contentsOf: outcomeFile), let outcome = try? JSONDecoder().decode(LaunchOutcome.self, from: data) {
                    report(outcome)
                    if outcome.verdict != .admit { throw ExitCode(1) }
                    return
                }
                if !process.isRunning {
                    FileHandle.standardError.write(Data("cmk launch: the supervisor ended without a verdict; see \(log.path)\n".utf8))
                    throw ExitCode(1)
                }
                try await Task.sleep(for: .milliseconds(250))
            }
            FileHandle.standardError.write(Data("cmk launch: no verdict in time; see \(log.path)\n".utf8))
            throw ExitCode(1)
        }

        func report(_ outcome: LaunchOutcome) {
            if json {
                print((try? JSONOutput.encode(outcome)) ?? "{}")
                return
            }
            let verdict = outcome.verdict == .admit ? "ADMITTED" : "REJECTED"
            print("\(verdict) \(outcome.name)\(outcome.simulated ? " (SIMULATED platform)" : ""): CPUs \(CPUList.format(outcome.partitionCPUs))\(outcome.shared ? " shared" : "")"
                + (outcome.bootSeconds.map { String(format: ", boot %.1f s", $0) } ?? "")
                + (outcome.attestationSeconds.map { String(format: ", attestation %.2f s", $0) } ?? ""))
            if let measurement = outcome.measurement { print("  measurement  \(measurement)") }
            if let sequence = outcome.auditSequence { print("  audit record #\(sequence)") }
            for failure in outcome.failures { print("  FAIL \(failure.rule): expected \(failure.expected); actual \(failure.actual)") }
        }

        /// The supervisor: launch in this process, then keep the instance until `cmk stop` (SIGTERM) or QEMU exits.
        func runSupervisor(name: String, policy: String) async throws {
            let stateDirectory = state.state
            let stop = StopSignal()
            let supervisor = InstanceSupervisor(
                state: stateDirectory, paths: CMKPaths.resolve(),
                request: LaunchRequest(
                    name: name, profile: profile, policyPath: policy, vcpus: vcpus, memoryMiB: memory,
                    allowSharedCores: allowSharedCores, accelerator: kvm ? .kvm : .tcg, bootTimeout: .seconds(bootTimeout))
            ) { line in
                FileHandle.standardError.write(Data("cmk: \(line)\n".utf8))
            }
            let pidFile = stateDirectory.url.appendingPathComponent("instances/\(name).supervisor.pid")
            let outcomeFile = stateDirectory.url.appendingPathComponent("instances/\(name).outcome.json")
            try? FileManager.default.createDirectory(at: pidFile.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("\(getpid())\n".utf8).write(to: pidFile)
            defer { try? FileManager.default.removeItem(at: pidFile) }
            let outcome: LaunchOutcome
            do {
                outcome = try await supervisor.launch()
            } catch {
                FileHandle.standardError.write(Data("cmk: launch failed: \(error)\n".utf8))
                let failed = LaunchOutcome(
                    name: name, verdict: .reject, state: "failed", partitionCPUs: [], shared: false, measurement: nil,
                    auditSequence: nil, token: nil,
                    failures: [RuleOutcome(rule: "launch", status: .fail, expected: "a child that boots and attests", actual: "\(error)",
                                           hint: "see the supervisor log", trustClaim: .configuration, trustValue: 0)],
                    simulated: true, bootSeconds: nil, attestationSeconds: nil)
                try? JSONOutput.encode(failed).write(to: outcomeFile, atomically: true, encoding: .utf8)
                throw ExitCode(1)
            }
            try JSONOutput.encode(outcome).write(to: outcomeFile, atomically: true, encoding: .utf8)
            report(outcome)
            guard outcome.verdict == .admit else { throw ExitCode(1) }
            await supervisor.supervise { stop.requested }
            FileHandle.standardError.write(Data("cmk: \(name) stopped\n".utf8))
        }

    }

    /// `cmk stop`: stop an instance and give its partition back.
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop an instance: the child is shut down, QEMU stopped, the partition given back.",
            discussion: "Exit status: 0 stopped, 1 it did not stop in time, 2 no such instance.")

        @Argument(help: "The instance name.")
        var name: String

        @Option(help: "Seconds to wait.")
        var timeout = 60

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            let pidFile = stateDirectory.url.appendingPathComponent("instances/\(name).supervisor.pid")
            if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
               kill(pid, 0) == 0 {
                kill(pid, SIGTERM)
                let deadline = Date().addingTimeInterval(TimeInterval(timeout))
                while Date() < deadline, kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(200)) }
                if kill(pid, 0) == 0 {
                    FileHandle.standardError.write(Data("cmk stop: \(name) did not stop within \(timeout) s\n".utf8))
                    throw ExitCode(1)
                }
                print("stopped \(name)")
                return
            }
            // No supervisor: stop what the store knows about directly.
            let store: InstanceStore
            do { store = try InstanceStore(stateDirectory) } catch {
                FileHandle.standardError.write(Data("cmk stop: \(error)\n".utf8))
                throw ExitCode(2)
            }
            defer { store.close() }
            guard let record = try store.instance(name), record.state != .stopped else {
                FileHandle.standardError.write(Data("cmk stop: no live instance named \(name)\n".utf8))
                throw ExitCode(2)
            }
            if let process = record.process, ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) {
                kill(process.pid, SIGTERM)
                try await Task.sleep(for: .seconds(2))
                if ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) { kill(process.pid, SIGKILL) }
            }
            try store.reconcile()
            if let current = try store.instance(record.id), current.state != .stopped {
                if current.state != .stopping { _ = try store.transition(record.id, to: .stopping, reason: "cmk stop (no supervisor)") }
                _ = try store.transition(record.id, to: .stopped, reason: "cmk stop (no supervisor)", changes: InstanceChanges(processGone: true))
            }
            print("stopped \(name)")
        }
    }
}

/// SIGTERM and SIGINT turned into a flag the supervisor polls.
final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var sources: [any DispatchSourceSignal] = []

    init() {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.set() }
            source.resume()
            sources.append(source)
        }
    }

    private func set() { lock.withLock { flag = true } }

    var requested: Bool { lock.withLock { flag } }
}
