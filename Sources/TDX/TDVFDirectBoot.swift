public import BinaryFormat
import Crypto
import Foundation

/// The runtime measurements of a TD that TDVF (OVMF built for TDX) boots straight into a Linux kernel QEMU gives it
/// with `-kernel`, `-initrd` and `-append`: the CCEL event log (a TCG crypto-agile log, SHA-384 only) and the RTMRs
/// it extends. Pure values: the inputs are the bytes QEMU is given.
///
/// What is logged, in order (MR index = RTMR + 1, TDX.md §8; edk2 `MapPcrToMrIndex`):
/// 1. RTMR1 `EV_EFI_BOOT_SERVICES_APPLICATION`: the PE/COFF Authenticode SHA-384 of the kernel as TDVF loads it —
///    the file with the setup header QEMU patches (``patchedKernel(_:initrdSize:memoryMiB:)``); event data an
///    `EFI_IMAGE_LOAD_EVENT` with QEMU's kernel-loader device path.
/// 2. RTMR1 `EV_EFI_ACTION` "Calling EFI Application from Boot Option" and `EV_SEPARATOR` (4 zero bytes), at
///    ReadyToBoot.
/// 3. RTMR2 `EV_EVENT_TAG` "LOADED_IMAGE::LoadOptions" (tag 0x8F3B22ED) over the load options: the command line in
///    UTF-16LE with " initrd=initrd" appended when there is an initrd and a NUL (edk2 `X86QemuLoadImageLib`), and
///    `EV_EVENT_TAG` "Linux initrd" (tag 0x8F3B22EC) over the initrd — as the Linux EFI stub measures them (PCR 9).
/// 4. RTMR1 `EV_EFI_ACTION` "Exit Boot Services Invocation" and "Exit Boot Services Returned with Success".
///
/// RTMR0 (TD HOB, CFV, Secure Boot variables, ACPI tables) and RTMR3 are not part of this log: their inputs (the
/// VMM's ACPI tables, the HOB's memory map) are not bytes QEMU is given, so they stay zero.
public struct TDVFDirectBoot: Sendable, Hashable {
    /// The event types and tags the log uses (TCG PC Client PFP; Linux `efi.h`).
    public enum Event {
        public static let separator: UInt32 = 0x0000_0004
        public static let eventTag: UInt32 = 0x0000_0006
        public static let bootServicesApplication: UInt32 = 0x8000_0003
        public static let efiAction: UInt32 = 0x8000_0007
        public static let noAction: UInt32 = 0x0000_0003
        public static let loadOptionsTag: UInt32 = 0x8F3B_22ED
        public static let initrdTag: UInt32 = 0x8F3B_22EC
        public static let callingApplication = "Calling EFI Application from Boot Option"
        public static let exitBootServices = "Exit Boot Services Invocation"
        public static let exitBootServicesDone = "Exit Boot Services Returned with Success"
    }

    /// TPM_ALG_SHA384.
    public static let sha384AlgorithmID: UInt16 = 0x000C
    /// The ACPI data QEMU reserves below the top of low memory (q35), which bounds where the initrd may go.
    public static let acpiDataSize: UInt32 = 0x28000

    /// The kernel file, the initrd and the command line as QEMU is given them, and the memory size (which decides
    /// where QEMU places the initrd, and so the setup header it patches).
    public struct Inputs: Sendable, Hashable {
        public var kernel: [UInt8]
        public var initrd: [UInt8]?
        public var commandLine: String
        public var memoryMiB: Int

        public init(kernel: [UInt8], initrd: [UInt8]?, commandLine: String, memoryMiB: Int) {
            self.kernel = kernel
            self.initrd = initrd
            self.commandLine = commandLine
            self.memoryMiB = memoryMiB
        }
    }

    /// One measured event: MR index (1 = RTMR0 … 4 = RTMR3), type, SHA-384 digest, event data.
    public struct MeasuredEvent: Sendable, Hashable {
        public let mrIndex: UInt32
        public let type: UInt32
        public let digest: [UInt8]
        public let data: [UInt8]
    }

    public let events: [MeasuredEvent]
    /// The whole CCEL log: the Spec ID header event, then every event (no padding).
    public let log: [UInt8]
    /// RTMR0 … RTMR3 after extending every event, in order.
    public let rtmrs: [[UInt8]]
    /// The kernel's Authenticode SHA-384 as measured (after QEMU's patch).
    public let kernelDigest: [UInt8]

    public init(_ inputs: Inputs) throws(TDXMeasurementError) {
        let patched = try Self.patchedKernel(
            inputs.kernel, initrdSize: inputs.initrd.map { UInt32(clamping: $0.count) } ?? 0,
            memoryMiB: inputs.memoryMiB)
        let kernelDigest = try PEAuthenticode.sha384(patched)
        func sha384(_ bytes: [UInt8]) -> [UInt8] { Array(SHA384.hash(data: bytes)) }
        func text(_ value: String) -> [UInt8] { Array(value.utf8) }
        func tagged(_ tag: UInt32, _ description: String) -> [UInt8] {
            let data = text(description) + [0]
            return Self.le32(tag) + Self.le32(UInt32(data.count)) + data
        }
        var loadOptions = inputs.commandLine + (inputs.initrd == nil ? "" : " initrd=initrd")
        loadOptions.append("\0")
        let loadOptionBytes = loadOptions.utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)] }
        var events = [
            MeasuredEvent(
                mrIndex: 2, type: Event.bootServicesApplication, digest: kernelDigest,
                data: Self.imageLoadEvent(length: UInt64(patched.count))),
            MeasuredEvent(
                mrIndex: 2, type: Event.efiAction, digest: sha384(text(Event.callingApplication)),
                data: text(Event.callingApplication)),
            MeasuredEvent(mrIndex: 2, type: Event.separator, digest: sha384([0, 0, 0, 0]), data: [0, 0, 0, 0]),
            MeasuredEvent(
                mrIndex: 3, type: Event.eventTag, digest: sha384(loadOptionBytes),
                data: tagged(Event.loadOptionsTag, "LOADED_IMAGE::LoadOptions")),
        ]
        if let initrd = inputs.initrd {
            events.append(
                MeasuredEvent(
                    mrIndex: 3, type: Event.eventTag, digest: sha384(initrd),
                    data: tagged(Event.initrdTag, "Linux initrd")))
        }
        events += [
            MeasuredEvent(
                mrIndex: 2, type: Event.efiAction, digest: sha384(text(Event.exitBootServices)),
                data: text(Event.exitBootServices)),
            MeasuredEvent(
                mrIndex: 2, type: Event.efiAction, digest: sha384(text(Event.exitBootServicesDone)),
                data: text(Event.exitBootServicesDone)),
        ]
        var rtmrs = [[UInt8]](repeating: [UInt8](repeating: 0, count: 48), count: 4)
        var log = Self.specIDEvent
        for event in events {
            rtmrs[Int(event.mrIndex) - 1] = sha384(rtmrs[Int(event.mrIndex) - 1] + event.digest)
            log += Self.le32(event.mrIndex) + Self.le32(event.type) + Self.le32(1)
            log += [UInt8(truncatingIfNeeded: Self.sha384AlgorithmID), UInt8(Self.sha384AlgorithmID >> 8)]
            log += event.digest + Self.le32(UInt32(event.data.count)) + event.data
        }
        self.events = events
        self.log = log
        self.rtmrs = rtmrs
        self.kernelDigest = kernelDigest
    }

    /// The header event TDVF writes: TCG_PCClientPCREvent (MR index 1, EV_NO_ACTION, zero SHA-1 digest) holding
    /// TCG_EfiSpecIDEvent "Spec ID Event03", spec 2.0 errata 0, UINTN 64-bit, one bank: SHA-384 (48 bytes).
    static let specIDEvent: [UInt8] = {
        var event = Array("Spec ID Event03".utf8) + [0]
        event += le32(0) + [0, 2, 0, 2] + le32(1) + [0x0C, 0x00, 48, 0x00] + [0]
        return le32(1) + le32(Event.noAction) + [UInt8](repeating: 0, count: 20) + le32(UInt32(event.count)) + event
    }()

    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    static func le64(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    /// UEFI_IMAGE_LOAD_EVENT: location and link-time address unknown (0), the image length, and the device path
    /// edk2's QEMU kernel loader gives the kernel: VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7)/"kernel"/End.
    static func imageLoadEvent(length: UInt64) -> [UInt8] {
        let guid: [UInt8] = [
            0x72, 0xF7, 0x28, 0x14, 0x4A, 0xB6, 0x1E, 0x44, 0xB8, 0xC3, 0x9E, 0xBD, 0xD7, 0xF8, 0x93, 0xC7,
        ]
        let name = "kernel\0".utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)] }
        let path =
            [0x04, 0x03, 20, 0] + guid + [0x04, 0x04, UInt8(4 + name.count), 0] + name + [0x7F, 0xFF, 0x04, 0x00]
        return le64(0) + le64(length) + le64(0) + le64(UInt64(path.count)) + path
    }

    /// The kernel as TDVF sees it: QEMU (`x86_load_linux`) writes its loader type, heap end, command-line address
    /// and the initrd's address and size into the bzImage setup header before handing it over through fw_cfg.
    /// A file too short for a setup header, or an initrd that does not fit, is an error.
    public static func patchedKernel(
        _ kernel: [UInt8], initrdSize: UInt32, memoryMiB: Int
    ) throws(TDXMeasurementError) -> [UInt8] {
        guard kernel.count >= 0x1000 else {
            throw TDXMeasurementError("the kernel is \(kernel.count) bytes: too short for a bzImage setup header")
        }
        var k = kernel
        func read16(_ offset: Int) -> UInt16 { UInt16(k[offset]) | UInt16(k[offset + 1]) << 8 }
        func read32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(k[offset + $1]) << (8 * UInt32($1)) } }
        func write32(_ offset: Int, _ value: UInt32) { k.replaceSubrange(offset..<(offset + 4), with: le32(value)) }
        let isHdrS = read32(0x202) == 0x5372_6448  // "HdrS"
        let protocolVersion: UInt16 = isHdrS ? read16(0x206) : 0
        let loadHigh = protocolVersion >= 0x200 && k[0x211] & 0x01 != 0
        let (realAddress, commandLineAddress): (UInt32, UInt32) = loadHigh ? (0x10000, 0x20000) : (0x90000, 0x9A000)
        if protocolVersion >= 0x200 { k[0x210] = 0xB0 }  // type_of_loader: QEMU
        if protocolVersion >= 0x201 {
            k[0x211] |= 0x80  // CAN_USE_HEAP
            write32(0x224, commandLineAddress - realAddress - 0x200)  // heap_end_ptr
        }
        if protocolVersion >= 0x202 {
            write32(0x228, commandLineAddress)
        } else {
            k.replaceSubrange(0x20..<0x22, with: [0x3F, 0xA3])
            let offset = UInt16(commandLineAddress - realAddress)
            k.replaceSubrange(0x22..<0x24, with: [UInt8(truncatingIfNeeded: offset), UInt8(offset >> 8)])
        }
        if initrdSize > 0 {
            guard protocolVersion >= 0x200 else {
                throw TDXMeasurementError("the kernel's boot protocol \(protocolVersion) is too old for an initrd")
            }
            var initrdMaximum: UInt32 = 0x37FF_FFFF
            if protocolVersion >= 0x20C, read16(0x236) & 0x40 != 0 {
                initrdMaximum = UInt32.max  // XLF_CAN_BE_LOADED_ABOVE_4G
            } else if protocolVersion >= 0x203, read32(0x22C) != 0 {
                initrdMaximum = read32(0x22C)
            }
            let memory = UInt64(max(memoryMiB, 0)) << 20
            let lowMemoryLimit: UInt64 = memory < 0xB000_0000 ? 0xB000_0000 : 0x8000_0000
            let belowFourGiB = UInt32(min(memory, lowMemoryLimit))
            guard belowFourGiB > acpiDataSize else {
                throw TDXMeasurementError("\(memoryMiB) MiB of memory leaves no room for an initrd")
            }
            if initrdMaximum >= belowFourGiB - acpiDataSize { initrdMaximum = belowFourGiB - acpiDataSize - 1 }
            guard initrdSize < initrdMaximum else {
                throw TDXMeasurementError(
                    "the initrd (\(initrdSize) bytes) does not fit below 0x\(String(initrdMaximum, radix: 16))")
            }
            write32(0x218, (initrdMaximum - initrdSize) & ~UInt32(4095))
            write32(0x21C, initrdSize)
        }
        return k
    }
}

/// The Authenticode digest of a PE/COFF image (Microsoft "Windows Authenticode Portable Executable Signature
/// Format", as edk2's `Tcg2MeasurePeImage` computes it for EV_EFI_BOOT_SERVICES_APPLICATION): the headers without
/// the checksum and the certificate-table directory entry, then every section's raw data in file order, then any
/// data after the sections except the certificate table.
public enum PEAuthenticode {
    /// The SHA-384 Authenticode digest of `image` (what TDVF measures); throws when it is not a PE32 or PE32+ image.
    public static func sha384(_ image: [UInt8]) throws(TDXMeasurementError) -> [UInt8] {
        try digest(image, SHA384.self)
    }

    /// The SHA-256 Authenticode digest of `image`: what a signature over the image (e.g. a distribution's Secure
    /// Boot signature) covers, so the same code can be checked against a signed image.
    public static func sha256(_ image: [UInt8]) throws(TDXMeasurementError) -> [UInt8] {
        try digest(image, SHA256.self)
    }

    static func digest<H: HashFunction>(_ image: [UInt8], _ hash: H.Type) throws(TDXMeasurementError) -> [UInt8] {
        do {
            return try digest(image, into: H())
        } catch {
            throw TDXMeasurementError("the kernel is not a PE/COFF image TDVF could load: \(error.description)")
        }
    }

    static func digest<H: HashFunction>(_ image: [UInt8], into start: H) throws(BinaryFormatError) -> [UInt8] {
        var dos = try ByteCursor(image).window(at: 0x3C, count: 4, field: "e_lfanew")
        let peOffset = Int(try dos.readLittleEndian(UInt32.self, field: "e_lfanew"))
        var pe = try ByteCursor(image).window(at: peOffset, count: 24, field: "PE header")
        guard try pe.readLittleEndian(UInt32.self, field: "PE signature") == 0x0000_4550 else {
            throw BinaryFormatError(.invalidValue, field: "PE signature", offset: peOffset, "no \"PE\\0\\0\" signature")
        }
        try pe.skip(2, field: "Machine")
        let sectionCount = Int(try pe.readLittleEndian(UInt16.self, field: "NumberOfSections"))
        try pe.skip(12, field: "TimeDateStamp to NumberOfSymbols")
        let optionalSize = Int(try pe.readLittleEndian(UInt16.self, field: "SizeOfOptionalHeader"))
        let optional = peOffset + 24
        var magicCursor = try ByteCursor(image).window(at: optional, count: 2, field: "optional header magic")
        let magic = try magicCursor.readLittleEndian(UInt16.self, field: "optional header magic")
        guard magic == 0x10B || magic == 0x20B else {
            throw BinaryFormatError(.unsupported, field: "optional header magic", offset: optional, "not PE32 or PE32+")
        }
        let checksum = optional + 64
        var headers = try ByteCursor(image).window(at: optional + 60, count: 4, field: "SizeOfHeaders")
        let headerSize = Int(try headers.readLittleEndian(UInt32.self, field: "SizeOfHeaders"))
        let directories = optional + (magic == 0x20B ? 112 : 96)
        var countCursor = try ByteCursor(image).window(at: directories - 4, count: 4, field: "NumberOfRvaAndSizes")
        let directoryCount = try countCursor.readLittleEndian(UInt32.self, field: "NumberOfRvaAndSizes")
        let securityEntry = directories + 4 * 8
        var certificateSize = 0
        if directoryCount > 4 {
            var entry = try ByteCursor(image).window(at: securityEntry + 4, count: 4, field: "certificate table size")
            certificateSize = Int(try entry.readLittleEndian(UInt32.self, field: "certificate table size"))
        }
        guard headerSize <= image.count, securityEntry + 8 <= headerSize, checksum + 4 <= securityEntry else {
            throw BinaryFormatError(
                .invalidValue, field: "SizeOfHeaders", offset: optional + 60, "headers out of range")
        }
        var hash = start
        hash.update(data: image[0..<checksum])
        if directoryCount > 4 {
            hash.update(data: image[(checksum + 4)..<securityEntry])
            hash.update(data: image[(securityEntry + 8)..<headerSize])
        } else {
            hash.update(data: image[(checksum + 4)..<headerSize])
        }
        var sections: [(offset: Int, size: Int)] = []
        let table = optional + optionalSize
        for index in 0..<sectionCount {
            var section = try ByteCursor(image).window(at: table + 40 * index + 16, count: 8, field: "section \(index)")
            let size = Int(try section.readLittleEndian(UInt32.self, field: "SizeOfRawData"))
            let offset = Int(try section.readLittleEndian(UInt32.self, field: "PointerToRawData"))
            guard size > 0 else { continue }
            guard offset + size <= image.count else {
                throw BinaryFormatError(
                    .truncated, field: "section \(index)", offset: offset, "section data lies beyond the file")
            }
            sections.append((offset, size))
        }
        var hashed = headerSize
        for section in sections.sorted(by: { $0.offset < $1.offset }) {
            hash.update(data: image[section.offset..<(section.offset + section.size)])
            hashed += section.size
        }
        // As edk2: the certificate table (the file's tail) must fit after what was hashed.
        guard image.count >= hashed + certificateSize else {
            throw BinaryFormatError(
                .truncated, field: "certificate table", offset: image.count,
                "the sections and the \(certificateSize)-byte certificate table need more than the file's \(image.count) bytes"
            )
        }
        if image.count > hashed + certificateSize {
            hash.update(data: image[hashed..<(image.count - certificateSize)])
        }
        return Array(hash.finalize())
    }
}
