// channel-handshake: the whole attested handshake in process, as two children run it — Noise XX, each side's
// evidence made by the simulated platform for the handshake's binding, and each side's peer check by cmk-guest's own
// verifier (GuestChannelParty) — against the raw cryptography the handshake cannot avoid, measured in the same run:
//
//   SEV-SNP: 2 ECDSA P-384 signatures (the two reports) + 2 P-384 verifies (each side checks the other's report)
//            + 4 X25519 key generations (two ephemeral, two static) + 6 X25519 agreements (ee, es, se on each side).
//   TDX:     4 ECDSA P-256 signatures (quote and QE report, per side) + 4 P-256 verifies (quote and QE report, per
//            side) + the same X25519 work. The PCK chain is checked once per child, when it establishes its own
//            identity, and not per handshake (a peer presenting the same chain text reuses that check).
//
// The raw P-384 verify rate and a raw X25519 agreement rate are printed beside them.
import Crypto
import Foundation
import GuestAgent
import GuestProtocol
import PlatformSimulator
import SealedChannel

/// A child's evidence provider over a simulated launch, in process: what the platform port answers.
struct InProcessProvider: EvidenceProvider {
    let name: String
    let make: @Sendable ([UInt8]) throws -> Evidence

    func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        do {
            return try make(reportData)
        } catch {
            throw GuestAgentError(.firmware, "the simulated platform refused: \(error)")
        }
    }
}

func handshakeManifest(_ name: String, peer: String, platform: String) -> [UInt8] {
    Array(
        (#"{"channelPeers":["\#(peer)"],"formatVersion":1,"launchID":"\#(UUID().uuidString.lowercased())","#
            + #""name":"\#(name)","platform":"\#(platform)","policyID":"bench"}"#).utf8)
}

/// A simulated SEV-SNP child named `name` that lists `peer`: its manifest (HOST_DATA is its SHA-256) and an evidence
/// provider whose reports the simulated firmware signs for the binding asked.
func simulatedSNPChild(
    _ name: String, peer: String, amd: SimulatedAMDSecureProcessor, firmware: [UInt8], kernel: [UInt8]
) throws -> (manifest: [UInt8], provider: InProcessProvider) {
    let manifest = handshakeManifest(name, peer: peer, platform: "simulated-sev-snp")
    let launch = try amd.launch(
        SimulatedSNPLaunch.Inputs(
            firmware: firmware, kernel: kernel, cmdline: "console=ttyS0", vcpus: 2, vcpuType: "EPYC-Genoa",
            guestPolicy: 0x30000, hostData: Array(SHA256.hash(data: manifest))))
    let provider = InProcessProvider(name: "simulated-snp") { reportData in
        Evidence(
            kind: .sevSNP, evidence: try launch.attestationReport(reportData: reportData, vmpl: 0),
            auxiliary: launch.certificateTable)
    }
    return (manifest, provider)
}

@MainActor func benchmarkHandshake() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-bench-handshake-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: folder) }
    let firmware = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/usr/share/ovmf/OVMF.fd")))
    let boot = URL(fileURLWithPath: ".cache/guest-kernel/boot")
    guard let kernelName = try FileManager.default.contentsOfDirectory(atPath: boot.path).first(where: { $0.hasPrefix("vmlinuz") })
    else { throw GuestAgentError(.usage, "no guest kernel in .cache/guest-kernel/boot (run scripts/setup; run from the repository)") }
    let kernel = [UInt8](try Data(contentsOf: boot.appendingPathComponent(kernelName)))

    if !options.json { FileHandle.standardError.write(Data("generating the simulated platforms (RSA-4096 roots)...\n".utf8)) }
    let amd = try SimulatedAMDSecureProcessor(directory: folder.appendingPathComponent("amd"))
    let intel = try SimulatedTDXModule(directory: folder.appendingPathComponent("intel"))

    func snpChild(_ name: String, peer: String) throws -> GuestChannelParty {
        let child = try simulatedSNPChild(name, peer: peer, amd: amd, firmware: firmware, kernel: kernel)
        return try GuestChannelParty(provider: child.provider, manifest: child.manifest)
    }
    func tdxChild(_ name: String, peer: String) throws -> GuestChannelParty {
        let manifest = handshakeManifest(name, peer: peer, platform: "simulated-tdx")
        let launch = try intel.launch(
            SimulatedTDXLaunch.Inputs(
                firmware: firmware, kernel: kernel, cmdline: "console=ttyS0 cmk.platform=tdx", memoryMiB: 1024,
                mrConfigID: Array(SHA384.hash(data: manifest))))
        let provider = InProcessProvider(name: "simulated-tdx") { reportData in
            Evidence(kind: .tdx, evidence: try launch.quote(reportData: reportData), auxiliary: [])
        }
        return try GuestChannelParty(provider: provider, manifest: manifest)
    }
    func handshake(_ a: GuestChannelParty, _ b: GuestChannelParty) throws {
        let descriptor = try ChannelDescriptor(channelID: "bench", initiator: a.name, responder: b.name)
        var initiator = try ChannelInitiator(
            descriptor: descriptor, staticKey: NoiseKeyPair(), attester: a.attester, verifier: a.verifier(expecting: b.name))
        var responder = try ChannelResponder(
            descriptor: descriptor, staticKey: NoiseKeyPair(), attester: b.attester, verifier: b.verifier(expecting: a.name))
        let (message3, _) = try initiator.finish(try responder.respond(to: try initiator.start()))
        _ = try responder.finish(message3)
    }

    // The raw operations, on real-sized inputs: a 0x2A0-byte signed report region, a 632-byte signed quote region,
    // a 384-byte QE report.
    let p384 = P384.Signing.PrivateKey()
    let report = [UInt8](repeating: 0x11, count: 0x2A0)
    let p384Signature = try p384.signature(for: report)
    let p256 = P256.Signing.PrivateKey()
    let quoteRegion = [UInt8](repeating: 0x22, count: 632)
    let qeReport = [UInt8](repeating: 0x33, count: 384)
    let p256Signature = try p256.signature(for: quoteRegion)
    let p256QESignature = try p256.signature(for: qeReport)
    func x25519Work() throws {
        let keys = (0..<4).map { _ in Curve25519.KeyAgreement.PrivateKey() }
        for (a, b) in [(0, 1), (0, 3), (2, 1), (1, 0), (1, 2), (3, 0)] {
            _ = try keys[a].sharedSecretFromKeyAgreement(with: keys[b].publicKey)
        }
    }

    let x25519Peer = Curve25519.KeyAgreement.PrivateKey().publicKey
    let x25519Key = Curve25519.KeyAgreement.PrivateKey()
    let verifyRate = median((0..<options.rounds).map { _ in
        rate(seconds: options.seconds) { _ = p384.publicKey.isValidSignature(p384Signature, for: report) }
    })
    let agreementRate = try median((0..<options.rounds).map { _ in
        try rate(seconds: options.seconds) { _ = try x25519Key.sharedSecretFromKeyAgreement(with: x25519Peer) }
    })

    for kind in ["sev-snp", "tdx"] {
        let (a, b) = kind == "sev-snp"
            ? (try snpChild("bench-a", peer: "bench-b"), try snpChild("bench-b", peer: "bench-a"))
            : (try tdxChild("bench-a", peer: "bench-b"), try tdxChild("bench-b", peer: "bench-a"))
        try handshake(a, b)
        let (floor, handshakes) = try alternate(rounds: options.rounds, label: "handshake \(kind)", quiet: options.json, {
            try rate(seconds: options.seconds) {
                if kind == "sev-snp" {
                    for _ in 0..<2 {
                        _ = try p384.signature(for: report)
                        _ = p384.publicKey.isValidSignature(p384Signature, for: report)
                    }
                } else {
                    for _ in 0..<2 {
                        _ = try p256.signature(for: quoteRegion)
                        _ = try p256.signature(for: qeReport)
                        _ = p256.publicKey.isValidSignature(p256Signature, for: quoteRegion)
                        _ = p256.publicKey.isValidSignature(p256QESignature, for: qeReport)
                    }
                }
                try x25519Work()
            }
        }, {
            try rate(seconds: options.seconds) { try handshake(a, b) }
        })
        results.append([
            "benchmark": "channel-handshake-\(kind)",
            "baseline": kind == "sev-snp"
                ? "2 P-384 signs + 2 P-384 verifies + 4 X25519 keygens + 6 X25519 agreements"
                : "4 P-256 signs + 4 P-256 verifies + 4 X25519 keygens + 6 X25519 agreements",
            "baseline_per_second": floor, "cmk_per_second": handshakes, "ratio": handshakes / floor,
            "handshake_ms": 1000 / handshakes, "raw_p384_verify_per_second": verifyRate,
            "raw_x25519_agreement_per_second": agreementRate,
        ])
        if !options.json {
            print("Attested channel handshake (\(kind), simulated platform, in process, both sides), one core, median of \(options.rounds) rounds:")
            print(String(format: "  raw cryptographic floor       %8.1f /s   (baseline, same run)", floor))
            print(String(format: "  whole handshake               %8.1f /s   %.1f %% of the baseline, %.2f ms each", handshakes, handshakes / floor * 100, 1000 / handshakes))
            print(String(format: "  raw P-384 verify %8.0f /s, raw X25519 agreement %8.0f /s", verifyRate, agreementRate))
        }
    }
}
