import BinaryFormat
import GuestProtocol

/// What one side's evidence must be bound to: this channel, this side's role and Noise static key, and the handshake
/// hash at the point where the evidence is encrypted into the handshake.
///
/// REPORT_DATA = SHA-512("cmk/report-data/v1" ‖ 0 ‖ u32be(len(nonce)) ‖ nonce ‖ static key) — the admission binding
/// of `GuestProtocol.ReportData`, so the policy rule `freshness.report-data: nonce-and-key` checks it unchanged — with
/// nonce = "cmk/channel-binding/v1" ‖ 0 ‖ role ‖ h. The handshake hash `h` already covers the protocol name, the
/// prologue (channel id, both names, record limits), both ephemeral keys and, for the responder, its encrypted static
/// key; the initiator's `h` also covers the responder's whole evidence payload. Fresh ephemerals make `h` unique per
/// session, so evidence made for one session never matches another session's binding.
public struct ChannelBinding: Sendable, Hashable {
    /// The nonce label: keeps channel evidence apart from admission evidence, whose nonce the coordinator chooses.
    public static let nonceLabel = Array("cmk/channel-binding/v1".utf8) + [0]

    public let descriptor: ChannelDescriptor
    /// The role of the party whose evidence this is.
    public let attesterRole: ChannelRole
    /// The attesting party's Noise static public key.
    public let staticKey: [UInt8]
    /// `h` just before the evidence payload is encrypted.
    public let handshakeHash: [UInt8]

    public init(descriptor: ChannelDescriptor, attesterRole: ChannelRole, staticKey: [UInt8], handshakeHash: [UInt8]) {
        self.descriptor = descriptor
        self.attesterRole = attesterRole
        self.staticKey = staticKey
        self.handshakeHash = handshakeHash
    }

    /// The instance whose evidence this must be.
    public var attesterName: String { descriptor.name(of: attesterRole) }

    /// label ‖ role ‖ h: the verifier's "nonce" for this evidence.
    public var nonce: [UInt8] { Self.nonceLabel + [attesterRole.wireValue] + handshakeHash }

    /// The 64 bytes of REPORT_DATA (SEV-SNP) or REPORTDATA (TDX) the evidence must carry.
    public var reportData: [UInt8] { ReportData.binding(nonce: nonce, publicKey: staticKey) }

    /// Whether `reportData` equals this binding's, compared in constant time.
    public func matches(reportData presented: [UInt8]) -> Bool { constantTimeEqual(reportData, presented) }
}

/// What a verified peer is: the identity the local side learnt from the peer's evidence, never from the host.
public struct VerifiedPeer: Sendable, Hashable {
    /// The instance name from the peer's manifest, which its HOST_DATA / MRCONFIGID carries the digest of.
    public let instance: String
    /// `sev-snp` or `tdx`.
    public let evidenceType: String
    /// The launch measurement (hex): SEV-SNP MEASUREMENT or TDX MRTD.
    public let measurement: String
    /// The REPORT_DATA the verified evidence carries.
    public let reportData: [UInt8]
    /// SHA-256 of the evidence bytes (hex), for the audit trail.
    public let evidenceDigest: String
    /// The evidence chains to a simulated root: it proves nothing about hardware.
    public let simulated: Bool

    public init(
        instance: String, evidenceType: String, measurement: String, reportData: [UInt8], evidenceDigest: String,
        simulated: Bool
    ) {
        self.instance = instance
        self.evidenceType = evidenceType
        self.measurement = measurement
        self.reportData = reportData
        self.evidenceDigest = evidenceDigest
        self.simulated = simulated
    }
}

/// Produces this side's evidence for a channel handshake: a report whose REPORT_DATA is `binding.reportData`,
/// encoded for the peer's ``PeerEvidenceVerifier``. Called once per handshake, in the middle of writing a message.
public protocol ChannelAttester: Sendable {
    func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8]
}

/// Verifies the peer's evidence on this side, against this side's own expectations of the peer: the evidence must
/// verify to a trusted root, satisfy the policy for the peer, name the expected instance, and carry
/// `binding.reportData`. Errors use the `peer-*` codes of ``SealedChannelError``.
public protocol PeerEvidenceVerifier: Sendable {
    func verify(evidence: [UInt8], binding: ChannelBinding) throws(SealedChannelError) -> VerifiedPeer
}
