import CMKTesting
import Foundation
import Testing

/// The suites that boot real children (TCG, through OVMF) run one after another, not beside each other: on a small
/// host, children booting in parallel starve each other and every other test of CPU.
@Suite("booting real children, one suite at a time", .serialized)
struct RealBoots {
    /// After a failed expectation: asks every supervisor left in `state` to stop (SIGTERM, no waiting), so no QEMU
    /// outlives the test. The normal path stops its instances itself.
    static func stopSupervisors(_ state: URL) {
        let folder = state.appendingPathComponent("instances")
        for file in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        where file.hasSuffix(".supervisor.pid") {
            if let text = try? String(contentsOfFile: folder.appendingPathComponent(file).path, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                kill(pid, SIGTERM)
            }
        }
    }
}

extension RealBoots {
/// `cmk launch`, `cmk ps` and `cmk stop` for real: QEMU (TCG) boots the general profile through OVMF, cmk-guest
/// answers with simulated SEV-SNP evidence, and the coordinator admits or rejects it. Every run of `cmk` waits on
/// its own thread, never on a concurrency thread.
@Suite("cmk launch, ps and stop, booting for real", .serialized)
struct LaunchCommandTests {
    let state: URL
    let environment: [String: String]

    init() throws {
        state = URL(fileURLWithPath: "/tmp/cmk-launch-test-\(UUID().uuidString.prefix(8))")
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.path
        self.environment = environment
    }

    func cmk(_ arguments: [String]) async throws -> BuiltCMK.Output {
        let environment = environment
        let executable = try BuiltCMK.executable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try ExternalTool.run(executable, arguments, environment: environment, timeout: 600)
                })
            }
        }
    }

    func json(_ output: BuiltCMK.Output) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any],
                     "\(output.standardOutput)\n\(output.standardError)")
    }

    @Test("the development policy admits a simulated child; ps lists it on its own CPU; stop gives the CPU back",
          .timeLimit(.minutes(6)))
    func admitThenStop() async throws {
        defer { RealBoots.stopSupervisors(state) }
        let launch = try await cmk(["launch", "--name", "admit-1", "--json"])
        #expect(launch.status == 0, "\(launch.standardError)")
        let outcome = try json(launch)
        #expect(outcome["verdict"] as? String == "admit")
        #expect(outcome["simulated"] as? Bool == true)
        #expect((outcome["partitionCPUs"] as? [Int])?.count == 1)
        #expect((outcome["measurement"] as? String)?.count == 96)
        #expect(launch.standardError.contains("cmk-guest 0.1.0 ready"))

        let ps = try await cmk(["ps", "--json"])
        #expect(ps.standardOutput.contains("admit-1") && ps.standardOutput.contains("admitted"), "\(ps.standardOutput)")
        let log = try await cmk(["audit", "log"])
        #expect(log.standardOutput.contains("coordinator admit-1: ADMIT sev-snp SIMULATED policy development v1"))
        #expect(try await cmk(["audit", "verify"]).status == 0)

        // The EAR the coordinator signed verifies with the installation's key.
        let token = try String(contentsOf: state.appendingPathComponent("instances/admit-1/ear.jwt"), encoding: .utf8)
        let verified = try await cmk(["ear", "verify", token])
        #expect(verified.status == 0, "\(verified.standardError)")
        #expect(verified.standardOutput.contains("\"simulated\":true"))

        // A second exclusive instance does not fit on this host: the refusal says what is free.
        let second = try await cmk(["launch", "--name", "admit-2"])
        #expect(second.status == 3, "exit 3: not enough free CPUs")
        #expect(second.standardOutput.contains("free: no CPU"), "\(second.standardOutput)")

        let stop = try await cmk(["stop", "admit-1"])
        #expect(stop.status == 0, "\(stop.standardError)")
        let after = try await cmk(["ps"])
        #expect(!after.standardOutput.contains("admit-1"))
    }

    @Test("the strict production policy rejects the simulated child, which is shut down and its partition returned",
          .timeLimit(.minutes(6)))
    func rejectAndQuarantine() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        let policy = SharedVectors.repositoryRoot.appendingPathComponent("policies/sev-snp-production.yaml").path
        let launch = try await cmk(["launch", "--name", "reject-1", "--policy", policy, "--json"])
        #expect(launch.status == 1)
        let outcome = try json(launch)
        #expect(outcome["verdict"] as? String == "reject")
        let failures = (outcome["failures"] as? [[String: Any]])?.compactMap { $0["rule"] as? String } ?? []
        #expect(failures.contains("trust.root"))
        #expect(try await cmk(["ps"]).standardOutput.contains("no instances"))
        let log = try await cmk(["audit", "log", "--verdict", "reject"])
        #expect(log.standardOutput.contains("reject-1: REJECT sev-snp SIMULATED policy sev-snp-production"))
    }
}
}
