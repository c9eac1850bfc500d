public import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// One message on a relay socket (`<state>/instances/<name>/relay.sock`): between the command line and an instance's
/// supervisor, and between the supervisors of a channel's two instances. Frames are opaque ciphertext to everyone on
/// the host; the relay never holds a key.
///
/// Encoding: `u32be length ‖ JSON` (at most 1 MiB).
public struct RelayMessage: Codable, Sendable, Hashable {
    public enum Operation: String, Codable, Sendable {
        /// command line → initiator's supervisor: open `channel` from `initiator` to `responder`.
        case open
        /// initiator's supervisor → responder's supervisor: join `channel` as the responder.
        case link
        /// Answers: done, or refused with `reason`.
        case accepted
        case refused
        /// command line → supervisor: have the agent seal `data` (with `echo`: the peer sends it back).
        case send
        /// command line → supervisor: have the agent close the channel in order.
        case close
        /// command line → initiator's supervisor: flip one bit in the next frame relayed on `channel` (a demonstration
        /// that the host cannot alter a frame without both ends noticing).
        case tamper
        /// supervisor ↔ supervisor: one opaque sealed frame.
        case frame
        /// endpoint → supervisor: one request to the instance's workload (`data`); answered `accepted` with the
        /// response in `data`. The link stays open for more (docs/updates.md).
        case workload
        /// `cmk update` → supervisor: have the agent seal its workload state onto the update channel `channel`.
        case stateExport = "state-export"
        /// `cmk update` → supervisor: have the agent accept its predecessor's state on `channel`.
        case stateImport = "state-import"
        /// `cmk update` → endpoint: stop handing out requests and wait for the ones in flight (answered when
        /// drained). Released when the link closes, so a dead `cmk update` never leaves the endpoint held.
        case hold
        /// `cmk update` or a pool → endpoint: let requests through again.
        case release
        /// → endpoint: replace the backends with `backends`, atomically.
        case setBackends = "set-backends"
        /// → endpoint: the per-backend statistics (JSON in `data`).
        case stats
    }

    public var op: Operation
    public var channel: String?
    public var initiator: String?
    public var responder: String?
    public var data: Data?
    public var echo: Bool?
    public var reason: String?
    /// `open`/`link` of an update channel (`cmk update`): checked by ``UpdateAccess`` instead of the channel allow-list.
    public var update: Bool?
    /// `set-backends`: instance names.
    public var backends: [String]?

    public init(
        _ op: Operation, channel: String? = nil, initiator: String? = nil, responder: String? = nil, data: Data? = nil,
        echo: Bool? = nil, reason: String? = nil, update: Bool? = nil, backends: [String]? = nil
    ) {
        self.update = update
        self.backends = backends
        self.op = op
        self.channel = channel
        self.initiator = initiator
        self.responder = responder
        self.data = data
        self.echo = echo
        self.reason = reason
    }

    static let maximumLength = 1 << 20
}

/// A connected relay socket: whole ``RelayMessage``s, sends from several threads never interleaved.
public final class RelayLink: @unchecked Sendable {
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    private let sendLock = Mutex(())
    private let closed = Atomic<Bool>(false)
    public let name: String

    init(descriptor: Int32, name: String) {
        self.descriptor = descriptor
        self.name = name
    }

    deinit { close() }

    static func address(_ path: String) throws(CoordinatorError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw CoordinatorError(.invalidArgument, "the socket path is too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    /// Connects to a supervisor's relay socket.
    public static func connect(path: String) throws(CoordinatorError) -> RelayLink {
        var address = try Self.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CoordinatorError(.fileSystem, "socket: \(String(cString: strerror(errno)))") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw CoordinatorError(
                .fileSystem, "cannot reach the relay at \(path): \(String(cString: strerror(code)))", nativeCode: code)
        }
        return RelayLink(descriptor: fd, name: path)
    }

    public func send(_ message: RelayMessage) throws(CoordinatorError) {
        let body: Data
        do { body = try JSONEncoder().encode(message) } catch {
            throw CoordinatorError(.invalidArgument, "cannot encode a relay message: \(error)")
        }
        let count = UInt32(body.count)
        let frame = [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)] + body
        try sendLock.withLock { _ throws(CoordinatorError) in
            var sent = 0
            while sent < frame.count {
                let n = frame[sent...].withUnsafeBytes {
                    Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CoordinatorError(.fileSystem, "send on \(name): \(String(cString: strerror(errno)))")
                }
                sent += n
            }
        }
    }

    /// The next message; nil when the time is up. Throws when the peer closed or sent something malformed.
    public func receive(timeout: Duration) throws(CoordinatorError) -> RelayMessage? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if buffer.count >= 4 {
                let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
                guard length >= 2, length <= RelayMessage.maximumLength else {
                    throw CoordinatorError(.invalidArgument, "a relay message of \(length) bytes on \(name)")
                }
                if buffer.count >= 4 + length {
                    let body = Data(buffer[4..<(4 + length)])
                    buffer.removeFirst(4 + length)
                    do { return try JSONDecoder().decode(RelayMessage.self, from: body) } catch {
                        throw CoordinatorError(.invalidArgument, "a malformed relay message on \(name): \(error)")
                    }
                }
            }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let left = max(.zero, clock.now.duration(to: deadline)).components
            let milliseconds = Int32(clamping: left.seconds * 1000 + left.attoseconds / 1_000_000_000_000_000)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw CoordinatorError(.fileSystem, "poll on \(name): \(String(cString: strerror(errno)))")
            }
            if ready == 0 {
                if clock.now >= deadline { return nil }
                continue
            }
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CoordinatorError(.fileSystem, "read on \(name): \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw CoordinatorError(.fileSystem, "the other end of \(name) closed it") }
            buffer += chunk[0..<n]
        }
    }

    /// Sends a request and waits for its answer.
    public func request(_ message: RelayMessage, timeout: Duration) throws(CoordinatorError) -> RelayMessage {
        try send(message)
        guard let answer = try receive(timeout: timeout) else {
            throw CoordinatorError(.launch, "no answer from \(name) within \(timeout)")
        }
        return answer
    }

    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(descriptor, Int32(SHUT_RDWR))
        Glibc.close(descriptor)
    }
}

/// The listening relay socket of one supervisor.
public final class RelayListener: @unchecked Sendable {
    let path: String
    private let descriptor: Int32

    public init(path: String) throws(CoordinatorError) {
        self.path = path
        var address = try RelayLink.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CoordinatorError(.fileSystem, "socket: \(String(cString: strerror(errno)))") }
        unlink(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw CoordinatorError(.fileSystem, "cannot listen on \(path): \(String(cString: strerror(code)))")
        }
        descriptor = fd
    }

    /// A connection, or nil when none came within `timeout`.
    public func accept(timeout: Duration) -> RelayLink? {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let parts = timeout.components
        guard poll(&entry, 1, Int32(parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000)) > 0 else {
            return nil
        }
        let fd = Glibc.accept(descriptor, nil, nil)
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return RelayLink(descriptor: fd, name: path)
    }

    deinit {
        Glibc.close(descriptor)
        unlink(path)
    }
}
