import BinaryFormat
import Crypto
import SEVSNP
import SealedChannel

/// What this child knows about its own platform and launch, established by asking its platform once and checking the
/// answer itself (``establish(provider:manifest:instance:)``):
///
/// - the platform's report-signing key (the VCEK, or VLEK, public key): the certificate table comes from the host, so
///   the key in it is believed only because it verifies the signature over this child's own report, which carries
///   REPORT_DATA the agent chose at random just before. Only the firmware that runs this child can sign that.
/// - its own manifest: its own HOST_DATA must be SHA-256 of the manifest the host delivered; the manifest's name is
///   this child's name (and must agree with the one the agent was started with, if any).
struct GuestPlatformIdentity: Sendable {
    /// The VCEK / VLEK SubjectPublicKeyInfo (DER) and the key.
    let signingKeyInfo: [UInt8]
    let signingKey: P384.Signing.PublicKey
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
        guard evidence.kind == .sevSNP else {
            throw SealedChannelError(
                .unsupported,
                "sealed channels in cmk-guest need SEV-SNP evidence to check a peer; this child's provider "
                    + "\(provider.name) gives \(evidence.kind)")
        }
        let report: SNPReport
        do {
            report = try SNPReport(bytes: evidence.evidence)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "this child's own report cannot be read: \(error)")
        }
        let keyInfo = try SigningKeyInfo.extract(certificateTable: evidence.auxiliary)
        let key: P384.Signing.PublicKey
        do {
            key = try P384.Signing.PublicKey(derRepresentation: keyInfo)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "the platform's VCEK key is not a P-384 key: \(error)")
        }
        guard SigningKeyInfo.verify(report, with: key) else {
            throw SealedChannelError(
                .evidenceUnavailable,
                "this child's own report does not verify under the VCEK in the certificate table the host supplied: "
                    + "the table is not this platform's")
        }
        guard constantTimeEqual(report.hostData, Array(SHA256.hash(data: manifest))) else {
            throw SealedChannelError(
                .peerWrongInstance,
                "the manifest the host delivered is not the one this child was launched with (HOST_DATA differs)")
        }
        let identity: ManifestIdentity
        do {
            identity = try ManifestIdentity(json: manifest)
        } catch {
            throw SealedChannelError(.evidenceUnavailable, "this child's own manifest cannot be read: \(error)")
        }
        // The image's command line is the same for every instance (the measurement does not depend on the name), so
        // an agent usually does not know its name: the manifest, bound by HOST_DATA, tells it. A name it was given
        // (`--instance`, `cmk.instance=`) must agree.
        guard instance == "unnamed" || identity.name == instance else {
            throw SealedChannelError(
                .peerWrongInstance, "this child's manifest names \(identity.name), not \(instance)")
        }
        return GuestPlatformIdentity(
            signingKeyInfo: keyInfo, signingKey: key, manifest: manifest, identity: identity,
            simulated: provider.name.hasPrefix("simulated"))
    }
}

/// The VCEK (or VLEK) key from an SEV-SNP certificate table, and the report signature check.
enum SigningKeyInfo {
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

/// Produces this child's channel evidence: a report from its own provider whose REPORT_DATA is the binding, with the
/// certificate table and this child's manifest (whose digest its HOST_DATA carries).
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
        guard evidence.kind == .sevSNP else {
            throw SealedChannelError(.unsupported, "\(evidence.kind) evidence cannot be checked by a cmk-guest peer")
        }
        return ChannelEvidence(kind: .sevSNP, report: evidence.evidence, auxiliary: evidence.auxiliary, manifest: manifest)
            .encoded()
    }
}

/// The peer check cmk-guest runs itself (docs/channels.md, "What the child checks"): the peer's report must be signed
/// by this child's own platform key, carry this handshake's binding, have HOST_DATA = SHA-256 of the manifest it
/// presents, forbid debugging, and its manifest must name the expected peer and list this child among its peers.
struct GuestPeerVerifier: PeerEvidenceVerifier {
    let platform: GuestPlatformIdentity
    let expectedPeer: String

    func verify(evidence bytes: [UInt8], binding: ChannelBinding) throws(SealedChannelError) -> VerifiedPeer {
        let evidence = try ChannelEvidence(bytes: bytes)
        guard binding.attesterName == expectedPeer else {
            throw SealedChannelError(
                .peerWrongInstance, "this channel's peer is \(binding.attesterName), this child expects \(expectedPeer)")
        }
        guard evidence.kind == .sevSNP else {
            throw SealedChannelError(.peerEvidenceInvalid, "cmk-guest checks SEV-SNP peers only; this one sent TDX")
        }
        let report: SNPReport
        do {
            report = try SNPReport(bytes: evidence.report)
        } catch {
            throw SealedChannelError(.peerEvidenceMalformed, "the peer's report cannot be read: \(error)")
        }
        guard SigningKeyInfo.verify(report, with: platform.signingKey) else {
            throw SealedChannelError(
                .peerEvidenceInvalid,
                "the peer's report is not signed by this platform's VCEK (the key that signs this child's own reports)")
        }
        guard binding.matches(reportData: report.reportData) else {
            throw SealedChannelError(
                .peerBindingMismatch, "the peer's REPORT_DATA is not bound to this handshake and its static key")
        }
        guard constantTimeEqual(report.hostData, Array(SHA256.hash(data: evidence.manifest))) else {
            throw SealedChannelError(
                .peerWrongInstance, "the peer's HOST_DATA is not the digest of the manifest it presented")
        }
        guard !report.policy.debugAllowed else {
            throw SealedChannelError(.peerPolicyRejected, "the peer's guest policy allows debugging")
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
        guard identity.permits(platform.identity.name) else {
            throw SealedChannelError(
                .peerNotPermitted,
                "\(identity.name)'s manifest does not list \(platform.identity.name) as a channel or update peer")
        }
        return VerifiedPeer(
            instance: identity.name, evidenceType: "sev-snp", measurement: Hex.encode(report.measurement),
            reportData: report.reportData, evidenceDigest: Hex.encode(SHA256.hash(data: bytes)),
            simulated: platform.simulated)
    }
}
