import ArgumentParser
import BinaryFormat
import Foundation
import SEVSNP
import TDX
import Crypto

extension CMK {
    /// `cmk measure`: what a correct launch of given artifacts must measure.
    struct Measure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compute expected launch measurements from boot artifacts.",
            subcommands: [Snp.self, IdBlock.self, Tdx.self, Replay.self])
    }
}

extension CMK.Measure {
    struct Snp: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The SEV-SNP launch digest (MEASUREMENT) of a firmware, kernel, initrd, command line and vCPUs.",
            discussion: """
                The algorithm of the AMD secure processor (SNP_LAUNCH_UPDATE page chaining with SHA-384), as \
                sev-snp-measure 0.0.13 computes it: firmware pages mapped to end at 4 GiB, each SEV metadata section, \
                then one VMSA per vCPU. A firmware without SEV metadata, or a kernel for a firmware without an \
                SNP_KERNEL_HASHES section, is an error, not a digest.
                Exit status: 0 computed, 1 the firmware cannot launch as asked, 2 usage error or unreadable input.
                """)

        @Option(help: "The OVMF firmware image, as QEMU maps it below 4 GiB.")
        var firmware: String

        @Option(help: "The kernel (bzImage) QEMU is given with -kernel; needs a firmware with kernel hashes.")
        var kernel: String?

        @Option(help: "The initrd QEMU is given with -initrd.")
        var initrd: String?

        @Option(help: "The kernel command line QEMU is given with -append.")
        var append: String?

        @Option(help: "Number of vCPUs.")
        var vcpus: Int = 1

        @Option(help: "QEMU -cpu model: EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin (and their -vN names).")
        var vcpuType: String?

        @Option(help: "The vCPU signature (CPUID(1).EAX) in hex, instead of --vcpu-type.")
        var vcpuSig: String?

        @Option(help: "SEV_FEATURES of the VMSAs, hex (QEMU default 0x1; 0x21 with DebugSwap).")
        var guestFeatures: String = "0x1"

        @Option(help: "The VMM that builds the guest: qemu, ec2 or gce.")
        var vmm: String = "qemu"

        @Option(help: "The firmware digest measured earlier (hex), instead of hashing the firmware pages again.")
        var firmwareDigest: String?

        @Flag(help: "Print only the digest of the firmware pages (sev-snp-measure's snp:ovmf-hash).")
        var firmwareOnly = false

        @Flag(help: "Print base64 instead of hex.")
        var base64 = false

        @Flag(help: "Print every step (firmware, each section, each VMSA) with the digest after it.")
        var trace = false

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if vcpuType != nil && vcpuSig != nil { throw ValidationError("give --vcpu-type or --vcpu-sig, not both") }
            if !firmwareOnly && vcpuType == nil && vcpuSig == nil { throw ValidationError("give --vcpu-type or --vcpu-sig") }
            if let vcpuType, SNPVCPUType.signature(named: vcpuType) == nil {
                throw ValidationError("unknown --vcpu-type '\(vcpuType)'; known: \(SNPVCPUType.signatures.keys.sorted().joined(separator: ", "))")
            }
            if let vcpuSig, UInt32(vcpuSig.hasPrefix("0x") ? String(vcpuSig.dropFirst(2)) : vcpuSig, radix: 16) == nil {
                throw ValidationError("--vcpu-sig '\(vcpuSig)' is not a hex number")
            }
            if Self.hex64(guestFeatures) == nil { throw ValidationError("--guest-features '\(guestFeatures)' is not a hex number") }
            if SNPVMMType(rawValue: vmm) == nil { throw ValidationError("--vmm must be qemu, ec2 or gce") }
            if let firmwareDigest, Hex.decode(firmwareDigest)?.count != 48 {
                throw ValidationError("--firmware-digest must be 48 bytes of hex")
            }
            if !(1...512).contains(vcpus) { throw ValidationError("--vcpus must be 1 to 512") }
        }

        static func hex64(_ text: String) -> UInt64? {
            UInt64(text.hasPrefix("0x") ? String(text.dropFirst(2)) : text, radix: 16)
        }

        func read(_ path: String, _ what: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("error: cannot read the \(what) '\(path)'\n".utf8))
                throw ExitCode(2)
            }
            return [UInt8](data)
        }

        func compute(
            _ firmwareBytes: [UInt8], _ kernelBytes: [UInt8]?, _ initrdBytes: [UInt8]?, _ signature: UInt32
        ) -> Result<MeasureOutput, SNPMeasurementError> {
            Result { () throws(SNPMeasurementError) -> MeasureOutput in
                if firmwareOnly {
                    let digest = HexBytes(try SNPLaunchMeasurement.firmwareDigest(firmwareBytes))
                    return MeasureOutput(digest: digest, firmwareDigest: digest, vcpuSignature: nil, steps: nil)
                }
                let measurement = try SNPLaunchMeasurement(.init(
                    firmware: firmwareBytes, firmwareDigest: firmwareDigest.flatMap(Hex.decode),
                    kernel: kernelBytes, initrd: initrdBytes, cmdline: append, vcpus: vcpus, vcpuSignature: signature,
                    guestFeatures: Self.hex64(guestFeatures) ?? 1, vmm: SNPVMMType(rawValue: vmm) ?? .qemu))
                return MeasureOutput(
                    digest: measurement.digest, firmwareDigest: measurement.firmwareDigest,
                    vcpuSignature: "0x" + String(signature, radix: 16), steps: trace || json ? measurement.steps : nil)
            }
        }

        func run() async throws {
            let firmwareBytes = try read(firmware, "firmware")
            let signature = vcpuSig.flatMap { UInt32($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) }
                ?? vcpuType.flatMap(SNPVCPUType.signature(named:)) ?? 0
            let kernelBytes = try kernel.map { try read($0, "kernel") }
            let initrdBytes = try initrd.map { try read($0, "initrd") }
            let result = compute(firmwareBytes, kernelBytes, initrdBytes, signature)
            let output: MeasureOutput
            switch result {
            case .success(let value):
                output = value
            case .failure(let error):
                if json {
                    print(try JSONOutput.encode(["error": ["code": error.code.name, "reason": error.reason]]))
                } else {
                    FileHandle.standardError.write(Data("error [\(error.code)]: \(error.reason)\n".utf8))
                }
                throw ExitCode(1)
            }
            if json {
                print(try JSONOutput.encode(output))
                return
            }
            if let steps = output.steps {
                for step in steps {
                    print("\(step.what.padding(toLength: 20, withPad: " ", startingAt: 0)) gpa 0x\(String(step.gpa, radix: 16)) pages \(step.pages)  \(step.digestAfter)")
                }
            }
            print(base64 ? Data(output.digest.bytes).base64EncodedString() : output.digest.description)
        }
    }
}

struct MeasureOutput: Encodable {
    let digest: HexBytes
    let firmwareDigest: HexBytes
    let vcpuSignature: String?
    let steps: [SNPLaunchMeasurement.Step]?
}

extension CMK.Measure {
    struct IdBlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "id-block",
            abstract: "Build an SNP ID block and ID auth for QEMU's sev-snp-guest id-block/id-auth.",
            discussion: """
                Prints `id-block=<base64>,id-auth=<base64>` and the ID_KEY_DIGEST / AUTHOR_KEY_DIGEST a report of \
                that launch will carry. Keys are P-384 private keys in PEM.
                Exit status: 0 built, 2 usage error or unreadable key.
                """)

        @Option(help: "The launch digest (MEASUREMENT), hex.")
        var measurement: String

        @Option(help: "The ID key, a P-384 private key in PEM.")
        var idKey: String

        @Option(help: "The author key, a P-384 private key in PEM (optional).")
        var authorKey: String?

        @Option(help: "FAMILY_ID, 16 bytes hex.")
        var familyID: String = String(repeating: "0", count: 32)

        @Option(help: "IMAGE_ID, 16 bytes hex.")
        var imageID: String = String(repeating: "0", count: 32)

        @Option(help: "GUEST_SVN.")
        var guestSVN: UInt32 = 0

        @Option(help: "The guest POLICY, hex.")
        var policy: String = "0x30000"

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            guard Hex.decode(measurement)?.count == 48 else { throw ValidationError("--measurement must be 48 bytes of hex") }
            guard Hex.decode(familyID)?.count == 16, Hex.decode(imageID)?.count == 16 else {
                throw ValidationError("--family-id and --image-id must be 16 bytes of hex")
            }
            guard Snp.hex64(policy) != nil else { throw ValidationError("--policy must be hex") }
        }

        func key(_ path: String) throws -> P384.Signing.PrivateKey {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                let key = try? P384.Signing.PrivateKey(pemRepresentation: text)
            else {
                FileHandle.standardError.write(Data("error: '\(path)' is not a readable P-384 private key in PEM\n".utf8))
                throw ExitCode(2)
            }
            return key
        }

        func run() async throws {
            let idPrivateKey = try key(idKey)
            let authorPrivateKey = try authorKey.map(key)
            let block: SNPIDBlock
            do {
                block = try SNPIDBlock(
                    launchDigest: Hex.decode(measurement) ?? [], familyID: Hex.decode(familyID) ?? [],
                    imageID: Hex.decode(imageID) ?? [], guestSVN: guestSVN, policy: Snp.hex64(policy) ?? 0)
            } catch {
                FileHandle.standardError.write(Data("error [\(error.code)]: \(error.reason)\n".utf8))
                throw ExitCode(2)
            }
            let auth = try SNPIDAuth(signing: block, idKey: idPrivateKey, authorKey: authorPrivateKey)
            let output = IDBlockOutput(
                idBlock: Data(block.bytes).base64EncodedString(), idAuth: Data(auth.bytes).base64EncodedString(),
                idKeyDigest: HexBytes(AMDPublicKeyFormat.digest(idPrivateKey.publicKey)),
                authorKeyDigest: authorPrivateKey.map { HexBytes(AMDPublicKeyFormat.digest($0.publicKey)) })
            if json {
                print(try JSONOutput.encode(output))
            } else {
                print("id-block=\(output.idBlock),id-auth=\(output.idAuth)")
                print("ID_KEY_DIGEST     \(output.idKeyDigest)")
                if let author = output.authorKeyDigest { print("AUTHOR_KEY_DIGEST \(author)") }
            }
        }
    }
}

struct IDBlockOutput: Encodable {
    let idBlock: String
    let idAuth: String
    let idKeyDigest: HexBytes
    let authorKeyDigest: HexBytes?
}

extension CMK.Measure {
    struct Tdx: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The TDX MRTD of a TDVF/OVMF firmware, from its TDVF metadata.",
            discussion: """
                A running SHA-384 over the TDX module's PAGE.ADD and MR.EXTEND records for every TDVF section \
                (PAGE.AUG sections are not measured). Not yet checked against a real TD's quote here: no TD with \
                a firmware at hand was available. Exit status: 0 computed, 1 the firmware cannot launch a TD, 2 usage \
                error or unreadable input.
                """)

        @Option(help: "The TDVF/OVMF firmware image.")
        var firmware: String

        @Option(help: "The SEAMCALL order of the VMM: per-page (KVM/QEMU) or per-section.")
        var order: String = TDXMRTD.Order.perPage.rawValue

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            guard TDXMRTD.Order(rawValue: order) != nil else { throw ValidationError("--order must be per-page or per-section") }
        }

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: firmware) else {
                FileHandle.standardError.write(Data("error: cannot read the firmware '\(firmware)'\n".utf8))
                throw ExitCode(2)
            }
            let result: Result<TDXMRTD, TDXMeasurementError> = Result { () throws(TDXMeasurementError) in
                try TDXMRTD(firmware: [UInt8](data), order: TDXMRTD.Order(rawValue: order) ?? .perPage)
            }
            switch result {
            case .success(let mrtd):
                if json {
                    print(try JSONOutput.encode(["mrtd": mrtd.digest.description, "order": order,
                                                 "pagesAdded": "\(mrtd.pagesAdded)", "chunksExtended": "\(mrtd.chunksExtended)"]))
                } else {
                    print(mrtd.digest)
                }
            case .failure(let error):
                FileHandle.standardError.write(Data("error: \(error.reason)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
