/// TCB_VERSION (SEV-SNP ABI spec, Table 3 "TCB_VERSION Structure"): eight bytes of security patch
/// levels whose layout depends on the product. Milan and Genoa: byte 0 BOOT_LOADER, 1 TEE, 6 SNP,
/// 7 MICROCODE. Turin: byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 7 MICROCODE. The raw value is kept;
/// components are only read with a layout, never guessed.
public struct SNPTCBVersion: Sendable, Hashable, CustomStringConvertible {
    /// The byte layouts of TCB_VERSION.
    public enum Layout: String, Sendable, Hashable, Codable {
        case milanGenoa = "milan-genoa"
        case turin
    }

    /// The security patch levels of one TCB, component by component.
    public struct Components: Sendable, Hashable, Codable {
        /// FMC SPL (Turin only; nil for Milan and Genoa).
        public var fmc: UInt8?
        public var bootloader: UInt8
        public var tee: UInt8
        public var snp: UInt8
        public var microcode: UInt8

        public init(fmc: UInt8?, bootloader: UInt8, tee: UInt8, snp: UInt8, microcode: UInt8) {
            self.fmc = fmc
            self.bootloader = bootloader
            self.tee = tee
            self.snp = snp
            self.microcode = microcode
        }

        /// Whether every component is at least `minimum`'s (component-wise, never as a u64).
        public func isAtLeast(_ minimum: Components) -> Bool {
            bootloader >= minimum.bootloader && tee >= minimum.tee && snp >= minimum.snp
                && microcode >= minimum.microcode && (fmc ?? 0) >= (minimum.fmc ?? 0)
        }
    }

    /// The eight bytes as a little-endian u64, as they appear in the report.
    public let raw: UInt64

    public init(raw: UInt64) { self.raw = raw }

    private func byte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: raw >> (8 * UInt64(index))) }

    /// The components under `layout`. Bytes the layout reserves are reported by ``reservedBytesAreZero(in:)``.
    public func components(_ layout: Layout) -> Components {
        switch layout {
        case .milanGenoa:
            Components(fmc: nil, bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7))
        case .turin:
            Components(fmc: byte(0), bootloader: byte(1), tee: byte(2), snp: byte(3), microcode: byte(7))
        }
    }

    /// Whether the bytes `layout` reserves are zero (Milan/Genoa: 2–5; Turin: 4–6).
    public func reservedBytesAreZero(in layout: Layout) -> Bool {
        let reserved = layout == .milanGenoa ? [2, 3, 4, 5] : [4, 5, 6]
        return reserved.allSatisfy { byte($0) == 0 }
    }

    /// The raw value from components under `layout`.
    public init(_ components: Components, layout: Layout) {
        var bytes = [UInt8](repeating: 0, count: 8)
        switch layout {
        case .milanGenoa:
            bytes[0] = components.bootloader
            bytes[1] = components.tee
            bytes[6] = components.snp
        case .turin:
            bytes[0] = components.fmc ?? 0
            bytes[1] = components.bootloader
            bytes[2] = components.tee
            bytes[3] = components.snp
        }
        bytes[7] = components.microcode
        self.raw = bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    public var description: String { "0x" + String(raw, radix: 16) }
}
