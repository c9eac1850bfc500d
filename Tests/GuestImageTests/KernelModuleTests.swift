import CMKTesting
import Foundation
import GuestImage
import Testing

/// The cache's Debian kernel (scripts/setup puts it there).
func cachedKernel() throws -> GuestKernel {
    try GuestKernel.locate(.cache, cacheDirectory: SharedVectors.cacheDirectory)
}

func cachedModuleTree() throws -> KernelModuleTree {
    let kernel = try cachedKernel()
    return try KernelModuleTree(directory: try #require(kernel.modulesDirectory, "the cache has no lib/modules"))
}

@Suite("kernel modules from Debian's cloud kernel")
struct KernelModuleTests {
    @Test("the cache's kernel ships the virtio drivers as plain .ko modules without a modules.dep")
    func cacheLayout() throws {
        let tree = try cachedModuleTree()
        #expect(tree.release == "6.1.0-56-cloud-amd64")
        #expect(!FileManager.default.fileExists(atPath: tree.directory.appendingPathComponent("modules.dep").path))
        for name in [
            "virtio", "virtio_ring", "virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_console",
        ] {
            let path = try #require(tree.files[name], "\(name)")
            #expect(path.hasSuffix("/\(name).ko"))
        }
        #expect(KernelModuleTree.moduleName(fileName: "virtio-rng.ko.xz") == "virtio_rng")
        #expect(KernelModuleTree.moduleName(fileName: "modules.order") == nil)
    }

    @Test("virtio_pci and virtio_console resolve to a load order with every dependency first")
    func loadOrder() async throws {
        let resolution = try await cachedModuleTree().resolve(["virtio_pci", "virtio_console"])
        #expect(
            resolution.modules.map(\.name) == [
                "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci",
                "virtio_console",
            ])
        #expect(resolution.builtin.isEmpty)
        let byName = Dictionary(uniqueKeysWithValues: resolution.modules.map { ($0.name, $0) })
        #expect(
            byName["virtio_pci"]?.dependencies == [
                "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio",
            ])
        #expect(byName["virtio_console"]?.dependencies == ["virtio", "virtio_ring"])
        #expect(byName["virtio_ring"]?.dependencies == [])
        for (index, module) in resolution.modules.enumerated() {
            for dependency in module.dependencies {
                let position = try #require(resolution.modules.firstIndex(where: { $0.name == dependency }))
                #expect(position < index, "\(dependency) must load before \(module.name)")
            }
            #expect(module.storedAs == .none)
            #expect(module.bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]))
        }
    }

    @Test("a module that is neither in the tree nor built in is an error naming it")
    func unknownModule() async throws {
        let tree = try cachedModuleTree()
        await #expect { try await tree.resolve(["virtio_console", "no_such_driver"]) } throws: { error in
            let error = try #require(error as? GuestImageError)
            return error.code == .badModule && error.reason.contains("no_such_driver")
        }
    }

    @Test("xz-, zstd- and gzip-compressed modules are stored decompressed, byte for byte, with a .ko name")
    func compressedModules() async throws {
        let source = try cachedModuleTree()
        let directory = try temporaryDirectory().appendingPathComponent(source.release)
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent()) }
        let folder = directory.appendingPathComponent("kernel/drivers/virtio")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let compressors: [(String, String, [String])] = [
            ("virtio_ring", "xz", ["xz", "-T1", "--check=crc32"]),
            ("virtio", "zst", ["zstd", "-q", "--rm"]), ("virtio_pci_modern_dev", "gz", ["gzip", "-n"]),
        ]
        for (name, _, command) in compressors {
            let original = source.directory.appendingPathComponent(try #require(source.files[name]))
            let copy = folder.appendingPathComponent("\(name).ko")
            try FileManager.default.copyItem(at: original, to: copy)
            let output = try ExternalTool.run(URL(fileURLWithPath: "/usr/bin/env"), command + [copy.path])
            #expect(output.status == 0, "\(output.standardError)")
        }
        let tree = try KernelModuleTree(directory: directory)
        #expect(tree.files["virtio_ring"] == "kernel/drivers/virtio/virtio_ring.ko.xz")
        let resolution = try await tree.resolve(["virtio", "virtio_pci_modern_dev"])
        #expect(resolution.modules.map(\.name) == ["virtio_ring", "virtio", "virtio_pci_modern_dev"])
        #expect(resolution.modules.map(\.storedAs) == [.xz, .zstd, .gzip])
        for module in resolution.modules {
            #expect(module.relativePath == "kernel/drivers/virtio/\(module.name).ko")
            let original = source.directory.appendingPathComponent(try #require(source.files[module.name]))
            #expect(Data(module.bytes) == FileManager.default.contents(atPath: original.path), "\(module.name)")
        }
    }

    @Test("a module built for another kernel release is refused, and built-in modules are reported, not loaded")
    func releaseAndBuiltin() async throws {
        let source = try cachedModuleTree()
        let directory = try temporaryDirectory().appendingPathComponent("6.1.0-99-other")
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent()) }
        let folder = directory.appendingPathComponent("kernel")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: source.directory.appendingPathComponent(try #require(source.files["virtio"])),
            to: folder.appendingPathComponent("virtio.ko"))
        try Data("kernel/drivers/virtio/virtio_ring.ko\n".utf8).write(
            to: directory.appendingPathComponent("modules.builtin"))
        let tree = try KernelModuleTree(directory: directory)
        await #expect { try await tree.resolve(["virtio"]) } throws: { error in
            let error = try #require(error as? GuestImageError)
            return error.code == .badModule && error.reason.contains("6.1.0-56-cloud-amd64")
        }
        let builtinOnly = try await tree.resolve(["virtio_ring"])
        #expect(builtinOnly.modules.isEmpty && builtinOnly.builtin == ["virtio_ring"])
    }
}
