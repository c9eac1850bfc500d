import AttestationPolicy
import CMKTesting
import Coordinator
import Foundation
import Testing

/// A task executor with a thread of its own: the supervisor's blocking waits (accept, receive) run there, never on
/// one of the cooperative pool's two threads.
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread finish once its queue is empty.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

@Suite("the supervisor launches a simulated TD", .serialized)
struct SimulatedTDXLaunchTests {
    @Test(
        "InstanceSupervisor with --tee sim-tdx: development-tdx admits the simulated TD; an SEV-SNP policy is refused",
        .timeLimit(.minutes(8)))
    func supervisorAdmitsSimulatedTD() async throws {
        let agent = try GuestAgentBinary.url()
        try #require(FileManager.default.isExecutableFile(atPath: agent.path), "build cmk-guest first (swift build)")
        let work = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        // A private cache (images are built into it) that shares the project's guest kernel.
        let cache = work.appendingPathComponent("cache")
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            at: cache.appendingPathComponent("guest-kernel"),
            withDestinationURL: SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel"))
        let state = CMKStateDirectory(work.appendingPathComponent("state"))
        let policies = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        let lines = LineCollector()
        func supervisor(_ name: String, policy: String) -> InstanceSupervisor {
            InstanceSupervisor(
                state: state, paths: CMKPaths(cacheDirectory: cache),
                request: LaunchRequest(
                    name: name, profile: "general", policyPath: policies.appendingPathComponent(policy).path,
                    bootTimeout: .seconds(240), agent: agent, tee: .simulatedTDX),
                progress: { event in
                    switch event {
                    case .note(let line): lines.append(line)
                    case .phaseFinished(let timing): lines.append("\(timing.phase.rawValue): \(timing.detail)")
                    case .phaseStarted: break
                    }
                })
        }

        let executor = DedicatedThreadExecutor(name: "cmk test supervisor")
        defer { executor.stop() }
        let launched = supervisor("tdx-1", policy: "development-tdx.yaml")
        let (refusal, outcome) = try await withTaskExecutorPreference(executor) {
            // A policy for the other TEE is refused before anything is reserved (a usage error).
            var refusal = "none"
            do {
                _ = try await supervisor("wrong-1", policy: "development.yaml").launch()
            } catch {
                refusal = "\(error)"
            }
            let outcome = try await launched.launch()
            await launched.supervise(stopRequested: { true })
            return (refusal, outcome)
        }
        #expect(refusal.contains("policy-platform-mismatch") && refusal.contains("appraises sev-snp evidence"), "\(refusal)")
        let reader = try #require(try InstanceStore.openForReading(state))
        #expect(try reader.instance("wrong-1") == nil, "the refused launch reserved nothing")
        reader.close()
        // The TD's fields under their TDX names; nothing is called HOST_DATA.
        let fields = Dictionary(uniqueKeysWithValues: (outcome.platformFields ?? []).map { ($0.name, $0.value) })
        #expect(Set(fields.keys) == ["MRTD", "MRCONFIGID", "MROWNER", "MROWNERCONFIG", "RTMR0", "RTMR1", "RTMR2", "RTMR3",
                                     "REPORTDATA"], "\(fields.keys.sorted())")
        #expect(fields["MRTD"] == outcome.measurement)
        #expect(fields["MRCONFIGID"]?.count == 96 && fields["MRCONFIGID"] != String(repeating: "0", count: 96))
        #expect(outcome.tdxClaims != nil && outcome.snpClaims == nil)
        #expect(outcome.verdict == .admit, "\(outcome.failures.map(\.rule)); \(lines.text)")
        #expect(outcome.simulated)
        #expect(outcome.measurement?.count == 96)
        #expect(lines.text.contains("SIMULATED TDX platform: MRTD"))
        #expect(lines.text.contains("measured events) replayed for the policy"), "\(lines.text)")
        // development-tdx requires the CCEL: the appraisal replayed it against the quote's RTMRs.
        let replay = outcome.appraisal?.outcomes.first { $0.rule == "tdx.event-log" }
        #expect(replay?.status == .pass, "\(String(describing: replay))")
        #expect(lines.text.contains("evidence: simulated-tdx"), "\(lines.text)")
        // The audit record and the EAR say simulated.
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.url.path
        let log = try BuiltCMK.run(["audit", "log"], environment: environment)
        #expect(
            log.standardOutput.contains("tdx-1: ADMIT tdx SIMULATED policy development-tdx v1"), "\(log.standardOutput)"
        )
        let token = try String(
            contentsOf: state.url.appendingPathComponent("instances/tdx-1/ear.jwt"), encoding: .utf8)
        let ear = try BuiltCMK.run(["ear", "verify", token], environment: environment)
        #expect(ear.status == 0 && ear.standardOutput.contains("\"simulated\":true"), "\(ear.standardOutput)")
        print(
            "supervisor, simulated TDX: ready after \(String(format: "%.1f", outcome.bootSeconds ?? -1)) s, "
                + "attested in \(String(format: "%.2f", outcome.attestationSeconds ?? -1)) s, MRTD \(outcome.measurement ?? "?")"
        )
    }
}

/// Progress lines from the supervisor, collected across threads.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func append(_ line: String) {
        lock.lock()
        lines.append(line)
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return lines.joined(separator: "\n")
    }
}
