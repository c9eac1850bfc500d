public import Foundation
public import TDX
import BinaryFormat
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
///
/// The outcomes are kept as a compact ``TDXCheck`` set; ``checks`` and ``failures`` spell them out by name when
/// asked, and ``outcome(of:)`` and ``failure(of:)`` read one check without building either dictionary.
public struct TDXVerificationResult: Sendable, Codable {
    let checkSet: TDXCheckSet
    /// Intel's TCB status (`UpToDate`, `OutOfDate` ... or `TCB_NOT_SUPPORTED` ...), nil when not evaluated.
    public let tcbStatus: String?
    public let qeTCBStatus: String?
    public let advisoryIDs: [String]
    public let claims: TDXClaims
    public let warnings: [String]

    init(
        checks: TDXCheckSet, tcbStatus: String?, qeTCBStatus: String?, advisoryIDs: [String], claims: TDXClaims,
        warnings: [String]
    ) {
        checkSet = checks
        self.tcbStatus = tcbStatus
        self.qeTCBStatus = qeTCBStatus
        self.advisoryIDs = advisoryIDs
        self.claims = claims
        self.warnings = warnings
    }

    /// Check name → passed. A check whose inputs are absent (collateral not given) is not listed.
    public var checks: [String: Bool] { checkSet.byName }
    /// Why each failed check failed.
    public var failures: [String: String] { checkSet.failuresByName }

    /// Whether `check` passed; nil when it was not evaluated (its inputs were absent).
    public func outcome(of check: TDXCheck) -> Bool? { checkSet.outcome(check) }

    /// Why `check` failed; nil when it passed or was not evaluated.
    public func failure(of check: TDXCheck) -> String? { checkSet.reason(check) }

    /// Whether every check passed and the TCB status is one Intel reports for a supported platform.
    public var valid: Bool {
        checkSet.noneFailed && tcbStatus.map { !TDXVerificationResult.hardFailures.contains($0) } == true
    }

    static let hardFailures: Set<String> = [
        "TCB_NOT_SUPPORTED", "TDX_MODULE_MISMATCH", "TCB_INFO_MISMATCH", "QE_IDENTITY_MISMATCH", "Revoked",
    ]

    private enum CodingKeys: String, CodingKey {
        case checks, failures, tcbStatus, qeTCBStatus, advisoryIDs, claims, warnings
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let checks = try container.decode([String: Bool].self, forKey: .checks)
        let failures = try container.decode([String: String].self, forKey: .failures)
        do throws(TDXCheckSetError) {
            checkSet = try TDXCheckSet(checks: checks, failures: failures)
        } catch {
            throw DecodingError.dataCorruptedError(
                forKey: .checks, in: container, debugDescription: "'\(error.name)' is not a TDX check cmk defines")
        }
        tcbStatus = try container.decodeIfPresent(String.self, forKey: .tcbStatus)
        qeTCBStatus = try container.decodeIfPresent(String.self, forKey: .qeTCBStatus)
        advisoryIDs = try container.decode([String].self, forKey: .advisoryIDs)
        claims = try container.decode(TDXClaims.self, forKey: .claims)
        warnings = try container.decode([String].self, forKey: .warnings)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(checks, forKey: .checks)
        try container.encode(failures, forKey: .failures)
        try container.encodeIfPresent(tcbStatus, forKey: .tcbStatus)
        try container.encodeIfPresent(qeTCBStatus, forKey: .qeTCBStatus)
        try container.encode(advisoryIDs, forKey: .advisoryIDs)
        try container.encode(claims, forKey: .claims)
        try container.encode(warnings, forKey: .warnings)
    }
}

/// Verifies TDX DCAP quotes in Intel's order (QuoteVerificationLibrary; TDX.md §6) against the pinned Intel SGX
/// Root CA — never the root a quote carries.
///
/// A store that loaded an installation's simulated folder also holds the simulated SGX root (`simulated-intel`). It
/// is used only for a PCK chain whose CA is issued under the simulated root's name; every check then runs unchanged
/// against that root, and the claims say `trustAnchor: simulated-intel`, `simulated: true`. Without the folder such
/// a chain is refused (`untrusted-root`).
///
/// Work that does not depend on the quote or the time is done once: a PCK chain is parsed and its signatures
/// checked once per chain (``TDXVerifier`` keeps a cache), and collateral is parsed and its signatures checked once
/// when it is prepared (``prepare(_:)``). Validity at the evaluation time, revocation lookups and everything about
/// the quote itself run on every call.
public struct TDXVerifier: Sendable {
    public let trustAnchors: TrustAnchorStore
    let chains = TDXChainCache()
    /// The pinned Intel SGX Root CA, looked up once; nil, with the reason in ``missingRoot``, when the store has none.
    private let root: PinnedRoot?
    private let missingRoot: AttestationError?
    /// The installation's simulated SGX root, when the store loaded a simulated folder holding one.
    private let simulatedRoot: PinnedRoot?

    public init(trustAnchors: TrustAnchorStore) {
        self.trustAnchors = trustAnchors
        do {
            root = PinnedRoot(try trustAnchors.intelSGXRoot(), name: "intel-sgx-root", simulated: false)
            missingRoot = nil
        } catch {
            root = nil
            missingRoot = error
        }
        simulatedRoot = trustAnchors.simulatedIntelRoot().map {
            PinnedRoot($0, name: SimulatedIntel.rootName, simulated: true)
        }
    }

    /// The pinned Intel root, or the error that says why there is none.
    func pinnedRoot() throws(AttestationError) -> PinnedRoot {
        guard let root else { throw missingRoot ?? AttestationError(.trustAnchor, "no Intel SGX Root CA") }
        return root
    }

    /// The root a chain or collateral must end in: the simulated root when `issuerCommonName` (the name the chain's
    /// CA or signing certificate gives its issuer) is the simulated root's — and only if it was loaded — else Intel's.
    func root(forIssuer issuerCommonName: String?) throws(AttestationError) -> PinnedRoot {
        guard issuerCommonName?.hasSuffix(SimulatedIntel.nameSuffix) == true else { return try pinnedRoot() }
        guard let simulatedRoot else {
            let reason = trustAnchors.simulatedDirectories.isEmpty
                ? "this verifier loaded no simulated folder, so it trusts Intel's SGX Root CA only"
                : "the simulated folders \(trustAnchors.simulatedDirectories.map(\.path).joined(separator: ", ")) "
                    + "hold no simulated SGX root"
            throw AttestationError(
                .untrustedRoot,
                "the PCK chain is issued under '\(issuerCommonName ?? "?")', cmk's simulated platform; " + reason)
        }
        return simulatedRoot
    }

    /// A root the verifier trusts, held by reference: each verification reads its fields in place instead of copying
    /// it. ``name`` is the trust-anchor name claims report.
    final class PinnedRoot: Sendable {
        let certificate: AttestationCertificate
        let name: String
        let simulated: Bool
        /// The common names a PCK leaf and its CA must carry under this root.
        let leafName: String
        let intermediateNames: [String]

        init(_ certificate: AttestationCertificate, name: String, simulated: Bool) {
            self.certificate = certificate
            self.name = name
            self.simulated = simulated
            let suffix = simulated ? SimulatedIntel.nameSuffix : ""
            let base = simulated ? { (name: String) in String(name.dropFirst("Intel ".count)) } : { $0 }
            leafName = base(TDXVerifier.leafName) + suffix
            intermediateNames = TDXVerifier.intermediateNames.map { base($0) + suffix }
        }
    }

    static let leafName = "Intel SGX PCK Certificate"
    static let intermediateNames = ["Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA"]
    /// The checks ``TDXCheck/signatureChainValid`` sums up.
    static let signatureChain: [TDXCheck] = [
        .pckChainSignatures, .pckChainAnchoredToTrustedRoot, .qeReportSignature, .qeReportDataBinding, .quoteSignature,
    ]

    /// Verifies `quote` with collateral read from files (prepared on the spot).
    public func verify(
        _ quote: TDXQuote, collateral: TDXCollateral?, options: TDXVerificationOptions
    ) throws(AttestationError) -> TDXVerificationResult {
        let prepared = try collateral.map { (c: TDXCollateral) throws(AttestationError) in try prepare(c) }
        return try verify(quote, prepared: prepared, options: options)
    }

    /// Verifies `quote` with collateral already prepared: every check runs, against `options.evaluationTime`.
    public func verify(
        _ quote: TDXQuote, prepared collateral: PreparedTDXCollateral?, options: TDXVerificationOptions
    ) throws(AttestationError) -> TDXVerificationResult {
        let time = options.evaluationTime
        var checks = TDXCheckSet()
        var warnings: [String] = []
        checks.pass(.headerFormat)
        checks.record(
            .qeVendorIsIntel, constantTimeEqual(quote.qeVendorIDBytes, TDXQuote.intelQEVendorID),
            "the QE vendor ID \(Hex.encode(quote.qeVendorIDBytes)) is not Intel's")
        if quote.trailingBytes > 0 {
            warnings.append(
                "\(quote.trailingBytes) \(quote.trailingBytesAreZero ? "zero " : "")bytes follow the signature data "
                    + "(outside every signature)")
        }

        // A. The PCK chain carried in the quote, anchored to the pinned root (time-independent part cached).
        let chain = try chains.entry(chain: quote.pckCertificateChainBytes) {
            (issuer: String?) throws(AttestationError) in try root(forIssuer: issuer)
        }
        let anchor = chain.anchor
        checks.merge(chain.checks)
        checks.record(
            .pckChainTimeValid, time.isWithin(chain.leaf.notBefore, chain.leaf.notAfter),
            chain.leaf.validityFailure(at: time))
        checks.record(
            .pckChainTimeValid, time.isWithin(chain.intermediate.notBefore, chain.intermediate.notAfter),
            chain.intermediate.validityFailure(at: time))
        checks.record(
            .pckChainTimeValid, time.isWithin(anchor.certificate.notBefore, anchor.certificate.notAfter),
            anchor.certificate.validityFailure(at: time))

        // D .4.12–.4.13, .4.16: the QE report signature by the PCK key, its binding to the attestation key, the
        // quote signature.
        let qeSignature = try? P256.Signing.ECDSASignature(rawRepresentation: quote.qeReportSignatureBytes)
        checks.record(
            .qeReportSignature,
            qeSignature.map { signature in
                chain.pckKey?.isValidSignature(signature, for: quote.qeReport.signedBytes) == true
            } == true,
            "the QE report signature does not verify under the PCK certificate's key")
        var hash = SHA256()
        quote.attestationKeyBytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        quote.qeAuthDataBytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        let binding = hash.finalize()
        typealias QELayout = TDXQuote.QEReport.Layout
        let reportData = quote.qeReport.slice(QELayout.reportData, QELayout.reportDataSize)
        checks.record(
            .qeReportDataBinding,
            binding.withUnsafeBytes { constantTimeEqual(reportData.prefix(32), $0) }
                && reportData.suffix(32).allSatisfy { $0 == 0 },
            "the QE report does not bind the attestation key: REPORTDATA is not SHA-256(attestation key ‖ QE auth "
                + "data) ‖ zeros")
        let attestationKey = chains.attestationKey(quote.attestationKeyBytes)
        let quoteSignature = try? P256.Signing.ECDSASignature(rawRepresentation: quote.signatureBytes)
        checks.record(
            .quoteSignature,
            quoteSignature.map { signature in
                attestationKey?.isValidSignature(signature, for: quote.signedBytes) == true
            } == true,
            "the quote signature does not verify under the attestation key: header or TD report was altered")

        var tcbStatus: String?
        var qeStatus: String?
        var advisories: [String] = []
        if let collateral {
            try evaluateCollateral(
                collateral, quote: quote, chain: chain, anchor: anchor, options: options, checks: &checks,
                warnings: &warnings, tcbStatus: &tcbStatus, qeStatus: &qeStatus, advisories: &advisories)
        } else {
            warnings.append("no collateral: revocation and TCB status were not evaluated")
        }
        checks.record(
            .signatureChainValid, checks.allPassed(Self.signatureChain),
            "a signature of the quote, the QE report or the PCK chain does not verify")
        return TDXVerificationResult(
            checks: checks, tcbStatus: tcbStatus, qeTCBStatus: qeStatus, advisoryIDs: advisories,
            claims: TDXClaims(quote: quote, pck: chain.pck, trustAnchor: anchor.name, simulated: anchor.simulated),
            warnings: warnings)
    }
}

extension Date {
    /// Whether the date lies within [notBefore, notAfter], exactly as ``AttestationCertificate/checkValidity(at:)``
    /// decides, without building its error.
    func isWithin(_ notBefore: Date, _ notAfter: Date) -> Bool { !(self < notBefore) && !(self > notAfter) }
}

extension AttestationCertificate {
    /// The reason ``checkValidity(at:)`` gives at `time`; empty when the certificate is valid then.
    func validityFailure(at time: Date) -> String {
        do {
            try checkValidity(at: time)
            return ""
        } catch {
            return error.reason
        }
    }
}

/// Bytes as a dictionary key, hashed and compared as one block rather than byte by byte.
struct ByteKey: Hashable, Sendable {
    let bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// A key that owns a copy of its bytes, so a cache does not keep the buffer they were cut from alive.
    func owned() -> ByteKey { ByteKey(ArraySlice(Array(bytes))) }

    static func == (a: ByteKey, b: ByteKey) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        guard !a.bytes.isEmpty else { return true }
        return a.bytes.withUnsafeBytes { x in
            b.bytes.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// PCK chains already parsed and checked. Looked up by a hash of the chain's first bytes and confirmed by
/// comparing the whole chain, so a hit costs a short hash and one comparison, not a digest of the chain.
final class TDXChainCache: Sendable {
    /// One checked chain; a class, so a cache hit hands out a reference rather than copies of three certificates.
    final class Entry: Sendable {
        let leaf: AttestationCertificate
        let intermediate: AttestationCertificate
        let pck: PCKExtensions?
        let pckKey: P256.Signing.PublicKey?
        /// Time-independent results: names, signatures, anchoring, the SGX extension.
        let checks: TDXCheckSet
        /// The root the chain was checked against (Intel's, or the installation's simulated one).
        let anchor: TDXVerifier.PinnedRoot

        init(
            leaf: AttestationCertificate, intermediate: AttestationCertificate, pck: PCKExtensions?,
            pckKey: P256.Signing.PublicKey?, checks: TDXCheckSet, anchor: TDXVerifier.PinnedRoot
        ) {
            self.anchor = anchor
            self.leaf = leaf
            self.intermediate = intermediate
            self.pck = pck
            self.pckKey = pckKey
            self.checks = checks
        }
    }

    private let entries = Mutex<[Int: [(chain: ByteKey, entry: Entry)]]>([:])
    private let keys = Mutex<[ByteKey: P256.Signing.PublicKey]>([:])

    /// The attestation key for its raw x ‖ y bytes. A quoting enclave keeps its key across quotes, and importing
    /// a key validates the point (a scalar multiplication), so keys are kept once imported.
    func attestationKey(_ raw: ArraySlice<UInt8>) -> P256.Signing.PublicKey? {
        if let known = keys.withLock({ $0[ByteKey(raw)] }) { return known }
        guard let key = try? P256.Signing.PublicKey(rawRepresentation: raw) else { return nil }
        keys.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[ByteKey(raw).owned()] = key
        }
        return key
    }

    /// The checked chain for the PEM bytes `chain`, from the cache or parsed and checked now against the root
    /// `selectRoot` chooses for the name the chain's CA gives its issuer. The cache belongs to one verifier, whose
    /// roots never change, so a chain always selects the same root.
    func entry(
        chain bytes: ArraySlice<UInt8>,
        selectRoot: (String?) throws(AttestationError) -> TDXVerifier.PinnedRoot
    ) throws(AttestationError) -> Entry {
        var hasher = Hasher()
        hasher.combine(bytes.count)
        bytes.prefix(256).withUnsafeBytes { hasher.combine(bytes: $0) }
        let key = hasher.finalize()
        let pem = ByteKey(bytes)
        let cached = entries.withLock { bucket in bucket[key]?.first(where: { $0.chain == pem })?.entry }
        if let cached { return cached }
        let chain: [AttestationCertificate]
        do {
            let ders = try PEMDocuments.certificates(in: String(decoding: bytes, as: UTF8.self))
            chain = try ders.map { (der: [UInt8]) throws(AttestationError) in try AttestationCertificate(der: der) }
        } catch {
            throw AttestationError(
                .malformedEvidence, "the quote's PCK certificate chain cannot be read: \(error.reason)")
        }
        guard chain.count == 3 else {
            throw AttestationError(
                .malformedEvidence,
                "the quote's PCK chain has \(chain.count) certificates; it must be leaf, CA and root")
        }
        let (leaf, intermediate, quoteRoot) = (chain[0], chain[1], chain[2])
        let anchor = try selectRoot(intermediate.issuerCommonName)
        let root = anchor.certificate
        var checks = TDXCheckSet()
        let namesOK = leaf.subjectCommonName == anchor.leafName
            && anchor.intermediateNames.contains(intermediate.subjectCommonName ?? "")
            && quoteRoot.subjectCommonName == root.subjectCommonName
        checks.record(
            .pckChainSignatures, namesOK,
            "the PCK chain's names are not leaf ← PCK Platform/Processor CA ← SGX Root CA"
                + (anchor.simulated ? " (cmk simulated)" : ""))
        for (certificate, issuer) in [(leaf, intermediate), (intermediate, quoteRoot)] {
            do {
                try certificate.verifySignature(issuedBy: issuer, requiredAlgorithm: .ecdsaWithSHA256)
                try certificate.checkCriticalExtensions()
            } catch {
                checks.record(.pckChainSignatures, false, error.reason)
            }
        }
        checks.record(
            .pckChainAnchoredToTrustedRoot, quoteRoot.fingerprint == root.fingerprint,
            "the quote's chain ends in '\(quoteRoot.subjectCommonName ?? "?")' \(Hex.encode(quoteRoot.fingerprint)), "
                + "not the pinned \(anchor.simulated ? "simulated SGX root (\(anchor.name))" : "Intel SGX Root CA")")
        if (try? intermediate.verifySignature(issuedBy: root, requiredAlgorithm: .ecdsaWithSHA256)) == nil {
            checks.record(
                .pckChainAnchoredToTrustedRoot, false,
                "the PCK CA is not signed by the pinned \(anchor.simulated ? "simulated SGX root" : "Intel SGX Root CA")")
        }
        var pck: PCKExtensions?
        do {
            pck = try PCKExtensions(certificate: leaf)
        } catch {
            checks.record(.pckChainSignatures, false, error.reason)
        }
        let entry = Entry(
            leaf: leaf, intermediate: intermediate, pck: pck,
            pckKey: try? P256.Signing.PublicKey(derRepresentation: leaf.subjectPublicKeyInfo), checks: checks,
            anchor: anchor)
        entries.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[key, default: []].append((pem.owned(), entry))
        }
        return entry
    }
}
