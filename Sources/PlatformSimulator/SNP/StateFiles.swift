import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
// In a release (whole-module) build `struct stat`'s members are owned by the C module the compiler met sys/stat.h
// in first (CoreFoundation here), and member-import visibility wants it named.
#if canImport(CoreFoundation)
import CoreFoundation
#endif

/// The simulated platform's files on disk: private keys written 0600 and read only when nobody else can read them,
/// everything written to a temporary name and renamed, so a reader never sees half a file.
enum StateFiles {
    /// The mode of the state folder.
    static let folderMode: mode_t = 0o700
    /// The mode of a private key file.
    static let keyMode: mode_t = 0o600
    /// The mode of a public file (certificates, manifest, configuration).
    static let publicMode: mode_t = 0o644
    /// No state file is larger than this; a larger one is not ours.
    static let maximumSize = 1 << 20

    /// Creates `directory` (and missing parents) with mode 0700, or checks an existing one: a directory, the user's,
    /// not writable by group or others.
    static func prepareFolder(_ directory: URL) throws(PlatformSimulatorError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if !fm.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
            do {
                try fm.createDirectory(
                    at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: Int(folderMode)])
            } catch {
                throw PlatformSimulatorError(
                    .stateFolder,
                    "cannot create the simulated platform's folder \(directory.path): \(error.localizedDescription)")
            }
            // The umask may have taken bits away, never added them; set the mode exactly.
            guard chmod(directory.path, folderMode) == 0 else {
                throw PlatformSimulatorError(
                    .stateFolder, "cannot set mode 0700 on \(directory.path)", nativeCode: UInt64(errno))
            }
            return
        }
        guard isDirectory.boolValue else {
            throw PlatformSimulatorError(.stateFolder, "\(directory.path) exists and is not a folder")
        }
        var status = stat()
        guard stat(directory.path, &status) == 0 else {
            throw PlatformSimulatorError(.stateFolder, "cannot read \(directory.path)", nativeCode: UInt64(errno))
        }
        guard status.st_uid == geteuid() else {
            throw PlatformSimulatorError(
                .stateFolder, "\(directory.path) belongs to user \(status.st_uid), not to this user (\(geteuid()))")
        }
        guard status.st_mode & 0o022 == 0 else {
            throw PlatformSimulatorError(
                .stateFolder,
                "\(directory.path) is writable by group or others (mode \(String(status.st_mode & 0o777, radix: 8))); "
                    + "run chmod 700 on it: whoever can write it can replace the simulated roots")
        }
    }

    /// Writes `bytes` to `url` with `mode`: a new temporary file created with exactly that mode (never briefly more
    /// open), synced, then renamed over `url`.
    static func write(_ bytes: [UInt8], to url: URL, mode: mode_t) throws(PlatformSimulatorError) {
        let temporary = url.path + ".partial-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw PlatformSimulatorError(.stateFolder, "cannot create \(temporary)", nativeCode: UInt64(errno))
        }
        var written = 0
        var failure: Int32 = 0
        bytes.withUnsafeBytes { buffer in
            while written < buffer.count {
                let count = posixWrite(fd, buffer.baseAddress! + written, buffer.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                written += count
            }
        }
        if failure == 0, fchmod(fd, mode) != 0 || fsync(fd) != 0 { failure = errno }
        close(fd)
        guard failure == 0, rename(temporary, url.path) == 0 else {
            let code = failure != 0 ? failure : errno
            unlink(temporary)
            throw PlatformSimulatorError(.stateFolder, "cannot write \(url.path)", nativeCode: UInt64(code))
        }
    }

    /// Reads a file this installation wrote; with `privateKey`, refuses one that is not a regular file of this user
    /// with no permission for group or others (`chmod 600` fixes it).
    static func read(_ url: URL, privateKey: Bool) throws(PlatformSimulatorError) -> [UInt8] {
        let fd = open(url.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw PlatformSimulatorError(
                code == ENOENT ? .inconsistentState : .stateFolder, "cannot open \(url.path)", nativeCode: UInt64(code))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw PlatformSimulatorError(.stateFolder, "cannot read \(url.path)", nativeCode: UInt64(errno))
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw PlatformSimulatorError(
                privateKey ? .insecureKeyFile : .stateFolder, "\(url.path) is not a regular file")
        }
        if privateKey {
            guard status.st_uid == geteuid() else {
                throw PlatformSimulatorError(.insecureKeyFile, "the key file \(url.path) belongs to another user")
            }
            guard status.st_mode & 0o077 == 0 else {
                throw PlatformSimulatorError(
                    .insecureKeyFile,
                    "the key file \(url.path) has mode \(String(status.st_mode & 0o777, radix: 8)): group or others "
                        + "may use it, so it is refused; run chmod 600 on it (and consider the simulated roots "
                        + "disclosed)")
            }
        }
        guard Int(status.st_size) <= maximumSize else {
            throw PlatformSimulatorError(
                .inconsistentState, "\(url.path) is \(status.st_size) bytes, too large to be ours")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var total = 0
        while total < bytes.count {
            let count = bytes.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress! + total, $0.count - total) }
            if count < 0 {
                if errno == EINTR { continue }
                throw PlatformSimulatorError(.stateFolder, "cannot read \(url.path)", nativeCode: UInt64(errno))
            }
            if count == 0 { break }
            total += count
        }
        return Array(bytes.prefix(total))
    }

    /// Whether anything exists at `url`.
    static func exists(_ url: URL) -> Bool {
        var status = stat()
        return lstat(url.path, &status) == 0
    }
}

/// PEM (RFC 7468) for the key and certificate files.
enum PEM {
    /// `-----BEGIN <label>-----`, base64 in 64-column lines, `-----END <label>-----`.
    static func encode(_ der: [UInt8], label: String) -> String {
        let base64 = Data(der).base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var index = base64.startIndex
        while index < base64.endIndex {
            let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
            lines.append(String(base64[index..<end]))
            index = end
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The DER of the one `label` block in `text`.
    static func decode(_ text: String, label: String) throws(PlatformSimulatorError) -> [UInt8] {
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        guard let start = text.range(of: begin),
            let stop = text.range(of: end, range: start.upperBound..<text.endIndex),
            text.range(of: begin, range: stop.upperBound..<text.endIndex) == nil
        else {
            throw PlatformSimulatorError(.inconsistentState, "expected exactly one PEM \(label) block")
        }
        let body = text[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
        guard let der = Data(base64Encoded: String(body)) else {
            throw PlatformSimulatorError(.inconsistentState, "the PEM \(label) block is not base64")
        }
        return [UInt8](der)
    }
}

// The POSIX read/write, named apart from Swift's own `write`/`read` methods in scope.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buffer, count)
    #else
    Darwin.write(fd, buffer, count)
    #endif
}

private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}
