/// An AMD EPYC product line that signs SEV-SNP evidence, each with its own ARK/ASK/ASVK and TCB layout.
public enum AMDProduct: String, Sendable, Hashable, CaseIterable, Codable {
    case milan = "Milan"
    case genoa = "Genoa"
    case turin = "Turin"

    /// The trust-anchor name of the product's root, as policies name it (`amd-milan` ...).
    public var rootName: String { "amd-" + rawValue.lowercased() }

    /// The common names AMD gives the product's certificates.
    public var arkCommonName: String { "ARK-\(rawValue)" }
    public var askCommonName: String { "SEV-\(rawValue)" }
    public var asvkCommonName: String { "SEV-VLEK-\(rawValue)" }

    /// How this product packs its TCB_VERSION (SEV-SNP ABI, TCB_VERSION; Turin moved to a new layout).
    public var tcbLayout: SNPTCBVersion.Layout { self == .turin ? .turin : .milanGenoa }

    /// The number of CHIP_ID bytes the product fills (Turin: 8, the rest zero) and its VCEK hwID carries.
    public var chipIDLength: Int { self == .turin ? 8 : 64 }

    /// The product for a CPUID family and model as reported in v3+ reports (CPUID_FAM_ID, CPUID_MOD_ID):
    /// family 0x19 models 0x00–0x0F Milan, 0x10–0x1F and 0xA0–0xAF Genoa; family 0x1A models 0x00–0x11 Turin.
    public static func identify(family: UInt8, model: UInt8) -> AMDProduct? {
        switch (family, model) {
        case (0x19, 0x00...0x0F): .milan
        case (0x19, 0x10...0x1F), (0x19, 0xA0...0xAF): .genoa
        case (0x1A, 0x00...0x11): .turin
        default: nil
        }
    }

    /// The product a VCEK/VLEK productName names (`Milan-B0`, `Genoa`, `Turin` ...), stepping ignored.
    public static func fromCertificateProductName(_ name: String) -> AMDProduct? {
        let line = name.split(separator: "-", maxSplits: 1).first.map(String.init) ?? name
        return AMDProduct(rawValue: line)
    }
}
