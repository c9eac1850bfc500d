public import BinaryFormat
public import Firmware
import Crypto

/// Why an MRTD could not be computed.
public struct TDXMeasurementError: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// MRTD, the build-time measurement of a TD (Intel TDX Module ABI spec, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND;
/// Intel TDVF design guide §11 "Measurement"): one running SHA-384 — not an extend chain — over the 128-byte
/// records the TDX module appends while the VMM builds the TD from the firmware's TDVF sections.
///
/// - `TDH.MEM.PAGE.ADD`: "MEM.PAGE.ADD" at bytes 0–11, the page GPA (u64, little-endian) at 16–23, zeros.
/// - `TDH.MR.EXTEND` of a 256-byte chunk: "MR.EXTEND" at 0–8, the chunk GPA at 16–23, zeros; then the 256 data
///   bytes as two more 128-byte records.
///
/// Sections with the PAGE.AUG attribute are added after launch and not measured; the others are added page by
/// page, and those with the MR.EXTEND attribute also have every page's content extended.
public struct TDXMRTD: Sendable {
    /// The order in which a VMM issues the SEAMCALLs. Linux KVM (`KVM_TDX_INIT_MEM_REGION` with
    /// `KVM_TDX_MEASURE_MEMORY_REGION`, as QEMU uses it) adds a page and then extends it, page by page; some
    /// VMMs add every page of a section first and extend afterwards. They give different MRTDs.
    public enum Order: String, Sendable, Hashable, CaseIterable, Codable {
        case perPage = "per-page"
        case perSection = "per-section"
    }

    public static let pageSize = 4096
    static let chunkSize = 256
    static let recordSize = 128

    public let digest: HexBytes
    /// How many PAGE.ADD and MR.EXTEND operations were measured.
    public let pagesAdded: Int
    public let chunksExtended: Int

    /// Computes MRTD for `firmware` (the whole image the TDVF metadata describes).
    public init(firmware: [UInt8], order: Order = .perPage) throws(TDXMeasurementError) {
        let image: OVMFImage
        do {
            image = try OVMFImage(bytes: firmware)
        } catch {
            throw TDXMeasurementError("the firmware's metadata cannot be read: \(error.description)")
        }
        guard let sections = image.tdvfSections else {
            throw TDXMeasurementError("the firmware declares no TDVF metadata (footer GUID \(OVMFImage.KnownGUID.tdxMetadataOffset)): it cannot launch a TD")
        }
        var hasher = SHA384()
        var pagesAdded = 0
        var chunksExtended = 0
        func record(_ operation: String, gpa: UInt64) {
            var buffer = [UInt8](repeating: 0, count: Self.recordSize)
            for (index, byte) in operation.utf8.enumerated() { buffer[index] = byte }
            for index in 0..<8 { buffer[16 + index] = UInt8(truncatingIfNeeded: gpa >> (8 * UInt64(index))) }
            hasher.update(data: buffer)
        }
        for (number, section) in sections.enumerated() where !section.isPageAugmented {
            guard section.memoryAddress % UInt64(Self.pageSize) == 0, section.memoryDataSize % UInt64(Self.pageSize) == 0,
                UInt64(section.rawDataSize) <= section.memoryDataSize
            else {
                throw TDXMeasurementError(
                    "TDVF section \(number) (\(section.kind)) at 0x\(String(section.memoryAddress, radix: 16)) size 0x\(String(section.memoryDataSize, radix: 16)) raw 0x\(String(section.rawDataSize, radix: 16)) is not page-aligned or holds more data than memory")
            }
            guard section.memoryDataSize <= 0x4000_0000 else {
                throw TDXMeasurementError("TDVF section \(number) declares \(section.memoryDataSize) bytes of memory: more than 1 GiB")
            }
            var content: [UInt8] = []
            if section.extendsMRTD {
                do {
                    content = try section.rawData(in: firmware)
                } catch {
                    throw TDXMeasurementError("TDVF section \(number) (\(section.kind)): \(error.description)")
                }
                content += [UInt8](repeating: 0, count: Int(section.memoryDataSize) - content.count)
            }
            let pages = Int(section.memoryDataSize) / Self.pageSize
            func extend(page: Int) {
                let base = page * Self.pageSize
                for chunk in 0..<(Self.pageSize / Self.chunkSize) {
                    let offset = base + chunk * Self.chunkSize
                    record("MR.EXTEND", gpa: section.memoryAddress + UInt64(offset))
                    hasher.update(data: content[offset..<(offset + Self.chunkSize)])
                    chunksExtended += 1
                }
            }
            for page in 0..<pages {
                record("MEM.PAGE.ADD", gpa: section.memoryAddress + UInt64(page * Self.pageSize))
                pagesAdded += 1
                if section.extendsMRTD && order == .perPage { extend(page: page) }
            }
            if section.extendsMRTD && order == .perSection {
                for page in 0..<pages { extend(page: page) }
            }
        }
        self.digest = HexBytes(Array(hasher.finalize()))
        self.pagesAdded = pagesAdded
        self.chunksExtended = chunksExtended
    }
}
