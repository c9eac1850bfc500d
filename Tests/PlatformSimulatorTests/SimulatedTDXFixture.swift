import Attestation
import CMKTesting
import Foundation
import PlatformSimulator
import Testing

/// One simulated TDX platform per test run, in a temporary folder removed when the test process exits; tests that
/// change files work on a copy or on a platform of their own.
enum SimulatedTDXFixture {
    struct Shared: Sendable {
        let directory: URL
        let module: SimulatedTDXModule
        let generationSeconds: Double
    }

    static let shared: Result<Shared, any Error> = Result {
        let directory = SimulatedPlatformFixture.root.appendingPathComponent("state/simulated/intel")
        let start = Date()
        let module = try SimulatedTDXModule(directory: directory)
        let seconds = Date().timeIntervalSince(start)
        print("simulated TDX module generated in \(String(format: "%.3f", seconds)) s")
        return Shared(directory: directory, module: module, generationSeconds: seconds)
    }

    static func platform() throws -> Shared { try shared.get() }

    /// The pinned anchors plus the shared platform's simulated folder.
    static func storeWithSimulatedRoot() throws -> TrustAnchorStore {
        try TrustAnchorStore(directory: SharedVectors.attestationDirectory, simulated: try platform().directory)
    }

    /// The firmware every TDX test launches: Debian's OVMF, which declares TDVF metadata.
    static let firmwarePath = "/usr/share/ovmf/OVMF.fd"
    static let commandLine = "console=ttyS0 root=/dev/vda1 ro cmk.platform=tdx"

    /// A real launch's inputs: Debian's OVMF, Debian's cloud kernel from the project cache, the 512-byte initrd of
    /// the measurement vectors, 1 GiB.
    static func launchInputs(
        mrConfigID: [UInt8] = [UInt8](repeating: 0x22, count: 48), kernel: [UInt8]? = nil, initrd: [UInt8]? = nil,
        tdAttributes: UInt64 = 0x1000_0000
    ) throws -> SimulatedTDXLaunch.Inputs {
        SimulatedTDXLaunch.Inputs(
            firmware: try SimulatedPlatformFixture.bytes(firmwarePath),
            kernel: try kernel ?? SimulatedPlatformFixture.kernel(),
            initrd: try initrd ?? SharedVectors.bytes("snp-measure/initrd.cpio"), cmdline: commandLine,
            memoryMiB: 1024, mrConfigID: mrConfigID, tdAttributes: tdAttributes)
    }

    /// A launch of the shared platform (measuring reads 16 MB of kernel and 2 MB of firmware: done once).
    static let sharedLaunch: Result<SimulatedTDXLaunch, any Error> = Result {
        try platform().module.launch(try launchInputs())
    }

    static func launch() throws -> SimulatedTDXLaunch { try sharedLaunch.get() }
}
