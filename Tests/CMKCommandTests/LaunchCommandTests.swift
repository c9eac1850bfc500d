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
struct LaunchCommandTests: CommandSuite {
    let state: URL
    let environment: [String: String]

    init() throws {
        (state, environment) = Self.sandbox("cmk-launch-test")
    }

    func json(_ output: BuiltCMK.Output) throws -> [String: Any] { try object(output) }

    /// The development policy with a handover: one secret, one volume, one channel peer.
    func handoverPolicy() throws -> String {
        try developmentPolicy(
            "development-handover", "handover:\n  secrets: [vault:app/token]\n  volumes: [data]\n  channel-peers: [peer-a]\n")
    }

    /// Stores the secret and creates the volume the handover policy names; returns the secret's text.
    func provision() async throws -> String {
        let secret = "cmk-test-secret-\(UUID().uuidString)"
        let file = state.appendingPathComponent("secret.in")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try secret.write(to: file, atomically: true, encoding: .utf8)
        let put = try await cmk(["secret", "put", "vault:app/token", "--from-file", file.path])
        #expect(put.status == 0, "\(put.standardError)")
        #expect(!put.standardOutput.contains(secret))
        try FileManager.default.removeItem(at: file)
        let volume = try await cmk(["volume", "create", "data", "--size-mib", "16"])
        #expect(volume.status == 0, "\(volume.standardError)")
        return secret
    }

    @Test("an admitted child gets its secret sealed to its key, its vCPU pinned, its volume; stop gives the CPU back",
          .timeLimit(.minutes(6)))
    func admitThenStop() async throws {
        defer { RealBoots.stopSupervisors(state) }
        let secret = try await provision()
        let launch = try await cmk(["launch", "--name", "admit-1", "--policy", try handoverPolicy(), "--json"])
        #expect(launch.status == 0, "\(launch.standardError)")
        let outcome = try json(launch)
        let partition = try #require(outcome["partitionCPUs"] as? [Int])

        // The handover: the child proved (HMAC under the HPKE exporter key, over what it read back from
        // /run/cmk/secrets) that it holds exactly the sealed secret.
        let handover = try #require(outcome["handover"] as? [String: Any], "\(launch.standardOutput)")
        let secrets = handover["secrets"] as? [[String: Any]] ?? []
        #expect(secrets.count == 1 && secrets.first?["name"] as? String == "vault:app/token")
        #expect(secrets.first?["confirmed"] as? Bool == true)
        let sealedDigest = try #require(handover["sealedMessageSHA256"] as? String)
        #expect(sealedDigest.count == 64)
        // The volume: hot-plugged after admission, seen by the child as a 16 MiB virtio disk.
        let volumes = handover["volumes"] as? [[String: Any]] ?? []
        #expect(volumes.first?["name"] as? String == "data")
        #expect((volumes.first?["device"] as? String)?.hasPrefix("vd") == true)
        #expect((volumes.first?["sizeBytes"] as? Int) == 16 << 20)
        #expect(handover["channelPeers"] as? [String] == ["peer-a"])
        // The vCPU thread: pinned to the partition's CPU, as the kernel reports for QEMU's thread.
        let pins = handover["pins"] as? [[String: Any]] ?? []
        #expect(pins.count == 1)
        let pidText = try String(contentsOf: state.appendingPathComponent("instances/admit-1/qemu.pid"), encoding: .utf8)
        let qemuPID = try #require(Int(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        for pin in pins {
            let thread = try #require(pin["threadID"] as? Int)
            let status = try String(contentsOfFile: "/proc/\(qemuPID)/task/\(thread)/status", encoding: .utf8)
            let allowed = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }?.split(separator: "\t").last
            #expect(allowed.map(String.init) == "\(partition[0])", "\(status)")
        }
        for key in ["pinningSeconds", "sealingSeconds", "deliverySeconds", "volumeSeconds", "totalSeconds"] {
            #expect((handover[key] as? Double ?? -1) > 0, "\(key)")
        }
        print(String(
            format: "handover: pinning %.1f ms, sealing %.2f ms, delivery %.1f ms, volume attach %.2f s, total %.2f s",
            (handover["pinningSeconds"] as? Double ?? 0) * 1000, (handover["sealingSeconds"] as? Double ?? 0) * 1000,
            (handover["deliverySeconds"] as? Double ?? 0) * 1000, handover["volumeSeconds"] as? Double ?? 0,
            handover["totalSeconds"] as? Double ?? 0))

        // The secret's bytes are nowhere on the host side but in its own 0600 file: not in the supervisor's log, the
        // child's console, the audit log or the instance store. The audit log has the names and the digest.
        let folder = state.appendingPathComponent("instances")
        for file in [folder.appendingPathComponent("admit-1.log"), folder.appendingPathComponent("admit-1/serial.log"),
                     folder.appendingPathComponent("admit-1.outcome.json"), state.appendingPathComponent("audit.sqlite"),
                     state.appendingPathComponent("instances.sqlite")] {
            let bytes = (try? Data(contentsOf: file)) ?? Data()
            #expect(!bytes.isEmpty, "\(file.path)")
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "the secret is in \(file.path)")
        }
        let auditBytes = try Data(contentsOf: state.appendingPathComponent("audit.sqlite"))
        #expect(auditBytes.range(of: Data(sealedDigest.utf8)) != nil, "the audit log lacks the sealed message's digest")
        let serial = try String(contentsOf: folder.appendingPathComponent("admit-1/serial.log"), encoding: .utf8)
        #expect(serial.contains("secrets: 1 opened and written to /run/cmk/secrets"), "\(serial.suffix(2000))")

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

    @Test("the strict production policy rejects the simulated child, which gets nothing, is shut down and its partition returned",
          .timeLimit(.minutes(6)))
    func rejectAndQuarantine() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        // What the production policy would hand over exists: the rejection, not a missing secret, keeps it back.
        let file = state.appendingPathComponent("secret.in")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try "never-delivered".write(to: file, atomically: true, encoding: .utf8)
        #expect(try await cmk(["secret", "put", "vault:production/instance-identity", "--from-file", file.path]).status == 0)
        #expect(try await cmk(["volume", "create", "production-data", "--size-mib", "4"]).status == 0)
        let policy = SharedVectors.repositoryRoot.appendingPathComponent("policies/sev-snp-production.yaml").path
        let launch = try await cmk(["launch", "--name", "reject-1", "--policy", policy, "--json"])
        #expect(launch.status == 1)
        let outcome = try json(launch)
        #expect(outcome["verdict"] as? String == "reject")
        #expect(outcome["handover"] == nil)
        // Asked before it was shut down, the child reports an attestation but no secret file in /run/cmk/secrets (the
        // folder is listed by the agent itself), no volume and no handover.
        let guest = try #require(outcome["guestStatus"] as? [String: Any], "\(launch.standardOutput)")
        #expect(guest["attested"] as? Bool == true)
        #expect(guest["secretFiles"] as? [String] == [])
        #expect(guest["volumes"] as? [String] == [])
        #expect(guest["handoverReceived"] as? Bool == false)
        let failures = (outcome["failures"] as? [[String: Any]])?.compactMap { $0["rule"] as? String } ?? []
        #expect(failures.contains("trust.root"))
        #expect(try await cmk(["ps"]).standardOutput.contains("no instances"))
        let log = try await cmk(["audit", "log", "--verdict", "reject"])
        #expect(log.standardOutput.contains("reject-1: REJECT sev-snp SIMULATED policy sev-snp-production"))
    }

    @Test("a child launched with --vtpm boots with its own swtpm (EK certificate from the local CA) and OVMF measures into it; stop ends and deletes it",
          .timeLimit(.minutes(6)))
    func launchWithVTPM() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        defer { RealBoots.stopSupervisors(state) }
        let launch = try await cmk(["launch", "--name", "vtpm-1", "--vtpm", "--json"])
        #expect(launch.status == 0, "\(launch.standardOutput)\n\(launch.standardError)")
        #expect(try json(launch)["verdict"] as? String == "admit")
        let instances = state.appendingPathComponent("vtpm/instances")
        let folders = try FileManager.default.contentsOfDirectory(atPath: instances.path)
        #expect(folders.count == 1)
        let folder = instances.appendingPathComponent(try #require(folders.first))
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("tpm2-00.permall").path))
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("ek-rsa2048.crt").path))
        #expect(FileManager.default.fileExists(
            atPath: state.appendingPathComponent("vtpm/ca/swtpm-localca-rootca-cert.pem").path))
        // OVMF measured the boot into it: the kernel finds the firmware's TPM event log and the TIS device.
        let logs = try await cmk(["logs", "vtpm-1"])
        #expect(logs.standardOutput.contains("TPMEventLog="), "\(logs.standardOutput.suffix(3000))")
        #expect(logs.standardOutput.contains("2.0 TPM"))
        let stop = try await cmk(["stop", "vtpm-1"])
        #expect(stop.status == 0, "\(stop.standardError)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: instances.path)) ?? []).isEmpty)
    }

    @Test("an admitted child whose policy names a secret nobody stored is torn down as failed; the audit log says why",
          .timeLimit(.minutes(6)))
    func handoverFailsClosed() async throws {
        defer { RealBoots.stopSupervisors(state); try? FileManager.default.removeItem(at: state) }
        let launch = try await cmk(["launch", "--name", "missing-1", "--policy", try handoverPolicy(), "--json"])
        #expect(launch.status == 4, "exit 4: the launch failed (after the verdict, in the handover)")
        let outcome = try json(launch)
        #expect(outcome["state"] as? String == "failed")
        let actual = (outcome["failures"] as? [[String: Any]])?.first?["actual"] as? String ?? ""
        #expect(actual.contains("no secret vault:app/token") && actual.contains("cmk secret put"), "\(actual)")
        #expect(try await cmk(["ps"]).standardOutput.contains("no instances"))
        let audit = try Data(contentsOf: state.appendingPathComponent("audit.sqlite"))
        #expect(audit.range(of: Data("handover-failed".utf8)) != nil)
        #expect(try await cmk(["audit", "verify"]).status == 0)
    }
}
}
