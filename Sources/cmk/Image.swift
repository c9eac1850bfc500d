import ArgumentParser
import Coordinator
import Foundation
import GuestImage

extension CMK {
    /// `cmk image`: child-kernel images.
    struct Image: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build child-kernel images from the profiles in guest-kernels/.",
            subcommands: [Build.self])
    }
}

extension CMK.Image {
    /// `cmk image build`: one profile's kernel and initrd, with the measurements a correct launch must produce.
    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Build a profile's image (kernel, initrd) and print its files, command line and expected measurements.",
            discussion: """
                The initrd is an uncompressed cpio (newc) archive of busybox, the profile's init and modules and, with \
                --agent, cmk-guest and its shared libraries; the same inputs always give the same bytes. The SEV-SNP \
                launch digest is for the simulated platform: Debian's OVMF declares no kernel-hashes page, so it is \
                measured where an edk2 AmdSev build puts it (the output names the assumption). The TDX MRTD covers the \
                firmware only.
                Exit status: 0 built, 1 built but not measurable with this firmware (or a tool failed), 2 a usage \
                error or unreadable input (an unknown profile lists the known ones).
                """)

        @Option(help: "The profile: a folder in the profiles folder (general, database, realtime).")
        var profile: String

        @Option(help: "The cmk-guest executable to put in the image; without it the init only signals readiness.")
        var agent: String?

        @Option(help: "Where to write vmlinuz and initrd.cpio (default: <cache>/images/<profile>).")
        var output: String?

        @Option(help: "The firmware the launch boots through, for the expected measurements.")
        var firmware: String = "/usr/share/ovmf/OVMF.fd"

        @Option(help: "vCPUs of the launch (default: the profile's).")
        var vcpus: Int?

        @Option(help: "The QEMU -cpu model the SEV-SNP measurement assumes.")
        var vcpuType: String = ExpectedMeasurements.defaultVCPUType

        @Option(help: "The profiles folder (default: $CMK_GUEST_KERNELS, else guest-kernels/ of the source tree).")
        var profiles: String?

        @Option(help: "A statically linked busybox.")
        var busybox: String = "/bin/busybox"

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if let vcpus, !(1...512).contains(vcpus) { throw ValidationError("--vcpus must be 1 to 512") }
            if profile.isEmpty { throw ValidationError("--profile must name a profile") }
        }

        func run() async throws {
            let progress = isatty(STDERR_FILENO) == 1 && !json
            func say(_ text: String) { if progress { FileHandle.standardError.write(Data((text + "\n").utf8)) } }

            let report: ImageBuildReport
            do {
                guard let folder = profiles.map({ URL(fileURLWithPath: $0) }) ?? GuestProfileCatalog.locate() else {
                    throw GuestImageError(
                        .missingInput,
                        "no profiles folder: give --profiles or set \(GuestProfileCatalog.environmentVariable)")
                }
                let selected = try GuestProfileCatalog(directory: folder).profile(named: profile)
                let paths = CMKPaths.resolve()
                let destination =
                    output.map { URL(fileURLWithPath: $0) }
                    ?? paths.cacheDirectory.appendingPathComponent("images").appendingPathComponent(selected.name)
                say("building the \(selected.name) image into \(destination.path) ...")
                let image = try await GuestImage.build(
                    profile: selected, cacheDirectory: paths.cacheDirectory,
                    agent: agent.map { URL(fileURLWithPath: $0) },
                    busybox: URL(fileURLWithPath: busybox), output: destination)
                say("measuring the launch through \(firmware) ...")
                let kernelBytes = try Self.read(image.kernel.path)
                let initrdBytes = try Self.read(image.initrd.path)
                let measurements = try ExpectedMeasurements.compute(
                    firmware: URL(fileURLWithPath: firmware), kernel: kernelBytes, initrd: initrdBytes,
                    commandLine: image.commandLine, vcpus: vcpus ?? image.vcpus, vcpuType: vcpuType)
                report = ImageBuildReport(image: image, measurements: measurements)
            } catch let error as GuestImageError {
                if json {
                    print(try JSONOutput.encode(["error": ["code": error.code.name, "reason": error.reason]]))
                } else {
                    FileHandle.standardError.write(Data("error [\(error.code)]: \(error.reason)\n".utf8))
                }
                throw ExitCode(Self.exitStatus(for: error.code))
            }
            print(json ? try JSONOutput.encode(report) : report.text)
        }

        static func read(_ path: String) throws(GuestImageError) -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw GuestImageError(.outputFailed, "cannot read back \(path)")
            }
            return [UInt8](data)
        }

        /// 2 for input a person gave or must provide, 1 for the rest.
        static func exitStatus(for code: GuestImageError.Code) -> Int32 {
            let input: Set<GuestImageError.Code> = [
                .unknownProfile, .badProfile, .missingInput, .badExecutable, .badModule,
            ]
            return input.contains(code) ? 2 : 1
        }
    }
}

/// What `cmk image build` prints.
struct ImageBuildReport: Encodable {
    let image: GuestImage
    let measurements: ExpectedMeasurements

    var text: String {
        func file(_ file: ImageFile) -> String { "\(file.path)\n            sha256 \(file.sha256)  \(file.size) bytes" }
        var lines = [
            "profile     \(image.profile)" + (image.kernelRelease.map { " (kernel \($0))" } ?? ""),
            "kernel      " + file(image.kernel),
            "initrd      " + file(image.initrd),
            "            \(image.initrdFormat), \(image.initrdMembers) members",
            "cmdline     \(image.commandLine)",
            "modules     \(image.modules.isEmpty ? "none" : image.modules.joined(separator: " "))"
                + (image.builtinModules.isEmpty ? "" : " (built in: \(image.builtinModules.joined(separator: " ")))"),
        ]
        if let agent = image.agent {
            lines.append("agent       \(agent.source)  sha256 \(agent.sha256)  \(agent.size) bytes")
            if !agent.libraries.isEmpty {
                lines.append("            libraries: \(agent.libraries.joined(separator: " "))")
            }
        } else {
            lines.append("agent       none: the init prints \(InitramfsLayout.readinessMarker) and stays up")
        }
        let snp = measurements.sevSnp
        lines += [
            "vCPUs       \(snp.vcpus) (\(snp.vcpuType)), memory \(image.memoryMiB) MiB",
            "firmware    " + file(measurements.firmware),
            "SEV-SNP     launch digest \(snp.launchDigest)",
            "            vCPU signature \(snp.vcpuSignature), guest features \(snp.guestFeatures), vmm \(snp.vmm), "
                + "kernel hashes \(snp.kernelHashesPlacement)",
        ]
        if let assumption = snp.assumption { lines.append("            assumption: \(assumption)") }
        if let mrtd = measurements.tdx.mrtd {
            lines.append("TDX         MRTD \(mrtd)")
        } else {
            lines.append("TDX         no MRTD: \(measurements.tdx.error ?? "unknown reason")")
        }
        return lines.joined(separator: "\n")
    }
}
