import Attestation
import AttestationPolicy
import CMKTesting
import Crypto
import Foundation
import GuestImage
import GuestProtocol
import PlatformSimulator
import Testing

/// The workload policies pin their profile's image by reference: a child booted from the database image passes the
/// database policy and fails the realtime one, and the other way round; a changed initramfs byte fails both.
@Suite("Workload policies over simulated children built from guest-kernels/", .serialized)
struct WorkloadPolicyTests {
    struct Built {
        let images: URL
        let profiles: [String: GuestImage]
    }

    /// The database and realtime images, built once into a temporary CMK_IMAGES folder.
    static let built: Result<Built, any Error> = Result {
        let images = try SimulatedPlatformFixture.temporaryFolder("images")
        let catalog = GuestProfileCatalog(directory: SharedVectors.repositoryRoot.appendingPathComponent("guest-kernels"))
        var profiles: [String: GuestImage] = [:]
        let semaphore = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task {
            do {
                for name in ["database", "realtime"] {
                    box.images[name] = try await GuestImage.build(
                        profile: try catalog.profile(named: name), cacheDirectory: SharedVectors.cacheDirectory,
                        output: images.appendingPathComponent(name))
                }
            } catch { box.error = error }
            semaphore.signal()
        }
        semaphore.wait()
        if let error = box.error { throw error }
        profiles = box.images
        return Built(images: images, profiles: profiles)
    }

    final class ResultBox: @unchecked Sendable {
        var images: [String: GuestImage] = [:]
        var error: (any Error)?
    }

    static func policy(_ name: String, images: URL) throws -> Policy {
        try PolicyLoader(environment: ["CMK_IMAGES": images.path])
            .load(path: SharedVectors.repositoryRoot.appendingPathComponent("policies/\(name).yaml").path)
    }

    /// What a child booted from `image` presents, bound to a session's nonce, key and manifest.
    static func evidence(_ image: GuestImage, initrdPatch: Bool = false, nonce: [UInt8], key: [UInt8], manifest: [UInt8]) throws
        -> PresentedEvidence
    {
        var initrd = try SimulatedPlatformFixture.bytes(image.initrd.path)
        if initrdPatch { initrd[initrd.count / 2] ^= 0x01 }
        let launch = try SimulatedPlatformFixture.platform().processor.launch(.init(
            firmware: try SimulatedPlatformFixture.bytes("/usr/share/ovmf/OVMF.fd"),
            kernel: try SimulatedPlatformFixture.bytes(image.kernel.path), initrd: initrd, cmdline: image.commandLine,
            vcpus: image.vcpus, vcpuType: "EPYC-v4", guestFeatures: 0x1, guestPolicy: 0x30000,
            hostData: Array(SHA256.hash(data: manifest))))
        let report = try launch.attestationReport(reportData: ReportData.binding(nonce: nonce, publicKey: key), vmpl: 0)
        return .snp(report: report, certificateTable: launch.certificateTable, endorsement: nil, chain: [])
    }

    @Test("each profile's child passes its own policy and fails the other's on the measurement alone",
          .timeLimit(.minutes(3)))
    func intendedAndWrong() throws {
        let built = try Self.built.get()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let nonce = Array(repeating: UInt8(7), count: 32), key = Array(repeating: UInt8(9), count: 32)
        let manifest = Array(#"{"name":"w-1"}"#.utf8)
        let now = Date()
        let context = AppraisalContext(evaluationTime: now, nonce: nonce, boundKey: key, manifest: manifest, collectedAt: now)
        for (own, other) in [("database", "realtime"), ("realtime", "database")] {
            let image = try #require(built.profiles[own])
            let evidence = try Self.evidence(image, nonce: nonce, key: key, manifest: manifest)
            let admitted = appraiser.appraise(evidence, policy: try Self.policy(own, images: built.images), context: context)
            #expect(admitted.verdict == .admit, "\(own): \(admitted.failures)")
            #expect(admitted.outcomes.first { $0.rule == "snp.measurement" }?.status == .pass)
            #expect(!admitted.handover.isEmpty)
            let wrong = appraiser.appraise(evidence, policy: try Self.policy(other, images: built.images), context: context)
            #expect(wrong.failures.map(\.rule) == ["snp.measurement"], "\(own) under \(other)")
            #expect(wrong.handover.isEmpty)
        }
    }

    @Test("one changed byte in the initramfs changes the measurement and fails the policy pinned to the original",
          .timeLimit(.minutes(3)))
    func patchedInitrd() throws {
        let built = try Self.built.get()
        let appraiser = EvidenceAppraiser(trustAnchors: try SimulatedPlatformFixture.storeWithSimulatedRoots())
        let nonce = Array(repeating: UInt8(1), count: 32), key = Array(repeating: UInt8(2), count: 32)
        let manifest = Array("m".utf8)
        let evidence = try Self.evidence(
            try #require(built.profiles["database"]), initrdPatch: true, nonce: nonce, key: key, manifest: manifest)
        let appraisal = appraiser.appraise(
            evidence, policy: try Self.policy("database", images: built.images),
            context: AppraisalContext(evaluationTime: Date(), nonce: nonce, boundKey: key, manifest: manifest, collectedAt: Date()))
        #expect(appraisal.failures.map(\.rule) == ["snp.measurement"])
    }

    @Test("the workload policies say where their reference measurement came from, and lint flags the simulated root")
    func explainAndLint() throws {
        let built = try Self.built.get()
        let policy = try Self.policy("database", images: built.images)
        let reference = try #require(policy.snp?.measurement?.references.first)
        #expect(reference.inputs["assumption"]?.contains("0x810000") == true)
        #expect(reference.inputs["initrd"]?.contains("database/initrd.cpio sha256:") == true)
        #expect(PolicyLinter().review(policy).contains { $0.key == "trust.roots" && $0.severity == .critical })
    }
}
