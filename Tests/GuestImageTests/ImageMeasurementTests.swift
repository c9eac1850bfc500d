import BinaryFormat
import CMKTesting
import Foundation
import GuestImage
import Testing

let debianOVMF = URL(fileURLWithPath: "/usr/share/ovmf/OVMF.fd")

@Suite("built images and their expected measurements", .serialized)
struct ImageMeasurementTests {
    @Test(
        "building writes the kernel and initrd with the digests it reports, the same twice over",
        .timeLimit(.minutes(3)))
    func buildWritesFiles() async throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let profile = try catalog.profile(named: "general")
        let first = try await GuestImage.build(
            profile: profile, cacheDirectory: SharedVectors.cacheDirectory, output: output)
        let second = try await GuestImage.build(
            profile: profile, cacheDirectory: SharedVectors.cacheDirectory, output: output)
        #expect(first == second)
        for file in [first.kernel, first.initrd] {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file.path)))
            #expect(bytes.count == file.size)
            #expect(sha256(bytes) == file.sha256.description)
        }
        #expect(first.kernel.path == output.appendingPathComponent("vmlinuz").path)
        let kernel = try cachedKernel()
        #expect(
            FileManager.default.contents(atPath: first.kernel.path)
                == FileManager.default.contents(atPath: kernel.image.path))
        #expect(first.commandLine == profile.commandLine)
        #expect(first.agent == nil)
        // No temporary files are left behind.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: output.path).sorted() == ["initrd.cpio", "vmlinuz"])
    }

    @Test(
        "one changed initrd byte gives a different SEV-SNP launch digest; the TDX MRTD covers only the firmware",
        .timeLimit(.minutes(3)))
    func initrdByteChangesDigest() async throws {
        let image = try await builder("general").build()
        let kernel = [UInt8](try Data(contentsOf: try cachedKernel().image))
        let cmdline = try catalog.profile(named: "general").commandLine
        let reference = try ExpectedMeasurements.compute(
            firmware: debianOVMF, kernel: kernel, initrd: image.bytes, commandLine: cmdline, vcpus: 1)
        var changed = image.bytes
        changed[changed.count / 3] ^= 0x01
        let other = try ExpectedMeasurements.compute(
            firmware: debianOVMF, kernel: kernel, initrd: changed, commandLine: cmdline, vcpus: 1)
        #expect(reference.sevSnp.launchDigest != other.sevSnp.launchDigest)
        #expect(reference.sevSnp.firmwareDigest == other.sevSnp.firmwareDigest)
        #expect(reference.tdx == other.tdx)
        #expect(reference.sevSnp.launchDigest.count == 48)
        #expect(reference.sevSnp.vcpuType == "EPYC-v4" && reference.sevSnp.vcpuSignature == "0x800f12")
        #expect(reference.sevSnp.guestFeatures == "0x1" && reference.sevSnp.vmm == "qemu")
        #expect(reference.sevSnp.kernelHashesPlacement == "assumed-amdsev")
        #expect(reference.sevSnp.assumption?.contains("0x810000") == true)
        // Same inputs, same digest; a changed command line or vCPU count changes it too.
        let again = try ExpectedMeasurements.compute(
            firmware: debianOVMF, kernel: kernel, initrd: image.bytes, commandLine: cmdline, vcpus: 1)
        #expect(again == reference)
        let otherCmdline = try ExpectedMeasurements.compute(
            firmware: debianOVMF, kernel: kernel, initrd: image.bytes, commandLine: cmdline + " quiet", vcpus: 1)
        #expect(otherCmdline.sevSnp.launchDigest != reference.sevSnp.launchDigest)
    }

    @Test("an unknown vCPU type or an unreadable firmware is an error a person can act on")
    func measurementErrors() throws {
        #expect {
            try ExpectedMeasurements.compute(
                firmware: debianOVMF, kernel: [1], initrd: [], commandLine: "x", vcpus: 1, vcpuType: "Pentium")
        } throws: {
            ($0 as? GuestImageError)?.code == .measurementFailed && "\($0)".contains("EPYC-v4")
        }
        #expect {
            try ExpectedMeasurements.compute(
                firmware: URL(fileURLWithPath: "/no/OVMF.fd"), kernel: [1], initrd: [], commandLine: "x", vcpus: 1)
        } throws: {
            ($0 as? GuestImageError)?.code == .missingInput
        }
    }
}
