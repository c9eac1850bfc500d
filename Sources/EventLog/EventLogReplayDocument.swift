public import BinaryFormat

/// What `cmk measure replay` prints: the log's header, every replayed register per bank, for a CCEL log the
/// CCEL table and RTMR0–3 by name, and optionally every event (JSON and text).
public struct EventLogReplayDocument: Sendable, Codable {
    public struct Algorithm: Sendable, Codable {
        public let algorithm: TCGAlgorithm
        public let id: String
        public let digestSize: Int
    }

    public struct Register: Sendable, Codable {
        public let index: UInt32
        /// `PCR7`, or for a CCEL log `RTMR0` ... (MR index 0 is `MRTD`).
        public let name: String
        public let value: HexBytes
        public let eventCount: Int
    }

    public struct Bank: Sendable, Codable {
        public let algorithm: TCGAlgorithm
        public let registers: [Register]
    }

    public struct CCEL: Sendable, Codable {
        public let ccType: UInt8
        public let ccTypeName: String
        public let ccSubtype: UInt8
        public let oemID: String
        public let oemTableID: String
        public let logAreaMinimumLength: UInt64
        public let logAreaStartAddress: UInt64
    }

    public struct TDX: Sendable, Codable {
        public let rtmr0: HexBytes
        public let rtmr1: HexBytes
        public let rtmr2: HexBytes
        public let rtmr3: HexBytes
    }

    public struct Event: Sendable, Codable {
        public let sequence: Int
        public let offset: Int
        public let pcrIndex: UInt32
        public let register: String
        public let eventType: UInt32
        public let eventTypeName: String
        public let measured: Bool
        public let digests: [TCGDigest]
        public let eventSize: Int
        public let event: HexBytes
    }

    public let format: String
    public let specVersion: String
    public let uintnSize: Int
    public let algorithms: [Algorithm]
    public let eventCount: Int
    public let endOffset: Int
    public let termination: TCGEventLog.Termination
    public let startupLocality: UInt8?
    public let banks: [Bank]
    /// Declared banks cmk cannot hash.
    public let skippedAlgorithms: [TCGAlgorithm]
    public let ccel: CCEL?
    public let tdx: TDX?
    public let events: [Event]?

    /// Builds the document; with a CCEL table, checks it is TDX's and replays RTMR0–3 (which can throw).
    public init(log: TCGEventLog, ccelTable: CCELTable? = nil, includeEvents: Bool = false) throws(BinaryFormatError) {
        let isCCEL = ccelTable != nil
        func registerName(_ index: UInt32) -> String {
            guard isCCEL else { return "PCR\(index)" }
            return TDXRegister(ccMRIndex: index)?.description ?? "MR\(index)"
        }
        let replay = log.replay()
        format = "tcg-crypto-agile"
        specVersion = "\(log.header.specVersionMajor).\(log.header.specVersionMinor) errata \(log.header.specErrata)"
        uintnSize = log.header.uintnSize == 1 ? 32 : 64
        algorithms = log.header.algorithms.map {
            Algorithm(algorithm: $0.algorithm, id: "0x" + hex4($0.algorithm.rawValue), digestSize: $0.digestSize)
        }
        eventCount = log.events.count
        endOffset = log.endOffset
        termination = log.termination
        startupLocality = log.startupLocality
        banks = replay.banks.map { bank in
            Bank(
                algorithm: bank.algorithm,
                registers: bank.registers.map {
                    Register(index: $0.index, name: registerName($0.index), value: $0.value, eventCount: $0.eventCount)
                })
        }
        skippedAlgorithms = replay.skippedAlgorithms
        if let ccelTable {
            let registers = try TDXMeasurementRegisters(log: log, table: ccelTable)
            ccel = CCEL(
                ccType: ccelTable.ccType.rawValue, ccTypeName: ccelTable.ccType.description,
                ccSubtype: ccelTable.ccSubtype, oemID: CCELTable.text(ccelTable.oemID),
                oemTableID: CCELTable.text(ccelTable.oemTableID),
                logAreaMinimumLength: ccelTable.logAreaMinimumLength,
                logAreaStartAddress: ccelTable.logAreaStartAddress)
            tdx = TDX(rtmr0: registers.rtmr0, rtmr1: registers.rtmr1, rtmr2: registers.rtmr2, rtmr3: registers.rtmr3)
        } else {
            ccel = nil
            tdx = nil
        }
        events = includeEvents
            ? log.events.map { event in
                Event(
                    sequence: event.sequence, offset: event.offset, pcrIndex: event.pcrIndex,
                    register: registerName(event.pcrIndex), eventType: event.eventType.rawValue,
                    eventTypeName: event.eventType.description, measured: event.isMeasured, digests: event.digests,
                    eventSize: event.eventData.count, event: HexBytes(event.eventData))
            } : nil
    }

    /// The document as text lines.
    public var lines: [String] {
        var lines: [String] = []
        let banksText = algorithms.map { "\($0.algorithm) (\($0.id), \($0.digestSize) bytes)" }.joined(separator: ", ")
        lines.append("TCG crypto-agile event log, spec \(specVersion), UINTN \(uintnSize)-bit")
        lines.append("  banks        \(banksText)")
        lines.append("  events       \(eventCount), ending at offset 0x\(String(endOffset, radix: 16)) (\(termination.rawValue))")
        if let startupLocality { lines.append("  startup      locality \(startupLocality) (PCR 0 starts at \(startupLocality))") }
        if !skippedAlgorithms.isEmpty {
            lines.append("  not replayed \(skippedAlgorithms.map(\.description).joined(separator: ", ")) (cmk cannot hash them)")
        }
        if let ccel {
            lines.append(
                "CCEL table: CC type \(ccel.ccType) (\(ccel.ccTypeName)), subtype \(ccel.ccSubtype), OEM \(ccel.oemID)/\(ccel.oemTableID), "
                    + "log area \(ccel.logAreaMinimumLength) bytes at 0x\(String(ccel.logAreaStartAddress, radix: 16))")
        }
        for bank in banks {
            lines.append("\(bank.algorithm):")
            let width = bank.registers.map(\.name.count).max() ?? 0
            for register in bank.registers {
                let pad = String(repeating: " ", count: width - register.name.count)
                let plural = register.eventCount == 1 ? "event" : "events"
                lines.append("  \(register.name)\(pad)  \(register.value)  (\(register.eventCount) \(plural))")
            }
        }
        if let tdx {
            lines.append("TDX registers (MRTD is measured by the TDX module, not logged):")
            for (name, value) in [("RTMR0", tdx.rtmr0), ("RTMR1", tdx.rtmr1), ("RTMR2", tdx.rtmr2), ("RTMR3", tdx.rtmr3)] {
                lines.append("  \(name)  \(value)")
            }
        }
        if let events {
            lines.append("Events:")
            for event in events {
                let digests = event.digests.map { "\($0.algorithm):\(String($0.digest.description.prefix(16)))…" }
                lines.append(
                    "  #\(event.sequence) @0x\(String(event.offset, radix: 16)) \(event.register) \(event.eventTypeName) "
                        + "\(digests.joined(separator: " ")) \(event.eventSize) bytes \(Self.summary(event.event.bytes))")
            }
        }
        return lines
    }

    /// Event data as quoted text when it is printable ASCII (EV_EFI_ACTION, GRUB commands), otherwise hex;
    /// shortened to 64 characters.
    static func summary(_ data: [UInt8]) -> String {
        let limit = 64
        var text = data
        while text.last == 0 { text.removeLast() }
        if !text.isEmpty, text.allSatisfy({ (0x20..<0x7F).contains($0) }) {
            let string = String(decoding: text, as: UTF8.self)
            return "\"" + (string.count > limit ? String(string.prefix(limit)) + "…" : string) + "\""
        }
        let hex = Hex.encode(data.prefix(limit / 2))
        return data.count > limit / 2 ? hex + "…" : hex
    }
}
