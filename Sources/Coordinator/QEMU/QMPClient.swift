public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A client of QEMU's machine protocol (QMP, JSON over the `-qmp unix:PATH,server=on,wait=off` socket).
///
/// Connecting reads the greeting and negotiates (`qmp_capabilities`); `execute` sends one command and returns its
/// `return` value, skipping the asynchronous events QEMU interleaves. Every wait has a deadline; a QMP `error` is a
/// `qmp` ``CoordinatorError`` with QEMU's class and description. Blocking: call it from a thread that may block.
public final class QMPClient {
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    public let path: String
    /// QEMU's version from the greeting (`7.2.22`).
    public private(set) var qemuVersion = ""
    /// Events received while waiting for answers (name and data), oldest first.
    public private(set) var events: [(name: String, data: [String: Any])] = []

    /// Connects, reads the greeting and leaves negotiation mode; retries the connection until `timeout`.
    public init(path: String, timeout: Duration = .seconds(10)) throws {
        self.path = path
        let deadline = ContinuousClock.now + timeout
        var connected: Int32 = -1
        while connected < 0 {
            connected = Self.connect(path)
            if connected >= 0 { break }
            guard ContinuousClock.now < deadline else {
                throw CoordinatorError(
                    .qmp, "cannot connect to QEMU's QMP socket \(path): \(String(cString: strerror(errno)))")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        descriptor = connected
        let greeting = try readObject(deadline: deadline)
        guard let qmp = greeting["QMP"] as? [String: Any] else {
            throw CoordinatorError(.qmp, "QEMU's QMP socket \(path) did not greet with a QMP object")
        }
        if let version = (qmp["version"] as? [String: Any])?["qemu"] as? [String: Any] {
            qemuVersion = "\(version["major"] ?? "?").\(version["minor"] ?? "?").\(version["micro"] ?? "?")"
        }
        _ = try execute("qmp_capabilities", timeout: .seconds(10))
    }

    deinit { close(descriptor) }

    private static func connect(_ path: String) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result != 0 {
            let saved = errno
            close(fd)
            errno = saved
            return -1
        }
        return fd
    }

    /// Runs one command; returns its `return` member (a dictionary, an array, or an empty dictionary).
    @discardableResult
    public func execute(_ command: String, arguments: [String: Any]? = nil, timeout: Duration = .seconds(30)) throws
        -> Any
    {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes += Array("\r\n".utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw CoordinatorError(
                    .qmp, "sending \(command) to \(path): \(String(cString: strerror(errno)))", nativeCode: errno)
            }
            sent += n
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            let answer = try readObject(deadline: deadline)
            if let event = answer["event"] as? String {
                events.append((event, answer["data"] as? [String: Any] ?? [:]))
                continue
            }
            if let error = answer["error"] as? [String: Any] {
                let kind = error["class"] as? String ?? "?"
                let text = error["desc"] as? String ?? "?"
                throw CoordinatorError(.qmp, "QEMU refused \(command): \(text) (\(kind))")
            }
            if let value = answer["return"] { return value }
            throw CoordinatorError(.qmp, "QEMU answered \(command) with neither return nor error")
        }
    }

    /// One JSON object (QMP ends each with a newline).
    private func readObject(deadline: ContinuousClock.Instant) throws -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.allSatisfy({ $0 == 13 || $0 == 32 }) { continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw CoordinatorError(.qmp, "QEMU sent a line that is not a JSON object on \(path)")
                }
                return object
            }
            guard buffer.count < 16 << 20 else {
                throw CoordinatorError(.qmp, "QEMU sent a line over 16 MiB on \(path)")
            }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw CoordinatorError(.qmp, "no answer from QEMU on \(path) in time") }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(left, .seconds(3600)).components.seconds * 1000 + 1)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 && errno != EINTR { throw CoordinatorError(.qmp, "poll on \(path) failed", nativeCode: errno) }
            if ready <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CoordinatorError(.qmp, "reading from \(path) failed", nativeCode: errno)
            }
            if n == 0 { throw CoordinatorError(.qmp, "QEMU closed the QMP socket \(path)") }
            buffer += chunk[0..<n]
        }
    }

    /// One vCPU as `query-cpus-fast` reports it.
    public struct VCPU: Sendable, Hashable {
        public let index: Int
        /// The host thread that runs it.
        public let threadID: Int32

        public init(index: Int, threadID: Int32) {
            self.index = index
            self.threadID = threadID
        }
    }

    /// A JSON number as an integer, however JSONSerialization bridged it.
    static func integer(_ value: Any?) -> Int? {
        if let value = value as? Int { return value }
        return (value as? NSNumber)?.intValue
    }

    /// The vCPUs and their host threads.
    public func vcpus() throws -> [VCPU] {
        guard let list = try execute("query-cpus-fast") as? [[String: Any]] else {
            throw CoordinatorError(.qmp, "query-cpus-fast did not return a list")
        }
        return try list.map { entry in
            guard let index = Self.integer(entry["cpu-index"]),
                let thread = Self.integer(entry["thread-id"]).flatMap(Int32.init(exactly:)),
                thread > 0
            else { throw CoordinatorError(.qmp, "query-cpus-fast gave an entry without cpu-index and thread-id") }
            return VCPU(index: index, threadID: thread)
        }.sorted { $0.index < $1.index }
    }
}
