import CMKTesting
import Crypto
import Testing

@testable import SealedChannel

@Suite("Record layer: per-direction keys, counter nonces, strict order, rekeying, close and teardown")
struct RecordLayerTests {
    static func data(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("records flow both ways and arrive as sent")
    func roundTrip() throws {
        let (a, b) = try recordPair()
        for index in 0..<20 {
            #expect(try b.open(frame: try a.seal(Self.data("a\(index)"))) == .data(Self.data("a\(index)")))
            #expect(try a.open(frame: try b.seal(Self.data("b\(index)"))) == .data(Self.data("b\(index)")))
        }
        #expect(try b.open(frame: try a.seal([])) == .data([]))
        #expect(a.recordCounts == (21, 20))
        #expect(b.recordCounts == (20, 21))
    }

    @Test("a frame is u32be length ‖ type ‖ ciphertext of the body ‖ 16-byte tag")
    func frameLayout() throws {
        let (a, _) = try recordPair()
        let frame = try a.seal(Self.data("hello"))
        #expect(frame.count == 4 + 1 + 5 + 16)
        #expect(Array(frame[..<4]) == [0, 0, 0, 22])
        #expect(frame[4] == 0x01)
        #expect(Array(frame[5..<10]) != Self.data("hello"))
        let close = try a.close(reason: "bye")
        #expect(close.count == 4 + 1 + 4 + 16)
        #expect(close[4] == 0x02)
    }

    /// A frame built outside the record layer: swift-crypto's ChaChaPoly through Noise's EncryptWithAd over the
    /// sender's transport key, from the layout in docs/channels.md.
    static func handBuiltFrame(
        type: UInt8, body: [UInt8], sending: inout NoiseCipherState, descriptor: ChannelDescriptor
    ) throws -> [UInt8] {
        let length = 1 + body.count + NoiseCipher.tagLength
        let ad = ChannelEndpoint.associatedData(
            descriptor: descriptor, sender: .initiator, counter: sending.nonce, length: length, type: type)
        let ciphertext = try sending.encrypt(ad: ad, body)
        return [0, 0, UInt8(length >> 8), UInt8(length & 0xFF), type] + ciphertext
    }

    @Test("the record type is authenticated: a data frame retyped as a close fails, an unknown type is malformed")
    func recordType() throws {
        let descriptor = try ChannelDescriptor(channelID: "records", initiator: "a", responder: "b")
        let keys = try handshakeTransport(descriptor)
        var sending = keys.initiator.sending
        let responderKeys = keys.responder
        let peer = VerifiedPeer(
            instance: "a", evidenceType: "none", measurement: "", reportData: [], evidenceDigest: "", simulated: true)
        func receiver() -> ChannelEndpoint {
            ChannelEndpoint(descriptor: descriptor, role: .responder, peer: peer, transport: responderKeys)
        }

        // Built independently of RecordCipher, a data and a close frame open as such.
        var independent = sending
        let b = receiver()
        let dataFrame = try Self.handBuiltFrame(
            type: 0x01, body: Self.data("by hand"), sending: &independent, descriptor: descriptor)
        #expect(try b.open(frame: dataFrame) == .data(Self.data("by hand")))
        let closeFrame = try Self.handBuiltFrame(
            type: 0x02, body: [0] + Self.data("done"), sending: &independent, descriptor: descriptor)
        #expect(try b.open(frame: closeFrame) == .closed(reason: "done"))

        // The host rewrites the clear type byte of a data record whose body reads as a close record's: refused.
        var retyped = try Self.handBuiltFrame(
            type: 0x01, body: [0] + Self.data("done"), sending: &sending, descriptor: descriptor)
        retyped[4] = 0x02
        let c = receiver()
        expectChannelError(.recordAuthentication) { try c.open(frame: retyped) }

        // A peer holding the key that sends a type this layer does not know: authenticated, then refused.
        var keyHolder = keys.initiator.sending
        let unknown = try Self.handBuiltFrame(
            type: 0x7F, body: Self.data("?"), sending: &keyHolder, descriptor: descriptor)
        let d = receiver()
        let error = expectChannelError(.recordMalformed) { try d.open(frame: unknown) }
        #expect(error?.reason.contains("unknown type 127") == true)
    }

    @Test("the two directions use different keys: a frame sent back to its sender fails")
    func directionsDiffer() throws {
        let (a, _) = try recordPair()
        let frame = try a.seal(Self.data("reflect me"))
        expectChannelError(.recordAuthentication) { try a.open(frame: frame) }
    }

    @Test("flipping any bit of any byte of a frame tears the channel down", arguments: [0, 1, 2, 3, 4, 5, 10, 20, 25])
    func flippedByte(at offset: Int) throws {
        for bit in 0..<8 {
            let (a, b) = try recordPair()
            var frame = try a.seal(Self.data("0123456"))  // 28 bytes: length, type, body, tag
            try #require(offset < frame.count)
            frame[offset] ^= UInt8(1) << UInt8(bit)
            let code: SealedChannelError.Code = offset < 4 ? .frameLength : .recordAuthentication
            expectChannelError(code) { try b.open(frame: frame) }
            #expect(b.failure?.code == code)
            // Torn down for good: the genuine next frame is refused too.
            expectChannelError(.channelClosed) { try b.open(frame: try a.seal(Self.data("next"))) }
        }
    }

    @Test("every region of a frame is covered: length, type byte, body, tag")
    func everyRegion() throws {
        let regions: [(String, Int, SealedChannelError.Code)] = [
            ("length", 3, .frameLength), ("type", 4, .recordAuthentication), ("body", 6, .recordAuthentication),
            ("tag", 20, .recordAuthentication),
        ]
        for (name, offset, code) in regions {
            let (a, b) = try recordPair()
            var frame = try a.seal(Self.data("body!"))
            frame[offset] ^= 0x01
            let error = expectChannelError(code) { try b.open(frame: frame) }
            #expect(error != nil, "\(name)")
        }
    }

    @Test("a replayed frame fails")
    func replay() throws {
        let (a, b) = try recordPair()
        let frame = try a.seal(Self.data("once"))
        #expect(try b.open(frame: frame) == .data(Self.data("once")))
        expectChannelError(.recordAuthentication) { try b.open(frame: frame) }
    }

    @Test("a dropped frame makes the next one fail")
    func drop() throws {
        let (a, b) = try recordPair()
        _ = try a.seal(Self.data("lost"))
        let second = try a.seal(Self.data("second"))
        let error = expectChannelError(.recordAuthentication) { try b.open(frame: second) }
        #expect(error?.reason.contains("record 0") == true)
    }

    @Test("reordered frames fail")
    func reorder() throws {
        let (a, b) = try recordPair()
        let first = try a.seal(Self.data("first"))
        let second = try a.seal(Self.data("second"))
        expectChannelError(.recordAuthentication) { try b.open(frame: second) }
        expectChannelError(.channelClosed) { try b.open(frame: first) }
    }

    @Test("a frame from another channel, or another session of the same channel, fails")
    func splice() throws {
        let (a, b) = try recordPair(channelID: "one")
        let (otherA, _) = try recordPair(channelID: "two")
        let (sameIDOtherSession, _) = try recordPair(channelID: "one")
        expectChannelError(.recordAuthentication) { try b.open(frame: try otherA.seal(Self.data("from two"))) }
        let (_, b2) = try recordPair(channelID: "one")
        expectChannelError(.recordAuthentication) { try b2.open(frame: try sameIDOtherSession.seal(Self.data("x"))) }
        // Splicing one session's frames into the stream of another after a valid prefix fails at the splice.
        let (c, d) = try recordPair(channelID: "one")
        #expect(try d.open(frame: try c.seal(Self.data("ok"))) == .data(Self.data("ok")))
        _ = try a.seal(Self.data("a0"))
        expectChannelError(.recordAuthentication) { try d.open(frame: try a.seal(Self.data("a1"))) }
    }

    @Test("the associated data binds channel id, direction, counter, length and type")
    func associatedData() throws {
        let descriptor = try ChannelDescriptor(channelID: "chan", initiator: "a", responder: "b")
        let ad = ChannelEndpoint.associatedData(
            descriptor: descriptor, sender: .responder, counter: 258, length: 17, type: 2)
        #expect(
            ad == Array("cmk/channel/record/v2".utf8) + [0, 4] + Array("chan".utf8)
                + [0x52, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 17, 2])
    }

    @Test("truncated frames: every prefix waits, the end of the stream inside a frame fails")
    func truncated() throws {
        let frameBytes = try recordPair().0.seal(Self.data("truncate me"))
        for cut in 0..<frameBytes.count {
            let (a, b) = try recordPair()
            let frame = try a.seal(Self.data("truncate me"))
            #expect(frame.count == frameBytes.count)
            b.receive(frame[..<cut])
            #expect(try b.nextRecord() == nil)
            expectChannelError(.frameTruncated) { try b.endOfStream() }
            expectChannelError(.channelClosed) { try b.nextRecord() }
        }
        // open(frame:) wants exactly one frame.
        let (a, b) = try recordPair()
        let frame = try a.seal(Self.data("x"))
        expectChannelError(.frameLength) { try b.open(frame: Array(frame.dropLast())) }
    }

    @Test("a stream that ends without the peer's close record fails: its end was cut off")
    func endWithoutClose() throws {
        let (a, b) = try recordPair()
        b.receive(try a.seal(Self.data("last?")))
        #expect(try b.nextRecord() == .data(Self.data("last?")))
        expectChannelError(.frameTruncated) { try b.endOfStream() }
    }

    @Test("lengths below a tag and a type byte, or above the limit, fail as soon as the prefix arrives")
    func lengthLimits() throws {
        let limits = try RecordLimits(maximumRecordBody: 100)
        for length in [0, 1, 16, 118, 1 << 20, Int(UInt32.max)] {
            let (_, b) = try recordPair(limits: limits)
            let prefix = [
                UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF),
            ]
            b.receive(prefix)
            expectChannelError(.frameLength) { try b.nextRecord() }
        }
        let (a, b) = try recordPair(limits: limits)
        expectChannelError(.messageTooLarge) { try a.seal([UInt8](repeating: 1, count: 101)) }
        #expect(
            try b.open(frame: try a.seal([UInt8](repeating: 1, count: 100))) == .data([UInt8](repeating: 1, count: 100))
        )
    }

    @Test("the stream decoder takes frames split at every point")
    func everySplit() throws {
        let (a, _) = try recordPair()
        let frames = try (0..<3).map { try a.seal(Self.data("frame \($0) " + String(repeating: "x", count: $0 * 7))) }
        let stream = frames.flatMap { $0 }
        for split in 0...stream.count {
            var decoder = SealedFrameDecoder()
            decoder.append(stream[..<split])
            var out: [[UInt8]] = []
            while let frame = try decoder.next() { out.append(frame) }
            decoder.append(stream[split...])
            while let frame = try decoder.next() { out.append(frame) }
            try decoder.finish()
            #expect(out == frames.map { Array($0.dropFirst(4)) })
        }
        // Byte by byte through an endpoint.
        let (c, d) = try recordPair()
        let sent = try (0..<5).map { try c.seal(Self.data("r\($0)")) }.flatMap { $0 }
        var received: [ChannelRecord] = []
        for byte in sent {
            d.receive([byte])
            while let record = try d.nextRecord() { received.append(record) }
        }
        #expect(received == (0..<5).map { .data(Self.data("r\($0)")) })
    }

    @Test("rekeying happens in lockstep at the record budget", arguments: [1, 2, 3, 7])
    func rekeyOnRecords(budget: Int) throws {
        let limits = try RecordLimits(rekeyAfterRecords: UInt64(budget))
        let (a, b) = try recordPair(limits: limits)
        var frames: [[UInt8]] = []
        for index in 0..<(3 * budget + 1) {
            let frame = try a.seal(Self.data("m\(index)"))
            frames.append(frame)
            #expect(try b.open(frame: frame) == .data(Self.data("m\(index)")))
            #expect(a.rekeyCounts.sending == (index + 1) / budget)
            #expect(b.rekeyCounts.receiving == (index + 1) / budget)
        }
        #expect(a.rekeyCounts.receiving == 0)
        // A frame from before a rekey, replayed after it, fails.
        expectChannelError(.recordAuthentication) { try b.open(frame: frames[0]) }
    }

    @Test("rekeying happens at the byte budget, counting ciphertext bytes")
    func rekeyOnBytes() throws {
        // Each 10-byte body is a 27-byte ciphertext: the budget of 60 is spent by the third record.
        let limits = try RecordLimits(rekeyAfterBytes: 60)
        let (a, b) = try recordPair(limits: limits)
        var epochs: [Int] = []
        for _ in 0..<7 {
            _ = try b.open(frame: try a.seal([UInt8](repeating: 7, count: 10)))
            epochs.append(b.rekeyCounts.receiving)
            #expect(a.rekeyCounts.sending == b.rekeyCounts.receiving)
        }
        #expect(epochs == [0, 0, 1, 1, 1, 2, 2])
    }

    @Test("Rekey() is Noise's REKEY(k): the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zeros); the nonce stays")
    func rekeyIsNoiseRekey() throws {
        let key = SymmetricKey(size: .bits256)
        var state = NoiseCipherState(cipher: .chaChaPoly)
        state.initializeKey(key)
        state.setNonce(5)
        try state.rekey()
        #expect(state.nonce == 5)
        let box = try ChaChaPoly.seal(
            [UInt8](repeating: 0, count: 32), using: key,
            nonce: try ChaChaPoly.Nonce(data: [0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 8)))
        var expected = NoiseCipherState(cipher: .chaChaPoly)
        expected.initializeKey(SymmetricKey(data: Array(box.ciphertext.prefix(32))))
        expected.setNonce(5)
        #expect(try state.encrypt(ad: [9], [1, 2, 3]) == (try expected.encrypt(ad: [9], [1, 2, 3])))
        var old = NoiseCipherState(cipher: .chaChaPoly)
        old.initializeKey(key)
        old.setNonce(6)
        expectChannelError(.handshakeAuthentication) { try old.decrypt(ad: [9], try state.encrypt(ad: [9], [4])) }
    }

    @Test("an orderly close: the peer sees it with the reason, and both sides refuse more")
    func orderlyClose() throws {
        let (a, b) = try recordPair()
        #expect(try b.open(frame: try a.seal(Self.data("bye soon"))) == .data(Self.data("bye soon")))
        let close = try a.close(reason: "done")
        #expect(try b.open(frame: close) == .closed(reason: "done"))
        #expect(b.peerClosed)
        #expect(a.closedForSending)
        expectChannelError(.channelClosed) { try a.seal(Self.data("more")) }
        #expect(try b.nextRecord() == nil)
        try b.endOfStream()
        // b may still send until it closes too.
        #expect(try a.open(frame: try b.seal(Self.data("last word"))) == .data(Self.data("last word")))
        #expect(try a.open(frame: try b.close()) == .closed(reason: ""))
        // Anything after a close record tears the channel down.
        expectChannelError(.recordAfterClose) { try b.open(frame: close) }
        #expect(b.failure?.code == .recordAfterClose)
    }

    @Test("after a bad frame, the detecting side sends its reason and the peer reports it")
    func bothSidesReport() throws {
        let (a, b) = try recordPair()
        var frame = try a.seal(Self.data("tampered"))
        frame[frame.count - 1] ^= 0x80
        expectChannelError(.recordAuthentication) { try b.open(frame: frame) }
        let abort = try #require(b.abortFrame())
        #expect(b.abortFrame() == nil)
        let error = expectChannelError(.peerAborted) { try a.open(frame: abort) }
        #expect(error?.peerCode == .recordAuthentication)
        #expect(a.failure?.code == .peerAborted)
        expectChannelError(.channelClosed) { try a.seal(Self.data("x")) }
        expectChannelError(.channelClosed) { try b.seal(Self.data("x")) }
    }

    @Test("a healthy channel has no abort frame")
    func noAbortWithoutFailure() throws {
        let (a, _) = try recordPair()
        #expect(a.abortFrame() == nil)
        #expect(a.failure == nil)
    }

    @Test("the nonce 2^64-1 is reserved: a cipher state at it refuses to encrypt or decrypt")
    func nonceExhaustion() throws {
        var state = NoiseCipherState(cipher: .chaChaPoly)
        state.initializeKey(.init(size: .bits256))
        state.setNonce(UInt64.max - 1)
        _ = try state.encrypt(ad: [], [1])
        expectChannelError(.nonceExhausted) { try state.encrypt(ad: [], [1]) }
        expectChannelError(.nonceExhausted) { try state.decrypt(ad: [], [UInt8](repeating: 0, count: 17)) }
    }
}
