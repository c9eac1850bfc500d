import Glibc

/// One open file descriptor, closed when the last reference goes: callers never close it themselves.
///
/// Reads and writes retry on `EINTR` and loop over short transfers. On a socket, writes use `MSG_NOSIGNAL`, so a
/// peer that went away is an `EPIPE` error and not a `SIGPIPE` that kills the agent.
public final class FileDescriptor: Sendable {
    /// The kernel's descriptor number.
    public let rawValue: Int32
    /// Whether the descriptor is a socket (host-side tests, vsock) rather than a character device or file.
    public let isSocket: Bool

    /// Takes ownership of an open descriptor.
    public init(adopting rawValue: Int32) {
        self.rawValue = rawValue
        var status = stat()
        isSocket = fstat(rawValue, &status) == 0 && (status.st_mode & S_IFMT) == S_IFSOCK
    }

    deinit { close(rawValue) }

    /// Opens a file or device (`open(2)` with `O_CLOEXEC` added).
    public static func open(
        _ path: String, flags: Int32, mode: UInt32 = 0o600
    ) throws(GuestAgentError) -> FileDescriptor {
        let fd = retryingOnInterrupt { Glibc.open(path, flags | O_CLOEXEC, mode_t(mode)) }
        guard fd >= 0 else { throw .system(errno == ENOENT ? .unavailable : .io, "cannot open \(path)", errno: errno) }
        return FileDescriptor(adopting: fd)
    }

    /// Connects to a UNIX stream socket.
    public static func connect(unixSocket path: String) throws(GuestAgentError) -> FileDescriptor {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            throw GuestAgentError(.usage, "socket path \(path) is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(.io, "cannot create a UNIX socket", errno: errno) }
        let descriptor = FileDescriptor(adopting: fd)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                retryingOnInterrupt { Glibc.connect(fd, generic, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        guard result == 0 else { throw .system(.io, "cannot connect to \(path)", errno: errno) }
        return descriptor
    }

    /// Opens a port by path: a character device (a virtio-serial port in the guest) is opened read-write, a UNIX
    /// socket (a port's host end, as tests and vsock bridges provide it) is connected to.
    public static func openPort(_ path: String) throws(GuestAgentError) -> FileDescriptor {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw .system(.unavailable, "no port at \(path)", errno: errno)
        }
        if (status.st_mode & S_IFMT) == S_IFSOCK { return try connect(unixSocket: path) }
        return try open(path, flags: O_RDWR | O_NOCTTY)
    }

    /// Writes every byte.
    public func writeAll(_ bytes: [UInt8]) throws(GuestAgentError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                let start = raw.baseAddress! + written
                let length = raw.count - written
                return retryingOnInterrupt {
                    isSocket ? send(rawValue, start, length, Int32(MSG_NOSIGNAL)) : write(rawValue, start, length)
                }
            }
            guard count > 0 else {
                throw .system(
                    .io, "write failed after \(written) of \(bytes.count) bytes", errno: count < 0 ? errno : EIO)
            }
            written += count
        }
    }

    /// Reads what is there, at most `count` bytes; empty at end of file.
    public func read(upTo count: Int) throws(GuestAgentError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let got = buffer.withUnsafeMutableBytes { raw in
            retryingOnInterrupt { Glibc.read(rawValue, raw.baseAddress!, raw.count) }
        }
        guard got >= 0 else { throw .system(.io, "read failed", errno: errno) }
        buffer.removeLast(count - got)
        return buffer
    }

    /// Reads until end of file; throws when there is more than `limit` bytes.
    public func readToEnd(limit: Int) throws(GuestAgentError) -> [UInt8] {
        var result: [UInt8] = []
        while true {
            let chunk = try read(upTo: 64 * 1024)
            if chunk.isEmpty { return result }
            result += chunk
            guard result.count <= limit else {
                throw GuestAgentError(.malformedResponse, "more than \(limit) bytes to read")
            }
        }
    }

    /// Waits until the descriptor is readable (data or end of file); false when `milliseconds` passed first
    /// (negative: wait without limit).
    public func waitReadable(milliseconds: Int32) throws(GuestAgentError) -> Bool {
        var request = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        let ready = poll(&request, 1, milliseconds)
        if ready < 0 {
            if errno == EINTR { return false }
            throw .system(.io, "poll failed", errno: errno)
        }
        return ready > 0
    }
}

/// Repeats a system call that was interrupted by a signal.
func retryingOnInterrupt<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}
