public import BinaryFormat
public import Firmware
import Crypto

/// Why a launch measurement could not be computed.
public struct SNPMeasurementError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }
        /// The firmware declares no SEV metadata: no SNP launch of it can be measured.
        public static let noSNPMetadata = Code("no-snp-metadata")
        /// A kernel was given but the firmware has no SNP_KERNEL_HASHES section to carry its hash.
        public static let noKernelHashes = Code("no-kernel-hashes")
        /// The firmware file cannot be mapped (size not a multiple of 4 KiB, larger than 4 GiB) or parsed.
        public static let badFirmware = Code("bad-firmware")
        /// A section of the metadata is inconsistent (size not page-aligned, kernel-hashes page not one page ...).
        public static let badSection = Code("bad-section")
        /// The vCPU setup cannot be measured (no AP reset vector for more than one vCPU, unknown vCPU type ...).
        public static let badVCPUs = Code("bad-vcpus")
        /// An argument is out of range.
        public static let invalidArgument = Code("invalid-argument")
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(reason) [\(code)]" }
}

/// The SEV-SNP launch digest as the AMD secure processor computes it while a guest is built
/// (SEV-SNP ABI spec #56860, §8.17.2 "SNP_LAUNCH_UPDATE", Table 67 "PAGE_INFO"): a running SHA-384 over
/// 0x70-byte PAGE_INFO records, one per page added to the guest.
public struct SNPLaunchDigestContext: Sendable {
    /// PAGE_TYPE values (Table 68).
    public enum PageType: UInt8, Sendable {
        case normal = 1, vmsa = 2, zero = 3, unmeasured = 4, secrets = 5, cpuid = 6
    }

    public static let pageSize = 4096
    /// The GPA every VMSA page is measured at.
    public static let vmsaGPA: UInt64 = 0xFFFF_FFFF_F000
    static let pageInfoLength: UInt16 = 0x70

    /// The current launch digest (48 bytes).
    public private(set) var digest: [UInt8]
    /// How many PAGE_INFO records have been chained.
    public private(set) var updates = 0

    /// Starts from 48 zero bytes, or from `seed` (a firmware digest computed earlier).
    public init(seed: [UInt8]? = nil) throws(SNPMeasurementError) {
        if let seed, seed.count != 48 {
            throw SNPMeasurementError(.invalidArgument, "a launch-digest seed is 48 bytes, this one \(seed.count)")
        }
        digest = seed ?? [UInt8](repeating: 0, count: 48)
    }

    /// Chains one PAGE_INFO: LD ‖ CONTENTS ‖ LENGTH ‖ PAGE_TYPE ‖ IS_IMI ‖ VMPL3/2/1 perms ‖ reserved ‖ GPA.
    public mutating func update(_ type: PageType, gpa: UInt64, contents: some Sequence<UInt8>) {
        var pageInfo = [UInt8](repeating: 0, count: Int(Self.pageInfoLength))
        pageInfo.withUnsafeMutableBufferPointer { info in
            var index = 0
            for byte in digest { info[index] = byte; index += 1 }
            for byte in contents where index < 96 { info[index] = byte; index += 1 }
            info[96] = UInt8(Self.pageInfoLength & 0xFF)
            info[97] = UInt8(Self.pageInfoLength >> 8)
            info[98] = type.rawValue
            // IS_IMI, VMPL3/2/1 permissions and the reserved byte stay zero.
            for byte in 0..<8 { info[104 + byte] = UInt8(truncatingIfNeeded: gpa >> (8 * UInt64(byte))) }
        }
        digest = Array(SHA384.hash(data: pageInfo))
        updates += 1
    }

    private static let zeros48 = [UInt8](repeating: 0, count: 48)

    /// Measures `data` as NORMAL pages from `gpa` on; `data` must be whole pages.
    public mutating func updateNormalPages(gpa: UInt64, data: ArraySlice<UInt8>) {
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let page = UnsafeRawBufferPointer(rebasing: buffer[offset..<min(offset + Self.pageSize, buffer.count)])
                update(.normal, gpa: gpa + UInt64(offset), contents: SHA384.hash(data: page))
                offset += Self.pageSize
            }
        }
    }

    /// Measures `length` bytes from `gpa` as pages of `type` with zero contents (ZERO, UNMEASURED).
    public mutating func updateEmptyPages(_ type: PageType, gpa: UInt64, length: UInt64) {
        var offset: UInt64 = 0
        while offset < length {
            update(type, gpa: gpa + offset, contents: Self.zeros48)
            offset += UInt64(Self.pageSize)
        }
    }

    /// Measures one VMSA page at its fixed GPA.
    public mutating func updateVMSA(_ page: [UInt8]) {
        update(.vmsa, gpa: Self.vmsaGPA, contents: SHA384.hash(data: page))
    }
}

/// The VMM that builds the guest: QEMU, Amazon EC2 and Google Compute Engine set the initial vCPU state and
/// measure some sections differently (as sev-snp-measure's `--vmm-type` distinguishes them).
public enum SNPVMMType: String, Sendable, Hashable, CaseIterable, Codable {
    case qemu, ec2, gce
}

/// The vCPU models QEMU offers for SNP guests, and the CPUID(1).EAX signature each puts into RDX at reset.
public enum SNPVCPUType {
    /// `family`, `model`, `stepping` as CPUID reports them, packed as CPUID(1).EAX:
    /// extended family (family − 0xF) in bits 27:20, extended model in 19:16, base family 11:8, base model 7:4,
    /// stepping 3:0.
    public static func signature(family: Int, model: Int, stepping: Int) -> UInt32 {
        let (familyLow, familyHigh) = family > 0xF ? (0xF, (family - 0xF) & 0xFF) : (family, 0)
        return UInt32(familyHigh << 20 | ((model >> 4) & 0xF) << 16 | familyLow << 8 | (model & 0xF) << 4 | (stepping & 0xF))
    }

    /// Signatures by QEMU `-cpu` model name.
    public static let signatures: [String: UInt32] = {
        var table: [String: UInt32] = [:]
        for name in ["EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4"] {
            table[name] = signature(family: 23, model: 1, stepping: 2)
        }
        for name in ["EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Rome-v4"] {
            table[name] = signature(family: 23, model: 49, stepping: 0)
        }
        for name in ["EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2"] { table[name] = signature(family: 25, model: 1, stepping: 1) }
        for name in ["EPYC-Genoa", "EPYC-Genoa-v1"] { table[name] = signature(family: 25, model: 17, stepping: 0) }
        for name in ["EPYC-Turin", "EPYC-Turin-v1"] { table[name] = signature(family: 26, model: 0, stepping: 0) }
        return table
    }()

    /// The signature for a model name (case-insensitive), or nil.
    public static func signature(named name: String) -> UInt32? {
        signatures.first(where: { $0.key.lowercased() == name.lowercased() })?.value
    }
}

/// Builds the initial VMSA (the vCPU register state, AMD APM Vol. 2 Table B-4 "VMSA Layout, State Save
/// Area for SEV-ES") that QEMU/KVM gives each vCPU of an SNP guest at reset: the BSP starts at the reset
/// vector 0xFFFFFFF0, the APs at the firmware's SEV-ES AP reset EIP.
public struct SNPVMSA: Sendable {
    public static let bspEIP: UInt32 = 0xFFFF_FFF0

    enum Offset {
        static let es = 0x000, cs = 0x010, ss = 0x020, ds = 0x030, fs = 0x040, gs = 0x050
        static let gdtr = 0x060, ldtr = 0x070, idtr = 0x080, tr = 0x090
        static let efer = 0x0D0, cr4 = 0x148, cr0 = 0x158, dr7 = 0x160, dr6 = 0x168, rflags = 0x170, rip = 0x178
        static let gPAT = 0x268, rdx = 0x310, sevFeatures = 0x3B0, xcr0 = 0x3E8, mxcsr = 0x408, x87FCW = 0x410
    }

    /// The 4 KiB page for a vCPU starting at `eip`.
    public static func page(eip: UInt32, sevFeatures: UInt64, vcpuSignature: UInt32, vmm: SNPVMMType) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: SNPLaunchDigestContext.pageSize)
        func put(_ offset: Int, _ value: UInt64, _ size: Int) {
            for index in 0..<size { page[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        func segment(_ offset: Int, selector: UInt16, attributes: UInt16, limit: UInt32, base: UInt64) {
            put(offset, UInt64(selector), 2)
            put(offset + 2, UInt64(attributes), 2)
            put(offset + 4, UInt64(limit), 4)
            put(offset + 8, base, 8)
        }
        let isBSP = eip == bspEIP
        let csAttributes: UInt16 = vmm == .ec2 && isBSP ? 0x9A : 0x9B
        let ssAttributes: UInt16 = vmm == .ec2 ? 0x92 : 0x93
        let trAttributes: UInt16 = vmm == .ec2 ? 0x83 : 0x8B
        let rdx: UInt64 = vmm == .qemu ? UInt64(vcpuSignature) : 0x600
        let gPAT: UInt64 = vmm == .gce ? 0x0007_0106 : 0x0007_0406_0007_0406
        let (mxcsr, fcw): (UInt64, UInt64) = vmm == .qemu ? (0x1F80, 0x37F) : (0, 0)

        segment(Offset.es, selector: 0, attributes: 0x93, limit: 0xFFFF, base: 0)
        segment(Offset.cs, selector: 0xF000, attributes: csAttributes, limit: 0xFFFF, base: UInt64(eip & 0xFFFF_0000))
        segment(Offset.ss, selector: 0, attributes: ssAttributes, limit: 0xFFFF, base: 0)
        segment(Offset.ds, selector: 0, attributes: 0x93, limit: 0xFFFF, base: 0)
        segment(Offset.fs, selector: 0, attributes: 0x93, limit: 0xFFFF, base: 0)
        segment(Offset.gs, selector: 0, attributes: 0x93, limit: 0xFFFF, base: 0)
        segment(Offset.gdtr, selector: 0, attributes: 0, limit: 0xFFFF, base: 0)
        segment(Offset.ldtr, selector: 0, attributes: 0x82, limit: 0xFFFF, base: 0)
        segment(Offset.idtr, selector: 0, attributes: 0, limit: 0xFFFF, base: 0)
        segment(Offset.tr, selector: 0, attributes: trAttributes, limit: 0xFFFF, base: 0)
        put(Offset.efer, 0x1000, 8)  // EFER.SVME, as KVM sets it
        put(Offset.cr4, 0x40, 8)  // CR4.MCE
        put(Offset.cr0, 0x10, 8)
        put(Offset.dr7, 0x400, 8)
        put(Offset.dr6, 0xFFFF_0FF0, 8)
        put(Offset.rflags, 0x2, 8)
        put(Offset.rip, UInt64(eip & 0xFFFF), 8)
        put(Offset.gPAT, gPAT, 8)
        put(Offset.rdx, rdx, 8)
        put(Offset.sevFeatures, sevFeatures, 8)
        put(Offset.xcr0, 0x1, 8)
        put(Offset.mxcsr, mxcsr, 4)
        put(Offset.x87FCW, fcw, 2)
        return page
    }
}

/// The SEV hash table that QEMU (`kernel-hashes=on`) places into an AmdSev firmware's SNP_KERNEL_HASHES
/// page: SHA-256 of the command line (with its trailing NUL), the initrd and the kernel file, each under its
/// GUID, in that order (QEMU target/i386/sev.c `SevHashTable`; edk2 OvmfPkg/AmdSev BlobVerifierSevHashes).
public struct SNPKernelHashes: Sendable, Hashable {
    static let tableGUID = EFIGUID("9438d606-4f22-4cc9-b479-a793d411fd21")!
    static let cmdlineGUID = EFIGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")!
    static let initrdGUID = EFIGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")!
    static let kernelGUID = EFIGUID("4de79437-abd2-427f-b835-d5b172d2045b")!
    static let entryLength = 16 + 2 + 32

    public let kernel: [UInt8]
    public let initrd: [UInt8]
    public let cmdline: [UInt8]

    /// Hashes the artifacts as QEMU does: the kernel file as given, the initrd (empty when absent), and the
    /// command line's bytes plus a NUL (a lone NUL when absent).
    public init(kernel: [UInt8], initrd: [UInt8]?, cmdline: String?) {
        self.kernel = Array(SHA256.hash(data: kernel))
        self.initrd = Array(SHA256.hash(data: initrd ?? []))
        self.cmdline = Array(SHA256.hash(data: Array((cmdline ?? "").utf8) + [0]))
    }

    /// The table, padded with zeros to a multiple of 16 bytes.
    public var table: [UInt8] {
        func entry(_ guid: EFIGUID, _ hash: [UInt8]) -> [UInt8] {
            guid.storedBytes + [UInt8(Self.entryLength), 0] + hash
        }
        let length = 16 + 2 + 3 * Self.entryLength
        var bytes = Self.tableGUID.storedBytes + [UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += entry(Self.cmdlineGUID, cmdline) + entry(Self.initrdGUID, initrd) + entry(Self.kernelGUID, kernel)
        bytes += [UInt8](repeating: 0, count: (16 - bytes.count % 16) % 16)
        return bytes
    }

    /// The 4 KiB page with the table at `offset`.
    public func page(tableOffset offset: Int) throws(SNPMeasurementError) -> [UInt8] {
        let table = table
        guard offset >= 0, offset + table.count <= SNPLaunchDigestContext.pageSize else {
            throw SNPMeasurementError(.badSection, "the hash table at page offset 0x\(String(offset, radix: 16)) does not fit in the page")
        }
        var page = [UInt8](repeating: 0, count: SNPLaunchDigestContext.pageSize)
        page.replaceSubrange(offset..<(offset + table.count), with: table)
        return page
    }
}

/// What an SNP launch measures, and the digest it must produce (the algorithm of sev-snp-measure 0.0.13,
/// `snp_calc_launch_digest`): the firmware pages, then each SEV metadata section, then one VMSA per vCPU.
public struct SNPLaunchMeasurement: Sendable {
    public struct Inputs: Sendable {
        public var firmware: [UInt8]
        /// A firmware digest computed earlier (`--snp-ovmf-hash`): replaces measuring the firmware pages.
        public var firmwareDigest: [UInt8]?
        public var kernel: [UInt8]?
        public var initrd: [UInt8]?
        public var cmdline: String?
        public var vcpus: Int
        public var vcpuSignature: UInt32
        /// SEV_FEATURES of every VMSA (bit 0 SNPActive; QEMU's default 0x1, newer kernels 0x21 with DebugSwap).
        public var guestFeatures: UInt64
        public var vmm: SNPVMMType
        /// Where the kernel-hashes page is when the firmware declares none (see ``KernelHashesPlacement``).
        public var kernelHashesPlacement: KernelHashesPlacement

        public init(
            firmware: [UInt8], firmwareDigest: [UInt8]? = nil, kernel: [UInt8]? = nil, initrd: [UInt8]? = nil,
            cmdline: String? = nil, vcpus: Int, vcpuSignature: UInt32, guestFeatures: UInt64 = 0x1, vmm: SNPVMMType = .qemu,
            kernelHashesPlacement: KernelHashesPlacement = .firmware
        ) {
            self.kernelHashesPlacement = kernelHashesPlacement
            self.firmware = firmware
            self.firmwareDigest = firmwareDigest
            self.kernel = kernel
            self.initrd = initrd
            self.cmdline = cmdline
            self.vcpus = vcpus
            self.vcpuSignature = vcpuSignature
            self.guestFeatures = guestFeatures
            self.vmm = vmm
        }
    }

    /// One measured step, for `--trace` and audits.
    public struct Step: Sendable, Hashable, Codable {
        public let what: String
        public let gpa: UInt64
        public let pages: Int
        public let digestAfter: HexBytes
    }

    /// Where the SNP_KERNEL_HASHES page comes from.
    public enum KernelHashesPlacement: String, Sendable, Hashable, Codable {
        /// Only where the firmware's SEV metadata declares it; a kernel with firmware that declares none is an error.
        case firmware
        /// cmk's simulated platform only: when the firmware declares no kernel-hashes section (Debian's OVMF), the
        /// page is measured where an edk2 AmdSevX64 build puts it — GPA 0x810000, hash table at 0x810C00 (edk2
        /// stable202405, ../shared/vectors/snp-measure/firmware_amdsev_suffix.json) — carved out of the SNP_SEC_MEM
        /// section that covers that page. The simulation's one stated assumption; never used for real hardware.
        case assumedAmdSev = "assumed-amdsev"
    }

    /// The AmdSev build's kernel-hashes page and table (``KernelHashesPlacement/assumedAmdSev``).
    public static let assumedKernelHashesGPA: UInt64 = 0x81_0000
    public static let assumedHashTableGPA: UInt64 = 0x81_0C00

    public let digest: HexBytes
    /// The digest after the firmware pages (sev-snp-measure's `snp:ovmf-hash`).
    public let firmwareDigest: HexBytes
    public let steps: [Step]
    /// The assumption the digest rests on, when there is one (the simulated kernel-hashes placement).
    public let assumption: String?

    /// Maps the firmware so it ends at 4 GiB and returns its GPA.
    static func firmwareGPA(_ firmware: [UInt8]) throws(SNPMeasurementError) -> UInt64 {
        guard !firmware.isEmpty, firmware.count % SNPLaunchDigestContext.pageSize == 0, firmware.count <= 0x1_0000_0000 else {
            throw SNPMeasurementError(
                .badFirmware, "the firmware is \(firmware.count) bytes; it must be a non-empty multiple of 4096 bytes below 4 GiB")
        }
        return 0x1_0000_0000 - UInt64(firmware.count)
    }

    /// The digest of the firmware pages alone.
    public static func firmwareDigest(_ firmware: [UInt8]) throws(SNPMeasurementError) -> [UInt8] {
        var context = try SNPLaunchDigestContext()
        context.updateNormalPages(gpa: try firmwareGPA(firmware), data: firmware[...])
        return context.digest
    }

    /// Computes the launch digest; throws when the firmware cannot launch as asked (see ``SNPMeasurementError``).
    public init(_ inputs: Inputs) throws(SNPMeasurementError) {
        guard (1...512).contains(inputs.vcpus) else {
            throw SNPMeasurementError(.invalidArgument, "\(inputs.vcpus) vCPUs: give 1 to 512")
        }
        guard inputs.guestFeatures & 1 == 1 else {
            throw SNPMeasurementError(.invalidArgument, "guest features 0x\(String(inputs.guestFeatures, radix: 16)) lack bit 0 (SNPActive)")
        }
        let image: OVMFImage
        do {
            image = try OVMFImage(bytes: inputs.firmware)
        } catch {
            throw SNPMeasurementError(.badFirmware, "the firmware's metadata cannot be read: \(error.description)")
        }
        guard let declaredSections = image.sevSections else {
            throw SNPMeasurementError(
                .noSNPMetadata,
                "the firmware declares no SEV metadata (footer GUID \(OVMFImage.KnownGUID.sevMetadata)): no SNP launch of it can be measured")
        }
        var hashes: SNPKernelHashes?
        var sections = declaredSections
        var hashTableGPA = image.sevHashTable?.gpa ?? 0
        var assumption: String?
        if let kernel = inputs.kernel {
            let declared = sections.contains(where: { $0.kind == .snpKernelHashes }) && hashTableGPA != 0
            if !declared && inputs.kernelHashesPlacement == .assumedAmdSev {
                sections = try Self.carveAssumedKernelHashes(sections)
                hashTableGPA = UInt32(Self.assumedHashTableGPA)
                assumption = "the firmware declares no SNP_KERNEL_HASHES section; the kernel-hashes page is measured at "
                    + "GPA 0x810000 (table at 0x810C00) where an edk2 AmdSevX64 build places it (cmk's simulated platform)"
            } else if !declared {
                throw SNPMeasurementError(
                    .noKernelHashes,
                    "a kernel was given, but the firmware has no SNP_KERNEL_HASHES section: it cannot measure a kernel (use an AmdSev build)")
            }
            hashes = SNPKernelHashes(kernel: kernel, initrd: inputs.initrd, cmdline: inputs.cmdline)
        } else if inputs.initrd != nil || inputs.cmdline != nil {
            throw SNPMeasurementError(.invalidArgument, "an initrd or command line is measured only together with a kernel")
        }
        if inputs.vcpus > 1 && image.sevESResetEIP == nil {
            throw SNPMeasurementError(.badVCPUs, "the firmware declares no SEV-ES AP reset block, so only one vCPU can start")
        }

        var steps: [Step] = []
        var context: SNPLaunchDigestContext
        if let seed = inputs.firmwareDigest {
            context = try SNPLaunchDigestContext(seed: seed)
        } else {
            context = try SNPLaunchDigestContext()
            let gpa = try Self.firmwareGPA(inputs.firmware)
            context.updateNormalPages(gpa: gpa, data: inputs.firmware[...])
            steps.append(Step(what: "firmware", gpa: gpa, pages: inputs.firmware.count / 4096, digestAfter: HexBytes(context.digest)))
        }
        let firmwareDigest = context.digest

        func measure(_ section: OVMFImage.SEVSection) throws(SNPMeasurementError) {
            let gpa = UInt64(section.gpa)
            let size = UInt64(section.size)
            guard size % 4096 == 0, gpa % 4096 == 0, size > 0 else {
                throw SNPMeasurementError(
                    .badSection, "SEV metadata section \(section.kind) at 0x\(String(gpa, radix: 16)) size 0x\(String(size, radix: 16)) is not page-aligned")
            }
            switch section.kind {
            case .snpSecureMemory:
                context.updateEmptyPages(inputs.vmm == .gce ? .unmeasured : .zero, gpa: gpa, length: size)
            case .snpSecrets:
                context.update(.secrets, gpa: gpa, contents: [UInt8](repeating: 0, count: 48))
            case .cpuid:
                context.update(.cpuid, gpa: gpa, contents: [UInt8](repeating: 0, count: 48))
            case .svsmCallingArea:
                context.updateEmptyPages(.zero, gpa: gpa, length: size)
            case .snpKernelHashes:
                if let hashes {
                    guard size == 4096 else {
                        throw SNPMeasurementError(.badSection, "the SNP_KERNEL_HASHES section is 0x\(String(size, radix: 16)) bytes, not one page")
                    }
                    let offset = Int(hashTableGPA & 0xFFF)
                    context.updateNormalPages(gpa: gpa, data: try hashes.page(tableOffset: offset)[...])
                } else {
                    context.updateEmptyPages(.zero, gpa: gpa, length: size)
                }
            }
            steps.append(Step(what: section.kind.specName, gpa: gpa, pages: Int(size / 4096), digestAfter: HexBytes(context.digest)))
        }
        for section in sections where !(inputs.vmm == .ec2 && section.kind == .cpuid) {
            try measure(section)
        }
        if inputs.vmm == .ec2 {
            // EC2 measures the CPUID page after every other section.
            for section in sections where section.kind == .cpuid { try measure(section) }
        }
        let apEIP = image.sevESResetEIP ?? 0
        for vcpu in 0..<inputs.vcpus {
            let eip = vcpu == 0 ? SNPVMSA.bspEIP : apEIP
            context.updateVMSA(SNPVMSA.page(eip: eip, sevFeatures: inputs.guestFeatures, vcpuSignature: inputs.vcpuSignature, vmm: inputs.vmm))
            steps.append(Step(what: "VMSA vCPU \(vcpu)", gpa: SNPLaunchDigestContext.vmsaGPA, pages: 1, digestAfter: HexBytes(context.digest)))
        }
        self.digest = HexBytes(context.digest)
        self.firmwareDigest = HexBytes(firmwareDigest)
        self.steps = steps
        self.assumption = assumption
    }

    /// Splits the SNP_SEC_MEM section that covers the assumed kernel-hashes page into the part before, the page, and
    /// the part after.
    static func carveAssumedKernelHashes(_ sections: [OVMFImage.SEVSection]) throws(SNPMeasurementError) -> [OVMFImage.SEVSection] {
        let page = assumedKernelHashesGPA
        guard let index = sections.firstIndex(where: {
            $0.kind == .snpSecureMemory && UInt64($0.gpa) <= page && page + 4096 <= UInt64($0.gpa) + UInt64($0.size)
        }) else {
            throw SNPMeasurementError(
                .noKernelHashes,
                "the firmware has no SNP_KERNEL_HASHES section and no SNP_SEC_MEM section covering GPA 0x810000, where the simulated placement puts it")
        }
        let section = sections[index]
        let start = UInt64(section.gpa), end = UInt64(section.gpa) + UInt64(section.size)
        var replacement: [OVMFImage.SEVSection] = []
        if start < page { replacement.append(.init(gpa: section.gpa, size: UInt32(page - start), kind: .snpSecureMemory)) }
        replacement.append(.init(gpa: UInt32(page), size: 4096, kind: .snpKernelHashes))
        if page + 4096 < end { replacement.append(.init(gpa: UInt32(page + 4096), size: UInt32(end - page - 4096), kind: .snpSecureMemory)) }
        var result = sections
        result.replaceSubrange(index...index, with: replacement)
        return result
    }
}
