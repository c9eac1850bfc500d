public import BinaryFormat
public import Foundation
import Crypto
#if canImport(Glibc)
    import Glibc
#endif

/// A file of an image: where it is, its SHA-256 and its size.
public struct ImageFile: Sendable, Hashable, Codable {
    public let path: String
    public let sha256: HexBytes
    public let size: Int

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.sha256 = HexBytes(Array(SHA256.hash(data: bytes)))
        self.size = bytes.count
    }
}

/// A built child image: the kernel and initrd files a launch boots, the command line, and what went into the initrd.
public struct GuestImage: Sendable, Hashable, Codable {
    /// The agent inside the image.
    public struct Agent: Sendable, Hashable, Codable {
        public let source: String
        public let sha256: HexBytes
        public let size: Int
        /// nil when statically linked.
        public let interpreter: String?
        public let libraries: [String]
    }

    public static let kernelFileName = "vmlinuz"
    public static let initrdFileName = "initrd.cpio"
    /// How the initrd is stored (see ``InitramfsBuilder``).
    public static let initrdFormat = "cpio newc (070701), uncompressed"

    public let profile: String
    /// A copy of the profile's kernel, so the measured file is the booted file even if the cache changes later.
    public let kernel: ImageFile
    public let kernelRelease: String?
    public let initrd: ImageFile
    public let initrdFormat: String
    public let initrdMembers: Int
    public let commandLine: String
    public let vcpus: Int
    public let memoryMiB: Int
    /// Modules the init loads, in load order.
    public let modules: [String]
    /// Modules the profile needs that this kernel has built in.
    public let builtinModules: [String]
    /// nil when the image has no agent: the init then prints its readiness marker and stays up.
    public let agent: Agent?

    /// Builds `profile`'s image and writes `<output>/vmlinuz` and `<output>/initrd.cpio` (each through a temporary
    /// file renamed into place).
    public static func build(
        profile: GuestProfile, cacheDirectory: URL, agent: URL? = nil,
        busybox: URL = URL(fileURLWithPath: "/bin/busybox"),
        output: URL
    ) async throws(GuestImageError) -> GuestImage {
        let kernel = try GuestKernel.locate(profile.kernel, cacheDirectory: cacheDirectory)
        guard let kernelData = FileManager.default.contents(atPath: kernel.image.path) else {
            throw GuestImageError(.missingInput, "cannot read the kernel \(kernel.image.path)")
        }
        let initramfs = try await InitramfsBuilder(profile: profile, kernel: kernel, agent: agent, busybox: busybox)
            .build()
        do {
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        } catch {
            throw GuestImageError(.outputFailed, "cannot create \(output.path): \(error.localizedDescription)")
        }
        let kernelURL = output.appendingPathComponent(kernelFileName)
        let initrdURL = output.appendingPathComponent(initrdFileName)
        try write(kernelData, to: kernelURL)
        try write(Data(initramfs.bytes), to: initrdURL)
        return GuestImage(
            profile: profile.name, kernel: ImageFile(path: kernelURL.path, bytes: [UInt8](kernelData)),
            kernelRelease: kernel.release, initrd: ImageFile(path: initrdURL.path, bytes: initramfs.bytes),
            initrdFormat: initrdFormat, initrdMembers: initramfs.memberCount, commandLine: profile.commandLine,
            vcpus: profile.vcpus, memoryMiB: profile.memoryMiB, modules: initramfs.modules.map(\.name),
            builtinModules: initramfs.builtinModules,
            agent: initramfs.agent.map {
                Agent(
                    source: $0.source.path, sha256: HexBytes(Array(SHA256.hash(data: $0.bytes))), size: $0.bytes.count,
                    interpreter: $0.interpreter, libraries: $0.libraries.map(\.path))
            })
    }

    static func write(_ data: Data, to url: URL) throws(GuestImageError) {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).\(UUID().uuidString)")
        do {
            try data.write(to: temporary)
            // rename(2) replaces an existing file atomically.
            guard rename(temporary.path, url.path) == 0 else {
                throw GuestImageError(
                    .outputFailed, "cannot rename into \(url.path): \(String(cString: strerror(errno)))")
            }
        } catch let error as GuestImageError {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw GuestImageError(.outputFailed, "cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
