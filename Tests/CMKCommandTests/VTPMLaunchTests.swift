import CMKTesting
import Crypto
import Foundation
import Testing

extension RealBoots {
/// vTPM measured boot end to end (docs/tpm-verification.md): children launched with `--vtpm` boot through OVMF,
/// which measures into their own swtpm; cmk-guest creates the AK, activates the coordinator's credential and quotes
/// PCRs 0–9 with the launch nonce; the coordinator verifies the quote against the TEE report that binds the AK and
/// appraises it with the policy's `tpm` rules. tpm2-tools check the same files independently.
@Suite("vTPM measured boot: cmk launch --vtpm with a tpm policy, booting for real", .serialized)
struct VTPMLaunchTests {
    let state: URL
    let environment: [String: String]

    init() throws {
        state = URL(fileURLWithPath: "/tmp/cmk-vtpm-launch-\(UUID().uuidString.prefix(8))")
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.path
        environment["CMK_IMAGES"] = state.appendingPathComponent("images").path
        self.environment = environment
    }

    func run(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) async throws -> BuiltCMK.Output {
        let environment = environment ?? self.environment
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try ExternalTool.run(executable, arguments, environment: environment, timeout: 900)
                })
            }
        }
    }

    func cmk(_ arguments: [String], environment: [String: String]? = nil) async throws -> BuiltCMK.Output {
        try await run(try BuiltCMK.executable(), arguments, environment: environment)
    }

    func json(_ output: BuiltCMK.Output) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any],
                     "\(output.standardOutput)\n\(output.standardError)")
    }

    /// The development policy with a `tpm` section (`extra` lines indented under it).
    func policy(_ name: String, _ extra: String) throws -> String {
        let development = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8)
        let url = state.appendingPathComponent("\(name).yaml")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try (development + "tpm:\n  ak-bound-to-tee: true\n  ak-bound-to-ek: true\n" + extra)
            .write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// The evidence files a launch wrote (`<instance>/vtpm/`), copied out before the instance is stopped.
    struct Files {
        let directory: URL
        var quote: String { directory.appendingPathComponent("quote.msg").path }
        var signature: String { directory.appendingPathComponent("quote.sig").path }
        var ak: String { directory.appendingPathComponent("ak.pub").path }
        var eventLog: String { directory.appendingPathComponent("eventlog.bin").path }
        func text(_ name: String) throws -> String {
            try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        }
        var nonce: String { (try? text("nonce.hex")) ?? "" }
        var boundKey: String { (try? text("bound-key.hex")) ?? "" }
        var reportData: String { (try? text("report-data.hex")) ?? "" }
    }

    func copyEvidence(of instance: String, to name: String) throws -> Files {
        let source = state.appendingPathComponent("instances/\(instance)/vtpm")
        let target = state.appendingPathComponent("evidence-\(name)")
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.copyItem(at: source, to: target)
        return Files(directory: target)
    }

    func verify(_ f: Files, quote: Files? = nil, nonce: String? = nil, eventLog: String? = nil) async throws -> BuiltCMK.Output {
        let q = quote ?? f
        return try await cmk([
            "evidence", "verify", "--tpm", q.quote, "--sig", q.signature, "--ak", q.ak, "--eventlog", eventLog ?? q.eventLog,
            "--nonce", nonce ?? q.nonce, "--report-data", f.reportData, "--bound-key", f.boundKey, "--json",
        ])
    }

    /// tpm2_eventlog's own replay of the log: PCR index → SHA-256 value.
    func tpm2EventlogReplay(_ path: String) async throws -> (status: Int32, pcrs: [Int: [UInt8]]) {
        let output = try await run(URL(fileURLWithPath: "/usr/bin/tpm2_eventlog"), [path])
        var pcrs: [Int: [UInt8]] = [:]
        var inSHA256 = false
        for line in output.standardOutput.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasSuffix(":") && !trimmed.contains(" ") { inSHA256 = trimmed == "sha256:"; continue }
            guard inSHA256, let colon = trimmed.firstIndex(of: ":"), let index = Int(trimmed[..<colon].trimmingCharacters(in: .whitespaces)) else {
                continue
            }
            var hex = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if hex.hasPrefix("0x") { hex.removeFirst(2) }
            if let bytes = Self.hex(hex), bytes.count == 32 { pcrs[index] = bytes }
        }
        return (output.status, pcrs)
    }

    static func hex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let byte = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// A guest-kernels folder with one more profile, `altered`: the general profile with the same kernel plus 4 KiB
    /// of zeros appended (a different PE image: another Authenticode digest; the EFI stub still boots it).
    func alteredKernelProfiles() throws -> URL {
        let fm = FileManager.default
        let root = SharedVectors.repositoryRoot
        let profiles = state.appendingPathComponent("guest-kernels")
        try? fm.removeItem(at: profiles)
        try fm.copyItem(at: root.appendingPathComponent("guest-kernels"), to: profiles)
        let boot = root.appendingPathComponent(".cache/guest-kernel/boot")
        let image = try #require(try fm.contentsOfDirectory(atPath: boot.path).filter { $0.hasPrefix("vmlinuz-") }.sorted().last)
        let release = String(image.dropFirst("vmlinuz-".count))
        let altered = state.appendingPathComponent("vmlinuz-altered")
        try (try Data(contentsOf: boot.appendingPathComponent(image)) + Data(count: 4096)).write(to: altered)
        let folder = profiles.appendingPathComponent("altered")
        try fm.copyItem(at: profiles.appendingPathComponent("general"), to: folder)
        let yaml = try String(contentsOf: folder.appendingPathComponent("profile.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "name: general", with: "name: altered")
            .replacingOccurrences(
                of: "  image: cache",
                with: "  image: \(altered.path)\n  modules: \(root.appendingPathComponent(".cache/guest-kernel/lib/modules/\(release)").path)")
        try yaml.write(to: folder.appendingPathComponent("profile.yaml"), atomically: true, encoding: .utf8)
        return profiles
    }

    @Test("a policy with a tpm section without --vtpm is a usage error before anything is reserved or booted")
    func tpmPolicyNeedsVTPM() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        let launch = try await cmk(["launch", "--name", "no-vtpm", "--policy", try policy("tpm", ""), "--json"])
        #expect(launch.status == 2, "\(launch.standardOutput)\n\(launch.standardError)")
        #expect((launch.standardOutput + launch.standardError).contains("--vtpm"))
        #expect(try await cmk(["ps"]).standardOutput.contains("no instances"))
    }

    @Test("a --vtpm child's quote verifies, its event log replays to its PCRs (tpm2_checkquote and tpm2_eventlog agree), a tpm policy admits it; another kernel fails the policy pinned to the first kernel; a replayed nonce, an AK not bound to the TEE report and an edited event log are rejected",
          .timeLimit(.minutes(20)))
    func measuredBootEndToEnd() async throws {
        defer { try? FileManager.default.removeItem(at: state) }
        defer { RealBoots.stopSupervisors(state) }

        // 1. Child A: admitted by a policy with a tpm section (AK bound to the TEE report and to the EK).
        let launch = try await cmk(["launch", "--name", "vtpm-a", "--vtpm", "--policy", try policy("tpm", ""), "--json"])
        #expect(launch.status == 0, "\(launch.standardOutput)\n\(launch.standardError)")
        let outcome = try json(launch)
        #expect(outcome["verdict"] as? String == "admit", "\(outcome["failures"] ?? "")")
        let a = try copyEvidence(of: "vtpm-a", to: "a")
        #expect(try await cmk(["stop", "vtpm-a"]).status == 0)

        // cmk's verdict on the files the launch wrote, with the TEE report's REPORT_DATA and the bound key.
        let verified = try await verify(a)
        #expect(verified.status == 0, "\(verified.standardOutput)\(verified.standardError)")
        let result = try #require(try json(verified)["result"] as? [String: Any])
        let claims = try #require(result["claims"] as? [String: Any])
        #expect(claims["boundToTEEReport"] as? Bool == true)
        let pcrValues = try #require(claims["pcrValues"] as? [String: String])
        let boot = try #require(claims["boot"] as? [String: Any])
        // The kernel: the last EFI application OVMF measured into PCR 4 (its Authenticode SHA-256).
        let applications = try #require(boot["bootApplications"] as? [[String: Any]], "\(boot)")
        let kernel = try #require(applications.last?["authenticodeSHA256"] as? String, "\(applications)")

        // Independent: tpm2_checkquote verifies the signature and nonce; tpm2_eventlog's replay equals cmk's PCR
        // values, and hashes to the pcrDigest the TPM signed (the last 32 bytes of TPMS_QUOTE_INFO).
        let checkquote = URL(fileURLWithPath: "/usr/bin/tpm2_checkquote")
        let checked = try await run(checkquote, ["-u", a.ak, "-m", a.quote, "-s", a.signature, "-g", "sha256", "-q", a.nonce])
        #expect(checked.status == 0, "\(checked.standardError)")
        let replay = try await tpm2EventlogReplay(a.eventLog)
        #expect(replay.status == 0)
        for pcr in 0...9 {
            let theirs = replay.pcrs[pcr] ?? [UInt8](repeating: 0, count: 32)
            #expect(Self.hex(pcrValues[String(pcr)] ?? "") == theirs, "PCR \(pcr)")
        }
        let composite = (0...9).flatMap { replay.pcrs[$0] ?? [UInt8](repeating: 0, count: 32) }
        let quoted = [UInt8](try Data(contentsOf: URL(fileURLWithPath: a.quote))).suffix(32)
        #expect(Array(SHA256.hash(data: composite)) == Array(quoted), "tpm2_eventlog's replay is not what the TPM quoted")

        // 2. A replayed nonce: the quote answers another request.
        let otherNonce = String(repeating: "ab", count: 32)
        let replayed = try await verify(a, nonce: otherNonce)
        #expect(replayed.status == 1)
        #expect(replayed.standardOutput.contains("tpm-nonce-mismatch"), "\(replayed.standardOutput)")
        #expect(try await run(checkquote, ["-u", a.ak, "-m", a.quote, "-s", a.signature, "-g", "sha256", "-q", otherNonce]).status != 0)

        // 3. An event log edited after the fact: one byte of the kernel's logged digest changed.
        var log = [UInt8](try Data(contentsOf: URL(fileURLWithPath: a.eventLog)))
        let kernelDigest = try #require(Self.hex(kernel))
        let at = try #require((0...(log.count - 32)).first { Array(log[$0..<$0 + 32]) == kernelDigest })
        log[at] ^= 0x01
        let edited = a.directory.appendingPathComponent("eventlog-edited.bin")
        try Data(log).write(to: edited)
        let editedResult = try await verify(a, eventLog: edited.path)
        #expect(editedResult.status == 1)
        #expect(editedResult.standardOutput.contains("tpm-pcr-digest-mismatch"), "\(editedResult.standardOutput)")
        let editedReplay = try await tpm2EventlogReplay(edited.path)
        #expect(Array(SHA256.hash(data: (0...9).flatMap { editedReplay.pcrs[$0] ?? [UInt8](repeating: 0, count: 32) })) != Array(quoted))

        // 4. Child B boots another kernel under a policy pinned to A's kernel: rejected by tpm.kernel.
        var alteredEnvironment = environment
        alteredEnvironment["CMK_GUEST_KERNELS"] = try alteredKernelProfiles().path
        let pinned = try policy("tpm-pinned", "  kernel: [\(kernel)]\n")
        let b = try await cmk(
            ["launch", "--name", "vtpm-b", "--profile", "altered", "--vtpm", "--policy", pinned, "--json"],
            environment: alteredEnvironment)
        #expect(b.status == 1, "\(b.standardOutput)\n\(b.standardError)")
        let rejected = try json(b)
        #expect(rejected["verdict"] as? String == "reject")
        let failed = (rejected["failures"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        #expect(failed == ["tpm.kernel"], "\(rejected["failures"] ?? "")")
        let bFiles = try copyEvidence(of: "vtpm-b", to: "b")
        _ = try await cmk(["stop", "vtpm-b"])

        // 5. B's quote is genuine, but its AK is not the one A's TEE report binds.
        let unbound = try await verify(a, quote: bFiles)
        #expect(unbound.status == 1)
        #expect(unbound.standardOutput.contains("tpm-ak-not-bound-to-report"), "\(unbound.standardOutput)")
        // B's own files verify (the rejection was the policy's, not the evidence's), with another kernel digest.
        let bVerified = try await verify(bFiles)
        #expect(bVerified.status == 0, "\(bVerified.standardOutput)")
        #expect(!bVerified.standardOutput.contains(kernel))
    }
}
}
