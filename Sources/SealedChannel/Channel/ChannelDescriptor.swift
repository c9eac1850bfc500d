/// Which end of a channel a party is: the Noise initiator or the responder.
public enum ChannelRole: String, Sendable, Hashable, CaseIterable {
    case initiator, responder

    /// The byte that names this role in a channel binding and in record associated data.
    public var wireValue: UInt8 {
        switch self {
        case .initiator: 0x49  // "I"
        case .responder: 0x52  // "R"
        }
    }

    public var peer: ChannelRole { self == .initiator ? .responder : .initiator }
}

/// The record layer's limits, agreed by being part of the prologue: two ends configured differently fail the
/// handshake instead of falling out of step at the first rekey.
public struct RecordLimits: Sendable, Hashable {
    /// The largest record body one frame carries. A frame after its length prefix is one type byte, the body's
    /// ciphertext and the tag, and it is kept within Noise's 65535-byte transport message, so the body is at most
    /// 65518 bytes.
    public var maximumRecordBody: Int
    /// Rekey a direction after this many records under one key.
    public var rekeyAfterRecords: UInt64
    /// Rekey a direction after this many ciphertext bytes under one key.
    public var rekeyAfterBytes: UInt64

    public static let noiseMaximumRecordBody = NoiseHandshakeState.maximumMessageLength - 1 - NoiseCipher.tagLength

    public init(
        maximumRecordBody: Int = RecordLimits.noiseMaximumRecordBody, rekeyAfterRecords: UInt64 = 1 << 20,
        rekeyAfterBytes: UInt64 = 1 << 30
    ) throws(SealedChannelError) {
        guard (1...Self.noiseMaximumRecordBody).contains(maximumRecordBody) else {
            throw SealedChannelError(
                .unsupported,
                "a record body must be 1 to \(Self.noiseMaximumRecordBody) bytes, not \(maximumRecordBody)")
        }
        guard rekeyAfterRecords > 0, rekeyAfterBytes > 0 else {
            throw SealedChannelError(.unsupported, "rekey budgets must be positive")
        }
        self.maximumRecordBody = maximumRecordBody
        self.rekeyAfterRecords = rekeyAfterRecords
        self.rekeyAfterBytes = rekeyAfterBytes
    }

    /// 65518-byte records; rekey every 2^20 records or 1 GiB per direction.
    public static let standard = RecordLimits(
        unchecked: noiseMaximumRecordBody, rekeyAfterRecords: 1 << 20, rekeyAfterBytes: 1 << 30)

    private init(unchecked maximumRecordBody: Int, rekeyAfterRecords: UInt64, rekeyAfterBytes: UInt64) {
        self.maximumRecordBody = maximumRecordBody
        self.rekeyAfterRecords = rekeyAfterRecords
        self.rekeyAfterBytes = rekeyAfterBytes
    }

    /// The largest frame ciphertext these limits allow.
    public var maximumCiphertext: Int { maximumRecordBody + 1 + NoiseCipher.tagLength }
}

/// What both ends must agree on before the first byte: the channel's id, who initiates, who responds, the record
/// limits. All of it is the Noise prologue, so a host that presents the two ends with different views of the channel
/// makes the handshake fail.
public struct ChannelDescriptor: Sendable, Hashable {
    /// The protocol label at the start of the prologue.
    public static let protocolLabel = Array("cmk-sealed-channel/v2".utf8) + [0]

    /// The channel's identifier (UTF-8, 1 to 255 bytes), unique per channel the coordinator sets up.
    public let channelID: String
    /// The initiating instance's name (1 to 255 bytes).
    public let initiator: String
    /// The responding instance's name (1 to 255 bytes).
    public let responder: String
    public let limits: RecordLimits

    public init(
        channelID: String, initiator: String, responder: String, limits: RecordLimits = .standard
    )
        throws(SealedChannelError)
    {
        for (what, value) in [("channel id", channelID), ("initiator", initiator), ("responder", responder)] {
            guard (1...255).contains(value.utf8.count) else {
                throw SealedChannelError(.unsupported, "the \(what) must be 1 to 255 bytes of UTF-8")
            }
        }
        guard initiator != responder else {
            throw SealedChannelError(.unsupported, "an instance cannot open a channel with itself (\(initiator))")
        }
        self.channelID = channelID
        self.initiator = initiator
        self.responder = responder
        self.limits = limits
    }

    /// The name of the instance in `role`.
    public func name(of role: ChannelRole) -> String { role == .initiator ? initiator : responder }

    /// The Noise prologue: label ‖ u8 len ‖ channel id ‖ u8 len ‖ initiator ‖ u8 len ‖ responder ‖
    /// u32be maximum record body ‖ u64be rekey-after-records ‖ u64be rekey-after-bytes.
    public var prologue: [UInt8] {
        var bytes = Self.protocolLabel
        for text in [channelID, initiator, responder] {
            bytes.append(UInt8(text.utf8.count))
            bytes += text.utf8
        }
        bytes.appendBigEndian(UInt32(limits.maximumRecordBody))
        bytes.appendBigEndian(limits.rekeyAfterRecords)
        bytes.appendBigEndian(limits.rekeyAfterBytes)
        return bytes
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: T.bitWidth - 8, through: 0, by: -8) {
            append(UInt8(truncatingIfNeeded: value >> T(shift)))
        }
    }
}
