import BinaryFormat

/// Bounds of the workload messages (0x40-0x42 host → guest, 0xC0 guest → host; docs/guest-protocol.md).
public enum WorkloadMessageLimits {
    /// One request or response of the demo workload (a text line without its newline).
    public static let maximumRequest = 8 << 10
    /// A response (a value is at most ``maximumRequest`` too, plus the `OK ` prefix).
    public static let maximumResponse = 9 << 10
}

extension GuestMessage {
    static func decodeWorkload(_ kind: Kind, _ reader: inout FrameReader) throws(BinaryFormatError) -> GuestMessage {
        switch kind {
        case .workloadRequest:
            let id = try reader.u64("request id")
            return .workloadRequest(id: id, request: try reader.bytes("request", maximum: WorkloadMessageLimits.maximumRequest))
        case .workloadResponse:
            let id = try reader.u64("request id")
            return .workloadResponse(
                id: id, response: try reader.bytes("response", maximum: WorkloadMessageLimits.maximumResponse))
        case .stateExport:
            return .stateExport(channel: try reader.nonEmptyName("channel id"))
        case .stateImport:
            return .stateImport(channel: try reader.nonEmptyName("channel id"))
        default:
            throw BinaryFormatError(.invalidValue, field: "message type", offset: 0, "\(kind) is not a workload message")
        }
    }
}
