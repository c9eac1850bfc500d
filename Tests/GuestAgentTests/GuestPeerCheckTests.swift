import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import PlatformSimulator
import SEVSNP
import SealedChannel
import Testing

@testable import GuestAgent

/// The simulated platforms these tests launch children on: one SEV-SNP processor (its RSA-4096 roots take seconds)
/// and two TDX modules (two platforms with their own PCK keys and roots), in a folder removed at exit.
enum PeerCheckPlatforms {
    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-peer-check-\(UUID().uuidString)")
        atexit { try? FileManager.default.removeItem(at: PeerCheckPlatforms.root) }
        return url
    }()

    static let snp: Result<SimulatedAMDSecureProcessor, any Error> = Result {
        try SimulatedAMDSecureProcessor(directory: root.appendingPathComponent("amd"))
    }
    static let tdx: Result<SimulatedTDXModule, any Error> = Result {
        try SimulatedTDXModule(directory: root.appendingPathComponent("intel"))
    }
    static let otherTDX: Result<SimulatedTDXModule, any Error> = Result {
        try SimulatedTDXModule(directory: root.appendingPathComponent("intel-other"))
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    static let kernel: Result<[UInt8], any Error> = Result {
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("vmlinuz") },
            "the guest kernel is missing from \(boot.path); run scripts/setup")
        return try bytes(boot.appendingPathComponent(name).path)
    }
    static let firmware: Result<[UInt8], any Error> = Result { try bytes("/usr/share/ovmf/OVMF.fd") }
}

/// A child's evidence provider over a simulated launch: what the platform port would answer, in process.
struct LaunchProvider: EvidenceProvider {
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

/// A simulated child: its manifest (bound into HOST_DATA / MRCONFIGID at launch), its provider, its measurement.
struct PeerCheckChild {
    let name: String
    let manifest: [UInt8]
    let provider: LaunchProvider
    let measurement: [UInt8]

    static func manifest(
        name: String, peers: [String], policyID: String = "peer-policy", pins: [String: [[UInt8]]] = [:],
        platform: String
    ) -> [UInt8] {
        let peerList = peers.map { "\"\($0)\"" }.joined(separator: ",")
        var pinText = ""
        if !pins.isEmpty {
            let entries = pins.sorted { $0.key < $1.key }.map { key, values in
                "\"\(key)\":[" + values.map { "\"\(Hex.encode($0))\"" }.joined(separator: ",") + "]"
            }
            pinText = ",\"peerMeasurements\":{" + entries.joined(separator: ",") + "}"
        }
        return Array(
            (#"{"channelPeers":[\#(peerList)],"formatVersion":1,"launchID":"\#(UUID().uuidString.lowercased())","#
                + #""name":"\#(name)"\#(pinText),"platform":"\#(platform)","policyID":"\#(policyID)"}"#).utf8)
    }

    /// A TD on `module`; `cmdline` changes MRTD? No: MRTD measures the firmware only, so a different kernel command
    /// line changes RTMRs, not MRTD. `manifest` goes into MRCONFIGID unless `configID` says otherwise.
    static func tdx(
        _ name: String, peers: [String], pins: [String: [[UInt8]]] = [:], module: SimulatedTDXModule? = nil,
        launchedWith configManifest: [UInt8]? = nil
    ) throws -> PeerCheckChild {
        let manifest = manifest(name: name, peers: peers, pins: pins, platform: "simulated-tdx")
        let module = try module ?? PeerCheckPlatforms.tdx.get()
        let launch = try module.launch(
            SimulatedTDXLaunch.Inputs(
                firmware: try PeerCheckPlatforms.firmware.get(), kernel: try PeerCheckPlatforms.kernel.get(),
                initrd: try SharedVectors.bytes("snp-measure/initrd.cpio"),
                cmdline: "console=ttyS0 root=/dev/vda1 ro cmk.platform=tdx", memoryMiB: 1024,
                mrConfigID: Array(SHA384.hash(data: configManifest ?? manifest))))
        let provider = LaunchProvider(name: "simulated-tdx") { reportData in
            Evidence(kind: .tdx, evidence: try launch.quote(reportData: reportData), auxiliary: launch.eventLog)
        }
        return PeerCheckChild(name: name, manifest: manifest, provider: provider, measurement: launch.mrTD)
    }

    static func snp(
        _ name: String, peers: [String], pins: [String: [[UInt8]]] = [:], cmdline: String = "console=ttyS0",
        table: (@Sendable ([UInt8]) -> [UInt8])? = nil
    ) throws -> PeerCheckChild {
        let manifest = manifest(name: name, peers: peers, pins: pins, platform: "simulated-sev-snp")
        let launch = try PeerCheckPlatforms.snp.get().launch(
            SimulatedSNPLaunch.Inputs(
                firmware: try PeerCheckPlatforms.firmware.get(), kernel: try PeerCheckPlatforms.kernel.get(),
                initrd: try SharedVectors.bytes("snp-measure/initrd.cpio"), cmdline: cmdline, vcpus: 2,
                vcpuType: "EPYC-Genoa", guestPolicy: 0x30000, hostData: Array(SHA256.hash(data: manifest))))
        let provider = LaunchProvider(name: "simulated-snp") { reportData in
            let certificates = launch.certificateTable
            return Evidence(
                kind: .sevSNP, evidence: try launch.attestationReport(reportData: reportData, vmpl: 0),
                auxiliary: table?(certificates) ?? certificates)
        }
        return PeerCheckChild(name: name, manifest: manifest, provider: provider, measurement: launch.measurement)
    }

    func identity() throws(SealedChannelError) -> GuestPlatformIdentity {
        try GuestPlatformIdentity.establish(provider: provider, manifest: manifest, instance: "unnamed")
    }
}

/// Presents a child's evidence with `alter` applied to the report or quote (a relay or a host that changes it).
struct AlteringAttester: ChannelAttester {
    let inner: GuestChannelAttester
    let alter: @Sendable ([UInt8]) -> [UInt8]

    func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] {
        let evidence = try ChannelEvidence(bytes: try inner.evidence(for: binding))
        return ChannelEvidence(
            kind: evidence.kind, report: alter(evidence.report), auxiliary: evidence.auxiliary,
            manifest: evidence.manifest
        ).encoded()
    }
}

/// Runs the attested handshake between two children, each checking the other with `GuestPeerVerifier`, exactly as
/// cmk-guest does; `responderAttester` replaces the responder's evidence.
func guestHandshake(
    _ initiator: PeerCheckChild, _ responder: PeerCheckChild,
    responderAttester: (any ChannelAttester)? = nil
) throws -> (ChannelEndpoint, ChannelEndpoint) {
    let descriptor = try ChannelDescriptor(channelID: "peer-check", initiator: initiator.name, responder: responder.name)
    var a = try ChannelInitiator(
        descriptor: descriptor, staticKey: NoiseKeyPair(),
        attester: GuestChannelAttester(provider: initiator.provider, manifest: initiator.manifest),
        verifier: GuestPeerVerifier(platform: try initiator.identity(), expectedPeer: responder.name))
    var b = try ChannelResponder(
        descriptor: descriptor, staticKey: NoiseKeyPair(),
        attester: responderAttester ?? GuestChannelAttester(provider: responder.provider, manifest: responder.manifest),
        verifier: GuestPeerVerifier(platform: try responder.identity(), expectedPeer: initiator.name))
    let message2 = try b.respond(to: try a.start())
    let (message3, aEnd) = try a.finish(message2)
    return (aEnd, try b.finish(message3))
}

func expectCode(
    _ code: SealedChannelError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> SealedChannelError? {
    do {
        try body()
        Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as SealedChannelError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite("The child's own peer check (GuestPeerVerifier) on real simulated evidence", .timeLimit(.minutes(5)))
struct GuestPeerCheckTests {
    @Test("two TDs on one simulated TDX module open a channel, each checking the other's quote in full")
    func tdxPair() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"])
            let (aEnd, bEnd) = try guestHandshake(a, b)
            #expect(aEnd.peer.instance == "td-b" && bEnd.peer.instance == "td-a")
            #expect(aEnd.peer.evidenceType == "tdx" && aEnd.peer.measurement == Hex.encode(b.measurement))
            #expect(aEnd.peer.simulated)
            let frame = try aEnd.seal(Array("over a TDX channel".utf8))
            guard case .data(let body) = try bEnd.open(frame: frame) else {
                Issue.record("the record did not open as data")
                return
            }
            #expect(body == Array("over a TDX channel".utf8))
        }
    }

    @Test("a TD on another TDX platform (another PCK key and root) is refused: peer-evidence-invalid")
    func tdxOtherPlatform() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"], module: try PeerCheckPlatforms.otherTDX.get())
            let error = expectCode(.peerEvidenceInvalid) { _ = try guestHandshake(a, b) }
            #expect(error?.reason.contains("root CA") == true)
        }
    }

    @Test("a TDX quote altered anywhere a signature covers is refused: peer-evidence-invalid, naming the link")
    func tdxAlteredQuote() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"])
            let attester = GuestChannelAttester(provider: b.provider, manifest: b.manifest)
            // Offsets: MRTD in the body (quote signature); the QE report's ISVSVN (its PCK signature); the QE report's
            // REPORTDATA (the attestation key binding); the QE report signature itself; the PCK chain's PEM.
            let body = 48
            let qeReport = 48 + 584 + 4 + 64 + 64 + 6
            let cases: [(offset: @Sendable (Int) -> Int, reason: String)] = [
                ({ _ in body + 136 }, "attestation key"),
                ({ _ in qeReport + 258 }, "PCK certificate's key"),
                ({ _ in qeReport + 330 }, "does not bind"),
                ({ _ in qeReport + 384 + 10 }, "PCK certificate's key"),
                ({ count in count - 200 }, "certificate"),
            ]
            for item in cases {
                let altering = AlteringAttester(inner: attester) { quote in
                    var quote = quote
                    var offset = item.offset(quote.count)
                    // In the PEM text, alter a base64 letter (not a line break).
                    while item.reason == "certificate",
                        !(quote[offset] >= UInt8(ascii: "b") && quote[offset] <= UInt8(ascii: "y"))
                    {
                        offset -= 1
                    }
                    quote[offset] ^= 0x01  // in the PEM, b…y stays a base64 letter
                    return quote
                }
                let error = expectCode(.peerEvidenceInvalid) { _ = try guestHandshake(a, b, responderAttester: altering) }
                #expect(error?.reason.contains(item.reason) == true, "\(String(describing: error))")
            }
        }
    }

    @Test("a TDX quote cut short is malformed, not invalid")
    func tdxTruncated() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"])
            let cut = AlteringAttester(inner: GuestChannelAttester(provider: b.provider, manifest: b.manifest)) {
                Array($0.prefix(700))
            }
            _ = expectCode(.peerEvidenceMalformed) { _ = try guestHandshake(a, b, responderAttester: cut) }
        }
    }

    @Test("a TD presenting a manifest it was not launched with is refused: MRCONFIGID, peer-wrong-instance")
    func tdxManifestNotMeasured() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let launchedAs = PeerCheckChild.manifest(name: "td-b", peers: [], platform: "simulated-tdx")
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"], launchedWith: launchedAs)
            // b's own identity check already fails (its MRCONFIGID is not its manifest's digest) ...
            _ = expectCode(.peerWrongInstance) { _ = try b.identity() }
            // ... and a, checking b's evidence, refuses it for the same reason.
            let descriptor = try ChannelDescriptor(channelID: "c", initiator: "td-a", responder: "td-b")
            var initiator = try ChannelInitiator(
                descriptor: descriptor, staticKey: NoiseKeyPair(),
                attester: GuestChannelAttester(provider: a.provider, manifest: a.manifest),
                verifier: GuestPeerVerifier(platform: try a.identity(), expectedPeer: "td-b"))
            var responder = try ChannelResponder(
                descriptor: descriptor, staticKey: NoiseKeyPair(),
                attester: GuestChannelAttester(provider: b.provider, manifest: b.manifest),
                verifier: GuestPeerVerifier(platform: try a.identity(), expectedPeer: "td-a"))
            let message2 = try responder.respond(to: try initiator.start())
            let error = expectCode(.peerWrongInstance) { _ = try initiator.finish(message2) }
            #expect(error?.reason.contains("MRCONFIGID") == true)
        }
    }

    @Test("a child's own TDX quote whose PCK chain is broken: it opens no channel (evidence-unavailable)")
    func tdxOwnChainBroken() async throws {
        try await CMKTesting.offPool {
            let good = try PeerCheckChild.tdx("td-a", peers: ["td-b"])
            let broken = LaunchProvider(name: "simulated-tdx") { reportData in
                var evidence = try good.provider.make(reportData)
                evidence.evidence[evidence.evidence.count - 300] ^= 0x01
                return evidence
            }
            let child = PeerCheckChild(name: "td-a", manifest: good.manifest, provider: broken, measurement: [])
            _ = expectCode(.evidenceUnavailable) { _ = try child.identity() }
        }
    }

    @Test("a TD and an SEV-SNP child cannot check each other: peer-evidence-invalid on either side")
    func crossPlatform() async throws {
        try await CMKTesting.offPool {
            let td = try PeerCheckChild.tdx("td-a", peers: ["snp-b"])
            let snp = try PeerCheckChild.snp("snp-b", peers: ["td-a"])
            let error = expectCode(.peerEvidenceInvalid) { _ = try guestHandshake(td, snp) }
            #expect(error?.reason.contains("own platform") == true)
        }
    }

    @Test("SEV-SNP children open a channel after checking ARK → ASK → VCEK; the peer's MEASUREMENT is reported")
    func snpPair() async throws {
        try await CMKTesting.offPool {
            let a = try PeerCheckChild.snp("snp-a", peers: ["snp-b"])
            let b = try PeerCheckChild.snp("snp-b", peers: ["snp-a"])
            let (aEnd, _) = try guestHandshake(a, b)
            #expect(aEnd.peer.evidenceType == "sev-snp" && aEnd.peer.measurement == Hex.encode(b.measurement))
            let ark = try PeerCheckPlatforms.snp.get().certificateTable.entries.first {
                $0.guid == SNPCertificateTable.GUID.ark
            }
            let root = try a.identity().root
            #expect(root == ark?.data)
        }
    }

    @Test("an SEV-SNP certificate table with a broken or missing link: the child opens no channel")
    func snpChainBroken() async throws {
        try await CMKTesting.offPool {
            func altered(_ change: @escaping @Sendable ([SNPCertificateTable.Entry]) -> [SNPCertificateTable.Entry])
                -> @Sendable ([UInt8]) -> [UInt8]
            {
                { bytes in SNPCertificateTable(entries: change((try! SNPCertificateTable(bytes: bytes)).entries)).encoded() }
            }
            func flipLast(_ guid: String) -> @Sendable ([SNPCertificateTable.Entry]) -> [SNPCertificateTable.Entry] {
                { entries in
                    entries.map { entry in
                        guard entry.guid == guid else { return entry }
                        var data = entry.data
                        data[data.count - 8] ^= 0x01  // inside the signature
                        return try! SNPCertificateTable.Entry(guid: entry.guid, data: data)
                    }
                }
            }
            let cases: [(@Sendable ([UInt8]) -> [UInt8], String)] = [
                (altered(flipLast(SNPCertificateTable.GUID.vcek)), "VCEK certificate is not signed by the ASK"),
                (altered(flipLast(SNPCertificateTable.GUID.ask)), "ASK certificate is not signed by the ARK"),
                (altered(flipLast(SNPCertificateTable.GUID.ark)), "ARK certificate is not self-signed"),
                (altered { $0.filter { $0.guid != SNPCertificateTable.GUID.ask } }, "no ASK"),
            ]
            for (table, reason) in cases {
                let child = try PeerCheckChild.snp("snp-a", peers: [], table: table)
                let error = expectCode(.evidenceUnavailable) { _ = try child.identity() }
                #expect(error?.reason.contains(reason) == true, "\(String(describing: error))")
            }
        }
    }

    @Test("a pinned peer measurement: the pinned TD opens, any other MRTD is refused (peer-measurement-mismatch)")
    func tdxPinned() async throws {
        try await CMKTesting.offPool {
            let b = try PeerCheckChild.tdx("td-b", peers: ["td-a"])
            let pinned = try PeerCheckChild.tdx("td-a", peers: ["td-b"], pins: ["td-b": [b.measurement]])
            let (aEnd, _) = try guestHandshake(pinned, b)
            #expect(aEnd.peer.measurement == Hex.encode(b.measurement))
            // Pinned by the peer's policy id rather than its name works the same.
            let byPolicy = try PeerCheckChild.tdx("td-a", peers: ["td-b"], pins: ["peer-policy": [b.measurement]])
            _ = try guestHandshake(byPolicy, b)
            let other = [UInt8](repeating: 0x5A, count: 48)
            let wrong = try PeerCheckChild.tdx("td-a", peers: ["td-b"], pins: ["td-b": [other]])
            let error = expectCode(.peerMeasurementMismatch) { _ = try guestHandshake(wrong, b) }
            #expect(error?.reason.contains("MRTD \(Hex.encode(b.measurement))") == true)
            // The responder refuses a pinned initiator too.
            let wrongResponder = try PeerCheckChild.tdx("td-b", peers: ["td-a"], pins: ["td-a": [other]])
            _ = expectCode(.peerMeasurementMismatch) {
                _ = try guestHandshake(try PeerCheckChild.tdx("td-a", peers: ["td-b"]), wrongResponder)
            }
        }
    }

    @Test("a pinned SEV-SNP MEASUREMENT: another command line (another measurement) is refused")
    func snpPinned() async throws {
        try await CMKTesting.offPool {
            let b = try PeerCheckChild.snp("snp-b", peers: ["snp-a"])
            let other = try PeerCheckChild.snp("snp-b", peers: ["snp-a"], cmdline: "console=ttyS0 quiet")
            #expect(b.measurement != other.measurement)
            let a = try PeerCheckChild.snp("snp-a", peers: ["snp-b"], pins: ["snp-b": [b.measurement]])
            _ = try guestHandshake(a, b)
            let error = expectCode(.peerMeasurementMismatch) { _ = try guestHandshake(a, other) }
            #expect(error?.reason.contains("MEASUREMENT") == true)
        }
    }

    @Test("peerMeasurements in a manifest must be an object of non-empty lists of 48-byte hex values")
    func malformedPins() throws {
        for bad in [
            #""peerMeasurements":[]"#, #""peerMeasurements":{"b":[]}"#, #""peerMeasurements":{"b":["abcd"]}"#,
            #""peerMeasurements":{"b":"\#(String(repeating: "00", count: 48))"}"#,
        ] {
            let text = #"{"channelPeers":["b"],"name":"a",\#(bad)}"#
            #expect(throws: ManifestJSONError.self, "\(bad)") { try ManifestIdentity(json: Array(text.utf8)) }
        }
        let good = #"{"channelPeers":["b"],"name":"a","peerMeasurements":{"b":["\#(String(repeating: "ab", count: 48))"]}}"#
        let identity = try ManifestIdentity(json: Array(good.utf8))
        #expect(identity.peerMeasurements["b"] == [[UInt8](repeating: 0xAB, count: 48)])
    }
}
