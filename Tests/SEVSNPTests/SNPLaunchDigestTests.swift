import BinaryFormat
import CMKTesting
import Crypto
import Firmware
import Foundation
import SEVSNP
import Testing

/// One sev-snp-measure invocation recorded in ../shared/vectors/snp-measure/reference.json.
struct MeasureRun: CustomStringConvertible, Sendable {
    let arguments: [String]
    let exitCode: Int
    let output: String
    var description: String { arguments.joined(separator: " ") }

    static func all() throws -> [MeasureRun] {
        let json = try SharedVectors.json("snp-measure/reference.json")
        let runs = try #require(json["runs"] as? [[String: Any]])
        return runs.map {
            MeasureRun(arguments: Array(($0["args"] as? [String] ?? []).dropFirst()), exitCode: $0["rc"] as? Int ?? -1, output: $0["output"] as? String ?? "")
        }
    }

    func value(_ flag: String) -> String? {
        guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }
}

/// The files a run names, resolved on this machine; nil when the run's input is not at hand.
enum MeasureInputs {
    static func firmwareSHA256() throws -> [String: String] {
        let json = try SharedVectors.json("snp-measure/reference.json")
        let firmware = try #require(json["firmware"] as? [String: [String: Any]])
        var table: [String: String] = [:]
        for (name, description) in firmware {
            // Names like "bookworm_OVMF.fd" describe a Debian path; the trixie ones are run as "trixie:<path>".
            if let source = description["source"] as? String, source.hasPrefix("Debian"),
                let sha = description["sha256"] as? String, let path = source.split(separator: " ").last
            {
                table[name.hasPrefix("trixie") ? "trixie:" + path : String(path)] = sha
            }
        }
        return table
    }

    static func file(_ name: String) -> [UInt8]? {
        if name == "/dev/null" { return [] }
        if name == "ovmf_AmdSev_suffix.bin" || name == "initrd.cpio" { return try? SharedVectors.bytes("snp-measure/\(name)") }
        if name.hasPrefix("vmlinuz-") {
            let cache = SharedVectors.cacheDirectory
            return FileManager.default.contents(atPath: cache.appendingPathComponent("guest-kernel/boot/\(name)").path).map { [UInt8]($0) }
        }
        if name.hasPrefix("trixie:") { return nil }
        return FileManager.default.contents(atPath: name).map { [UInt8]($0) }
    }
}

@Suite("SEV-SNP launch digest against sev-snp-measure's recorded runs")
struct SNPLaunchDigestTests {
    static let runs = (try? MeasureRun.all()) ?? []

    @Test("every recorded SNP run whose inputs are at hand is reproduced byte for byte")
    func recordedRuns() throws {
        let firmwareDigests = try MeasureInputs.firmwareSHA256()
        var reproduced = 0
        var skipped: [String] = []
        for run in Self.runs {
            let mode = run.value("--mode") ?? "snp"
            guard mode.hasPrefix("snp") else { skipped.append("\(run) (SEV/SEV-ES mode)"); continue }
            let firmwareName = try #require(run.value("--ovmf"))
            guard let firmware = MeasureInputs.file(firmwareName) else { skipped.append("\(run) (firmware not here)"); continue }
            if let recorded = firmwareDigests[firmwareName] {
                guard Hex.encode(SHA256.hash(data: firmware)) == recorded else {
                    skipped.append("\(run) (installed firmware differs from the recorded one)")
                    continue
                }
            }
            if mode == "snp:ovmf-hash" {
                #expect(Hex.encode(try SNPLaunchMeasurement.firmwareDigest(firmware)) == run.output, "\(run)")
                reproduced += 1
                continue
            }
            let signature: UInt32
            if let type = run.value("--vcpu-type") {
                signature = try #require(SNPVCPUType.signature(named: type))
            } else if let sig = run.value("--vcpu-sig") {
                signature = try #require(UInt32(sig.dropFirst(2), radix: 16))
            } else {
                signature = SNPVCPUType.signature(
                    family: Int(run.value("--vcpu-family") ?? "") ?? 0, model: Int(run.value("--vcpu-model") ?? "") ?? 0,
                    stepping: Int(run.value("--vcpu-stepping") ?? "") ?? 0)
            }
            var kernel: [UInt8]?
            if let name = run.value("--kernel") {
                kernel = try #require(MeasureInputs.file(name), "the guest kernel must be in .cache (scripts/setup): \(name)")
            }
            let inputs = SNPLaunchMeasurement.Inputs(
                firmware: firmware, firmwareDigest: run.value("--snp-ovmf-hash").flatMap(Hex.decode),
                kernel: kernel, initrd: try run.value("--initrd").map { try #require(MeasureInputs.file($0)) },
                cmdline: run.value("--append"), vcpus: Int(run.value("--vcpus") ?? "1") ?? 1, vcpuSignature: signature,
                guestFeatures: UInt64(run.value("--guest-features")?.dropFirst(2) ?? "1", radix: 16) ?? 1,
                vmm: SNPVMMType(rawValue: run.value("--vmm-type") ?? "qemu") ?? .qemu)
            let firmwareHasMetadata = (try? OVMFImage(bytes: firmware))?.hasSNPMetadata == true
            if run.exitCode != 0 {
                // sev-snp-measure refuses a kernel for a firmware without kernel hashes; so does cmk.
                #expect(throws: SNPMeasurementError.self, "\(run)") { try SNPLaunchMeasurement(inputs) }
            } else if !firmwareHasMetadata {
                // sev-snp-measure returns a digest no real launch can produce; cmk refuses (SEV-SNP.md §7.5).
                #expect { try SNPLaunchMeasurement(inputs) } throws: { ($0 as? SNPMeasurementError)?.code == .noSNPMetadata }
            } else {
                let digest = try SNPLaunchMeasurement(inputs).digest
                if run.value("--output-format") == "base64" {
                    #expect(Data(digest.bytes).base64EncodedString() == run.output, "\(run)")
                } else {
                    #expect(digest.description == run.output, "\(run)")
                }
            }
            reproduced += 1
        }
        #expect(reproduced >= 24, "reproduced \(reproduced); skipped: \(skipped.joined(separator: "\n"))")
    }

    @Test("the VMSA pages equal sev-snp-measure's, byte for byte")
    func vmsaPages() throws {
        let signature = try #require(SNPVCPUType.signature(named: "EPYC-v4"))
        #expect(signature == 0x800F12)
        let bsp = SNPVMSA.page(eip: SNPVMSA.bspEIP, sevFeatures: 1, vcpuSignature: signature, vmm: .qemu)
        #expect(bsp == (try SharedVectors.bytes("snp-measure/vmsa_bsp_qemu_epyc-v4_f0x1.bin")))
        let ap = SNPVMSA.page(eip: 0x80B004, sevFeatures: 1, vcpuSignature: signature, vmm: .qemu)
        #expect(ap == (try SharedVectors.bytes("snp-measure/vmsa_ap_qemu_epyc-v4_f0x1_bookworm-ovmf.bin")))
    }

    @Test("each step of the recorded traces matches: firmware pages, every metadata section, every VMSA")
    func traces() throws {
        let json = try SharedVectors.json("snp-measure/reference.json")
        let trace = try #require((json["traces"] as? [String: [String: Any]])?["bookworm_OVMF.fd snp 2 vcpus EPYC-v4 features 0x1"])
        let firmware = try #require(MeasureInputs.file("/usr/share/ovmf/OVMF.fd"))
        let measurement = try SNPLaunchMeasurement(.init(firmware: firmware, vcpus: 2, vcpuSignature: 0x800F12))
        #expect(measurement.firmwareDigest.description == trace["ovmf_pages_ld"] as? String)
        let sections = try #require(trace["sections"] as? [[String: Any]])
        let vmsas = try #require(trace["vmsa"] as? [[String: Any]])
        let expected = sections.compactMap { $0["ld_after"] as? String } + vmsas.compactMap { $0["ld_after"] as? String }
        #expect(measurement.steps.dropFirst().map(\.digestAfter.description) == expected)
    }

    @Test("vCPU signatures follow CPUID(1).EAX packing for every model family")
    func vcpuSignatures() {
        #expect(SNPVCPUType.signature(named: "EPYC") == 0x800F12)
        #expect(SNPVCPUType.signature(named: "EPYC-Rome") == 0x830F10)
        #expect(SNPVCPUType.signature(named: "EPYC-Milan") == 0xA00F11)
        #expect(SNPVCPUType.signature(named: "epyc-genoa") == 0xA10F10)
        #expect(SNPVCPUType.signature(named: "EPYC-Turin") == 0xB00F00)
        #expect(SNPVCPUType.signature(named: "Skylake") == nil)
    }

    @Test("the kernel-hashes table has the layout QEMU writes: GUID, length 0xA8, cmdline, initrd, kernel, padded")
    func kernelHashesTable() throws {
        let hashes = SNPKernelHashes(kernel: [1, 2, 3], initrd: nil, cmdline: "console=ttyS0 root=/dev/vda1 ro")
        let table = hashes.table
        #expect(table.count == 176)
        #expect(Array(table[16..<18]) == [0xA8, 0x00])
        #expect(Hex.encode(hashes.cmdline) == "767249922d8b51c7b2bb906ec2e2b830dd240dcf9d886789d9d6c9f9b1fab199")
        #expect(hashes.initrd == Array(SHA256.hash(data: [UInt8]())))
        #expect(Array(table[18..<34]) == EFIGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")!.storedBytes)
        #expect(table[34] == 0x32)
    }

    @Test("firmware that cannot launch as asked is an error naming why, never a digest")
    func refusals() throws {
        let bookworm = try #require(MeasureInputs.file("/usr/share/ovmf/OVMF.fd"))
        func code(_ inputs: SNPLaunchMeasurement.Inputs) -> SNPMeasurementError.Code? {
            do { _ = try SNPLaunchMeasurement(inputs); return nil } catch { return error.code }
        }
        #expect(code(.init(firmware: bookworm, kernel: [1], vcpus: 1, vcpuSignature: 0x800F12)) == .noKernelHashes)
        #expect(code(.init(firmware: [UInt8](repeating: 0, count: 8192), vcpus: 1, vcpuSignature: 0x800F12)) == .noSNPMetadata)
        #expect(code(.init(firmware: Array(bookworm.dropFirst(100)), vcpus: 1, vcpuSignature: 0x800F12)) == .badFirmware)
        #expect(code(.init(firmware: bookworm, vcpus: 0, vcpuSignature: 0x800F12)) == .invalidArgument)
        #expect(code(.init(firmware: bookworm, vcpus: 1, vcpuSignature: 0x800F12, guestFeatures: 0x20)) == .invalidArgument)
        #expect(code(.init(firmware: bookworm, cmdline: "x", vcpus: 1, vcpuSignature: 0x800F12)) == .invalidArgument)
        #expect(code(.init(firmware: [], vcpus: 1, vcpuSignature: 0x800F12)) == .noSNPMetadata)
        // Truncations of a real firmware never trap: each is an error or (rarely) a digest of other pages.
        for cut in stride(from: 4096, to: bookworm.count, by: 4096 * 37) {
            _ = try? SNPLaunchMeasurement(.init(firmware: Array(bookworm.suffix(cut)), vcpus: 2, vcpuSignature: 0x800F12))
        }
    }
}

@Suite("The simulated platform's kernel-hashes placement")
struct AssumedKernelHashesTests {
    @Test("Debian's OVMF gets the kernel-hashes page carved out of its last SNP_SEC_MEM section, and says so")
    func carvesThePage() throws {
        let bookworm = try #require(MeasureInputs.file("/usr/share/ovmf/OVMF.fd"))
        let inputs = SNPLaunchMeasurement.Inputs(
            firmware: bookworm, kernel: [1, 2, 3], initrd: [4], cmdline: "console=ttyS0", vcpus: 1, vcpuSignature: 0x800F12,
            kernelHashesPlacement: .assumedAmdSev)
        let measurement = try SNPLaunchMeasurement(inputs)
        let sections = measurement.steps.dropFirst().prefix(7).map { "\($0.what)@\(String($0.gpa, radix: 16))x\($0.pages)" }
        #expect(sections == [
            "SNP_SEC_MEM@800000x9", "SNP_SEC_MEM@80a000x3", "SNP_SECRETS@80d000x1", "CPUID@80e000x1",
            "SNP_SEC_MEM@80f000x1", "SNP_KERNEL_HASHES@810000x1", "SNP_SEC_MEM@811000x15",
        ])
        #expect(measurement.assumption?.contains("0x810000") == true)
        // The same launch without a kernel measures the whole section as Debian declares it, with no assumption.
        let plain = try SNPLaunchMeasurement(.init(firmware: bookworm, vcpus: 1, vcpuSignature: 0x800F12, kernelHashesPlacement: .assumedAmdSev))
        #expect(plain.assumption == nil)
        #expect(plain.steps.map(\.what).filter { $0 == "SNP_SEC_MEM" }.count == 3)
        // Every input byte counts: one initrd byte changed gives another digest.
        var changed = inputs
        changed.initrd = [5]
        #expect(try SNPLaunchMeasurement(changed).digest != measurement.digest)
        // Without the assumption the same inputs are refused.
        var strict = inputs
        strict.kernelHashesPlacement = .firmware
        #expect(throws: SNPMeasurementError.self) { try SNPLaunchMeasurement(strict) }
    }

    @Test("firmware that declares its own kernel hashes is measured as declared, the assumption unused")
    func declaredWins() throws {
        let amdsev = try SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin")
        let declared = try SNPLaunchMeasurement(.init(firmware: amdsev, kernel: [1], vcpus: 1, vcpuSignature: 0x800F12))
        let assumed = try SNPLaunchMeasurement(.init(
            firmware: amdsev, kernel: [1], vcpus: 1, vcpuSignature: 0x800F12, kernelHashesPlacement: .assumedAmdSev))
        #expect(declared.digest == assumed.digest)
        #expect(assumed.assumption == nil)
    }
}
