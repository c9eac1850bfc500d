import Dispatch
import Foundation
public import GuestProtocol
import Synchronization
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

/// The host side of a simulated child's platform port: a UNIX socket QEMU connects to as a client
/// (`-chardev socket,id=platform,path=P,reconnect=1`, then a virtio-serial port named `cmk.platform`).
///
/// One dedicated thread waits in `poll(2)` on the listening socket, each connection and a wake-up pipe — it never
/// spins. Frames are read with ``GuestFrameDecoder`` and answered by the responder (the simulated launch); a
/// malformed frame, more than ``maximumPendingInput`` unanswered bytes or more than ``maximumPendingOutput`` unread
/// answer bytes close that connection, which cannot be resynchronised. ``stop()`` wakes the thread, waits for it,
/// closes every descriptor and removes the socket file.
public final class SimulatedPlatformService: Sendable {
    /// Answers one message from the guest.
    public typealias Responder = @Sendable (GuestMessage) -> GuestMessage

    /// At most this many connections at once (QEMU holds one; reconnects replace it).
    public static let maximumConnections = 4
    /// The most bytes a connection may send that do not yet form a whole frame (a report request is 73 bytes).
    public static let maximumPendingInput = 64 << 10
    /// The most answer bytes a connection may leave unread before it is closed.
    public static let maximumPendingOutput = 1 << 20

    /// The socket's path.
    public let socketPath: String
    private let wakeWrite: Int32
    private let wakeRead: Int32
    private let finished: DispatchSemaphore
    private let stopped = Mutex(false)

    /// Binds `socketPath` (mode 0600; a stale socket there is replaced, any other file is an error), listens, and
    /// starts answering with `responder` on a dedicated thread.
    public init(socketPath: String, responder: @escaping Responder) throws(PlatformSimulatorError) {
        let listener = try Self.listen(at: socketPath)
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            let code = errno
            close(listener)
            unlink(socketPath)
            throw PlatformSimulatorError(.socket, "cannot create the service's wake-up pipe", nativeCode: UInt64(code))
        }
        for fd in pipeEnds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        self.socketPath = socketPath
        self.wakeRead = pipeEnds[0]
        self.wakeWrite = pipeEnds[1]
        let finished = DispatchSemaphore(value: 0)
        self.finished = finished
        let wake = pipeEnds[0]
        let thread = Thread {
            var loop = ServiceLoop(listener: listener, wake: wake, responder: responder)
            loop.run()
            finished.signal()
        }
        thread.name = "cmk simulated platform \(socketPath)"
        thread.start()
    }

    /// Serves one simulated SEV-SNP launch: its ``SimulatedSNPLaunch/respond(to:)`` answers every frame.
    public convenience init(socketPath: String, launch: SimulatedSNPLaunch) throws(PlatformSimulatorError) {
        try self.init(socketPath: socketPath) { launch.respond(to: $0) }
    }

    /// Serves one simulated TDX launch: its ``SimulatedTDXLaunch/respond(to:)`` answers every frame.
    public convenience init(socketPath: String, launch: SimulatedTDXLaunch) throws(PlatformSimulatorError) {
        try self.init(socketPath: socketPath) { launch.respond(to: $0) }
    }

    /// Stops answering: closes every connection and the socket, removes the socket file. Idempotent.
    public func stop() {
        let first = stopped.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var byte: UInt8 = 1
        while Self.posixWrite(wakeWrite, &byte, 1) < 0 && errno == EINTR {}
        finished.wait()
        close(wakeWrite)
        close(wakeRead)
        unlink(socketPath)
    }

    deinit { stop() }

    /// A listening, non-blocking UNIX stream socket at `path`.
    private static func listen(at path: String) throws(PlatformSimulatorError) -> Int32 {
        var address = sockaddr_un()
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw PlatformSimulatorError(
                .socket, "the socket path is \(pathBytes.count) bytes; a UNIX socket path has 1 to \(capacity - 1)")
        }
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard existing.st_mode & S_IFMT == S_IFSOCK else {
                throw PlatformSimulatorError(.socket, "\(path) exists and is not a socket; refusing to replace it")
            }
            unlink(path)
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else {
            throw PlatformSimulatorError(.socket, "cannot create a UNIX socket", nativeCode: UInt64(errno))
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, chmod(path, 0o600) == 0, posixListen(fd, 8) == 0, setNonBlocking(fd) else {
            let code = errno
            close(fd)
            if bound == 0 { unlink(path) }
            throw PlatformSimulatorError(.socket, "cannot listen on \(path)", nativeCode: UInt64(code))
        }
        return fd
    }

    static func setNonBlocking(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0
    }

    static func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(fd, buffer, count)
        #else
        Darwin.write(fd, buffer, count)
        #endif
    }
}

private func posixListen(_ fd: Int32, _ backlog: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.listen(fd, backlog)
    #else
    Darwin.listen(fd, backlog)
    #endif
}

/// The service thread's state: the listening socket, the connections and their buffers. Lives on that thread only.
private struct ServiceLoop {
    struct Connection {
        let fd: Int32
        var decoder = GuestFrameDecoder()
        var output: [UInt8] = []
        var written = 0
        var pendingOutput: Int { output.count - written }
    }

    let listener: Int32
    let wake: Int32
    let responder: SimulatedPlatformService.Responder
    var connections: [Connection] = []

    init(listener: Int32, wake: Int32, responder: @escaping SimulatedPlatformService.Responder) {
        self.listener = listener
        self.wake = wake
        self.responder = responder
    }

    mutating func run() {
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        loop: while true {
            var fds = [
                pollfd(fd: wake, events: Int16(POLLIN), revents: 0),
                pollfd(
                    fd: listener,
                    events: connections.count < SimulatedPlatformService.maximumConnections ? Int16(POLLIN) : 0,
                    revents: 0),
            ]
            for connection in connections {
                let events = Int16(POLLIN) | (connection.pendingOutput > 0 ? Int16(POLLOUT) : 0)
                fds.append(pollfd(fd: connection.fd, events: events, revents: 0))
            }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                break loop
            }
            if fds[0].revents != 0 { break loop }
            // Connections first (indices match `fds` from 2 on), removing closed ones from the end.
            for index in connections.indices.reversed() {
                let events = fds[index + 2].revents
                guard events != 0 else { continue }
                if !service(index, events: events, chunk: &chunk) {
                    close(connections[index].fd)
                    connections.remove(at: index)
                }
            }
            if fds[1].revents & Int16(POLLIN) != 0 { accept() }
        }
        for connection in connections { close(connection.fd) }
        close(listener)
    }

    mutating func accept() {
        let fd = posixAccept(listener)
        guard fd >= 0 else { return }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        guard SimulatedPlatformService.setNonBlocking(fd) else {
            close(fd)
            return
        }
        #if canImport(Darwin)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        connections.append(Connection(fd: fd))
    }

    /// Reads, answers and writes for one connection; false when it must be closed.
    mutating func service(_ index: Int, events: Int16, chunk: inout [UInt8]) -> Bool {
        if events & Int16(POLLNVAL | POLLERR) != 0 { return false }
        if events & Int16(POLLIN | POLLHUP) != 0 {
            let count = chunk.withUnsafeMutableBytes { recv(connections[index].fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return false }  // the peer closed
            if count < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR }
            connections[index].decoder.append(chunk[0..<count])
            while true {
                let message: GuestMessage?
                do {
                    message = try connections[index].decoder.next()
                } catch {
                    return false  // a malformed frame: the stream cannot be resynchronised
                }
                guard let message else { break }
                connections[index].output += responder(message).encoded()
                if connections[index].pendingOutput > SimulatedPlatformService.maximumPendingOutput { return false }
            }
            if connections[index].decoder.pendingByteCount > SimulatedPlatformService.maximumPendingInput {
                return false
            }
        }
        return flush(index)
    }

    /// Writes what the socket takes now; false on an error other than "would block".
    mutating func flush(_ index: Int) -> Bool {
        while connections[index].pendingOutput > 0 {
            let connection = connections[index]
            let count = connection.output.withUnsafeBytes { buffer in
                send(connection.fd, buffer.baseAddress! + connection.written, connection.pendingOutput, Self.sendFlags)
            }
            if count < 0 {
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
            }
            connections[index].written += count
        }
        connections[index].output.removeAll(keepingCapacity: true)
        connections[index].written = 0
        return true
    }

    #if canImport(Glibc)
    static let sendFlags = Int32(MSG_NOSIGNAL)
    #else
    static let sendFlags: Int32 = 0
    #endif
}

private func posixAccept(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.accept(fd, nil, nil)
    #else
    Darwin.accept(fd, nil, nil)
    #endif
}
