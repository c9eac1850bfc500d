public import Foundation
import BinaryFormat

/// How a module file is stored under lib/modules (the kernel's CONFIG_MODULE_COMPRESS_* choice).
public enum ModuleCompression: String, Sendable, Hashable, Codable, CaseIterable {
    case none, xz, zstd, gzip

    /// The file name suffix: `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`.
    public var suffix: String {
        switch self {
        case .none: ".ko"
        case .xz: ".ko.xz"
        case .zstd: ".ko.zst"
        case .gzip: ".ko.gz"
        }
    }

    /// The program and arguments that write the decompressed module to standard output.
    var decompressor: (tool: String, arguments: [String])? {
        switch self {
        case .none: nil
        case .xz: ("xz", ["-dc", "--"])
        case .zstd: ("zstd", ["-dcq", "--"])
        case .gzip: ("gzip", ["-dc", "--"])
        }
    }
}

/// One kernel module as it goes into an image: decompressed, at the path depmod would give it, with what it needs.
public struct KernelModule: Sendable, Hashable {
    /// The module name (`-` in file names read as `_`, as the kernel does).
    public let name: String
    /// The path below `lib/modules/<release>`, always ending in `.ko`: a compressed module is stored decompressed,
    /// so busybox `insmod` loads it whatever the kernel's own decompression support.
    public let relativePath: String
    /// `depends=` from the module's `.modinfo`, in the order the module lists them.
    public let dependencies: [String]
    /// How the file was stored in the tree it came from.
    public let storedAs: ModuleCompression
    public let bytes: [UInt8]

    public init(name: String, relativePath: String, dependencies: [String], storedAs: ModuleCompression, bytes: [UInt8])
    {
        self.name = name
        self.relativePath = relativePath
        self.dependencies = dependencies
        self.storedAs = storedAs
        self.bytes = bytes
    }
}

/// The modules of one kernel release, `lib/modules/<release>`.
///
/// Debian's kernel package is unpacked here, not installed, so there is no `modules.dep` (depmod writes it at install
/// time). Dependencies are read where depmod reads them: the `depends=` entry of each module's ELF `.modinfo`
/// section. Modules listed in `modules.builtin` are part of the kernel and need no loading.
public struct KernelModuleTree: Sendable {
    public let directory: URL
    /// The release the tree belongs to (the folder name, e.g. `6.1.0-56-cloud-amd64`).
    public let release: String
    /// Module name → path of its file relative to ``directory``.
    public let files: [String: String]
    /// Modules built into the kernel.
    public let builtin: Set<String>

    /// Indexes every `.ko`, `.ko.xz`, `.ko.zst` and `.ko.gz` below `directory`.
    public init(directory: URL) throws(GuestImageError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw GuestImageError(.missingInput, "no kernel modules folder at \(directory.path) (run scripts/setup)")
        }
        self.directory = directory.standardizedFileURL
        self.release = directory.standardizedFileURL.lastPathComponent
        var files: [String: String] = [:]
        let base = self.directory.path.hasSuffix("/") ? self.directory.path : self.directory.path + "/"
        guard let walker = fm.enumerator(atPath: base) else {
            throw GuestImageError(.missingInput, "cannot list \(base)")
        }
        while let relative = walker.nextObject() as? String {
            let fileName = (relative as NSString).lastPathComponent
            guard let name = Self.moduleName(fileName: fileName) else { continue }
            if let other = files[name] {
                throw GuestImageError(
                    .badModule, "module \(name) is in \(base) twice (\(other) and \(relative)); remove one")
            }
            files[name] = relative
        }
        self.files = files
        var builtin: Set<String> = []
        if let text = try? String(contentsOf: self.directory.appendingPathComponent("modules.builtin"), encoding: .utf8)
        {
            for line in text.split(separator: "\n") {
                if let name = Self.moduleName(fileName: (String(line) as NSString).lastPathComponent) {
                    builtin.insert(name)
                }
            }
        }
        self.builtin = builtin
    }

    /// The module name for a module file name (`virtio-rng.ko.xz` → `virtio_rng`); nil for other files.
    public static func moduleName(fileName: String) -> String? {
        for compression in ModuleCompression.allCases where fileName.hasSuffix(compression.suffix) {
            let stem = fileName.dropLast(compression.suffix.count)
            return stem.isEmpty ? nil : normalize(String(stem))
        }
        return nil
    }

    static func normalize(_ name: String) -> String { name.replacingOccurrences(of: "-", with: "_") }

    /// What a profile's module list resolves to.
    public struct Resolution: Sendable, Hashable {
        /// Every module to load, each after everything it depends on.
        public let modules: [KernelModule]
        /// Requested or needed modules that are built into this kernel, so not loaded.
        public let builtin: [String]
    }

    /// Resolves `requested` and everything it depends on into a load order: each module after its dependencies,
    /// otherwise in the order asked for (depth first), so the same request always gives the same order.
    ///
    /// Throws ``GuestImageError/Code/badModule`` for a module neither in the tree nor built in, a module whose
    /// `.modinfo` cannot be read, a `vermagic` of another release, or a dependency cycle.
    public func resolve(_ requested: [String]) async throws(GuestImageError) -> Resolution {
        var loaded: [String: KernelModule] = [:]
        var order: [KernelModule] = []
        var builtinNeeded: [String] = []
        var visiting: [String] = []

        func visit(_ rawName: String, neededBy: String?) async throws(GuestImageError) {
            let name = Self.normalize(rawName)
            if loaded[name] != nil || builtinNeeded.contains(name) { return }
            if visiting.contains(name) {
                throw GuestImageError(
                    .badModule,
                    "modules depend on each other in a cycle: \((visiting + [name]).joined(separator: " -> "))")
            }
            guard let relative = files[name] else {
                if builtin.contains(name) {
                    builtinNeeded.append(name)
                    return
                }
                let context = neededBy.map { " (needed by \($0))" } ?? ""
                throw GuestImageError(
                    .badModule, "module \(name)\(context) is neither in \(directory.path) nor built into the kernel")
            }
            visiting.append(name)
            let module = try await load(name: name, relativePath: relative)
            for dependency in module.dependencies {
                try await visit(dependency, neededBy: name)
            }
            visiting.removeLast()
            loaded[name] = module
            order.append(module)
        }
        for name in requested {
            try await visit(name, neededBy: nil)
        }
        return Resolution(modules: order, builtin: builtinNeeded)
    }

    /// Reads one module file, decompressing it if it is stored compressed, and reads its `.modinfo`.
    func load(name: String, relativePath: String) async throws(GuestImageError) -> KernelModule {
        let url = directory.appendingPathComponent(relativePath)
        let compression = ModuleCompression.allCases.last(where: { relativePath.hasSuffix($0.suffix) }) ?? .none
        var bytes: [UInt8]
        if let (tool, arguments) = compression.decompressor {
            let outcome = try await HostTool.run(tool, arguments + [url.path])
            guard outcome.status == 0, !outcome.timedOut else {
                throw GuestImageError(
                    .toolFailed,
                    "\(tool) cannot decompress \(url.path): "
                        + outcome.errorText.trimmingCharacters(in: .whitespacesAndNewlines)
                )
            }
            bytes = outcome.output
        } else {
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw GuestImageError(.missingInput, "cannot read the module \(url.path)")
            }
            bytes = [UInt8](data)
        }
        let info: ModuleInfo
        do {
            info = try ModuleInfo(module: bytes)
        } catch {
            throw GuestImageError(.badModule, "\(url.path) is not a readable kernel module: \(error.description)")
        }
        if let vermagic = info.values["vermagic"]?.split(separator: " ").first, vermagic != release {
            throw GuestImageError(
                .badModule, "\(url.path) was built for kernel \(vermagic), not \(release); it would not load")
        }
        let dependencies = (info.values["depends"] ?? "").split(separator: ",").map { Self.normalize(String($0)) }
        let stored = String(relativePath.dropLast(compression.suffix.count)) + ".ko"
        return KernelModule(
            name: name, relativePath: stored, dependencies: dependencies, storedAs: compression, bytes: bytes)
    }
}

/// The `.modinfo` section of a kernel module: NUL-separated `key=value` strings (`depends`, `vermagic`, `alias` ...).
struct ModuleInfo: Sendable {
    /// The first value of each key.
    let values: [String: String]

    init(module: [UInt8]) throws(BinaryFormatError) {
        let elf = try ELFFile(bytes: module)
        guard let section = try elf.section(named: ".modinfo") else {
            throw BinaryFormatError(.invalidValue, field: ".modinfo", offset: 0, "the ELF file has no .modinfo section")
        }
        var values: [String: String] = [:]
        for entry in section.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            let key = String(text[..<equals])
            if values[key] == nil { values[key] = String(text[text.index(after: equals)...]) }
        }
        self.values = values
    }
}
