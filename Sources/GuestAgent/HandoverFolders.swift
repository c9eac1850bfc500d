import Glibc
public import GuestProtocol

/// Where the agent puts what an admitted child is handed: secrets as files in a folder (a tmpfs inside a child),
/// volumes as links to their block devices; and where it looks for the block devices (sysfs).
public struct HandoverFolders: Sendable, Hashable {
    /// One file per secret, mode 0400, in a folder of mode 0700 (`/run/cmk/secrets`).
    public var secrets: String
    /// One symbolic link per volume to its device node (`/run/cmk/volumes/<name>` → `/dev/vda`).
    public var volumes: String
    /// The kernel's block devices (`/sys/block`).
    public var sysBlock: String
    /// Where the device nodes are (`/dev`).
    public var devices: String
    /// Whether to mount a tmpfs on the secrets folder (inside a child: memory only, never on a disk).
    public var mountTmpfs: Bool
    /// How long a hot-plugged volume may take to appear.
    public var volumeWaitMilliseconds: Int

    public init(
        secrets: String = "/run/cmk/secrets", volumes: String = "/run/cmk/volumes", sysBlock: String = "/sys/block",
        devices: String = "/dev", mountTmpfs: Bool = false, volumeWaitMilliseconds: Int = 30_000
    ) {
        self.secrets = secrets
        self.volumes = volumes
        self.sysBlock = sysBlock
        self.devices = devices
        self.mountTmpfs = mountTmpfs
        self.volumeWaitMilliseconds = volumeWaitMilliseconds
    }

    /// Creates the secrets folder (0700), with a tmpfs on it when asked; nothing is in it afterwards.
    public func prepareSecrets() throws(GuestAgentError) {
        try Self.makeDirectories(secrets, mode: 0o700)
        if mountTmpfs {
            let flags = UInt(MS_NOSUID) | UInt(MS_NODEV) | UInt(MS_NOEXEC)
            guard mount("tmpfs", secrets, "tmpfs", flags, "mode=0700,size=16m") == 0 else {
                throw .system(.io, "cannot mount a tmpfs on \(secrets)", errno: errno)
            }
        }
        guard chmod(secrets, 0o700) == 0 else { throw .system(.io, "chmod \(secrets)", errno: errno) }
    }

    /// `mkdir -p` with `mode` for every folder it makes.
    static func makeDirectories(_ path: String, mode: mode_t) throws(GuestAgentError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw .system(.io, "cannot create \(prefix)", errno: errno)
            }
        }
    }

    /// Writes one secret: a temporary file (0400, exclusive, no links followed) renamed into place, so a reader
    /// never sees part of it.
    func writeSecret(fileName: String, contents: [UInt8]) throws(GuestAgentError) {
        let final = "\(secrets)/\(fileName)"
        let partial = "\(secrets)/.\(fileName).partial"
        unlink(partial)
        let descriptor = try FileDescriptor.open(partial, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o400)
        try descriptor.writeAll(contents)
        guard rename(partial, final) == 0 else {
            let number = errno
            unlink(partial)
            throw .system(.io, "cannot move the secret into \(secrets)", errno: number)
        }
    }

    /// Reads a secret file back (what an application in the child would read).
    func readSecret(fileName: String) throws(GuestAgentError) -> [UInt8] {
        try FileDescriptor.open("\(secrets)/\(fileName)", flags: O_RDONLY | O_NOFOLLOW)
            .readToEnd(limit: HandoverLimits.maximumSecretBytes)
    }

    /// The names in the secrets folder (hidden partial files included: anything there counts); empty when the
    /// folder does not exist.
    public func secretFiles() -> [String] {
        Self.entries(secrets).sorted()
    }

    static func entries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Whether a volume name is safe as a file name: 1 to 64 of letters, digits, `-`, `_`, `.`, not `.`/`..`.
    static func isVolumeName(_ name: String) -> Bool {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.".utf8)
        return !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy(allowed.contains) && name != "."
            && name != ".."
    }

    /// The block devices by virtio-blk serial, with their sizes in bytes.
    func blockDevicesBySerial() -> [String: (device: String, sizeBytes: UInt64)] {
        var found: [String: (String, UInt64)] = [:]
        for device in Self.entries(sysBlock) {
            guard let serial = Self.readSmallText("\(sysBlock)/\(device)/serial") else { continue }
            let sectors = Self.readSmallText("\(sysBlock)/\(device)/size").flatMap { UInt64($0) } ?? 0
            found[serial] = (device, sectors.multipliedReportingOverflow(by: 512).partialValue)
        }
        return found
    }

    /// A sysfs attribute's text without the trailing newline; nil when unreadable.
    static func readSmallText(_ path: String) -> String? {
        guard let descriptor = try? FileDescriptor.open(path, flags: O_RDONLY),
            let bytes = try? descriptor.readToEnd(limit: 4096)
        else { return nil }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix(" ") || text.hasSuffix("\0") { text.removeLast() }
        return text
    }

    /// Waits until every attachment's serial shows up as a block device, then links each as `volumes/<name>`.
    func attach(_ attachments: [VolumeAttachment]) throws(GuestAgentError) -> [AttachedVolume] {
        for attachment in attachments where !Self.isVolumeName(attachment.name) {
            throw GuestAgentError(.protocolViolation, "'\(attachment.name)' is not a volume name")
        }
        let deadline = ContinuousClock.now + .milliseconds(volumeWaitMilliseconds)
        var found = blockDevicesBySerial()
        while !attachments.allSatisfy({ found[$0.serial] != nil }) {
            guard ContinuousClock.now < deadline else {
                let missing = attachments.filter { found[$0.serial] == nil }.map(\.name)
                throw GuestAgentError(
                    .timeout,
                    "no block device for volume(s) \(missing.joined(separator: ", ")) within \(volumeWaitMilliseconds) ms "
                        + "(is virtio_blk loaded?)")
            }
            // 10 ms: the hot-plugged disk appears a few hundred ms after device_add under TCG; a 100 ms poll added
            // 50 ms on average to every handover with a volume.
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
            found = blockDevicesBySerial()
        }
        try Self.makeDirectories(volumes, mode: 0o755)
        var attached: [AttachedVolume] = []
        for attachment in attachments {
            let (device, size) = found[attachment.serial]!
            let link = "\(volumes)/\(attachment.name)"
            unlink(link)
            guard symlink("\(devices)/\(device)", link) == 0 else {
                throw .system(.io, "cannot link \(link)", errno: errno)
            }
            attached.append(AttachedVolume(name: attachment.name, device: device, sizeBytes: size))
        }
        return attached
    }
}
