/// A bounds-checked reader over a byte buffer: the one way every cmk parser reads binary formats.
///
/// Each read either returns the requested value and moves the cursor past it, or throws a
/// ``BinaryFormatError`` and leaves the cursor where it was. Offsets in errors are absolute offsets
/// into the buffer the cursor was created over, so an error names the byte a person can inspect.
public struct ByteCursor: Sendable {
    /// The whole buffer the cursor reads.
    public let bytes: [UInt8]
    /// The absolute offset of the next byte to read.
    public var offset: Int { position }
    @usableFromInline
    var position: Int
    /// The absolute offset one past the last readable byte.
    public let endOffset: Int

    /// Creates a cursor over all of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.position = 0
        self.endOffset = bytes.count
    }

    @usableFromInline
    init(bytes: [UInt8], offset: Int, endOffset: Int) {
        self.bytes = bytes
        self.position = offset
        self.endOffset = endOffset
    }

    /// The number of bytes left to read.
    public var remaining: Int { endOffset - offset }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset == endOffset }

    @usableFromInline
    func require(_ count: Int, _ field: String) throws(BinaryFormatError) {
        guard count >= 0 else {
            throw BinaryFormatError(.invalidValue, field: field, offset: offset, "negative length \(count)")
        }
        guard count <= remaining else {
            throw BinaryFormatError(
                .truncated, field: field, offset: offset,
                "needs \(count) bytes but only \(remaining) remain")
        }
    }

    /// Reads `count` bytes.
    @inlinable
    public mutating func readBytes(_ count: Int, field: String) throws(BinaryFormatError) -> [UInt8] {
        try require(count, field)
        let value = Array(bytes[offset..<(offset + count)])
        position += count
        return value
    }

    /// Reads `count` bytes that the format reserves and requires to be zero.
    public mutating func readReserved(_ count: Int, field: String) throws(BinaryFormatError) {
        try require(count, field)
        if let index = bytes[offset..<(offset + count)].firstIndex(where: { $0 != 0 }) {
            throw BinaryFormatError(
                .reservedNonZero, field: field, offset: index,
                "reserved byte is 0x\(Hex.encode([bytes[index]])), must be zero")
        }
        position += count
    }

    /// Moves past `count` bytes without interpreting them.
    public mutating func skip(_ count: Int, field: String) throws(BinaryFormatError) {
        try require(count, field)
        position += count
    }

    /// Reads a little-endian unsigned integer.
    @inlinable
    public mutating func readLittleEndian<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type = T.self, field: String
    ) throws(BinaryFormatError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field)
        var value: T = 0
        for index in 0..<size {
            value |= T(bytes[offset + index]) << (8 * index)
        }
        position += size
        return value
    }

    /// Reads a big-endian unsigned integer.
    @inlinable
    public mutating func readBigEndian<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type = T.self, field: String
    ) throws(BinaryFormatError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field)
        var value: T = 0
        for index in 0..<size {
            value = (value << 8) | T(bytes[offset + index])
        }
        position += size
        return value
    }

    /// Reads a single byte.
    @inlinable
    public mutating func readUInt8(field: String) throws(BinaryFormatError) -> UInt8 {
        try readLittleEndian(UInt8.self, field: field)
    }

    /// Returns a cursor over the next `count` bytes and moves this cursor past them.
    ///
    /// The child cursor reports absolute offsets and cannot read beyond its own window.
    public mutating func readCursor(_ count: Int, field: String) throws(BinaryFormatError) -> ByteCursor {
        try require(count, field)
        let child = ByteCursor(bytes: bytes, offset: offset, endOffset: offset + count)
        position += count
        return child
    }

    /// Returns a cursor over the window `[start, start + count)` of the buffer, absolute offsets.
    public func window(at start: Int, count: Int, field: String) throws(BinaryFormatError) -> ByteCursor {
        guard start >= 0, count >= 0, start <= bytes.count, count <= bytes.count - start else {
            throw BinaryFormatError(
                .truncated, field: field, offset: max(0, min(start, bytes.count)),
                "window of \(count) bytes at offset \(start) lies outside the \(bytes.count)-byte buffer")
        }
        return ByteCursor(bytes: bytes, offset: start, endOffset: start + count)
    }

    /// Throws unless every byte has been read.
    public func expectEnd(field: String) throws(BinaryFormatError) {
        guard isAtEnd else {
            throw BinaryFormatError(.trailingBytes, field: field, offset: offset, "\(remaining) unexpected trailing bytes")
        }
    }
}
