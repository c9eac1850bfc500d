import BinaryFormat
import CMKTesting
import Foundation
import Testing

@testable import SealedChannel

/// cmk's Noise against an independent implementation: the `noiseprotocol` Python package (scripts/setup installs it
/// in the venv). Python fills in test vectors in the cacophony format for fixed keys; cmk must produce every
/// message byte for byte, read Python's messages, and reach the same handshake hash. Python also writes cmk record
/// frames from docs/channels.md alone, which cmk's record layer must open.
@Suite("Noise interoperability with the noiseprotocol package", .serialized)
struct NoiseInteropTests {
    static let protocols = [
        "Noise_XX_25519_ChaChaPoly_SHA256", "Noise_XX_25519_AESGCM_SHA256", "Noise_XX_25519_ChaChaPoly_SHA512",
        "Noise_XX_25519_AESGCM_SHA512", "Noise_NN_25519_ChaChaPoly_SHA256",
    ]

    static var script: URL {
        SharedVectors.repositoryRoot.appendingPathComponent("Tests/SealedChannelTests/noise_interop.py")
    }

    /// Runs the Python side on `cases` (JSON) and returns its filled-in cases. The wait for the process happens on a
    /// dedicated thread.
    static func python(_ cases: [[String: Any]]) async throws -> [[String: Any]] {
        let input = try JSONSerialization.data(withJSONObject: cases)
        let output = try await onDedicatedThread {
            try ExternalTool.run(ExternalTool.python, [script.path], input: input, timeout: 120)
        }
        try #require(output.status == 0, "noise_interop.py failed: \(output.standardError)")
        return try #require(
            try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]],
            "not JSON: \(output.standardOutput.prefix(200))")
    }

    static func bytes(_ generator: inout SeededGenerator, _ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// A case in the cacophony format, keys and payloads from the seed.
    static func makeCase(_ name: String, seed: UInt64) -> [String: Any] {
        var generator = SeededGenerator(state: seed)
        let handshake = name.contains("_XX_") ? 3 : 2
        var messages: [[String: Any]] = []
        for index in 0..<(handshake + 8) {
            var message: [String: Any] = [
                "payload": Hex.encode(bytes(&generator, Int.random(in: 0...80, using: &generator)))
            ]
            if index >= handshake {
                message["from"] = index % 3 == 0 ? "responder" : "initiator"
                if index == handshake + 4 || index == handshake + 6 { message["rekey"] = true }
            }
            messages.append(message)
        }
        var result: [String: Any] = [
            "protocol_name": name,
            "init_prologue": Hex.encode(Array("cmk interop \(seed)".utf8)),
            "resp_prologue": Hex.encode(Array("cmk interop \(seed)".utf8)),
            "init_ephemeral": Hex.encode(bytes(&generator, 32)),
            "resp_ephemeral": Hex.encode(bytes(&generator, 32)),
            "messages": messages,
        ]
        if handshake == 3 {
            result["init_static"] = Hex.encode(bytes(&generator, 32))
            result["resp_static"] = Hex.encode(bytes(&generator, 32))
        }
        return result
    }

    static func hex(_ object: Any?) throws -> [UInt8] {
        try #require((object as? String).flatMap(Hex.decode), "not hex: \(String(describing: object))")
    }

    static func key(_ object: Any?) throws -> NoiseKeyPair? {
        guard object != nil else { return nil }
        return try NoiseKeyPair(rawPrivateKey: try hex(object))
    }

    @Test(
        "cmk writes every message Python writes and reads every message Python reads", .timeLimit(.minutes(3)),
        arguments: protocols)
    func vectors(protocolName: String) async throws {
        let cases = try await Self.python((1...3).map { Self.makeCase(protocolName, seed: UInt64($0) * 7919) })
        for vector in cases {
            let noiseProtocol = try NoiseProtocol(name: try #require(vector["protocol_name"] as? String))
            var initiator = try NoiseHandshakeState(
                noiseProtocol, initiator: true, prologue: try Self.hex(vector["init_prologue"]),
                staticKey: try Self.key(vector["init_static"]),
                fixedEphemeralForTesting: try Self.key(vector["init_ephemeral"]))
            var responder = try NoiseHandshakeState(
                noiseProtocol, initiator: false, prologue: try Self.hex(vector["resp_prologue"]),
                staticKey: try Self.key(vector["resp_static"]),
                fixedEphemeralForTesting: try Self.key(vector["resp_ephemeral"]))
            let messages = try #require(vector["messages"] as? [[String: Any]])
            let handshakeLength = noiseProtocol.pattern.messages.count
            var initiatorKeys: NoiseTransportKeys?
            var responderKeys: NoiseTransportKeys?
            for (index, message) in messages.enumerated() {
                let payload = try Self.hex(message["payload"])
                let expected = try Self.hex(message["ciphertext"])
                if index < handshakeLength {
                    let fromInitiator = index % 2 == 0
                    let written =
                        fromInitiator
                        ? try initiator.writeMessage(payload: payload) : try responder.writeMessage(payload: payload)
                    #expect(written.message == expected, "\(protocolName) handshake message \(index)")
                    let read = fromInitiator ? try responder.readMessage(expected) : try initiator.readMessage(expected)
                    #expect(read.payload == payload)
                    if fromInitiator {
                        initiatorKeys = written.transport ?? initiatorKeys
                    } else {
                        responderKeys = written.transport ?? responderKeys
                    }
                    if fromInitiator {
                        responderKeys = read.transport ?? responderKeys
                    } else {
                        initiatorKeys = read.transport ?? initiatorKeys
                    }
                } else {
                    var sender = try #require(message["from"] as? String == "initiator" ? initiatorKeys : responderKeys)
                    var receiver = try #require(
                        message["from"] as? String == "initiator" ? responderKeys : initiatorKeys)
                    if message["rekey"] as? Bool == true {
                        try sender.sending.rekey()
                        try receiver.receiving.rekey()
                    }
                    let sealed = try sender.sending.encrypt(ad: [], payload)
                    #expect(sealed == expected, "\(protocolName) transport message \(index)")
                    #expect(try receiver.receiving.decrypt(ad: [], expected) == payload)
                    if message["from"] as? String == "initiator" {
                        (initiatorKeys, responderKeys) = (sender, receiver)
                    } else {
                        (responderKeys, initiatorKeys) = (sender, receiver)
                    }
                }
            }
            let hash = try Self.hex(vector["handshake_hash"])
            #expect(initiator.handshakeHash == hash)
            #expect(responder.handshakeHash == hash)
            #expect(hash.count == noiseProtocol.hash.length)
        }
    }

    @Test(
        "cmk's record layer opens frames Python built from docs/channels.md, rekeys included", .timeLimit(.minutes(3)))
    func recordsFromPython() async throws {
        let limits = try RecordLimits(rekeyAfterRecords: 3, rekeyAfterBytes: 200)
        let descriptor = try ChannelDescriptor(channelID: "interop-7", initiator: "a", responder: "b", limits: limits)
        var generator = SeededGenerator(state: 42)
        var records: [[String: Any]] = []
        for index in 0..<24 {
            let from = index % 4 == 3 ? "responder" : "initiator"
            records.append([
                "from": from, "type": 1,
                "body": Hex.encode(Self.bytes(&generator, Int.random(in: 0...60, using: &generator))),
            ])
        }
        records.append(["from": "initiator", "type": 2, "body": Hex.encode([0] + Array("done".utf8))])
        var vector = Self.makeCase("Noise_XX_25519_ChaChaPoly_SHA256", seed: 99)
        vector["init_prologue"] = Hex.encode(descriptor.prologue)
        vector["resp_prologue"] = Hex.encode(descriptor.prologue)
        vector["messages"] = (0..<3).map { _ in ["payload": ""] }
        vector["cmk_records"] = [
            "channel_id": "interop-7", "rekey_after_records": 3, "rekey_after_bytes": 200, "records": records,
        ]
        let filled = try #require(try await Self.python([vector]).first)

        var initiator = try NoiseHandshakeState(
            .cmkChannel, initiator: true, prologue: descriptor.prologue, staticKey: try Self.key(vector["init_static"]),
            fixedEphemeralForTesting: try Self.key(vector["init_ephemeral"]))
        var responder = try NoiseHandshakeState(
            .cmkChannel, initiator: false, prologue: descriptor.prologue,
            staticKey: try Self.key(vector["resp_static"]),
            fixedEphemeralForTesting: try Self.key(vector["resp_ephemeral"]))
        _ = try responder.readMessage(try initiator.writeMessage(payload: []).message)
        _ = try initiator.readMessage(try responder.writeMessage(payload: []).message)
        let (message3, initiatorKeys) = try initiator.writeMessage(payload: [])
        let responderKeys = try #require(try responder.readMessage(message3).transport)
        let peer = VerifiedPeer(
            instance: "x", evidenceType: "none", measurement: "", reportData: [], evidenceDigest: "", simulated: true)
        let a = ChannelEndpoint(
            descriptor: descriptor, role: .initiator, peer: peer, transport: try #require(initiatorKeys))
        let b = ChannelEndpoint(descriptor: descriptor, role: .responder, peer: peer, transport: responderKeys)

        let frames = try #require((filled["cmk_records"] as? [String: Any])?["records"] as? [[String: Any]])
        #expect(frames.count == records.count)
        for (index, frame) in frames.enumerated() {
            let bytes = try Self.hex(frame["frame"])
            let body = try Self.hex(frame["body"])
            let fromInitiator = frame["from"] as? String == "initiator"
            let receiver = fromInitiator ? b : a
            let sender = fromInitiator ? a : b
            if frame["type"] as? Int == 2 {
                #expect(try sender.close(reason: "done") == bytes)
                #expect(try receiver.open(frame: bytes) == .closed(reason: "done"))
            } else {
                #expect(try sender.seal(body) == bytes, "record \(index)")
                #expect(try receiver.open(frame: bytes) == .data(body), "record \(index)")
            }
        }
        #expect(b.rekeyCounts.receiving > 3)
    }
}

/// The Python peer as a live process: one hex message per line each way. Read and written only from a dedicated
/// thread, never from Swift's cooperative pool.
final class PythonNoisePeer: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffer: [UInt8] = []

    init(protocolName: String, role: String, prologue: [UInt8]) throws {
        process.executableURL = ExternalTool.python
        process.arguments = [NoiseInteropTests.script.path, "peer", protocolName, role, Hex.encode(prologue)]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func send(_ bytes: [UInt8]) { input.fileHandleForWriting.write(Data((Hex.encode(bytes) + "\n").utf8)) }
    func sendLine(_ text: String) { input.fileHandleForWriting.write(Data((text + "\n").utf8)) }

    func receiveLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeFirst(newline + 1)
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw SealedChannelError(.frameTruncated, "the Python peer exited early") }
            buffer += chunk
        }
    }

    func receive() throws -> [UInt8] {
        let line = try receiveLine()
        return try #require(Hex.decode(line), "not hex from the Python peer: \(line)")
    }

    func finish() {
        try? input.fileHandleForWriting.close()
        waitForExit(process, timeout: 30)
    }
}

/// Runs `body` on its own thread and waits for it without holding a cooperative thread.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

@Suite("Live Noise sessions with the noiseprotocol package, fresh random keys on both sides", .serialized)
struct NoiseLivePeerTests {
    static let cases: [(String, String)] = [
        ("Noise_XX_25519_ChaChaPoly_SHA256", "initiator"), ("Noise_XX_25519_ChaChaPoly_SHA256", "responder"),
        ("Noise_XX_25519_AESGCM_SHA512", "initiator"), ("Noise_NN_25519_ChaChaPoly_SHA256", "responder"),
    ]

    @Test(
        "cmk completes a handshake with a live Python peer and exchanges transport messages", .timeLimit(.minutes(3)),
        arguments: cases)
    func live(protocolName: String, cmkRole: String) async throws {
        try await onDedicatedThread {
            let noiseProtocol = try NoiseProtocol(name: protocolName)
            let prologue = Array("cmk live \(protocolName)".utf8)
            let cmkIsInitiator = cmkRole == "initiator"
            let python = try PythonNoisePeer(
                protocolName: protocolName, role: cmkIsInitiator ? "responder" : "initiator", prologue: prologue)
            defer { python.finish() }
            var state = try NoiseHandshakeState(
                noiseProtocol, initiator: cmkIsInitiator, prologue: prologue,
                staticKey: noiseProtocol.pattern == .xx ? NoiseKeyPair() : nil)
            var keys: NoiseTransportKeys?
            while !state.isComplete {
                if state.isMyTurn {
                    let written = try state.writeMessage(payload: Array("cmk \(cmkRole)".utf8))
                    python.send(written.message)
                    keys = written.transport ?? keys
                } else {
                    let read = try state.readMessage(try python.receive())
                    #expect(read.payload == Array("python \(cmkIsInitiator ? "responder" : "initiator")".utf8))
                    keys = read.transport ?? keys
                }
            }
            var transport = try #require(keys)
            for index in 0..<6 {
                let message = Array("message \(index) ".utf8) + [UInt8](repeating: UInt8(index), count: index * 50)
                python.send(try transport.sending.encrypt(ad: [], message))
                #expect(try transport.receiving.decrypt(ad: [], try python.receive()) == Array("echo:".utf8) + message)
            }
            python.sendLine("end")
            #expect(try python.receive() == state.handshakeHash)
            #expect(state.handshakeHash == transport.handshakeHash)
        }
    }
}
