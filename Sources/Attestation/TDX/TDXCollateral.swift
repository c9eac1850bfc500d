public import Foundation
import BinaryFormat

/// Intel PCS v4 addresses of TDX collateral (Intel "Provisioning Certification Service for ECDSA Attestation"
/// API v4). Fetching is optional and separate (``TDXCollateralFetch``); verification reads a collateral folder only.
/// Each address takes the service's base URL, Intel's by default; a PCCS or a mirror serves the same paths.
public enum IntelPCS {
    public static let baseURL = "https://api.trustedservices.intel.com"
    public static func tcbInfoURL(fmspc: [UInt8], base: String = baseURL) -> String {
        "\(base)/tdx/certification/v4/tcb?fmspc=\(Hex.encode(fmspc))"
    }
    public static let qeIdentityURL = qeIdentityURL(base: baseURL)
    public static func qeIdentityURL(base: String) -> String { "\(base)/tdx/certification/v4/qe/identity" }
    /// `ca` is `platform` or `processor`, after the PCK certificate's issuer.
    public static func pckCRLURL(ca: String, base: String = baseURL) -> String {
        "\(base)/sgx/certification/v4/pckcrl?ca=\(ca)&encoding=der"
    }
    public static let rootCACRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
}

/// The collateral one TDX quote needs, read from a folder with the PCS responses as files:
/// `tcbinfo.json` and `tcb_info_issuer_chain.pem` (the `TCB-Info-Issuer-Chain` header), `qeidentity.json` and
/// `qe_identity_issuer_chain.pem`, `pck_crl.der` and `pck_crl_issuer_chain.pem`, `root_ca_crl.der`. A missing file
/// is nil here and a named `missing-collateral` failure in verification.
public struct TDXCollateral: Sendable {
    public var tcbInfoJSON: [UInt8]?
    public var tcbInfoIssuerChain: [AttestationCertificate]
    public var qeIdentityJSON: [UInt8]?
    public var qeIdentityIssuerChain: [AttestationCertificate]
    public var pckCRL: CertificateRevocationList?
    public var rootCACRL: CertificateRevocationList?

    public static let fileNames = [
        "tcbinfo.json", "tcb_info_issuer_chain.pem", "qeidentity.json", "qe_identity_issuer_chain.pem", "pck_crl.der",
        "root_ca_crl.der",
    ]

    public init(
        tcbInfoJSON: [UInt8]? = nil, tcbInfoIssuerChain: [AttestationCertificate] = [], qeIdentityJSON: [UInt8]? = nil,
        qeIdentityIssuerChain: [AttestationCertificate] = [], pckCRL: CertificateRevocationList? = nil,
        rootCACRL: CertificateRevocationList? = nil
    ) {
        self.tcbInfoJSON = tcbInfoJSON
        self.tcbInfoIssuerChain = tcbInfoIssuerChain
        self.qeIdentityJSON = qeIdentityJSON
        self.qeIdentityIssuerChain = qeIdentityIssuerChain
        self.pckCRL = pckCRL
        self.rootCACRL = rootCACRL
    }

    /// Reads whatever of the collateral files `directory` holds; a file that exists but cannot be parsed is an error.
    public init(directory: URL) throws(AttestationError) {
        let fm = FileManager.default
        func bytes(_ name: String) -> [UInt8]? {
            fm.contents(atPath: directory.appendingPathComponent(name).path).map { [UInt8]($0) }
        }
        func chain(_ name: String) throws(AttestationError) -> [AttestationCertificate] {
            guard let data = bytes(name) else { return [] }
            var certificates: [AttestationCertificate] = []
            for der in try PEMDocuments.certificates(in: String(decoding: data, as: UTF8.self)) {
                certificates.append(try AttestationCertificate(der: der))
            }
            return certificates
        }
        self.init(
            tcbInfoJSON: bytes("tcbinfo.json"), tcbInfoIssuerChain: try chain("tcb_info_issuer_chain.pem"),
            qeIdentityJSON: bytes("qeidentity.json"), qeIdentityIssuerChain: try chain("qe_identity_issuer_chain.pem"),
            pckCRL: try bytes("pck_crl.der").map { (d: [UInt8]) throws(AttestationError) in try CertificateRevocationList(der: d) },
            rootCACRL: try bytes("root_ca_crl.der").map { (d: [UInt8]) throws(AttestationError) in try CertificateRevocationList(der: d) })
    }

    /// The folder of the offline cache that holds the collateral of one FMSPC: `<cache>/intel/tdx/<fmspc hex>/`.
    public static func cacheFolder(_ cache: URL, fmspc: [UInt8]) -> URL {
        cache.appendingPathComponent("intel/tdx/\(Hex.encode(fmspc))")
    }
}
