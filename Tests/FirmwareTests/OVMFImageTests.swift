import BinaryFormat
import CMKTesting
import Firmware
import Foundation
import Testing

@Suite("OVMF image metadata")
struct OVMFImageTests {
    /// Debian bookworm's OVMF.fd, described independently by sev-snp-measure in the shared vectors.
    static let bookwormOVMF = "/usr/share/ovmf/OVMF.fd"

    @Test("GUIDs print in canonical form and are stored mixed-endian")
    func guidLayout() throws {
        let guid = try #require(EFIGUID("96b582de-1fb2-45f7-baea-a366c55a082d"))
        #expect(guid.storedBytes.prefix(4) == [0xDE, 0x82, 0xB5, 0x96])
        #expect(guid.description == "96b582de-1fb2-45f7-baea-a366c55a082d")
        #expect(EFIGUID("not-a-guid") == nil)
    }

    @Test("Debian's OVMF.fd has the footer table, SEV metadata and AP reset EIP that sev-snp-measure reports")
    func matchesSevSnpMeasureDescription() throws {
        let expected = try SharedVectors.json("snp-measure/firmware_bookworm_OVMF.json")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.bookwormOVMF)))
        #expect(bytes.count == expected["size"] as? Int)
        let image = try OVMFImage(bytes: bytes)
        #expect(image.gpa == 0xFFE0_0000)

        let footer = try #require(expected["footer_table"] as? [String: String])
        #expect(Set(image.footerEntries.map(\.guid.description)) == Set(footer.keys))
        for entry in image.footerEntries {
            #expect(Hex.encode(entry.data) == footer[entry.guid.description], "footer entry \(entry.guid)")
        }
        let sections = try #require(expected["metadata_sections"] as? [[String: Any]])
        let parsed = try #require(image.sevSections)
        #expect(parsed.count == sections.count)
        for (section, reference) in zip(parsed, sections) {
            #expect("0x" + String(section.gpa, radix: 16) == reference["gpa"] as? String)
            #expect("0x" + String(section.size, radix: 16) == reference["size"] as? String)
            #expect(Int(section.kind.rawValue) == reference["type_value"] as? Int)
        }
        #expect(image.sevESResetEIP.map { "0x" + String($0, radix: 16) } == expected["sev_es_reset_eip"] as? String)
        #expect(image.hasSNPMetadata)
        #expect(image.supportsKernelHashes == (expected["kernel_hashes_supported"] as? Bool))
        #expect(!image.supportsKernelHashes)
    }

    @Test("Debian's OVMF.fd carries TDVF metadata with a boot firmware volume measured into MRTD")
    func tdvfMetadata() throws {
        let image = try OVMFImage(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.bookwormOVMF))))
        let sections = try #require(image.tdvfSections)
        let bfv = try #require(sections.first(where: { $0.kind == .bootFirmwareVolume }))
        #expect(bfv.extendsMRTD)
        #expect(bfv.memoryAddress + bfv.memoryDataSize == 0x1_0000_0000)
    }

    @Test("the AmdSev firmware tail declares kernel hashes at the GPA sev-snp-measure reports")
    func amdSevKernelHashes() throws {
        let expected = try SharedVectors.json("snp-measure/firmware_amdsev_suffix.json")
        let image = try OVMFImage(bytes: try SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin"))
        #expect(image.supportsKernelHashes)
        #expect(image.sevHashTable.map { "0x" + String($0.gpa, radix: 16) } == expected["sev_hashes_table_gpa"] as? String)
        #expect(image.sevSections?.contains(where: { $0.kind == .snpKernelHashes }) == true)
    }

    @Test("an image without a footer table parses with no metadata")
    func noFooter() throws {
        let image = try OVMFImage(bytes: [UInt8](repeating: 0xFF, count: 8192))
        #expect(image.footerEntries.isEmpty)
        #expect(!image.hasSNPMetadata && !image.hasTDXMetadata && !image.supportsKernelHashes)
    }

    @Test("a corrupted footer entry size is rejected, not followed out of bounds")
    func corruptFooterSize() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.bookwormOVMF)))
        // The terminating entry's u16 size sits 0x20 + 18 bytes before the end of the image.
        let sizeOffset = bytes.count - 0x20 - 18
        bytes[sizeOffset] = 0xFF
        bytes[sizeOffset + 1] = 0xFF
        #expect(throws: BinaryFormatError.self) { try OVMFImage(bytes: bytes) }
    }

    @Test("every truncation of the firmware, from either end, parses or throws but never traps")
    func truncationsNeverTrap() throws {
        let bytes = try SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin")
        var rejected = 0
        for cut in 1...bytes.count {
            // Dropping bytes from the end moves the footer away from where the reset vector puts it.
            if (try? OVMFImage(bytes: Array(bytes.dropLast(cut))))?.hasSNPMetadata == true { rejected -= 1 }
            // Dropping from the front keeps the footer but moves the metadata out of reach.
            if (try? OVMFImage(bytes: Array(bytes.dropFirst(cut)))) == nil { rejected += 1 }
        }
        #expect(rejected > 0)
    }
}
