import ArgumentParser
import AttestationPolicy
import Coordinator
import Dispatch
import Foundation
import GuestImage

/// Exit statuses of the instance commands (docs/cli.md, "Exit status of the instance commands").
enum InstanceExit {
    static let admitted: Int32 = 0
    static let rejected: Int32 = 1
    static let usage: Int32 = 2
    static let insufficientResources: Int32 = 3
    static let launchFailed: Int32 = 4
    static let platformUnavailable: Int32 = 5
    static let unknownInstance: Int32 = 6
    static let conflict: Int32 = 7

    /// The status for a coordinator error code.
    static func status(forCode code: String) -> Int32 {
        switch code {
        case CoordinatorError.Code.insufficientResources.name: insufficientResources
        case CoordinatorError.Code.platformUnavailable.name: platformUnavailable
        case CoordinatorError.Code.unknownInstance.name: unknownInstance
        case CoordinatorError.Code.nameInUse.name, CoordinatorError.Code.stateLocked.name: conflict
        case CoordinatorError.Code.invalidArgument.name, CoordinatorError.Code.policyPlatformMismatch.name: usage
        default: launchFailed
        }
    }

    /// The status a launch outcome gives.
    static func status(for outcome: LaunchOutcome) -> Int32 {
        if let error = outcome.error { return status(forCode: error.code) }
        return outcome.verdict == .admit ? admitted : rejected
    }
}

/// The files a supervisor keeps for instance `name` in the state folder.
struct InstanceFiles {
    let state: CMKStateDirectory
    let name: String

    var folder: URL { state.url.appendingPathComponent("instances") }
    var log: URL { folder.appendingPathComponent("\(name).log") }
    var outcome: URL { folder.appendingPathComponent("\(name).outcome.json") }
    var supervisorPID: URL { folder.appendingPathComponent("\(name).supervisor.pid") }
    var console: URL { InstanceSupervisor.folder(state, name: name).appendingPathComponent("serial.log") }

    /// The outcome the supervisor wrote, if any.
    func readOutcome() -> LaunchOutcome? {
        guard let data = try? Data(contentsOf: outcome) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601  // as JSONOutput writes dates
        return try? decoder.decode(LaunchOutcome.self, from: data)
    }
}

/// The prefix of the machine-readable lines a supervisor writes into its log for `cmk launch` to follow.
enum LaunchEventLine {
    static let prefix = "cmk-event: "

    struct Line: Codable {
        var event: String
        var phase: LaunchPhase?
        var seconds: Double?
        var detail: String?
    }

    static func encode(_ event: LaunchEvent) -> String {
        let line: Line
        switch event {
        case .phaseStarted(let phase): line = Line(event: "start", phase: phase)
        case .phaseFinished(let timing):
            line = Line(event: "finish", phase: timing.phase, seconds: timing.seconds, detail: timing.detail)
        case .note(let text): line = Line(event: "note", detail: text)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return prefix + String(decoding: (try? encoder.encode(line)) ?? Data(), as: UTF8.self)
    }

    static func decode(_ text: Substring) -> Line? {
        guard text.hasPrefix(prefix) else { return nil }
        return try? JSONDecoder().decode(Line.self, from: Data(text.dropFirst(prefix.count).utf8))
    }
}

/// Shows a launch's phases on standard error: a live line with the running phase's elapsed time on a terminal,
/// one line per finished phase otherwise.
final class LaunchProgressView: @unchecked Sendable {
    private let terminal = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var running: (LaunchPhase, ContinuousClock.Instant)?
    private var drawn = false

    func handle(_ line: LaunchEventLine.Line) {
        lock.withLock {
            switch line.event {
            case "start":
                if let phase = line.phase { running = (phase, .now) }
                redraw()
            case "finish":
                clear()
                if let phase = line.phase {
                    let name = phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                    write("  \(name) \(String(format: "%7.2f s", line.seconds ?? 0))  \(line.detail ?? "")\n")
                }
                running = nil
            default:
                clear()
                write("  \(line.detail ?? "")\n")
                redraw()
            }
        }
    }

    /// Redraws the live line (call every few hundred ms).
    func tick() { lock.withLock { redraw() } }

    func finish() { lock.withLock { clear() } }

    private func redraw() {
        guard terminal, let (phase, start) = running else { return }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        write("\r\u{1B}[K  \(phase.rawValue) ... \(String(format: "%.1f s", seconds))")
        drawn = true
    }

    private func clear() {
        guard terminal, drawn else { return }
        write("\r\u{1B}[K")
        drawn = false
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}

extension CMK {
    /// `cmk launch`: an attested instance on an exclusive partition.
    struct Launch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Launch an attested child kernel on an exclusive partition (the simulated SEV-SNP platform by default).",
            discussion: """
                Reserves an exclusive set of host CPUs and memory, builds the profile's image (guest-kernels/), starts \
                the platform and QEMU pinned to the partition, waits for cmk-guest, asks it for fresh evidence bound \
                to a nonce and its key, appraises it against the policy, signs the EAR and records the decision in \
                the audit log — and only then hands over what the policy names. A rejected or failed child is shut \
                down and its partition given back.
                The instance keeps running under a supervisor process after this command returns, which watches its \
                QEMU and its agent; `cmk ps` lists it, `cmk inspect NAME` shows it, `cmk stop NAME` stops it. Progress \
                (each phase with its time) goes to standard error; --json prints the outcome.
                Exit status: 0 admitted, 1 rejected by the policy, 2 usage error or unreadable input, 3 not enough \
                free CPUs or memory, 4 the launch failed (boot, attestation, supervisor), 5 the platform is not \
                available here, 7 the name is in use.
                """)

        @Option(help: "The guest-kernels/ profile: general, database, realtime.")
        var profile = "general"

        @Option(help: "Instance name (default: the profile and four random hex digits).")
        var name: String?

        @Option(help: "The policy file (default: policies/development.yaml for sim-snp, development-tdx.yaml for sim-tdx, both trusting the simulated platform; sev-snp-production.yaml for snp, tdx-production.yaml for tdx).")
        var policy: String?

        @Option(name: .customLong("tee"), help: "The confidential platform: sim-snp (default), sim-tdx, snp, tdx.")
        var teeArgument = TEEArgument(argument: "sim-snp")!

        var tee: TEEKind { teeArgument.kind }

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

        @Option(help: "Milliseconds between heartbeats to an admitted instance's agent.")
        var heartbeatInterval = 100

        @Option(help: "Milliseconds without a heartbeat answer before the instance counts as failed.")
        var heartbeatTimeout = 700

        @Option(help: "The cmk-guest executable to put into the child's image (default: $CMK_GUEST_AGENT, else the one beside cmk). Another agent changes the initrd, and so the measurement.")
        var agent: String?

        @Flag(help: "Stay in the foreground and supervise the instance until it stops (what the supervisor runs).")
        var foreground = false

        @Flag(help: "Attach a software TPM (swtpm, EK certificate from this installation's local CA) so the firmware measures the boot into it.")
        var vtpm = false

        @Option(help: "Another kernel image (an x86 bzImage) for the profile: its command line, init and modules stay. The measurement changes, so the policy must allow it.")
        var kernel: String?

        @Option(help: "The --kernel's lib/modules/<release> folder (default: the cache kernel's, when the release is the same).")
        var kernelModules: String?

        @Option(help: .hidden) var updateOf: String?

        @OptionGroup var reserve: ReserveOptions
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
            if let agent, !FileManager.default.isExecutableFile(atPath: agent) {
                throw ValidationError("--agent '\(agent)' is not an executable file")
            }
            try KernelOption.validate(kernel: kernel, modules: kernelModules)
            if !(10...10_000).contains(heartbeatInterval) {
                throw ValidationError("--heartbeat-interval must be 10 to 10000 ms")
            }
            if !(50...60_000).contains(heartbeatTimeout) || heartbeatTimeout <= heartbeatInterval {
                throw ValidationError("--heartbeat-timeout must be 50 to 60000 ms and longer than the interval")
            }
        }

        var instanceName: String { name ?? "\(profile)-\(String(format: "%04x", UInt16.random(in: 0...UInt16.max)))" }

        func policyPath() throws -> String {
            if let policy { return policy }
            // The development policy for a simulated platform's evidence (SEV-SNP or TDX); the production policy,
            // which trusts only the pinned hardware roots, for a real one.
            let file = switch tee {
            case .simulatedSNP: "policies/development.yaml"
            case .simulatedTDX: "policies/development-tdx.yaml"
            case .snp: "policies/sev-snp-production.yaml"
            case .tdx: "policies/tdx-production.yaml"
            }
            var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<8 {
                let candidate = folder.appendingPathComponent(file)
                if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
                folder.deleteLastPathComponent()
            }
            throw ValidationError("no \(file) found near cmk; name one with --policy")
        }

        func run() async throws {
            let resolvedPolicy = try policyPath()
            do {
                _ = try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: resolvedPolicy)
            } catch where error.code != .referenceArtifact {
                // A reference to an image not built yet is fine: the launch builds it before loading the policy.
                fail(LaunchOutcome.Failure(code: "invalid-argument", reason: error.description), status: InstanceExit.usage)
            } catch {}
            // A policy that cannot appraise the platform's evidence is a usage error, decided before anything is
            // reserved; then a platform that cannot run here is refused before anything is started.
            do {
                let header = try PolicyLoader().header(path: resolvedPolicy)
                try TEEAvailability.requireAppraisable(header, by: tee, policyPath: resolvedPolicy)
            } catch let error as CoordinatorError {
                fail(LaunchOutcome.Failure(code: error.code.name, reason: error.reason), status: InstanceExit.usage)
            } catch {
                fail(LaunchOutcome.Failure(code: "invalid-argument", reason: "\(error)"), status: InstanceExit.usage)
            }
            do {
                try TEEAvailability.require(tee)
            } catch {
                fail(LaunchOutcome.Failure(code: error.code.name, reason: error.reason), status: InstanceExit.platformUnavailable)
            }
            let name = instanceName
            if foreground {
                try await runSupervisor(name: name, policy: resolvedPolicy)
            } else {
                try await detach(name: name, policy: resolvedPolicy)
            }
        }

        /// Reports a failure before any supervisor ran, and exits.
        func fail(_ failure: LaunchOutcome.Failure, status: Int32) -> Never {
            if json {
                print((try? JSONOutput.encode(["error": ErrorOutput(code: failure.code, reason: failure.reason)])) ?? "{}")
            } else {
                FileHandle.standardError.write(Data("cmk launch: error [\(failure.code)]: \(failure.reason)\n".utf8))
            }
            Foundation.exit(status)
        }

        /// Starts the supervisor in its own session and follows its progress until a verdict.
        func detach(name: String, policy: String) async throws {
            let stateDirectory = state.state
            try stateDirectory.prepare()
            let files = InstanceFiles(state: stateDirectory, name: name)
            try FileManager.default.createDirectory(at: files.folder, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: files.log.path, contents: nil)
            try? FileManager.default.removeItem(at: files.outcome)
            try? FileManager.default.removeItem(at: files.supervisorPID)
            var arguments = [CommandLine.arguments[0], "launch", "--foreground", "--name", name, "--profile", profile,
                             "--policy", policy, "--state-dir", stateDirectory.url.path, "--boot-timeout", String(bootTimeout),
                             "--tee", tee.rawValue, "--heartbeat-interval", String(heartbeatInterval),
                             "--heartbeat-timeout", String(heartbeatTimeout),
                             "--reserve-cpus", String(reserve.reserveCPUs), "--reserve-memory-mib", String(reserve.reserveMemoryMiB)]
            if let vcpus { arguments += ["--vcpus", String(vcpus)] }
            if let memory { arguments += ["--memory", String(memory)] }
            if allowSharedCores { arguments.append("--allow-shared-cores") }
            if kvm { arguments.append("--kvm") }
            if vtpm { arguments.append("--vtpm") }
            if let updateOf { arguments += ["--update-of", updateOf] }
            if let kernel { arguments += ["--kernel", URL(fileURLWithPath: kernel).standardizedFileURL.path] }
            if let kernelModules {
                arguments += ["--kernel-modules", URL(fileURLWithPath: kernelModules).standardizedFileURL.path]
            }
            if let agent { arguments += ["--agent", URL(fileURLWithPath: agent).standardizedFileURL.path] }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = arguments
            let handle = try FileHandle(forWritingTo: files.log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            // setsid forks when it is a process group leader, which Foundation makes it: the supervisor is the
            // process that writes the pid file, and its liveness is followed by pid and start time, not through
            // `process`.
            var supervisor: ProcessIdentity?
            let started = Date()
            let view = LaunchProgressView()
            var shown = 0
            let deadline = Date().addingTimeInterval(TimeInterval(bootTimeout + 240))
            while Date() < deadline {
                if supervisor == nil, let text = try? String(contentsOf: files.supervisorPID, encoding: .utf8),
                   let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    supervisor = ProcessIdentity.of(pid: pid)
                    if let supervisor {
                        FileHandle.standardError.write(Data("cmk launch: \(name) on \(tee.rawValue): supervisor pid \(supervisor.pid), log \(files.log.path)\n".utf8))
                    }
                }
                if let text = try? String(contentsOf: files.log, encoding: .utf8) {
                    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                    for line in lines.dropFirst(shown).dropLast() {
                        if let event = LaunchEventLine.decode(line) { view.handle(event) }
                    }
                    shown = max(shown, lines.count - 1)
                }
                if let outcome = files.readOutcome() {
                    view.finish()
                    report(outcome)
                    let status = InstanceExit.status(for: outcome)
                    if status != 0 { throw ExitCode(status) }
                    return
                }
                let supervisorGone = supervisor.map { !ProcessIdentity.isRunning(pid: $0.pid, startTime: $0.startTime) }
                    ?? (Date().timeIntervalSince(started) > 30)
                if supervisorGone, files.readOutcome() == nil {
                    view.finish()
                    // The supervisor died without a verdict: clean up after it now (its QEMU, its partition).
                    var cleaned = ""
                    if let store = try? InstanceStore(stateDirectory, options: InstanceSupervisor.storeOptions()) {
                        let outcomes = (try? store.reconcile()) ?? []
                        store.close()
                        cleaned = outcomes.filter { $0.name == name }.map { "; \($0.reason)" }.joined()
                    }
                    let failure = LaunchOutcome.Failure(
                        code: "launch", reason: "the supervisor ended without a verdict\(cleaned); see \(files.log.path)")
                    if json {
                        print((try? JSONOutput.encode(["error": ErrorOutput(code: failure.code, reason: failure.reason)])) ?? "{}")
                    } else {
                        FileHandle.standardError.write(Data("cmk launch: \(failure.reason)\n".utf8))
                    }
                    throw ExitCode(InstanceExit.launchFailed)
                }
                try await Task.sleep(for: .milliseconds(100))
                view.tick()
            }
            view.finish()
            FileHandle.standardError.write(Data("cmk launch: no verdict in time; see \(files.log.path)\n".utf8))
            throw ExitCode(InstanceExit.launchFailed)
        }

        func report(_ outcome: LaunchOutcome) {
            if json {
                print((try? JSONOutput.encode(outcome)) ?? "{}")
                return
            }
            if let error = outcome.error {
                print("FAILED \(outcome.name) [\(error.code)]: \(error.reason)")
            } else {
                let verdict = outcome.verdict == .admit ? "ADMITTED" : "REJECTED"
                print("\(verdict) \(outcome.name)\(outcome.simulated ? " (SIMULATED platform)" : ""): CPUs \(CPUList.format(outcome.partitionCPUs))\(outcome.shared ? " shared" : "")"
                    + (outcome.bootSeconds.map { String(format: ", boot %.1f s", $0) } ?? "")
                    + (outcome.attestationSeconds.map { String(format: ", attestation %.2f s", $0) } ?? ""))
                if let measurement = outcome.measurement { print("  measurement  \(measurement)") }
                if let sequence = outcome.auditSequence { print("  audit record #\(sequence)") }
                for failure in outcome.failures { print("  FAIL \(failure.rule): expected \(failure.expected); actual \(failure.actual)") }
            }
            if !outcome.phases.isEmpty {
                let total = outcome.phases.map(\.seconds).reduce(0, +)
                print("  phases       " + outcome.phases.map { "\($0.phase.rawValue) \(String(format: "%.2f", $0.seconds)) s" }.joined(separator: ", ")
                      + String(format: "; total %.2f s", total))
            }
        }

        /// The supervisor: launch in this process, then watch the instance until `cmk stop` (SIGTERM), its QEMU
        /// exits or its agent stops answering.
        func runSupervisor(name: String, policy: String) async throws {
            let stateDirectory = state.state
            let stop = StopSignal()
            let files = InstanceFiles(state: stateDirectory, name: name)
            var request = LaunchRequest(
                name: name, profile: profile, policyPath: policy, vcpus: vcpus, memoryMiB: memory,
                allowSharedCores: allowSharedCores, accelerator: kvm ? .kvm : .tcg, bootTimeout: .seconds(bootTimeout),
                agent: agent.map { URL(fileURLWithPath: $0) }, tee: tee,
                heartbeat: InstanceWatch.Settings(
                    pingInterval: .milliseconds(heartbeatInterval), answerTimeout: .milliseconds(heartbeatTimeout)),
                reserve: reserve.reserve)
            request.vtpm = vtpm
            request.updateOf = updateOf
            request.kernel = kernel.map { URL(fileURLWithPath: $0) }
            request.kernelModules = kernelModules.map { URL(fileURLWithPath: $0) }
            let supervisor = InstanceSupervisor(state: stateDirectory, paths: CMKPaths.resolve(), request: request) { event in
                var text = LaunchEventLine.encode(event) + "\n"
                switch event {
                case .note(let line): text = "cmk: \(line)\n" + text
                case .phaseFinished(let timing):
                    text = "cmk: \(timing.phase.rawValue) done in \(String(format: "%.2f", timing.seconds)) s: \(timing.detail)\n" + text
                case .phaseStarted: break
                }
                FileHandle.standardError.write(Data(text.utf8))
            }
            // `cmk stop` (SIGTERM) before the handover kills the child at once; after it, supervise() stops it.
            stop.onRequest = { supervisor.requestStop() }
            try? FileManager.default.createDirectory(at: files.folder, withIntermediateDirectories: true)
            try Data("\(getpid())\n".utf8).write(to: files.supervisorPID)
            defer { try? FileManager.default.removeItem(at: files.supervisorPID) }
            let outcome: LaunchOutcome
            do {
                outcome = try await supervisor.launch()
            } catch {
                FileHandle.standardError.write(Data("cmk: launch failed: \(error)\n".utf8))
                let failed = LaunchOutcome.failed(
                    name: name, error: error, tee: tee, phases: supervisor.phases,
                    instanceID: supervisor.reservedInstance?.id, partition: supervisor.reservedInstance?.partition)
                try? JSONOutput.encode(failed).write(to: files.outcome, atomically: true, encoding: .utf8)
                throw ExitCode(InstanceExit.status(for: failed))
            }
            try JSONOutput.encode(outcome).write(to: files.outcome, atomically: true, encoding: .utf8)
            report(outcome)
            fflush(nil)  // the summary belongs in the log now, not when the supervisor exits
            guard outcome.verdict == .admit else { throw ExitCode(InstanceExit.rejected) }
            let ending = await supervisor.supervise { stop.requested }
            FileHandle.standardError.write(Data("cmk: \(name) \(ending.state.rawValue): \(ending.reason)\n".utf8))
            if ending.state == .failed { throw ExitCode(InstanceExit.launchFailed) }
        }
    }

    /// `cmk stop`: stop an instance and give its partition back.
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop an instance: the child is shut down, QEMU stopped, the partition given back.",
            discussion: "Exit status: 0 stopped, 1 it did not stop in time, 2 usage error or unreadable store, 6 no such instance.")

        @Argument(help: "The instance name.")
        var name: String

        @Option(help: "Seconds to wait.")
        var timeout = 60

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            let files = InstanceFiles(state: stateDirectory, name: name)
            if let text = try? String(contentsOf: files.supervisorPID, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
               kill(pid, 0) == 0 {
                kill(pid, SIGTERM)
                let deadline = Date().addingTimeInterval(TimeInterval(timeout))
                while Date() < deadline, kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(100)) }
                if kill(pid, 0) == 0 {
                    FileHandle.standardError.write(Data("cmk stop: \(name) did not stop within \(timeout) s\n".utf8))
                    throw ExitCode(1)
                }
                // A supervisor stopped after a failure leaves the instance failed: finish it below.
                if let reader = try? InstanceStore.openForReading(stateDirectory), let record = try? reader.instance(name),
                   record.state == .stopped {
                    reader.close()
                    print("stopped \(name)")
                    return
                }
            }
            // No supervisor: stop what the store knows about directly.
            let store: InstanceStore
            do { store = try InstanceStore(stateDirectory, options: InstanceSupervisor.storeOptions()) } catch {
                FileHandle.standardError.write(Data("cmk stop: \(error)\n".utf8))
                throw ExitCode(error.code == .stateLocked ? InstanceExit.conflict : InstanceExit.usage)
            }
            defer { store.close() }
            guard let record = try store.instance(name), record.state != .stopped else {
                FileHandle.standardError.write(Data("cmk stop: no live instance named \(name)\n".utf8))
                throw ExitCode(InstanceExit.unknownInstance)
            }
            if let process = record.process, ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) {
                kill(process.pid, SIGTERM)
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline, ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) {
                    try await Task.sleep(for: .milliseconds(50))
                }
                if ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime) { kill(process.pid, SIGKILL) }
            }
            let reconciled = try store.reconcile()
            if let current = try store.instance(record.id), current.state != .stopped {
                if current.state != .stopping { _ = try store.transition(record.id, to: .stopping, reason: "cmk stop (no supervisor)") }
                _ = try store.transition(record.id, to: .stopped, reason: "cmk stop (no supervisor)", changes: InstanceChanges(processGone: true))
            }
            store.close()
            AdoptedInstanceWatch.startWatchers(for: reconciled.filter { $0.instanceID != record.id }, state: stateDirectory)
            print("stopped \(name)")
        }
    }

    /// `cmk reconcile`: clean up after supervisors that died.
    struct Reconcile: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring the instance store in line with the processes that run: clean up after dead supervisors.",
            discussion: """
                Instances whose supervisor still runs are left alone. An instance whose supervisor died before it \
                was admitted has its QEMU killed (found by pid and start time, and by the -uuid marker on its command \
                line) and is marked failed, its partition released; an admitted one whose QEMU still runs is kept. \
                Every launch and stop reconciles first too.
                Exit status: 0 reconciled, 2 the store cannot be read, 7 the state lock stayed held.
                """)

        @Flag(help: "Print what was done as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() async throws {
            do {
                let store = try InstanceStore(state.state, options: InstanceSupervisor.storeOptions())
                defer { store.close() }
                let outcomes = try store.reconcile()
                let vtpms = SoftwareTPM.removeOrphans(
                    stateDirectory: state.state.url, keeping: Set(try store.instances().map(\.id)))
                store.close()
                // An admitted instance whose supervisor died is watched again by a detached `cmk supervise`.
                let watchers = AdoptedInstanceWatch.startWatchers(for: outcomes, state: state.state)
                if !json {
                    for id in vtpms { print("\(id)  vTPM state removed: no live instance owns it") }
                }
                if json {
                    print(try JSONOutput.encode(outcomes))
                } else if outcomes.isEmpty && vtpms.isEmpty {
                    print("nothing to reconcile")
                } else {
                    for outcome in outcomes {
                        print("\(outcome.name)  \(outcome.previousState.rawValue) -> \(outcome.state.rawValue)  \(outcome.action.rawValue): \(outcome.reason)")
                    }
                    if !watchers.isEmpty { print("watching \(watchers.count) re-adopted instance(s) again (cmk supervise)") }
                }
            } catch let error as CoordinatorError {
                let status = CoordinatorFailure.report(error, json: json)
                throw error.code == .stateLocked ? ExitCode(InstanceExit.conflict) : status
            }
        }
    }
}

/// `--tee`: one of the platform names.
struct TEEArgument: ExpressibleByArgument {
    let kind: TEEKind

    init?(argument: String) {
        guard let kind = TEEKind(rawValue: argument) else { return nil }
        self.kind = kind
    }

    static var allValueStrings: [String] { TEEKind.allCases.map(\.rawValue) }
    var defaultValueDescription: String { kind.rawValue }
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

    private var handler: (@Sendable () -> Void)?

    /// Called (on a dispatch queue) at each stop signal, and at once when one already came.
    var onRequest: (@Sendable () -> Void)? {
        get { lock.withLock { handler } }
        set {
            let already = lock.withLock {
                handler = newValue
                return flag
            }
            if already { newValue?() }
        }
    }

    private func set() {
        let handler = lock.withLock {
            flag = true
            return self.handler
        }
        handler?()
    }

    var requested: Bool { lock.withLock { flag } }
}

/// `--kernel` and `--kernel-modules` (cmk launch, cmk update): checked before anything is reserved.
enum KernelOption {
    static func validate(kernel: String?, modules: String?) throws {
        guard let kernel else {
            if modules != nil { throw ValidationError("--kernel-modules needs --kernel") }
            return
        }
        do {
            _ = try GuestKernel.release(ofImage: URL(fileURLWithPath: kernel))
        } catch {
            throw ValidationError("--kernel: \(error.description)")
        }
        if let modules {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: modules, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--kernel-modules '\(modules)' is not a folder")
            }
        }
    }
}
