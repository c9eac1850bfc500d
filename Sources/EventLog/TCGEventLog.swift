public import BinaryFormat

/// One digest of a TCG_PCR_EVENT2 (a TPMT_HA: u16 hashAlg, then the digest).
public struct TCGDigest: Sendable, Hashable, Codable {
    public let algorithm: TCGAlgorithm
    public let digest: HexBytes

    public init(algorithm: TCGAlgorithm, digest: HexBytes) {
        self.algorithm = algorithm
        self.digest = digest
    }
}

/// One TCG_PCR_EVENT2 record (TCG PC Client Platform Firmware Profile rev 1.05, §10.2.2 "TCG_PCR_EVENT2
/// Structure"): u32 pcrIndex, u32 eventType, TPML_DIGEST_VALUES (u32 count, count × TPMT_HA), u32 eventSize,
/// event. In a CCEL log the PCR index is a CC measurement-register index (see ``TDXMeasurementRegisters``).
public struct TCGEvent: Sendable, Hashable {
    /// Offsets and sizes of the fixed part, relative to the record's start.
    public enum Layout {
        public static let pcrIndex = 0
        public static let eventType = 4
        public static let digestCount = 8
        public static let digests = 12
        /// TPMT_HA.hashAlg before each digest.
        public static let hashAlgSize = 2
        /// u32 eventSize after the digests.
        public static let eventSizeSize = 4
    }

    /// The position of this record among the TCG_PCR_EVENT2 records (0 = the first after the Spec ID header).
    public let sequence: Int
    /// The absolute offset of the record in the log.
    public let offset: Int
    /// The record's exact bytes, as received.
    public let bytes: [UInt8]
    /// The PCR index (TPM log) or measurement-register index (CCEL log).
    public let pcrIndex: UInt32
    public let eventType: TCGEventType
    /// The digests in record order, one for each algorithm the Spec ID event declared.
    public let digests: [TCGDigest]
    /// The event data, exactly as logged.
    public let eventData: [UInt8]

    /// The digest for `algorithm`, nil when the record carries none.
    public func digest(for algorithm: TCGAlgorithm) -> [UInt8]? {
        digests.first { $0.algorithm == algorithm }?.digest.bytes
    }

    /// Whether replay extends this event (every type except EV_NO_ACTION).
    public var isMeasured: Bool { eventType != .noAction }
}

/// A TCG PC Client crypto-agile event log, the TPM 2.0 `binary_bios_measurements` format and the format of
/// the log a CCEL table points to (TCG PC Client Platform Firmware Profile rev 1.05, §10.2 "Event Log
/// Structures"): one TCG_PCClientPCREvent holding the Spec ID event (``TCGSpecIDEvent``), then
/// TCG_PCR_EVENT2 records (``TCGEvent``) until the input ends or padding starts.
///
/// Every record must carry exactly one digest for each algorithm the Spec ID event declared, with the
/// declared size: an undeclared algorithm, a repeated one, or a missing one is rejected, as is truncation
/// anywhere, a zero digest count, an event larger than ``maximumEventSize`` or more than ``maximumEvents``
/// records. A log ends at the end of the input, at a record whose PCR index is 0xFFFFFFFF or at a remainder
/// of 0xFF bytes (the erased flash a CCEL log area starts as), or at an all-zero remainder.
///
/// A TCG_EfiStartupLocalityEvent (EV_NO_ACTION, PCR 0, "StartupLocality\0" then the locality byte;
/// §10.4.5.3 "Startup Locality Event") sets ``startupLocality``; it may appear at most once.
public struct TCGEventLog: Sendable, Hashable {
    /// How the record sequence ended.
    public enum Termination: String, Sendable, Hashable, Codable {
        /// The last record ended at the last byte of the input.
        case endOfInput = "end-of-input"
        /// A record header with PCR index 0xFFFFFFFF, or a remainder of 0xFF bytes.
        case ffPadding = "ff-padding"
        /// A remainder of zero bytes.
        case zeroPadding = "zero-padding"
    }

    /// The PCR index that marks the end of a padded log.
    public static let terminatorPCRIndex: UInt32 = 0xFFFF_FFFF
    /// Upper bound on the records of one log (OVMF logs about 30, a CCEL area of 256 KiB holds a few thousand).
    public static let maximumEvents = 100_000
    /// Upper bound on one event's data (the largest real events, Secure Boot databases, are tens of KiB).
    public static let maximumEventSize = 16 << 20
    /// "StartupLocality" with its NUL terminator (TCG_EfiStartupLocalityEvent.Signature).
    public static let startupLocalitySignature: [UInt8] = Array("StartupLocality".utf8) + [0]
    /// A TCG_EfiStartupLocalityEvent: the 16-byte signature and the u8 StartupLocality.
    public static let startupLocalityEventSize = 17
    /// The localities a Startup Locality event may report: 0, 3, and 4 (the H-CRTM).
    public static let startupLocalities: Set<UInt8> = [0, 3, 4]

    /// The input, every byte, padding included.
    public let bytes: [UInt8]
    /// The first record: the Spec ID event.
    public let header: TCGSpecIDEvent
    /// The TCG_PCR_EVENT2 records, in log order.
    public let events: [TCGEvent]
    /// The absolute offset one past the last record (where padding starts, or the end of the input).
    public let endOffset: Int
    /// How the record sequence ended.
    public let termination: Termination
    /// The locality of TPM2_Startup, when the log holds a Startup Locality event.
    public let startupLocality: UInt8?

    /// The declared banks, in header order.
    public var algorithms: [TCGAlgorithm] { header.algorithms.map(\.algorithm) }

    /// Parses a log.
    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        var c = ByteCursor(bytes)
        let header = try TCGSpecIDEvent(from: &c)
        var events: [TCGEvent] = []
        var startupLocality: UInt8?
        let termination: Termination
        while true {
            if c.isAtEnd {
                termination = .endOfInput
                break
            }
            if c.peekUInt32() == Self.terminatorPCRIndex || c.remainderIsAll(0xFF) {
                termination = .ffPadding
                break
            }
            if c.remainderIsAll(0) {
                termination = .zeroPadding
                break
            }
            guard events.count < Self.maximumEvents else {
                throw BinaryFormatError(
                    .invalidValue, field: "TCG_PCR_EVENT2[\(events.count)]", offset: c.offset,
                    "more than \(Self.maximumEvents) events: not a boot event log")
            }
            let (event, locality) = try Self.readEvent(&c, sequence: events.count, header: header)
            if let locality {
                guard startupLocality == nil else {
                    throw BinaryFormatError(
                        .invalidValue, field: "TCG_PCR_EVENT2[\(event.sequence)].event", offset: event.offset,
                        "a second Startup Locality event: PCR 0 can start only once")
                }
                startupLocality = locality
            }
            events.append(event)
        }
        self.bytes = bytes
        self.header = header
        self.events = events
        self.endOffset = c.offset
        self.termination = termination
        self.startupLocality = startupLocality
    }

    /// Reads one TCG_PCR_EVENT2 at the cursor and moves past it; returns the startup locality when the
    /// record is a Startup Locality event.
    static func readEvent(_ cursor: inout ByteCursor, sequence: Int, header: TCGSpecIDEvent)
        throws(BinaryFormatError) -> (TCGEvent, startupLocality: UInt8?)
    {
        var c = cursor
        let start = c.offset
        let name = "TCG_PCR_EVENT2[\(sequence)]"
        let pcrIndex: UInt32 = try c.readLittleEndian(field: name + ".pcrIndex")
        let eventType = TCGEventType(rawValue: try c.readLittleEndian(field: name + ".eventType"))
        let countOffset = c.offset
        let count: UInt32 = try c.readLittleEndian(field: name + ".digests.count")
        guard count == header.algorithms.count else {
            throw BinaryFormatError(
                .invalidValue, field: name + ".digests.count", offset: countOffset,
                "\(count) digests, but the Spec ID event declares \(header.algorithms.count) banks "
                    + "(\(header.algorithms.map(\.algorithm.description).joined(separator: ", ")))")
        }
        var digests: [TCGDigest] = []
        for index in 0..<Int(count) {
            let field = "\(name).digests[\(index)]"
            let algorithmOffset = c.offset
            let algorithm = TCGAlgorithm(rawValue: try c.readLittleEndian(field: field + ".hashAlg"))
            guard let size = header.digestSize(of: algorithm) else {
                throw BinaryFormatError(
                    .invalidValue, field: field + ".hashAlg", offset: algorithmOffset,
                    "\(algorithm) (0x\(hex4(algorithm.rawValue))) is not declared by the Spec ID event")
            }
            guard !digests.contains(where: { $0.algorithm == algorithm }) else {
                throw BinaryFormatError(
                    .invalidValue, field: field + ".hashAlg", offset: algorithmOffset,
                    "a second \(algorithm) digest in one record")
            }
            let digest = try c.readBytes(size, field: field + ".digest")
            digests.append(TCGDigest(algorithm: algorithm, digest: HexBytes(digest)))
        }
        let sizeOffset = c.offset
        let eventSize: UInt32 = try c.readLittleEndian(field: name + ".eventSize")
        guard eventSize <= Self.maximumEventSize else {
            throw BinaryFormatError(
                .invalidValue, field: name + ".eventSize", offset: sizeOffset,
                "an event of \(eventSize) bytes exceeds the \(Self.maximumEventSize)-byte bound")
        }
        let data = try c.readCursor(Int(eventSize), field: name + ".event")
        var dataBytes = data
        let eventData = try dataBytes.readBytes(Int(eventSize), field: name + ".event")
        var locality: UInt8?
        if eventType == .noAction, eventData.starts(with: startupLocalitySignature) {
            guard pcrIndex == 0 else {
                throw BinaryFormatError(
                    .invalidValue, field: name + ".pcrIndex", offset: start + TCGEvent.Layout.pcrIndex,
                    "a Startup Locality event belongs to PCR 0, not \(pcrIndex)")
            }
            locality = try startupLocality(in: data)
        }
        let record = try c.bytesRead(since: start, field: name)
        cursor = c
        let event = TCGEvent(
            sequence: sequence, offset: start, bytes: record, pcrIndex: pcrIndex, eventType: eventType,
            digests: digests, eventData: eventData)
        return (event, locality)
    }

    /// Reads a TCG_EfiStartupLocalityEvent (the whole event data) and returns its locality.
    static func startupLocality(in data: ByteCursor) throws(BinaryFormatError) -> UInt8 {
        var d = data
        _ = try d.readBytes(startupLocalitySignature.count, field: "TCG_EfiStartupLocalityEvent.Signature")
        let localityOffset = d.offset
        let locality = try d.readUInt8(field: "TCG_EfiStartupLocalityEvent.StartupLocality")
        try d.expectEnd(field: "TCG_EfiStartupLocalityEvent")
        guard startupLocalities.contains(locality) else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_EfiStartupLocalityEvent.StartupLocality", offset: localityOffset,
                "startup locality \(locality) is not 0, 3 or 4")
        }
        return locality
    }
}
