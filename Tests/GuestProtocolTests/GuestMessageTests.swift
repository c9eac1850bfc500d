import BinaryFormat
import CMKTesting
import GuestProtocol
import Testing

@Suite("Guest protocol frames")
struct GuestMessageTests {
    static let samples: [GuestMessage] = [
        .snpReportRequest(reportData: Array(0..<64), vmpl: 0),
        .snpReportResponse(report: Array(repeating: 0xAB, count: 1184), certificateTable: [1, 2, 3]),
        .tdxQuoteRequest(reportData: Array(repeating: 7, count: 64)),
        .tdxQuoteResponse(quote: [4, 5], eventLog: []),
        .ready(instance: "db-1", agentVersion: "0.1.0", evidenceProvider: "simulated-snp"),
        .attestRequest(nonce: Array(repeating: 9, count: 32)),
        .attestResponse(kind: "sev-snp", publicKey: Array(repeating: 1, count: 32), evidence: [2], auxiliary: [3, 3]),
        .handover(secrets: ["vault:a", "file:b"], volumes: [], channelPeers: ["gateway"]),
        .handoverAck,
        .channelFrame(channel: "db-1/gateway", frame: Array(repeating: 0xEE, count: 300)),
        .channelOpen(
            ChannelOpen(channel: "ab", initiatorRole: false, initiator: "a", responder: "b", manifest: Array("{}".utf8))),
        .channelSend(channel: "ab", data: [1, 2, 3], echo: true),
        .channelClose(channel: "ab"),
        .channelEvent(
            ChannelEvent(channel: "ab", event: "echoed", detail: "3 bytes", recordsSent: 4, recordsReceived: 5, micros: 6)),
        .shutdown,
        .failure("no report: the platform refused (ünïcode kept)"),
        .ping(version: GuestMessage.heartbeatVersion, sequence: 0),
        .pong(version: GuestMessage.heartbeatVersion, sequence: 0x0102_0304_0506_0708),
        .tpmKeyRequest,
        .tpmKeys(endorsementKey: Array(repeating: 0x11, count: 314), attestationKey: Array(repeating: 0x22, count: 278)),
        .tpmActivateRequest(credentialBlob: [0, 3, 1, 2, 3], encryptedSecret: [0, 1, 9]),
        .tpmActivated(secret: Array(repeating: 0x5A, count: 32)),
        .tpmQuoteRequest(nonce: Array(repeating: 4, count: 32)),
        .tpmQuote(quote: [0xFF, 0x54, 0x43, 0x47], signature: [0, 0x14], eventLog: Array(repeating: 1, count: 5000)),
        .workloadRequest(id: 7, request: Array("INCR hits 2".utf8)),
        .workloadResponse(id: 0xFFFF_FFFF_FFFF_FFFF, response: Array("OK 2".utf8)),
        .stateExport(channel: "update-0a1b2c3d"),
        .stateImport(channel: "update-0a1b2c3d"),
    ]

    @Test("the vTPM messages use their own kind bytes (0x30-0x32 requests, 0xB0-0xB2 answers)")
    func vtpmKinds() {
        #expect(GuestMessage.tpmKeyRequest.encoded() == [0, 0, 0, 1, 0x30])
        #expect(GuestMessage.tpmActivated(secret: [7]).encoded() == [0, 0, 0, 6, 0xB1, 0, 0, 0, 1, 7])
        let kinds: [GuestMessage.Kind] = [.tpmKeyRequest, .tpmActivateRequest, .tpmQuoteRequest, .tpmKeys, .tpmActivated, .tpmQuote]
        #expect(kinds.map(\.rawValue) == [0x30, 0x31, 0x32, 0xB0, 0xB1, 0xB2])
    }

    @Test("with a vTPM, REPORT_DATA binds the session key followed by SHA-256 of the AK: another AK changes it")
    func attestationKeyBinding() {
        let nonce = Array(repeating: UInt8(3), count: 32)
        let key = Array(repeating: UInt8(1), count: 32)
        let ak = Array(repeating: UInt8(2), count: 32)
        let bound = ReportData.withAttestationKey(sessionKey: key, attestationKeyDigest: ak)
        #expect(bound == key + ak)
        #expect(ReportData.binding(nonce: nonce, publicKey: bound) != ReportData.binding(nonce: nonce, publicKey: key))
        let other = ReportData.withAttestationKey(sessionKey: key, attestationKeyDigest: Array(repeating: 9, count: 32))
        #expect(ReportData.binding(nonce: nonce, publicKey: bound) != ReportData.binding(nonce: nonce, publicKey: other))
    }

    @Test("workload messages use the 0x40/0xC0 range, are bounded, and refuse a truncated or padded body")
    func workloadBounds() throws {
        #expect(GuestMessage.workloadRequest(id: 1, request: []).encoded()[4] == 0x40)
        #expect(GuestMessage.stateExport(channel: "c").encoded()[4] == 0x41)
        #expect(GuestMessage.stateImport(channel: "c").encoded()[4] == 0x42)
        #expect(GuestMessage.workloadResponse(id: 1, response: []).encoded()[4] == 0xC0)
        let big = GuestMessage.workloadRequest(
            id: 1, request: Array(repeating: 0x41, count: WorkloadMessageLimits.maximumRequest + 1)).encoded()
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: Array(big.dropFirst(4))) }
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: Array(GuestMessage.stateExport(channel: "").encoded().dropFirst(4))) }
        let body = Array(GuestMessage.workloadRequest(id: 9, request: Array("GET k".utf8)).encoded().dropFirst(4))
        for cut in 1..<body.count {
            #expect(throws: BinaryFormatError.self) { try GuestMessage(body: Array(body.prefix(cut))) }
        }
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: body + [0]) }
    }

    @Test("heartbeats are a version byte and a big-endian u64; another version is refused, not misread")
    func heartbeatLayout() throws {
        let ping = GuestMessage.ping(version: 1, sequence: 0x0102_0304_0506_0708).encoded()
        #expect(ping == [0, 0, 0, 10, 0x18, 1, 1, 2, 3, 4, 5, 6, 7, 8])
        let pong = GuestMessage.pong(version: 1, sequence: 5).encoded()
        #expect(pong == [0, 0, 0, 10, 0x98, 1, 0, 0, 0, 0, 0, 0, 0, 5])
        for kind: UInt8 in [0x18, 0x98] {
            #expect { try GuestMessage(body: [kind, 2, 0, 0, 0, 0, 0, 0, 0, 1]) } throws: { error in
                "\(error)".contains("heartbeat version")
            }
            #expect(throws: BinaryFormatError.self) { try GuestMessage(body: [kind, 1, 0, 0, 0]) }
        }
    }

    @Test("every message survives encode and decode", arguments: samples)
    func roundTrip(message: GuestMessage) throws {
        var decoder = GuestFrameDecoder()
        decoder.append(message.encoded())
        #expect(try decoder.next() == message)
        #expect(try decoder.next() == nil)
        #expect(decoder.pendingByteCount == 0)
    }

    @Test("a stream cut at every offset yields the same messages (frames arrive in arbitrary pieces)")
    func everySplit() throws {
        let stream = Self.samples.flatMap { $0.encoded() }
        for cut in stride(from: 0, through: stream.count, by: 7) {
            var decoder = GuestFrameDecoder()
            var seen: [GuestMessage] = []
            decoder.append(stream[..<cut])
            while let message = try decoder.next() { seen.append(message) }
            decoder.append(stream[cut...])
            while let message = try decoder.next() { seen.append(message) }
            #expect(seen == Self.samples, "cut at \(cut)")
        }
        // And byte by byte.
        var decoder = GuestFrameDecoder()
        var seen: [GuestMessage] = []
        for byte in stream {
            decoder.append([byte])
            while let message = try decoder.next() { seen.append(message) }
        }
        #expect(seen == Self.samples)
    }

    @Test("a body truncated anywhere or with a byte appended is rejected, never crashes", arguments: samples)
    func truncation(message: GuestMessage) {
        let body = Array(message.encoded().dropFirst(4))
        for length in 0..<body.count {
            #expect(throws: BinaryFormatError.self) { try GuestMessage(body: Array(body.prefix(length))) }
        }
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: body + [0]) }
    }

    @Test("unknown types, empty and oversized frames are rejected")
    func badFrames() {
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: [0x55]) }
        var empty = GuestFrameDecoder()
        empty.append([0, 0, 0, 0])
        #expect(throws: BinaryFormatError.self) { try empty.next() }
        var huge = GuestFrameDecoder()
        huge.append([0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: BinaryFormatError.self) { try huge.next() }
    }

    @Test("random bodies never crash the decoder")
    func fuzz() {
        var generator = SeededGenerator(state: 0xC0FFEE)
        for _ in 0..<20000 {
            let count = Int.random(in: 0..<80, using: &generator)
            var body = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if !body.isEmpty { body[0] = GuestMessage.Kind.allCases.randomElement(using: &generator)!.rawValue }
            _ = try? GuestMessage(body: body)
        }
    }

    @Test("REPORT_DATA binds the label, the nonce's length, the nonce and the key")
    func reportDataBinding() {
        let a = ReportData.binding(nonce: [1, 2], publicKey: [3])
        #expect(a.count == 64)
        #expect(a != ReportData.binding(nonce: [1], publicKey: [2, 3]), "moving a byte between nonce and key changes it")
        #expect(a != ReportData.binding(nonce: [1, 2], publicKey: [4]))
        #expect(a == ReportData.binding(nonce: [1, 2], publicKey: [3]))
    }
}
