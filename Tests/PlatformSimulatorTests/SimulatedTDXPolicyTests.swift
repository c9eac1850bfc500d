import Attestation
import AttestationPolicy
import BinaryFormat
import CMKTesting
import Crypto
import EventLog
import Foundation
import GuestProtocol
import PlatformSimulator
import Testing

@Suite("Policies over simulated TDX evidence: tdx-production never admits it, development-tdx does")
struct SimulatedTDXPolicyTests {
    typealias Session = SimulatedEvidencePolicyTests.Session

    /// Evidence as a simulated TD presents it: REPORTDATA binds the session's nonce and key, MRCONFIGID is the
    /// SHA-384 of the manifest the coordinator launched it with; the collateral is the simulated platform's.
    /// `eventLog` rewrites the CCEL the simulated TD hands over (nil: none is presented).
    static func evidence(
        _ session: Session, manifest: [UInt8]? = nil, initrd: [UInt8]? = nil,
        eventLog: (([UInt8]) -> [UInt8]?) = { $0 }
    ) throws -> PresentedEvidence {
        let module = try SimulatedTDXFixture.platform().module
        let launch = try module.launch(
            try SimulatedTDXFixture.launchInputs(
                mrConfigID: Array(SHA384.hash(data: manifest ?? session.manifest)), initrd: initrd))
        let quote = try launch.quote(reportData: ReportData.binding(nonce: session.nonce, publicKey: session.key))
        return .tdx(quote: quote, collateral: try module.collateral(), eventLog: eventLog(launch.eventLog))
    }

    /// The log a launch with another initrd hands over: well formed, from another boot.
    static func foreignLog() throws -> [UInt8] {
        let module = try SimulatedTDXFixture.platform().module
        return try module.launch(try SimulatedTDXFixture.launchInputs(initrd: Array("another initrd".utf8))).eventLog
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

    @Test("tdx.event-log: the TD's CCEL must replay to its quote's RTMRs; missing, edited, truncated or foreign logs fail")
    func eventLogReplay() throws {
        let session = Session()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedTDXFixture.storeWithSimulatedRoot())
        let required = try SimulatedEvidencePolicyTests.policy("development-tdx")
        #expect(required.tdx?.eventLog == .required)

        let genuine = appraiser.appraise(try Self.evidence(session), policy: required, context: session.context)
        #expect(genuine.verdict == .admit, "\(genuine.failures)")
        let passed = try #require(genuine.outcomes.first { $0.rule == "tdx.event-log" })
        #expect(passed.status == .pass && passed.actual.contains("measured events replay to RTMR0–3"))

        // The last measured event's SHA-384 digest, flipped in place: still a well-formed log, another boot.
        let edited: ([UInt8]) -> [UInt8]? = { log in
            guard let parsed = try? TCGEventLog(bytes: log), let event = parsed.events.last(where: \.isMeasured),
                let digest = event.digests.first(where: { $0.algorithm == .sha384 })?.digest.bytes,
                let start = Self.find(digest, in: event.bytes)
            else { return nil }
            var copy = log
            copy[event.offset + start] ^= 0x01
            return copy
        }
        let cases: [(String, ([UInt8]) -> [UInt8]?, String)] = [
            ("missing", { _ in nil }, "no event log presented"),
            ("edited", edited, "RTMR"),
            ("truncated", { Array($0.prefix($0.count / 2)) }, "cannot be replayed"),
            ("foreign", { _ in try? Self.foreignLog() }, "RTMR"),
            ("not a log", { _ in [UInt8](repeating: 0xAB, count: 64) }, "cannot be replayed"),
        ]
        for (name, rewrite, actual) in cases {
            let appraisal = appraiser.appraise(
                try Self.evidence(session, eventLog: rewrite), policy: required, context: session.context)
            let outcome = try #require(appraisal.outcomes.first { $0.rule == "tdx.event-log" }, "\(name)")
            #expect(appraisal.verdict == .reject, "\(name)")
            #expect(outcome.status == .fail, "\(name)")
            #expect(outcome.actual.contains(actual), "\(name): \(outcome.actual)")
            // Only the event-log rule fails: the quote itself is genuine and bound to this session.
            #expect(appraisal.failures.map(\.rule) == ["tdx.event-log"], "\(name)")
        }

        // if-present (the default): a missing log is not checked, a presented one must still replay.
        let source = SharedVectors.repositoryRoot.appendingPathComponent("policies/development-tdx.yaml")
        let lenient = try PolicyLoader().load(
            text: try String(contentsOf: source, encoding: .utf8)
                .replacingOccurrences(of: "event-log: required", with: "event-log: if-present"))
        #expect(lenient.tdx?.eventLog == .ifPresent)
        let absent = appraiser.appraise(
            try Self.evidence(session, eventLog: { _ in nil }), policy: lenient, context: session.context)
        #expect(absent.verdict == .admit && Self.status(absent, "tdx.event-log") == .notChecked)
        let foreign = appraiser.appraise(
            try Self.evidence(session, eventLog: { _ in try? Self.foreignLog() }), policy: lenient, context: session.context)
        #expect(foreign.verdict == .reject && Self.status(foreign, "tdx.event-log") == .fail)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }
}
