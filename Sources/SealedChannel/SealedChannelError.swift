/// Why a Noise handshake, a peer's evidence or a sealed channel failed: the SealedChannel module's one error.
///
/// The code names the kind of failure and is stable, so both ends of a channel can report it and a close record can
/// carry it (``Code/wireValue``); ``reason`` is a sentence a person can act on and never contains key material.
public struct SealedChannelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases never break a caller's `switch`.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        /// The byte a close record carries for this code (0 for codes that never travel).
        public let wireValue: UInt8

        public init(_ name: String, wireValue: UInt8 = 0) {
            self.name = name
            self.wireValue = wireValue
        }

        public var description: String { name }

        // MARK: Noise

        /// A handshake message is shorter than its tokens need, longer than 65535 bytes, or arrives out of turn.
        public static let handshakeMalformed = Code("handshake-malformed", wireValue: 0x01)
        /// A handshake ciphertext (a static key or a payload) did not authenticate: it was altered, or the peer does
        /// not hold the keys it claims, or the two sides disagree on the prologue.
        public static let handshakeAuthentication = Code("handshake-authentication", wireValue: 0x02)
        /// A Diffie-Hellman step failed (a low-order public key).
        public static let keyAgreement = Code("key-agreement", wireValue: 0x03)
        /// A handshake or channel method was called in the wrong state (after completion, after a failure ...).
        public static let invalidState = Code("invalid-state", wireValue: 0x04)
        /// A message is larger than Noise allows (65535 bytes) or than the channel's frame limit.
        public static let messageTooLarge = Code("message-too-large", wireValue: 0x05)
        /// A cipher state's 64-bit nonce reached 2^64-1, which Noise reserves.
        public static let nonceExhausted = Code("nonce-exhausted", wireValue: 0x06)
        /// An unsupported Noise protocol name, pattern or parameter.
        public static let unsupported = Code("unsupported", wireValue: 0x07)

        // MARK: The attested handshake

        /// The local evidence could not be produced (the platform did not answer).
        public static let evidenceUnavailable = Code("evidence-unavailable", wireValue: 0x10)
        /// The peer's handshake payload or evidence cannot be parsed.
        public static let peerEvidenceMalformed = Code("peer-evidence-malformed", wireValue: 0x11)
        /// The peer's evidence does not verify: a bad signature, an untrusted root, a broken chain.
        public static let peerEvidenceInvalid = Code("peer-evidence-invalid", wireValue: 0x12)
        /// The peer's REPORT_DATA is not bound to this handshake's hash and the peer's static key: evidence replayed
        /// from another session, or made for another key.
        public static let peerBindingMismatch = Code("peer-binding-mismatch", wireValue: 0x13)
        /// The peer is another instance than the one this side expects (its manifest names someone else, or its
        /// HOST_DATA / MRCONFIGID is not the digest of the manifest it presented).
        public static let peerWrongInstance = Code("peer-wrong-instance", wireValue: 0x14)
        /// The peer's evidence verifies but the policy for the peer rejects it (measurement, TCB, debug ...).
        public static let peerPolicyRejected = Code("peer-policy-rejected", wireValue: 0x15)
        /// The peer's manifest does not allow a channel with this side.
        public static let peerNotPermitted = Code("peer-not-permitted", wireValue: 0x16)
        /// The peer's launch measurement (SEV-SNP MEASUREMENT, TDX MRTD) is not one this side's manifest pins for it.
        public static let peerMeasurementMismatch = Code("peer-measurement-mismatch", wireValue: 0x17)

        // MARK: Records

        /// A frame's length prefix is outside the limits (shorter than a tag and a type, longer than the maximum).
        public static let frameLength = Code("frame-length", wireValue: 0x20)
        /// The stream ended inside a frame.
        public static let frameTruncated = Code("frame-truncated", wireValue: 0x21)
        /// A record did not authenticate under the expected key, counter, channel and direction: it was altered,
        /// replayed, reordered, dropped before, or spliced from another channel or session.
        public static let recordAuthentication = Code("record-authentication", wireValue: 0x22)
        /// A record authenticated but its content is not a record this version knows.
        public static let recordMalformed = Code("record-malformed", wireValue: 0x23)
        /// A frame arrived after the peer's close record.
        public static let recordAfterClose = Code("record-after-close", wireValue: 0x24)
        /// The channel is closed (by either side, or by an earlier failure); nothing more can be sent or received.
        public static let channelClosed = Code("channel-closed", wireValue: 0x25)
        /// The peer tore the channel down and said why (``SealedChannelError/peerCode``).
        public static let peerAborted = Code("peer-aborted", wireValue: 0x26)

        /// Every code that can travel in a close record, for decoding one.
        public static let transmittable: [Code] = [
            handshakeMalformed, handshakeAuthentication, keyAgreement, invalidState, messageTooLarge, nonceExhausted,
            unsupported, evidenceUnavailable, peerEvidenceMalformed, peerEvidenceInvalid, peerBindingMismatch,
            peerWrongInstance, peerPolicyRejected, peerNotPermitted, peerMeasurementMismatch, frameLength, frameTruncated,
            recordAuthentication, recordMalformed, recordAfterClose, channelClosed, peerAborted,
        ]

        /// The code a close record's byte names, or nil for a byte no version sends.
        public static func fromWire(_ value: UInt8) -> Code? { transmittable.first { $0.wireValue == value } }
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// For ``Code/peerAborted``: the code the peer reported.
    public let peerCode: Code?
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, peerCode: Code? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.peerCode = peerCode
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
