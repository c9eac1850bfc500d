public import Foundation
public import SEVSNP
import BinaryFormat
import Crypto
import Synchronization

/// SEV-SNP evidence as a relying party receives it: the report and whatever certificates came with it.
public struct SNPEvidence: Sendable {
    public var report: SNPReport
    /// The VCEK or VLEK certificate, when delivered with the evidence; otherwise the collateral cache is asked.
    public var endorsementCertificate: AttestationCertificate?
    /// The ASK/ASVK and ARK delivered with the evidence. They are only accepted if byte-identical to cmk's
    /// pinned roots: a chain never gains trust from what the evidence brings.
    public var presentedChain: [AttestationCertificate]

    public init(report: SNPReport, endorsementCertificate: AttestationCertificate? = nil, presentedChain: [AttestationCertificate] = []) {
        self.report = report
        self.endorsementCertificate = endorsementCertificate
        self.presentedChain = presentedChain
    }

    /// Evidence from a report and its extended-report certificate table (configfs-tsm `auxblob`).
    public init(report: SNPReport, certificateTable: SNPCertificateTable) throws(AttestationError) {
        let leafGUID = report.signerInfo.signingKey == .vlek ? SNPCertificateTable.GUID.vlek : SNPCertificateTable.GUID.vcek
        guard let leaf = certificateTable.data(for: leafGUID) else {
            throw AttestationError(
                .missingCollateral,
                "the certificate table has no \(report.signerInfo.signingKey.name) entry (GUID \(leafGUID))")
        }
        var chain: [AttestationCertificate] = []
        for guid in [SNPCertificateTable.GUID.ask, SNPCertificateTable.GUID.ark] {
            if let der = certificateTable.data(for: guid) { chain.append(try AttestationCertificate.reusing(der: der)) }
        }
        self.init(report: report, endorsementCertificate: try AttestationCertificate.reusing(der: leaf), presentedChain: chain)
    }
}

/// How revocation is handled.
public enum RevocationMode: String, Sendable, Hashable, Codable, CaseIterable {
    /// A current, root-signed CRL is required; without one, verification fails.
    case hard
    /// A CRL is used when the cache has a current one; otherwise the result records that revocation was not checked.
    case soft
}

/// The inputs of one verification besides the evidence.
public struct SNPVerificationOptions: Sendable {
    /// The time certificates and CRLs are checked at. Always explicit: tests and audits replay a past moment.
    public var validationTime: Date
    public var revocation: RevocationMode
    /// The product, when the caller knows it; it must agree with every other source.
    public var product: AMDProduct?

    public init(validationTime: Date, revocation: RevocationMode = .hard, product: AMDProduct? = nil) {
        self.validationTime = validationTime
        self.revocation = revocation
        self.product = product
    }
}

/// Whether revocation was checked. Serialised as `checked` or `not-checked: <why>`.
public enum RevocationStatus: Sendable, Hashable, Codable, CustomStringConvertible {
    case checked
    /// Soft mode only: no usable CRL, and why.
    case notChecked(String)

    public var notCheckedReason: String? {
        if case .notChecked(let reason) = self { reason } else { nil }
    }

    public var description: String {
        switch self {
        case .checked: "checked"
        case .notChecked(let reason): "not-checked: " + reason
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = text == "checked" ? .checked : .notChecked(String(text.dropFirst("not-checked: ".count)))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A certificate of a verified chain, summarised for results and audit records.
public struct CertificateSummary: Sendable, Hashable, Codable {
    public let role: String
    public let subject: String
    public let issuer: String
    public let serialNumber: String
    public let notBefore: Date
    public let notAfter: Date
    public let sha256: String

    init(role: String, _ certificate: AttestationCertificate) {
        self.role = role
        subject = certificate.subjectCommonName ?? "?"
        issuer = certificate.issuerCommonName ?? "?"
        serialNumber = Hex.encode(certificate.serialNumber)
        notBefore = certificate.notBefore
        notAfter = certificate.notAfter
        sha256 = Hex.encode(SHA256.hash(data: certificate.der))
    }
}

/// Verified SEV-SNP evidence: the claims and how they were established.
public struct SNPVerificationResult: Sendable, Hashable, Codable {
    public let claims: SNPClaims
    /// Leaf first: VCEK/VLEK, ASK/ASVK, ARK.
    public let chain: [CertificateSummary]
    public let signatureValid: Bool
    public let chainValid: Bool
    public let reportedTCBMatchesCertificate: Bool
    /// nil when there is nothing to compare (VLEK, or CHIP_ID masked by the host).
    public let chipIDMatchesHardwareID: Bool?
    /// Whether revocation was checked, and if not (soft mode only), why.
    public let revocation: RevocationStatus
    public let validationTime: Date
    /// Facts a person should know that did not make the evidence invalid.
    public let warnings: [String]
}

/// Verifies SEV-SNP evidence against cmk's pinned AMD roots: product, chain (RSA-PSS), revocation, report
/// signature (ECDSA P-384), and the endorsement certificate's TCB and chip id against the report.
///
/// It checks the evidence only; whether the claims are acceptable is the policy layer's decision. Each
/// failure is an ``AttestationError`` whose code names the kind of failure and whose reason names the check.
public struct SNPVerifier: Sendable {
    public let trustAnchors: TrustAnchorStore
    public let collateral: SNPCollateralStore?
    private let cache: VerifiedChainCache

    public init(trustAnchors: TrustAnchorStore, collateral: SNPCollateralStore? = nil) {
        self.trustAnchors = trustAnchors
        self.collateral = collateral
        self.cache = VerifiedChainCache()
    }

    public func verify(_ evidence: SNPEvidence, options: SNPVerificationOptions) throws(AttestationError) -> SNPVerificationResult {
        let report = evidence.report
        let time = options.validationTime
        let signer = report.signerInfo.signingKey
        var warnings: [String] = []

        // 1. The product: every source that names one must agree.
        let product = try determineProduct(report: report, certificate: evidence.endorsementCertificate, requested: options.product)

        // 2. The endorsement certificate: delivered, or from the offline cache.
        let leaf = try endorsementCertificate(evidence, product: product)

        // 3. The chain, against the pinned roots only (or the installation's simulated root, when the store holds one).
        let roots = try chooseRoots(product: product, leaf: leaf)
        let issuer: AttestationCertificate
        switch signer {
        case .vlek:
            guard let asvk = roots.asvk else {
                throw AttestationError(
                    .missingCollateral,
                    roots.simulated
                        ? "cmk's simulated platform issues no VLEKs, so a VLEK report cannot chain to \(roots.rootName)"
                        : "cmk has no ASVK for \(product.rawValue) in attestation/, so VLEK reports cannot be verified")
            }
            issuer = asvk
        default:
            issuer = roots.ask
        }
        let pinned = Set([roots.ark.fingerprint, roots.ask.fingerprint] + (roots.asvk.map { [$0.fingerprint] } ?? []))
        for presented in evidence.presentedChain where !pinned.contains(presented.fingerprint) {
            throw AttestationError(
                .untrustedRoot,
                "the evidence carries '\(presented.subjectCommonName ?? "?")', which is not the \(roots.rootName) "
                    + "certificate cmk trusts; a chain never gains trust from what the evidence brings")
        }
        let verified = try cache.entry(leaf: leaf, issuer: issuer, roots: roots, signer: signer, product: product)
        for certificate in [leaf, issuer, roots.ark] {
            try certificate.checkValidity(at: time)
        }

        // 4. Revocation.
        let revocation = try checkRevocation(product: product, signer: signer, roots: roots, issuer: issuer, options: options)
        if let reason = revocation.notCheckedReason { warnings.append("revocation was not checked: " + reason) }

        // 5. The report signature.
        guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.rawSignature),
            verified.publicKey.isValidSignature(signature, for: report.signedBytes)
        else {
            throw AttestationError(
                .reportSignatureInvalid,
                "the report signature does not verify under the \(signer.name) of '\(leaf.subjectCommonName ?? "?")': the report was altered or signed by another key")
        }

        // 6. The certificate's TCB and chip id against the report.
        try checkTCB(report: report, extensions: verified.extensions, product: product)
        let chipMatch = try checkChipID(report: report, extensions: verified.extensions, product: product, signer: signer)
        if chipMatch == nil && signer == .vcek {
            warnings.append("CHIP_ID is masked by the host; the report is not bound to a chip id")
        }

        let claims = SNPClaims(
            report: report, product: product, trustAnchor: roots.rootName,
            simulated: roots.simulated || trustAnchors.isSimulated(root: roots.rootName),
            cspID: verified.extensions.cspID)
        return SNPVerificationResult(
            claims: claims,
            chain: verified.chain,
            signatureValid: true, chainValid: true, reportedTCBMatchesCertificate: true,
            chipIDMatchesHardwareID: chipMatch, revocation: revocation, validationTime: time, warnings: warnings)
    }

    /// The roots the endorsement certificate must chain to: AMD's pinned roots of the product, or — only when its
    /// issuer is named as cmk's simulated ASK — the installation's simulated roots, which must have been loaded.
    /// The name only selects; the signatures decide.
    func chooseRoots(
        product: AMDProduct, leaf: AttestationCertificate
    ) throws(AttestationError) -> AMDRootCertificates {
        guard leaf.issuerCommonName?.hasSuffix(AMDProduct.simulatedNameSuffix) == true else {
            return try trustAnchors.amdRoots(product)
        }
        guard let simulated = trustAnchors.simulatedAMDRoots(product) else {
            let reason = trustAnchors.simulatedDirectory == nil
                ? "this verifier loaded no simulated folder, so it trusts AMD's roots only"
                : "the simulated folder \(trustAnchors.simulatedDirectory?.path ?? "") holds no simulated "
                    + "\(product.rawValue) root"
            throw AttestationError(
                .untrustedRoot,
                "the endorsement certificate '\(leaf.subjectCommonName ?? "?")' is issued by "
                    + "'\(leaf.issuerCommonName ?? "?")', cmk's simulated platform; " + reason)
        }
        return simulated
    }

    func determineProduct(report: SNPReport, certificate: AttestationCertificate?, requested: AMDProduct?) throws(AttestationError) -> AMDProduct {
        enum Source { case cpuid, issuer, productName, caller }
        var sources: [(Source, AMDProduct)] = []
        sources.reserveCapacity(4)
        if let cpuid = report.cpuid {
            guard let product = AMDProduct.identify(family: cpuid.family, model: cpuid.model) else {
                throw AttestationError(
                    .unknownProduct,
                    "CPUID family 0x\(String(cpuid.family, radix: 16)) model 0x\(String(cpuid.model, radix: 16)) is not a product cmk knows (Milan, Genoa, Turin)")
            }
            sources.append((.cpuid, product))
        }
        var facts: VerifiedChainCache.Facts?
        if let certificate {
            let known = cache.facts(for: certificate)
            facts = known
            if let product = known.issuerProduct { sources.append((.issuer, product)) }
            if let product = known.productNameProduct { sources.append((.productName, product)) }
        }
        if let requested { sources.append((.caller, requested)) }
        guard let first = sources.first else {
            throw AttestationError(
                .unknownProduct,
                "a version \(report.version) report does not name its product, and neither a certificate nor the caller says it")
        }
        if let other = sources.first(where: { $0.1 != first.1 }) {
            func name(_ source: Source) -> String {
                switch source {
                case .cpuid: "the report's CPUID"
                case .issuer: "the certificate issuer '\(facts?.issuerName ?? "")'"
                case .productName: "the certificate productName '\(facts?.extensions?.productName ?? "")'"
                case .caller: "the caller"
                }
            }
            throw AttestationError(
                .productMismatch, "\(name(first.0)) says \(first.1.rawValue) but \(name(other.0)) says \(other.1.rawValue)")
        }
        return first.1
    }

    func endorsementCertificate(_ evidence: SNPEvidence, product: AMDProduct) throws(AttestationError) -> AttestationCertificate {
        if let certificate = evidence.endorsementCertificate { return certificate }
        let report = evidence.report
        guard report.signerInfo.signingKey == .vcek else {
            throw AttestationError(.missingCollateral, "a VLEK certificate comes with the evidence (the certificate table); none was given")
        }
        guard !report.chipIDIsMasked else {
            throw AttestationError(.missingCollateral, "CHIP_ID is masked, so the VCEK cannot be looked up; supply it with the evidence")
        }
        guard let collateral else {
            throw AttestationError(.missingCollateral, "no VCEK was given and no collateral cache is configured")
        }
        guard let vcek = try collateral.vcek(product: product, chipID: report.chipID, reportedTCB: report.reportedTCB) else {
            throw AttestationError(
                .missingCollateral,
                "no VCEK for this chip at REPORTED_TCB \(report.reportedTCB) in \(collateral.directory.path); fetch \(AMDKDS.vcekURL(product: product, chipID: report.chipID, reportedTCB: report.reportedTCB))")
        }
        return vcek
    }

    func checkRevocation(
        product: AMDProduct, signer: SNPSignerInfo.SigningKey, roots: AMDRootCertificates, issuer: AttestationCertificate,
        options: SNPVerificationOptions
    ) throws(AttestationError) -> RevocationStatus {
        if roots.simulated {
            // The collateral cache holds AMD's CRLs, signed by AMD's ARK: they say nothing about a simulated chain.
            let reason = "\(roots.rootName) is cmk's simulated platform, which publishes no CRL"
            if options.revocation == .hard {
                throw AttestationError(
                    .missingCollateral, reason + "; simulated evidence verifies only with soft revocation")
            }
            return .notChecked(reason)
        }
        guard let collateral else {
            let reason = "no collateral cache is configured, so no CRL is available"
            if options.revocation == .hard {
                throw AttestationError(.missingCollateral, reason + "; configure one, or verify with the soft revocation mode")
            }
            return .notChecked(reason)
        }
        // The file is read every time (a refreshed CRL counts at once); parsing and the signature check are done
        // once per distinct CRL and ARK, since neither depends on the time. Staleness and the listing are checked
        // below on every call.
        let der = collateral.crlBytes(product: product, signer: signer)
        var crl: CertificateRevocationList?
        if let der {
            let key = Array(SHA256.hash(data: der)) + roots.ark.fingerprint
            if let known = cache.verifiedCRL(key) {
                crl = known
            } else {
                let parsed: CertificateRevocationList
                do {
                    parsed = try CertificateRevocationList(der: der)
                } catch {
                    throw AttestationError(.crlInvalid, "the cached \(product.rawValue) CRL cannot be read: \(error.reason)")
                }
                // The signature and parameters first: a forged CRL is never tolerated, in either mode.
                try parsed.verify(issuedBy: roots.ark, at: nil, requiredAlgorithm: .rsaPSS(.amdSEV))
                cache.storeVerifiedCRL(parsed, key)
                crl = parsed
            }
        }
        guard let crl else {
            let reason = "no \(product.rawValue) \(signer.name) CRL in the collateral cache (\(AMDKDS.crlURL(product: product, signer: signer)))"
            if options.revocation == .hard {
                throw AttestationError(.missingCollateral, reason + "; fetch it, or verify with the soft revocation mode")
            }
            return .notChecked(reason)
        }
        // A listed certificate is rejected even when the CRL is out of date: staleness can only hide revocations.
        // AMD's CRLs are the ARK's, so they list what the ARK issued: the ASK or ASVK.
        if crl.isRevoked(issuer) {
            throw AttestationError(
                .certificateRevoked, "'\(issuer.subjectCommonName ?? "?")' (serial \(Hex.encode(issuer.serialNumber))) is revoked by the ARK's CRL")
        }
        if let nextUpdate = crl.nextUpdate, options.validationTime > nextUpdate {
            let reason = "the \(product.rawValue) CRL expired at \(nextUpdate.ISO8601Format()); fetch a current one"
            if options.revocation == .hard { throw AttestationError(.crlInvalid, reason) }
            return .notChecked(reason)
        }
        return .checked
    }

    func checkTCB(report: SNPReport, extensions: VCEKExtensions, product: AMDProduct) throws(AttestationError) {
        let layout = product.tcbLayout
        for (name, tcb) in [
            ("REPORTED_TCB", report.reportedTCB), ("CURRENT_TCB", report.currentTCB), ("COMMITTED_TCB", report.committedTCB),
            ("LAUNCH_TCB", report.launchTCB),
        ] where !tcb.reservedBytesAreZero(in: layout) {
            throw AttestationError(.tcbMismatch, "\(name) \(tcb) sets bytes the \(product.rawValue) layout reserves")
        }
        let reported = report.reportedTCB.components(layout)
        let certified = extensions.tcb
        guard reported == certified, extensions.spl4 ?? 0 == 0, extensions.spl5 == 0, extensions.spl6 == 0, extensions.spl7 == 0 else {
            throw AttestationError(
                .tcbMismatch,
                "REPORTED_TCB \(describe(reported)) differs from the certificate's \(describe(certified)): the \(report.signerInfo.signingKey.name) was issued for another TCB")
        }
        guard report.currentTCB.components(layout).isAtLeast(reported) else {
            throw AttestationError(.tcbMismatch, "REPORTED_TCB \(describe(reported)) is above CURRENT_TCB \(describe(report.currentTCB.components(layout)))")
        }
    }

    func checkChipID(report: SNPReport, extensions: VCEKExtensions, product: AMDProduct, signer: SNPSignerInfo.SigningKey) throws(AttestationError) -> Bool? {
        switch signer {
        case .vlek:
            guard extensions.cspID != nil, extensions.hardwareID == nil else {
                throw AttestationError(.endorsementExtension, "a VLEK certificate must carry cspID and no hwID")
            }
            return nil
        default:
            guard let hardwareID = extensions.hardwareID else {
                throw AttestationError(.endorsementExtension, "the VCEK certificate has no hwID")
            }
            guard hardwareID.count == product.chipIDLength else {
                throw AttestationError(.endorsementExtension, "a \(product.rawValue) hwID has \(product.chipIDLength) bytes; this one has \(hardwareID.count)")
            }
            if report.chipIDIsMasked { return nil }
            let significant = report.chipID.prefix(product.chipIDLength)
            let rest = report.chipID.dropFirst(product.chipIDLength)
            guard constantTimeEqual(significant, hardwareID), rest.allSatisfy({ $0 == 0 }) else {
                throw AttestationError(.chipIDMismatch, "the report's CHIP_ID is not the VCEK's hwID \(Hex.encode(hardwareID)): the VCEK belongs to another chip")
            }
            return true
        }
    }

    private func describe(_ c: SNPTCBVersion.Components) -> String {
        (c.fmc.map { "fmc=\($0) " } ?? "") + "bl=\(c.bootloader) tee=\(c.tee) snp=\(c.snp) ucode=\(c.microcode)"
    }
}

/// Endorsement certificates already verified under a pinned root, keyed by the certificate's bytes: the
/// RSA-PSS checks and ASN.1 parsing happen once per certificate, not once per report. Validity, revocation
/// and every report-side check still run each time.
final class VerifiedChainCache: Sendable {
    struct Entry: Sendable {
        let issuerFingerprint: [UInt8]
        let publicKey: P384.Signing.PublicKey
        let extensions: VCEKExtensions
        /// Leaf, issuer, root.
        let chain: [CertificateSummary]
    }

    /// What a certificate says about its product, read once per certificate.
    struct Facts: Sendable {
        let issuerName: String
        let issuerProduct: AMDProduct?
        let extensions: VCEKExtensions?
        let productNameProduct: AMDProduct?
    }

    private let entries = Mutex<[[UInt8]: Entry]>([:])
    private let facts = Mutex<[[UInt8]: Facts]>([:])
    private let verifiedRoots = Mutex<Set<[UInt8]>>([])
    /// CRLs whose signature verified, by SHA-256 of the DER followed by the ARK's fingerprint.
    private let verifiedCRLs = Mutex<[[UInt8]: CertificateRevocationList]>([:])
    static let capacity = 4096

    func verifiedCRL(_ key: [UInt8]) -> CertificateRevocationList? { verifiedCRLs.withLock { $0[key] } }

    func storeVerifiedCRL(_ crl: CertificateRevocationList, _ key: [UInt8]) {
        verifiedCRLs.withLock { cache in
            if cache.count >= 64 { cache.removeAll() }
            cache[key] = crl
        }
    }

    func facts(for certificate: AttestationCertificate) -> Facts {
        if let known = facts.withLock({ $0[certificate.fingerprint] }) { return known }
        let issuerName = certificate.issuerCommonName ?? ""
        let line = issuerName.replacingOccurrences(of: AMDProduct.simulatedNameSuffix, with: "")
            .replacingOccurrences(of: "SEV-VLEK-", with: "").replacingOccurrences(of: "SEV-", with: "")
        let extensions = try? VCEKExtensions(certificate: certificate)
        let result = Facts(
            issuerName: issuerName, issuerProduct: AMDProduct(rawValue: line), extensions: extensions,
            productNameProduct: extensions.flatMap { AMDProduct.fromCertificateProductName($0.productName) })
        facts.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll() }
            cache[certificate.fingerprint] = result
        }
        return result
    }

    func entry(
        leaf: AttestationCertificate, issuer: AttestationCertificate, roots: AMDRootCertificates,
        signer: SNPSignerInfo.SigningKey, product: AMDProduct
    ) throws(AttestationError) -> Entry {
        if let cached = entries.withLock({ $0[leaf.fingerprint] }), cached.issuerFingerprint == issuer.fingerprint { return cached }

        // The roots' structure (self-signature, ASK/ASVK under ARK, names, CA bits, key sizes) once per set.
        let rootKey = roots.ark.fingerprint + roots.ask.fingerprint + (roots.asvk?.fingerprint ?? [])
        if !verifiedRoots.withLock({ $0.contains(rootKey) }) {
            try roots.verify(at: nil)
            verifiedRoots.withLock { _ = $0.insert(rootKey) }
        }
        let expectedName =
            signer == .vlek ? "SEV-VLEK" : roots.simulated ? AMDProduct.simulatedVCEKCommonName : "SEV-VCEK"
        guard leaf.subjectCommonName == expectedName else {
            throw AttestationError(
                .signerMismatch,
                "the report is signed by a \(signer.name), but the certificate is '\(leaf.subjectCommonName ?? "?")'")
        }
        try leaf.checkCriticalExtensions()
        try leaf.verifySignature(issuedBy: issuer, requiredAlgorithm: .rsaPSS(.amdSEV))
        let extensions = try VCEKExtensions(certificate: leaf)
        guard AMDProduct.fromCertificateProductName(extensions.productName) == product else {
            throw AttestationError(.productMismatch, "the certificate's productName '\(extensions.productName)' is not \(product.rawValue)")
        }
        // A simulated chain says so in every name, the productName included.
        guard !roots.simulated || extensions.productName == product.simulatedProductName else {
            throw AttestationError(
                .endorsementExtension,
                "a certificate under the simulated root must name the product '\(product.simulatedProductName)', "
                    + "this one names '\(extensions.productName)'")
        }
        let expectedStruct = product == .turin ? 1 : 0
        guard extensions.structVersion == expectedStruct else {
            throw AttestationError(
                .endorsementExtension, "a \(product.rawValue) certificate must have structVersion \(expectedStruct); this one has \(extensions.structVersion)")
        }
        guard (product == .turin) == (extensions.fmcSPL != nil), product != .turin || extensions.spl4 == nil else {
            throw AttestationError(.endorsementExtension, "the certificate's SPL extensions do not follow the \(product.rawValue) layout")
        }
        let publicKey: P384.Signing.PublicKey
        do {
            publicKey = try P384.Signing.PublicKey(derRepresentation: leaf.subjectPublicKeyInfo)
        } catch {
            throw AttestationError(.unsupportedPublicKey, "the \(signer.name) key is not an ECDSA P-384 key")
        }
        let entry = Entry(
            issuerFingerprint: issuer.fingerprint, publicKey: publicKey, extensions: extensions,
            chain: [
                CertificateSummary(role: signer.name, leaf),
                CertificateSummary(role: signer == .vlek ? "ASVK" : "ASK", issuer),
                CertificateSummary(role: "ARK", roots.ark),
            ])
        entries.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll() }
            cache[leaf.fingerprint] = entry
        }
        return entry
    }
}
