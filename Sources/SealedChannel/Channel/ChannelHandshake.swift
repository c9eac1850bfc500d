import BinaryFormat
import Crypto

/// The handshake payload of messages 2 and 3: `u8 version (1) ‖ u32be length ‖ evidence`, nothing after it.
/// Message 1's payload is empty: it travels in the clear, before any key.
enum HandshakePayload {
    static let version: UInt8 = 1

    static func encode(evidence: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [version]
        bytes.appendBigEndian(UInt32(evidence.count))
        return bytes + evidence
    }

    static func decode(_ bytes: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        do {
            var cursor = ByteCursor(bytes)
            let version = try cursor.readUInt8(field: "payload version")
            guard version == Self.version else {
                throw SealedChannelError(
                    .peerEvidenceMalformed, "handshake payload version \(version); this side speaks 1")
            }
            let length: UInt32 = try cursor.readBigEndian(field: "evidence length")
            let evidence = try cursor.readBytes(Int(length), field: "evidence")
            try cursor.expectEnd(field: "handshake payload")
            return evidence
        } catch let error as SealedChannelError {
            throw error
        } catch {
            throw SealedChannelError(.peerEvidenceMalformed, "the peer's handshake payload cannot be read: \(error)")
        }
    }
}

/// What both kinds of handshake party hold.
struct HandshakeParty: Sendable {
    let descriptor: ChannelDescriptor
    let role: ChannelRole
    let staticKey: NoiseKeyPair
    let attester: any ChannelAttester
    let verifier: any PeerEvidenceVerifier
    var noise: NoiseHandshakeState

    init(
        descriptor: ChannelDescriptor, role: ChannelRole, staticKey: NoiseKeyPair, attester: any ChannelAttester,
        verifier: any PeerEvidenceVerifier, noiseProtocol: NoiseProtocol, ephemeral: NoiseKeyPair?
    ) throws(SealedChannelError) {
        guard noiseProtocol.pattern == .xx else {
            throw SealedChannelError(.unsupported, "attested channels use the XX pattern (both sides present evidence)")
        }
        self.descriptor = descriptor
        self.role = role
        self.staticKey = staticKey
        self.attester = attester
        self.verifier = verifier
        noise = try NoiseHandshakeState(
            noiseProtocol, initiator: role == .initiator, prologue: descriptor.prologue, staticKey: staticKey,
            fixedEphemeralForTesting: ephemeral)
    }

    /// Writes this side's evidence message: tokens, then the evidence bound to `h` at that point.
    mutating func writeEvidenceMessage() throws(SealedChannelError) -> (
        message: [UInt8], transport: NoiseTransportKeys?
    ) {
        let hash = try noise.beginWrite()
        let binding = ChannelBinding(
            descriptor: descriptor, attesterRole: role, staticKey: staticKey.publicKey, handshakeHash: hash)
        let evidence: [UInt8]
        do {
            evidence = try attester.evidence(for: binding)
        } catch {
            throw SealedChannelError(
                .evidenceUnavailable, "this side's evidence could not be produced: \(error.reason)")
        }
        return try noise.finishWrite(payload: HandshakePayload.encode(evidence: evidence))
    }

    /// Reads the peer's evidence message and verifies the evidence against the binding this side computes itself.
    mutating func readEvidenceMessage(_ message: [UInt8]) throws(SealedChannelError) -> (VerifiedPeer, NoiseReadResult)
    {
        let read = try noise.readMessage(message)
        guard let remoteStatic = read.remoteStaticKey else {
            throw SealedChannelError(.handshakeMalformed, "the peer's message carried no static key")
        }
        let binding = ChannelBinding(
            descriptor: descriptor, attesterRole: role.peer, staticKey: remoteStatic,
            handshakeHash: read.hashBeforePayload)
        let evidence = try HandshakePayload.decode(read.payload)
        let peer = try verifier.verify(evidence: evidence, binding: binding)
        // The verifier has checked all of this; the channel checks the identity and binding again itself, so a
        // verifier that forgot cannot open a channel to the wrong party.
        guard peer.instance == binding.attesterName else {
            throw SealedChannelError(
                .peerWrongInstance, "the peer's evidence is from \(peer.instance), not \(binding.attesterName)")
        }
        guard binding.matches(reportData: peer.reportData) else {
            throw SealedChannelError(
                .peerBindingMismatch, "the peer's REPORT_DATA is not bound to this handshake and its static key")
        }
        return (peer, read)
    }
}

/// The initiating end of an attested channel: Noise XX, writing messages 1 and 3.
///
///     let m1 = try initiator.start()
///     let (m3, channel) = try initiator.finish(m2)   // verifies the responder's evidence first
public struct ChannelInitiator: Sendable {
    private var party: HandshakeParty
    private var started = false

    public init(
        descriptor: ChannelDescriptor, staticKey: NoiseKeyPair, attester: any ChannelAttester,
        verifier: any PeerEvidenceVerifier, noiseProtocol: NoiseProtocol = .cmkChannel,
        fixedEphemeralForTesting ephemeral: NoiseKeyPair? = nil
    ) throws(SealedChannelError) {
        party = try HandshakeParty(
            descriptor: descriptor, role: .initiator, staticKey: staticKey, attester: attester, verifier: verifier,
            noiseProtocol: noiseProtocol, ephemeral: ephemeral)
    }

    /// Message 1: `-> e` with an empty payload.
    public mutating func start() throws(SealedChannelError) -> [UInt8] {
        guard !started else { throw SealedChannelError(.invalidState, "the handshake has already started") }
        started = true
        return try party.noise.writeMessage(payload: []).message
    }

    /// Reads message 2 (`<- e, ee, s, es` + the responder's evidence), verifies the responder, and writes message 3
    /// (`-> s, se` + this side's evidence). Returns message 3 and the open channel.
    public mutating func finish(
        _ message2: [UInt8]
    ) throws(SealedChannelError) -> (message3: [UInt8], channel: ChannelEndpoint) {
        let (peer, _) = try party.readEvidenceMessage(message2)
        let (message3, transport) = try party.writeEvidenceMessage()
        guard let transport else { throw SealedChannelError(.invalidState, "the handshake did not complete") }
        return (
            message3, ChannelEndpoint(descriptor: party.descriptor, role: .initiator, peer: peer, transport: transport)
        )
    }
}

/// The responding end of an attested channel: Noise XX, writing message 2.
///
///     let m2 = try responder.respond(to: m1)
///     let channel = try responder.finish(m3)   // verifies the initiator's evidence
public struct ChannelResponder: Sendable {
    private var party: HandshakeParty

    public init(
        descriptor: ChannelDescriptor, staticKey: NoiseKeyPair, attester: any ChannelAttester,
        verifier: any PeerEvidenceVerifier, noiseProtocol: NoiseProtocol = .cmkChannel,
        fixedEphemeralForTesting ephemeral: NoiseKeyPair? = nil
    ) throws(SealedChannelError) {
        party = try HandshakeParty(
            descriptor: descriptor, role: .responder, staticKey: staticKey, attester: attester, verifier: verifier,
            noiseProtocol: noiseProtocol, ephemeral: ephemeral)
    }

    /// Reads message 1 (its payload must be empty) and writes message 2 with this side's evidence.
    public mutating func respond(to message1: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        let read = try party.noise.readMessage(message1)
        guard read.payload.isEmpty else {
            throw SealedChannelError(.handshakeMalformed, "message 1 carries a payload; it must be empty")
        }
        return try party.writeEvidenceMessage().message
    }

    /// Reads message 3, verifies the initiator, and returns the open channel.
    public mutating func finish(_ message3: [UInt8]) throws(SealedChannelError) -> ChannelEndpoint {
        let (peer, read) = try party.readEvidenceMessage(message3)
        guard let transport = read.transport else {
            throw SealedChannelError(.invalidState, "the handshake did not complete")
        }
        return ChannelEndpoint(descriptor: party.descriptor, role: .responder, peer: peer, transport: transport)
    }
}
