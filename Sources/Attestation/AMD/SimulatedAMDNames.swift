public import SEVSNP

/// The names cmk's simulated AMD secure processor gives its roots and certificates (PlatformSimulator), shared with
/// the verifier so that a simulated chain is recognised by what it says about itself and never by a guess.
///
/// Every name carries the word "simulated": the common names end in " (cmk simulated)" and the VCEK productName is
/// `<Product>-cmk-simulated`, which AMD never issues; the trust-anchor name is `simulated-amd`.
extension AMDProduct {
    /// The trust-anchor name of an installation's simulated AMD root.
    public static let simulatedRootName = "simulated-amd"
    /// The suffix of every common name the simulated platform issues.
    public static let simulatedNameSuffix = " (cmk simulated)"
    /// The simulated VCEK's common name.
    public static let simulatedVCEKCommonName = "SEV-VCEK" + simulatedNameSuffix

    /// The simulated ARK's common name, e.g. `ARK-Genoa (cmk simulated)`.
    public var simulatedARKCommonName: String { arkCommonName + Self.simulatedNameSuffix }
    /// The simulated ASK's common name, e.g. `SEV-Genoa (cmk simulated)`.
    public var simulatedASKCommonName: String { askCommonName + Self.simulatedNameSuffix }
    /// The simulated VCEK's productName, e.g. `Genoa-cmk-simulated`: ``AMDProduct/fromCertificateProductName(_:)``
    /// reads the product before the first hyphen, so the layout is the product's while the word stays visible.
    public var simulatedProductName: String { rawValue + "-cmk-simulated" }
}
