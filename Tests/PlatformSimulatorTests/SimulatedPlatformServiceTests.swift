import Foundation
import GuestProtocol
import PlatformSimulator
import SEVSNP
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking UNIX-socket client with a receive timeout: what QEMU's chardev is to the service.
final class UnixSocketClient {
    let fd: Int32

    init(path: String) throws {
        #if canImport(Glibc)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0 else {
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { posixSend(fd, $0.baseAddress! + sent, $0.count - sent) }
            if count <= 0 { return }
            sent += count
        }
    }

    /// The next message, or nil when the service closed the connection (or nothing came within the timeout).
    func receive(into decoder: inout GuestFrameDecoder) throws -> GuestMessage? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let message = try decoder.next() { return message }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            decoder.append(buffer[0..<count])
        }
    }

    /// Whether the service closed the connection: recv returns 0, or ECONNRESET when the service closed with bytes
    /// unread (Linux reports that for UNIX sockets); a timeout (EAGAIN) is not a close.
    func closedByPeer() -> Bool {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, 0)
        return count == 0 || (count < 0 && errno == ECONNRESET)
    }
}

private func posixSend(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL))
    #else
    Darwin.send(fd, buffer, count, 0)
    #endif
}

/// Socket paths the tests made, removed when the process exits (a stopped service removes its own).
enum SocketPaths {
    static let created: Mutex<[String]> = {
        atexit { SocketPaths.created.withLock { $0.forEach { unlink($0) } } }
        return Mutex([])
    }()
}

@Suite("The simulated platform's UNIX-socket service")
struct SimulatedPlatformServiceTests {
    /// A short path (a UNIX socket path has at most 107 bytes), removed at the end of the test process.
    static func socketPath() throws -> String {
        let path = "/tmp/cmk-platform-\(UInt32.random(in: 0...UInt32.max)).sock"
        SocketPaths.created.withLock { $0.append(path) }
        return path
    }

    @Test(
        "answers a report request over a real UNIX socket, in pieces too, and removes its socket when stopped",
        .timeLimit(.minutes(3)))
    func answersOverSocket() throws {
        let launch = try SimulatedPlatformFixture.platform().processor.launch(
            try SimulatedPlatformFixture.launchInputs())
        let path = try Self.socketPath()
        let service = try SimulatedPlatformService(socketPath: path, launch: launch)
        let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)
        #expect(mode.intValue == 0o600)

        let client = try UnixSocketClient(path: path)
        var decoder = GuestFrameDecoder()
        let reportData = [UInt8](repeating: 0x5A, count: 64)
        let request = GuestMessage.snpReportRequest(reportData: reportData, vmpl: 0).encoded()
        // One request sent whole, one byte by byte: both are answered.
        client.send(request)
        for byte in request { client.send([byte]) }
        for _ in 0..<2 {
            guard case .snpReportResponse(let bytes, let table) = try client.receive(into: &decoder) else {
                Issue.record("no report response")
                return
            }
            let report = try SNPReport(bytes: bytes)
            #expect(report.reportData == reportData)
            #expect(report.measurement == launch.measurement)
            #expect(table == launch.certificateTable)
        }
        client.send(GuestMessage.shutdown.encoded())
        guard case .failure = try client.receive(into: &decoder) else {
            Issue.record("a non-platform message was not answered with a failure")
            return
        }
        service.stop()
        service.stop()  // idempotent
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(client.closedByPeer())
    }

    @Test("closes a connection on a malformed frame and keeps serving new ones", .timeLimit(.minutes(3)))
    func closesOnGarbage() throws {
        let launch = try SimulatedPlatformFixture.platform().processor.launch(
            try SimulatedPlatformFixture.launchInputs())
        let path = try Self.socketPath()
        let service = try SimulatedPlatformService(socketPath: path, launch: launch)
        defer { service.stop() }
        let garbage: [[UInt8]] = [
            [0, 0, 0, 0],  // a zero-length frame
            [0, 0, 0, 2, 0x42, 0],  // an unknown message type
            [0, 0, 0, 5, 0x01, 1, 2, 3, 4],  // a report request cut short inside its frame
            [0xFF, 0xFF, 0xFF, 0xFF],  // a 4 GiB frame
        ]
        for bytes in garbage {
            let client = try UnixSocketClient(path: path)
            client.send(bytes)
            #expect(client.closedByPeer(), "\(bytes)")
        }
        // Bytes that never form a frame are bounded: past 64 KiB of a declared 16 MiB frame, the connection closes.
        let flood = try UnixSocketClient(path: path)
        flood.send(
            [0x01, 0x00, 0x00, 0x00]
                + [UInt8](repeating: 0x01, count: SimulatedPlatformService.maximumPendingInput + 4096))
        #expect(flood.closedByPeer())
        // The service still answers a well-formed request afterwards.
        let client = try UnixSocketClient(path: path)
        var decoder = GuestFrameDecoder()
        client.send(GuestMessage.snpReportRequest(reportData: [UInt8](repeating: 1, count: 64), vmpl: 3).encoded())
        guard case .snpReportResponse(let bytes, _) = try client.receive(into: &decoder) else {
            Issue.record("no answer after the garbage")
            return
        }
        #expect(try SNPReport(bytes: bytes).vmpl == 3)
    }

    @Test("refuses to replace a file that is not a socket, and a path too long for a socket")
    func refusesBadPaths() throws {
        let launch = try SimulatedPlatformFixture.platform().processor.launch(
            try SimulatedPlatformFixture.launchInputs())
        let path = try Self.socketPath()
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        #expect { try SimulatedPlatformService(socketPath: path, launch: launch) } throws: {
            ($0 as? PlatformSimulatorError)?.code == .socket
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
        let long = "/tmp/" + String(repeating: "x", count: 200)
        #expect { try SimulatedPlatformService(socketPath: long, launch: launch) } throws: {
            ($0 as? PlatformSimulatorError)?.code == .socket
        }
    }
}
