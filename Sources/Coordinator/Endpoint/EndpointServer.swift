public import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// A stable endpoint on 127.0.0.1: a TCP listener whose connections carry the workload's line protocol (one request
/// line in, one answer line out, `\n`-terminated, at most 8 KiB a line), each request forwarded by an
/// ``EndpointForwarder``; and a control socket (``RelayMessage`` framing) for `hold`, `release`, `set-backends` and
/// `stats` (docs/updates.md, "Endpoints").
public final class EndpointServer: @unchecked Sendable {
    public let name: String
    public let state: CMKStateDirectory
    public let forwarder: EndpointForwarder
    /// The TCP port clients connect to.
    public let port: Int
    private let listenDescriptor: Int32
    private let control: RelayListener
    private let stopped = Atomic<Bool>(false)
    private let makeBackend: @Sendable (String) -> any EndpointBackend
    private let log: @Sendable (String) -> Void

    /// Listens on 127.0.0.1:`port` (0: any free port) and on the endpoint's control socket.
    public init(
        name: String, state: CMKStateDirectory, port: Int, forwarder: EndpointForwarder,
        makeBackend: @escaping @Sendable (String) -> any EndpointBackend, log: @escaping @Sendable (String) -> Void
    ) throws(CoordinatorError) {
        try EndpointFiles.validate(name: name)
        guard (0...65535).contains(port) else { throw CoordinatorError(.invalidArgument, "--port must be 0 to 65535") }
        self.name = name
        self.state = state
        self.forwarder = forwarder
        self.makeBackend = makeBackend
        self.log = log
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CoordinatorError(.fileSystem, "socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw CoordinatorError(
                .fileSystem, "cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(code)))", nativeCode: code)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        listenDescriptor = fd
        do {
            try FileManager.default.createDirectory(
                at: EndpointFiles.folder(state), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            Glibc.close(fd)
            throw CoordinatorError(.fileSystem, "cannot create \(EndpointFiles.folder(state).path): \(error)")
        }
        do {
            control = try RelayListener(path: EndpointFiles.controlSocket(state, name: name))
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { Glibc.close(listenDescriptor) }

    /// Records the endpoint (backends, port, this process) in the state folder.
    public func persist() throws(CoordinatorError) {
        let me = ProcessIdentity.of(pid: getpid())
        try EndpointFiles.write(
            EndpointFiles.Record(
                name: name, host: "127.0.0.1", port: port, backends: forwarder.backendNames, pid: getpid(),
                startTime: me?.startTime ?? 0, updatedAt: Date()),
            state: state)
    }

    /// Serves clients and the control socket on threads of their own until ``stop()``.
    public func start() {
        Thread.detachNewThread { [self] in
            while !stopped.load(ordering: .acquiring) {
                var entry = pollfd(fd: listenDescriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 200) > 0 else { continue }
                let client = accept(listenDescriptor, nil, nil)
                guard client >= 0 else { continue }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                Thread.detachNewThread { [self] in serveClient(client) }
            }
        }
        Thread.detachNewThread { [self] in
            while !stopped.load(ordering: .acquiring) {
                guard let link = control.accept(timeout: .milliseconds(200)) else { continue }
                Thread.detachNewThread { [self] in serveControl(link) }
            }
        }
    }

    public func stop() { stopped.store(true, ordering: .releasing) }

    /// The longest line a client may send (a workload request and its newline).
    public static let maximumLine = WorkloadLimits.maximumLine

    private func serveClient(_ fd: Int32) {
        defer { Glibc.close(fd) }
        var decoder = LineDecoder(maximum: Self.maximumLine)
        var chunk = [UInt8](repeating: 0, count: 16384)
        while !stopped.load(ordering: .acquiring) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            decoder.append(chunk[0..<n])
            while true {
                let line: [UInt8]?
                do throws(LineDecoder.TooLong) { line = try decoder.next() } catch {
                    _ = Self.writeAll(fd, Array("ERR bad-request a line longer than \(Self.maximumLine) bytes\n".utf8))
                    return
                }
                guard let line else { break }
                let answer = forwarder.forward(line)
                guard Self.writeAll(fd, answer + [0x0A]) else { return }
            }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// One control connection. A hold lasts while its connection is open: a `cmk update` that dies mid-way releases it.
    private func serveControl(_ link: RelayLink) {
        var holding = false
        defer {
            if holding {
                forwarder.release()
                log("the control connection that held the endpoint closed; released")
            }
            link.close()
        }
        while !stopped.load(ordering: .acquiring) {
            let message: RelayMessage?
            do { message = try link.receive(timeout: .seconds(1)) } catch { return }
            guard let message else { continue }
            let answer: RelayMessage
            switch message.op {
            case .hold:
                let started = ContinuousClock.now
                if forwarder.hold(timeout: .seconds(30)) {
                    holding = true
                    let waited = ContinuousClock.now - started
                    log("held (drained in \(waited))")
                    answer = RelayMessage(.accepted, reason: "held; drained in \(waited)")
                } else {
                    answer = RelayMessage(.refused, reason: "requests still in flight after 30 s; not held")
                }
            case .release:
                forwarder.release()
                holding = false
                log("released")
                answer = RelayMessage(.accepted, reason: "released")
            case .setBackends:
                let names = message.backends ?? []
                if let bad = names.first(where: { (try? EndpointFiles.validate(name: $0)) == nil }) {
                    answer = RelayMessage(.refused, reason: "'\(bad)' is not an instance name")
                } else {
                    forwarder.setBackends(names.map(makeBackend))
                    do throws(CoordinatorError) {
                        try persist()
                        log("backends: \(names.joined(separator: ", "))")
                        answer = RelayMessage(.accepted, reason: "backends: \(names.joined(separator: ", "))", backends: names)
                    } catch {
                        answer = RelayMessage(.refused, reason: "switched, but not recorded: \(error.reason)")
                    }
                }
            case .stats:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let stats = EndpointStats(
                    name: name, port: port, held: forwarder.isHeld, backends: forwarder.backendNames,
                    longestHoldWaitMs: Int(EndpointForwarder.seconds(forwarder.longestHoldWait) * 1000),
                    perBackend: forwarder.stats())
                answer = RelayMessage(.accepted, data: (try? encoder.encode(stats)) ?? Data())
            default:
                answer = RelayMessage(.refused, reason: "\(message.op.rawValue) is not an endpoint request")
            }
            do { try link.send(answer) } catch { return }
        }
    }
}

/// What `stats` answers.
public struct EndpointStats: Codable, Sendable, Hashable {
    public let name: String
    public let port: Int
    public let held: Bool
    public let backends: [String]
    /// The longest a request waited on a hold (an update's client-visible pause), in ms.
    public let longestHoldWaitMs: Int
    public let perBackend: [EndpointForwarder.BackendStats]
}

/// Limits of the endpoint's line protocol.
public enum WorkloadLimits {
    /// A request line with its newline: the workload's 8 KiB request plus one.
    public static let maximumLine = (8 << 10) + 1
}

/// Splits a byte stream into `\n`-terminated lines (a trailing `\r` is dropped), refusing a line longer than the limit
/// as soon as that many bytes arrived without a newline.
public struct LineDecoder: Sendable {
    public struct TooLong: Error, Sendable {}
    private var buffer: [UInt8] = []
    public let maximum: Int

    public init(maximum: Int) { self.maximum = maximum }

    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer += bytes }

    public mutating func next() throws(TooLong) -> [UInt8]? {
        guard let newline = buffer.firstIndex(of: 0x0A) else {
            if buffer.count >= maximum { throw TooLong() }
            return nil
        }
        guard newline < maximum else { throw TooLong() }
        var line = Array(buffer[..<newline])
        buffer.removeFirst(newline + 1)
        if line.last == 0x0D { line.removeLast() }
        return line
    }
}
