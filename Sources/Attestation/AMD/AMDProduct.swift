/// An AMD EPYC product line that signs SEV-SNP evidence, each with its own ARK/ASK/ASVK.
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
}
