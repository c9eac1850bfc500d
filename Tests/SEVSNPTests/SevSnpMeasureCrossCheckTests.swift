import BinaryFormat
import CMKTesting
import Foundation
import SEVSNP
import Testing

/// Runs the reference implementation, sev-snp-measure 0.0.13 from PyPI, installed by scripts/setup into
/// .cache/venv, and returns what it printed.
func sevSnpMeasure(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let cache = SharedVectors.cacheDirectory
    let tool = cache.appendingPathComponent("venv/bin/sev-snp-measure")
    let process = Process()
    process.executableURL = tool
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    waitForExit(process)
    return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}

@Suite("cmk's launch digest against sev-snp-measure itself, on fresh random inputs", .serialized)
struct SevSnpMeasureCrossCheckTests {
    static let seed = "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"

    @Test("random vCPU counts 1-64, every vCPU type, guest features and VMM types on the installed OVMF", .timeLimit(.minutes(5)))
    func vcpusAndModels() throws {
        let firmwarePath = "/usr/share/ovmf/OVMF.fd"
        let firmware = [UInt8](try Data(contentsOf: URL(fileURLWithPath: firmwarePath)))
        var rng = SeededGenerator(state: UInt64(Date().timeIntervalSince1970))
        let types = ["EPYC", "EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Milan-v2", "EPYC-Genoa", "EPYC-Turin"]
        for (index, type) in types.enumerated() {
            let vcpus = Int.random(in: 1...64, using: &rng)
            let features: UInt64 = index % 2 == 0 ? 0x1 : 0x21
            let vmm: SNPVMMType = [.qemu, .ec2, .gce][index % 3]
            let reference = try sevSnpMeasure([
                "--mode", "snp", "--vcpus", "\(vcpus)", "--vcpu-type", type, "--ovmf", firmwarePath,
                "--guest-features", "0x" + String(features, radix: 16), "--vmm-type", vmm == .qemu ? "QEMU" : vmm.rawValue,
            ])
            #expect(reference.status == 0, "\(reference.output)")
            let ours = try SNPLaunchMeasurement(.init(
                firmware: firmware, vcpus: vcpus, vcpuSignature: try #require(SNPVCPUType.signature(named: type)),
                guestFeatures: features, vmm: vmm))
            #expect(ours.digest.description == reference.output, "\(type) \(vcpus) vCPUs features \(features) \(vmm)")
        }
    }

    @Test("random command lines and initrd bytes through the kernel-hashes page", .timeLimit(.minutes(5)))
    func kernelHashes() throws {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-ssm-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: folder) }
        let firmwarePath = SharedVectors.url("snp-measure/ovmf_AmdSev_suffix.bin").path
        let firmware = try SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin")
        var rng = SeededGenerator(state: UInt64(Date().timeIntervalSince1970) ^ 0x5A5A)
        for round in 0..<4 {
            let kernel = (0..<Int.random(in: 1...50_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let initrd = (0..<Int.random(in: 0...20_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let words = (0..<Int.random(in: 1...6, using: &rng)).map { _ in
                String((0..<Int.random(in: 1...12, using: &rng)).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789=._/-".randomElement(using: &rng)! })
            }
            let cmdline = words.joined(separator: " ")
            let kernelPath = folder.appendingPathComponent("kernel-\(round)").path
            let initrdPath = folder.appendingPathComponent("initrd-\(round)").path
            try Data(kernel).write(to: URL(fileURLWithPath: kernelPath))
            try Data(initrd).write(to: URL(fileURLWithPath: initrdPath))
            let vcpus = Int.random(in: 1...16, using: &rng)
            let reference = try sevSnpMeasure([
                "--mode", "snp", "--vcpus", "\(vcpus)", "--vcpu-type", "EPYC-Genoa", "--ovmf", firmwarePath,
                "--snp-ovmf-hash", Self.seed, "--kernel", kernelPath, "--initrd", initrdPath, "--append", cmdline,
            ])
            #expect(reference.status == 0, "\(reference.output)")
            let ours = try SNPLaunchMeasurement(.init(
                firmware: firmware, firmwareDigest: Hex.decode(Self.seed), kernel: kernel, initrd: initrd, cmdline: cmdline,
                vcpus: vcpus, vcpuSignature: 0xA10F10))
            #expect(ours.digest.description == reference.output, "cmdline '\(cmdline)' initrd \(initrd.count) bytes")
        }
    }
}
