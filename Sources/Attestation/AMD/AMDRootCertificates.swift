public import Foundation
public import SEVSNP

/// One AMD product's root certificates: the ARK (self-signed root), the ASK (signs VCEKs) and the
/// ASVK (signs VLEKs), each an RSA-4096 key and every signature RSASSA-PSS SHA-384 with a 48-byte salt
/// (AMD SEV-SNP ABI §2.2; AMD KDS interface spec §4).
///
/// The same structure describes an installation's simulated roots (``simulated`` true): cmk's simulated secure
/// processor issues them with AMD's algorithms and key sizes but with names that say "simulated"
/// (``AMDProduct/simulatedARKCommonName``), and their trust anchor is `simulated-amd`, never `amd-<product>`.
public struct AMDRootCertificates: Sendable, Hashable {
    public let product: AMDProduct
    public let ark: AttestationCertificate
    public let ask: AttestationCertificate
    public let asvk: AttestationCertificate?
    /// Whether these are an installation's simulated roots rather than AMD's.
    public let simulated: Bool

    public init(
        product: AMDProduct, ark: AttestationCertificate, ask: AttestationCertificate, asvk: AttestationCertificate?,
        simulated: Bool = false
    ) {
        self.product = product
        self.ark = ark
        self.ask = ask
        self.asvk = asvk
        self.simulated = simulated
    }

    /// The trust-anchor name evidence chaining to these roots reports: `amd-<product>` or `simulated-amd`.
    public var rootName: String { simulated ? AMDProduct.simulatedRootName : product.rootName }

    /// The common names the roots must carry: AMD's, or the simulated platform's.
    var arkCommonName: String { simulated ? product.simulatedARKCommonName : product.arkCommonName }
    var askCommonName: String { simulated ? product.simulatedASKCommonName : product.askCommonName }

    /// Verifies the root structure: the ARK is self-signed, the ASK and ASVK are signed by it, every
    /// signature uses AMD's exact RSA-PSS parameters, every key is RSA-4096, names are the product's, each is
    /// a CA, and (when `time` is given) each certificate is valid at `time`.
    public func verify(at time: Date?) throws(AttestationError) {
        try expect(ark, commonName: arkCommonName, role: "ARK")
        try ark.verifySignature(issuedBy: ark, requiredAlgorithm: .rsaPSS(.amdSEV))
        try expect(ask, commonName: askCommonName, role: "ASK")
        try ask.verifySignature(issuedBy: ark, requiredAlgorithm: .rsaPSS(.amdSEV))
        if let asvk {
            try expect(asvk, commonName: product.asvkCommonName, role: "ASVK")
            try asvk.verifySignature(issuedBy: ark, requiredAlgorithm: .rsaPSS(.amdSEV))
        }
        if let time {
            for certificate in [ark, ask] + (asvk.map { [$0] } ?? []) {
                try certificate.checkValidity(at: time)
            }
        }
    }

    private func expect(_ certificate: AttestationCertificate, commonName: String, role: String) throws(AttestationError) {
        guard certificate.subjectCommonName == commonName else {
            throw AttestationError(
                .untrustedRoot,
                "the \(simulated ? "simulated " : "")\(product.rawValue) \(role) must be named '\(commonName)', "
                    + "this one is '\(certificate.subjectCommonName ?? "?")'")
        }
        try certificate.checkCriticalExtensions()
        guard try certificate.isCertificateAuthority() else {
            throw AttestationError(.untrustedRoot, "the \(product.rawValue) \(role) is not marked as a certificate authority")
        }
        guard try certificate.rsaKeyBits() == 4096 else {
            throw AttestationError(.unsupportedPublicKey, "the \(product.rawValue) \(role) key must be RSA-4096")
        }
    }
}
