public import BinaryFormat
import Crypto

/// The messages between a child's `cmk-guest` agent and the host, on two virtio-serial ports (docs/guest-protocol.md):
///
/// - the **control port** (`cmk.control`): the coordinator asks for evidence, hands over resources, relays channel
///   frames;
/// - the **platform port** (`cmk.platform`, simulated platform only): the only way a simulated guest reaches its
///   simulated AMD secure processor or TDX module, which answers only for that instance's launch.
///
/// Every message travels in one frame: a 4-byte big-endian length (of what follows), a 1-byte type, the payload.
/// Payload fields are fixed-size or length-prefixed (u32 big-endian); nothing is optional, nothing is trailing.
public enum GuestMessage: Sendable, Hashable {
    // Platform port: guest -> simulated platform.
    /// An SEV-SNP report with these 64 bytes of REPORT_DATA at this VMPL.
    case snpReportRequest(reportData: [UInt8], vmpl: UInt32)
    /// The report (1184 bytes) and the certificate table (GUID table: VCEK, ASK, ARK), as SNP_GET_EXT_REPORT gives.
    case snpReportResponse(report: [UInt8], certificateTable: [UInt8])
    /// A TDX quote over a TD report with these 64 bytes of REPORTDATA.
    case tdxQuoteRequest(reportData: [UInt8])
    /// The quote and the CCEL event log the simulated TDVF wrote for this TD.
    case tdxQuoteResponse(quote: [UInt8], eventLog: [UInt8])

    // Control port.
    /// guest -> host, once at start: the agent runs and which evidence it can get.
    case ready(instance: String, agentVersion: String, evidenceProvider: String)
    /// host -> guest: produce evidence bound to this nonce and a fresh ephemeral key.
    case attestRequest(nonce: [UInt8])
    /// guest -> host: the evidence kind (`sev-snp` or `tdx`), the ephemeral X25519 public key REPORT_DATA binds,
    /// the evidence, and what came with it (certificate table, or the TDX event log).
    case attestResponse(kind: String, publicKey: [UInt8], evidence: [UInt8], auxiliary: [UInt8])
    /// host -> guest, after admission, last: the names of what was handed over (the secrets came sealed in
    /// `.sealedSecrets`, the volumes in `.attachVolumes`) and the channel peers the instance may talk to.
    case handover(secrets: [String], volumes: [String], channelPeers: [String])
    /// guest -> host: the handover was applied.
    case handoverAck
    /// host -> guest, after admission: the policy's secrets, sealed with HPKE to the attested key (``HandoverSeal``).
    case sealedSecrets(SealedSecrets)
    /// guest -> host: every secret was opened and written; one receipt per secret, in order.
    case secretsDelivered([SecretReceipt])
    /// host -> guest, after admission: data volumes were hot-plugged; wait for them and confirm.
    case attachVolumes([VolumeAttachment])
    /// guest -> host: the volumes the child sees.
    case volumesAttached([AttachedVolume])
    /// host -> guest: what do you hold now?
    case statusRequest
    /// guest -> host: the answer to `.statusRequest`.
    case status(AgentStatus)
    /// either way: an opaque sealed-channel frame for a channel id (the host relays ciphertext only).
    case channelFrame(channel: String, frame: [UInt8])
    /// host -> guest: take part in a sealed channel (``ChannelOpen``); the agent checks everything itself.
    case channelOpen(ChannelOpen)
    /// host -> guest: seal `data` on the channel; `echo` asks the peer to send it back (a round trip).
    case channelSend(channel: String, data: [UInt8], echo: Bool)
    /// host -> guest: close the channel in order (an authenticated close record).
    case channelClose(channel: String)
    /// guest -> host: what happened on a channel (``ChannelEvent``); never plaintext.
    case channelEvent(ChannelEvent)
    /// host -> guest: stop now (the guest powers off).
    case shutdown
    /// either way: a request failed, and why.
    case failure(String)
    /// host -> guest: a heartbeat; the agent answers `.pong` with the same sequence number at once. `version` is
    /// the heartbeat format (``heartbeatVersion``); any other value is rejected when decoding.
    case ping(version: UInt8, sequence: UInt64)
    /// guest -> host: the answer to `.ping`, echoing its version and sequence number.
    case pong(version: UInt8, sequence: UInt64)
    /// host -> guest (0x40): one request to the demo workload (a text line, docs/updates.md); answered by
    /// `.workloadResponse` with the same id.
    case workloadRequest(id: UInt64, request: [UInt8])
    /// guest -> host (0xC0): the workload's answer to the request with this id.
    case workloadResponse(id: UInt64, response: [UInt8])
    /// host -> guest (0x41): seal the workload's whole state onto this open channel (its peer must be this child's
    /// update peer); progress comes back as `.channelEvent`s (`state-sent`), never the state.
    case stateExport(channel: String)
    /// host -> guest (0x42): accept the workload state the update peer sends on this channel, replacing this child's
    /// (empty) state once all of it arrived and checked; `.channelEvent` `state-imported` says so.
    case stateImport(channel: String)

    // Control port, vTPM (docs/tpm-verification.md): before `.attestRequest`, so REPORT_DATA can bind the AK.
    /// host -> guest: find the EK and create the attestation key in the child's vTPM.
    case tpmKeyRequest
    /// guest -> host: the EK's and the AK's TPMT_PUBLIC.
    case tpmKeys(endorsementKey: [UInt8], attestationKey: [UInt8])
    /// host -> guest: a credential made for the AK under the EK (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET, sizes
    /// included); the child runs ActivateCredential.
    case tpmActivateRequest(credentialBlob: [UInt8], encryptedSecret: [UInt8])
    /// guest -> host: the secret ActivateCredential returned.
    case tpmActivated(secret: [UInt8])
    /// host -> guest: quote the boot PCRs with this nonce as extraData.
    case tpmQuoteRequest(nonce: [UInt8])
    /// guest -> host: the TPMS_ATTEST, its TPMT_SIGNATURE and the firmware's TCG event log.
    case tpmQuote(quote: [UInt8], signature: [UInt8], eventLog: [UInt8])

    /// The type byte of each message.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case snpReportRequest = 0x01
        case tdxQuoteRequest = 0x02
        case snpReportResponse = 0x81
        case tdxQuoteResponse = 0x82
        case ready = 0x10
        case attestRequest = 0x11
        case handover = 0x12
        case shutdown = 0x13
        case channelFrame = 0x14
        case ping = 0x18
        case attestResponse = 0x91
        case handoverAck = 0x92
        case sealedSecrets = 0x15
        case secretsDelivered = 0x95
        case attachVolumes = 0x16
        case volumesAttached = 0x96
        case statusRequest = 0x17
        case status = 0x97
        case pong = 0x98
        case channelOpen = 0x20
        case channelSend = 0x21
        case channelClose = 0x22
        case channelEvent = 0xA0
        case tpmKeyRequest = 0x30
        case tpmActivateRequest = 0x31
        case tpmQuoteRequest = 0x32
        case tpmKeys = 0xB0
        case tpmActivated = 0xB1
        case tpmQuote = 0xB2
        case workloadRequest = 0x40
        case stateExport = 0x41
        case stateImport = 0x42
        case workloadResponse = 0xC0
        case failure = 0xFF
    }

    public var kind: Kind {
        switch self {
        case .snpReportRequest: .snpReportRequest
        case .snpReportResponse: .snpReportResponse
        case .tdxQuoteRequest: .tdxQuoteRequest
        case .tdxQuoteResponse: .tdxQuoteResponse
        case .ready: .ready
        case .attestRequest: .attestRequest
        case .attestResponse: .attestResponse
        case .handover: .handover
        case .handoverAck: .handoverAck
        case .sealedSecrets: .sealedSecrets
        case .secretsDelivered: .secretsDelivered
        case .attachVolumes: .attachVolumes
        case .volumesAttached: .volumesAttached
        case .statusRequest: .statusRequest
        case .status: .status
        case .channelFrame: .channelFrame
        case .channelOpen: .channelOpen
        case .channelSend: .channelSend
        case .channelClose: .channelClose
        case .channelEvent: .channelEvent
        case .shutdown: .shutdown
        case .failure: .failure
        case .ping: .ping
        case .pong: .pong
        case .tpmKeyRequest: .tpmKeyRequest
        case .tpmKeys: .tpmKeys
        case .tpmActivateRequest: .tpmActivateRequest
        case .tpmActivated: .tpmActivated
        case .tpmQuoteRequest: .tpmQuoteRequest
        case .tpmQuote: .tpmQuote
        case .workloadRequest: .workloadRequest
        case .workloadResponse: .workloadResponse
        case .stateExport: .stateExport
        case .stateImport: .stateImport
        }
    }

    /// The heartbeat format `.ping` and `.pong` carry: 1 = version byte, then a u64be sequence number.
    public static let heartbeatVersion: UInt8 = 1

    /// The largest frame either side accepts (16 MiB): a quote with its collateral fits many times over.
    public static let maximumFrameSize = 16 << 20

    /// The whole frame: length, type, payload.
    public func encoded() -> [UInt8] {
        var payload = FrameWriter()
        switch self {
        case .snpReportRequest(let data, let vmpl):
            payload.fixed(data, 64)
            payload.u32(vmpl)
        case .snpReportResponse(let report, let table):
            payload.bytes(report)
            payload.bytes(table)
        case .tdxQuoteRequest(let data):
            payload.fixed(data, 64)
        case .tdxQuoteResponse(let quote, let log):
            payload.bytes(quote)
            payload.bytes(log)
        case .ready(let instance, let version, let provider):
            payload.text(instance)
            payload.text(version)
            payload.text(provider)
        case .attestRequest(let nonce):
            payload.bytes(nonce)
        case .attestResponse(let kind, let key, let evidence, let auxiliary):
            payload.text(kind)
            payload.bytes(key)
            payload.bytes(evidence)
            payload.bytes(auxiliary)
        case .handover(let secrets, let volumes, let peers):
            for list in [secrets, volumes, peers] {
                payload.u32(UInt32(list.count))
                for item in list { payload.text(item) }
            }
        case .channelFrame(let channel, let frame):
            payload.text(channel)
            payload.bytes(frame)
        case .channelOpen(let open):
            open.encode(into: &payload)
        case .channelSend(let channel, let data, let echo):
            payload.text(channel)
            payload.bytes(data)
            payload.bytes.append(echo ? 1 : 0)
        case .channelClose(let channel):
            payload.text(channel)
        case .channelEvent(let event):
            event.encode(into: &payload)
        case .failure(let reason):
            payload.text(reason)
        case .sealedSecrets(let sealed):
            sealed.encode(into: &payload)
        case .secretsDelivered(let receipts):
            payload.list(receipts) { writer, receipt in
                writer.text(receipt.name)
                writer.bytes(receipt.proof)
            }
        case .attachVolumes(let volumes):
            payload.list(volumes) { writer, volume in
                writer.text(volume.name)
                writer.text(volume.serial)
            }
        case .volumesAttached(let volumes):
            payload.list(volumes) { writer, volume in
                writer.text(volume.name)
                writer.text(volume.device)
                writer.u64(volume.sizeBytes)
            }
        case .status(let status):
            status.encode(into: &payload)
        case .ping(let version, let sequence), .pong(let version, let sequence):
            payload.bytes.append(version)
            payload.u64(sequence)
        case .tpmKeys(let ek, let ak):
            payload.bytes(ek)
            payload.bytes(ak)
        case .tpmActivateRequest(let blob, let secret):
            payload.bytes(blob)
            payload.bytes(secret)
        case .tpmActivated(let secret):
            payload.bytes(secret)
        case .tpmQuoteRequest(let nonce):
            payload.bytes(nonce)
        case .tpmQuote(let quote, let signature, let log):
            payload.bytes(quote)
            payload.bytes(signature)
            payload.bytes(log)
        case .workloadRequest(let id, let request):
            payload.u64(id)
            payload.bytes(request)
        case .workloadResponse(let id, let response):
            payload.u64(id)
            payload.bytes(response)
        case .stateExport(let channel), .stateImport(let channel):
            payload.text(channel)
        case .handoverAck, .shutdown, .statusRequest, .tpmKeyRequest:
            break
        }
        var frame = FrameWriter()
        frame.u32(UInt32(payload.bytes.count + 1))
        frame.bytes.append(kind.rawValue)
        frame.bytes += payload.bytes
        return frame.bytes
    }

    /// Decodes one frame's body (type byte and payload, without the length prefix); every byte must be used.
    public init(body: [UInt8]) throws(BinaryFormatError) {
        var c = ByteCursor(body)
        let type = try c.readUInt8(field: "message type")
        guard let kind = Kind(rawValue: type) else {
            throw BinaryFormatError(.invalidValue, field: "message type", offset: 0, "0x\(String(type, radix: 16))")
        }
        func bytes(_ field: String) throws(BinaryFormatError) -> [UInt8] {
            let count = Int(try c.readBigEndian(UInt32.self, field: "\(field) length"))
            return try c.readBytes(count, field: field)
        }
        func text(_ field: String) throws(BinaryFormatError) -> String {
            let raw = try bytes(field)
            guard let string = String(validating: raw, as: UTF8.self) else {
                throw BinaryFormatError(.invalidValue, field: field, offset: c.offset, "not UTF-8")
            }
            return string
        }
        func list(_ field: String) throws(BinaryFormatError) -> [String] {
            let count = Int(try c.readBigEndian(UInt32.self, field: "\(field) count"))
            guard count <= 4096 else {
                throw BinaryFormatError(.invalidValue, field: field, offset: c.offset, "\(count) items (at most 4096)")
            }
            var items: [String] = []
            for _ in 0..<count { items.append(try text(field)) }
            return items
        }
        switch kind {
        case .snpReportRequest:
            self = .snpReportRequest(reportData: try c.readBytes(64, field: "REPORT_DATA"), vmpl: try c.readBigEndian(UInt32.self, field: "VMPL"))
        case .snpReportResponse:
            self = .snpReportResponse(report: try bytes("report"), certificateTable: try bytes("certificate table"))
        case .tdxQuoteRequest:
            self = .tdxQuoteRequest(reportData: try c.readBytes(64, field: "REPORTDATA"))
        case .tdxQuoteResponse:
            self = .tdxQuoteResponse(quote: try bytes("quote"), eventLog: try bytes("event log"))
        case .ready:
            self = .ready(instance: try text("instance"), agentVersion: try text("agent version"), evidenceProvider: try text("provider"))
        case .attestRequest:
            self = .attestRequest(nonce: try bytes("nonce"))
        case .attestResponse:
            self = .attestResponse(
                kind: try text("kind"), publicKey: try bytes("public key"), evidence: try bytes("evidence"),
                auxiliary: try bytes("auxiliary"))
        case .handover:
            self = .handover(secrets: try list("secrets"), volumes: try list("volumes"), channelPeers: try list("channel peers"))
        case .handoverAck:
            self = .handoverAck
        case .channelFrame:
            self = .channelFrame(channel: try text("channel"), frame: try bytes("frame"))
        case .channelOpen, .channelSend, .channelClose, .channelEvent:
            var reader = FrameReader(cursor: c)
            self = try Self.decodeChannel(kind, &reader)
            c = reader.cursor
        case .shutdown:
            self = .shutdown
        case .sealedSecrets, .secretsDelivered, .attachVolumes, .volumesAttached, .statusRequest, .status:
            var reader = FrameReader(cursor: c)
            self = try Self.decodeHandover(kind, &reader)
            c = reader.cursor
        case .workloadRequest, .workloadResponse, .stateExport, .stateImport:
            var reader = FrameReader(cursor: c)
            self = try Self.decodeWorkload(kind, &reader)
            c = reader.cursor
        case .failure:
            self = .failure(try text("reason"))
        case .tpmKeyRequest:
            self = .tpmKeyRequest
        case .tpmKeys:
            self = .tpmKeys(endorsementKey: try bytes("EK public area"), attestationKey: try bytes("AK public area"))
        case .tpmActivateRequest:
            self = .tpmActivateRequest(credentialBlob: try bytes("credential blob"), encryptedSecret: try bytes("encrypted secret"))
        case .tpmActivated:
            self = .tpmActivated(secret: try bytes("activated secret"))
        case .tpmQuoteRequest:
            self = .tpmQuoteRequest(nonce: try bytes("nonce"))
        case .tpmQuote:
            self = .tpmQuote(quote: try bytes("quote"), signature: try bytes("signature"), eventLog: try bytes("event log"))
        case .ping, .pong:
            let version = try c.readUInt8(field: "heartbeat version")
            guard version == Self.heartbeatVersion else {
                throw BinaryFormatError(
                    .invalidValue, field: "heartbeat version", offset: 1,
                    "\(version) (this side speaks heartbeat version \(Self.heartbeatVersion))")
            }
            let sequence = try c.readBigEndian(UInt64.self, field: "heartbeat sequence")
            self = kind == .ping ? .ping(version: version, sequence: sequence) : .pong(version: version, sequence: sequence)
        }
        try c.expectEnd(field: "message \(kind)")
    }
}

extension GuestMessage {
    /// The handover messages, read with ``FrameReader`` (bounds on every list and string).
    static func decodeHandover(_ kind: Kind, _ reader: inout FrameReader) throws(BinaryFormatError) -> GuestMessage {
        switch kind {
        case .sealedSecrets:
            return .sealedSecrets(try SealedSecrets(reading: &reader))
        case .secretsDelivered:
            return .secretsDelivered(
                try reader.list("receipts", maximum: HandoverLimits.maximumSecrets) {
                    (reader: inout FrameReader) throws(BinaryFormatError) in
                    SecretReceipt(name: try reader.secretName("secret name"), proof: try reader.bytes("proof", maximum: 64))
                })
        case .attachVolumes:
            return .attachVolumes(
                try reader.list("volumes", maximum: HandoverLimits.maximumVolumes) {
                    (reader: inout FrameReader) throws(BinaryFormatError) in
                    VolumeAttachment(
                        name: try reader.text("volume name", maximum: 128),
                        serial: try reader.text("serial", maximum: HandoverLimits.maximumSerialBytes))
                })
        case .volumesAttached:
            return .volumesAttached(
                try reader.list("volumes", maximum: HandoverLimits.maximumVolumes) {
                    (reader: inout FrameReader) throws(BinaryFormatError) in
                    AttachedVolume(
                        name: try reader.text("volume name", maximum: 128),
                        device: try reader.text("device", maximum: 32), sizeBytes: try reader.u64("size"))
                })
        case .statusRequest:
            return .statusRequest
        case .status:
            return .status(try AgentStatus(reading: &reader))
        default:
            throw BinaryFormatError(.invalidValue, field: "message type", offset: 0, "\(kind) is not a handover message")
        }
    }
}

/// Appends big-endian fields.
struct FrameWriter {
    var bytes: [UInt8] = []

    mutating func u32(_ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    mutating func u64(_ value: UInt64) {
        u32(UInt32(value >> 32))
        u32(UInt32(value & 0xFFFF_FFFF))
    }

    mutating func bytes(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }

    mutating func text(_ value: String) { bytes(Array(value.utf8)) }

    /// Exactly `count` bytes: shorter input is zero-padded, longer is cut (callers pass exact sizes).
    mutating func fixed(_ value: [UInt8], _ count: Int) {
        bytes += value.prefix(count) + Array(repeating: 0, count: max(0, count - value.count))
    }
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces (a virtio-serial port, a socket).
public struct GuestFrameDecoder: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    /// Adds bytes as they arrive.
    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer += bytes }

    /// The next complete message, nil when more bytes are needed; throws on a malformed or oversized frame
    /// (the connection must then be closed: the stream cannot be resynchronised).
    public mutating func next() throws(BinaryFormatError) -> GuestMessage? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard length >= 1, length <= GuestMessage.maximumFrameSize else {
            throw BinaryFormatError(.invalidValue, field: "frame length", offset: 0, "\(length) bytes (1 to 16 MiB)")
        }
        guard buffer.count >= 4 + length else { return nil }
        let body = Array(buffer[4..<(4 + length)])
        buffer.removeFirst(4 + length)
        return try GuestMessage(body: body)
    }

    /// Bytes received but not yet part of a whole frame.
    public var pendingByteCount: Int { buffer.count }
}

/// How REPORT_DATA binds evidence to a request: SHA-512 over a fixed label, the verifier's nonce and, when there is
/// one, the public key the instance will use — so evidence cannot be replayed into another request or key.
public enum ReportData {
    /// The domain-separation label (ASCII, with its terminating NUL).
    public static let label = Array("cmk/report-data/v1".utf8) + [0]

    /// SHA-512(label ‖ u32be(nonce length) ‖ nonce ‖ key): the 64 bytes of REPORT_DATA / REPORTDATA.
    ///
    /// With a vTPM the key is the session key followed by SHA-256 of the AK's TPMT_PUBLIC (``withAttestationKey``):
    /// one rule binds both, so a quote is bound to the TEE report exactly as the session key is.
    public static func binding(nonce: [UInt8], publicKey: [UInt8] = []) -> [UInt8] {
        var message = label
        let count = UInt32(nonce.count)
        message += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
        message += nonce
        message += publicKey
        return Array(SHA512.hash(data: message))
    }

    /// The key material a child with a vTPM binds: its session key, then SHA-256 of its AK's TPMT_PUBLIC (32 bytes).
    public static func withAttestationKey(sessionKey: [UInt8], attestationKeyDigest: [UInt8]) -> [UInt8] {
        sessionKey + attestationKeyDigest
    }
}
