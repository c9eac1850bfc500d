import Attestation
import AttestationPolicy
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import PlatformSimulator
import Testing

@Suite("Policies over simulated TDX evidence: tdx-production never admits it, development-tdx does")
struct SimulatedTDXPolicyTests {
    typealias Session = SimulatedEvidencePolicyTests.Session

    /// Evidence as a simulated TD presents it: REPORTDATA binds the session's nonce and key, MRCONFIGID is the
    /// SHA-384 of the manifest the coordinator launched it with; the collateral is the simulated platform's.
    static func evidence(_ session: Session, manifest: [UInt8]? = nil) throws -> PresentedEvidence {
        let module = try SimulatedTDXFixture.platform().module
        let launch = try module.launch(
            try SimulatedTDXFixture.launchInputs(mrConfigID: Array(SHA384.hash(data: manifest ?? session.manifest))))
        let quote = try launch.quote(reportData: ReportData.binding(nonce: session.nonce, publicKey: session.key))
        return .tdx(quote: quote, collateral: try module.collateral())
    }

    static func status(_ appraisal: Appraisal, _ rule: String) -> RuleStatus? {
        appraisal.outcomes.first { $0.rule == rule }?.status
    }

    @Test("tdx-production rejects simulated evidence: trust.root fails, trust.simulated warns")
    func productionRejects() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedTDXFixture.storeWithSimulatedRoot())
        let appraisal = appraiser.appraise(
            try Self.evidence(session), policy: try SimulatedEvidencePolicyTests.policy("tdx-production"),
            context: session.context)
        #expect(appraisal.verdict == .reject)
        #expect(appraisal.simulated)
        #expect(Self.status(appraisal, "evidence.verified") == .pass)
        #expect(Self.status(appraisal, "trust.root") == .fail)
        #expect(Self.status(appraisal, "trust.simulated") == .warn)
        #expect(Self.status(appraisal, "tdx.mrtd") == .fail)
        let root = try #require(appraisal.outcomes.first { $0.rule == "trust.root" })
        #expect(root.actual == "simulated-intel")
        #expect(appraisal.handover.isEmpty)
    }

    @Test("development-tdx admits simulated evidence bound to the nonce, the key and the manifest, and says simulated")
    func developmentAdmits() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedTDXFixture.storeWithSimulatedRoot())
        let policy = try SimulatedEvidencePolicyTests.policy("development-tdx")
        let appraisal = appraiser.appraise(try Self.evidence(session), policy: policy, context: session.context)
        #expect(appraisal.verdict == .admit, "\(appraisal.failures)")
        #expect(appraisal.simulated)
        for rule in [
            "evidence.verified", "trust.root", "freshness.report-data", "tdx.mr-config-id", "tdx.debug",
            "tdx.tcb-status", "trust.revocation",
        ] {
            #expect(Self.status(appraisal, rule) == .pass, "\(rule)")
        }
        #expect(Self.status(appraisal, "trust.simulated") == .warn)

        // Another manifest, another nonce: rejected, each by its own rule.
        let otherManifest = appraiser.appraise(
            try Self.evidence(session, manifest: Array("another manifest".utf8)), policy: policy,
            context: session.context)
        #expect(otherManifest.verdict == .reject && Self.status(otherManifest, "tdx.mr-config-id") == .fail)
        let stale = appraiser.appraise(try Self.evidence(Session()), policy: policy, context: session.context)
        #expect(stale.verdict == .reject && Self.status(stale, "freshness.report-data") == .fail)
        // Without the simulated folder, the same evidence does not even verify.
        let pinnedOnly = EvidenceAppraiser(
            trustAnchors: try TrustAnchorStore(directory: SharedVectors.attestationDirectory))
        let unverified = pinnedOnly.appraise(try Self.evidence(session), policy: policy, context: session.context)
        #expect(unverified.verdict == .reject && Self.status(unverified, "evidence.verified") == .fail)
    }
}
