import Attestation
import CMKTesting
import Foundation
import PlatformSimulator
import SEVSNP
import Testing

/// One simulated platform per test run (generating two RSA-4096 keys takes seconds), in a temporary folder removed
/// when the test process exits; tests that change files work on a copy.
enum SimulatedPlatformFixture {
    struct Shared: Sendable {
        let directory: URL
        let processor: SimulatedAMDSecureProcessor
        /// Wall-clock seconds the first `SimulatedAMDSecureProcessor(directory:)` took (key generation included).
        let generationSeconds: Double
    }

    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-simulated-\(UUID().uuidString)")
        atexit { try? FileManager.default.removeItem(at: SimulatedPlatformFixture.root) }
        return url
    }()

    static let shared: Result<Shared, any Error> = Result {
        // The folder's parents are made by the platform itself, as the coordinator's state folder would be.
        let directory = root.appendingPathComponent("state/simulated/amd")
        let start = Date()
        let processor = try SimulatedAMDSecureProcessor(directory: directory)
        let seconds = Date().timeIntervalSince(start)
        print("simulated AMD secure processor generated in \(String(format: "%.2f", seconds)) s")
        return Shared(directory: directory, processor: processor, generationSeconds: seconds)
    }

    static func platform() throws -> Shared { try shared.get() }

    /// A fresh folder under the fixture's root.
    static func temporaryFolder(_ name: String) throws -> URL {
        let url = root.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A byte-for-byte copy of the shared platform's folder with its modes (0700 folder, 0600 keys).
    static func copyOfPlatform() throws -> URL {
        let source = try platform().directory
        let copy = try temporaryFolder("copy").appendingPathComponent("amd")
        try FileManager.default.copyItem(at: source, to: copy)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: copy.path)
        for key in ["ark.key", "ask.key", "vcek.key"] {
            try FileManager.default.setAttributes(
                [.posixPermissions: 0o600], ofItemAtPath: copy.appendingPathComponent(key).path)
        }
        return copy
    }

    /// The pinned anchors plus the shared platform's simulated folder.
    static func storeWithSimulatedRoots() throws -> TrustAnchorStore {
        try TrustAnchorStore(directory: SharedVectors.attestationDirectory, simulated: try platform().directory)
    }

    /// A real launch's inputs: Debian's OVMF (no kernel-hashes section, so the stated assumption applies), Debian's
    /// cloud kernel from the project cache, the 512-byte initrd of the measurement vectors.
    static func launchInputs(
        vcpus: Int = 2, vcpuType: String = "EPYC-Genoa", guestPolicy: UInt64 = 0x30000,
        hostData: [UInt8] = [UInt8](repeating: 0x11, count: 32)
    ) throws -> SimulatedSNPLaunch.Inputs {
        SimulatedSNPLaunch.Inputs(
            firmware: try bytes("/usr/share/ovmf/OVMF.fd"), kernel: try kernel(),
            initrd: try SharedVectors.bytes("snp-measure/initrd.cpio"), cmdline: "console=ttyS0 root=/dev/vda1 ro",
            vcpus: vcpus, vcpuType: vcpuType, guestPolicy: guestPolicy, hostData: hostData)
    }

    static func kernel() throws -> [UInt8] {
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("vmlinuz") },
            "the guest kernel is missing from \(boot.path); run scripts/setup")
        return try bytes(boot.appendingPathComponent(name).path)
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// Runs the system's `openssl`: an independent implementation to check cmk's certificates with.
    static func openssl(_ arguments: [String]) throws -> BuiltCMK.Output {
        try ExternalTool.run(URL(fileURLWithPath: "/usr/bin/env"), ["openssl"] + arguments)
    }
}
