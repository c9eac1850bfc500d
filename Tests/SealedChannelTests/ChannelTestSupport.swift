import Attestation
import AttestationPolicy
import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import PlatformSimulator
import SealedChannelAttestation
import Testing

@testable import SealedChannel

/// A simulated SEV-SNP platform for the whole test process (its RSA-4096 roots take seconds), in a temporary folder
/// removed at exit.
enum SimulatedChannelPlatform {
    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-channel-\(UUID().uuidString)")
        atexit { try? FileManager.default.removeItem(at: SimulatedChannelPlatform.root) }
        return url
    }()

    static let shared: Result<SimulatedAMDSecureProcessor, any Error> = Result {
        try SimulatedAMDSecureProcessor(directory: root.appendingPathComponent("state/simulated/amd"))
    }

    static func processor() throws -> SimulatedAMDSecureProcessor { try shared.get() }

    static func trustAnchors() throws -> TrustAnchorStore {
        try TrustAnchorStore(
            directory: SharedVectors.attestationDirectory, simulated: root.appendingPathComponent("state/simulated/amd")
        )
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func kernel() throws -> [UInt8] {
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("vmlinuz") },
            "the guest kernel is missing from \(boot.path); run scripts/setup")
        return try bytes(boot.appendingPathComponent(name).path)
    }

    /// Launches a child with `manifest` measured into HOST_DATA: Debian's OVMF, the cached guest kernel, the
    /// measurement vectors' initrd, and `cmdline` (a different command line is a different measurement).
    static func launch(
        manifest: [UInt8], cmdline: String = "console=ttyS0 root=/dev/vda1 ro"
    ) throws -> SimulatedSNPLaunch {
        let inputs = SimulatedSNPLaunch.Inputs(
            firmware: try bytes("/usr/share/ovmf/OVMF.fd"), kernel: try kernel(),
            initrd: try SharedVectors.bytes("snp-measure/initrd.cpio"), cmdline: cmdline, vcpus: 2,
            vcpuType: "EPYC-Genoa", guestPolicy: 0x30000, hostData: Array(SHA256.hash(data: manifest)))
        return try processor().launch(inputs)
    }
}

/// An instance manifest in the coordinator's canonical form (sorted keys, no whitespace), with the fields a channel
/// reads: the name and the peers it may talk to.
func manifest(name: String, peers: [String], launchID: String = UUID().uuidString.lowercased()) -> [UInt8] {
    let peerList = peers.map { "\"\($0)\"" }.joined(separator: ",")
    return Array(
        #"{"channelPeers":[\#(peerList)],"formatVersion":1,"launchID":"\#(launchID)","name":"\#(name)","platform":"simulated-sev-snp"}"#
            .utf8)
}

/// A child's evidence source on the simulated platform: asks its launch for a report carrying the binding's
/// REPORT_DATA, exactly as cmk-guest asks the platform port. `override` lets a test present other evidence.
struct SimulatedSNPAttester: ChannelAttester {
    let launch: SimulatedSNPLaunch
    let manifest: [UInt8]
    /// Records every binding asked for, so a test can replay old evidence.
    let log: BindingLog?
    let replay: [UInt8]?

    init(launch: SimulatedSNPLaunch, manifest: [UInt8], log: BindingLog? = nil, replay: [UInt8]? = nil) {
        self.launch = launch
        self.manifest = manifest
        self.log = log
        self.replay = replay
    }

    func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] {
        if let replay { return replay }
        do {
            let report = try launch.attestationReport(reportData: binding.reportData, vmpl: 0)
            let evidence = ChannelEvidence(
                kind: .sevSNP, report: report, auxiliary: launch.certificateTable, manifest: manifest
            ).encoded()
            log?.record(evidence)
            return evidence
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "the simulated platform refused: \(error)")
        }
    }
}

final class BindingLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [[UInt8]] = []
    func record(_ evidence: [UInt8]) { lock.withLock { items.append(evidence) } }
    var evidence: [[UInt8]] { lock.withLock { items } }
}

/// The development policy plus a pinned measurement: admits exactly the launch it names, on the simulated root.
func peerPolicy(measurement: [UInt8]) throws -> Policy {
    try PolicyLoader().load(
        text: """
            id: channel-peer
            version: 1
            description: A channel peer on the simulated platform, pinned to one measurement.
            evidence: sev-snp
            trust:
              roots: [simulated-amd]
              crl: soft
            freshness:
              report-data: nonce-and-key
            sev-snp:
              measurement:
                allow: [\(Hex.encode(measurement))]
              guest-policy:
                debug: forbidden
                migration-agent: forbidden
              host-data: manifest
            """)
}

/// Two attested children and their channel: names, manifests, launches, attesters and verifiers.
struct AttestedPair {
    let descriptor: ChannelDescriptor
    let initiatorManifest: [UInt8]
    let responderManifest: [UInt8]
    let initiatorLaunch: SimulatedSNPLaunch
    let responderLaunch: SimulatedSNPLaunch
    let appraiser: EvidenceAppraiser

    static let cmdline = "console=ttyS0 root=/dev/vda1 ro"

    init(channelID: String = "chan-\(UUID().uuidString.prefix(8))", limits: RecordLimits = .standard) throws {
        descriptor = try ChannelDescriptor(channelID: channelID, initiator: "web-1", responder: "db-1", limits: limits)
        initiatorManifest = manifest(name: "web-1", peers: ["db-1"])
        responderManifest = manifest(name: "db-1", peers: ["web-1"])
        initiatorLaunch = try SimulatedChannelPlatform.launch(manifest: initiatorManifest)
        responderLaunch = try SimulatedChannelPlatform.launch(manifest: responderManifest)
        appraiser = EvidenceAppraiser(trustAnchors: try SimulatedChannelPlatform.trustAnchors())
    }

    func verifier(expecting instance: String, measurement: [UInt8]? = nil) throws -> AppraisingPeerVerifier {
        let pinned = measurement ?? initiatorLaunch.measurement
        return AppraisingPeerVerifier(
            appraiser: appraiser,
            expectation: PeerExpectation(instance: instance, policy: try peerPolicy(measurement: pinned)))
    }

    func initiator(
        attester: (any ChannelAttester)? = nil, verifier: (any PeerEvidenceVerifier)? = nil
    ) throws -> ChannelInitiator {
        try ChannelInitiator(
            descriptor: descriptor, staticKey: NoiseKeyPair(),
            attester: attester ?? SimulatedSNPAttester(launch: initiatorLaunch, manifest: initiatorManifest),
            verifier: verifier ?? self.verifier(expecting: "db-1"))
    }

    func responder(
        attester: (any ChannelAttester)? = nil, verifier: (any PeerEvidenceVerifier)? = nil
    ) throws -> ChannelResponder {
        try ChannelResponder(
            descriptor: descriptor, staticKey: NoiseKeyPair(),
            attester: attester ?? SimulatedSNPAttester(launch: responderLaunch, manifest: responderManifest),
            verifier: verifier ?? self.verifier(expecting: "web-1"))
    }
}

/// Record-layer tests need two ends with real Split() keys, not evidence: a plain Noise XX handshake, then the
/// endpoints built over its transport keys.
/// The transport keys of a completed Noise XX handshake (fresh static keys, no payloads) for `descriptor`:
/// the initiator's, then the responder's.
func handshakeTransport(
    _ descriptor: ChannelDescriptor
) throws -> (initiator: NoiseTransportKeys, responder: NoiseTransportKeys) {
    var initiator = try NoiseHandshakeState(
        .cmkChannel, initiator: true, prologue: descriptor.prologue, staticKey: NoiseKeyPair())
    var responder = try NoiseHandshakeState(
        .cmkChannel, initiator: false, prologue: descriptor.prologue, staticKey: NoiseKeyPair())
    _ = try responder.readMessage(try initiator.writeMessage(payload: []).message)
    _ = try initiator.readMessage(try responder.writeMessage(payload: []).message)
    let (message3, initiatorKeys) = try initiator.writeMessage(payload: [])
    let read = try responder.readMessage(message3)
    return (try #require(initiatorKeys), try #require(read.transport))
}

func recordPair(
    channelID: String = "records", limits: RecordLimits = .standard
) throws -> (ChannelEndpoint, ChannelEndpoint) {
    let descriptor = try ChannelDescriptor(channelID: channelID, initiator: "a", responder: "b", limits: limits)
    let keys = try handshakeTransport(descriptor)
    let peer = VerifiedPeer(
        instance: "peer", evidenceType: "none", measurement: "", reportData: [], evidenceDigest: "", simulated: true)
    return (
        ChannelEndpoint(descriptor: descriptor, role: .initiator, peer: peer, transport: keys.initiator),
        ChannelEndpoint(descriptor: descriptor, role: .responder, peer: peer, transport: keys.responder)
    )
}

/// Expects `body` to throw a SealedChannelError with `code`; returns it.
@discardableResult
func expectChannelError<T>(
    _ code: SealedChannelError.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> T
) -> SealedChannelError? {
    do {
        _ = try body()
        Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as SealedChannelError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
