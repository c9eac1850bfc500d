import Attestation
import AttestationPolicy
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import PlatformSimulator
import SEVSNP
import Testing

@Suite("Policies over simulated evidence: production never admits it, development does")
struct SimulatedEvidencePolicyTests {
    struct Session {
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let manifest = Array(#"{"instance":"dev-1","image":"debian-cloud","vcpus":2}"#.utf8)
        let now = Date()

        var context: AppraisalContext {
            AppraisalContext(evaluationTime: now, nonce: nonce, boundKey: key, manifest: manifest, collectedAt: now)
        }
    }

    static func policy(_ name: String) throws -> Policy {
        try PolicyLoader().load(path: SharedVectors.repositoryRoot.appendingPathComponent("policies/\(name).yaml").path)
    }

    /// Evidence as a simulated child presents it: REPORT_DATA binds the session's nonce and key, HOST_DATA is the
    /// SHA-256 of the manifest the coordinator launched it with.
    static func evidence(_ session: Session, guestPolicy: UInt64 = 0x30000) throws -> PresentedEvidence {
        let inputs = try SimulatedPlatformFixture.launchInputs(
            guestPolicy: guestPolicy, hostData: Array(SHA256.hash(data: session.manifest)))
        let launch = try SimulatedPlatformFixture.platform().processor.launch(inputs)
        let report = try launch.attestationReport(
            reportData: ReportData.binding(nonce: session.nonce, publicKey: session.key), vmpl: 0)
        return .snp(report: report, certificateTable: launch.certificateTable, endorsement: nil, chain: [])
    }

    static func status(_ appraisal: Appraisal, _ rule: String) -> RuleStatus? {
        appraisal.outcomes.first { $0.rule == rule }?.status
    }

    @Test("sev-snp-production rejects simulated evidence: trust.root fails, trust.simulated warns")
    func productionRejects() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let appraisal = appraiser.appraise(
            try Self.evidence(session), policy: try Self.policy("sev-snp-production"), context: session.context)
        #expect(appraisal.verdict == .reject)
        #expect(appraisal.simulated)
        #expect(Self.status(appraisal, "evidence.verified") == .pass)
        #expect(Self.status(appraisal, "trust.root") == .fail)
        #expect(Self.status(appraisal, "trust.simulated") == .warn)
        let root = try #require(appraisal.outcomes.first { $0.rule == "trust.root" })
        #expect(root.actual == "simulated-amd")
        #expect(root.hint?.contains("simulated") == true)
        #expect(appraisal.handover.isEmpty)
    }

    @Test("development admits simulated evidence bound to the nonce, the key and the manifest, and says simulated")
    func developmentAdmits() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let policy = try Self.policy("development")
        let appraisal = appraiser.appraise(try Self.evidence(session), policy: policy, context: session.context)
        #expect(appraisal.verdict == .admit, "\(appraisal.failures)")
        #expect(appraisal.simulated)
        for rule in [
            "evidence.verified", "trust.root", "freshness.report-data", "snp.host-data", "snp.guest-policy.debug",
            "snp.guest-policy.migration-agent",
        ] {
            #expect(Self.status(appraisal, rule) == .pass, "\(rule)")
        }
        #expect(Self.status(appraisal, "trust.simulated") == .warn)
        #expect(Self.status(appraisal, "trust.revocation") == .warn)
        #expect(appraisal.trustVector.status == .warning)
    }

    @Test("development still rejects a debuggable guest, a stale nonce and another manifest")
    func developmentStillChecks() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let policy = try Self.policy("development")
        let debug = appraiser.appraise(
            try Self.evidence(session, guestPolicy: 0xB0000), policy: policy, context: session.context)
        #expect(debug.failures.map(\.rule) == ["snp.guest-policy.debug"])
        let evidence = try Self.evidence(session)
        var stale = session.context
        stale.nonce = [9, 9, 9]
        #expect(
            appraiser.appraise(evidence, policy: policy, context: stale).failures.map(\.rule) == [
                "freshness.report-data"
            ])
        var otherManifest = session.context
        otherManifest.manifest = Array("another manifest".utf8)
        #expect(
            appraiser.appraise(evidence, policy: policy, context: otherManifest).failures.map(\.rule) == [
                "snp.host-data"
            ])
    }

    @Test("without the simulated folder even the development policy rejects: the root is not loaded")
    func developmentNeedsTheSimulatedFolder() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(
            trustAnchors: try TrustAnchorStore(directory: SharedVectors.attestationDirectory))
        let appraisal = appraiser.appraise(
            try Self.evidence(session), policy: try Self.policy("development"), context: session.context)
        #expect(appraisal.verdict == .reject)
        #expect(Self.status(appraisal, "evidence.verified") == .fail)
        #expect(appraisal.outcomes.first { $0.rule == "evidence.verified" }?.actual.hasPrefix("untrusted-root") == true)
    }
}
