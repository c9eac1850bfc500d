public import Foundation
public import SEVSNP
import BinaryFormat

/// AMD Key Distribution Service addresses (AMD KDS interface spec #57230, §4): where a VCEK, a chain or a
/// CRL for a given product and TCB comes from.
public enum AMDKDS {
    public static let baseURL = "https://kdsintf.amd.com"

    /// The VCEK for a chip at a TCB. Milan/Genoa: the 64-byte CHIP_ID and bl/tee/snp/ucode SPLs;
    /// Turin: the first 8 bytes of CHIP_ID (16 hex digits) and fmcSPL as well.
    public static func vcekURL(
        product: AMDProduct, chipID: [UInt8], reportedTCB: SNPTCBVersion, baseURL: String = AMDKDS.baseURL
    ) -> String {
        let tcb = reportedTCB.components(product.tcbLayout)
        let hardwareID = Hex.encode(chipID.prefix(product.chipIDLength))
        var query = [
            "blSPL=\(tcb.bootloader)", "teeSPL=\(tcb.tee)", "snpSPL=\(tcb.snp)", "ucodeSPL=\(tcb.microcode)",
        ]
        if product == .turin { query.insert("fmcSPL=\(tcb.fmc ?? 0)", at: 0) }
        return "\(baseURL)/vcek/v1/\(product.rawValue)/\(hardwareID)?" + query.joined(separator: "&")
    }

    /// ASK then ARK (VCEK), or ASVK then ARK (VLEK), PEM.
    public static func certificateChainURL(
        product: AMDProduct, signer: SNPSignerInfo.SigningKey, baseURL: String = AMDKDS.baseURL
    ) -> String {
        "\(baseURL)/\(signer == .vlek ? "vlek" : "vcek")/v1/\(product.rawValue)/cert_chain"
    }

    /// The ARK-signed CRL, DER.
    public static func crlURL(product: AMDProduct, signer: SNPSignerInfo.SigningKey, baseURL: String = AMDKDS.baseURL) -> String {
        "\(baseURL)/\(signer == .vlek ? "vlek" : "vcek")/v1/\(product.rawValue)/crl"
    }
}

/// Fetches collateral over the network. Verification never calls it: fetching is a separate, optional step
/// whose results land in a ``SNPCollateralStore``.
public protocol CollateralFetcher: Sendable {
    func fetch(_ url: String) async throws -> [UInt8]
}

/// The offline collateral cache for SEV-SNP: VCEKs by product, chip and TCB; chains and CRLs by product.
///
/// Layout under the folder (stable, so an operator can fill it by hand from another machine):
/// ```
/// amd/<Product>/vcek/<hwid hex>/<REPORTED_TCB as 16 hex digits>.der
/// amd/<Product>/{vcek|vlek}/cert_chain.pem
/// amd/<Product>/{vcek|vlek}/crl.der
/// ```
public struct SNPCollateralStore: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    func productFolder(_ product: AMDProduct, _ signer: SNPSignerInfo.SigningKey) -> URL {
        directory.appendingPathComponent("amd/\(product.rawValue)/\(signer == .vlek ? "vlek" : "vcek")")
    }

    /// Where the VCEK for a chip at a TCB is kept.
    public func vcekPath(product: AMDProduct, chipID: [UInt8], reportedTCB: SNPTCBVersion) -> URL {
        productFolder(product, .vcek)
            .appendingPathComponent(Hex.encode(chipID.prefix(product.chipIDLength)))
            .appendingPathComponent(Hex.encode((0..<8).reversed().map { UInt8(truncatingIfNeeded: reportedTCB.raw >> (8 * UInt64($0))) }) + ".der")
    }

    public func crlPath(product: AMDProduct, signer: SNPSignerInfo.SigningKey) -> URL {
        productFolder(product, signer).appendingPathComponent("crl.der")
    }

    public func chainPath(product: AMDProduct, signer: SNPSignerInfo.SigningKey) -> URL {
        productFolder(product, signer).appendingPathComponent("cert_chain.pem")
    }

    /// The cached VCEK, or nil when the cache has none for this chip and TCB.
    public func vcek(product: AMDProduct, chipID: [UInt8], reportedTCB: SNPTCBVersion) throws(AttestationError) -> AttestationCertificate? {
        let path = vcekPath(product: product, chipID: chipID, reportedTCB: reportedTCB)
        guard let data = FileManager.default.contents(atPath: path.path) else { return nil }
        return try AttestationCertificate(der: [UInt8](data))
    }

    /// The cached CRL, or nil.
    public func crl(product: AMDProduct, signer: SNPSignerInfo.SigningKey) throws(AttestationError) -> CertificateRevocationList? {
        guard let der = crlBytes(product: product, signer: signer) else { return nil }
        return try CertificateRevocationList(der: der)
    }

    /// The cached CRL's bytes, unparsed, or nil.
    public func crlBytes(product: AMDProduct, signer: SNPSignerInfo.SigningKey) -> [UInt8]? {
        FileManager.default.contents(atPath: crlPath(product: product, signer: signer).path).map { [UInt8]($0) }
    }

    /// Stores bytes at `url`, creating folders; written to a temporary name first and renamed, so a reader
    /// never sees half a file.
    public func write(_ bytes: [UInt8], to url: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = url.appendingPathExtension("partial")
        try Data(bytes).write(to: temporary)
        if fm.fileExists(atPath: url.path) { try fm.removeItem(at: url) }
        try fm.moveItem(at: temporary, to: url)
    }

    /// Fetches what verifying `report` needs and is not cached yet: the VCEK (for VCEK-signed reports with
    /// an unmasked CHIP_ID), the chain and the CRL. Returns the addresses fetched.
    ///
    /// - Parameter baseURL: AMD KDS, or a mirror that serves the same paths.
    public func fetchMissing(
        for report: SNPReport, product: AMDProduct, using fetcher: some CollateralFetcher, baseURL: String = AMDKDS.baseURL
    ) async throws -> [String] {
        var fetched: [String] = []
        let signer = report.signerInfo.signingKey
        if signer == .vcek, !report.chipIDIsMasked {
            let path = vcekPath(product: product, chipID: report.chipID, reportedTCB: report.reportedTCB)
            if !FileManager.default.fileExists(atPath: path.path) {
                let url = AMDKDS.vcekURL(product: product, chipID: report.chipID, reportedTCB: report.reportedTCB, baseURL: baseURL)
                let der = try await fetcher.fetch(url)
                _ = try AttestationCertificate(der: der)  // never cache what does not parse
                try write(der, to: path)
                fetched.append(url)
            }
        }
        for (url, path) in [
            (AMDKDS.certificateChainURL(product: product, signer: signer, baseURL: baseURL), chainPath(product: product, signer: signer)),
            (AMDKDS.crlURL(product: product, signer: signer, baseURL: baseURL), crlPath(product: product, signer: signer)),
        ] where !FileManager.default.fileExists(atPath: path.path) {
            let bytes = try await fetcher.fetch(url)
            if path.lastPathComponent == "crl.der" {
                _ = try CertificateRevocationList(der: bytes)
            } else {
                guard try PEMDocuments.certificates(in: String(decoding: bytes, as: UTF8.self)).count >= 2 else {
                    throw AttestationError(.missingCollateral, "\(url) did not return a PEM chain of two certificates")
                }
            }
            try write(bytes, to: path)
            fetched.append(url)
        }
        return fetched
    }
}

