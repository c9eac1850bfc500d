import BinaryFormat
import Testing

@Suite("ByteCursor")
struct ByteCursorTests {
    @Test("reads little- and big-endian integers and moves past them")
    func readsIntegers() throws {
        var cursor = ByteCursor([0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB])
        #expect(try cursor.readLittleEndian(UInt16.self, field: "a") == 0x0201)
        #expect(try cursor.readBigEndian(UInt16.self, field: "b") == 0x0304)
        #expect(try cursor.readUInt8(field: "c") == 0xAA)
        #expect(cursor.remaining == 1)
        #expect(throws: BinaryFormatError.self) { try cursor.expectEnd(field: "end") }
        _ = try cursor.readUInt8(field: "d")
        try cursor.expectEnd(field: "end")
    }

    @Test("a failed read leaves the cursor where it was and names the field and offset")
    func failedReadDoesNotMove() throws {
        var cursor = ByteCursor([1, 2, 3])
        _ = try cursor.readUInt8(field: "first")
        do {
            _ = try cursor.readLittleEndian(UInt32.self, field: "wide")
            Issue.record("a 4-byte read from 2 bytes must fail")
        } catch {
            #expect(error.code == .truncated)
            #expect(error.field == "wide")
            #expect(error.offset == 1)
        }
        #expect(cursor.offset == 1)
        #expect(try cursor.readLittleEndian(UInt16.self, field: "rest") == 0x0302)
    }

    @Test("reserved ranges must be zero, and the error points at the offending byte")
    func reservedMustBeZero() throws {
        var cursor = ByteCursor([0, 0, 0, 7, 0])
        do {
            try cursor.readReserved(5, field: "RESERVED")
            Issue.record("non-zero reserved bytes must be rejected")
        } catch {
            #expect(error.code == .reservedNonZero)
            #expect(error.offset == 3)
        }
        #expect(cursor.offset == 0)
    }

    @Test("child cursors cannot read past their window and report absolute offsets")
    func childWindow() throws {
        var cursor = ByteCursor(Array(0..<16))
        try cursor.skip(4, field: "skip")
        var child = try cursor.readCursor(4, field: "child")
        #expect(cursor.offset == 8)
        #expect(try child.readBytes(4, field: "all") == [4, 5, 6, 7])
        #expect(throws: BinaryFormatError.self) { try child.readUInt8(field: "beyond") }
        #expect(throws: BinaryFormatError.self) { try cursor.window(at: 10, count: 7, field: "outside") }
        #expect(throws: BinaryFormatError.self) { try cursor.window(at: -1, count: 1, field: "negative") }
    }

    @Test("every truncation of a structure is an error, never a crash", arguments: 0..<14)
    func truncationAtEveryOffset(length: Int) {
        let full: [UInt8] = Array(1...14)
        var cursor = ByteCursor(Array(full.prefix(length)))
        #expect(throws: BinaryFormatError.self) {
            _ = try cursor.readLittleEndian(UInt64.self, field: "u64")
            _ = try cursor.readLittleEndian(UInt32.self, field: "u32")
            _ = try cursor.readLittleEndian(UInt16.self, field: "u16")
        }
    }

    @Test("hex round-trips and rejects odd lengths and non-hex digits")
    func hex() {
        #expect(Hex.encode([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xAB, 0xFF])
        #expect(Hex.decode("0x0102") == [1, 2])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
