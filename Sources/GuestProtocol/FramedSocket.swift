#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Why a socket operation failed (the host ends of the control and platform ports, and tests).
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let reason: String
    public let errno: Int32?

    init(_ operation: String, _ reason: String, errno: Int32? = nil) {
        self.operation = operation
        self.reason = reason
        self.errno = errno
    }

    static func system(_ operation: String) -> SocketError {
        let code = Glibc.errno
        return SocketError(operation, String(cString: strerror(code)), errno: code)
    }

    public var description: String { "\(operation): \(reason)" }
}

/// A listening UNIX stream socket at a path (the host end of a child's virtio-serial port: QEMU connects to it).
public final class UnixSocketListener: @unchecked Sendable {
    public let path: String
    private let descriptor: Int32

    /// Binds and listens; an existing socket file at `path` is replaced (the path lives in the instance's own folder).
    public init(path: String) throws {
        self.path = path
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw SocketError("bind", "the socket path is longer than \(capacity - 1) bytes: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket") }
        unlink(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let error = SocketError.system("bind \(path)")
            close(fd)
            throw error
        }
        chmod(path, 0o600)
        guard listen(fd, 4) == 0 else {
            let error = SocketError.system("listen \(path)")
            close(fd)
            throw error
        }
        descriptor = fd
    }

    /// Waits up to `timeout` for a peer to connect.
    public func accept(timeout: Duration) throws -> FramedConnection {
        try waitReadable(descriptor, timeout: timeout, what: "a connection on \(path)")
        let fd = Glibc.accept(descriptor, nil, nil)
        guard fd >= 0 else { throw SocketError.system("accept \(path)") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return FramedConnection(descriptor: fd, name: path)
    }

    deinit {
        close(descriptor)
        unlink(path)
    }
}

/// Waits until `fd` is readable, or throws after `timeout` seconds.
func waitReadable(_ fd: Int32, timeout: Duration, what: String) throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let remaining = max(.zero, clock.now.duration(to: deadline))
        let milliseconds = min(remaining, .seconds(3600)).components
        let result = poll(&entry, 1, Int32(milliseconds.seconds * 1000 + milliseconds.attoseconds / 1_000_000_000_000_000))
        if result > 0 { return }
        if result == 0 { throw SocketError("wait", "no \(what) within \(timeout)") }
        if Glibc.errno != EINTR { throw SocketError.system("poll") }
    }
}

/// One connected stream carrying ``GuestMessage`` frames, read with a deadline and reassembled across partial reads.
public final class FramedConnection: @unchecked Sendable {
    private let descriptor: Int32
    private var decoder = GuestFrameDecoder()
    private var closed = false
    /// Sends from several threads (heartbeats, relayed channel frames) never interleave within a frame.
    private let sendLock = Mutex(())
    /// What the connection is (the socket path), for errors.
    public let name: String

    init(descriptor: Int32, name: String) {
        self.descriptor = descriptor
        self.name = name
    }

    /// Connects to a listening UNIX socket.
    public static func connect(path: String) throws -> FramedConnection {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw SocketError("connect", "path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let error = SocketError.system("connect \(path)")
            Glibc.close(fd)
            throw error
        }
        return FramedConnection(descriptor: fd, name: path)
    }

    /// Sends one message completely.
    public func send(_ message: GuestMessage) throws {
        let frame = message.encoded()
        try sendLock.withLock { _ in try sendAll(frame) }
    }

    private func sendAll(_ frame: [UInt8]) throws {
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw SocketError.system("send on \(name)")
            }
            sent += n
        }
    }

    /// Receives the next message, waiting at most `timeout` seconds; a malformed frame throws (close the connection).
    public func receive(timeout: Duration) throws -> GuestMessage {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let message = try decoder.next() { return message }
            } catch {
                throw SocketError("receive on \(name)", "malformed frame: \(error)")
            }
            try waitReadable(descriptor, timeout: max(.zero, clock.now.duration(to: deadline)), what: "message on \(name)")
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw SocketError.system("read on \(name)")
            }
            if n == 0 { throw SocketError("receive on \(name)", "the peer closed the connection") }
            decoder.append(buffer[0..<n])
        }
    }

    /// What ``receive(timeout:watching:)`` saw first.
    public enum WatchedReceive: Sendable, Hashable {
        /// A whole message arrived.
        case message(GuestMessage)
        /// The watched descriptor became readable (for a supervisor: its QEMU exited).
        case watchedReadable
        /// Neither within the timeout.
        case timedOut
    }

    /// Receives the next message like ``receive(timeout:)``, but also returns as soon as `watched` becomes readable,
    /// and returns ``WatchedReceive/timedOut`` instead of throwing when the time is up. A message already buffered
    /// is returned first; `watched` wins over bytes that arrive at the same moment.
    ///
    /// - Throws: when the peer closed the connection, a read failed, or a frame is malformed.
    public func receive(timeout: Duration, watching watched: Int32) throws -> WatchedReceive {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let message = try decoder.next() { return .message(message) }
            } catch {
                throw SocketError("receive on \(name)", "malformed frame: \(error)")
            }
            var entries = [
                pollfd(fd: watched, events: Int16(POLLIN), revents: 0),
                pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            ]
            let remaining = max(.zero, clock.now.duration(to: deadline)).components
            let milliseconds = Int32(
                clamping: remaining.seconds * 1000 + (remaining.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            let result = poll(&entries, 2, milliseconds)
            if result < 0 {
                if Glibc.errno == EINTR { continue }
                throw SocketError.system("poll")
            }
            if result == 0 {
                if clock.now >= deadline { return .timedOut }
                continue
            }
            if entries[0].revents != 0 { return .watchedReadable }
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw SocketError.system("read on \(name)")
            }
            if n == 0 { throw SocketError("receive on \(name)", "the peer closed the connection") }
            decoder.append(buffer[0..<n])
        }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(descriptor)
    }

    deinit { close() }
}
