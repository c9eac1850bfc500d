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
}
