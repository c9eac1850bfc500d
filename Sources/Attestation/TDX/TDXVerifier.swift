public import Foundation
public import TDX
public import BinaryFormat
import Crypto
import Synchronization

/// The inputs of one TDX verification besides the quote.
public struct TDXVerificationOptions: Sendable {
    /// The instant every certificate, CRL and collateral item is checked at (Intel QVL uses one time for all).
    public var evaluationTime: Date
    public var revocation: RevocationMode

    public init(evaluationTime: Date, revocation: RevocationMode = .hard) {
        self.evaluationTime = evaluationTime
        self.revocation = revocation
    }
}

/// The outcome of verifying a TDX quote: every check by name (the names Intel's verification steps and the test
/// vectors use), the TCB status, and the claims. Checks are evaluated independently, so a report says everything
/// that failed, not only the first thing.
public struct TDXVerificationResult: Sendable, Codable {
    /// Check name → passed. A check whose inputs are absent (collateral not given) is not listed.
    public let checks: [String: Bool]
    /// Why each failed check failed.
    public let failures: [String: String]
    /// Intel's TCB status (`UpToDate`, `OutOfDate` ... or `TCB_NOT_SUPPORTED` ...), nil when not evaluated.
    public let tcbStatus: String?
    public let qeTCBStatus: String?
    public let advisoryIDs: [String]
    public let claims: TDXClaims
    public let warnings: [String]

    /// Whether every check passed and the TCB status is one Intel reports for a supported platform.
    public var valid: Bool {
        checks.values.allSatisfy { $0 } && tcbStatus.map { !TDXVerificationResult.hardFailures.contains($0) } == true
    }

    static let hardFailures: Set<String> = ["TCB_NOT_SUPPORTED", "TDX_MODULE_MISMATCH", "TCB_INFO_MISMATCH", "QE_IDENTITY_MISMATCH", "Revoked"]
}

/// What a verified TDX quote says, as typed values for the policy layer. The DEBUG attribute is always surfaced.
public struct TDXClaims: Sendable, Hashable, Codable {
    public let evidenceType: String
    public let quoteVersion: UInt16
    public let teeTCBSVN: HexBytes
    public let teeTCBSVN2: HexBytes?
    public let mrSeam: HexBytes
    public let mrSignerSeam: HexBytes
    public let mrTD: HexBytes
    public let rtmrs: [HexBytes]
    public let reportData: HexBytes
    public let mrConfigID: HexBytes
    public let mrOwner: HexBytes
    public let mrOwnerConfig: HexBytes
    public let mrServiceTD: HexBytes?
    public let tdAttributes: UInt64
    public let tdAttributeFlags: [String]
    public let debug: Bool
    public let xfam: UInt64
    public let fmspc: HexBytes?
    public let pceID: HexBytes?

    init(quote q: TDXQuote, pck: PCKExtensions?) {
        evidenceType = "tdx"
        quoteVersion = q.version
        teeTCBSVN = HexBytes(q.body.teeTCBSVN)
        teeTCBSVN2 = q.body.teeTCBSVN2.map(HexBytes.init)
        mrSeam = HexBytes(q.body.mrSeam)
        mrSignerSeam = HexBytes(q.body.mrSignerSeam)
        mrTD = HexBytes(q.body.mrTD)
        rtmrs = q.body.rtmrs.map(HexBytes.init)
        reportData = HexBytes(q.body.reportData)
        mrConfigID = HexBytes(q.body.mrConfigID)
        mrOwner = HexBytes(q.body.mrOwner)
        mrOwnerConfig = HexBytes(q.body.mrOwnerConfig)
        mrServiceTD = q.body.mrServiceTD.map(HexBytes.init)
        tdAttributes = q.body.tdAttributesValue
        tdAttributeFlags = q.body.tdAttributeFlags
        debug = q.body.isDebug
        xfam = q.body.xfamValue
        fmspc = pck?.fmspc
        pceID = pck?.pceID
    }
}

/// Verifies TDX DCAP quotes in Intel's order (QuoteVerificationLibrary; TDX.md §6) against the pinned Intel SGX
/// Root CA — never the root a quote carries.
///
/// Work that does not depend on the quote or the time is done once: a PCK chain is parsed and its signatures
/// checked once per chain (``TDXVerifier`` keeps a cache), and collateral is parsed and its signatures checked once
/// when it is prepared (``prepare(_:)``). Validity at the evaluation time, revocation lookups and everything about
/// the quote itself run on every call.
public struct TDXVerifier: Sendable {
    public let trustAnchors: TrustAnchorStore
    let chains = TDXChainCache()

    public init(trustAnchors: TrustAnchorStore) { self.trustAnchors = trustAnchors }

    static let leafName = "Intel SGX PCK Certificate"
    static let intermediateNames = ["Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA"]

    /// A running list of named checks.
    struct Checks {
        var results: [String: Bool] = [:]
        var failures: [String: String] = [:]
        mutating func record(_ name: String, _ passed: Bool, _ reason: @autoclosure () -> String) {
            results[name] = passed && (results[name] ?? true)
            if !passed && failures[name] == nil { failures[name] = reason() }
        }
        mutating func merge(_ other: [(String, Bool, String)]) {
            for (name, passed, reason) in other { record(name, passed, reason) }
        }
    }

    /// Verifies `quote` with collateral read from files (prepared on the spot).
    public func verify(_ quote: TDXQuote, collateral: TDXCollateral?, options: TDXVerificationOptions) throws(AttestationError) -> TDXVerificationResult {
        try verify(quote, prepared: try collateral.map { (c: TDXCollateral) throws(AttestationError) in try prepare(c) }, options: options)
    }

    public func verify(_ quote: TDXQuote, prepared collateral: PreparedTDXCollateral?, options: TDXVerificationOptions) throws(AttestationError) -> TDXVerificationResult {
        let root = try trustAnchors.intelSGXRoot()
        let time = options.evaluationTime
        var checks = Checks()
        var warnings: [String] = []
        checks.record("header_format", true, "")
        checks.record("qe_vendor_is_intel", constantTimeEqual(quote.qeVendorID, TDXQuote.intelQEVendorID),
                      "the QE vendor ID \(Hex.encode(quote.qeVendorID)) is not Intel's")
        if quote.trailingBytes > 0 {
            warnings.append("\(quote.trailingBytes) \(quote.trailingBytesAreZero ? "zero " : "")bytes follow the signature data (outside every signature)")
        }

        // A. The PCK chain carried in the quote, anchored to the pinned root (time-independent part cached).
        let chain = try chains.entry(pem: quote.pckCertificateChainPEM, root: root)
        checks.merge(chain.checks)
        for certificate in [chain.leaf, chain.intermediate, root] {
            do {
                try certificate.checkValidity(at: time)
                checks.record("pck_chain_time_valid", true, "")
            } catch {
                checks.record("pck_chain_time_valid", false, error.reason)
            }
        }

        // D .4.12–.4.13, .4.16: QE report signature by the PCK key, its binding to the attestation key, the quote signature.
        let qeSignature = try? P256.Signing.ECDSASignature(rawRepresentation: quote.qeReportSignature)
        checks.record(
            "qe_report_signature",
            chain.pckKey != nil && qeSignature != nil && chain.pckKey!.isValidSignature(qeSignature!, for: quote.qeReport.bytes),
            "the QE report signature does not verify under the PCK certificate's key")
        let binding = Array(SHA256.hash(data: quote.attestationKey + quote.qeAuthData))
        checks.record(
            "qe_report_data_binding",
            constantTimeEqual(quote.qeReport.reportData.prefix(32), binding) && quote.qeReport.reportData.suffix(32).allSatisfy { $0 == 0 },
            "the QE report does not bind the attestation key: REPORTDATA is not SHA-256(attestation key ‖ QE auth data) ‖ zeros")
        let attestationKey = chains.attestationKey(quote.attestationKey)
        let quoteSignature = try? P256.Signing.ECDSASignature(rawRepresentation: quote.signature)
        checks.record(
            "quote_signature",
            attestationKey != nil && quoteSignature != nil
                && quote.bytes.withUnsafeBytes { attestationKey!.isValidSignature(quoteSignature!, for: UnsafeRawBufferPointer(rebasing: $0[0..<quote.signedLength])) },
            "the quote signature does not verify under the attestation key: header or TD report was altered")

        var tcbStatus: String?
        var qeStatus: String?
        var advisories: [String] = []
        if let collateral {
            try evaluateCollateral(
                collateral, quote: quote, chain: chain, root: root, options: options, checks: &checks, warnings: &warnings,
                tcbStatus: &tcbStatus, qeStatus: &qeStatus, advisories: &advisories)
        } else {
            warnings.append("no collateral: revocation and TCB status were not evaluated")
        }
        let signatureChain = ["pck_chain_signatures", "pck_chain_anchored_to_trusted_root", "qe_report_signature",
                              "qe_report_data_binding", "quote_signature"].allSatisfy { checks.results[$0] == true }
        checks.record("signature_chain_valid", signatureChain, "a signature of the quote, the QE report or the PCK chain does not verify")
        return TDXVerificationResult(
            checks: checks.results, failures: checks.failures, tcbStatus: tcbStatus, qeTCBStatus: qeStatus,
            advisoryIDs: advisories, claims: TDXClaims(quote: quote, pck: chain.pck), warnings: warnings)
    }
}

/// PCK chains already parsed and checked. Looked up by a hash of the chain's first bytes and confirmed by
/// comparing the whole PEM text, so a hit costs a short hash and one comparison, not a digest of the chain.
final class TDXChainCache: Sendable {
    struct Entry: Sendable {
        let leaf: AttestationCertificate
        let intermediate: AttestationCertificate
        let pck: PCKExtensions?
        let pckKey: P256.Signing.PublicKey?
        /// Time-independent results: names, signatures, anchoring, the SGX extension.
        let checks: [(String, Bool, String)]
    }

    private let entries = Mutex<[Int: [(pem: String, root: [UInt8], entry: Entry)]]>([:])
    private let keys = Mutex<[[UInt8]: P256.Signing.PublicKey]>([:])

    /// The attestation key for its raw x ‖ y bytes. A quoting enclave keeps its key across quotes, and importing
    /// a key validates the point (a scalar multiplication), so keys are kept once imported.
    func attestationKey(_ raw: [UInt8]) -> P256.Signing.PublicKey? {
        if let known = keys.withLock({ $0[raw] }) { return known }
        guard let key = try? P256.Signing.PublicKey(rawRepresentation: raw) else { return nil }
        keys.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[raw] = key
        }
        return key
    }

    func entry(pem: String, root: AttestationCertificate) throws(AttestationError) -> Entry {
        var hasher = Hasher()
        var text = pem
        text.withUTF8 { utf8 in
            hasher.combine(utf8.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8.prefix(512))))
        }
        let key = hasher.finalize()
        if let cached = entries.withLock({ bucket in bucket[key]?.first(where: { $0.pem == pem && $0.root == root.fingerprint })?.entry }) {
            return cached
        }
        let chain: [AttestationCertificate]
        do {
            chain = try PEMDocuments.certificates(in: pem).map { (der: [UInt8]) throws(AttestationError) in
                try AttestationCertificate(der: der)
            }
        } catch {
            throw AttestationError(.malformedEvidence, "the quote's PCK certificate chain cannot be read: \(error.reason)")
        }
        guard chain.count == 3 else {
            throw AttestationError(.malformedEvidence, "the quote's PCK chain has \(chain.count) certificates; it must be leaf, CA and root")
        }
        let (leaf, intermediate, quoteRoot) = (chain[0], chain[1], chain[2])
        var checks: [(String, Bool, String)] = []
        let namesOK = leaf.subjectCommonName == TDXVerifier.leafName
            && TDXVerifier.intermediateNames.contains(intermediate.subjectCommonName ?? "")
            && quoteRoot.subjectCommonName == root.subjectCommonName
        checks.append(("pck_chain_signatures", namesOK, "the PCK chain's names are not leaf ← PCK Platform/Processor CA ← SGX Root CA"))
        for (certificate, issuer) in [(leaf, intermediate), (intermediate, quoteRoot)] {
            do {
                try certificate.verifySignature(issuedBy: issuer, requiredAlgorithm: .ecdsaWithSHA256)
                try certificate.checkCriticalExtensions()
            } catch {
                checks.append(("pck_chain_signatures", false, error.reason))
            }
        }
        checks.append(("pck_chain_anchored_to_trusted_root", quoteRoot.fingerprint == root.fingerprint,
                       "the quote's chain ends in '\(quoteRoot.subjectCommonName ?? "?")' \(Hex.encode(quoteRoot.fingerprint)), not the pinned Intel SGX Root CA"))
        if (try? intermediate.verifySignature(issuedBy: root, requiredAlgorithm: .ecdsaWithSHA256)) == nil {
            checks.append(("pck_chain_anchored_to_trusted_root", false, "the PCK CA is not signed by the pinned Intel SGX Root CA"))
        }
        var pck: PCKExtensions?
        do {
            pck = try PCKExtensions(certificate: leaf)
        } catch {
            checks.append(("pck_chain_signatures", false, error.reason))
        }
        let entry = Entry(
            leaf: leaf, intermediate: intermediate, pck: pck,
            pckKey: try? P256.Signing.PublicKey(derRepresentation: leaf.subjectPublicKeyInfo), checks: checks)
        entries.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[key, default: []].append((pem, root.fingerprint, entry))
        }
        return entry
    }
}
