import CMKTesting
import Foundation
import Testing

/// The life cycle after admission and around a crash, with real QEMU (TCG) children and the real `cmk`: crash
/// detection (QEMU killed, QEMU stopped), a supervisor killed in the middle of a launch, overcommit, the platform
/// flag, `cmk inspect` and `cmk logs`. Every blocking wait runs on its own thread, never on the test's concurrency
/// threads.
extension RealBoots {
@Suite("cmk instance life cycle, booting for real", .serialized)
struct LifecycleCommandTests: CommandSuite {
    let state: URL
    let environment: [String: String]

    init() throws {
        (state, environment) = Self.sandbox("cmk-life", ownImages: false)
    }


    /// `cmk ps --all --json`, by name.
    func instances() async throws -> [String: [String: Any]] {
        let ps = try await cmk(["ps", "--all", "--json"])
        let list = try #require(
            try JSONSerialization.jsonObject(with: Data(ps.standardOutput.utf8)) as? [[String: Any]],
            "\(ps.standardOutput)")
        var byName: [String: [String: Any]] = [:]
        // Oldest first: a later instance with the same name wins.
        for record in list { byName[record["name"] as? String ?? ""] = record }
        return byName
    }

    static func pid(_ record: [String: Any]?, _ key: String) -> Int32? {
        ((record?[key] as? [String: Any])?["pid"] as? Int).map(Int32.init)
    }

    /// The time of the instance's newest transition into `state`, from `cmk inspect --json`, in ms since 1970.
    func transitionTime(_ name: String, to state: String) async throws -> Int64? {
        let inspect = try object(try await cmk(["inspect", name, "--json"]))
        let history = inspect["history"] as? [[String: Any]] ?? []
        return history.last(where: { $0["to"] as? String == state })?["timeMilliseconds"] as? Int64
            ?? (history.last(where: { $0["to"] as? String == state })?["timeMilliseconds"] as? Int).map(Int64.init)
    }

    /// Polls `cmk ps` until `name` is in `state` with its partition released; returns when it first saw that.
    func waitUntil(_ name: String, is state: String, within seconds: Double) async throws -> Date? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let record = try await instances()[name]
            if record?["state"] as? String == state, record?["holdsPartition"] as? Bool == false { return Date() }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Processes whose command line carries `-uuid <id>`, the launcher's marker (pid only; alive, not zombies).
    static func markedProcesses(_ id: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8)
            else { return nil }
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let marked = zip(argv, argv.dropFirst()).contains { $0 == "-uuid" && $1 == id }
            let zombie = stat.split(separator: ")").last?.split(separator: " ").first == "Z"
            return marked && !zombie ? pid : nil
        }
    }

    func stopSupervisors() { RealBoots.stopSupervisors(state) }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    @Test(
        "a killed QEMU and a stopped QEMU are each marked failed within a second and their CPUs freed; the other instance stays admitted",
        .timeLimit(.minutes(12)))
    func crashDetection() async throws {
        defer { stopSupervisors() }
        // Two exclusive CPUs on this 2-CPU host: no host reserve.
        // crash-a on the simulated SEV-SNP platform, crash-b on the simulated TDX one.
        for (name, tee) in [("crash-a", "sim-snp"), ("crash-b", "sim-tdx")] {
            let launch = try await cmk(["launch", "--name", name, "--tee", tee, "--reserve-cpus", "0", "--json"])
            #expect(launch.status == 0, "\(launch.standardError)")
            #expect(launch.standardError.contains("boot") && launch.standardError.contains("handover"), "phases shown")
        }

        // inspect and logs of an admitted instance, from what the supervisor persisted.
        let inspect = try object(try await cmk(["inspect", "crash-a", "--json"]))
        let launch = try #require(inspect["launch"] as? [String: Any])
        #expect((launch["phases"] as? [[String: Any]])?.compactMap { $0["phase"] as? String }
                == ["reserve", "image", "boot", "evidence", "verify", "handover"])
        let appraisal = try #require(launch["appraisal"] as? [String: Any])
        #expect(appraisal["verdict"] as? String == "admit")
        #expect(((appraisal["outcomes"] as? [[String: Any]])?.count ?? 0) > 3, "every rule's outcome")
        #expect(((launch["snpClaims"] as? [String: Any])?["measurement"] as? String)?.count == 96)
        #expect(launch["handover"] != nil && (launch["manifestDigest"] as? String)?.count == 64)
        #expect(inspect["supervisorRunning"] as? Bool == true)
        let text = try await cmk(["inspect", "crash-a"])
        #expect(text.status == 0 && text.standardOutput.contains("verdict") && text.standardOutput.contains("rule"))
        // Each TEE's fields under their real names: HOST_DATA for SEV-SNP; MRCONFIGID, MROWNER, RTMRs for TDX.
        func fieldNames(_ launch: [String: Any]) -> [String] {
            (launch["platformFields"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        }
        #expect(fieldNames(launch) == ["MEASUREMENT", "HOST_DATA", "REPORT_DATA"])
        #expect(text.standardOutput.contains("HOST_DATA") && !text.standardOutput.contains("MRCONFIGID"))
        let tdxInspect = try object(try await cmk(["inspect", "crash-b", "--json"]))
        let tdxLaunch = try #require(tdxInspect["launch"] as? [String: Any])
        #expect(fieldNames(tdxLaunch) == ["MRTD", "MRCONFIGID", "MROWNER", "MROWNERCONFIG", "RTMR0", "RTMR1", "RTMR2",
                                          "RTMR3", "REPORTDATA"])
        #expect(tdxLaunch["tdxClaims"] != nil && tdxLaunch["snpClaims"] == nil)
        let tdxText = try await cmk(["inspect", "crash-b"]).standardOutput
        for label in ["MRTD", "MRCONFIGID", "MROWNER", "RTMR0", "RTMR3", "TD quote v4"] {
            #expect(tdxText.contains(label), "\(label) in \(tdxText)")
        }
        #expect(!tdxText.contains("HOST_DATA") && !tdxText.lowercased().contains("host data"), "\(tdxText)")
        let logs = try await cmk(["logs", "crash-a"])
        #expect(logs.status == 0)
        #expect(logs.standardOutput.contains("== supervisor log") && logs.standardOutput.contains("== guest console"))
        #expect(logs.standardOutput.contains("cmk-init"), "the guest console")
        let logsJSON = try object(try await cmk(["logs", "crash-a", "--json"]))
        #expect(((logsJSON["console"] as? [String: Any])?["text"] as? String)?.contains("cmk-guest") == true)

        // 1. kill -9 the QEMU of crash-a.
        let before = try await instances()
        let qemuA = try #require(Self.pid(before["crash-a"], "process"))
        let cpusA = (before["crash-a"]?["partition"] as? [String: Any])?["cpus"] as? [Int] ?? []
        let killedAt = Date()
        kill(qemuA, SIGKILL)
        let seenA = try #require(try await waitUntil("crash-a", is: "failed", within: 15), "crash-a never failed")
        let recordedA = try #require(try await transitionTime("crash-a", to: "failed"))
        let detectionA = Double(recordedA - Self.milliseconds(killedAt)) / 1000
        print("crash detection, QEMU killed: failed recorded \(detectionA) s after SIGKILL; ps saw it after \(seenA.timeIntervalSince(killedAt)) s")
        #expect(detectionA >= 0 && detectionA < 1.0, "failed recorded \(detectionA) s after the kill")
        let after = try await instances()
        #expect((after["crash-a"]?["reason"] as? String)?.contains("exited") == true)
        #expect(after["crash-b"]?["state"] as? String == "admitted", "the other instance is untouched")
        let host = try object(try await cmk(["host", "--reserve-cpus", "0", "--json"]))
        let free = ((host["free"] as? [String: Any])?["cpus"] as? [Int]) ?? []
        #expect(Set(cpusA).isSubset(of: Set(free)), "crash-a's CPUs \(cpusA) are free again: \(free)")
        let audit = try await cmk(["audit", "log", "--json"])
        #expect(audit.standardOutput.contains("instance-event") && audit.standardOutput.contains("exited"))

        // 2. SIGSTOP the QEMU of crash-b: its agent stops answering.
        let qemuB = try #require(Self.pid(after["crash-b"], "process"))
        let stoppedAt = Date()
        kill(qemuB, SIGSTOP)
        let seenB = try #require(try await waitUntil("crash-b", is: "failed", within: 15), "crash-b never failed")
        let recordedB = try #require(try await transitionTime("crash-b", to: "failed"))
        let detectionB = Double(recordedB - Self.milliseconds(stoppedAt)) / 1000
        print("crash detection, QEMU stopped: failed recorded \(detectionB) s after SIGSTOP; ps saw it after \(seenB.timeIntervalSince(stoppedAt)) s")
        #expect(detectionB >= 0 && detectionB < 1.0, "failed recorded \(detectionB) s after SIGSTOP")
        let final = try await instances()
        #expect((final["crash-b"]?["reason"] as? String)?.contains("stopped answering heartbeats") == true)
        #expect(kill(qemuB, 0) != 0 || Self.markedProcesses(final["crash-b"]?["id"] as? String ?? "").isEmpty, "torn down")

        // Logs of a finished instance: --follow returns once nothing can write to them any more.
        let follow = try await cmk(["logs", "crash-a", "--follow"], timeout: 60)
        #expect(follow.status == 0 && follow.standardOutput.contains("[supervisor]"))
        for name in ["crash-a", "crash-b"] {
            let stop = try await cmk(["stop", name])
            #expect(stop.status == 0, "\(stop.standardError)")
        }
        #expect(try await cmk(["ps"]).standardOutput.contains("no instances"))
    }

    @Test(
        "a supervisor killed while its child boots leaves no QEMU and no held CPU once reconciled; the CPU is launchable again",
        .timeLimit(.minutes(10)))
    func supervisorKilledMidLaunch() async throws {
        defer { stopSupervisors() }
        let launcher = Process()
        launcher.executableURL = try BuiltCMK.executable()
        launcher.arguments = ["launch", "--name", "orphan", "--json"]
        launcher.environment = environment
        launcher.standardOutput = FileHandle.nullDevice
        launcher.standardError = FileHandle.nullDevice
        try launcher.run()
        // Wait until QEMU runs and the instance is booting.
        var record: [String: Any]?
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline {
            record = try await instances()["orphan"]
            if record?["state"] as? String == "booting", Self.pid(record, "process") != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let id = try #require(record?["id"] as? String)
        let supervisor = try #require(Self.pid(record, "supervisor"))
        let qemu = try #require(Self.pid(record, "process"))
        #expect(Self.markedProcesses(id) == [qemu])
        kill(supervisor, SIGKILL)

        // `cmk launch` notices, reconciles and reports a failed launch.
        while launcher.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(launcher.terminationStatus == 4)
        let reconcile = try await cmk(["reconcile", "--json"])
        #expect(reconcile.status == 0, "\(reconcile.standardError)")
        #expect(Self.markedProcesses(id).isEmpty, "no QEMU of the orphan is left")
        let orphan = try #require(try await instances()["orphan"])
        #expect(orphan["state"] as? String == "failed")
        #expect(orphan["holdsPartition"] as? Bool == false)
        #expect((orphan["reason"] as? String)?.contains("supervisor") == true, "\(orphan["reason"] ?? "")")
        let host = try object(try await cmk(["host", "--json"]))
        #expect(((host["held"] as? [String: Any])?["cpus"] as? [Int]) == [], "no CPU is held")

        // The freed CPU takes a new instance, admitted.
        let next = try await cmk(["launch", "--name", "after-orphan", "--json"])
        #expect(next.status == 0, "\(next.standardError)")
        #expect(try object(next)["partitionCPUs"] as? [Int] == orphan["partition"].flatMap { ($0 as? [String: Any])?["cpus"] as? [Int] })
        #expect(try await cmk(["stop", "after-orphan"]).status == 0)
        #expect(try await cmk(["stop", "orphan"]).status == 0)
    }

    @Test(
        "cmk stop while the child boots kills its QEMU and frees its partition within a second; it ends stopped, the audit log says so, nothing was handed over",
        .timeLimit(.minutes(6)))
    func stopWhileBooting() async throws {
        defer {
            stopSupervisors()
            try? FileManager.default.removeItem(at: state)
        }
        async let launch = cmk(["launch", "--name", "early-1", "--json"])
        var booting: [String: Any]?
        let deadline = Date().addingTimeInterval(240)
        while Date() < deadline {
            let record = try await instances()["early-1"]
            if record?["state"] as? String == "booting", Self.pid(record, "process") != nil {
                booting = record
                break
            }
            if let state = record?["state"] as? String, !["requested", "reserved", "booting"].contains(state) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let record = try #require(booting, "early-1 never booted")
        let qemu = try #require(Self.pid(record, "process"))
        let id = try #require(record["id"] as? String)
        let cpus = (record["partition"] as? [String: Any])?["cpus"] as? [Int] ?? []
        let stoppedAt = Date()
        let stop = try await cmk(["stop", "early-1"])
        #expect(stop.status == 0, "\(stop.standardError)")
        let recorded = try #require(try await transitionTime("early-1", to: "stopped"), "no stopped transition")
        let seconds = Double(recorded - Self.milliseconds(stoppedAt)) / 1000
        print("stop while booting: QEMU gone and partition released \(seconds) s after cmk stop began")
        #expect(seconds >= 0 && seconds < 1.0, "stopped recorded \(seconds) s after the stop")
        #expect(kill(qemu, 0) != 0 && Self.markedProcesses(id).isEmpty, "no QEMU of early-1 is left")
        let after = try #require(try await instances()["early-1"])
        #expect(after["state"] as? String == "stopped" && after["holdsPartition"] as? Bool == false)
        let host = try object(try await cmk(["host", "--json"]))
        let free = ((host["free"] as? [String: Any])?["cpus"] as? [Int]) ?? []
        #expect(Set(cpus).isSubset(of: Set(free)), "early-1's CPUs \(cpus) are free again: \(free)")
        let inspect = try object(try await cmk(["inspect", "early-1", "--json"]))
        let steps = (inspect["history"] as? [[String: Any]] ?? []).compactMap { $0["to"] as? String }
        #expect(steps.suffix(3) == ["booting", "stopping", "stopped"], "\(steps)")
        #expect(!steps.contains("failed") && !steps.contains("admitted"))
        // The launch ends with the operator's stop (exit 4), not a verdict; nothing was handed over.
        let launched = try await launch
        #expect(launched.status == 4, "\(launched.standardError)")
        let outcome = try object(launched)
        #expect((outcome["error"] as? [String: Any])?["code"] as? String == "stopped-by-operator", "\(outcome)")
        #expect(outcome["state"] as? String == "stopped" && outcome["handover"] == nil)
        let audit = try await cmk(["audit", "log", "--json"])
        #expect(audit.standardOutput.contains("stopped-before-verdict"), "\(audit.standardOutput.suffix(2000))")
        #expect(audit.standardOutput.contains("stopped by the operator (cmk stop) before a verdict"))
        #expect(!audit.standardOutput.contains("\"handover\""), "no handover event")
    }

    /// Whether `pid` runs (not a zombie).
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return stat.split(separator: ")").last?.split(separator: " ").first != "Z"
    }

    @Test(
        "an admitted instance whose supervisor is SIGKILLed is re-adopted by cmk reconcile and watched again: its QEMU killed afterwards is failed and reclaimed within a second",
        .timeLimit(.minutes(8)))
    func resupervise() async throws {
        defer {
            stopSupervisors()
            try? FileManager.default.removeItem(at: state)
        }
        let launch = try await cmk(["launch", "--name", "adopt-1", "--json"])
        #expect(launch.status == 0, "\(launch.standardError)")
        let before = try #require(try await instances()["adopt-1"])
        let supervisor = try #require(Self.pid(before, "supervisor"))
        let qemu = try #require(Self.pid(before, "process"))
        let id = try #require(before["id"] as? String)
        let cpus = (before["partition"] as? [String: Any])?["cpus"] as? [Int] ?? []

        kill(supervisor, SIGKILL)
        let gone = Date().addingTimeInterval(10)
        while Date() < gone, Self.alive(supervisor) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!Self.alive(supervisor) && Self.alive(qemu), "the supervisor is gone, its QEMU runs on")

        // cmk reconcile re-adopts it and starts a watcher, which reconnects the control port and resumes the heartbeat.
        let reconcile = try await cmk(["reconcile", "--json"])
        #expect(reconcile.status == 0, "\(reconcile.standardError)")
        let outcomes = try #require(
            try JSONSerialization.jsonObject(with: Data(reconcile.standardOutput.utf8)) as? [[String: Any]])
        #expect(outcomes.contains { $0["name"] as? String == "adopt-1" && $0["action"] as? String == "readopted" },
                "\(outcomes)")
        let log = state.appendingPathComponent("instances/adopt-1.log")
        let resumed = Date().addingTimeInterval(30)
        var text = ""
        while Date() < resumed {
            text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if text.contains("heartbeat resumed") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(text.contains("heartbeat resumed"), "\(text.suffix(1500))")
        let adopted = try #require(try await instances()["adopt-1"])
        let watcher = try #require(Self.pid(adopted, "supervisor"))
        #expect(watcher != supervisor && Self.alive(watcher), "a live watcher supervises it now")
        // A second reconcile leaves it to its watcher: one supervisor, not two.
        let again = try await cmk(["reconcile", "--json"])
        #expect(again.standardOutput.contains("supervised"), "\(again.standardOutput)")
        // Healthy and answering: still admitted after two seconds of heartbeats.
        try await Task.sleep(for: .seconds(2))
        #expect(try await instances()["adopt-1"]?["state"] as? String == "admitted")

        let killedAt = Date()
        kill(qemu, SIGKILL)
        let seen = try #require(try await waitUntil("adopt-1", is: "failed", within: 15), "adopt-1 never failed")
        let recorded = try #require(try await transitionTime("adopt-1", to: "failed"))
        let detection = Double(recorded - Self.milliseconds(killedAt)) / 1000
        print("re-adopted crash detection: failed recorded \(detection) s after SIGKILL; ps saw it after \(seen.timeIntervalSince(killedAt)) s")
        #expect(detection >= 0 && detection < 1.0, "failed recorded \(detection) s after the kill")
        let after = try #require(try await instances()["adopt-1"])
        #expect((after["reason"] as? String)?.contains("re-adopted") == true, "\(after["reason"] ?? "")")
        #expect(Self.markedProcesses(id).isEmpty, "zero leaked QEMU processes")
        // Zero double-booked cores: the store's consistency check passes and the CPUs are free again.
        #expect(try await cmk(["reconcile"]).status == 0)
        let host = try object(try await cmk(["host", "--json"]))
        let free = ((host["free"] as? [String: Any])?["cpus"] as? [Int]) ?? []
        #expect(Set(cpus).isSubset(of: Set(free)), "adopt-1's CPUs \(cpus) are free again: \(free)")
        let audit = try await cmk(["audit", "log", "--json"])
        #expect(audit.standardOutput.contains("re-adopted"))
        let waited = Date().addingTimeInterval(10)
        while Date() < waited, Self.alive(watcher) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!Self.alive(watcher), "the watcher ends with its instance")
        #expect(try await cmk(["stop", "adopt-1"]).status == 0)
    }

    @Test("refusals come with distinct exit statuses: overcommit 3, platform 5, unknown instance 6, usage 2 (a policy for another TEE)",
          .timeLimit(.minutes(5)))
    func refusals() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        // This host has 2 CPUs and keeps 1: two exclusive vCPUs do not fit.
        let big = try await cmk(["launch", "--name", "too-big", "--vcpus", "2"])
        #expect(big.status == 3, "\(big.standardError)")
        #expect(big.standardOutput.contains("insufficient-resources") && big.standardOutput.contains("free: 1 CPU"),
                "\(big.standardOutput)")
        let bigJSON = try object(try await cmk(["launch", "--name", "too-big", "--vcpus", "2", "--json"]))
        #expect((bigJSON["error"] as? [String: Any])?["code"] as? String == "insufficient-resources")
        #expect(try await instances()["too-big"]?["holdsPartition"] as? Bool != true)

        // A policy that cannot appraise the platform's evidence is a usage error (2), decided before anything is
        // reserved: the reason names the TEE and the policy's evidence kind, and the store holds no instance.
        let policies = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        for (tee, policy, says) in [
            ("sim-tdx", "development.yaml", ["--tee sim-tdx produces tdx evidence", "appraises sev-snp evidence"]),
            ("sim-snp", "development-tdx.yaml", ["--tee sim-snp produces sev-snp evidence", "appraises tdx evidence"]),
            ("snp", "development.yaml", ["--tee snp is verified against the pinned AMD roots", "simulated-amd"]),
            ("tdx", "development-tdx.yaml", ["--tee tdx is verified against the pinned Intel roots", "simulated-intel"]),
        ] {
            let mismatch = try await cmk([
                "launch", "--name", "mismatch", "--tee", tee, "--policy", policies.appendingPathComponent(policy).path,
                "--json",
            ])
            #expect(mismatch.status == 2, "\(tee) + \(policy): \(mismatch.standardError)")
            let error = try #require(try object(mismatch)["error"] as? [String: Any])
            #expect(error["code"] as? String == "policy-platform-mismatch")
            for text in says { #expect((error["reason"] as? String)?.contains(text) == true, "\(error)") }
            let text = try await cmk(["launch", "--name", "mismatch", "--tee", tee, "--policy",
                                      policies.appendingPathComponent(policy).path])
            #expect(text.status == 2 && text.standardError.contains("policy-platform-mismatch"), "\(text.standardError)")
        }
        #expect(try await instances()["mismatch"] == nil, "nothing was reserved")
        // A real platform with its production policy (the default for snp and tdx) is refused as unavailable here.
        let snp = try await cmk(["launch", "--tee", "snp", "--json"])
        #expect(snp.status == 5)
        let snpError = try #require(try object(snp)["error"] as? [String: Any])
        #expect(snpError["code"] as? String == "platform-unavailable")
        #expect((snpError["reason"] as? String)?.contains("/dev/sev") == true, "names the missing capability")
        #expect(try await cmk(["launch", "--tee", "sev"]).status == 2)
        #expect(try await cmk(["launch", "--heartbeat-interval", "100", "--heartbeat-timeout", "50"]).status == 2)
        // --kernel must be a bzImage (checked before anything is reserved); --kernel-modules needs --kernel.
        let notKernel = try await cmk(["launch", "--name", "nokernel", "--kernel", policies.appendingPathComponent("development.yaml").path])
        #expect(notKernel.status == 2 && notKernel.standardError.contains("not an x86 bzImage"), "\(notKernel.standardError)")
        let absent = try await cmk(["update", "nobody", "--kernel", "/nonexistent/vmlinuz"])
        #expect(absent.status == 2 && absent.standardError.contains("not readable"), "\(absent.standardError)")
        #expect(try await cmk(["launch", "--kernel-modules", "/tmp"]).status == 2)
        #expect(try await cmk(["update", "nobody"]).status == 2, "neither --profile nor --kernel")
        #expect(try await instances()["nokernel"] == nil, "nothing was reserved")

        for command in [["inspect", "nobody"], ["logs", "nobody"], ["stop", "nobody"]] {
            #expect(try await cmk(command).status == 6, "\(command)")
        }
        let inspect = try await cmk(["inspect", "nobody", "--json"])
        #expect(try object(inspect)["code"] as? String == "unknown-instance")
    }
}
}
