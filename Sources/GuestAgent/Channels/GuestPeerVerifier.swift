import BinaryFormat
import Crypto
import SEVSNP
public import SealedChannel

/// What this child knows about its own platform and launch, established by asking its platform once and checking the
/// answer itself (``establish(provider:manifest:instance:)``):
///
/// - the platform's report-signing key: on SEV-SNP the VCEK public key, on TDX the PCK key (which signs the quoting
///   enclave's report that certifies the attestation key). The certificates come from the host, so the key is
///   believed only because it verifies the signature chain over this child's own report or quote, which carries
///   REPORT_DATA the agent chose at random just before. Only the firmware (or quoting enclave) of the platform that
///   runs this child can sign that. The certificate chain above the key (ARK → ASK → VCEK, or root → PCK Platform CA
///   → PCK) is checked too, and its root kept: a peer must chain to the same root.
/// - its own manifest: its own HOST_DATA (SHA-256) or MRCONFIGID (SHA-384) must be the digest of the manifest the
///   host delivered; the manifest's name is this child's name (and must agree with the one the agent was started
///   with, if any).
struct GuestPlatformIdentity: Sendable {
    /// SEV-SNP or TDX: a peer must present evidence of the same kind.
    let kind: ChannelEvidence.Kind
    /// The VCEK's or the PCK certificate's SubjectPublicKeyInfo (DER).
    let signingKeyInfo: [UInt8]
    /// SEV-SNP: the VCEK as a key.
    let snpKey: P384.Signing.PublicKey?
    /// The root certificate (DER) of this platform's chain: the ARK, or Intel's (here: the simulator's) root CA.
    let root: [UInt8]
    /// TDX: the PCK chain's PEM text of this child's own quote, checked once here.
    let pckChainPEM: [UInt8]
    let manifest: [UInt8]
    let identity: ManifestIdentity
    /// The evidence comes from the simulated platform: nothing here says anything about hardware.
    let simulated: Bool

    static func establish(
        provider: any EvidenceProvider, manifest: [UInt8], instance: String
    ) throws(SealedChannelError) -> GuestPlatformIdentity {
        var generator = SystemRandomNumberGenerator()
        let reportData = (0..<reportDataLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let evidence: Evidence
        do throws(GuestAgentError) {
            evidence = try provider.evidence(reportData: reportData)
            try EvidenceLayout.check(evidence, carries: reportData)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "this child's own evidence: \(error.reason)")
        }
        let identity: ManifestIdentity
        do {
            identity = try ManifestIdentity(json: manifest)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "this child's own manifest cannot be read: \(error)")
        }
        let kind: ChannelEvidence.Kind
        let keyInfo: [UInt8]
        var snpKey: P384.Signing.PublicKey?
        let root: [UInt8]
        var pckChainPEM: [UInt8] = []
        switch evidence.kind {
        case .sevSNP:
            let report: SNPReport
            do {
                report = try SNPReport(bytes: evidence.evidence)
            } catch {
                throw SealedChannelError(.evidenceUnavailable, "this child's own report cannot be read: \(error)")
            }
            let chain = try SigningKeyInfo.chain(certificateTable: evidence.auxiliary)
            keyInfo = chain.vcekKeyInfo
            root = chain.ark
            let key: P384.Signing.PublicKey
            do {
                key = try P384.Signing.PublicKey(derRepresentation: keyInfo)
            } catch {
                throw SealedChannelError(.evidenceUnavailable, "the platform's VCEK key is not a P-384 key: \(error)")
            }
            guard SigningKeyInfo.verify(report, with: key) else {
                throw SealedChannelError(
                    .evidenceUnavailable,
                    "this child's own report does not verify under the VCEK in the certificate table the host "
                        + "supplied: the table is not this platform's")
            }
            guard constantTimeEqual(report.hostData, Array(SHA256.hash(data: manifest))) else {
                throw SealedChannelError(
                    .peerWrongInstance,
                    "the manifest the host delivered is not the one this child was launched with (HOST_DATA differs)")
            }
            kind = .sevSNP
            snpKey = key
        case .tdx:
            let quote: GuestTDXQuote
            let verified: (pckKeyInfo: [UInt8], root: [UInt8])
            do throws(GuestEvidenceError) {
                quote = try GuestTDXQuote(bytes: evidence.evidence)
                verified = try quote.verifySignatures()
            } catch {
                throw SealedChannelError(.evidenceUnavailable, "this child's own TDX quote: \(error)")
            }
            guard constantTimeEqual(quote.mrConfigID, Array(SHA384.hash(data: manifest))) else {
                throw SealedChannelError(
                    .peerWrongInstance,
                    "the manifest the host delivered is not the one this child was launched with (MRCONFIGID differs)")
            }
            kind = .tdx
            keyInfo = verified.pckKeyInfo
            root = verified.root
            pckChainPEM = quote.pckChainBytes
        default:
            throw SealedChannelError(
                .unsupported,
                "sealed channels in cmk-guest need SEV-SNP or TDX evidence; this child's provider \(provider.name) "
                    + "gives \(evidence.kind)")
        }
        // The image's command line is the same for every instance (the measurement does not depend on the name), so
        // an agent usually does not know its name: the manifest, bound by HOST_DATA / MRCONFIGID, tells it. A name it
        // was given (`--instance`, `cmk.instance=`) must agree.
        guard instance == "unnamed" || identity.name == instance else {
            throw SealedChannelError(
                .peerWrongInstance, "this child's manifest names \(identity.name), not \(instance)")
        }
        return GuestPlatformIdentity(
            kind: kind, signingKeyInfo: keyInfo, snpKey: snpKey, root: root, pckChainPEM: pckChainPEM,
            manifest: manifest, identity: identity, simulated: provider.name.hasPrefix("simulated"))
    }
}

/// The VCEK (or VLEK) key from an SEV-SNP certificate table, and the report signature check.
enum SigningKeyInfo {
    /// The VCEK, ASK and ARK from the table; checks ARK → ASK → VCEK (RSASSA-PSS, SHA-384) and that the ARK is
    /// self-signed. Returns the VCEK's SubjectPublicKeyInfo and the ARK. A table without the ASK and ARK, or with a
    /// VLEK only (whose ASVK chain the child does not check), fails closed.
    static func chain(certificateTable: [UInt8]) throws(SealedChannelError) -> (vcekKeyInfo: [UInt8], ark: [UInt8]) {
        let table: SNPCertificateTable
        do {
            table = try SNPCertificateTable(bytes: certificateTable)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "the certificate table cannot be read: \(error)")
        }
        func entry(_ guid: String, _ name: String) throws(SealedChannelError) -> [UInt8] {
            guard let found = table.entries.first(where: { $0.guid == guid }) else {
                throw SealedChannelError(
                    .evidenceUnavailable,
                    "the certificate table holds no \(name) (the child checks the VCEK's chain up to the ARK)")
            }
            return found.data
        }
        let chain = [
            try entry(SNPCertificateTable.GUID.vcek, "VCEK"), try entry(SNPCertificateTable.GUID.ask, "ASK"),
            try entry(SNPCertificateTable.GUID.ark, "ARK"),
        ]
        do throws(GuestEvidenceError) {
            let keyInfo = try GuestCertificate.verifyChain(chain, names: ["VCEK", "ASK", "ARK"])
            return (keyInfo, chain[2])
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "this platform's certificate chain: \(error)")
        }
    }

    static func extract(certificateTable: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        let table: SNPCertificateTable
        do {
            table = try SNPCertificateTable(bytes: certificateTable)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "the certificate table cannot be read: \(error)")
        }
        guard
            let entry = table.entries.first(where: {
                $0.guid == SNPCertificateTable.GUID.vcek || $0.guid == SNPCertificateTable.GUID.vlek
            })
        else {
            throw SealedChannelError(
                .evidenceUnavailable, "the certificate table holds no VCEK or VLEK (the agent needs the signing key)")
        }
        do {
            return try DERCertificate.subjectPublicKeyInfo(entry.data)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "the VCEK certificate cannot be read: \(error)")
        }
    }

    /// ECDSA P-384 with SHA-384 over bytes [0, 0x2A0) of the report.
    static func verify(_ report: SNPReport, with key: P384.Signing.PublicKey) -> Bool {
        guard report.signatureAlgorithm == 1,
            let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.rawSignature)
        else { return false }
        return key.isValidSignature(signature, for: report.signedBytes)
    }
}

/// Just enough DER to find an X.509 certificate's SubjectPublicKeyInfo (RFC 5280, section 4.1): Certificate ::=
/// SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, ... } ... }. Nothing else of the certificate is trusted or used.
enum DERCertificate {
    struct Element {
        let tag: UInt8
        let whole: Range<Int>
        let content: Range<Int>
    }

    static func element(_ bytes: [UInt8], at start: Int, end: Int) throws(BinaryFormatError) -> Element {
        guard start + 2 <= end else { throw BinaryFormatError(.truncated, field: "DER header", offset: start, "") }
        let tag = bytes[start]
        var index = start + 1
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count >= 1, count <= 3, index + count <= end else {
                throw BinaryFormatError(.invalidValue, field: "DER length", offset: index, "\(count) length bytes")
            }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard index + length <= end else { throw BinaryFormatError(.truncated, field: "DER content", offset: index, "") }
        return Element(tag: tag, whole: start..<(index + length), content: index..<(index + length))
    }

    static func subjectPublicKeyInfo(_ der: [UInt8]) throws(BinaryFormatError) -> [UInt8] {
        let certificate = try element(der, at: 0, end: der.count)
        guard certificate.tag == 0x30 else {
            throw BinaryFormatError(.invalidValue, field: "Certificate", offset: 0, "not a SEQUENCE")
        }
        let tbs = try element(der, at: certificate.content.lowerBound, end: certificate.content.upperBound)
        guard tbs.tag == 0x30 else {
            throw BinaryFormatError(.invalidValue, field: "tbsCertificate", offset: tbs.whole.lowerBound, "not a SEQUENCE")
        }
        var position = tbs.content.lowerBound
        var first = try element(der, at: position, end: tbs.content.upperBound)
        if first.tag == 0xA0 {
            position = first.whole.upperBound
            first = try element(der, at: position, end: tbs.content.upperBound)
        }
        // serialNumber, signature, issuer, validity, subject, then subjectPublicKeyInfo.
        for _ in 0..<5 {
            position = try element(der, at: position, end: tbs.content.upperBound).whole.upperBound
        }
        let info = try element(der, at: position, end: tbs.content.upperBound)
        guard info.tag == 0x30 else {
            throw BinaryFormatError(
                .invalidValue, field: "subjectPublicKeyInfo", offset: info.whole.lowerBound, "not a SEQUENCE")
        }
        return Array(der[info.whole])
    }
}

/// Produces this child's channel evidence: a report (SEV-SNP, with the certificate table) or a quote (TDX, which
/// carries its PCK chain) from its own provider whose REPORT_DATA is the binding, with this child's manifest (whose
/// digest its HOST_DATA / MRCONFIGID carries).
struct GuestChannelAttester: ChannelAttester, @unchecked Sendable {
    // The provider is used from the agent's one thread only.
    let provider: any EvidenceProvider
    let manifest: [UInt8]

    func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] {
        let evidence: Evidence
        do throws(GuestAgentError) {
            evidence = try provider.evidence(reportData: binding.reportData)
            try EvidenceLayout.check(evidence, carries: binding.reportData)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "\(provider.name): \(error.reason)")
        }
        switch evidence.kind {
        case .sevSNP:
            return ChannelEvidence(
                kind: .sevSNP, report: evidence.evidence, auxiliary: evidence.auxiliary, manifest: manifest
            ).encoded()
        case .tdx:
            // The CCEL event log stays home: the peer checks MRTD and MRCONFIGID, not the RTMRs.
            return ChannelEvidence(kind: .tdx, report: evidence.evidence, manifest: manifest).encoded()
        default:
            throw SealedChannelError(.unsupported, "\(evidence.kind) evidence cannot be checked by a cmk-guest peer")
        }
    }
}

/// The peer check cmk-guest runs itself (docs/channels.md, "What the child checks"): the peer's evidence must be of
/// this child's own platform kind and signed by this child's own platform key (the VCEK; on TDX the PCK key, through
/// a quote whose whole signature chain holds up to the same root), carry this handshake's binding, have HOST_DATA /
/// MRCONFIGID = the digest of the manifest it presents, forbid debugging, carry a measurement (MEASUREMENT / MRTD) the
/// child's manifest pins for it if it pins any, and its manifest must name the expected peer and list this child among
/// its peers.
struct GuestPeerVerifier: PeerEvidenceVerifier {
    let platform: GuestPlatformIdentity
    let expectedPeer: String

    func verify(evidence bytes: [UInt8], binding: ChannelBinding) throws(SealedChannelError) -> VerifiedPeer {
        let evidence = try ChannelEvidence(bytes: bytes)
        guard binding.attesterName == expectedPeer else {
            throw SealedChannelError(
                .peerWrongInstance, "this channel's peer is \(binding.attesterName), this child expects \(expectedPeer)")
        }
        guard evidence.kind == platform.kind else {
            throw SealedChannelError(
                .peerEvidenceInvalid,
                "the peer sent \(evidence.kind) evidence; this child runs on \(platform.kind) and checks peers on its "
                    + "own platform only")
        }
        let checked: (reportData: [UInt8], digestMatches: Bool, debug: Bool, measurement: [UInt8], type: String)
        switch evidence.kind {
        case .sevSNP:
            let report: SNPReport
            do {
                report = try SNPReport(bytes: evidence.report)
            } catch {
                throw SealedChannelError(.peerEvidenceMalformed, "the peer's report cannot be read: \(error)")
            }
            guard let key = platform.snpKey, SigningKeyInfo.verify(report, with: key) else {
                throw SealedChannelError(
                    .peerEvidenceInvalid,
                    "the peer's report is not signed by this platform's VCEK (the key that signs this child's own reports)")
            }
            checked = (
                report.reportData, constantTimeEqual(report.hostData, Array(SHA256.hash(data: evidence.manifest))),
                report.policy.debugAllowed, report.measurement, "sev-snp"
            )
        case .tdx:
            let quote: GuestTDXQuote
            do throws(GuestEvidenceError) {
                quote = try GuestTDXQuote(bytes: evidence.report)
            } catch {
                throw SealedChannelError(.peerEvidenceMalformed, "the peer's TDX quote cannot be read: \(error)")
            }
            let verified: (pckKeyInfo: [UInt8], root: [UInt8])
            do throws(GuestEvidenceError) {
                verified = try quote.verifySignatures(
                    known: (platform.pckChainPEM, platform.signingKeyInfo, platform.root))
            } catch {
                throw SealedChannelError(.peerEvidenceInvalid, "the peer's TDX quote does not verify: \(error)")
            }
            guard constantTimeEqual(verified.root, platform.root) else {
                throw SealedChannelError(
                    .peerEvidenceInvalid, "the peer's PCK chain ends in another root CA than this child's own")
            }
            guard constantTimeEqual(verified.pckKeyInfo, platform.signingKeyInfo) else {
                throw SealedChannelError(
                    .peerEvidenceInvalid,
                    "the peer's quote is certified by another PCK key than this platform's (the key that certifies "
                        + "this child's own quotes)")
            }
            checked = (
                Array(quote.reportData), constantTimeEqual(quote.mrConfigID, Array(SHA384.hash(data: evidence.manifest))),
                quote.isDebug, Array(quote.mrTD), "tdx"
            )
        }
        guard binding.matches(reportData: checked.reportData) else {
            throw SealedChannelError(
                .peerBindingMismatch, "the peer's REPORT_DATA is not bound to this handshake and its static key")
        }
        guard checked.digestMatches else {
            throw SealedChannelError(
                .peerWrongInstance,
                "the peer's \(evidence.kind == .tdx ? "MRCONFIGID" : "HOST_DATA") is not the digest of the manifest "
                    + "it presented")
        }
        guard !checked.debug else {
            throw SealedChannelError(
                .peerPolicyRejected,
                evidence.kind == .tdx ? "the peer is a debug TD (TDATTRIBUTES.DEBUG)" : "the peer's guest policy allows debugging")
        }
        let identity: ManifestIdentity
        do {
            identity = try ManifestIdentity(json: evidence.manifest)
        } catch {
            throw SealedChannelError(.peerEvidenceMalformed, "the peer's manifest cannot be read: \(error)")
        }
        guard identity.name == expectedPeer else {
            throw SealedChannelError(.peerWrongInstance, "the peer's manifest names \(identity.name), not \(expectedPeer)")
        }
        if let pinned = platform.identity.pinnedMeasurements(for: identity) {
            guard pinned.contains(where: { constantTimeEqual($0, checked.measurement) }) else {
                throw SealedChannelError(
                    .peerMeasurementMismatch,
                    "the peer's \(evidence.kind == .tdx ? "MRTD" : "MEASUREMENT") \(Hex.encode(checked.measurement)) "
                        + "is not one this child's manifest pins for \(identity.name) (peerMeasurements)")
            }
        }
        guard identity.permits(platform.identity.name) else {
            throw SealedChannelError(
                .peerNotPermitted,
                "\(identity.name)'s manifest does not list \(platform.identity.name) as a channel or update peer")
        }
        return VerifiedPeer(
            instance: identity.name, evidenceType: checked.type, measurement: Hex.encode(checked.measurement),
            reportData: checked.reportData, evidenceDigest: Hex.encode(SHA256.hash(data: bytes)),
            simulated: platform.simulated)
    }
}

/// The child's side of an attested channel, for running it in process (cmk-bench measures the handshake with it):
/// this child's platform identity, established as the agent does, with the attester and verifier the agent uses.
public struct GuestChannelParty {
    let platform: GuestPlatformIdentity
    let provider: any EvidenceProvider

    /// Asks `provider` once and checks the answer, exactly as the agent does on its first `channelOpen`.
    public init(provider: any EvidenceProvider, manifest: [UInt8]) throws(SealedChannelError) {
        self.provider = provider
        platform = try GuestPlatformIdentity.establish(provider: provider, manifest: manifest, instance: "unnamed")
    }

    /// This child's name, from its manifest.
    public var name: String { platform.identity.name }
    /// Produces this child's evidence for a handshake.
    public var attester: any ChannelAttester { GuestChannelAttester(provider: provider, manifest: platform.manifest) }
    /// Checks a peer's evidence as the agent does.
    public func verifier(expecting peer: String) -> any PeerEvidenceVerifier {
        GuestPeerVerifier(platform: platform, expectedPeer: peer)
    }
}
