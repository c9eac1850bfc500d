public import BinaryFormat

/// The ACPI Confidential Computing Event Log table, signature "CCEL" (ACPI 6.5, §5.2.34 "CC Event Log ACPI
/// Table", the CCEL table layout; the same layout as TD-Shim spec Table 3.5-3), revision 1, exactly 56 bytes:
/// the 36-byte ACPI System Description Table header, then CC Type (u8), CC Subtype (u8), two reserved bytes,
/// the Log Area Minimum Length (LAML, u64) and the Log Area Start Address (LASA, u64), little-endian.
///
/// Parsing rejects another signature, a length that is not 56 or not the size of the input, another
/// revision, a checksum such that the bytes do not sum to zero modulo 256, and non-zero reserved bytes.
/// The table says where the guest firmware put its event log; the log itself is a ``TCGEventLog``.
public struct CCELTable: Sendable, Hashable {
    /// Offsets and sizes of every field.
    public enum Layout {
        public static let signature = 0, signatureSize = 4
        public static let length = 4
        public static let revision = 8
        public static let checksum = 9
        public static let oemID = 10, oemIDSize = 6
        public static let oemTableID = 16, oemTableIDSize = 8
        public static let oemRevision = 24
        public static let creatorID = 28, creatorIDSize = 4
        public static let creatorRevision = 32
        /// The end of the System Description Table header.
        public static let headerSize = 36
        public static let ccType = 36
        public static let ccSubtype = 37
        public static let reserved = 38, reservedSize = 2
        public static let logAreaMinimumLength = 40
        public static let logAreaStartAddress = 48
        public static let size = 56
    }

    /// The table signature.
    public static let signature: [UInt8] = Array("CCEL".utf8)
    /// The revision this layout belongs to.
    public static let revision: UInt8 = 1

    /// The confidential-computing technology that wrote the log (ACPI 6.5, CCEL "CC Type").
    public struct CCType: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// AMD SEV.
        public static let sev = CCType(rawValue: 1)
        /// Intel TDX.
        public static let tdx = CCType(rawValue: 2)

        public var name: String? {
            switch self {
            case .sev: "SEV"
            case .tdx: "TDX"
            default: nil
            }
        }

        public var description: String { name ?? "reserved(\(rawValue))" }
    }

    /// All 56 bytes as received.
    public let bytes: [UInt8]
    public let length: UInt32
    public let tableRevision: UInt8
    public let checksum: UInt8
    public let oemID: [UInt8]
    public let oemTableID: [UInt8]
    public let oemRevision: UInt32
    public let creatorID: [UInt8]
    public let creatorRevision: UInt32
    public let ccType: CCType
    public let ccSubtype: UInt8
    /// LAML: the size of the log area, in bytes.
    public let logAreaMinimumLength: UInt64
    /// LASA: the guest-physical address of the log area.
    public let logAreaStartAddress: UInt64

    /// An ASCII field with trailing spaces and NULs removed (OEM ID, OEM table ID, creator ID).
    public static func text(_ field: [UInt8]) -> String {
        var trimmed = field
        while let last = trimmed.last, last == 0x20 || last == 0 { trimmed.removeLast() }
        return String(decoding: trimmed.map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }

    /// Printable ASCII in quotes, anything else as hex.
    static func quoted(_ field: [UInt8]) -> String {
        field.allSatisfy { (0x20..<0x7F).contains($0) } ? "\"" + String(decoding: field, as: UTF8.self) + "\"" : "0x" + Hex.encode(field)
    }

    /// Parses a table, as read from `/sys/firmware/acpi/tables/CCEL`.
    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        var c = ByteCursor(bytes)
        let signature = try c.readBytes(Layout.signatureSize, field: "Signature")
        guard signature == Self.signature else {
            throw BinaryFormatError(
                .invalidValue, field: "Signature", offset: Layout.signature,
                "the table signature is \(Self.quoted(signature)), not \"CCEL\"")
        }
        length = try c.readLittleEndian(field: "Length")
        guard length == Layout.size else {
            throw BinaryFormatError(
                .invalidValue, field: "Length", offset: Layout.length,
                "a revision-1 CCEL table is \(Layout.size) bytes; this one declares \(length)")
        }
        guard bytes.count == Layout.size else {
            throw BinaryFormatError(
                bytes.count < Layout.size ? .truncated : .trailingBytes, field: "CCEL",
                offset: min(bytes.count, Layout.size),
                "the table declares \(Layout.size) bytes; the input has \(bytes.count)")
        }
        tableRevision = try c.readUInt8(field: "Revision")
        guard tableRevision == Self.revision else {
            throw BinaryFormatError(
                .unsupported, field: "Revision", offset: Layout.revision,
                "CCEL revision \(tableRevision) is not 1, the one cmk reads")
        }
        checksum = try c.readUInt8(field: "Checksum")
        let sum = bytes.reduce(UInt8(0), &+)
        guard sum == 0 else {
            throw BinaryFormatError(
                .invalidValue, field: "Checksum", offset: Layout.checksum,
                "the table's bytes sum to 0x\(String(sum, radix: 16)) modulo 256, not zero: it is corrupt")
        }
        oemID = try c.readBytes(Layout.oemIDSize, field: "OEMID")
        oemTableID = try c.readBytes(Layout.oemTableIDSize, field: "OEM Table ID")
        oemRevision = try c.readLittleEndian(field: "OEM Revision")
        creatorID = try c.readBytes(Layout.creatorIDSize, field: "Creator ID")
        creatorRevision = try c.readLittleEndian(field: "Creator Revision")
        ccType = CCType(rawValue: try c.readUInt8(field: "CC Type"))
        ccSubtype = try c.readUInt8(field: "CC Subtype")
        try c.readReserved(Layout.reservedSize, field: "Reserved")
        logAreaMinimumLength = try c.readLittleEndian(field: "Log Area Minimum Length")
        logAreaStartAddress = try c.readLittleEndian(field: "Log Area Start Address")
        try c.expectEnd(field: "CCEL")
        self.bytes = bytes
    }

    /// Checks that `logArea` fits the area the table declares (it may be shorter: a copy of the used part).
    public func validate(logArea: [UInt8]) throws(BinaryFormatError) {
        guard UInt64(logArea.count) <= logAreaMinimumLength else {
            throw BinaryFormatError(
                .trailingBytes, field: "CCEL log area", offset: Int(clamping: logAreaMinimumLength),
                "the log is \(logArea.count) bytes but the CCEL table's log area (LAML) is \(logAreaMinimumLength)")
        }
    }
}
