public import Foundation
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// What `lstat` says about a file of the secret or volume store, through FileManager (whose `attributesOfItem`
/// does not follow a final symbolic link): its type, permission bits, owner and size. Nil when nothing is there.
struct StoredFileAttributes {
    let type: FileAttributeType
    let permissions: Int
    let ownerID: Int
    let size: Int

    init?(_ url: URL) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
            let type = attributes[.type] as? FileAttributeType
        else { return nil }
        self.type = type
        permissions = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o7777
        ownerID = (attributes[.ownerAccountID] as? NSNumber)?.intValue ?? -1
        size = (attributes[.size] as? NSNumber)?.intValue ?? Int.max
    }

    /// Refuses a store folder that is not a real folder of this user closed to others (a link to elsewhere, a
    /// file, a folder others may enter): what is in it is only as private as the folder. A missing folder is
    /// not refused here (what should be in it is then missing).
    static func requirePrivateFolder(_ folder: URL, store: String) throws(CoordinatorError) {
        guard let attributes = StoredFileAttributes(folder) else { return }
        guard attributes.type == .typeDirectory else {
            throw CoordinatorError(
                .handover, "the \(store) store \(folder.path) is \(attributes.typeName), not a folder: remove it")
        }
        guard attributes.permissions & 0o077 == 0 else {
            throw CoordinatorError(
                .handover,
                "the \(store) store \(folder.path) is open to others (mode "
                    + "\(String(attributes.permissions & 0o777, radix: 8))): chmod 700 it")
        }
        guard attributes.ownerID == Int(geteuid()) else {
            throw CoordinatorError(
                .handover,
                "the \(store) store \(folder.path) belongs to user \(attributes.ownerID), not to this user (\(geteuid()))")
        }
    }

    /// The type in words, for a refusal.
    var typeName: String {
        switch type {
        case .typeSymbolicLink: "a symbolic link"
        case .typeDirectory: "a folder"
        case .typeRegular: "a regular file"
        case .typeCharacterSpecial, .typeBlockSpecial: "a device"
        case .typeSocket: "a socket"
        default: "not a regular file"
        }
    }
}

/// Where the coordinator resolves the policy's secret references: one file per reference in `<state>/secrets`
/// (folder 0700, files 0600, owned by the coordinator's user), named with ``SecretName/fileName(_:)``
/// (`vault:db/credentials` → `vault%3Adb%2Fcredentials`). The policy holds only references; the bytes are read
/// at handover time, sealed at once and dropped. `cmk secret put NAME --from-file F` fills it.
public struct SecretStore: Sendable {
    public let directory: URL

    public init(_ state: CMKStateDirectory) { directory = state.url.appendingPathComponent("secrets") }

    /// The file behind a reference.
    public func file(for reference: String) throws -> URL {
        guard let name = SecretName.fileName(reference) else {
            throw CoordinatorError(
                .invalidArgument,
                "'\(reference)' is not a secret reference: 1 to 128 of letters, digits and - _ . : / @")
        }
        return directory.appendingPathComponent(name)
    }

    /// Stores `contents` under `reference` (replacing what was there): a 0600 file written beside and renamed.
    public func put(_ reference: String, contents: [UInt8]) throws {
        guard contents.count <= HandoverLimits.maximumSecretBytes else {
            throw CoordinatorError(
                .invalidArgument,
                "a secret has at most \(HandoverLimits.maximumSecretBytes) bytes; this one \(contents.count)")
        }
        let target = try file(for: reference)
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let partial = directory.appendingPathComponent(".\(target.lastPathComponent).partial")
        unlink(partial.path)
        let fd = open(partial.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CoordinatorError(.fileSystem, "cannot create \(partial.path)", nativeCode: errno) }
        var written = 0
        while written < contents.count {
            let n = contents[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let number = errno
                close(fd)
                unlink(partial.path)
                throw CoordinatorError(.fileSystem, "cannot write \(partial.path)", nativeCode: number)
            }
            written += n
        }
        guard fsync(fd) == 0, close(fd) == 0, rename(partial.path, target.path) == 0 else {
            unlink(partial.path)
            throw CoordinatorError(.fileSystem, "cannot store the secret \(reference)", nativeCode: errno)
        }
    }

    /// The secret's bytes; refuses a missing file, a link, a file others may read or write, or one owned by
    /// another user (as ssh refuses a private key others can read).
    public func resolve(_ reference: String) throws -> [UInt8] {
        let target = try file(for: reference)
        try StoredFileAttributes.requirePrivateFolder(directory, store: "secret")
        guard let attributes = StoredFileAttributes(target) else {
            throw CoordinatorError(
                .handover,
                "no secret \(reference) in \(directory.path): store it with `cmk secret put \(reference) --from-file FILE`"
            )
        }
        guard attributes.type == .typeRegular else {
            throw CoordinatorError(
                .handover,
                "the secret \(reference) is \(attributes.typeName), not a regular file (\(target.path)): store it again "
                    + "with `cmk secret put \(reference) --from-file FILE`")
        }
        guard attributes.permissions & 0o077 == 0 else {
            throw CoordinatorError(
                .handover,
                "the secret file \(target.path) may be read or written by others (mode "
                    + "\(String(attributes.permissions & 0o777, radix: 8))): chmod 600 it")
        }
        guard attributes.ownerID == Int(geteuid()) else {
            throw CoordinatorError(
                .handover,
                "the secret file \(target.path) belongs to user \(attributes.ownerID), not to this user "
                    + "(\(geteuid())): store it again with `cmk secret put`")
        }
        guard attributes.size <= HandoverLimits.maximumSecretBytes else {
            throw CoordinatorError(
                .handover, "the secret \(reference) has more than \(HandoverLimits.maximumSecretBytes) bytes")
        }
        let bytes = [UInt8](try Data(contentsOf: target))
        guard bytes.count <= HandoverLimits.maximumSecretBytes else {
            throw CoordinatorError(
                .handover, "the secret \(reference) has more than \(HandoverLimits.maximumSecretBytes) bytes")
        }
        return bytes
    }

    /// The references stored, sorted.
    public func references() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }
            .map { $0.replacingOccurrences(of: "%2F", with: "/").replacingOccurrences(of: "%3A", with: ":") }.sorted()
    }
}

/// Where data volumes live: one raw image per volume name in `<state>/volumes/<name>.img` (folder 0700, files
/// 0600). `cmk volume create NAME --size-mib N` makes one (sparse). QEMU's own image locking refuses a second
/// writer, so a volume is never attached to two running instances at once.
public struct VolumeStore: Sendable {
    public let directory: URL

    public init(_ state: CMKStateDirectory) { directory = state.url.appendingPathComponent("volumes") }

    /// Whether a name can name a volume: 1 to 64 of letters, digits, `-`, `_`, `.`, not starting with `.`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    public func image(for name: String) throws -> URL {
        guard Self.isValidName(name) else {
            throw CoordinatorError(
                .invalidArgument,
                "'\(name)' is not a volume name: 1 to 64 of letters, digits, - _ . (not starting with .)")
        }
        return directory.appendingPathComponent("\(name).img")
    }

    /// Creates an empty (sparse) raw image; refuses to replace one.
    @discardableResult
    public func create(_ name: String, sizeMiB: Int) throws -> URL {
        guard (1...1_048_576).contains(sizeMiB) else {
            throw CoordinatorError(.invalidArgument, "a volume is 1 MiB to 1 TiB")
        }
        let target = try image(for: name)
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = open(target.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CoordinatorError(
                .fileSystem, "cannot create \(target.path): \(String(cString: strerror(errno)))", nativeCode: errno)
        }
        defer { close(fd) }
        guard ftruncate(fd, off_t(sizeMiB) << 20) == 0 else {
            throw CoordinatorError(.fileSystem, "cannot size \(target.path)", nativeCode: errno)
        }
        return target
    }

    /// The image behind a volume name; it must exist.
    public func resolve(_ name: String) throws -> URL {
        let target = try image(for: name)
        try StoredFileAttributes.requirePrivateFolder(directory, store: "volume")
        guard let attributes = StoredFileAttributes(target) else {
            throw CoordinatorError(
                .handover,
                "no volume \(name) in \(directory.path): create it with `cmk volume create \(name) --size-mib N`")
        }
        guard attributes.type == .typeRegular else {
            throw CoordinatorError(
                .handover,
                "the volume \(name) is \(attributes.typeName), not a regular file (\(target.path)): QEMU is given only "
                    + "images `cmk volume create` made")
        }
        guard attributes.permissions & 0o077 == 0 else {
            throw CoordinatorError(
                .handover,
                "the volume image \(target.path) may be read or written by others (mode "
                    + "\(String(attributes.permissions & 0o777, radix: 8))): chmod 600 it")
        }
        guard attributes.ownerID == Int(geteuid()) else {
            throw CoordinatorError(
                .handover,
                "the volume image \(target.path) belongs to user \(attributes.ownerID), not to this user (\(geteuid()))")
        }
        return target
    }
}
