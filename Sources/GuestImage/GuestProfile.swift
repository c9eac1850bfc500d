public import Foundation
import Yams

/// A child-kernel profile: one folder under `guest-kernels/` (the format is in guest-kernels/README.md).
///
/// - `profile.yaml`: name, description, kernel, modules to load, vCPU and memory defaults;
/// - `cmdline`: the kernel command line, one parameter or more per line, `#` lines explaining them;
/// - `init`: the busybox shell script the kernel runs as PID 1;
/// - `kernel-config.fragment`: what a custom kernel build for this workload would set (documentation only: the
///   default kernel is Debian's, built with Debian's configuration).
public struct GuestProfile: Sendable, Hashable {
    /// Where the kernel comes from.
    public enum KernelSource: Sendable, Hashable {
        /// Debian's `linux-image-cloud-amd64`, which scripts/setup unpacks into `<cache>/guest-kernel`.
        case cache
        /// A kernel built elsewhere: its image and, when the profile loads modules, its `lib/modules/<release>` folder.
        case path(image: String, modules: String?)
    }

    public static let profileFile = "profile.yaml"
    public static let commandLineFile = "cmdline"
    public static let initFile = "init"
    public static let fragmentFile = "kernel-config.fragment"
    /// x86's COMMAND_LINE_SIZE, including the terminating NUL.
    public static let maximumCommandLineLength = 2047

    public let name: String
    public let summary: String
    public private(set) var kernel: KernelSource
    /// Modules to load (their dependencies are added and ordered by ``KernelModuleTree/resolve(_:)``).
    public let modules: [String]
    public let vcpus: Int
    public let memoryMiB: Int
    /// The command line, `cmdline` with comments dropped and parameters joined by single spaces.
    public let commandLine: String
    public let initScript: [UInt8]
    public let kernelConfigFragment: String
    public let directory: URL

    /// Reads the profile in `directory`; the folder name must equal the profile's `name`.
    public init(directory: URL) throws(GuestImageError) {
        self.directory = directory
        let folder = directory.lastPathComponent
        func read(_ file: String) throws(GuestImageError) -> Data {
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(file).path) else {
                throw GuestImageError(.badProfile, "profile '\(folder)' has no readable \(file) (\(directory.path))")
            }
            return data
        }
        let yaml = String(decoding: try read(Self.profileFile), as: UTF8.self)
        let fields = try ProfileYAML(text: yaml, profile: folder)
        guard fields.name == folder else {
            throw GuestImageError(
                .badProfile, "profile.yaml in '\(folder)' names the profile '\(fields.name)'; they must agree")
        }
        name = fields.name
        summary = fields.description
        kernel = fields.kernel
        modules = fields.modules
        vcpus = fields.vcpus
        memoryMiB = fields.memoryMiB
        commandLine = try Self.commandLine(
            from: String(decoding: try read(Self.commandLineFile), as: UTF8.self), profile: folder)
        initScript = [UInt8](try read(Self.initFile))
        guard initScript.starts(with: Array("#!".utf8)) else {
            throw GuestImageError(.badProfile, "the init of profile '\(folder)' must start with '#!' (e.g. #!/bin/sh)")
        }
        kernelConfigFragment = String(decoding: try read(Self.fragmentFile), as: UTF8.self)
    }

    /// This profile with another kernel (`cmk launch --kernel`, `cmk update --kernel`): the command line, init, modules
    /// and sizes stay the profile's. `image` must be an x86 bzImage; `modules` is its `lib/modules/<release>` folder,
    /// and when it is nil and the profile loads modules, the cache kernel's modules are used if, and only if, the
    /// image's own release string (the setup header's `kernel_version`) names the cache kernel's release.
    public func replacingKernel(
        image: URL, modules: URL?, cacheDirectory: URL
    ) throws(GuestImageError) -> GuestProfile {
        let release = try GuestKernel.release(ofImage: image)
        var folder = modules?.standardizedFileURL
        if let given = folder {
            guard given.lastPathComponent == release else {
                throw GuestImageError(
                    .badModule,
                    "the modules folder \(given.path) is for release \(given.lastPathComponent), but \(image.path) is "
                        + "release \(release)")
            }
        } else if !self.modules.isEmpty {
            let cached = cacheDirectory.appendingPathComponent("guest-kernel/lib/modules").appendingPathComponent(release)
            guard FileManager.default.fileExists(atPath: cached.path) else {
                throw GuestImageError(
                    .missingInput,
                    "profile '\(name)' loads modules and \(image.path) is release \(release), which has no modules in "
                        + "\(cached.deletingLastPathComponent().path); name its lib/modules/\(release) folder with "
                        + "--kernel-modules")
            }
            folder = cached
        }
        var copy = self
        copy.kernel = .path(image: image.standardizedFileURL.path, modules: folder?.path)
        return copy
    }

    /// Joins the parameters of a `cmdline` file: blank lines and lines starting with `#` are dropped, the rest are
    /// split on whitespace and joined with single spaces.
    public static func commandLine(from text: String, profile: String) throws(GuestImageError) -> String {
        let parameters = text.split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }) }
        let line = parameters.joined(separator: " ")
        guard !line.isEmpty else {
            throw GuestImageError(.badProfile, "the cmdline of profile '\(profile)' holds no parameters")
        }
        guard line.utf8.count <= maximumCommandLineLength, line.allSatisfy({ $0.isASCII && !$0.isNewline }) else {
            throw GuestImageError(
                .badProfile,
                "the cmdline of profile '\(profile)' must be ASCII and at most \(maximumCommandLineLength) bytes")
        }
        return line
    }
}

/// The kernel a profile boots, found on this host.
public struct GuestKernel: Sendable, Hashable {
    public let image: URL
    /// The release (`uname -r`), known from the modules folder or the cache's file name.
    public let release: String?
    /// `lib/modules/<release>`, when there is one.
    public let modulesDirectory: URL?

    public init(image: URL, release: String?, modulesDirectory: URL?) {
        self.image = image
        self.release = release
        self.modulesDirectory = modulesDirectory
    }

    /// The release an x86 bzImage names in its setup header (Linux boot protocol ≥ 2.00: "HdrS" at 0x202, the
    /// `kernel_version` pointer at 0x20E, the string at pointer + 0x200), up to its first space, e.g.
    /// `6.1.0-56-cloud-amd64`. Anything else is refused: QEMU would not boot it as a direct kernel either.
    public static func release(ofImage image: URL) throws(GuestImageError) -> String {
        guard let handle = FileHandle(forReadingAtPath: image.path) else {
            throw GuestImageError(.missingInput, "the kernel image \(image.path) is not readable")
        }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 64 * 1024)) ?? Data())
        func fail(_ why: String) -> GuestImageError {
            GuestImageError(.badProfile, "\(image.path) is not an x86 bzImage kernel: \(why)")
        }
        guard head.count >= 0x210 else { throw fail("it is \(head.count) bytes long") }
        guard head[0x1FE] == 0x55, head[0x1FF] == 0xAA, Array(head[0x202..<0x206]) == Array("HdrS".utf8) else {
            throw fail("no Linux boot-protocol header (0x55AA and HdrS)")
        }
        let pointer = Int(head[0x20E]) | Int(head[0x20F]) << 8
        let start = pointer + 0x200
        guard pointer != 0, start < head.count else { throw fail("its kernel_version pointer 0x\(String(pointer, radix: 16)) is out of range") }
        var end = start
        while end < head.count, end - start < 256, head[end] != 0, head[end] != 0x20 { end += 1 }
        let text = head[start..<end]
        guard !text.isEmpty, text.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F }) else {
            throw fail("its kernel_version string is not a release name")
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Finds the kernel of `source`: for ``GuestProfile/KernelSource/cache`` the last `boot/vmlinuz-*` in
    /// `<cache>/guest-kernel` (as `cmk doctor` picks it) and its `lib/modules/<release>`.
    public static func locate(
        _ source: GuestProfile.KernelSource, cacheDirectory: URL
    ) throws(GuestImageError) -> GuestKernel {
        let fm = FileManager.default
        switch source {
        case .cache:
            let root = cacheDirectory.appendingPathComponent("guest-kernel")
            let boot = root.appendingPathComponent("boot")
            let images = ((try? fm.contentsOfDirectory(atPath: boot.path)) ?? []).filter { $0.hasPrefix("vmlinuz-") }
                .sorted()
            guard let image = images.last else {
                throw GuestImageError(.missingInput, "no guest kernel in \(boot.path) (run scripts/setup)")
            }
            let release = String(image.dropFirst("vmlinuz-".count))
            let modules = root.appendingPathComponent("lib/modules").appendingPathComponent(release)
            return GuestKernel(
                image: boot.appendingPathComponent(image), release: release,
                modulesDirectory: fm.fileExists(atPath: modules.path) ? modules : nil)
        case .path(let image, let modules):
            guard fm.isReadableFile(atPath: image) else {
                throw GuestImageError(.missingInput, "the profile's kernel image \(image) is not readable")
            }
            let folder = modules.map { URL(fileURLWithPath: $0) }
            return GuestKernel(
                image: URL(fileURLWithPath: image), release: folder?.lastPathComponent, modulesDirectory: folder)
        }
    }
}

/// The profiles folder (`guest-kernels/`): one subfolder per profile.
public struct GuestProfileCatalog: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// The environment variable that names the profiles folder.
    public static let environmentVariable = "CMK_GUEST_KERNELS"

    /// `$CMK_GUEST_KERNELS`, else the `guest-kernels` folder beside `Package.swift` in a source tree above
    /// `executable`; nil when neither exists.
    public static func locate(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: URL = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath()
    ) -> URL? {
        if let explicit = environment[environmentVariable], !explicit.isEmpty { return URL(fileURLWithPath: explicit) }
        var ancestor = executable.deletingLastPathComponent()
        for _ in 0..<8 {
            let candidate = ancestor.appendingPathComponent("guest-kernels")
            if FileManager.default.fileExists(atPath: candidate.path),
                FileManager.default.fileExists(atPath: ancestor.appendingPathComponent("Package.swift").path)
            {
                return candidate
            }
            ancestor = ancestor.deletingLastPathComponent()
        }
        return nil
    }

    /// The names of the folders that hold a `profile.yaml`, sorted.
    public var names: [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return entries.filter {
            FileManager.default.fileExists(
                atPath: directory.appendingPathComponent($0).appendingPathComponent(GuestProfile.profileFile).path)
        }.sorted()
    }

    /// The profile called `name`; an unknown name is an error that lists the known ones.
    public func profile(named name: String) throws(GuestImageError) -> GuestProfile {
        let known = names
        guard known.contains(name) else {
            throw GuestImageError(
                .unknownProfile,
                "no profile '\(name)' in \(directory.path); known profiles: "
                    + (known.isEmpty ? "none" : known.joined(separator: ", "))
            )
        }
        return try GuestProfile(directory: directory.appendingPathComponent(name))
    }
}

/// The fields of `profile.yaml`, read strictly: unknown keys, wrong types and out-of-range values are errors.
struct ProfileYAML {
    static let keys: Set<String> = ["name", "description", "kernel", "modules", "vcpus", "memory-mib"]
    static let kernelKeys: Set<String> = ["image", "modules"]

    let name: String
    let description: String
    let kernel: GuestProfile.KernelSource
    let modules: [String]
    let vcpus: Int
    let memoryMiB: Int

    init(text: String, profile: String) throws(GuestImageError) {
        func fail(_ reason: String) -> GuestImageError {
            GuestImageError(.badProfile, "profile.yaml of '\(profile)': \(reason)")
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw fail("the file is empty") }
            root = node
        } catch let error as GuestImageError {
            throw error
        } catch {
            let first = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            throw fail("not valid YAML: \(first)")
        }
        guard let mapping = root.mapping else { throw fail("the top level must be a mapping") }
        var values: [String: Node] = [:]
        for (key, value) in mapping {
            guard let key = key.string, Self.keys.contains(key) else {
                throw fail(
                    "unknown key '\(key.string ?? "?")'; known keys: \(Self.keys.sorted().joined(separator: ", "))")
            }
            values[key] = value
        }
        func string(_ key: String, in values: [String: Node]) throws(GuestImageError) -> String? {
            guard let node = values[key] else { return nil }
            guard let text = node.scalar?.string, !text.isEmpty else {
                throw fail("'\(key)' must be a non-empty string")
            }
            return text
        }
        func integer(_ key: String, _ range: ClosedRange<Int>) throws(GuestImageError) -> Int {
            guard let node = values[key] else { throw fail("'\(key)' is missing") }
            guard let value = node.int, range.contains(value) else {
                throw fail("'\(key)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        guard let name = try string("name", in: values) else { throw fail("'name' is missing") }
        guard name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) else {
            throw fail("the name '\(name)' must use only a-z, 0-9 and '-'")
        }
        self.name = name
        description = try string("description", in: values) ?? ""
        vcpus = try integer("vcpus", 1...64)
        memoryMiB = try integer("memory-mib", 128...(1 << 20))

        guard let kernelNode = values["kernel"], let kernelMapping = kernelNode.mapping else {
            throw fail("'kernel' must be a mapping with 'image: cache' or 'image: <path>' (and 'modules: <folder>')")
        }
        var kernelValues: [String: Node] = [:]
        for (key, value) in kernelMapping {
            guard let key = key.string, Self.kernelKeys.contains(key) else {
                throw fail("unknown key 'kernel.\(key.string ?? "?")'; known: image, modules")
            }
            kernelValues[key] = value
        }
        guard let image = try string("image", in: kernelValues) else { throw fail("'kernel.image' is missing") }
        let modulesFolder = try string("modules", in: kernelValues)
        if image == "cache" {
            guard modulesFolder == nil else {
                throw fail("'kernel.modules' is only given with an image path, not 'cache'")
            }
            kernel = .cache
        } else {
            guard image.hasPrefix("/"), modulesFolder?.hasPrefix("/") ?? true else {
                throw fail("'kernel.image' is 'cache' or an absolute path; so is 'kernel.modules'")
            }
            kernel = .path(image: image, modules: modulesFolder)
        }

        var modules: [String] = []
        if let node = values["modules"] {
            guard let sequence = node.sequence else { throw fail("'modules' must be a list of module names") }
            for item in sequence {
                guard let module = item.string, !module.isEmpty,
                    module.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
                else {
                    throw fail("'modules' holds '\(item.string ?? "?")', which is not a module name")
                }
                modules.append(module)
            }
        }
        if case .path(_, nil) = kernel, !modules.isEmpty {
            throw fail(
                "the profile loads modules, so 'kernel.modules' must name the kernel's lib/modules/<release> folder")
        }
        self.modules = modules
    }
}
