import Foundation
import Glibc

/// A client of a stable endpoint on its own thread, the load generator of UpdateCommandTests and PoolCommandTests: one
/// request line in a loop over one TCP connection (reconnecting if it drops), recording failed requests and the
/// longest gap between two answers; for `INCR` of one counter behind one instance, whether every answer is the
/// previous + 1; otherwise how often each answer came and when first (which instance answered, when the answers tell
/// the instances apart).
final class LoopingClient: @unchecked Sendable {
    let port: Int
    let request: [UInt8]
    let pause: TimeInterval
    let checksSequence: Bool
    private let lock = NSLock()
    private var running = true
    private(set) var answers = 0
    private(set) var failures: [String] = []
    private(set) var longestGap = 0.0
    private(set) var last: Int64?
    private(set) var outOfOrder: [String] = []
    private(set) var tally: [String: Int] = [:]
    private(set) var firstSeen: [String: Date] = [:]
    private let done = DispatchSemaphore(value: 0)

    init(port: Int, request: String = "INCR counter", pause: TimeInterval = 0, checksSequence: Bool = true) {
        self.port = port
        self.request = Array("\(request)\n".utf8)
        self.pause = pause
        self.checksSequence = checksSequence
    }

    func start() { Thread.detachNewThread { self.loop() } }

    func stop() -> (answers: Int, failures: [String], longestGap: Double, last: Int64?, outOfOrder: [String]) {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { (answers, failures, longestGap, last, outOfOrder) }
    }

    /// How often each answer came, and when first (after ``stop()``, or while running).
    var answersSeen: (tally: [String: Int], firstSeen: [String: Date]) { lock.withLock { (tally, firstSeen) } }

    private func connectSocket() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    private func loop() {
        defer { done.signal() }
        var fd = connectSocket()
        var previous = Date()
        while lock.withLock({ running }) {
            if fd < 0 {
                lock.withLock { failures.append("cannot connect") }
                Thread.sleep(forTimeInterval: 0.05)
                fd = connectSocket()
                continue
            }
            var line: [UInt8] = []
            var ok = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == request.count
            var byte: UInt8 = 0
            while ok {
                let n = read(fd, &byte, 1)
                if n != 1 { ok = false; break }
                if byte == 0x0A { break }
                line.append(byte)
            }
            let now = Date()
            let answer = String(decoding: line, as: UTF8.self)
            lock.withLock {
                longestGap = max(longestGap, now.timeIntervalSince(previous))
                if !ok || !(answer == "OK" || answer.hasPrefix("OK ")) {
                    failures.append(ok ? answer : "connection lost")
                } else {
                    answers += 1
                    if checksSequence, let value = Int64(answer.dropFirst(3)) {
                        if let last, value != last + 1 { outOfOrder.append("\(last) → \(value)") }
                        last = value
                    } else if !checksSequence {
                        tally[answer, default: 0] += 1
                        if firstSeen[answer] == nil { firstSeen[answer] = now }
                    }
                }
            }
            previous = now
            if !ok {
                close(fd)
                fd = connectSocket()
            }
            if pause > 0 { Thread.sleep(forTimeInterval: pause) }
        }
        if fd >= 0 { close(fd) }
    }
}
