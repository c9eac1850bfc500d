import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// The host end of one guest port: a UNIX stream socket the host listens on, which QEMU's
/// `-chardev socket,path=...,reconnect=...` connects to. One connection at a time; when QEMU disconnects (the
/// instance stopped, or reconnects) the listener accepts the next one. Bytes from every connection are kept in
/// order; a dedicated thread accepts and reads, so nothing blocks a concurrency thread.
public final class GuestPortListener: Sendable {
    public let path: String
    private let state: ListenerState

    /// `sun_path` holds 108 bytes including the NUL.
    public static let maximumPathLength = 107

    /// Binds and listens on `path` (which must not exist) and starts accepting.
    public init(path: String) throws(QEMULaunchError) {
        guard !path.isEmpty, path.utf8.count <= Self.maximumPathLength else {
            throw QEMULaunchError(
                .socketFailed,
                "the socket path '\(path)' is \(path.utf8.count) bytes; "
                    + "UNIX sockets allow 1 to \(Self.maximumPathLength)"
            )
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw QEMULaunchError(.socketFailed, "socket(AF_UNIX): \(String(cString: strerror(errno)))")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(descriptor, 1) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw QEMULaunchError(.socketFailed, "cannot listen on \(path): \(reason)")
        }
        self.path = path
        let state = ListenerState(listening: descriptor)
        self.state = state
        Thread.detachNewThread { state.acceptLoop() }
    }

    deinit {
        state.shutdown()
        unlink(path)
    }

    /// Whether QEMU is connected now.
    public var isConnected: Bool { state.isConnected }

    /// How many connections have been accepted.
    public var connectionCount: Int { state.connections }

    /// Every byte received so far, over all connections.
    public func receivedBytes() -> [UInt8] { state.received }

    /// Waits until at least `count` bytes have arrived; returns them, or nil after `timeout`.
    public func waitForBytes(atLeast count: Int, timeout: Duration) async -> [UInt8]? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let bytes = state.received
            if bytes.count >= count { return bytes }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Sends `bytes` to the connected guest port; throws when nothing is connected or the write fails.
    public func send(_ bytes: [UInt8]) throws(QEMULaunchError) {
        try state.send(bytes)
    }

    /// Stops accepting, closes any connection and removes the socket file. Called by `deinit` too.
    public func close() {
        state.shutdown()
        unlink(path)
    }
}

/// Descriptors and received bytes, shared between the accepting thread and callers under a lock.
private final class ListenerState: @unchecked Sendable {
    private let lock = NSLock()
    private let listening: Int32
    private var connection: Int32 = -1
    private var bytes: [UInt8] = []
    private var closed = false
    private var accepted = 0
    private let finished = DispatchSemaphore(value: 0)

    init(listening: Int32) { self.listening = listening }

    var isConnected: Bool { lock.withLock { connection >= 0 } }
    var connections: Int { lock.withLock { accepted } }
    var received: [UInt8] { lock.withLock { bytes } }

    func acceptLoop() {
        defer {
            Glibc.close(listening)
            finished.signal()
        }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while !lock.withLock({ closed }) {
            let client = accept(listening, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return  // shut down
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let keep: Bool = lock.withLock {
                guard !closed else { return false }
                connection = client
                accepted += 1
                return true
            }
            guard keep else {
                Glibc.close(client)
                return
            }
            while true {
                let count = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                lock.withLock { bytes += buffer[0..<count] }
            }
            lock.withLock { connection = -1 }
            Glibc.close(client)
        }
    }

    func send(_ data: [UInt8]) throws(QEMULaunchError) {
        let result: String? = lock.withLock {
            guard connection >= 0 else { return "no guest is connected" }
            var offset = 0
            while offset < data.count {
                // MSG_NOSIGNAL: a guest that went away is an error here, not a SIGPIPE for the whole process.
                let written = data[offset...].withUnsafeBytes {
                    Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                offset += written
            }
            return nil
        }
        if let result { throw QEMULaunchError(.socketFailed, "cannot send to the guest port: \(result)") }
    }

    /// Unblocks the accepting thread (shutdown(2) wakes a blocked accept or read) and waits for it to finish.
    func shutdown() {
        let first: Bool = lock.withLock {
            guard !closed else { return false }
            closed = true
            Glibc.shutdown(listening, Int32(SHUT_RDWR))
            if connection >= 0 { Glibc.shutdown(connection, Int32(SHUT_RDWR)) }
            return true
        }
        if first { _ = finished.wait(timeout: .now() + 5) }
    }
}
