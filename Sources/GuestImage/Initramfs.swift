public import Foundation

/// Everything that goes into a child's initramfs, gathered but not yet laid out.
public struct InitramfsContents: Sendable, Hashable {
    public var profileName: String
    /// The profile's `init`, run by the kernel as PID 1.
    public var initScript: [UInt8]
    /// A statically linked busybox.
    public var busybox: [UInt8]
    /// Applet paths (`bin/sh`, `sbin/insmod` ...), each becoming a link to `/bin/busybox`.
    public var busyboxApplets: [String]
    /// `uname -r` of the kernel the modules belong to; needed when there are modules.
    public var kernelRelease: String?
    /// In load order.
    public var modules: [KernelModule]
    public var agent: AgentBinary?

    public init(
        profileName: String, initScript: [UInt8], busybox: [UInt8], busyboxApplets: [String], kernelRelease: String?,
        modules: [KernelModule], agent: AgentBinary?
    ) {
        self.profileName = profileName
        self.initScript = initScript
        self.busybox = busybox
        self.busyboxApplets = busyboxApplets
        self.kernelRelease = kernelRelease
        self.modules = modules
        self.agent = agent
    }
}

/// Where things are inside a child's initramfs. The profile's init reads `etc/cmk/modules` (one path below
/// `/lib/modules/<release>` per line, in load order) and execs `sbin/cmk-guest` when it is there.
public enum InitramfsLayout {
    public static let initPath = "init"
    public static let busyboxPath = "bin/busybox"
    public static let agentPath = "sbin/cmk-guest"
    public static let profilePath = "etc/cmk/profile"
    public static let moduleListPath = "etc/cmk/modules"
    /// What every profile's init prints on the console when it has no agent to exec, once the ports are linked.
    public static let readinessMarker = "CMK-INIT-READY"
    /// Mount points and scratch folders the init uses.
    public static let directories: [(path: String, permissions: UInt32)] = [
        ("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755), ("tmp", 0o1777), ("root", 0o700),
        ("etc/cmk", 0o755),
    ]

    /// The archive members for `contents`.
    ///
    /// Busybox applet links that would land on a file cmk places (the init, the agent, a library) are left out, as
    /// are applets at the top level (`linuxrc`).
    public static func members(_ contents: InitramfsContents) throws(GuestImageError) -> [ArchiveMember] {
        var members: [ArchiveMember] = directories.map { ArchiveMember.directory($0.path, permissions: $0.permissions) }
        // The kernel opens /dev/console for init before anything is mounted; devtmpfs later covers it.
        members.append(.characterDevice("dev/console", major: 5, minor: 1, permissions: 0o600))
        members.append(.file(initPath, contents.initScript, permissions: 0o755))
        members.append(.file(busyboxPath, contents.busybox, permissions: 0o755))
        members.append(.file(profilePath, Array((contents.profileName + "\n").utf8)))

        var moduleList = ""
        if !contents.modules.isEmpty {
            guard let release = contents.kernelRelease else {
                throw GuestImageError(.badModule, "modules were given without the kernel release they belong to")
            }
            for module in contents.modules {
                members.append(.file("lib/modules/\(release)/\(module.relativePath)", module.bytes))
                moduleList += module.relativePath + "\n"
            }
        }
        members.append(.file(moduleListPath, Array(moduleList.utf8)))

        if let agent = contents.agent {
            members.append(.file(agentPath, agent.bytes, permissions: 0o755))
            for library in agent.libraries {
                members.append(
                    .file(String(library.path.drop(while: { $0 == "/" })), library.bytes, permissions: 0o755))
            }
        }
        var taken = Set(members.map(\.path))
        for applet in contents.busyboxApplets.sorted() where applet.contains("/") && !taken.contains(applet) {
            members.append(.symlink(applet, target: "/" + busyboxPath))
            taken.insert(applet)
        }
        return members
    }
}

/// A built initramfs: the archive bytes (uncompressed newc) and what went into them.
public struct Initramfs: Sendable, Hashable {
    public let bytes: [UInt8]
    public let memberCount: Int
    public let modules: [KernelModule]
    public let builtinModules: [String]
    public let agent: AgentBinary?
}

/// Builds a profile's initramfs from the host's busybox, the kernel's modules, the profile's init and, optionally,
/// the agent.
///
/// The archive is not compressed: its bytes are then a function of the inputs alone, whatever compressor version a
/// host has, which is what a launch measurement over the initrd needs. Same inputs give byte-identical output.
public struct InitramfsBuilder: Sendable {
    public var profile: GuestProfile
    public var kernel: GuestKernel
    /// The agent executable; nil builds an image without one (the init then prints its readiness marker and waits).
    public var agent: URL?
    /// A statically linked busybox (Debian's busybox-static installs it at /bin/busybox).
    public var busybox: URL

    public init(
        profile: GuestProfile, kernel: GuestKernel, agent: URL? = nil,
        busybox: URL = URL(fileURLWithPath: "/bin/busybox")
    ) {
        self.profile = profile
        self.kernel = kernel
        self.agent = agent
        self.busybox = busybox
    }

    /// Gathers the inputs: reads busybox and lists its applets, resolves the modules, loads the agent.
    public func contents() async throws(GuestImageError) -> (InitramfsContents, builtin: [String]) {
        guard let busyboxData = FileManager.default.contents(atPath: busybox.path) else {
            throw GuestImageError(.missingInput, "cannot read busybox at \(busybox.path) (apt install busybox-static)")
        }
        let busyboxBytes = [UInt8](busyboxData)
        do {
            if try ELFFile(bytes: busyboxBytes).interpreter != nil {
                throw GuestImageError(
                    .badExecutable,
                    "\(busybox.path) is dynamically linked; the image needs a static busybox (busybox-static)")
            }
        } catch let error as GuestImageError {
            throw error
        } catch {
            throw GuestImageError(.badExecutable, "\(busybox.path) is not a 64-bit ELF executable: \(error)")
        }
        let listing = try await HostTool.run(busybox.path, ["--list-full"])
        guard listing.status == 0 else {
            throw GuestImageError(.toolFailed, "\(busybox.path) --list-full failed: \(listing.errorText)")
        }
        let applets = String(decoding: listing.output, as: UTF8.self).split(separator: "\n").map(String.init)

        var modules: [KernelModule] = []
        var builtin: [String] = []
        if !profile.modules.isEmpty {
            guard let directory = kernel.modulesDirectory else {
                throw GuestImageError(
                    .missingInput,
                    "profile '\(profile.name)' loads modules, but kernel \(kernel.image.path) has no modules folder")
            }
            let resolution = try await KernelModuleTree(directory: directory).resolve(profile.modules)
            modules = resolution.modules
            builtin = resolution.builtin
        }
        let agentBinary: AgentBinary? = if let agent { try await AgentBinary.load(agent) } else { nil }
        let contents = InitramfsContents(
            profileName: profile.name, initScript: profile.initScript, busybox: busyboxBytes, busyboxApplets: applets,
            kernelRelease: kernel.release ?? kernel.modulesDirectory?.lastPathComponent, modules: modules,
            agent: agentBinary)
        return (contents, builtin)
    }

    /// Builds the archive in memory.
    public func build() async throws(GuestImageError) -> Initramfs {
        let (contents, builtin) = try await contents()
        let archive = try NewcArchive(InitramfsLayout.members(contents))
        return Initramfs(
            bytes: archive.encoded(), memberCount: archive.members.count, modules: contents.modules,
            builtinModules: builtin, agent: contents.agent)
    }
}
