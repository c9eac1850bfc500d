public import BinaryFormat

/// The first record of a crypto-agile event log: a TCG_PCClientPCREvent (TCG PC Client Platform Firmware
/// Profile rev 1.05, §10.2.1 "TCG_PCClientPCREvent Structure", the SHA-1 log format) of type EV_NO_ACTION
/// whose event is a TCG_EfiSpecIdEvent (§10.4.5.1 "Specification ID Version Event", the
/// TCG_EfiSpecIdEventStruct table) with the signature "Spec ID Event03".
///
/// The Spec ID event declares which hash algorithms every later TCG_PCR_EVENT2 carries and how long each
/// digest is: the log cannot be read without it. Parsing rejects a header of another type, a non-zero
/// SHA-1 digest, another signature, a spec version other than 2.x, a UINTN size other than 1 (32-bit) or
/// 2 (64-bit), no algorithms or more than ``maximumAlgorithms``, the same algorithm declared twice, a digest
/// size of zero or above ``maximumDigestSize``, a digest size that contradicts the algorithm registry
/// (SHA-256 must be 32 bytes), and an event size that does not end exactly after the vendor information.
public struct TCGSpecIDEvent: Sendable, Hashable {
    /// Offsets and sizes of the TCG_PCClientPCREvent header record (absolute: it is the log's first record).
    public enum RecordLayout {
        public static let pcrIndex = 0
        public static let eventType = 4
        public static let digest = 8, digestSize = 20
        public static let eventSize = 28
        public static let event = 32
        /// The fixed part before the event data.
        public static let fixedSize = 32
    }

    /// Offsets and sizes inside the TCG_EfiSpecIdEvent, relative to the start of the event data.
    public enum EventLayout {
        public static let signature = 0, signatureSize = 16
        public static let platformClass = 16
        public static let specVersionMinor = 20
        public static let specVersionMajor = 21
        public static let specErrata = 22
        public static let uintnSize = 23
        public static let numberOfAlgorithms = 24
        public static let digestSizes = 28
        /// One TCG_EfiSpecIdEventAlgorithmSize: u16 algorithmId, u16 digestSize.
        public static let algorithmEntrySize = 4
        /// The smallest possible event: one algorithm and no vendor information.
        public static let minimumSize = digestSizes + algorithmEntrySize + 1
    }

    /// "Spec ID Event03" with its NUL terminator.
    public static let signature: [UInt8] = Array("Spec ID Event03".utf8) + [0]
    /// The spec version this format belongs to (Family "2.0").
    public static let specVersionMajor: UInt8 = 2
    /// UINTN sizes the profile defines: 1 = UINT32, 2 = UINT64.
    public static let uintnSizes: Set<UInt8> = [1, 2]
    /// Upper bound on declared algorithms (the registry defines fewer than a dozen hash algorithms).
    public static let maximumAlgorithms = 16
    /// Upper bound on a declared digest size (the largest TPM digest, SHA-512 or SHA3-512, is 64 bytes).
    public static let maximumDigestSize = 64
    /// Upper bound on the Spec ID event's size: every algorithm, the vendor-size byte, 255 vendor bytes.
    public static let maximumEventSize =
        EventLayout.digestSizes + maximumAlgorithms * EventLayout.algorithmEntrySize + 1 + Int(UInt8.max)

    /// One declared bank: an algorithm and the size of its digests in this log.
    public struct AlgorithmSize: Sendable, Hashable, Codable {
        public let algorithm: TCGAlgorithm
        public let digestSize: Int
    }

    /// The header record's exact bytes.
    public let bytes: [UInt8]
    /// The header's PCR (or MR) index: 0 in TPM logs; TDX firmware writes 1 (see the CCEL vector).
    public let pcrIndex: UInt32
    public let platformClass: UInt32
    public let specVersionMinor: UInt8
    public let specVersionMajor: UInt8
    public let specErrata: UInt8
    /// 1 = UINT32, 2 = UINT64.
    public let uintnSize: UInt8
    /// The declared banks, in log order.
    public let algorithms: [AlgorithmSize]
    public let vendorInfo: [UInt8]

    /// The declared digest size of `algorithm`, nil when the header does not declare it.
    public func digestSize(of algorithm: TCGAlgorithm) -> Int? {
        algorithms.first { $0.algorithm == algorithm }?.digestSize
    }

    /// Reads the header record at the cursor and moves past it.
    public init(from cursor: inout ByteCursor) throws(BinaryFormatError) {
        var c = cursor
        let start = c.offset
        pcrIndex = try c.readLittleEndian(field: "TCG_PCClientPCREvent.pcrIndex")
        let typeOffset = c.offset
        let type = TCGEventType(rawValue: try c.readLittleEndian(field: "TCG_PCClientPCREvent.eventType"))
        guard type == .noAction else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_PCClientPCREvent.eventType", offset: typeOffset,
                "the first record is \(type), not EV_NO_ACTION: this is not a TCG crypto-agile event log")
        }
        try c.readReserved(RecordLayout.digestSize, field: "TCG_PCClientPCREvent.digest")
        let sizeOffset = c.offset
        let eventSize: UInt32 = try c.readLittleEndian(field: "TCG_PCClientPCREvent.eventSize")
        guard eventSize >= EventLayout.minimumSize, eventSize <= Self.maximumEventSize else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_PCClientPCREvent.eventSize", offset: sizeOffset,
                "a Spec ID event is \(EventLayout.minimumSize) to \(Self.maximumEventSize) bytes, this one claims \(eventSize)")
        }
        var e = try c.readCursor(Int(eventSize), field: "TCG_EfiSpecIdEvent")
        let signatureOffset = e.offset
        let signature = try e.readBytes(EventLayout.signatureSize, field: "TCG_EfiSpecIdEvent.signature")
        guard signature == Self.signature else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_EfiSpecIdEvent.signature", offset: signatureOffset,
                "the first event is not \"Spec ID Event03\" (a SHA-1-only TPM 1.2 log or not an event log)")
        }
        platformClass = try e.readLittleEndian(field: "TCG_EfiSpecIdEvent.platformClass")
        specVersionMinor = try e.readUInt8(field: "TCG_EfiSpecIdEvent.specVersionMinor")
        let majorOffset = e.offset
        specVersionMajor = try e.readUInt8(field: "TCG_EfiSpecIdEvent.specVersionMajor")
        guard specVersionMajor == Self.specVersionMajor else {
            throw BinaryFormatError(
                .unsupported, field: "TCG_EfiSpecIdEvent.specVersionMajor", offset: majorOffset,
                "spec version \(specVersionMajor).\(specVersionMinor) is not the crypto-agile format 2.x")
        }
        specErrata = try e.readUInt8(field: "TCG_EfiSpecIdEvent.specErrata")
        let uintnOffset = e.offset
        uintnSize = try e.readUInt8(field: "TCG_EfiSpecIdEvent.uintnSize")
        guard Self.uintnSizes.contains(uintnSize) else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_EfiSpecIdEvent.uintnSize", offset: uintnOffset,
                "uintnSize \(uintnSize) is neither 1 (UINT32) nor 2 (UINT64)")
        }
        let countOffset = e.offset
        let count: UInt32 = try e.readLittleEndian(field: "TCG_EfiSpecIdEvent.numberOfAlgorithms")
        guard count >= 1, count <= Self.maximumAlgorithms else {
            throw BinaryFormatError(
                .invalidValue, field: "TCG_EfiSpecIdEvent.numberOfAlgorithms", offset: countOffset,
                "\(count) algorithms declared; a log declares 1 to \(Self.maximumAlgorithms)")
        }
        var algorithms: [AlgorithmSize] = []
        for index in 0..<Int(count) {
            let field = "TCG_EfiSpecIdEvent.digestSizes[\(index)]"
            let idOffset = e.offset
            let algorithm = TCGAlgorithm(rawValue: try e.readLittleEndian(field: field + ".algorithmId"))
            guard !algorithms.contains(where: { $0.algorithm == algorithm }) else {
                throw BinaryFormatError(
                    .invalidValue, field: field + ".algorithmId", offset: idOffset, "\(algorithm) is declared twice")
            }
            let sizeOffset = e.offset
            let size = Int(try e.readLittleEndian(UInt16.self, field: field + ".digestSize"))
            guard size >= 1, size <= Self.maximumDigestSize else {
                throw BinaryFormatError(
                    .invalidValue, field: field + ".digestSize", offset: sizeOffset,
                    "digest size \(size) for \(algorithm) is outside 1 to \(Self.maximumDigestSize)")
            }
            if let registered = algorithm.digestSize, registered != size {
                throw BinaryFormatError(
                    .invalidValue, field: field + ".digestSize", offset: sizeOffset,
                    "\(algorithm) digests are \(registered) bytes, the header declares \(size)")
            }
            algorithms.append(AlgorithmSize(algorithm: algorithm, digestSize: size))
        }
        self.algorithms = algorithms
        let vendorSize = Int(try e.readUInt8(field: "TCG_EfiSpecIdEvent.vendorInfoSize"))
        vendorInfo = try e.readBytes(vendorSize, field: "TCG_EfiSpecIdEvent.vendorInfo")
        try e.expectEnd(field: "TCG_EfiSpecIdEvent")
        bytes = try c.bytesRead(since: start, field: "TCG_PCClientPCREvent")
        cursor = c
    }
}
