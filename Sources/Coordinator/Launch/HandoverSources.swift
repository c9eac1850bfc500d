public import Foundation
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif
// `struct stat` and its members are owned by whichever C module the compiler met sys/stat.h in first; on Linux that
// can be Foundation's CoreFoundation or Dispatch's CDispatch (which one depends on the other files of the module),
// and member-import visibility then wants it named.
#if canImport(CoreFoundation)
    import CoreFoundation
#endif
#if canImport(CDispatch)
    import CDispatch
#endif

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
        var status = stat()
        guard lstat(target.path, &status) == 0 else {
            throw CoordinatorError(
                .handover,
                "no secret \(reference) in \(directory.path): store it with `cmk secret put \(reference) --from-file FILE`"
            )
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw CoordinatorError(.handover, "the secret \(reference) is not a regular file (\(target.path))")
        }
        guard status.st_mode & 0o077 == 0, status.st_uid == geteuid() else {
            throw CoordinatorError(
                .handover,
                "the secret file \(target.path) must belong to this user with mode 0600 (it is \(String(status.st_mode & 0o777, radix: 8)))"
            )
        }
        guard Int(status.st_size) <= HandoverLimits.maximumSecretBytes else {
            throw CoordinatorError(
                .handover, "the secret \(reference) has more than \(HandoverLimits.maximumSecretBytes) bytes")
        }
        return [UInt8](try Data(contentsOf: target))
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
        var status = stat()
        guard lstat(target.path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            throw CoordinatorError(
                .handover,
                "no volume \(name) in \(directory.path): create it with `cmk volume create \(name) --size-mib N`")
        }
        return target
    }
}
