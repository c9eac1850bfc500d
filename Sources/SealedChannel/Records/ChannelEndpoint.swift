import BinaryFormat
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Synchronization

/// A record received on a channel.
public enum ChannelRecord: Sendable, Hashable {
    /// Application data.
    case data([UInt8])
    /// The peer closed its direction in order; nothing follows it. The text is the peer's (untrusted) note.
    case closed(reason: String)
}

/// One end of an established sealed channel: the record layer over the keys of Noise's Split().
///
/// A frame is `u32be length ‖ type ‖ ChaChaPoly(k, n, ad, body)`: the record type (data or close) travels in clear
/// and is authenticated as the last byte of the associated data, so the cipher's input is the body alone. Each
/// direction has its own key (Split()) and its own 64-bit counter `n`, the Noise nonce, never sent: the receiver
/// expects exactly the next one. The associated data is
/// `"cmk/channel/record/v2" ‖ 0 ‖ u8 len ‖ channel id ‖ direction ‖ u64be n ‖ u32be length ‖ type`, so a frame
/// authenticates only in this channel, in this direction, at this position, at this length, as this type. A
/// replayed, dropped, reordered, truncated, retyped or spliced frame fails to authenticate at the first frame out of
/// place.
///
/// Every direction rekeys (Noise Rekey()) after the limits' record or byte budget, both ends counting the same
/// frames, so they stay in step without a message. `close(reason:)` sends an authenticated close; the first bad
/// frame tears the channel down for good, and ``abortFrame()`` then gives one authenticated close record carrying
/// the reason, so the other end can report it too. An end object is a class: a copied record state could seal two
/// frames under one nonce.
public final class ChannelEndpoint: Sendable {
    /// The associated data's label.
    public static let recordLabel = Array("cmk/channel/record/v2".utf8) + [0]
    /// The longest close reason sent.
    public static let maximumCloseReason = 1024

    enum RecordType: UInt8 {
        case data = 0x01
        case close = 0x02
    }

    public let descriptor: ChannelDescriptor
    public let role: ChannelRole
    /// The peer as its own evidence showed it, verified by this side.
    public let peer: VerifiedPeer
    /// The final handshake hash: the same on both ends, unique to this session (a channel-binding value).
    public let handshakeHash: [UInt8]
    private let state: Mutex<RecordState>

    init(descriptor: ChannelDescriptor, role: ChannelRole, peer: VerifiedPeer, transport: NoiseTransportKeys) {
        self.descriptor = descriptor
        self.role = role
        self.peer = peer
        self.handshakeHash = transport.handshakeHash
        state = Mutex(
            RecordState(
                sending: Direction(
                    cipher: transport.sending, role: role, encrypting: true,
                    associatedDataPrefix: Self.associatedDataPrefix(descriptor: descriptor, sender: role)),
                receiving: Direction(
                    cipher: transport.receiving, role: role.peer, encrypting: false,
                    associatedDataPrefix: Self.associatedDataPrefix(descriptor: descriptor, sender: role.peer)),
                decoder: SealedFrameDecoder(maximumCiphertext: descriptor.limits.maximumCiphertext)))
    }

    /// Seals `body` (at most `limits.maximumRecordBody` bytes) into one frame.
    public func seal(_ body: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        guard body.count <= descriptor.limits.maximumRecordBody else {
            throw SealedChannelError(
                .messageTooLarge,
                "a record body is at most \(descriptor.limits.maximumRecordBody) bytes; split \(body.count) bytes")
        }
        return try state.withLock { state throws(SealedChannelError) in
            try state.seal(.data, body, descriptor: descriptor)
        }
    }

    /// The frame that closes this side's direction in order. Nothing can be sealed after it; frames from the peer
    /// are still received until its own close.
    public func close(reason: String = "") throws(SealedChannelError) -> [UInt8] {
        try state.withLock { state throws(SealedChannelError) in
            let frame = try state.seal(.close, [0] + Self.clipped(reason), descriptor: descriptor)
            state.sendClosed = true
            state.sending.erase()
            return frame
        }
    }

    /// After a failure: one authenticated close record that carries the failure's code, so the peer can report why
    /// the channel went down. Nil when there is no failure, it was already sent, or this side can no longer seal.
    public func abortFrame() -> [UInt8]? {
        state.withLock { state in
            guard let failure = state.failure, !state.sendClosed, failure.code != .nonceExhausted else { return nil }
            let code =
                failure.code.wireValue == 0 ? SealedChannelError.Code.channelClosed.wireValue : failure.code.wireValue
            let frame = try? state.seal(
                .close, [code] + Self.clipped(failure.reason), descriptor: descriptor, ignoreFailure: true)
            state.sendClosed = true
            state.sending.erase()
            return frame
        }
    }

    /// Opens one whole frame (length prefix included, nothing after it). Use either this or ``receive(_:)`` with
    /// ``nextRecord()`` on one endpoint, not both: they share one stream decoder.
    public func open(frame: [UInt8]) throws(SealedChannelError) -> ChannelRecord {
        try state.withLock { state throws(SealedChannelError) in
            try state.guardReceiving()
            guard state.decoder.pendingByteCount == 0 else {
                throw state.fail(SealedChannelError(.invalidState, "open(frame:) while streamed bytes are pending"))
            }
            let payload: ArraySlice<UInt8>
            do throws(SealedChannelError) {
                payload = try SealedFrameDecoder.single(
                    frame, maximumCiphertext: descriptor.limits.maximumCiphertext)
            } catch {
                throw state.fail(error)
            }
            return try state.open(payload, descriptor: descriptor)
        }
    }

    /// Adds bytes from the stream; read records with ``nextRecord()``.
    public func receive(_ bytes: some Sequence<UInt8>) {
        let bytes = Array(bytes)
        state.withLock { state in
            // A torn-down channel reads nothing more, so it keeps nothing more.
            if state.failure == nil { state.decoder.append(bytes) }
        }
    }

    /// The next record from the bytes received so far, or nil until a whole frame has arrived.
    public func nextRecord() throws(SealedChannelError) -> ChannelRecord? {
        try state.withLock { state throws(SealedChannelError) in
            // After the peer's close, an empty stream is quiet; any byte after it is a frame after the close.
            if state.receiveClosed, state.failure == nil, state.decoder.pendingByteCount == 0 { return nil }
            try state.guardReceiving()
            let next: [UInt8]?
            do throws(SealedChannelError) {
                next = try state.decoder.next()
            } catch {
                throw state.fail(error)
            }
            guard let payload = next else { return nil }
            return try state.open(payload[...], descriptor: descriptor)
        }
    }

    /// The stream has ended. Fails, and tears the channel down, when it ended inside a frame or before the peer's
    /// close record (an attacker cut the end off).
    public func endOfStream() throws(SealedChannelError) {
        try state.withLock { state throws(SealedChannelError) in
            if state.receiveClosed || state.failure != nil { return }
            do throws(SealedChannelError) {
                try state.decoder.finish()
            } catch {
                throw state.fail(error)
            }
            throw state.fail(
                SealedChannelError(
                    .frameTruncated, "the stream ended before the peer's close record: its end was cut off"))
        }
    }

    /// Why the channel was torn down, if it was.
    public var failure: SealedChannelError? { state.withLock { $0.failure } }
    /// Whether the peer has closed its direction in order.
    public var peerClosed: Bool { state.withLock { $0.receiveClosed } }
    /// Whether this side has sent its close (or abort) record.
    public var closedForSending: Bool { state.withLock { $0.sendClosed } }
    /// How many times each direction has been rekeyed.
    public var rekeyCounts: (sending: Int, receiving: Int) {
        state.withLock { ($0.sending.epoch, $0.receiving.epoch) }
    }
    /// How many records each direction has carried.
    public var recordCounts: (sent: UInt64, received: UInt64) {
        state.withLock { ($0.sending.cipher.nonce, $0.receiving.cipher.nonce) }
    }

    static func clipped(_ reason: String) -> [UInt8] {
        var bytes = Array(reason.utf8.prefix(maximumCloseReason))
        while !bytes.isEmpty, String(validating: bytes, as: UTF8.self) == nil { bytes.removeLast() }
        return bytes
    }

    /// The associated data of record `counter` sent by `sender`: a frame of `length` bytes after its prefix (the type
    /// byte, the ciphertext and the tag) carrying a record of type `type`.
    public static func associatedData(
        descriptor: ChannelDescriptor, sender: ChannelRole, counter: UInt64, length: Int, type: UInt8
    ) -> [UInt8] {
        var ad = associatedDataPrefix(descriptor: descriptor, sender: sender)
        ad.appendBigEndian(counter)
        ad.appendBigEndian(UInt32(length))
        ad.append(type)
        return ad
    }

    /// The part of a record's associated data that is the same for every record of one direction: label, channel
    /// id and sender. The record layer feeds it, then the 13 bytes of counter, length and type from the stack, as
    /// two updates of one AAD (the bytes MACed are the same as
    /// ``associatedData(descriptor:sender:counter:length:type:)``'s).
    static func associatedDataPrefix(descriptor: ChannelDescriptor, sender: ChannelRole) -> [UInt8] {
        var prefix = recordLabel
        prefix.append(UInt8(descriptor.channelID.utf8.count))
        prefix += descriptor.channelID.utf8
        prefix.append(sender.wireValue)
        return prefix
    }
}

/// One direction's key, counter and rekey budget, and the OpenSSL context its records go through.
struct Direction: Sendable {
    var cipher: NoiseCipherState
    /// The role whose frames go this way.
    let role: ChannelRole
    /// Nil only when OpenSSL could not allocate a context: every record then fails with `unsupported`.
    let engine: RecordCipher?
    var recordsSinceRekey: UInt64 = 0
    var bytesSinceRekey: UInt64 = 0
    var epoch = 0

    /// Label ‖ channel id ‖ sender: the associated data every record of this direction starts with.
    let associatedDataPrefix: [UInt8]

    init(cipher: NoiseCipherState, role: ChannelRole, encrypting: Bool, associatedDataPrefix: [UInt8]) {
        self.cipher = cipher
        self.role = role
        self.associatedDataPrefix = associatedDataPrefix
        engine = RecordCipher(cipher.cipher, encrypting: encrypting)
    }

    /// Drops the key, and the key schedule OpenSSL derived from it: nothing is sealed or opened this way again.
    mutating func erase() {
        cipher.erase()
        engine?.cleanse()
    }

    func requireEngine() throws(SealedChannelError) -> RecordCipher {
        guard let engine else {
            throw SealedChannelError(.unsupported, "OpenSSL offers no \(cipher.cipher.rawValue) context for the records")
        }
        return engine
    }

    /// Counts one frame and rekeys when a budget is spent; both ends do the same for the same frames.
    mutating func account(frameLength: Int, limits: RecordLimits) throws(SealedChannelError) {
        recordsSinceRekey += 1
        bytesSinceRekey += UInt64(frameLength)
        if recordsSinceRekey >= limits.rekeyAfterRecords || bytesSinceRekey >= limits.rekeyAfterBytes {
            try cipher.rekey()
            recordsSinceRekey = 0
            bytesSinceRekey = 0
            epoch += 1
        }
    }
}

struct RecordState: Sendable {
    var sending: Direction
    var receiving: Direction
    var decoder: SealedFrameDecoder
    var sendClosed = false
    var receiveClosed = false
    var failure: SealedChannelError?

    init(sending: Direction, receiving: Direction, decoder: SealedFrameDecoder) {
        self.sending = sending
        self.receiving = receiving
        self.decoder = decoder
    }

    /// Records the first failure, drops both keys, and returns the error to throw.
    mutating func fail(_ error: SealedChannelError) -> SealedChannelError {
        if failure == nil { failure = error }
        receiving.erase()
        return error
    }

    mutating func guardReceiving() throws(SealedChannelError) {
        if let failure {
            throw SealedChannelError(.channelClosed, "the channel was torn down: \(failure.reason) [\(failure.code)]")
        }
        if receiveClosed {
            throw fail(SealedChannelError(.recordAfterClose, "a frame arrived after the peer's close record"))
        }
    }

    mutating func seal(
        _ type: ChannelEndpoint.RecordType, _ body: [UInt8], descriptor: ChannelDescriptor, ignoreFailure: Bool = false
    ) throws(SealedChannelError) -> [UInt8] {
        if let failure, !ignoreFailure {
            throw SealedChannelError(.channelClosed, "the channel was torn down: \(failure.reason) [\(failure.code)]")
        }
        guard !sendClosed else { throw SealedChannelError(.channelClosed, "this side has closed the channel") }
        let frame: [UInt8]
        do throws(SealedChannelError) {
            // The body is sealed straight into the frame (RecordCipher): no plaintext copy to make or wipe.
            frame = try sending.cipher.sealRecord(
                adPrefix: sending.associatedDataPrefix, type: type.rawValue, body: body,
                engine: try sending.requireEngine(), keyEpoch: sending.epoch)
            try sending.account(frameLength: frame.count - SealedFrameDecoder.lengthPrefixSize, limits: descriptor.limits)
        } catch {
            sendClosed = true
            sending.erase()
            throw fail(error)
        }
        return frame
    }

    mutating func open(
        _ payload: ArraySlice<UInt8>, descriptor: ChannelDescriptor
    ) throws(SealedChannelError) -> ChannelRecord {
        let counter = receiving.cipher.nonce
        var opened: (type: UInt8, body: [UInt8])
        do throws(SealedChannelError) {
            opened = try receiving.cipher.openRecord(
                adPrefix: receiving.associatedDataPrefix, payload: payload, engine: try receiving.requireEngine(),
                keyEpoch: receiving.epoch)
        } catch  where error.code == .handshakeAuthentication {
            throw fail(
                SealedChannelError(
                    .recordAuthentication,
                    "record \(counter) from the \(receiving.role) did not authenticate: altered, replayed, reordered, "
                        + "after a dropped frame, or from another channel or session"))
        } catch {
            throw fail(error)
        }
        do throws(SealedChannelError) {
            try receiving.account(frameLength: payload.count, limits: descriptor.limits)
        } catch {
            wipe(&opened.body)
            throw fail(error)
        }
        let typeByte = opened.type
        // A data record's body is returned as it came out of the cipher: no copy.
        if ChannelEndpoint.RecordType(rawValue: typeByte) == .data { return .data(opened.body) }
        // A close record's plaintext is wiped once read (no copy of it is made: a copy would escape the wipe).
        defer { wipe(&opened.body) }
        switch ChannelEndpoint.RecordType(rawValue: typeByte) {
        case .data?:
            return .data(Array(opened.body))
        case .close?:
            // The close record's body: u8 code (0 for an orderly close) ‖ reason (UTF-8).
            guard opened.body.count >= 1, let text = String(validating: opened.body[1...], as: UTF8.self) else {
                throw fail(SealedChannelError(.recordMalformed, "record \(counter) is a close record without a code"))
            }
            receiveClosed = true
            receiving.erase()
            if opened.body[0] == 0 { return .closed(reason: text) }
            let code = SealedChannelError.Code.fromWire(opened.body[0])
            let peerError = SealedChannelError(
                .peerAborted,
                "the \(receiving.role) tore the channel down: \(text) [\(code?.name ?? "code \(opened.body[0])")]",
                peerCode: code)
            throw fail(peerError)
        case nil:
            throw fail(SealedChannelError(.recordMalformed, "record \(counter) has unknown type \(typeByte)"))
        }
    }
}
