import Foundation
import GuestProtocol
import Testing

@Suite("Framed UNIX sockets", .serialized)
struct FramedSocketTests {
    static func path() -> String { "/tmp/cmk-sock-\(UUID().uuidString.prefix(8))" }

    @Test("messages cross a real socket in both directions, in order", .timeLimit(.minutes(3)))
    func roundTrip() throws {
        let path = Self.path()
        let listener = try UnixSocketListener(path: path)
        let client = try FramedConnection.connect(path: path)
        let server = try listener.accept(timeout: .seconds(30))
        for message in GuestMessageTests.samples { try client.send(message) }
        for message in GuestMessageTests.samples { #expect(try server.receive(timeout: .seconds(30)) == message) }
        try server.send(.shutdown)
        #expect(try client.receive(timeout: .seconds(30)) == .shutdown)
        // The socket file is private to its owner.
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test("a deadline passes as an error, a closed peer is an error, garbage is an error", .timeLimit(.minutes(3)))
    func failures() throws {
        let path = Self.path()
        let listener = try UnixSocketListener(path: path)
        #expect(throws: SocketError.self) { try listener.accept(timeout: .milliseconds(100)) }
        let client = try FramedConnection.connect(path: path)
        let server = try listener.accept(timeout: .seconds(30))
        #expect(throws: SocketError.self) { try server.receive(timeout: .milliseconds(100)) }
        client.close()
        #expect(throws: SocketError.self) { try server.receive(timeout: .seconds(30)) }

        let raw = try FramedConnection.connect(path: path)
        let other = try listener.accept(timeout: .seconds(30))
        try raw.send(.failure("x"))
        _ = try other.receive(timeout: .seconds(30))
        // A frame announcing 2 GiB is refused without reading further.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(connected == 0)
        let victim = try listener.accept(timeout: .seconds(30))
        _ = [UInt8]([0x7F, 0xFF, 0xFF, 0xFF, 0x10]).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #expect(throws: SocketError.self) { try victim.receive(timeout: .seconds(30)) }
    }
}
