import BinaryFormat

/// Bounds of the channel messages (0x20-0x22 host → guest, 0xA0 guest → host).
public enum ChannelMessageLimits {
    /// A channel id or an instance name: 1 to 255 bytes (the prologue's `u8 len`).
    public static let maximumName = 255
    /// The instance manifest (canonical JSON) in `.channelOpen`.
    public static let maximumManifest = 64 << 10
    /// One message body in `.channelSend` (a record body is at most 65518 bytes; one byte is the record's kind).
    public static let maximumMessage = 65517
    /// An event's detail text.
    public static let maximumDetail = 1024
}

/// host → guest (0x20): take part in a sealed channel.
///
/// ```
/// text  channel id         1..255 bytes
/// u8    role               0 initiator, 1 responder
/// text  initiator, responder
/// bytes manifest           this instance's launch manifest (canonical JSON); the agent checks that its own
///                          HOST_DATA / MRCONFIGID is the digest of it before it trusts a byte of it
/// ```
public struct ChannelOpen: Sendable, Hashable {
    public var channel: String
    public var initiatorRole: Bool
    public var initiator: String
    public var responder: String
    public var manifest: [UInt8]

    public init(channel: String, initiatorRole: Bool, initiator: String, responder: String, manifest: [UInt8]) {
        self.channel = channel
        self.initiatorRole = initiatorRole
        self.initiator = initiator
        self.responder = responder
        self.manifest = manifest
    }

    /// The other end's instance name.
    public var peer: String { initiatorRole ? responder : initiator }

    func encode(into writer: inout FrameWriter) {
        writer.text(channel)
        writer.bytes.append(initiatorRole ? 0 : 1)
        writer.text(initiator)
        writer.text(responder)
        writer.bytes(manifest)
    }

    init(reading reader: inout FrameReader) throws(BinaryFormatError) {
        channel = try reader.nonEmptyName("channel id")
        let role = try reader.u8("role")
        guard role <= 1 else {
            throw BinaryFormatError(.invalidValue, field: "role", offset: reader.cursor.offset, "\(role) (0 or 1)")
        }
        initiatorRole = role == 0
        initiator = try reader.nonEmptyName("initiator")
        responder = try reader.nonEmptyName("responder")
        manifest = try reader.bytes("manifest", maximum: ChannelMessageLimits.maximumManifest)
    }
}

/// guest → host (0xA0): what happened on one channel, as the agent reports it. Never plaintext: lengths, counts and
/// reasons only.
///
/// ```
/// text  channel id
/// text  event            handshake-started | established | sent | received | echoed | closed | failed
/// text  detail           at most 1024 bytes (a reason, the peer's verified measurement ...)
/// u64be records sent, records received (the agent's own counters)
/// u64be micros           for `echoed`: the round trip as the agent measured it; for `established`: the handshake
///                        from `channelOpen` on, this child's evidence and its check of the peer's included; else 0
/// ```
public struct ChannelEvent: Sendable, Hashable {
    public var channel: String
    public var event: String
    public var detail: String
    public var recordsSent: UInt64
    public var recordsReceived: UInt64
    public var micros: UInt64

    public init(
        channel: String, event: String, detail: String, recordsSent: UInt64 = 0, recordsReceived: UInt64 = 0,
        micros: UInt64 = 0
    ) {
        self.channel = channel
        self.event = event
        var detail = detail
        while detail.utf8.count > ChannelMessageLimits.maximumDetail { detail.removeLast() }
        self.detail = detail
        self.recordsSent = recordsSent
        self.recordsReceived = recordsReceived
        self.micros = micros
    }

    func encode(into writer: inout FrameWriter) {
        writer.text(channel)
        writer.text(event)
        writer.text(detail)
        writer.u64(recordsSent)
        writer.u64(recordsReceived)
        writer.u64(micros)
    }

    init(reading reader: inout FrameReader) throws(BinaryFormatError) {
        channel = try reader.nonEmptyName("channel id")
        event = try reader.nonEmptyName("event")
        detail = try reader.text("detail", maximum: ChannelMessageLimits.maximumDetail)
        recordsSent = try reader.u64("records sent")
        recordsReceived = try reader.u64("records received")
        micros = try reader.u64("micros")
    }
}

extension FrameReader {
    /// Text of 1 to 255 bytes.
    mutating func nonEmptyName(_ field: String) throws(BinaryFormatError) -> String {
        let value = try text(field, maximum: ChannelMessageLimits.maximumName)
        guard !value.isEmpty else {
            throw BinaryFormatError(.invalidValue, field: field, offset: cursor.offset, "empty")
        }
        return value
    }
}

extension GuestMessage {
    static func decodeChannel(_ kind: Kind, _ reader: inout FrameReader) throws(BinaryFormatError) -> GuestMessage {
        switch kind {
        case .channelOpen:
            return .channelOpen(try ChannelOpen(reading: &reader))
        case .channelSend:
            let channel = try reader.nonEmptyName("channel id")
            let data = try reader.bytes("message", maximum: ChannelMessageLimits.maximumMessage)
            let echo = try reader.u8("echo")
            guard echo <= 1 else {
                throw BinaryFormatError(.invalidValue, field: "echo", offset: reader.cursor.offset, "\(echo) (0 or 1)")
            }
            return .channelSend(channel: channel, data: data, echo: echo == 1)
        case .channelClose:
            return .channelClose(channel: try reader.nonEmptyName("channel id"))
        case .channelEvent:
            return .channelEvent(try ChannelEvent(reading: &reader))
        default:
            throw BinaryFormatError(.invalidValue, field: "message type", offset: 0, "\(kind) is not a channel message")
        }
    }
}
