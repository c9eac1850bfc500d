import BinaryFormat
import EventLog
import Testing

/// A change to an otherwise valid log and the error it must cause.
struct MalformedLog: Sendable, CustomTestStringConvertible {
    let name: String
    let mutate: @Sendable (inout LogBuilder) -> Void
    let code: BinaryFormatError.Code
    let field: String
    var testDescription: String { name }
}

/// Bytes after the last record and how the log must end.
struct Padding: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let termination: TCGEventLog.Termination
    init(_ name: String, _ bytes: [UInt8], _ termination: TCGEventLog.Termination) {
        self.name = name
        self.bytes = bytes
        self.termination = termination
    }
    var testDescription: String { name }
}

/// A valid two-bank log: PCR 0, PCR 7 and PCR 4 events.
func sampleLog() -> LogBuilder {
    var log = LogBuilder()
    log.add(pcr: 0, type: .sCRTMVersion, data: [0, 0])
    log.add(pcr: 0, type: .efiPlatformFirmwareBlob, data: Array(repeating: 0xAB, count: 16))
    log.add(pcr: 7, type: .efiVariableDriverConfig, data: Array("SecureBoot".utf8))
    log.add(pcr: 4, type: .efiAction, data: Array("Calling EFI Application from Boot Option".utf8))
    log.add(pcr: 0, type: .separator, data: [0, 0, 0, 0])
    log.add(pcr: 7, type: .separator, data: [0, 0, 0, 0])
    return log
}

let headerCases: [MalformedLog] = [
    MalformedLog(name: "first record is not EV_NO_ACTION", mutate: { $0.headerEventType = 4 },
                 code: .invalidValue, field: "TCG_PCClientPCREvent.eventType"),
    MalformedLog(name: "header digest is not zero", mutate: { $0.headerDigest[19] = 1 },
                 code: .reservedNonZero, field: "TCG_PCClientPCREvent.digest"),
    MalformedLog(name: "signature is Spec ID Event02", mutate: { $0.signature[14] = UInt8(ascii: "2") },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.signature"),
    MalformedLog(name: "spec version 1.2", mutate: { $0.specVersionMajor = 1 },
                 code: .unsupported, field: "TCG_EfiSpecIdEvent.specVersionMajor"),
    MalformedLog(name: "uintnSize 3", mutate: { $0.uintnSize = 3 },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.uintnSize"),
    MalformedLog(name: "no algorithms", mutate: { $0.numberOfAlgorithms = 0; $0.specIDTrailing = [0, 0, 0, 0] },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.numberOfAlgorithms"),
    MalformedLog(name: "17 algorithms", mutate: { $0.numberOfAlgorithms = 17 },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.numberOfAlgorithms"),
    MalformedLog(name: "more algorithms than the event holds", mutate: { $0.numberOfAlgorithms = 3 },
                 code: .truncated, field: "TCG_EfiSpecIdEvent.digestSizes[2].algorithmId"),
    MalformedLog(name: "SHA-256 declared twice", mutate: { $0.algorithms = [(0x000B, 32), (0x000B, 32)] },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.digestSizes[1].algorithmId"),
    MalformedLog(name: "SHA-256 declared with 20-byte digests", mutate: { $0.algorithms = [(0x0004, 20), (0x000B, 20)] },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.digestSizes[1].digestSize"),
    MalformedLog(name: "unknown algorithm with a zero digest size", mutate: { $0.algorithms = [(0x0004, 20), (0x00FE, 0)] },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.digestSizes[1].digestSize"),
    MalformedLog(name: "unknown algorithm with a 65-byte digest", mutate: { $0.algorithms = [(0x0004, 20), (0x00FE, 65)] },
                 code: .invalidValue, field: "TCG_EfiSpecIdEvent.digestSizes[1].digestSize"),
    MalformedLog(name: "vendor info size beyond the event", mutate: { $0.numberOfAlgorithms = 1 },
                 code: .truncated, field: "TCG_EfiSpecIdEvent.vendorInfo"),
    MalformedLog(name: "bytes after the vendor info", mutate: { $0.specIDTrailing = [0] },
                 code: .trailingBytes, field: "TCG_EfiSpecIdEvent"),
]

let recordCases: [MalformedLog] = [
    MalformedLog(
        name: "one digest where two banks are declared",
        mutate: { $0.records = [LogBuilder.record(pcr: 0, type: 1, digests: [(0x0004, Array(repeating: 1, count: 20))], data: [])] },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].digests.count"),
    MalformedLog(
        name: "an absurd digest count",
        mutate: { $0.records = [le32(0) + le32(1) + le32(0xFFFF_FFFF) + Array(repeating: 0, count: 64)] },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].digests.count"),
    MalformedLog(
        name: "SHA-1 twice instead of SHA-1 and SHA-256",
        mutate: {
            let digest = [UInt8](repeating: 1, count: 20)
            $0.records = [LogBuilder.record(pcr: 0, type: 1, digests: [(0x0004, digest), (0x0004, digest)], data: [])]
        },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].digests[1].hashAlg"),
    MalformedLog(
        name: "a SHA-384 digest in a SHA-1/SHA-256 log",
        mutate: {
            $0.records = [LogBuilder.record(
                pcr: 0, type: 1, digests: [(0x0004, Array(repeating: 1, count: 20)), (0x000C, Array(repeating: 1, count: 48))],
                data: [])]
        },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].digests[1].hashAlg"),
    MalformedLog(
        name: "an event size beyond the bound",
        mutate: { log in
            var record = LogBuilder.record(pcr: 0, type: 1, digests: log.digests(of: []), data: [])
            record.replaceSubrange((record.count - 4)..., with: le32(0xFFFF_FFFF))
            log.records = [record]
        },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].eventSize"),
    MalformedLog(
        name: "an event size beyond the input",
        mutate: { log in
            var record = LogBuilder.record(pcr: 0, type: 1, digests: log.digests(of: [1, 2]), data: [1, 2])
            record.replaceSubrange((record.count - 6)..<(record.count - 2), with: le32(3))
            log.records = [record]
        },
        code: .truncated, field: "TCG_PCR_EVENT2[0].event"),
    MalformedLog(
        name: "a second Startup Locality event",
        mutate: { $0.addStartupLocality(3); $0.addStartupLocality(3) },
        code: .invalidValue, field: "TCG_PCR_EVENT2[1].event"),
    MalformedLog(
        name: "a Startup Locality event for PCR 1",
        mutate: { $0.addStartupLocality(3, pcr: 1) },
        code: .invalidValue, field: "TCG_PCR_EVENT2[0].pcrIndex"),
    MalformedLog(
        name: "startup locality 2",
        mutate: { $0.addStartupLocality(2) },
        code: .invalidValue, field: "TCG_EfiStartupLocalityEvent.StartupLocality"),
    MalformedLog(
        name: "a Startup Locality event without its locality byte",
        mutate: { $0.addNoAction(data: Array("StartupLocality".utf8) + [0]) },
        code: .truncated, field: "TCG_EfiStartupLocalityEvent.StartupLocality"),
    MalformedLog(
        name: "a Startup Locality event with a trailing byte",
        mutate: { $0.addNoAction(data: Array("StartupLocality".utf8) + [0, 3, 0]) },
        code: .trailingBytes, field: "TCG_EfiStartupLocalityEvent"),
]

@Suite("TCG crypto-agile event log")
struct TCGEventLogTests {
    @Test("the four replayable hashes give the FIPS 180 answers for \"abc\"", arguments: [
        (TCGAlgorithm.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (.sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
        (.sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
    ])
    func knownAnswers(algorithm: TCGAlgorithm, expected: String) throws {
        let digest = try #require(algorithm.hash(Array("abc".utf8)))
        #expect(Hex.encode(digest) == expected)
        #expect(digest.count == algorithm.digestSize)
        #expect(algorithm.isReplayable)
    }

    @Test("replay extends each bank's registers from zero and skips EV_NO_ACTION events")
    func replayChains() throws {
        var builder = sampleLog()
        builder.addNoAction(pcr: 4, data: Array("vendor note".utf8))
        let log = try TCGEventLog(bytes: builder.bytes)
        #expect(log.events.count == 7)
        #expect(log.termination == .endOfInput)
        #expect(log.endOffset == builder.bytes.count)
        let replay = log.replay()
        #expect(replay.banks.map(\.algorithm) == [.sha1, .sha256])
        #expect(replay.skippedAlgorithms.isEmpty)
        for bank in replay.banks {
            let zero = [UInt8](repeating: 0, count: bank.algorithm.digestSize!)
            func chain(_ pcr: UInt32) -> [UInt8] {
                extendChain(bank.algorithm, initial: zero, log.events.filter { $0.pcrIndex == pcr && $0.eventType != .noAction }
                    .map { $0.digest(for: bank.algorithm)! })
            }
            #expect(bank.registers.map(\.index) == [0, 4, 7])
            #expect(bank.registers.map(\.eventCount) == [3, 1, 2])
            for pcr: UInt32 in [0, 4, 7] { #expect(bank.value(at: pcr)?.bytes == chain(pcr)) }
            #expect(bank.value(at: 1) == nil)
        }
        // Written out once by hand: PCR 4 in SHA-256 is H(zeros ‖ H("Calling EFI ...")).
        let action = TCGAlgorithm.sha256.hash(Array("Calling EFI Application from Boot Option".utf8))!
        #expect(replay.bank(.sha256)?.value(at: 4)?.bytes == TCGAlgorithm.sha256.hash([UInt8](repeating: 0, count: 32) + action))
    }

    @Test("a Startup Locality event starts PCR 0 at zeros ending in the locality, in every bank", arguments: [UInt8(0), 3, 4])
    func startupLocality(locality: UInt8) throws {
        var builder = LogBuilder()
        builder.addStartupLocality(locality)
        builder.add(pcr: 0, type: .sCRTMVersion, data: [1, 0])
        builder.add(pcr: 1, type: .efiHandoffTables, data: [2])
        let log = try TCGEventLog(bytes: builder.bytes)
        #expect(log.startupLocality == locality)
        for bank in log.replay().banks {
            var initial = [UInt8](repeating: 0, count: bank.algorithm.digestSize!)
            initial[initial.count - 1] = locality
            let digest = log.events[1].digest(for: bank.algorithm)!
            #expect(bank.value(at: 0)?.bytes == bank.algorithm.hash(initial + digest))
            // Only PCR 0 starts at the locality.
            let one = log.events[2].digest(for: bank.algorithm)!
            #expect(bank.value(at: 1)?.bytes == bank.algorithm.hash([UInt8](repeating: 0, count: initial.count) + one))
        }
    }

    @Test("a Startup Locality event alone still reports PCR 0 at its initial value")
    func startupLocalityAlone() throws {
        var builder = LogBuilder()
        builder.addStartupLocality(3)
        let bank = try #require(try TCGEventLog(bytes: builder.bytes).replay().bank(.sha256))
        #expect(bank.registers.count == 1)
        #expect(bank.value(at: 0)?.bytes == [UInt8](repeating: 0, count: 31) + [3])
        #expect(bank.registers[0].eventCount == 0)
    }

    @Test("a malformed Spec ID header is rejected and the field named", arguments: headerCases)
    func rejectsHeader(testCase: MalformedLog) throws {
        var builder = sampleLog()
        testCase.mutate(&builder)
        #expect { try TCGEventLog(bytes: builder.bytes) } throws: {
            isFormatError($0, testCase.code, field: testCase.field)
        }
    }

    @Test("a malformed TCG_PCR_EVENT2 is rejected and the field named", arguments: recordCases)
    func rejectsRecord(testCase: MalformedLog) throws {
        var builder = LogBuilder()
        testCase.mutate(&builder)
        #expect { try TCGEventLog(bytes: builder.bytes) } throws: {
            isFormatError($0, testCase.code, field: testCase.field)
        }
    }

    @Test("error offsets are absolute: an undeclared algorithm is reported at its own byte")
    func absoluteOffsets() throws {
        var builder = sampleLog()
        let headerSize = builder.header.count
        let firstSize = builder.records[0].count
        builder.records[1].replaceSubrange(12..<14, with: le16(0x000D))  // SHA-512 where SHA-1 was
        #expect { try TCGEventLog(bytes: builder.bytes) } throws: {
            isFormatError($0, .invalidValue, field: "TCG_PCR_EVENT2[1].digests[0].hashAlg", offset: headerSize + firstSize + 12)
        }
    }

    @Test("padding ends the log: 0xFF, a 0xFFFFFFFF index before other bytes, or zeros", arguments: [
        Padding("4 KiB of 0xFF", [UInt8](repeating: 0xFF, count: 4096), .ffPadding),
        Padding("two 0xFF bytes", [0xFF, 0xFF], .ffPadding),
        Padding("index 0xFFFFFFFF then other bytes", [0xFF, 0xFF, 0xFF, 0xFF, 0x12, 0x34], .ffPadding),
        Padding("4 KiB of zeros", [UInt8](repeating: 0, count: 4096), .zeroPadding),
        Padding("one zero byte", [0], .zeroPadding),
        Padding("nothing", [], .endOfInput),
    ])
    func padding(padding: Padding) throws {
        let builder = sampleLog()
        let log = try TCGEventLog(bytes: builder.bytes + padding.bytes)
        #expect(log.termination == padding.termination)
        #expect(log.events.count == 6)
        #expect(log.endOffset == builder.bytes.count)
        #expect(log.bytes.count == builder.bytes.count + padding.bytes.count)
    }

    @Test("bytes after the last record that are neither padding nor a record are rejected")
    func garbageAfterLog() throws {
        let builder = sampleLog()
        #expect { try TCGEventLog(bytes: builder.bytes + [0, 0, 0, 0, 1]) } throws: {
            ($0 as? BinaryFormatError)?.code == .truncated
        }
        #expect { try TCGEventLog(bytes: builder.bytes + [0xFF, 0xFF, 0xFE]) } throws: {
            ($0 as? BinaryFormatError)?.code == .truncated
        }
    }

    @Test("a log of more than the bounded number of events is rejected at the first one too many")
    func eventCountBound() throws {
        var builder = LogBuilder()
        builder.algorithms = [(0x0004, 20)]
        let record = LogBuilder.record(pcr: 1, type: 1, digests: [(0x0004, [UInt8](repeating: 7, count: 20))], data: [])
        let header = builder.header
        var bytes = header
        bytes.reserveCapacity(header.count + record.count * (TCGEventLog.maximumEvents + 1))
        for _ in 0...TCGEventLog.maximumEvents { bytes += record }
        #expect {
            try TCGEventLog(bytes: bytes)
        } throws: {
            isFormatError(
                $0, .invalidValue, field: "TCG_PCR_EVENT2[\(TCGEventLog.maximumEvents)]",
                offset: header.count + record.count * TCGEventLog.maximumEvents)
        }
        let atBound = try TCGEventLog(bytes: Array(bytes.dropLast(record.count)))
        #expect(atBound.events.count == TCGEventLog.maximumEvents)
    }

    @Test("a declared bank cmk cannot hash is parsed and reported as skipped, the others replayed")
    func unknownBank() throws {
        var builder = LogBuilder()
        builder.algorithms = [(0x0012, 32), (0x000B, 32)]
        builder.add(pcr: 2, type: .efiBootServicesDriver, data: [9, 9])
        let log = try TCGEventLog(bytes: builder.bytes)
        #expect(log.algorithms == [.sm3_256, .sha256])
        let replay = log.replay()
        #expect(replay.skippedAlgorithms == [.sm3_256])
        #expect(replay.banks.map(\.algorithm) == [.sha256])
        #expect(log.events[0].digest(for: .sm3_256)?.count == 32)
    }

    @Test("vendor information and a 32-bit UINTN are accepted and kept")
    func vendorInfo() throws {
        var builder = sampleLog()
        builder.vendorInfo = Array("cmk".utf8)
        builder.uintnSize = 1
        builder.headerPCRIndex = 0
        let log = try TCGEventLog(bytes: builder.bytes)
        #expect(log.header.vendorInfo == Array("cmk".utf8))
        #expect(log.header.uintnSize == 1)
        #expect(log.header.bytes == builder.header)
    }

    @Test("truncation of a synthetic log at every offset throws a truncation error or stops at a record boundary")
    func truncation() throws {
        var builder = sampleLog()
        builder.addStartupLocality(3)
        let bytes = builder.bytes
        var boundaries: Set<Int> = [builder.header.count]
        var end = builder.header.count
        for record in builder.records {
            end += record.count
            boundaries.insert(end)
        }
        for length in 0..<bytes.count {
            do {
                let log = try TCGEventLog(bytes: Array(bytes.prefix(length)))
                #expect(boundaries.contains(log.endOffset), "cut at \(length)")
                // A cut inside the leading zero bytes of a PCR 0 record leaves a zero remainder: padding.
                #expect(log.endOffset == length || log.termination == .zeroPadding, "cut at \(length)")
            } catch {
                #expect(error.code == .truncated, "cut at \(length): \(error)")
            }
        }
    }

    @Test("event types have the profile's names; unknown ones print their number")
    func eventTypeNames() {
        #expect(TCGEventType.noAction.description == "EV_NO_ACTION")
        #expect(TCGEventType.separator.description == "EV_SEPARATOR")
        #expect(TCGEventType.postCode.description == "EV_POST_CODE")
        #expect(TCGEventType.efiVariableDriverConfig.description == "EV_EFI_VARIABLE_DRIVER_CONFIG")
        #expect(TCGEventType.efiVariableBoot.description == "EV_EFI_VARIABLE_BOOT")
        #expect(TCGEventType.efiBootServicesApplication.description == "EV_EFI_BOOT_SERVICES_APPLICATION")
        #expect(TCGEventType.efiAction.description == "EV_EFI_ACTION")
        #expect(TCGEventType.efiGPTEvent.description == "EV_EFI_GPT_EVENT")
        #expect(TCGEventType.efiPlatformFirmwareBlob.description == "EV_EFI_PLATFORM_FIRMWARE_BLOB")
        #expect(TCGEventType.efiPlatformFirmwareBlob2.description == "EV_EFI_PLATFORM_FIRMWARE_BLOB2")
        #expect(TCGEventType.efiHandoffTables.description == "EV_EFI_HANDOFF_TABLES")
        #expect(TCGEventType.efiHandoffTables2.description == "EV_EFI_HANDOFF_TABLES2")
        #expect(TCGEventType.eventTag.description == "EV_EVENT_TAG")
        #expect(TCGEventType.ipl.description == "EV_IPL")
        #expect(TCGEventType.efiVariableAuthority.description == "EV_EFI_VARIABLE_AUTHORITY")
        #expect(TCGEventType.sCRTMVersion.description == "EV_S_CRTM_VERSION")
        #expect(TCGEventType.cpuMicrocode.description == "EV_CPU_MICROCODE")
        #expect(TCGEventType(rawValue: 0x8000_00FF).description == "EV_UNKNOWN(0x800000ff)")
        #expect(TCGAlgorithm(rawValue: 0x1234).description == "alg-0x1234")
    }
}

@Suite("TDX measurement registers from a CCEL log")
struct TDXMeasurementRegisterTests {
    func ccelLog() -> LogBuilder {
        var builder = LogBuilder()
        builder.algorithms = [(0x000C, 48)]
        builder.headerPCRIndex = 1
        return builder
    }

    @Test("MR index i + 1 feeds RTMR i; untouched RTMRs stay zero")
    func mapping() throws {
        var builder = ccelLog()
        builder.add(pcr: 1, type: .efiHandoffTables2, data: [1])
        builder.add(pcr: 3, type: .ipl, data: Array("grub_cmd: linux".utf8))
        builder.add(pcr: 1, type: .separator, data: [0, 0, 0, 0])
        let log = try TCGEventLog(bytes: builder.bytes)
        let registers = try TDXMeasurementRegisters(log: log)
        let zero = [UInt8](repeating: 0, count: 48)
        let d = log.events.map { $0.digest(for: .sha384)! }
        #expect(registers.rtmr0.bytes == extendChain(.sha384, initial: zero, [d[0], d[2]]))
        #expect(registers.rtmr1.bytes == zero)
        #expect(registers.rtmr2.bytes == extendChain(.sha384, initial: zero, [d[1]]))
        #expect(registers.rtmr3.bytes == zero)
        #expect(TDXRegister(ccMRIndex: 0) == .mrtd)
        #expect(TDXRegister(ccMRIndex: 4)?.description == "RTMR3")
        #expect(TDXRegister(ccMRIndex: 5) == nil)
    }

    @Test("an event for MR index 0 (MRTD) or beyond 4 is rejected", arguments: [UInt32(0), 5, 0x10])
    func rejectsIndex(index: UInt32) throws {
        var builder = ccelLog()
        builder.add(pcr: 1, type: .separator, data: [0, 0, 0, 0])
        builder.add(pcr: index, type: .efiAction, data: [1])
        let log = try TCGEventLog(bytes: builder.bytes)
        #expect { try TDXMeasurementRegisters(log: log) } throws: {
            isFormatError($0, .invalidValue, field: "TCG_PCR_EVENT2[1].pcrIndex", offset: log.events[1].offset)
        }
    }

    @Test("an EV_NO_ACTION record may carry any index: it is never extended")
    func noActionIndex() throws {
        var builder = ccelLog()
        builder.addNoAction(pcr: 0, data: Array("vendor".utf8))
        #expect(try TDXMeasurementRegisters(log: TCGEventLog(bytes: builder.bytes)).rtmr0.isZero)
    }

    @Test("a log without a SHA-384 bank cannot give RTMRs")
    func requiresSHA384() throws {
        let log = try TCGEventLog(bytes: sampleLog().bytes)
        #expect { try TDXMeasurementRegisters(log: log) } throws: {
            isFormatError($0, .unsupported, field: "TCG_EfiSpecIdEvent.digestSizes")
        }
    }
}
