public import BinaryFormat

/// The certificate table of an extended report (SNP_GET_EXT_REPORT; configfs-tsm `auxblob`), as the
/// Linux SEV guest driver and the GHCB spec (§4.1.8.1, "SNP Extended Guest Request") define it: 24-byte
/// entries {GUID, u32 offset, u32 length} terminated by an all-zero entry, offsets from the start of the
/// blob, GUIDs in RFC 4122 byte order (unlike OVMF's mixed-endian GUIDs).
public struct SNPCertificateTable: Sendable, Hashable {
    /// Well-known entry GUIDs, as canonical strings.
    public enum GUID {
        public static let ark = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        /// ASK, or ASVK when the report is VLEK-signed.
        public static let ask = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        public static let vcek = "63da758d-e664-4564-adc5-f4b93be8accd"
        public static let vlek = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    }

    public struct Entry: Sendable, Hashable {
        /// The GUID in canonical lower-case form.
        public let guid: String
        public let data: [UInt8]

        /// Creates an entry; `guid` must be a canonical GUID string.
        public init(guid: String, data: [UInt8]) throws(BinaryFormatError) {
            guard SNPCertificateTable.storedBytes(guid) != nil else {
                throw BinaryFormatError(.invalidValue, field: "certificate table GUID", offset: 0, "'\(guid)' is not a GUID")
            }
            self.guid = guid.lowercased()
            self.data = data
        }

        fileprivate init(parsedGUID: String, data: [UInt8]) {
            self.guid = parsedGUID
            self.data = data
        }
    }

    public static let entrySize = 24

    public let entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// The data of the entry with `guid`, if present.
    public func data(for guid: String) -> [UInt8]? { entries.first(where: { $0.guid == guid })?.data }

    /// Parses a table; rejects a missing terminator, entries pointing outside the blob or into the
    /// table itself, and repeated GUIDs. Bytes after the last entry's data (page padding) are allowed.
    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        var cursor = ByteCursor(bytes)
        var headers: [(guid: String, offset: Int, length: Int, at: Int)] = []
        while true {
            let at = cursor.offset
            let guidBytes = try cursor.readBytes(16, field: "certificate table entry GUID")
            let offset = Int(try cursor.readLittleEndian(UInt32.self, field: "certificate table entry offset"))
            let length = Int(try cursor.readLittleEndian(UInt32.self, field: "certificate table entry length"))
            if guidBytes.allSatisfy({ $0 == 0 }) && offset == 0 && length == 0 { break }
            headers.append((Self.canonical(guidBytes), offset, length, at))
        }
        let tableEnd = cursor.offset
        var seen = Set<String>()
        var entries: [Entry] = []
        for header in headers {
            guard seen.insert(header.guid).inserted else {
                throw BinaryFormatError(.invalidValue, field: "certificate table", offset: header.at, "GUID \(header.guid) appears twice")
            }
            guard header.offset >= tableEnd else {
                throw BinaryFormatError(
                    .invalidValue, field: "certificate table entry \(header.guid)", offset: header.at,
                    "data at offset \(header.offset) overlaps the table, which ends at \(tableEnd)")
            }
            var data = try ByteCursor(bytes).window(at: header.offset, count: header.length, field: "certificate \(header.guid)")
            entries.append(Entry(parsedGUID: header.guid, data: try data.readBytes(header.length, field: "certificate \(header.guid)")))
        }
        self.entries = entries
    }

    /// Encodes the table: headers, terminator, then each entry's data in order.
    public func encoded() -> [UInt8] {
        var headers: [UInt8] = []
        var payload: [UInt8] = []
        let dataStart = (entries.count + 1) * Self.entrySize
        for entry in entries {
            headers += Self.storedBytes(entry.guid) ?? []  // validated when the entry was made
            headers += le32(dataStart + payload.count) + le32(entry.data.count)
            payload += entry.data
        }
        return headers + [UInt8](repeating: 0, count: Self.entrySize) + payload
    }

    private func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    static func canonical(_ bytes: [UInt8]) -> String {
        let hex = Hex.encode(bytes)
        let c = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(c[$0]) }.joined(separator: "-")
    }

    static func storedBytes(_ guid: String) -> [UInt8]? {
        let parts = guid.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.map(\.count) == [8, 4, 4, 4, 12], let bytes = Hex.decode(parts.joined()),
            !bytes.allSatisfy({ $0 == 0 })
        else { return nil }
        return bytes
    }
}
