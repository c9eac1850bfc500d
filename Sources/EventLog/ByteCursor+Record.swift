import BinaryFormat

extension ByteCursor {
    /// The bytes from `start` up to the cursor: the exact bytes of a record just read.
    func bytesRead(since start: Int, field: String) throws(BinaryFormatError) -> [UInt8] {
        var record = try window(at: start, count: offset - start, field: field)
        return try record.readBytes(offset - start, field: field)
    }

    /// Whether every byte left is `value` (false when nothing is left); the cursor does not move.
    func remainderIsAll(_ value: UInt8) -> Bool {
        var probe = self
        guard !probe.isAtEnd else { return false }
        while !probe.isAtEnd {
            guard let byte = try? probe.readUInt8(field: "padding"), byte == value else { return false }
        }
        return true
    }

    /// The next little-endian u32 without moving the cursor; nil when fewer than four bytes are left.
    func peekUInt32() -> UInt32? {
        var probe = self
        return try? probe.readLittleEndian(UInt32.self, field: "peek")
    }
}
