public import BinaryFormat

/// An OVMF (edk2) firmware image and the launch metadata it declares for confidential guests.
///
/// Three structures are read, each bounds-checked:
/// - the GUIDed footer table that edk2's reset vector places just below the last 32 bytes of the image
///   (OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm; sev-snp-measure `ovmf.py`);
/// - the SEV metadata ("ASEV") that lists the pages an SNP launch measures beyond the image itself;
/// - the TDVF metadata descriptor ("TDVF", Intel TDVF design guide §11) that a TDX launch follows.
///
/// A firmware without one of these parses fine; the corresponding property is `nil`, so a caller can say
/// exactly what the firmware cannot do.
public struct OVMFImage: Sendable {
    /// Footer-table entry GUIDs (edk2 OvmfPkg, names as in sev-snp-measure and the TDVF guide).
    public enum KnownGUID {
        /// Terminates the footer table.
        public static let footerTable = EFIGUID("96b582de-1fb2-45f7-baea-a366c55a082d")!
        /// SEV-ES AP reset block: u32 AP reset EIP.
        public static let sevESResetBlock = EFIGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")!
        /// SEV hash table (kernel hashes): u32 GPA, u32 size.
        public static let sevHashTable = EFIGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")!
        /// SEV metadata: u32 offset of the "ASEV" header from the end of the image.
        public static let sevMetadata = EFIGUID("dc886566-984a-4798-a75e-5585a7bf67cc")!
        /// SEV secret block: u32 GPA, u32 size.
        public static let sevSecretBlock = EFIGUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")!
        /// TDX metadata offset: u32 offset of the "TDVF" descriptor from the end of the image.
        public static let tdxMetadataOffset = EFIGUID("e47a6535-984a-4798-865e-4685a7bf8ec2")!
        /// Precedes the TDVF descriptor.
        public static let tdxMetadata = EFIGUID("e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae")!
    }

    /// Distance from the end of the image to the end of the footer table's terminating entry.
    public static let footerTableEndDistance = 0x20
    /// Size of an entry header: u16 length followed by the GUID.
    public static let footerEntryHeaderSize = 2 + EFIGUID.size

    /// One footer-table entry: its GUID and the data bytes before its header.
    public struct FooterEntry: Sendable, Hashable {
        public let guid: EFIGUID
        public let data: [UInt8]
    }

    /// A section of the SEV metadata (type values from edk2 OvmfPkg/Include/WorkArea.h and QEMU).
    public struct SEVSection: Sendable, Hashable {
        public enum Kind: UInt32, Sendable, Hashable, CaseIterable {
            case snpSecureMemory = 1
            case snpSecrets = 2
            case cpuid = 3
            case svsmCallingArea = 4
            case snpKernelHashes = 0x10

            /// The name the SEV metadata specification and sev-snp-measure use.
            public var specName: String {
                switch self {
                case .snpSecureMemory: "SNP_SEC_MEM"
                case .snpSecrets: "SNP_SECRETS"
                case .cpuid: "CPUID"
                case .svsmCallingArea: "SVSM_CAA"
                case .snpKernelHashes: "SNP_KERNEL_HASHES"
                }
            }
        }
        public let gpa: UInt32
        public let size: UInt32
        public let kind: Kind

        public init(gpa: UInt32, size: UInt32, kind: Kind) {
            self.gpa = gpa
            self.size = size
            self.kind = kind
        }
    }

    /// A section of the TDVF metadata (TDVF design guide, Table 11-3).
    public struct TDVFSection: Sendable, Hashable {
        public enum Kind: UInt32, Sendable, Hashable {
            case bootFirmwareVolume = 0, configurationFirmwareVolume, tdHOB, temporaryMemory, permanentMemory
            case payload, payloadParameters, tdInfo, tdParams
        }
        public let dataOffset: UInt32
        public let rawDataSize: UInt32
        public let memoryAddress: UInt64
        public let memoryDataSize: UInt64
        public let kind: Kind
        public let attributes: UInt32
        /// Attribute bit 0: the VMM extends the pages into MRTD (TDH.MR.EXTEND).
        public var extendsMRTD: Bool { attributes & 1 != 0 }
        /// Attribute bit 1: the pages are added after launch (TDH.MEM.PAGE.AUG), not measured.
        public var isPageAugmented: Bool { attributes & 2 != 0 }

        /// The section's raw data inside `image` (the whole firmware file this section was read from).
        ///
        /// Checked here rather than when the metadata is parsed, so that the metadata of a firmware tail
        /// (as sev-snp-measure's fixture is) can still be read.
        public func rawData(in image: [UInt8]) throws(BinaryFormatError) -> [UInt8] {
            var cursor = try ByteCursor(image).window(at: Int(dataOffset), count: Int(rawDataSize), field: "TDVF \(kind) data")
            return try cursor.readBytes(Int(rawDataSize), field: "TDVF \(kind) data")
        }
    }

    /// The image size in bytes.
    public let size: Int
    /// The guest-physical address of the first byte when the image is mapped to end at 4 GiB.
    public var gpa: UInt64 { 0x1_0000_0000 - UInt64(size) }
    /// The footer table, in the order entries appear from the end of the image backwards; empty when absent.
    public let footerEntries: [FooterEntry]
    /// SEV metadata sections in table order, or nil when the image declares none.
    public let sevSections: [SEVSection]?
    /// The SEV-ES AP reset EIP, when declared.
    public let sevESResetEIP: UInt32?
    /// The kernel-hashes table location (GPA, size), when declared; a GPA of 0 means "not provided".
    public let sevHashTable: (gpa: UInt32, size: UInt32)?
    /// TDVF sections, or nil when the image declares no TDX metadata.
    public let tdvfSections: [TDVFSection]?

    /// Whether an SNP launch of this image can be measured: it declares SEV metadata.
    public var hasSNPMetadata: Bool { sevSections != nil }

    /// Whether the image measures a kernel, initrd and command line into the SNP launch digest: it
    /// declares an SNP_KERNEL_HASHES section and a non-zero hash-table GPA (edk2 AmdSevX64 builds only).
    public var supportsKernelHashes: Bool {
        guard let sevSections, sevSections.contains(where: { $0.kind == .snpKernelHashes }) else { return false }
        return (sevHashTable?.gpa ?? 0) != 0
    }

    /// Whether the image carries TDVF metadata, so a TDX launch can use it and its MRTD can be computed.
    public var hasTDXMetadata: Bool { tdvfSections != nil }

    /// The data of the footer entry with `guid`, if present.
    public func footerData(_ guid: EFIGUID) -> [UInt8]? {
        footerEntries.first(where: { $0.guid == guid })?.data
    }

    /// Parses an image. Throws only when a structure the image declares is malformed; missing
    /// structures are reported as nil properties.
    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        self.size = bytes.count
        let entries = try Self.readFooterTable(bytes)
        self.footerEntries = entries
        func data(_ guid: EFIGUID) -> [UInt8]? { entries.first(where: { $0.guid == guid })?.data }

        if let reset = data(KnownGUID.sevESResetBlock) {
            var cursor = ByteCursor(reset)
            self.sevESResetEIP = try cursor.readLittleEndian(UInt32.self, field: "SEV-ES reset block EIP")
        } else {
            self.sevESResetEIP = nil
        }
        if let table = data(KnownGUID.sevHashTable) {
            var cursor = ByteCursor(table)
            let gpa = try cursor.readLittleEndian(UInt32.self, field: "SEV hash table GPA")
            let size = try cursor.readLittleEndian(UInt32.self, field: "SEV hash table size")
            self.sevHashTable = (gpa, size)
        } else {
            self.sevHashTable = nil
        }
        if let metadata = data(KnownGUID.sevMetadata) {
            var cursor = ByteCursor(metadata)
            let offset = try cursor.readLittleEndian(UInt32.self, field: "SEV metadata offset")
            self.sevSections = try Self.readSEVMetadata(bytes, offsetFromEnd: Int(offset))
        } else {
            self.sevSections = nil
        }
        if let tdx = data(KnownGUID.tdxMetadataOffset) {
            guard tdx.count >= 4 else {
                throw BinaryFormatError(.truncated, field: "TDX metadata offset", offset: 0, "entry holds \(tdx.count) bytes, needs 4")
            }
            var cursor = ByteCursor(Array(tdx.suffix(4)))
            let offset = try cursor.readLittleEndian(UInt32.self, field: "TDX metadata offset")
            self.tdvfSections = try Self.readTDVFMetadata(bytes, offsetFromEnd: Int(offset))
        } else {
            self.tdvfSections = nil
        }
    }

    /// Walks the footer table backwards from its terminating entry.
    static func readFooterTable(_ bytes: [UInt8]) throws(BinaryFormatError) -> [FooterEntry] {
        let terminatorEnd = bytes.count - footerTableEndDistance
        guard terminatorEnd - footerEntryHeaderSize >= 0 else { return [] }
        let root = ByteCursor(bytes)
        var header = try root.window(at: terminatorEnd - footerEntryHeaderSize, count: footerEntryHeaderSize, field: "footer table")
        let tableSize = Int(try header.readLittleEndian(UInt16.self, field: "footer table size"))
        guard try header.readGUID(field: "footer table GUID") == KnownGUID.footerTable else { return [] }
        guard tableSize >= footerEntryHeaderSize, tableSize <= terminatorEnd else {
            throw BinaryFormatError(
                .invalidValue, field: "footer table size", offset: terminatorEnd - footerEntryHeaderSize,
                "table size \(tableSize) is smaller than its header or larger than the image")
        }
        let tableStart = terminatorEnd - tableSize
        var entries: [FooterEntry] = []
        var end = terminatorEnd - footerEntryHeaderSize
        while end > tableStart {
            guard end - footerEntryHeaderSize >= tableStart else {
                throw BinaryFormatError(.truncated, field: "footer table entry", offset: tableStart, "entry header crosses the table start")
            }
            var entryHeader = try root.window(at: end - footerEntryHeaderSize, count: footerEntryHeaderSize, field: "footer entry")
            let entrySize = Int(try entryHeader.readLittleEndian(UInt16.self, field: "footer entry size"))
            let guid = try entryHeader.readGUID(field: "footer entry GUID")
            guard entrySize >= footerEntryHeaderSize, end - entrySize >= tableStart else {
                throw BinaryFormatError(
                    .invalidValue, field: "footer entry \(guid) size", offset: end - footerEntryHeaderSize,
                    "entry size \(entrySize) does not fit the table")
            }
            var dataCursor = try root.window(
                at: end - entrySize, count: entrySize - footerEntryHeaderSize, field: "footer entry \(guid)")
            entries.append(FooterEntry(guid: guid, data: try dataCursor.readBytes(dataCursor.remaining, field: "footer entry data")))
            end -= entrySize
        }
        return entries
    }

    static let sevMetadataSignature: [UInt8] = Array("ASEV".utf8)
    static let tdvfSignature: [UInt8] = Array("TDVF".utf8)

    static func readSEVMetadata(_ bytes: [UInt8], offsetFromEnd: Int) throws(BinaryFormatError) -> [SEVSection] {
        let start = bytes.count - offsetFromEnd
        var cursor = try ByteCursor(bytes).window(at: start, count: max(0, bytes.count - start), field: "SEV metadata")
        guard try cursor.readBytes(4, field: "SEV metadata signature") == sevMetadataSignature else {
            throw BinaryFormatError(.invalidValue, field: "SEV metadata signature", offset: start, "expected \"ASEV\"")
        }
        let declaredSize = try cursor.readLittleEndian(UInt32.self, field: "SEV metadata size")
        let version = try cursor.readLittleEndian(UInt32.self, field: "SEV metadata version")
        guard version == 1 else {
            throw BinaryFormatError(.unsupported, field: "SEV metadata version", offset: start + 8, "version \(version) is not 1")
        }
        let count = try cursor.readLittleEndian(UInt32.self, field: "SEV metadata section count")
        guard UInt64(declaredSize) == 16 + UInt64(count) * 12 else {
            throw BinaryFormatError(
                .invalidValue, field: "SEV metadata size", offset: start + 4,
                "size \(declaredSize) does not match \(count) sections of 12 bytes after a 16-byte header")
        }
        var sections: [SEVSection] = []
        for index in 0..<Int(count) {
            let gpa = try cursor.readLittleEndian(UInt32.self, field: "SEV section \(index) GPA")
            let size = try cursor.readLittleEndian(UInt32.self, field: "SEV section \(index) size")
            let typeOffset = cursor.offset
            let rawType = try cursor.readLittleEndian(UInt32.self, field: "SEV section \(index) type")
            guard let kind = SEVSection.Kind(rawValue: rawType) else {
                throw BinaryFormatError(.unsupported, field: "SEV section \(index) type", offset: typeOffset, "unknown section type \(rawType)")
            }
            sections.append(SEVSection(gpa: gpa, size: size, kind: kind))
        }
        return sections
    }

    static func readTDVFMetadata(_ bytes: [UInt8], offsetFromEnd: Int) throws(BinaryFormatError) -> [TDVFSection] {
        let start = bytes.count - offsetFromEnd
        let root = ByteCursor(bytes)
        var guidCursor = try root.window(at: start - EFIGUID.size, count: EFIGUID.size, field: "TDVF metadata GUID")
        guard try guidCursor.readGUID(field: "TDVF metadata GUID") == KnownGUID.tdxMetadata else {
            throw BinaryFormatError(.invalidValue, field: "TDVF metadata GUID", offset: start - EFIGUID.size, "descriptor is not preceded by the TDVF metadata GUID")
        }
        var cursor = try root.window(at: start, count: max(0, bytes.count - start), field: "TDVF descriptor")
        guard try cursor.readBytes(4, field: "TDVF signature") == tdvfSignature else {
            throw BinaryFormatError(.invalidValue, field: "TDVF signature", offset: start, "expected \"TDVF\"")
        }
        let declaredLength = try cursor.readLittleEndian(UInt32.self, field: "TDVF descriptor length")
        let version = try cursor.readLittleEndian(UInt32.self, field: "TDVF descriptor version")
        guard version == 1 else {
            throw BinaryFormatError(.unsupported, field: "TDVF descriptor version", offset: start + 8, "version \(version) is not 1")
        }
        let count = try cursor.readLittleEndian(UInt32.self, field: "TDVF section count")
        guard UInt64(declaredLength) == 16 + UInt64(count) * 32 else {
            throw BinaryFormatError(
                .invalidValue, field: "TDVF descriptor length", offset: start + 4,
                "length \(declaredLength) does not match \(count) sections of 32 bytes after a 16-byte header")
        }
        var sections: [TDVFSection] = []
        for index in 0..<Int(count) {
            let dataOffset = try cursor.readLittleEndian(UInt32.self, field: "TDVF section \(index) data offset")
            let rawSize = try cursor.readLittleEndian(UInt32.self, field: "TDVF section \(index) raw size")
            let address = try cursor.readLittleEndian(UInt64.self, field: "TDVF section \(index) memory address")
            let memorySize = try cursor.readLittleEndian(UInt64.self, field: "TDVF section \(index) memory size")
            let typeOffset = cursor.offset
            let rawType = try cursor.readLittleEndian(UInt32.self, field: "TDVF section \(index) type")
            let attributes = try cursor.readLittleEndian(UInt32.self, field: "TDVF section \(index) attributes")
            guard let kind = TDVFSection.Kind(rawValue: rawType) else {
                throw BinaryFormatError(.unsupported, field: "TDVF section \(index) type", offset: typeOffset, "unknown section type \(rawType)")
            }
            sections.append(TDVFSection(
                dataOffset: dataOffset, rawDataSize: rawSize, memoryAddress: address, memoryDataSize: memorySize,
                kind: kind, attributes: attributes))
        }
        return sections
    }
}
