import BinaryFormat
import CMKTesting
import EventLog
import Testing

/// The GCP COS-113 TDX vector: a CCEL table, its 256 KiB log area, and the quote's RTMRs.
struct CCELVector {
    static let folder = "tdx/gotdxguest-gcp-cos113-ccel"
    let tableBytes: [UInt8]
    let logBytes: [UInt8]
    let expect: [String: Any]
    let thirdParty: [String: Any]

    init() throws {
        tableBytes = try SharedVectors.bytes(Self.folder + "/ccel_table.bin")
        logBytes = try SharedVectors.bytes(Self.folder + "/ccel_data.bin")
        let json = try SharedVectors.json(Self.folder + "/expected.json")
        expect = try #require(json["expect"] as? [String: Any])
        let outputs = try #require(json["third_party_outputs"] as? [String: Any])
        thirdParty = try #require(outputs["pytdxmeasure_0.0.9_ccel_replay"] as? [String: Any])
    }

    /// The quote's RTMR0..3, as expected.json records them.
    func quoteRTMRs() throws -> [String] {
        try (0..<4).map { try #require(expect["rtmr\($0)"] as? String) }
    }
}

@Suite("CCEL event log of a real TDX guest (GCP COS-113)")
struct CCELVectorTests {
    @Test("replaying the CCEL log gives exactly the quote's RTMR0 to RTMR3")
    func replayMatchesQuote() throws {
        let vector = try CCELVector()
        let table = try CCELTable(bytes: vector.tableBytes)
        let log = try TCGEventLog(bytes: vector.logBytes)
        let registers = try TDXMeasurementRegisters(log: log, table: table)
        #expect(registers.rtmrs.map(\.description) == (try vector.quoteRTMRs()))
        #expect(vector.expect["ccel_replay_matches_quote_rtmrs"] as? Bool == true)
    }

    @Test("the log holds the 43 events expected.json counts, SHA-384 only, ended by 0xFF padding")
    func structure() throws {
        let vector = try CCELVector()
        let log = try TCGEventLog(bytes: vector.logBytes)
        #expect(log.events.count == vector.thirdParty["events"] as? Int)
        #expect(log.events.count == 43)
        #expect(log.algorithms == [.sha384])
        #expect(log.header.digestSize(of: .sha384) == 48)
        #expect(log.header.specVersionMajor == 2 && log.header.uintnSize == 2)
        // TDX firmware writes the Spec ID header with MR index 1, where TPM logs use PCR 0.
        #expect(log.header.pcrIndex == 1)
        #expect(log.termination == .ffPadding)
        #expect(log.endOffset == 0x46B5)
        #expect(log.startupLocality == nil)
        #expect(Set(log.events.map(\.pcrIndex)) == [1, 2, 3])
        #expect(log.events.allSatisfy { $0.digests.count == 1 && $0.digests[0].digest.count == 48 })
        #expect(log.events[0].eventType == .efiHandoffTables2)
        #expect(log.events[1].eventType == .efiPlatformFirmwareBlob2)
        #expect(log.events[7].eventType == .separator)
        #expect(log.events[16].eventType == .efiGPTEvent)
        #expect(log.events[20].eventType == .efiVariableAuthority)
        #expect(log.events[18].eventType == .ipl)
        #expect(String(decoding: log.events[41].eventData, as: UTF8.self) == "Exit Boot Services Invocation")
        // Records keep their exact bytes and together with the header tile the log up to the padding.
        var rebuilt = log.header.bytes
        for event in log.events {
            #expect(event.offset == rebuilt.count)
            rebuilt += event.bytes
        }
        #expect(rebuilt == Array(vector.logBytes.prefix(log.endOffset)))
    }

    @Test("the CCEL table's fields decode and its checksum verifies")
    func table() throws {
        let table = try CCELTable(bytes: try CCELVector().tableBytes)
        #expect(table.length == 56)
        #expect(table.tableRevision == 1)
        #expect(table.ccType == .tdx)
        #expect(table.ccSubtype == 0)
        #expect(CCELTable.text(table.oemID) == "INTEL")
        #expect(CCELTable.text(table.oemTableID) == "EDK2")
        #expect(table.logAreaMinimumLength == 0x40000)
        #expect(table.logAreaStartAddress == 0xBEDB_F000)
    }

    @Test("truncation at every offset of the first 2 KiB never traps: it throws or stops at a record boundary")
    func truncationAtEveryOffset() throws {
        let full = try TCGEventLog(bytes: try CCELVector().logBytes)
        let bytes = full.bytes
        let boundaries = Set([full.header.bytes.count] + full.events.map { $0.offset + $0.bytes.count })
        for length in 0..<2048 {
            do {
                let log = try TCGEventLog(bytes: Array(bytes.prefix(length)))
                #expect(boundaries.contains(length), "a cut at \(length) parsed although it splits a record")
                #expect(log.endOffset == length && log.termination == .endOfInput)
                #expect(log.events == Array(full.events.prefix(log.events.count)))
            } catch {
                #expect(error.code == .truncated, "cut at \(length): \(error)")
                #expect(error.offset <= length)
            }
        }
        // And one byte either side of every record boundary of the whole log (after the last one, the first
        // byte of the 0xFF padding ends the log cleanly).
        for boundary in boundaries where boundary < full.endOffset {
            #expect(throws: BinaryFormatError.self) { try TCGEventLog(bytes: Array(bytes.prefix(boundary - 1))) }
            #expect(throws: BinaryFormatError.self) { try TCGEventLog(bytes: Array(bytes.prefix(boundary + 1))) }
        }
    }

    @Test("a single-byte change in one event's digest changes exactly the RTMR that event extends", arguments: 0..<43)
    func digestCorruption(eventIndex: Int) throws {
        let vector = try CCELVector()
        let original = try TCGEventLog(bytes: vector.logBytes)
        let event = original.events[eventIndex]
        var bytes = vector.logBytes
        // The single digest starts after pcrIndex, eventType, count and hashAlg.
        let digestOffset = event.offset + TCGEvent.Layout.digests + TCGEvent.Layout.hashAlgSize
        bytes[digestOffset + eventIndex % 48] ^= 0x01
        let corrupted = try TDXMeasurementRegisters(log: TCGEventLog(bytes: bytes))
        let expected = try vector.quoteRTMRs()
        let affected = Int(event.pcrIndex) - 1
        for rtmr in 0..<4 {
            if rtmr == affected {
                #expect(corrupted.rtmrs[rtmr].description != expected[rtmr], "RTMR\(rtmr) should change")
            } else {
                #expect(corrupted.rtmrs[rtmr].description == expected[rtmr], "RTMR\(rtmr) should not change")
            }
        }
    }

    @Test("a record naming an algorithm the Spec ID event did not declare is rejected at that field")
    func undeclaredAlgorithm() throws {
        let vector = try CCELVector()
        let log = try TCGEventLog(bytes: vector.logBytes)
        let event = log.events[5]
        var bytes = vector.logBytes
        let algorithmOffset = event.offset + TCGEvent.Layout.digests
        #expect(bytes[algorithmOffset] == 0x0C)
        bytes[algorithmOffset] = 0x0B  // SHA-256, not declared by this SHA-384-only log
        #expect {
            try TCGEventLog(bytes: bytes)
        } throws: {
            isFormatError($0, .invalidValue, field: "TCG_PCR_EVENT2[5].digests[0].hashAlg", offset: algorithmOffset)
        }
    }

    @Test("a CCEL log longer than the table's log area, or a table of another CC type, is rejected")
    func tableMismatch() throws {
        let vector = try CCELVector()
        let table = try CCELTable(bytes: vector.tableBytes)
        let longer = try TCGEventLog(bytes: vector.logBytes + [0xFF])
        #expect { try TDXMeasurementRegisters(log: longer, table: table) } throws: {
            ($0 as? BinaryFormatError)?.code == .trailingBytes
        }
        var sev = vector.tableBytes
        sev[CCELTable.Layout.ccType] = 1
        sev[CCELTable.Layout.checksum] &+= 1  // keep the sum at zero
        let sevTable = try CCELTable(bytes: sev)
        #expect(sevTable.ccType == .sev)
        #expect { try TDXMeasurementRegisters(log: TCGEventLog(bytes: vector.logBytes), table: sevTable) } throws: {
            isFormatError($0, .unsupported, field: "CC Type", offset: 36)
        }
    }
}
