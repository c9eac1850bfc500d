public import Foundation

/// Where cmk keeps what it downloads and builds (the guest kernel, images) on this host.
public struct CMKPaths: Sendable, Hashable {
    /// The cache folder: `$CMK_CACHE_DIR`, else `.cache/` in the source tree cmk runs from
    /// (the folder the setup scripts fill), else `~/.cache/cmk`.
    public let cacheDirectory: URL

    public init(cacheDirectory: URL) { self.cacheDirectory = cacheDirectory }

    /// The unpacked Debian guest kernel package (`dpkg-deb -x` of linux-image-*-cloud-amd64).
    public var guestKernelDirectory: URL { cacheDirectory.appendingPathComponent("guest-kernel") }

    public static let cacheEnvironmentVariable = "CMK_CACHE_DIR"

    /// Resolves the paths for this process.
    public static func resolve(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: URL = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath()
    ) -> CMKPaths {
        if let explicit = environment[cacheEnvironmentVariable], !explicit.isEmpty {
            return CMKPaths(cacheDirectory: URL(fileURLWithPath: explicit))
        }
        var ancestor = executable.deletingLastPathComponent()
        for _ in 0..<8 {
            let marker = ancestor.appendingPathComponent("guest-kernels")
            if FileManager.default.fileExists(atPath: marker.path),
                FileManager.default.fileExists(atPath: ancestor.appendingPathComponent("Package.swift").path)
            {
                return CMKPaths(cacheDirectory: ancestor.appendingPathComponent(".cache"))
            }
            ancestor = ancestor.deletingLastPathComponent()
        }
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return CMKPaths(cacheDirectory: home.appendingPathComponent(".cache/cmk"))
    }
}

/// Where one cmk installation keeps its state: signing keys, the audit log, the simulated platform's roots, the
/// instance store. Several installations (and test runs) on one host never share it.
public struct CMKStateDirectory: Sendable, Hashable {
    public let url: URL

    public init(_ url: URL) { self.url = url }

    /// The environment variable that names the state folder.
    public static let environmentVariable = "CMK_STATE_DIR"

    /// `--state-dir` if given, else `$CMK_STATE_DIR`, else `$XDG_STATE_HOME/cmk`, else `~/.local/state/cmk`.
    public static func resolve(
        explicit: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> CMKStateDirectory {
        if let explicit, !explicit.isEmpty { return CMKStateDirectory(URL(fileURLWithPath: explicit)) }
        if let variable = environment[environmentVariable], !variable.isEmpty {
            return CMKStateDirectory(URL(fileURLWithPath: variable))
        }
        if let xdg = environment["XDG_STATE_HOME"], !xdg.isEmpty {
            return CMKStateDirectory(URL(fileURLWithPath: xdg).appendingPathComponent("cmk"))
        }
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return CMKStateDirectory(home.appendingPathComponent(".local/state/cmk"))
    }

    /// Private keys (EAR signing, audit checkpoints, simulated roots): mode 0700.
    public var keysDirectory: URL { url.appendingPathComponent("keys") }
    /// The audit log (SQLite).
    public var auditLog: URL { url.appendingPathComponent("audit.sqlite") }

    /// Creates the folder (0700) and the keys folder (0700) if missing.
    public func prepare() throws {
        for folder in [url, keysDirectory] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }
}
