import BinaryFormat
import CMKTesting
import EventLog
import Foundation
import Testing

/// A byte change to the CCEL table and the field it must be rejected at.
struct TableChange: Sendable, CustomTestStringConvertible {
    let name: String
    let offset: Int
    let value: UInt8
    /// Whether to fix the checksum afterwards, so that the field check, not the checksum, must catch it.
    let fixChecksum: Bool
    let code: BinaryFormatError.Code
    let field: String
    var testDescription: String { name }
}

@Suite("ACPI CCEL table")
struct CCELTableTests {
    static let changes: [TableChange] = [
        TableChange(name: "signature CCEX", offset: 3, value: UInt8(ascii: "X"), fixChecksum: true, code: .invalidValue, field: "Signature"),
        TableChange(name: "length 57", offset: 4, value: 57, fixChecksum: true, code: .invalidValue, field: "Length"),
        TableChange(name: "revision 2", offset: 8, value: 2, fixChecksum: true, code: .unsupported, field: "Revision"),
        TableChange(name: "an OEM byte without a checksum fix", offset: 10, value: UInt8(ascii: "X"), fixChecksum: false, code: .invalidValue, field: "Checksum"),
        TableChange(name: "LASA changed without a checksum fix", offset: 50, value: 0xDC, fixChecksum: false, code: .invalidValue, field: "Checksum"),
        TableChange(name: "the checksum byte itself", offset: 9, value: 0x68, fixChecksum: false, code: .invalidValue, field: "Checksum"),
        TableChange(name: "reserved byte 38", offset: 38, value: 1, fixChecksum: true, code: .reservedNonZero, field: "Reserved"),
        TableChange(name: "reserved byte 39", offset: 39, value: 1, fixChecksum: true, code: .reservedNonZero, field: "Reserved"),
    ]

    @Test("a changed table is rejected at the field that is wrong", arguments: changes)
    func rejects(change: TableChange) throws {
        var bytes = try CCELVector().tableBytes
        let old = bytes[change.offset]
        bytes[change.offset] = change.value
        if change.fixChecksum { bytes[CCELTable.Layout.checksum] &+= old &- change.value }
        #expect { try CCELTable(bytes: bytes) } throws: {
            isFormatError($0, change.code, field: change.field)
        }
    }

    @Test("truncation at every offset and a trailing byte are rejected")
    func truncation() throws {
        let bytes = try CCELVector().tableBytes
        for length in 0..<bytes.count {
            #expect(throws: BinaryFormatError.self) { try CCELTable(bytes: Array(bytes.prefix(length))) }
        }
        #expect { try CCELTable(bytes: bytes + [0]) } throws: { ($0 as? BinaryFormatError)?.code == .trailingBytes }
    }

    @Test("a table whose bytes still sum to zero after a field change parses with the new value")
    func checksumIsTheOnlyIntegrity() throws {
        var bytes = try CCELVector().tableBytes
        bytes[CCELTable.Layout.ccSubtype] = 1
        bytes[CCELTable.Layout.checksum] &-= 1
        #expect(try CCELTable(bytes: bytes).ccSubtype == 1)
    }
}

@Suite("What cmk measure replay prints")
struct EventLogReplayDocumentTests {
    @Test("a CCEL log names MR indices RTMR0..3 and carries the replayed RTMRs, in text and JSON")
    func ccelDocument() throws {
        let vector = try CCELVector()
        let document = try EventLogReplayDocument(
            log: TCGEventLog(bytes: vector.logBytes), ccelTable: CCELTable(bytes: vector.tableBytes), includeEvents: true)
        let rtmrs = try vector.quoteRTMRs()
        #expect(document.eventCount == 43)
        #expect(document.banks.count == 1)
        #expect(document.banks[0].registers.map(\.name) == ["RTMR0", "RTMR1", "RTMR2"])
        #expect(document.banks[0].registers.map(\.value.description) == Array(rtmrs.prefix(3)))
        #expect(document.tdx.map { [$0.rtmr0, $0.rtmr1, $0.rtmr2, $0.rtmr3].map(\.description) } == rtmrs)
        #expect(document.ccel?.ccTypeName == "TDX")
        #expect(document.events?.count == 43)
        #expect(document.events?[41].eventTypeName == "EV_EFI_ACTION")
        let text = document.lines.joined(separator: "\n")
        #expect(text.contains("RTMR0  \(rtmrs[0])"))
        #expect(text.contains("RTMR3  \(rtmrs[3])"))
        #expect(text.contains("\"Exit Boot Services Invocation\""))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try #require(try JSONSerialization.jsonObject(with: encoder.encode(document)) as? [String: Any])
        let tdx = try #require(json["tdx"] as? [String: String])
        #expect(tdx["rtmr2"] == rtmrs[2])
        let banks = try #require(json["banks"] as? [[String: Any]])
        #expect(banks.first?["algorithm"] as? String == "sha384")
    }

    @Test("a TPM log names PCRs and has no TDX section; events are listed only when asked")
    func tpmDocument() throws {
        let document = try EventLogReplayDocument(log: TCGEventLog(bytes: sampleLog().bytes))
        #expect(document.banks.map(\.algorithm) == [.sha1, .sha256])
        #expect(document.banks[0].registers.map(\.name) == ["PCR0", "PCR4", "PCR7"])
        #expect(document.tdx == nil && document.ccel == nil && document.events == nil)
        #expect(!document.lines.joined().contains("Events:"))
    }
}
