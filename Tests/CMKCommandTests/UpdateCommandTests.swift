import CMKTesting
import Crypto
import Foundation
import Glibc
import Testing

/// `cmk update` for real: a child under QEMU (TCG, simulated SEV-SNP) serves the demo key-value workload through a
/// stable endpoint while a client increments a counter in a loop. An update whose successor fails attestation rolls
/// back with the old instance serving; an update to the realtime profile moves the state over the sealed channel and
/// switches the endpoint with zero failed requests and the counter continuing exactly where it was; that successor
/// boots another kernel image (`--kernel`) the update path pins by digest. One predecessor
/// boot serves both updates (a boot costs 12 to 17 s under TCG on a quiet host, several times that under load).
extension RealBoots {
@Suite("cmk update between real children", .serialized)
struct UpdateCommandTests: CommandSuite {
    let state: URL
    let environment: [String: String]

    static let commandTimeout: TimeInterval = 900

    init() throws {
        (state, environment) = Self.sandbox("cmk-update")
    }


    /// The development policy plus `extra` (appended: indented lines continue its sev-snp section).
    func policy(_ name: String, _ extra: String) throws -> String { try developmentPolicy(name, extra) }

    /// The backends the endpoint `kv` records in the state folder.
    func backends() throws -> [String] {
        let data = try Data(contentsOf: state.appendingPathComponent("endpoints/kv.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["backends"] as? [String] ?? []
    }

    /// Stops what a failed run left behind: endpoint processes (supervisors are stopped by RealBoots).
    func stopEndpoints() {
        let folder = state.appendingPathComponent("endpoints")
        for file in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where file.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: folder.appendingPathComponent(file).path),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let pid = object["pid"] as? Int {
                kill(Int32(pid), SIGTERM)
            }
        }
    }

    @Test(
        "an update whose successor fails attestation leaves the old instance serving; a good one moves the state over the sealed channel and switches the endpoint with zero failed requests",
        .timeLimit(.minutes(20)))
    func updateUnderLoad() async throws {
        defer {
            stopEndpoints()
            RealBoots.stopSupervisors(state)
        }
        let launch = try await cmk(["launch", "--name", "kv", "--profile", "general", "--allow-shared-cores", "--json"])
        try #require(launch.status == 0, "\(launch.standardError)")
        let created = try await cmk(["endpoint", "create", "kv", "--instance", "kv", "--json"])
        try #require(created.status == 0, "\(created.standardOutput)\n\(created.standardError)")
        let port = try #require(try object(created)["port"] as? Int)

        // State the successor must take over: 200 keys, a secret-looking marker, and a counter.
        let marker = "kv-plaintext-marker-\(UUID().uuidString.prefix(8))"
        let set = try await cmk(["endpoint", "call", "kv", "SET marker \(marker)"])
        #expect(set.standardOutput.hasPrefix("OK"), "\(set.standardOutput)\(set.standardError)")
        let fill = try await offPool { () -> Int in
            var failures = 0
            let client = LoopingClient(port: port)
            _ = client
            for i in 0..<200 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
                _ = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                let request = Array("SET key:\(i) value-\(i)-\(String(repeating: "v", count: 100))\n".utf8)
                _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var answer: [UInt8] = []
                var byte: UInt8 = 0
                while read(fd, &byte, 1) == 1, byte != 0x0A { answer.append(byte) }
                if answer != Array("OK".utf8) { failures += 1 }
                close(fd)
            }
            return failures
        }
        #expect(fill == 0)

        // 1. A successor that fails attestation (its policy pins a measurement nothing has): rolled back.
        let rejecting = try policy(
            "rejecting",
            "  measurement:\n    allow: [\(String(repeating: "0", count: 96))]\n"
                + "update:\n  from:\n    - profile: general\n      policy: development\n")
        let client1 = LoopingClient(port: port)
        client1.start()
        let refused = try await cmk(["update", "kv", "--profile", "general", "--policy", rejecting, "--json"])
        let result1 = client1.stop()
        #expect(refused.status == 1, "\(refused.standardOutput)\n\(refused.standardError)")
        let rolledBack = try object(refused)
        #expect(rolledBack["result"] as? String == "rolled-back")
        #expect(rolledBack["failedPhase"] as? String == "launch")
        #expect((rolledBack["error"] as? String ?? "").contains("not admitted"), "\(rolledBack)")
        #expect(result1.failures.isEmpty, "\(result1.failures.prefix(5))")
        #expect(result1.outOfOrder.isEmpty, "\(result1.outOfOrder.prefix(5))")
        #expect(try backends() == ["kv"])
        let count1 = try await cmk(["endpoint", "call", "kv", "COUNT"])
        #expect(count1.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "OK 202", "\(count1.standardOutput)")
        let ps1 = try await cmk(["ps", "--json"])
        #expect(!ps1.standardOutput.contains("\"kv.u1\"") || ps1.standardOutput.contains("stopped"), "\(ps1.standardOutput)")

        // 2. The good update, under load, to the realtime profile with another kernel image (--kernel): Debian's
        //    kernel with 4 KiB appended (another image and digest; the EFI stub still boots it). The policy's update
        //    path names that kernel's SHA-256, so only this kernel is allowed as the successor.
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let cached = try #require(
            ((try? FileManager.default.contentsOfDirectory(atPath: boot.path)) ?? []).filter { $0.hasPrefix("vmlinuz-") }.sorted().last)
        let newKernel = state.appendingPathComponent("vmlinuz-next")
        let kernelBytes = try Data(contentsOf: boot.appendingPathComponent(cached)) + Data(count: 4096)
        try kernelBytes.write(to: newKernel)
        let newKernelSHA256 = SHA256.hash(data: kernelBytes).map { String(format: "%02x", $0) }.joined()
        let upgrade = try policy(
            "upgrade",
            "update:\n  from:\n    - profile: general\n      policy: development\n  to:\n    - profile: realtime\n"
                + "      kernel-sha256: \(newKernelSHA256)\n")
        let client2 = LoopingClient(port: port)
        client2.start()
        try await Task.sleep(for: .seconds(2))
        let updated = try await cmk([
            "update", "kv", "--profile", "realtime", "--kernel", newKernel.path, "--vcpus", "1", "--policy", upgrade, "--json",
        ])
        try await Task.sleep(for: .seconds(2))
        let result2 = client2.stop()
        #expect(updated.status == 0, "\(updated.standardOutput)\n\(updated.standardError)")
        let outcome = try object(updated)
        #expect(outcome["result"] as? String == "updated", "\(outcome)")
        #expect(outcome["successor"] as? String == "kv.u1")
        #expect(outcome["successorProfile"] as? String == "realtime")
        #expect(outcome["successorKernelSHA256"] as? String == newKernelSHA256, "the successor booted --kernel's image")
        #expect(outcome["stateEntries"] as? Int == 202, "\(outcome)")
        #expect(result2.failures.isEmpty, "\(result2.failures.prefix(5))")
        #expect(result2.outOfOrder.isEmpty, "\(result2.outOfOrder.prefix(5))")
        #expect(result2.answers > 10)
        let phases = (outcome["phases"] as? [[String: Any]] ?? []).map {
            "\($0["phase"] as? String ?? "?")=\(String(format: "%.3f", $0["seconds"] as? Double ?? 0))s"
        }
        print(
            "UPDATE-FIGURES: phases \(phases.joined(separator: " ")); hold \(outcome["holdMs"] ?? "?") ms; "
                + "client longest gap \(String(format: "%.3f", result2.longestGap)) s over \(result2.answers) requests; "
                + "state \(outcome["stateBytes"] ?? "?") bytes in \(outcome["transferMicros"] ?? "?") µs; "
                + "rejected-update client longest gap \(String(format: "%.3f", result1.longestGap)) s")

        // The state is intact on the successor, the counter continued, and the host never wrote the marker.
        #expect(try backends() == ["kv.u1"])
        let get = try await cmk(["endpoint", "call", "kv", "GET key:199"])
        #expect(get.standardOutput.hasPrefix("OK value-199-"), "\(get.standardOutput)")
        let counter = try await cmk(["endpoint", "call", "kv", "GET counter"])
        #expect(counter.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "OK \(result2.last ?? -1)")
        var hostText = ""
        for sub in ["channels"] {
            let folder = state.appendingPathComponent(sub)
            for file in FileManager.default.subpaths(atPath: folder.path) ?? [] {
                if let data = FileManager.default.contents(atPath: folder.appendingPathComponent(file).path) {
                    hostText += String(decoding: data, as: UTF8.self)
                }
            }
        }
        #expect(!hostText.isEmpty)
        #expect(!hostText.contains(marker))
        #expect(!hostText.contains(marker.utf8.map { String(format: "%02x", $0) }.joined()))

        // The predecessor is stopped, its partition given back; every step is in the audit log.
        let ps = try await cmk(["ps", "--all", "--json"])
        let rows = (try? JSONSerialization.jsonObject(with: Data(ps.standardOutput.utf8)) as? [[String: Any]]) ?? []
        let old = rows.first { $0["name"] as? String == "kv" }
        #expect(old?["state"] as? String == "stopped", "\(ps.standardOutput)")
        let audit = try await cmk(["audit", "log", "--json", "--limit", "200"])
        for event in ["update-started", "update-launch", "update-channel", "update-transfer", "update-switch",
                      "update-retire", "update-completed", "update-rolled-back"] {
            #expect(audit.standardOutput.contains(event), "\(event)")
        }
        #expect(try await cmk(["audit", "verify"]).status == 0)

        let ls = try await cmk(["endpoint", "ls", "--json"])
        #expect(ls.standardOutput.contains("kv.u1"))
        #expect(try await cmk(["endpoint", "stop", "kv"]).status == 0)
        #expect(try await cmk(["stop", "kv.u1"]).status == 0)
    }
}
}
