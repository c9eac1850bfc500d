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
