import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk update NAME --profile P2 | --kernel K2`: replace an instance by an attested successor without downtime (docs/updates.md).
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace an admitted instance by an attested successor with a new kernel (a profile or a kernel image), moving its workload state over a sealed channel.",
            discussion: """
                Launches the successor NAME.uN (--profile, else the instance's own profile, with --kernel's image when \
                given) on a fresh partition (shared cores when too few are free), attests it \
                against --policy (which must declare an update path from the instance, or be the instance's own \
                policy), opens a sealed channel between the two children, holds the instance's endpoints while the \
                predecessor seals its whole state to the successor (the host relays ciphertext only), switches the \
                endpoints atomically, then stops the predecessor and reclaims its partition. Every step is audited; a \
                failure before the switch rolls back: the predecessor keeps serving with its state, the successor is \
                stopped. NAME may be an instance or an endpoint with one backend. Progress goes to standard error; \
                --json prints the outcome.
                Exit status: 0 updated, 1 rolled back (the reason is printed), 2 usage error, 6 no such instance.
                """)

        @Argument(help: "The instance to replace (or an endpoint whose one backend it is).")
        var name: String

        @Option(help: "The successor's guest-kernels/ profile (default: the instance's).")
        var profile: String?

        @Option(help: "A kernel image (an x86 bzImage) for the successor, booted with the profile's command line, init and modules.")
        var kernel: String?

        @Option(help: "The --kernel's lib/modules/<release> folder (default: the cache kernel's, when the release is the same).")
        var kernelModules: String?

        @Option(help: "The successor's policy (default: policies/development.yaml).")
        var policy: String?

        @Option(help: "The successor's vCPUs (default: the profile's).")
        var vcpus: Int?

        @Option(help: "The successor's memory in MiB (default: the profile's).")
        var memory: Int?

        @Option(help: "Seconds each of the channel and transfer steps may take.")
        var timeout = 120

        @Option(help: "Seconds the successor may take to boot.")
        var bootTimeout = 300

        @Flag(help: "Print the outcome as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func validate() throws {
            guard profile != nil || kernel != nil else { throw ValidationError("name the successor's --profile or --kernel") }
            try KernelOption.validate(kernel: kernel, modules: kernelModules)
            if let vcpus, !(1...64).contains(vcpus) { throw ValidationError("--vcpus must be 1 to 64") }
            if let memory, !(128...262_144).contains(memory) { throw ValidationError("--memory must be 128 to 262144 MiB") }
            if !(5...3600).contains(timeout) { throw ValidationError("--timeout must be 5 to 3600 seconds") }
            if let policy, !FileManager.default.fileExists(atPath: policy) {
                throw ValidationError("--policy '\(policy)' does not exist")
            }
        }

        func policyPath() throws -> String {
            if let policy { return URL(fileURLWithPath: policy).standardizedFileURL.path }
            var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<8 {
                let candidate = folder.appendingPathComponent("policies/development.yaml")
                if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
                folder.deleteLastPathComponent()
            }
            throw ValidationError("no policies/development.yaml found near cmk; name one with --policy")
        }

        func run() async throws {
            let state = state.state
            var instance = name
            if let endpoint = EndpointFiles.read(state, name: name), endpoint.isServing,
               (try? InstanceStore.openForReading(state)?.instance(name)) == nil {
                guard endpoint.backends.count == 1 else {
                    throw EndpointCLI.fail(
                        "endpoint \(name) has \(endpoint.backends.count) backends; name the instance to update",
                        json: json, status: 2)
                }
                instance = endpoint.backends[0]
            }
            let executable = CommandLine.arguments[0]
            let statePath = state.url.path
            let bootTimeout = bootTimeout
            let terminal = isatty(STDERR_FILENO) == 1
            let json = json
            let sizing: [String] = (vcpus.map { ["--vcpus", String($0)] } ?? []) + (memory.map { ["--memory", String($0)] } ?? [])
                + (kernel.map { ["--kernel", URL(fileURLWithPath: $0).standardizedFileURL.path] } ?? [])
                + (kernelModules.map { ["--kernel-modules", URL(fileURLWithPath: $0).standardizedFileURL.path] } ?? [])
            let update = InstanceUpdate(
                state: state, predecessor: instance, profile: profile,
                kernel: kernel.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, policyPath: try policyPath(),
                timeout: .seconds(timeout),
                launcher: { successor, profile, policy, predecessor in
                    let arguments = [
                        "launch", "--name", successor, "--profile", profile, "--policy", policy, "--allow-shared-cores",
                        "--update-of", predecessor, "--boot-timeout", String(bootTimeout), "--state-dir", statePath, "--json",
                    ] + sizing
                    // A launch ends by its own boot timeout; the runner's limit only guards against a hung cmk.
                    let result = await Self.runCMK(executable, arguments, timeout: .seconds(bootTimeout + 600))
                    let outcome = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any]
                    let measurement = outcome?["measurement"] as? String
                    let error = (outcome?["error"] as? [String: Any])?["reason"] as? String
                    let failures = (outcome?["failures"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
                    if result.status == 0 {
                        return (true, "\(successor) admitted\(measurement.map { ", measurement \($0.prefix(16))…" } ?? "")")
                    }
                    let why = error ?? (failures.isEmpty ? "exit status \(result.status)" : "rejected by the policy: \(failures.joined(separator: ", "))")
                    return (false, why)
                },
                stopper: { name in
                    let result = await Self.runCMK(executable, ["stop", name, "--state-dir", statePath], timeout: .seconds(300))
                    return result.status == 0 ? nil : "cmk stop exited \(result.status): \(result.error.suffix(300))"
                },
                progress: { event in
                    guard !json || terminal else { return }
                    let line: String
                    switch event {
                    case .started(let phase): line = terminal ? "  \(phase.rawValue) ..." : ""
                    case .finished(let phase, let seconds, let detail):
                        line = "\(terminal ? "\r\u{1B}[K" : "")  \(phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(format: "%7.2f s", seconds))  \(detail)\n"
                    case .note(let text): line = "\(terminal ? "\r\u{1B}[K" : "")  \(text)\n"
                    }
                    if !line.isEmpty { FileHandle.standardError.write(Data(line.utf8)) }
                })
            let outcome = await update.run()
            if json {
                print(try JSONOutput.encode(outcome))
            } else if outcome.result == "updated" {
                let total = outcome.phases.map(\.seconds).reduce(0, +)
                print("UPDATED \(outcome.predecessor) → \(outcome.successor) in \(String(format: "%.2f", total)) s; "
                      + "endpoints held \(String(format: "%.1f", outcome.holdMs ?? 0)) ms; state \(outcome.stateEntries ?? 0) entries, "
                      + "\(outcome.stateBytes ?? 0) bytes")
            } else {
                print("ROLLED BACK \(outcome.predecessor) (failed in \(outcome.failedPhase?.rawValue ?? "?")): \(outcome.error ?? "")")
            }
            if outcome.result != "updated" {
                let unknown = outcome.error?.contains("is not an admitted instance") == true
                throw ExitCode(unknown ? InstanceExit.unknownInstance : 1)
            }
        }

        /// Runs cmk itself (launch, stop) and collects its output; past `timeout` it is stopped (SIGTERM, then
        /// SIGKILL) and the result says so.
        static func runCMK(
            _ executable: String, _ arguments: [String], timeout: Duration
        ) async -> (status: Int32, output: String, error: String) {
            do {
                let result = try await CommandRunner.run(executable, arguments, timeout: timeout)
                if result.timedOut {
                    return (-1, result.standardOutputText, "cmk \(arguments.first ?? "") ran past \(timeout) and was stopped")
                }
                return (result.exitCode, result.standardOutputText, result.standardErrorText)
            } catch {
                return (-1, "", "\(error)")
            }
        }
    }
}
