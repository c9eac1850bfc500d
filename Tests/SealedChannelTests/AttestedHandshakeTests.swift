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

/// Handshakes between two children on the simulated SEV-SNP platform, each carrying a genuine signed report whose
/// REPORT_DATA binds the handshake, verified by the other side against its own policy for the peer.
@Suite("Attested Noise XX handshakes with genuine simulated SEV-SNP evidence", .serialized)
struct AttestedHandshakeTests {
    /// Runs the three messages; returns both ends.
    static func handshake(
        _ initiator: inout ChannelInitiator, _ responder: inout ChannelResponder
    ) throws -> (
        ChannelEndpoint, ChannelEndpoint
    ) {
        let message1 = try initiator.start()
        let message2 = try responder.respond(to: message1)
        let (message3, initiatorEnd) = try initiator.finish(message2)
        let responderEnd = try responder.finish(message3)
        return (initiatorEnd, responderEnd)
    }

    @Test("two admitted children open a channel: each learns the other's name and measurement from its evidence")
    func opens() throws {
        let pair = try AttestedPair()
        var initiator = try pair.initiator()
        var responder = try pair.responder()
        let (a, b) = try Self.handshake(&initiator, &responder)
        #expect(a.peer.instance == "db-1")
        #expect(b.peer.instance == "web-1")
        #expect(a.peer.evidenceType == "sev-snp" && a.peer.simulated)
        #expect(a.peer.measurement == Hex.encode(pair.responderLaunch.measurement))
        #expect(b.peer.measurement == Hex.encode(pair.initiatorLaunch.measurement))
        #expect(a.handshakeHash == b.handshakeHash)
        #expect(try b.open(frame: try a.seal(Array("select 1".utf8))) == .data(Array("select 1".utf8)))
        #expect(try a.open(frame: try b.seal(Array("1".utf8))) == .data(Array("1".utf8)))
    }

    @Test("the host sees only ciphertext: no evidence, manifest or record plaintext appears in the handshake bytes")
    func hostSeesCiphertext() throws {
        let pair = try AttestedPair()
        var initiator = try pair.initiator()
        var responder = try pair.responder()
        let message1 = try initiator.start()
        let message2 = try responder.respond(to: message1)
        let (message3, a) = try initiator.finish(message2)
        let b = try responder.finish(message3)
        let secret = Array("the database password".utf8)
        let frame = try a.seal(secret)
        #expect(message1.count == 32)
        for needle in [Array("db-1".utf8), Array("web-1".utf8), Array(pair.responderLaunch.measurement.prefix(16))] {
            for bytes in [message2, message3] {
                #expect(!Self.contains(bytes, needle))
            }
        }
        #expect(!Self.contains(frame, Array(secret.prefix(8))))
        #expect(try b.open(frame: frame) == .data(secret))
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    @Test("evidence from another instance (its own valid manifest, same image) is rejected as the wrong instance")
    func otherInstance() throws {
        let pair = try AttestedPair()
        let otherManifest = manifest(name: "cache-1", peers: ["web-1"])
        let other = try SimulatedChannelPlatform.launch(manifest: otherManifest)
        var initiator = try pair.initiator()
        var responder = try pair.responder(attester: SimulatedSNPAttester(launch: other, manifest: otherManifest))
        let message2 = try responder.respond(to: try initiator.start())
        let error = expectChannelError(.peerWrongInstance) { try initiator.finish(message2) }
        #expect(error?.reason.contains("cache-1") == true)
    }

    @Test("a child that presents another manifest than the one it was launched with is the wrong instance")
    func manifestNotMeasured() throws {
        let pair = try AttestedPair()
        // The launch measured web-1's manifest digest; it claims to be db-1.
        var initiator = try pair.initiator()
        var responder = try pair.responder(
            attester: SimulatedSNPAttester(launch: pair.initiatorLaunch, manifest: pair.responderManifest))
        let message2 = try responder.respond(to: try initiator.start())
        let error = expectChannelError(.peerWrongInstance) { try initiator.finish(message2) }
        #expect(error?.reason.contains("snp.host-data") == true)
    }

    @Test("a peer with another measurement (another command line) is rejected by the policy")
    func wrongMeasurement() throws {
        let pair = try AttestedPair()
        let tampered = try SimulatedChannelPlatform.launch(
            manifest: pair.responderManifest, cmdline: AttestedPair.cmdline + " init=/bin/sh")
        #expect(tampered.measurement != pair.responderLaunch.measurement)
        var initiator = try pair.initiator()
        var responder = try pair.responder(
            attester: SimulatedSNPAttester(launch: tampered, manifest: pair.responderManifest))
        let message2 = try responder.respond(to: try initiator.start())
        let error = expectChannelError(.peerPolicyRejected) { try initiator.finish(message2) }
        #expect(error?.reason.contains("snp.measurement") == true)
    }

    @Test("evidence bound to another session's handshake hash is rejected, on either side")
    func replayedEvidence() throws {
        let pair = try AttestedPair()
        // Session 1 runs to completion; both sides' evidence is captured.
        let responderLog = BindingLog()
        let initiatorLog = BindingLog()
        var initiator1 = try pair.initiator(
            attester: SimulatedSNPAttester(
                launch: pair.initiatorLaunch, manifest: pair.initiatorManifest, log: initiatorLog))
        var responder1 = try pair.responder(
            attester: SimulatedSNPAttester(
                launch: pair.responderLaunch, manifest: pair.responderManifest, log: responderLog))
        _ = try Self.handshake(&initiator1, &responder1)
        let oldResponderEvidence = try #require(responderLog.evidence.first)
        let oldInitiatorEvidence = try #require(initiatorLog.evidence.first)

        // Session 2: a responder that replays session 1's genuine evidence.
        var initiator2 = try pair.initiator()
        var responder2 = try pair.responder(
            attester: SimulatedSNPAttester(
                launch: pair.responderLaunch, manifest: pair.responderManifest, replay: oldResponderEvidence))
        let message2 = try responder2.respond(to: try initiator2.start())
        expectChannelError(.peerBindingMismatch) { try initiator2.finish(message2) }

        // Session 3: an initiator that replays its session 1 evidence.
        var initiator3 = try pair.initiator(
            attester: SimulatedSNPAttester(
                launch: pair.initiatorLaunch, manifest: pair.initiatorManifest, replay: oldInitiatorEvidence))
        var responder3 = try pair.responder()
        let (message3, _) = try initiator3.finish(try responder3.respond(to: try initiator3.start()))
        expectChannelError(.peerBindingMismatch) { try responder3.finish(message3) }
    }

    @Test("evidence whose signature is broken does not verify")
    func brokenSignature() throws {
        let pair = try AttestedPair()
        struct Corrupting: ChannelAttester {
            let inner: SimulatedSNPAttester
            func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] {
                let good = try ChannelEvidence(bytes: try inner.evidence(for: binding))
                var report = good.report
                report[report.count - 100] ^= 0x01  // inside the ECDSA signature
                return ChannelEvidence(
                    kind: .sevSNP, report: report, auxiliary: good.auxiliary, manifest: good.manifest
                )
                .encoded()
            }
        }
        var initiator = try pair.initiator()
        var responder = try pair.responder(
            attester: Corrupting(
                inner: SimulatedSNPAttester(launch: pair.responderLaunch, manifest: pair.responderManifest)))
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.peerEvidenceInvalid) { try initiator.finish(message2) }
    }

    @Test("a peer whose manifest does not list this side is not permitted")
    func notPermitted() throws {
        let pair = try AttestedPair()
        let lonely = manifest(name: "db-1", peers: ["backup-1"])
        let launch = try SimulatedChannelPlatform.launch(manifest: lonely)
        var initiator = try pair.initiator()
        var responder = try pair.responder(attester: SimulatedSNPAttester(launch: launch, manifest: lonely))
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.peerNotPermitted) { try initiator.finish(message2) }
    }

    @Test("garbage in place of evidence is malformed, not a crash")
    func malformedEvidence() throws {
        let pair = try AttestedPair()
        struct Garbage: ChannelAttester {
            func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] {
                [1, 1, 0, 0, 0, 9, 1, 2]
            }
        }
        var initiator = try pair.initiator()
        var responder = try pair.responder(attester: Garbage())
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.peerEvidenceMalformed) { try initiator.finish(message2) }
    }

    @Test("a host that shows the two ends different channel descriptions breaks the handshake (prologue)")
    func prologueMismatch() throws {
        let pair = try AttestedPair(channelID: "chan-a")
        let other = try AttestedPair(channelID: "chan-b")
        var initiator = try pair.initiator()
        var responder = try ChannelResponder(
            descriptor: other.descriptor, staticKey: NoiseKeyPair(),
            attester: SimulatedSNPAttester(launch: pair.responderLaunch, manifest: pair.responderManifest),
            verifier: try pair.verifier(expecting: "web-1"))
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.handshakeAuthentication) { try initiator.finish(message2) }
    }

    @Test("two ends configured with other record limits fail the handshake instead of falling out of step later")
    func limitsMismatch() throws {
        let pair = try AttestedPair(channelID: "chan-limits")
        let other = try ChannelDescriptor(
            channelID: "chan-limits", initiator: "web-1", responder: "db-1",
            limits: try RecordLimits(rekeyAfterRecords: 10))
        var initiator = try pair.initiator()
        var responder = try ChannelResponder(
            descriptor: other, staticKey: NoiseKeyPair(),
            attester: SimulatedSNPAttester(launch: pair.responderLaunch, manifest: pair.responderManifest),
            verifier: try pair.verifier(expecting: "web-1"))
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.handshakeAuthentication) { try initiator.finish(message2) }
    }

    @Test("the attested handshake also runs over AES-GCM and SHA-512")
    func otherCipherSuite() throws {
        let pair = try AttestedPair()
        let suite = try NoiseProtocol(name: "Noise_XX_25519_AESGCM_SHA512")
        var initiator = try ChannelInitiator(
            descriptor: pair.descriptor, staticKey: NoiseKeyPair(),
            attester: SimulatedSNPAttester(launch: pair.initiatorLaunch, manifest: pair.initiatorManifest),
            verifier: try pair.verifier(expecting: "db-1"), noiseProtocol: suite)
        var responder = try ChannelResponder(
            descriptor: pair.descriptor, staticKey: NoiseKeyPair(),
            attester: SimulatedSNPAttester(launch: pair.responderLaunch, manifest: pair.responderManifest),
            verifier: try pair.verifier(expecting: "web-1"), noiseProtocol: suite)
        let (a, b) = try Self.handshake(&initiator, &responder)
        #expect(a.handshakeHash.count == 64)
        #expect(try b.open(frame: try a.seal([1, 2, 3])) == .data([1, 2, 3]))
        expectChannelError(.unsupported) {
            try ChannelInitiator(
                descriptor: pair.descriptor, staticKey: NoiseKeyPair(),
                attester: SimulatedSNPAttester(launch: pair.initiatorLaunch, manifest: pair.initiatorManifest),
                verifier: try pair.verifier(expecting: "db-1"),
                noiseProtocol: try NoiseProtocol(name: "Noise_NN_25519_ChaChaPoly_SHA256"))
        }
    }

    @Test("a peer policy that does not bind HOST_DATA to the manifest cannot vouch for the peer's name")
    func policyWithoutManifestBinding() throws {
        let pair = try AttestedPair()
        let loose = try PolicyLoader().load(
            text: """
                id: loose-peer
                version: 1
                description: Binds REPORT_DATA but not HOST_DATA.
                evidence: sev-snp
                trust:
                  roots: [simulated-amd]
                  crl: soft
                freshness:
                  report-data: nonce-and-key
                sev-snp:
                  measurement:
                    allow: [\(Hex.encode(pair.responderLaunch.measurement))]
                """)
        let verifier = AppraisingPeerVerifier(
            appraiser: pair.appraiser, expectation: PeerExpectation(instance: "db-1", policy: loose))
        var initiator = try pair.initiator(verifier: verifier)
        var responder = try pair.responder()
        let message2 = try responder.respond(to: try initiator.start())
        let error = expectChannelError(.peerPolicyRejected) { try initiator.finish(message2) }
        #expect(error?.reason.contains("host-data: manifest") == true)
    }

    @Test("a relaying host that forwards genuine evidence under its own static key is caught by the binding")
    func manInTheMiddle() throws {
        let pair = try AttestedPair()
        var initiator = try pair.initiator()
        var responder = try pair.responder()
        // The host runs its own Noise ends with its own keys towards each child and relays the children's evidence.
        var hostAsResponder = try NoiseHandshakeState(
            .cmkChannel, initiator: false, prologue: pair.descriptor.prologue, staticKey: NoiseKeyPair())
        var hostAsInitiator = try NoiseHandshakeState(
            .cmkChannel, initiator: true, prologue: pair.descriptor.prologue, staticKey: NoiseKeyPair())
        _ = try hostAsResponder.readMessage(try initiator.start())
        let realMessage2 = try responder.respond(to: try hostAsInitiator.writeMessage(payload: []).message)
        let relayed = try hostAsInitiator.readMessage(realMessage2)
        // The host now has the responder's evidence in the clear (XX does not hide the responder from an active
        // attacker) and forwards it under its own static key.
        let forged = try hostAsResponder.writeMessage(payload: relayed.payload).message
        expectChannelError(.peerBindingMismatch) { try initiator.finish(forged) }
    }

    @Test("a verifier for another peer name refuses the channel before verifying anything")
    func expectationNamesAnotherPeer() throws {
        let pair = try AttestedPair()
        var initiator = try pair.initiator(verifier: try pair.verifier(expecting: "queue-1"))
        var responder = try pair.responder()
        let message2 = try responder.respond(to: try initiator.start())
        expectChannelError(.peerWrongInstance) { try initiator.finish(message2) }
    }

    @Test("handshake calls out of turn, and malformed handshake messages, fail with typed errors")
    func handshakeOutOfTurn() throws {
        let pair = try AttestedPair()
        var initiator = try pair.initiator()
        _ = try initiator.start()
        expectChannelError(.invalidState) { try initiator.start() }
        var responder = try pair.responder()
        expectChannelError(.handshakeMalformed) { try responder.respond(to: [1, 2, 3]) }
        expectChannelError(.invalidState) { try responder.respond(to: [UInt8](repeating: 9, count: 32)) }
    }
}
