import AttestationPolicy
import Coordinator
import Foundation
import Testing

@Suite("which confidential platforms a launch may ask for")
struct TEEAvailabilityTests {
    /// An empty root: no /dev/kvm, no /dev/sev, no KVM module parameters.
    func emptyRoot() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-tee-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        return root
    }

    @Test("both simulated platforms, sim-snp and sim-tdx, are available on a host with nothing")
    func simulatedPlatformsAreAvailable() throws {
        let root = try emptyRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        for tee in [TEEKind.simulatedSNP, .simulatedTDX] {
            #expect(throws: Never.self, "\(tee.rawValue)") { try TEEAvailability.require(tee, root: root) }
            #expect(TEEAvailability.missingHostCapabilities(tee, root: root).isEmpty)
        }
    }

    @Test("a real platform on a host without its interfaces is refused as unavailable, naming what is missing")
    func realPlatformsNameWhatIsMissing() throws {
        let root = try emptyRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        for (tee, missing) in [(TEEKind.snp, "/dev/sev"), (.tdx, "kvm_intel/parameters/tdx")] {
            let error = #expect(throws: CoordinatorError.self) { try TEEAvailability.require(tee, root: root) }
            #expect(error?.code == .platformUnavailable)
            #expect(error?.reason.contains(missing) == true, "\(error?.reason ?? "")")
        }
    }

    @Test("each TEE names the evidence its policy must be written for and its simulated state folder")
    func evidenceAndFolders() {
        #expect(TEEKind.simulatedSNP.evidence == .sevSNP && TEEKind.snp.evidence == .sevSNP)
        #expect(TEEKind.simulatedTDX.evidence == .tdx && TEEKind.tdx.evidence == .tdx)
        #expect(TEEKind.simulatedSNP.simulatedStateFolder == "simulated/amd")
        #expect(TEEKind.simulatedTDX.simulatedStateFolder == "simulated/intel")
    }
}
