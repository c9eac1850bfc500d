import CMKTesting
import Foundation
import Testing

/// Sealed channels for real: two simulated SEV-SNP children under QEMU (TCG) run the Noise handshake through their
/// supervisors' relay, each checking the other's evidence itself, exchange messages, and fail loudly when the relay
/// flips a bit; a third child whose peer's policy does not list it is refused. One pair of children serves every
/// check (a boot costs 12 to 17 s under TCG).
extension RealBoots {
@Suite("cmk channel between real children", .serialized)
struct ChannelCommandTests: CommandSuite {
    let state: URL
    let environment: [String: String]

    init() throws {
        (state, environment) = Self.sandbox("cmk-chan")
    }


    /// The development policy, handing over the given channel peers.
    func policy(_ name: String, peers: [String]) throws -> String {
        try developmentPolicy(name, "handover:\n  channel-peers: [\(peers.joined(separator: ", "))]\n")
    }

    func launch(_ name: String, peers: [String]) async throws {
        // The heartbeat is not this test's subject (InstanceWatchTests and the lifecycle tests cover it): on the CI
        // host, with other tests' children booting under TCG on the same 2 cores, a 700 ms answer timeout once
        // failed chan-a before the channel was opened. 5 s keeps a dead agent found within seconds.
        let launch = try await cmk([
            "launch", "--name", name, "--policy", try policy(name, peers: peers), "--allow-shared-cores",
            "--heartbeat-timeout", "5000",
        ])
        try #require(launch.status == 0, "\(launch.standardError)")
    }

    /// Everything the host wrote about channels, as text.
    func hostFiles() throws -> String {
        let folder = state.appendingPathComponent("channels")
        var text = ""
        for file in FileManager.default.subpaths(atPath: folder.path) ?? [] {
            if let data = FileManager.default.contents(atPath: folder.appendingPathComponent(file).path) {
                text += String(decoding: data, as: UTF8.self)
            }
        }
        return text
    }

    @Test(
        "two children verify each other through the real relay, exchange messages the host never sees in the clear, both report a flipped frame, and a peer not listed is refused",
        .timeLimit(.minutes(10)))
    func channelBetweenRealChildren() async throws {
        defer { RealBoots.stopSupervisors(state) }
        try await launch("chan-a", peers: ["chan-b"])
        try await launch("chan-b", peers: ["chan-a", "chan-c"])

        // The handshake: each child checks the other's report itself (same platform key, binding, manifest).
        let open = try await cmk(["channel", "open", "chan-a", "chan-b", "--name", "ab", "--json"])
        if open.status != 0 {
            // Say why an instance is not admitted (its failure reason is in `cmk ls`).
            let listed = try await cmk(["ls", "--json"])
            Issue.record("cmk channel open failed; cmk ls: \(listed.standardOutput)")
        }
        #expect(open.status == 0, "\(open.standardOutput)\n\(open.standardError)")
        let summary = try object(open)
        #expect(summary["state"] as? String == "open")
        for end in ["initiator", "responder"] {
            let detail = (summary[end] as? [String: Any])?["detail"] as? String ?? ""
            #expect(detail.contains("verified by this child"), "\(end): \(detail)")
            #expect(detail.contains("SIMULATED"), "\(end): \(detail)")
        }

        // Messages, both ways, echoed back unchanged; the plaintext appears nowhere the host writes.
        let marker = "cmk-plaintext-marker-\(UUID().uuidString)"
        let sendA = try await cmk(["channel", "send", "ab", marker, "--echo", "--count", "3", "--json"])
        #expect(sendA.status == 0, "\(sendA.standardOutput)\n\(sendA.standardError)")
        let echoed = try object(sendA)
        #expect(echoed["echoed"] as? Int == 3)
        #expect(echoed["changed"] as? Int == 0)
        let sendB = try await cmk(["channel", "send", "ab", marker, "--from", "chan-b", "--echo"])
        #expect(sendB.status == 0, "\(sendB.standardOutput)\n\(sendB.standardError)")

        let trace = try await cmk(["channel", "trace", "ab", "--json"])
        #expect(trace.status == 0)
        let frames = try #require(
            try JSONSerialization.jsonObject(with: Data(trace.standardOutput.utf8)) as? [[String: Any]])
        // 3 handshake messages, then 3 + 3 records from chan-a's messages and their echoes, 1 + 1 from chan-b's.
        #expect(frames.count == 11, "\(trace.standardOutput)")
        #expect(frames.prefix(3).map { $0["kind"] as? String } == ["handshake-1", "handshake-2", "handshake-3"])
        let markerHex = marker.utf8.map { String(format: "%02x", $0) }.joined()
        let files = try hostFiles()
        #expect(!files.contains(marker))
        #expect(!files.contains(markerHex))
        #expect(!trace.standardOutput.contains(markerHex))
        let ls = try await cmk(["channel", "ls", "--json"])
        let channels = try #require(try JSONSerialization.jsonObject(with: Data(ls.standardOutput.utf8)) as? [[String: Any]])
        let relayed = channels.first?["relayed"] as? [[String: Any]] ?? []
        #expect(relayed.map { $0["frames"] as? Int } == [6, 5], "\(ls.standardOutput)")

        // The relay flips one bit of the next frame: the receiver fails with record-authentication and sends an
        // authenticated abort; the sender reports the peer's abort. Both ends say why.
        let tamper = try await cmk(["channel", "tamper", "ab"])
        #expect(tamper.status == 0, "\(tamper.standardError)")
        let broken = try await cmk(["channel", "send", "ab", "after-tamper", "--echo", "--timeout", "60"])
        #expect(broken.status == 1, "\(broken.standardOutput)\n\(broken.standardError)")
        var after: [String: Any] = [:]
        for _ in 0..<300 {
            let ls = try await cmk(["channel", "ls", "--json"])
            after = (try JSONSerialization.jsonObject(with: Data(ls.standardOutput.utf8)) as? [[String: Any]])?.first ?? [:]
            let ends = ["initiator", "responder"].map { (after[$0] as? [String: Any])?["state"] as? String }
            if ends == ["failed", "failed"] { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(after["state"] as? String == "failed")
        let responderDetail = (after["responder"] as? [String: Any])?["detail"] as? String ?? ""
        let initiatorDetail = (after["initiator"] as? [String: Any])?["detail"] as? String ?? ""
        #expect(responderDetail.hasPrefix("record-authentication"), "\(responderDetail)")
        #expect(initiatorDetail.hasPrefix("peer-aborted"), "\(initiatorDetail)")
        #expect(initiatorDetail.contains("record-authentication"), "\(initiatorDetail)")
        #expect(after["tamperedFrames"] as? Int == 1)

        // chan-c's policy lists chan-b, but chan-a's does not list chan-c: refused by the host, and audited.
        try await launch("chan-c", peers: ["chan-a", "chan-b"])
        let refused = try await cmk(["channel", "open", "chan-c", "chan-a"])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("channel-refused"), "\(refused.standardError)")
        #expect(refused.standardError.contains("does not list chan-c"), "\(refused.standardError)")
        let audit = try await cmk(["audit", "log", "--json", "--limit", "50"])
        #expect(audit.standardOutput.contains("channel-refused"))
        #expect(audit.standardOutput.contains("channel-established"))
        // The allowed pair still opens a second, fresh channel.
        let again = try await cmk(["channel", "open", "chan-c", "chan-b", "--name", "cb"])
        #expect(again.status == 0, "\(again.standardOutput)\n\(again.standardError)")

        for name in ["chan-a", "chan-b", "chan-c"] {
            let stop = try await cmk(["stop", name])
            #expect(stop.status == 0, "\(stop.standardError)")
        }
    }
}
}
