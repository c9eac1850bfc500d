import Foundation
import GuestAgent
import GuestProtocol
import Glibc
import Testing

@Suite("Message port")
struct MessagePortTests {
    @Test("a frame that arrives one byte at a time is one message")
    func reassemblesPartialReads() throws {
        let (agentEnd, testEnd) = try socketPair()
        let port = MessagePort(agentEnd, name: "control")
        let frame = GuestMessage.attestRequest(nonce: Array(repeating: 7, count: 32)).encoded()
        let writer = Background { () -> Bool in
            for byte in frame {
                guard (try? testEnd.writeAll([byte])) != nil else { return false }
                usleep(200)
            }
            return true
        }
        #expect(try port.receive(milliseconds: 10_000) == .attestRequest(nonce: Array(repeating: 7, count: 32)))
        #expect(writer.join() == true)
    }

    @Test("two frames in one write are two messages")
    func splitsCoalescedFrames() throws {
        let (agentEnd, testEnd) = try socketPair()
        let port = MessagePort(agentEnd, name: "control")
        try testEnd.writeAll(GuestMessage.handoverAck.encoded() + GuestMessage.shutdown.encoded())
        #expect(try port.receive(milliseconds: 1000) == .handoverAck)
        #expect(try port.receive(milliseconds: 1000) == .shutdown)
    }

    @Test("no message in time is a timeout")
    func timesOut() throws {
        let (agentEnd, testEnd) = try socketPair()
        let port = MessagePort(agentEnd, name: "platform")
        try testEnd.writeAll(Array(GuestMessage.shutdown.encoded().prefix(3)))
        let start = ContinuousClock.now
        let error = #expect(throws: GuestAgentError.self) { try port.receive(milliseconds: 150) }
        #expect(error?.code == .timeout)
        #expect(ContinuousClock.now - start >= .milliseconds(140))
    }

    @Test("end of stream between frames is nil; inside a frame it is an error")
    func endOfStream() throws {
        var (agentEnd, testEnd) = try socketPair()
        var port = MessagePort(agentEnd, name: "control")
        try testEnd.writeAll(GuestMessage.shutdown.encoded())
        shutdown(testEnd.rawValue, Int32(SHUT_WR))
        #expect(try port.receive(milliseconds: 1000) == .shutdown)
        #expect(try port.receive(milliseconds: 1000) == nil)

        (agentEnd, testEnd) = try socketPair()
        port = MessagePort(agentEnd, name: "control")
        try testEnd.writeAll(Array(GuestMessage.shutdown.encoded().prefix(4)))
        shutdown(testEnd.rawValue, Int32(SHUT_WR))
        let error = #expect(throws: GuestAgentError.self) { try port.receive(milliseconds: 1000) }
        #expect(error?.code == .peerClosed)
    }

    @Test("a malformed frame is a protocol violation")
    func malformedFrame() throws {
        let (agentEnd, testEnd) = try socketPair()
        let port = MessagePort(agentEnd, name: "control")
        try testEnd.writeAll([0, 0, 0, 1, 0x77])  // unknown type
        let error = #expect(throws: GuestAgentError.self) { try port.receive(milliseconds: 1000) }
        #expect(error?.code == .protocolViolation)
    }

    @Test("a port path that is a UNIX socket is connected to; a missing path is unavailable")
    func opensSocketPaths() throws {
        let directory = try temporaryDirectory("port")
        defer { removeTree(directory) }
        let listener = try UnixListener(path: "\(directory)/control.sock")
        let port = try MessagePort(path: "\(directory)/control.sock", name: "control")
        let accepted = try listener.accept(milliseconds: 5000)
        try MessagePort(accepted, name: "test").send(.handoverAck)
        #expect(try port.receive(milliseconds: 1000) == .handoverAck)
        let error = #expect(throws: GuestAgentError.self) { try MessagePort(path: "\(directory)/absent", name: "x") }
        #expect(error?.code == .unavailable)
    }
}

/// A listening UNIX socket: the host end of a port, as QEMU's `-chardev socket,server=on` would hold it.
final class UnixListener {
    let descriptor: FileDescriptor
    let path: String

    init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw GuestAgentError(.io, "socket: errno \(errno)") }
        descriptor = FileDescriptor(adopting: fd)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(fd, 4) == 0 else { throw GuestAgentError(.io, "bind/listen \(path): errno \(errno)") }
    }

    /// The next connection; throws when none came within `milliseconds`.
    func accept(milliseconds: Int32) throws -> FileDescriptor {
        guard try descriptor.waitReadable(milliseconds: milliseconds) else {
            throw GuestAgentError(.timeout, "nobody connected to \(path)")
        }
        let fd = Glibc.accept(descriptor.rawValue, nil, nil)
        guard fd >= 0 else { throw GuestAgentError(.io, "accept: errno \(errno)") }
        return FileDescriptor(adopting: fd)
    }

    deinit { unlink(path) }
}
