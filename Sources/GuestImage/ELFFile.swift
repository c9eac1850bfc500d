import BinaryFormat

/// The parts of an ELF64 little-endian file that cmk reads (System V ABI, "ELF Header", "Sections", "Program
/// Header"): a named section's bytes (a kernel module's `.modinfo`), and the interpreter a dynamically linked
/// executable asks for (`PT_INTERP`).
struct ELFFile: Sendable {
    static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
    static let class64: UInt8 = 2
    static let littleEndian: UInt8 = 1
    static let headerSize = 64

    /// Offsets in the ELF64 header.
    enum HeaderOffset {
        static let elfClass = 4, dataEncoding = 5
        static let programHeaderOffset = 0x20, sectionHeaderOffset = 0x28
        static let programHeaderEntrySize = 0x36, programHeaderCount = 0x38
        static let sectionHeaderEntrySize = 0x3A, sectionHeaderCount = 0x3C, sectionNameTableIndex = 0x3E
    }

    /// Offsets in an Elf64_Shdr (64 bytes).
    enum SectionOffset {
        static let name = 0, type = 4, fileOffset = 24, size = 32
        static let entrySize = 64
    }

    /// Offsets in an Elf64_Phdr (56 bytes).
    enum ProgramOffset {
        static let type = 0, fileOffset = 8, fileSize = 32
        static let entrySize = 56
    }

    static let sectionTypeNoBits: UInt32 = 8
    static let programTypeInterpreter: UInt32 = 3

    struct Section: Sendable {
        let name: String
        let type: UInt32
        let offset: Int
        let size: Int
    }

    let bytes: [UInt8]
    let sections: [Section]
    /// The `PT_INTERP` path, nil for a statically linked file.
    let interpreter: String?

    init(bytes: [UInt8]) throws(BinaryFormatError) {
        self.bytes = bytes
        var header = ByteCursor(bytes)
        guard try header.readBytes(4, field: "e_ident magic") == Self.magic else {
            throw BinaryFormatError(.invalidValue, field: "e_ident magic", offset: 0, "not an ELF file")
        }
        let elfClass = try header.readUInt8(field: "EI_CLASS")
        let encoding = try header.readUInt8(field: "EI_DATA")
        guard elfClass == Self.class64, encoding == Self.littleEndian else {
            throw BinaryFormatError(
                .unsupported, field: "EI_CLASS", offset: HeaderOffset.elfClass,
                "class \(elfClass), encoding \(encoding): only 64-bit little-endian ELF is read")
        }
        func field<T: FixedWidthInteger & UnsignedInteger>(
            _ offset: Int, _: T.Type, _ name: String
        )
            throws(BinaryFormatError) -> T
        {
            var cursor = try ByteCursor(bytes).window(at: offset, count: MemoryLayout<T>.size, field: name)
            return try cursor.readLittleEndian(T.self, field: name)
        }
        let sectionTable = Int(try field(HeaderOffset.sectionHeaderOffset, UInt64.self, "e_shoff"))
        let sectionEntrySize = Int(try field(HeaderOffset.sectionHeaderEntrySize, UInt16.self, "e_shentsize"))
        let sectionCount = Int(try field(HeaderOffset.sectionHeaderCount, UInt16.self, "e_shnum"))
        let nameTableIndex = Int(try field(HeaderOffset.sectionNameTableIndex, UInt16.self, "e_shstrndx"))
        let programTable = Int(try field(HeaderOffset.programHeaderOffset, UInt64.self, "e_phoff"))
        let programEntrySize = Int(try field(HeaderOffset.programHeaderEntrySize, UInt16.self, "e_phentsize"))
        let programCount = Int(try field(HeaderOffset.programHeaderCount, UInt16.self, "e_phnum"))

        var raw: [(name: UInt32, type: UInt32, offset: Int, size: Int)] = []
        if sectionCount > 0 {
            guard sectionEntrySize >= SectionOffset.entrySize else {
                throw BinaryFormatError(
                    .invalidValue, field: "e_shentsize", offset: HeaderOffset.sectionHeaderEntrySize,
                    "\(sectionEntrySize) bytes, less than an Elf64_Shdr")
            }
            for index in 0..<sectionCount {
                let base = sectionTable + index * sectionEntrySize
                var entry = try ByteCursor(bytes).window(
                    at: base, count: SectionOffset.entrySize, field: "section header \(index)")
                let name = try entry.readLittleEndian(UInt32.self, field: "sh_name")
                let type = try entry.readLittleEndian(UInt32.self, field: "sh_type")
                try entry.skip(SectionOffset.fileOffset - 8, field: "sh_flags, sh_addr")
                let offset = try entry.readLittleEndian(UInt64.self, field: "sh_offset")
                let size = try entry.readLittleEndian(UInt64.self, field: "sh_size")
                guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) else {
                    throw BinaryFormatError(.truncated, field: "section \(index)", offset: base, "lies beyond the file")
                }
                raw.append((name, type, Int(offset), Int(size)))
            }
        }
        var sections: [Section] = []
        if !raw.isEmpty {
            guard nameTableIndex < raw.count else {
                throw BinaryFormatError(
                    .invalidValue, field: "e_shstrndx", offset: HeaderOffset.sectionNameTableIndex,
                    "section \(nameTableIndex) of \(raw.count)")
            }
            let table = raw[nameTableIndex]
            let names = try ByteCursor(bytes).window(at: table.offset, count: table.size, field: ".shstrtab")
            for entry in raw {
                guard Int(entry.name) < table.size else {
                    throw BinaryFormatError(
                        .invalidValue, field: "sh_name", offset: table.offset, "points past .shstrtab")
                }
                let start = table.offset + Int(entry.name)
                let end =
                    names.bytes[start..<(table.offset + table.size)].firstIndex(of: 0) ?? (table.offset + table.size)
                sections.append(
                    Section(
                        name: String(decoding: bytes[start..<end], as: UTF8.self), type: entry.type,
                        offset: entry.offset,
                        size: entry.type == Self.sectionTypeNoBits ? 0 : entry.size))
            }
        }
        self.sections = sections

        var interpreter: String?
        if programCount > 0 {
            guard programEntrySize >= ProgramOffset.entrySize else {
                throw BinaryFormatError(
                    .invalidValue, field: "e_phentsize", offset: HeaderOffset.programHeaderEntrySize,
                    "\(programEntrySize) bytes, less than an Elf64_Phdr")
            }
            for index in 0..<programCount {
                let base = programTable + index * programEntrySize
                var entry = try ByteCursor(bytes).window(
                    at: base, count: ProgramOffset.entrySize, field: "program header \(index)")
                guard try entry.readLittleEndian(UInt32.self, field: "p_type") == Self.programTypeInterpreter else {
                    continue
                }
                try entry.skip(ProgramOffset.fileOffset - 4, field: "p_flags")
                let offset = try entry.readLittleEndian(UInt64.self, field: "p_offset")
                try entry.skip(ProgramOffset.fileSize - ProgramOffset.fileOffset - 8, field: "p_vaddr, p_paddr")
                let size = try entry.readLittleEndian(UInt64.self, field: "p_filesz")
                guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) else {
                    throw BinaryFormatError(.truncated, field: "PT_INTERP", offset: base, "lies beyond the file")
                }
                var path = try ByteCursor(bytes).window(at: Int(offset), count: Int(size), field: "PT_INTERP")
                let text = try path.readBytes(path.remaining, field: "PT_INTERP")
                interpreter = String(decoding: text.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
        }
        self.interpreter = interpreter
    }

    /// The bytes of the first section called `name`, nil when there is none.
    func section(named name: String) throws(BinaryFormatError) -> [UInt8]? {
        guard let section = sections.first(where: { $0.name == name }) else { return nil }
        var cursor = try ByteCursor(bytes).window(at: section.offset, count: section.size, field: name)
        return try cursor.readBytes(cursor.remaining, field: name)
    }
}
