public import BinaryFormat

/// A TDX measurement register as a CCEL log names it: the CC measurement-register index in each
/// TCG_PCR_EVENT2's pcrIndex field is 0 = MRTD, 1 = RTMR0, 2 = RTMR1, 3 = RTMR2, 4 = RTMR3 (TD-Shim spec
/// Table 3.5-3 "MrIndex"; EDK2 `MapPcrToMrIndex`; docs: TDX.md §8). The index is one more than the RTMR
/// number.
public enum TDXRegister: UInt32, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case mrtd = 0
    case rtmr0 = 1
    case rtmr1 = 2
    case rtmr2 = 3
    case rtmr3 = 4

    /// The register a CC measurement-register index names, nil for an index TDX does not define.
    public init?(ccMRIndex: UInt32) { self.init(rawValue: ccMRIndex) }

    /// The CC measurement-register index.
    public var ccMRIndex: UInt32 { rawValue }

    /// `MRTD`, `RTMR0` ... `RTMR3`.
    public var description: String {
        switch self {
        case .mrtd: "MRTD"
        case .rtmr0: "RTMR0"
        case .rtmr1: "RTMR1"
        case .rtmr2: "RTMR2"
        case .rtmr3: "RTMR3"
        }
    }
}

/// RTMR0–RTMR3 as a CCEL event log implies them: the SHA-384 bank of the log replayed
/// (`RTMR[i] = SHA-384(RTMR[i] ‖ digest48)`, initial zero; TDX.md §8), with MR index i + 1 feeding RTMR i.
///
/// MRTD cannot be replayed: the TDX module builds it from the pages added to the TD, not from events, so
/// a measured event at MR index 0 is rejected, as is an index above 4 and a log without a SHA-384 bank.
/// A register no event extends keeps its initial value, 48 zero bytes (RTMR3 until the OS extends it).
public struct TDXMeasurementRegisters: Sendable, Hashable, Codable {
    /// The size of an RTMR (SHA-384).
    public static let registerSize = 48

    public let rtmr0: HexBytes
    public let rtmr1: HexBytes
    public let rtmr2: HexBytes
    public let rtmr3: HexBytes

    /// RTMR0 ... RTMR3 in order.
    public var rtmrs: [HexBytes] { [rtmr0, rtmr1, rtmr2, rtmr3] }

    /// Replays the SHA-384 bank of a CCEL log.
    public init(log: TCGEventLog) throws(BinaryFormatError) {
        guard log.header.digestSize(of: .sha384) != nil else {
            throw BinaryFormatError(
                .unsupported, field: "TCG_EfiSpecIdEvent.digestSizes", offset: TCGSpecIDEvent.RecordLayout.event,
                "the log declares no SHA-384 bank (\(log.algorithms.map(\.description).joined(separator: ", "))): "
                    + "RTMRs are SHA-384")
        }
        for event in log.events where event.isMeasured {
            let register = TDXRegister(ccMRIndex: event.pcrIndex)
            guard let register, register != .mrtd else {
                throw BinaryFormatError(
                    .invalidValue, field: "TCG_PCR_EVENT2[\(event.sequence)].pcrIndex",
                    offset: event.offset + TCGEvent.Layout.pcrIndex,
                    register == .mrtd
                        ? "an event extends MR index 0 (MRTD), which only the TDX module measures"
                        : "MR index \(event.pcrIndex) names no TDX register (1 to 4 are RTMR0 to RTMR3)")
            }
        }
        let bank = log.replay().bank(.sha384)
        let zero = HexBytes([UInt8](repeating: 0, count: Self.registerSize))
        func value(_ register: TDXRegister) -> HexBytes { bank?.value(at: register.ccMRIndex) ?? zero }
        rtmr0 = value(.rtmr0)
        rtmr1 = value(.rtmr1)
        rtmr2 = value(.rtmr2)
        rtmr3 = value(.rtmr3)
    }

    /// Replays a CCEL log after checking that the table belongs to TDX and the log fits its area.
    public init(log: TCGEventLog, table: CCELTable) throws(BinaryFormatError) {
        guard table.ccType == .tdx else {
            throw BinaryFormatError(
                .unsupported, field: "CC Type", offset: CCELTable.Layout.ccType,
                "the CCEL table's CC type is \(table.ccType), not TDX (2)")
        }
        try table.validate(logArea: log.bytes)
        try self.init(log: log)
    }
}
