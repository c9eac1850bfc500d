public import Attestation
public import AttestationPolicy
import BinaryFormat
public import Foundation
public import SealedChannel

/// What one instance expects of a channel peer, from its own manifest: the peer's instance name and the policy the
/// peer's evidence must satisfy (measurements, TCB, debug, trusted roots, `host-data` / `mr-config-id: manifest`,
/// `report-data: nonce-and-key`).
public struct PeerExpectation: Sendable {
    public var instance: String
    public var policy: Policy

    public init(instance: String, policy: Policy) {
        self.instance = instance
        self.policy = policy
    }
}

/// The peer verifier over cmk's appraisal pipeline: verifies the peer's report to a trusted root and evaluates the
/// policy for the peer over its claims, with the channel binding as the nonce and the peer's Noise static key as the
/// bound key, and the manifest the peer presented as the manifest HOST_DATA / MRCONFIGID must be the digest of. Then
/// it reads the instance name and the permitted peers from that manifest.
///
/// Failures map to distinct codes: evidence that does not verify (`peer-evidence-invalid`), REPORT_DATA not bound to
/// this handshake (`peer-binding-mismatch`), another instance or a manifest that is not the one measured
/// (`peer-wrong-instance`), any other failed rule (`peer-policy-rejected`), a peer whose manifest does not list this
/// side (`peer-not-permitted`).
public struct AppraisingPeerVerifier: PeerEvidenceVerifier {
    public let appraiser: EvidenceAppraiser
    public let expectation: PeerExpectation
    /// TDX collateral (TCB Info, QE Identity, CRLs) to judge a TDX peer with.
    public let tdxCollateral: TDXCollateral?
    private let now: @Sendable () -> Date

    public init(
        appraiser: EvidenceAppraiser, expectation: PeerExpectation, tdxCollateral: TDXCollateral? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.appraiser = appraiser
        self.expectation = expectation
        self.tdxCollateral = tdxCollateral
        self.now = now
    }

    /// The part of an instance manifest a channel needs (the coordinator's `InstanceManifest`, canonical JSON).
    struct ManifestIdentity: Decodable {
        let name: String
        let channelPeers: [String]
    }

    public func verify(evidence bytes: [UInt8], binding: ChannelBinding) throws(SealedChannelError) -> VerifiedPeer {
        let evidence = try ChannelEvidence(bytes: bytes)
        guard binding.attesterName == expectation.instance else {
            throw SealedChannelError(
                .peerWrongInstance,
                "this channel's peer is \(binding.attesterName) but this side only expects \(expectation.instance)")
        }
        let presented: PresentedEvidence
        switch evidence.kind {
        case .sevSNP:
            presented = .snp(
                report: evidence.report, certificateTable: evidence.auxiliary.isEmpty ? nil : evidence.auxiliary,
                endorsement: nil, chain: [])
        case .tdx:
            presented = .tdx(quote: evidence.report, collateral: tdxCollateral)
        }
        let time = now()
        let context = AppraisalContext(
            evaluationTime: time, nonce: binding.nonce, boundKey: binding.staticKey, manifest: evidence.manifest,
            collectedAt: time)
        let input = appraiser.input(presented, revocation: expectation.policy.trust.crl, context: context)
        let appraisal = expectation.policy.evaluate(input)
        let claims: EvidenceClaims
        switch input.verification {
        case .success(let verified): claims = verified
        case .failure(let error):
            throw SealedChannelError(
                .peerEvidenceInvalid, "the peer's \(evidence.kind.name) evidence does not verify: \(error)")
        }
        let failed = Set(appraisal.failures.map(\.rule))
        func explain(_ rules: Set<String>) -> String {
            appraisal.failures.filter { rules.contains($0.rule) }
                .map { "\($0.rule): expected \($0.expected), got \($0.actual)" }.joined(separator: "; ")
        }
        // The binding is checked here whatever the policy says about REPORT_DATA.
        if failed.contains("freshness.report-data") || !binding.matches(reportData: claims.reportData) {
            throw SealedChannelError(
                .peerBindingMismatch,
                "the peer's REPORT_DATA is not bound to this handshake's hash and its static key: evidence from another "
                    + "session, or for another key")
        }
        let manifestRules: Set<String> = ["snp.host-data", "tdx.mr-config-id"]
        if !failed.isDisjoint(with: manifestRules) {
            throw SealedChannelError(
                .peerWrongInstance,
                "the manifest the peer presented is not the one it was launched with: \(explain(manifestRules))")
        }
        // The name in the manifest counts only when the evidence itself carries the manifest's digest.
        guard appraisal.outcomes.contains(where: { manifestRules.contains($0.rule) && $0.status == .pass }) else {
            throw SealedChannelError(
                .peerPolicyRejected,
                "the policy for \(expectation.instance) does not bind HOST_DATA / MRCONFIGID to the manifest, so the "
                    + "peer's name cannot be trusted; set host-data: manifest (or mr-config-id: manifest)")
        }
        let identity: ManifestIdentity
        do {
            identity = try JSONDecoder().decode(ManifestIdentity.self, from: Data(evidence.manifest))
        } catch {
            throw SealedChannelError(
                .peerEvidenceMalformed, "the peer's manifest is not an instance manifest: \(error)")
        }
        guard identity.name == expectation.instance else {
            throw SealedChannelError(
                .peerWrongInstance, "the peer's measured manifest names \(identity.name), not \(expectation.instance)")
        }
        if appraisal.verdict != .admit {
            throw SealedChannelError(
                .peerPolicyRejected,
                "the policy for \(expectation.instance) (\(expectation.policy.id)) rejects the peer: \(explain(failed))"
            )
        }
        let localName = binding.descriptor.name(of: binding.attesterRole.peer)
        guard identity.channelPeers.contains(localName) else {
            throw SealedChannelError(
                .peerNotPermitted,
                "\(identity.name)'s manifest does not permit a channel with \(localName) (peers: "
                    + "\(identity.channelPeers.joined(separator: ", ")))")
        }
        let measurement: [UInt8]
        switch claims {
        case .snp(let result): measurement = result.claims.measurement.bytes
        case .tdx(let result): measurement = result.claims.mrTD.bytes
        }
        return VerifiedPeer(
            instance: identity.name, evidenceType: claims.evidenceType, measurement: Hex.encode(measurement),
            reportData: claims.reportData, evidenceDigest: appraisal.evidenceDigest, simulated: claims.simulated)
    }
}
