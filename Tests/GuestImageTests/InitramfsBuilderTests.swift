import CMKTesting
import Crypto
import Foundation
import GuestImage
import Testing

func sha256(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

func builder(_ name: String, agent: URL? = nil) throws -> InitramfsBuilder {
    InitramfsBuilder(profile: try catalog.profile(named: name), kernel: try cachedKernel(), agent: agent)
}

@Suite("initramfs images", .serialized)
struct InitramfsBuilderTests {
    @Test("two builds of a profile are byte-identical", .timeLimit(.minutes(4)), arguments: ["general", "database"])
    func reproducible(name: String) async throws {
        let first = try await builder(name).build()
        let second = try await builder(name).build()
        #expect(sha256(first.bytes) == sha256(second.bytes))
        #expect(first.bytes.count % 512 == 0)
    }

    @Test("one changed byte of the init, of a module or of busybox gives a different image", .timeLimit(.minutes(4)))
    func oneByteChanges() async throws {
        let (contents, _) = try await builder("general").contents()
        let reference = sha256(try NewcArchive(InitramfsLayout.members(contents)).encoded())
        var changedInit = contents
        changedInit.initScript[changedInit.initScript.count - 2] ^= 0x01
        var changedBusybox = contents
        changedBusybox.busybox[1000] ^= 0x80
        let module = contents.modules[0]
        var changedModule = contents
        var moduleBytes = module.bytes
        moduleBytes[moduleBytes.count / 2] ^= 0x01
        changedModule.modules[0] = KernelModule(
            name: module.name, relativePath: module.relativePath, dependencies: module.dependencies,
            storedAs: module.storedAs, bytes: moduleBytes)
        for (label, variant) in [("init", changedInit), ("busybox", changedBusybox), ("module", changedModule)] {
            let digest = sha256(try NewcArchive(InitramfsLayout.members(variant)).encoded())
            #expect(digest != reference, "changing \(label) did not change the image")
        }
    }

    @Test(
        "the general image holds busybox and its applets, /dev/console, the init, the modules in load order",
        .timeLimit(.minutes(4)))
    func generalContents() async throws {
        let image = try await builder("general").build()
        #expect(image.agent == nil)
        let records = try NewcArchive.records(in: image.bytes)
        #expect(records.count == image.memberCount)
        func record(_ name: String) throws -> NewcRecord {
            try #require(records.first(where: { $0.name == name }), "\(name)")
        }
        #expect(try record("init").mode == 0o100755)
        #expect(try record("init").data == (try catalog.profile(named: "general")).initScript)
        #expect(try record("bin/busybox").data == [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox"))))
        #expect(try record("bin/sh").data == Array("/bin/busybox".utf8))
        #expect(try record("sbin/insmod").data == Array("/bin/busybox".utf8))
        #expect(try record("dev/console").rdevMajor == 5)
        #expect(try record("tmp").mode == 0o041777)
        #expect(try record("etc/cmk/profile").data == Array("general\n".utf8))
        let list = String(decoding: try record("etc/cmk/modules").data, as: UTF8.self).split(separator: "\n").map(
            String.init)
        #expect(list == image.modules.map(\.relativePath))
        #expect(
            list.map { ($0 as NSString).lastPathComponent } == [
                "virtio_ring.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko", "virtio.ko", "virtio_pci.ko",
                "virtio_console.ko", "virtio_blk.ko",
            ])
        let release = try #require(try cachedKernel().release)
        for module in image.modules {
            #expect(try record("lib/modules/\(release)/\(module.relativePath)").data == module.bytes)
        }
        #expect(!records.contains(where: { $0.name == InitramfsLayout.agentPath }))
        // Every applet link points at busybox, and none shadows a file the image places.
        let links = records.filter { $0.mode & 0o170000 == 0o120000 }
        #expect(links.count > 200)
        #expect(links.allSatisfy { $0.data == Array("/bin/busybox".utf8) })
    }

    @Test("GNU cpio lists the built image member for member", .timeLimit(.minutes(4)))
    func gnuCpioListsImage() async throws {
        let image = try await builder("realtime").build()
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/cpio"), ["-t", "--quiet"], input: Data(image.bytes))
        #expect(output.status == 0, "\(output.standardError)")
        let names = try NewcArchive.records(in: image.bytes).map(\.name)
        #expect(output.standardOutput.split(separator: "\n").map(String.init) == names)
    }

    @Test("a dynamically linked agent comes with the interpreter and every library ldd names", .timeLimit(.minutes(4)))
    func dynamicAgent() async throws {
        // Any dynamic executable stands in for cmk-guest here; cpio is one the tests need anyway.
        let stand = URL(fileURLWithPath: "/usr/bin/cpio")
        let image = try await builder("general", agent: stand).build()
        let agent = try #require(image.agent)
        let interpreter = try #require(agent.interpreter)
        #expect(interpreter.hasPrefix("/lib64/ld-linux-x86-64.so"))
        let ldd = try ExternalTool.run(URL(fileURLWithPath: "/usr/bin/ldd"), [stand.path])
        let expected = ldd.standardOutput.split(separator: "\n").compactMap { line -> String? in
            let text = line.trimmingCharacters(in: .whitespaces)
            let target = text.components(separatedBy: " => ").last ?? text
            return target.hasPrefix("/") ? String(target.prefix(while: { $0 != " " })) : nil
        }
        #expect(Set(agent.libraries.map(\.path)) == Set(expected).union([interpreter]))
        let records = try NewcArchive.records(in: image.bytes)
        #expect(records.first(where: { $0.name == InitramfsLayout.agentPath })?.data == agent.bytes)
        #expect(records.first(where: { $0.name == InitramfsLayout.agentPath })?.mode == 0o100755)
        for library in agent.libraries {
            let record = try #require(records.first(where: { "/" + $0.name == library.path }), "\(library.path)")
            #expect(record.data == [UInt8](try Data(contentsOf: URL(fileURLWithPath: library.path))))
        }
    }

    @Test(
        "a statically linked agent needs no libraries; an unreadable or non-ELF agent is refused",
        .timeLimit(.minutes(4)))
    func staticAndBadAgents() async throws {
        let image = try await builder("general", agent: URL(fileURLWithPath: "/bin/busybox")).build()
        #expect(image.agent?.interpreter == nil && image.agent?.libraries.isEmpty == true)
        await #expect {
            try await builder("general", agent: URL(fileURLWithPath: "/no/such/cmk-guest")).build()
        } throws: {
            ($0 as? GuestImageError)?.code == .missingInput
        }
        let script = profilesDirectory.appendingPathComponent("general/init")
        await #expect { try await builder("general", agent: script).build() } throws: {
            ($0 as? GuestImageError)?.code == .badExecutable
        }
    }
}
