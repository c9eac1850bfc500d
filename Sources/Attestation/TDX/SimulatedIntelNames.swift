/// The names cmk's simulated TDX module and quoting enclave (PlatformSimulator) give their roots, certificates and
/// collateral, shared with the verifier so that a simulated chain is recognised by what it says about itself and never
/// by a guess.
///
/// Every common name carries QVL's phrase for its role ("SGX Root CA", "SGX PCK Platform CA", "SGX PCK Certificate",
/// "SGX TCB Signing") without the word Intel, followed by " (cmk simulated)"; the organization says "not Intel
/// hardware"; the trust-anchor name is `simulated-intel`. Intel issues none of these names.
public enum SimulatedIntel {
    /// The trust-anchor name of an installation's simulated SGX root.
    public static let rootName = "simulated-intel"
    /// The suffix of every common name the simulated platform issues.
    public static let nameSuffix = " (cmk simulated)"
    /// The organization of every simulated certificate.
    public static let organization = "cmk simulated platform (not Intel hardware)"
    public static let rootCACommonName = "SGX Root CA" + nameSuffix
    public static let platformCACommonName = "SGX PCK Platform CA" + nameSuffix
    public static let pckCommonName = "SGX PCK Certificate" + nameSuffix
    public static let tcbSigningCommonName = "SGX TCB Signing" + nameSuffix
}
