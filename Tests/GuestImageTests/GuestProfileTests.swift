import CMKTesting
import Foundation
import GuestImage
import Testing

let profilesDirectory = SharedVectors.repositoryRoot.appendingPathComponent("guest-kernels")
let catalog = GuestProfileCatalog(directory: profilesDirectory)

@Suite("guest-kernels profiles")
struct GuestProfileTests {
    @Test("the catalog holds general, database and realtime")
    func catalogNames() {
        #expect(catalog.names == ["database", "general", "realtime"])
    }

    @Test(
        "each profile loads, names its folder, boots the cached kernel and has an init that signals readiness",
        arguments: ["general", "database", "realtime"])
    func profileLoads(name: String) throws {
        let profile = try catalog.profile(named: name)
        #expect(profile.name == name)
        #expect(profile.kernel == .cache)
        #expect(profile.modules.starts(with: ["virtio_pci", "virtio_console"]))
        #expect(profile.commandLine.hasPrefix("console=ttyS0 panic=-1"))
        #expect(!profile.commandLine.contains("#"))
        let initText = String(decoding: profile.initScript, as: UTF8.self)
        #expect(initText.hasPrefix("#!/bin/sh\n"))
        #expect(initText.contains(InitramfsLayout.readinessMarker))
        #expect(initText.contains("/" + InitramfsLayout.moduleListPath))
        #expect(initText.contains("/" + InitramfsLayout.agentPath))
        #expect(
            initText.contains("/dev/virtio-ports/cmk.control") && initText.contains("/dev/virtio-ports/cmk.platform"))
        // busybox ash must accept the script.
        let check = try ExternalTool.run(
            URL(fileURLWithPath: "/bin/busybox"), ["sh", "-n", profile.directory.appendingPathComponent("init").path])
        #expect(check.status == 0, "\(check.standardError)")
    }

    @Test(
        "every cmdline option's stated Kconfig requirement holds in Debian's cloud kernel config",
        arguments: ["general", "database", "realtime"])
    func cmdlineMatchesDebianConfig(name: String) throws {
        let kernel = try cachedKernel()
        let release = try #require(kernel.release)
        let config = try String(
            contentsOf: kernel.image.deletingLastPathComponent().appendingPathComponent("config-\(release)"),
            encoding: .utf8)
        let options = Set(config.split(separator: "\n").map(String.init))
        let cmdline = try String(
            contentsOf: profilesDirectory.appendingPathComponent("\(name)/cmdline"), encoding: .utf8)
        let claims = cmdline.split(separator: "\n").filter { $0.hasPrefix("#") }.flatMap { line in
            line.split(whereSeparator: { " :,;()".contains($0) }).filter {
                $0.hasPrefix("CONFIG_") && $0.hasSuffix("=y")
            }
        }
        for claim in claims {
            #expect(options.contains(String(claim)), "\(name)/cmdline says \(claim), Debian's config disagrees")
        }
        if name == "realtime" { #expect(claims.count >= 4) }
    }

    @Test(
        "every kernel-config fragment line is a Kconfig assignment or 'is not set', each with a reason above it",
        arguments: ["general", "database", "realtime"])
    func fragmentSyntax(name: String) throws {
        let fragment = try catalog.profile(named: name).kernelConfigFragment
        let lines = fragment.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let assignment = #/^CONFIG_[A-Z0-9_]+=(y|m|"[^"]*"|-?[0-9]+|0x[0-9a-fA-F]+)$/#
        let unset = #/^# CONFIG_[A-Z0-9_]+ is not set$/#
        var options = 0
        for (index, line) in lines.enumerated()
        where line.hasPrefix("CONFIG_") || (try? unset.wholeMatch(in: line)) != nil {
            options += 1
            if line.hasPrefix("CONFIG_") { #expect((try? assignment.wholeMatch(in: line)) != nil, "\(name): \(line)") }
            let previous = index > 0 ? lines[index - 1] : ""
            let reasonGiven = previous.hasPrefix("# ") && (try? unset.wholeMatch(in: previous)) == nil
            #expect(reasonGiven, "\(name): '\(line)' has no reason on the line above")
        }
        #expect(options >= 8)
        #expect(lines.allSatisfy { $0.count <= 120 }, "\(name): lines over 120 columns")
    }

    @Test("an unknown profile is an error that lists the known ones")
    func unknownProfile() {
        #expect { try catalog.profile(named: "gaming") } throws: { error in
            let error = try #require(error as? GuestImageError)
            return error.code == .unknownProfile && error.reason.contains("database, general, realtime")
        }
    }

    @Test("cmdline files drop comment lines and join parameters with single spaces")
    func commandLineFiles() throws {
        let text = "# comment\n\nconsole=ttyS0   panic=-1\n  # indented comment\n\tquiet\n"
        #expect(try GuestProfile.commandLine(from: text, profile: "t") == "console=ttyS0 panic=-1 quiet")
        #expect(throws: GuestImageError.self) { try GuestProfile.commandLine(from: "# nothing\n", profile: "t") }
        #expect(throws: GuestImageError.self) {
            try GuestProfile.commandLine(from: String(repeating: "a", count: 2048), profile: "t")
        }
    }

    @Test("profile.yaml is read strictly: unknown keys, bad ranges and a kernel path without modules are refused")
    func strictYAML() throws {
        let good = """
            name: t
            kernel: {image: cache}
            modules: [virtio_console]
            vcpus: 2
            memory-mib: 256
            """
        let cases: [(String, String)] = [
            ("unknown key", good + "\ncolour: blue"),
            ("vcpus 0", good.replacingOccurrences(of: "vcpus: 2", with: "vcpus: 0")),
            ("memory", good.replacingOccurrences(of: "memory-mib: 256", with: "memory-mib: 64")),
            (
                "path kernel without modules",
                good.replacingOccurrences(of: "{image: cache}", with: "{image: /boot/vmlinuz}")
            ),
            (
                "relative kernel path",
                good.replacingOccurrences(of: "{image: cache}", with: "{image: vmlinuz, modules: /m}")
            ),
            ("name mismatch", good.replacingOccurrences(of: "name: t", with: "name: other")),
            ("not a module name", good.replacingOccurrences(of: "[virtio_console]", with: "[\"a b\"]")),
        ]
        let directory = try temporaryDirectory().appendingPathComponent("t")
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent()) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data("console=ttyS0\n".utf8).write(to: directory.appendingPathComponent("cmdline"))
        try Data("#!/bin/sh\n".utf8).write(to: directory.appendingPathComponent("init"))
        try Data("# none\n".utf8).write(to: directory.appendingPathComponent("kernel-config.fragment"))
        try Data(good.utf8).write(to: directory.appendingPathComponent("profile.yaml"))
        let profile = try GuestProfile(directory: directory)
        #expect(profile.vcpus == 2 && profile.memoryMiB == 256 && profile.modules == ["virtio_console"])
        for (label, text) in cases {
            try Data(text.utf8).write(to: directory.appendingPathComponent("profile.yaml"))
            #expect(throws: GuestImageError.self, "\(label)") { try GuestProfile(directory: directory) }
        }
    }

    /// A minimal x86 bzImage header: the 0x55AA signature, "HdrS" and a kernel_version string at `pointer` + 0x200.
    static func fakeKernel(release: String, pointer: Int = 0x100, length: Int = 0x1000) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        bytes[0x1FE] = 0x55
        bytes[0x1FF] = 0xAA
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes[0x20E] = UInt8(pointer & 0xFF)
        bytes[0x20F] = UInt8(pointer >> 8)
        let text = Array("\(release) (builder@example) #1 SMP".utf8) + [0]
        if pointer != 0, pointer + 0x200 + text.count <= length { bytes.replaceSubrange((pointer + 0x200)..<(pointer + 0x200 + text.count), with: text) }
        return bytes
    }

    @Test("--kernel: the release is read from the bzImage header; files that are not one are refused, each saying why")
    func kernelRelease() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-kernel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
            let url = folder.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url
        }
        #expect(try GuestKernel.release(ofImage: try write("good", Self.fakeKernel(release: "9.9.9-test"))) == "9.9.9-test")
        let cases: [(String, [UInt8], String)] = [
            ("short", [UInt8](repeating: 0, count: 100), "100 bytes long"),
            ("elf", Array("\u{7F}ELF".utf8) + [UInt8](repeating: 0, count: 0x1000), "no Linux boot-protocol header"),
            ("pointer", Self.fakeKernel(release: "x", pointer: 0xFF00), "out of range"),
            ("zero", Self.fakeKernel(release: "x", pointer: 0), "out of range"),
            ("slash", Self.fakeKernel(release: "../../etc"), "not a release name"),
        ]
        for (name, bytes, reason) in cases {
            #expect { try GuestKernel.release(ofImage: try write(name, bytes)) } throws: { error in
                "\(error)".contains(reason)
            }
        }
        #expect { try GuestKernel.release(ofImage: folder.appendingPathComponent("absent")) } throws: { error in
            "\(error)".contains("not readable")
        }
        // Debian's cached kernel, when scripts/setup has unpacked it: the header agrees with the file name.
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        if let image = ((try? FileManager.default.contentsOfDirectory(atPath: boot.path)) ?? []).filter({ $0.hasPrefix("vmlinuz-") }).sorted().last {
            #expect(try GuestKernel.release(ofImage: boot.appendingPathComponent(image)) == String(image.dropFirst(8)))
        }
    }

    @Test("--kernel keeps the profile's command line and modules; a modules folder of another release, or none, is refused")
    func replacingKernel() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-kernel-\(UUID().uuidString)")
        let cache = folder.appendingPathComponent("cache")
        let modules = cache.appendingPathComponent("guest-kernel/lib/modules/9.9.9-test")
        try FileManager.default.createDirectory(at: modules, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let image = folder.appendingPathComponent("vmlinuz")
        try Data(Self.fakeKernel(release: "9.9.9-test")).write(to: image)
        let general = try catalog.profile(named: "general")
        let replaced = try general.replacingKernel(image: image, modules: nil, cacheDirectory: cache)
        #expect(replaced.kernel == .path(image: image.path, modules: modules.path))
        #expect(replaced.commandLine == general.commandLine && replaced.modules == general.modules)
        #expect(replaced.name == general.name && replaced.initScript == general.initScript)
        #expect(try GuestKernel.locate(replaced.kernel, cacheDirectory: cache).release == "9.9.9-test")
        let other = folder.appendingPathComponent("modules/1.2.3")
        #expect { try general.replacingKernel(image: image, modules: other, cacheDirectory: cache) } throws: { error in
            "\(error)".contains("for release 1.2.3") && "\(error)".contains("release 9.9.9-test")
        }
        let emptyCache = folder.appendingPathComponent("empty")
        #expect { try general.replacingKernel(image: image, modules: nil, cacheDirectory: emptyCache) } throws: { error in
            "\(error)".contains("--kernel-modules")
        }
    }
}
