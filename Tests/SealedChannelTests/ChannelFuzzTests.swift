import CMKTesting
import Testing

@testable import SealedChannel

/// Seeded mutation fuzzing: every input either decodes or fails with a typed error; nothing crashes, and nothing that
/// was altered is ever accepted as a record. A failing case replays from its seed.
@Suite("Seeded mutation fuzz of the frame decoder, records, handshake messages and channel evidence")
struct ChannelFuzzTests {
    static let seeds: [UInt64] = [1, 2, 3, 0xC0FFEE, 0xDEAD_BEEF]

    static func mutate(_ input: [UInt8], _ generator: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
            switch Int.random(in: 0..<6, using: &generator) {
            case 0 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^=
                    UInt8(1) << UInt8.random(in: 0...7, using: &generator)
            case 1 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            case 2 where !bytes.isEmpty:
                bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &generator)...)
            case 3:
                let at = Int.random(in: 0...bytes.count, using: &generator)
                bytes.insert(
                    contentsOf: (0..<Int.random(in: 1...8, using: &generator)).map { _ in
                        UInt8.random(in: 0...255, using: &generator)
                    }, at: at)
            case 4 where bytes.count > 1:
                let at = Int.random(in: 0..<(bytes.count - 1), using: &generator)
                bytes.swapAt(at, at + 1)
            default:
                if bytes.count >= 4 {
                    bytes.replaceSubrange(
                        0..<4, with: (0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) })
                }
            }
        }
        return bytes
    }

    @Test("mutated streams of frames never crash the decoder and never yield an altered record", arguments: seeds)
    func frames(seed: UInt64) throws {
        var generator = SeededGenerator(state: seed)
        let limits = try RecordLimits(maximumRecordBody: 512, rekeyAfterRecords: 4)
        for _ in 0..<150 {
            let (a, b) = try recordPair(limits: limits)
            let bodies = (0..<Int.random(in: 1...6, using: &generator)).map { _ in
                (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator)
                }
            }
            let stream = try bodies.flatMap { try a.seal($0) } + (try a.close(reason: "end"))
            let mutated = Self.mutate(stream, &generator)
            var position = 0
            var received: [[UInt8]] = []
            var sawClose = false
            var failed = false
            while position < mutated.count && !failed {
                let chunk = Int.random(in: 1...40, using: &generator)
                b.receive(mutated[position..<min(mutated.count, position + chunk)])
                position += chunk
                do {
                    while let record = try b.nextRecord() {
                        switch record {
                        case .data(let body): received.append(body)
                        case .closed: sawClose = true
                        }
                    }
                } catch {
                    failed = true
                }
            }
            if !failed {
                do { try b.endOfStream() } catch { failed = true }
            }
            // Whatever was accepted is exactly a prefix of what was sent, and any change is noticed.
            #expect(received == Array(bodies.prefix(received.count)), "seed \(seed)")
            if mutated == stream {
                #expect(!failed && sawClose && received == bodies)
            } else {
                #expect(failed, "seed \(seed): an altered stream was accepted")
            }
        }
    }

    @Test("random bytes never crash the decoder", arguments: seeds)
    func randomBytes(seed: UInt64) {
        var generator = SeededGenerator(state: seed)
        for _ in 0..<500 {
            var decoder = SealedFrameDecoder(maximumCiphertext: 1024)
            decoder.append(
                (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator)
                })
            do {
                while let frame = try decoder.next() {
                    #expect((SealedFrameDecoder.minimumCiphertext...1024).contains(frame.count))
                }
                try decoder.finish()
            } catch {
                #expect([.frameLength, .frameTruncated].contains(error.code))
            }
        }
    }

    @Test("mutated handshake messages fail with typed errors", arguments: seeds)
    func handshakeMessages(seed: UInt64) throws {
        var generator = SeededGenerator(state: seed)
        for _ in 0..<100 {
            var initiator = try NoiseHandshakeState(
                .cmkChannel, initiator: true, prologue: [1], staticKey: NoiseKeyPair())
            var responder = try NoiseHandshakeState(
                .cmkChannel, initiator: false, prologue: [1], staticKey: NoiseKeyPair())
            _ = try responder.readMessage(try initiator.writeMessage(payload: []).message)
            let message2 = try responder.writeMessage(payload: Array("evidence".utf8)).message
            let mutated = Self.mutate(message2, &generator)
            guard mutated != message2 else { continue }
            #expect(throws: SealedChannelError.self) { try initiator.readMessage(mutated) }
        }
    }

    @Test("mutated channel evidence either parses or fails as malformed", arguments: seeds)
    func evidence(seed: UInt64) {
        var generator = SeededGenerator(state: seed)
        let good = ChannelEvidence(
            kind: .sevSNP, report: [UInt8](repeating: 7, count: 40), auxiliary: [1, 2], manifest: Array("{}".utf8)
        ).encoded()
        for _ in 0..<1000 {
            let mutated = Self.mutate(good, &generator)
            do {
                let parsed = try ChannelEvidence(bytes: mutated)
                #expect(parsed.encoded() == mutated)
            } catch {
                #expect(error.code == .peerEvidenceMalformed)
            }
        }
        // Truncation at every offset.
        for cut in 0..<good.count {
            #expect(throws: SealedChannelError.self) { try ChannelEvidence(bytes: Array(good[..<cut])) }
        }
    }
}
