public import BinaryFormat

/// An EFI GUID, stored in firmware images in the EFI mixed-endian layout (UEFI spec, Appendix A):
/// the first three fields little-endian, the last eight bytes as they are.
public struct EFIGUID: Sendable, Hashable, CustomStringConvertible {
    /// The 16 bytes as they appear in a firmware image.
    public let storedBytes: [UInt8]

    /// The encoded size of a GUID.
    public static let size = 16

    /// Creates a GUID from its 16 stored (mixed-endian) bytes.
    public init(storedBytes: [UInt8]) throws(BinaryFormatError) {
        guard storedBytes.count == Self.size else {
            throw BinaryFormatError(.invalidValue, field: "GUID", offset: 0, "a GUID has 16 bytes, got \(storedBytes.count)")
        }
        self.storedBytes = storedBytes
    }

    /// Creates a GUID from its canonical text form, e.g. `96b582de-1fb2-45f7-baea-a366c55a082d`.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 5, [8, 4, 4, 4, 12] == parts.map(\.count),
            let canonical = Hex.decode(parts.joined())
        else { return nil }
        var stored = Array(canonical[0..<4].reversed())
        stored += canonical[4..<6].reversed()
        stored += canonical[6..<8].reversed()
        stored += canonical[8..<16]
        self.storedBytes = stored
    }

    /// The canonical lower-case text form.
    public var description: String {
        let b = storedBytes
        let canonical = Array(b[0..<4].reversed()) + b[4..<6].reversed() + b[6..<8].reversed() + b[8..<16]
        let hex = Hex.encode(canonical)
        let characters = Array(hex)
        func slice(_ range: Range<Int>) -> String { String(characters[range]) }
        return [slice(0..<8), slice(8..<12), slice(12..<16), slice(16..<20), slice(20..<32)].joined(separator: "-")
    }
}

extension ByteCursor {
    /// Reads a GUID in its stored (mixed-endian) layout.
    public mutating func readGUID(field: String) throws(BinaryFormatError) -> EFIGUID {
        try EFIGUID(storedBytes: readBytes(EFIGUID.size, field: field))
    }
}
