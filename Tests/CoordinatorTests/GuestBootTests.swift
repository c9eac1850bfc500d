import CMKTesting
import Coordinator
import Foundation
import GuestImage
import GuestProtocol
import Testing
#if canImport(Glibc)
    import Glibc
#endif

/// A short folder for sockets: `sun_path` holds 107 bytes, and test temporary folders can be long.
func shortTemporaryDirectory() throws -> URL {
    let url = URL(fileURLWithPath: "/tmp/cmk-\(UUID().uuidString.prefix(8).lowercased())")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// What one real boot of a profile's image showed.
struct BootOutcome {
    let image: GuestImage
    let cpuModel: String
    /// From QEMU's start to the init's readiness marker on the serial console.
    let markerAfter: Duration?
    /// From QEMU's start to the first byte on the control socket.
    let frameAfter: Duration?
    let controlBytes: [UInt8]
    let platformConnections: Int
    let serialText: String
    let pidFromFile: Int32?
    let processIdentifier: Int32
    let wasRunning: Bool
    let exitStatus: Int32
    let stopTook: Duration
    let qemuOutput: String

    var diagnosis: String { "serial log:\n\(serialText.suffix(3000))\nQEMU: \(qemuOutput)" }
}

@Suite("booting a child under QEMU for real", .serialized)
struct GuestBootTests {
    /// How long a boot may take: OVMF and the kernel under TCG take 10 to 60 s on a shared two-core host.
    static let readinessLimit: Duration = .seconds(120)

    /// Builds `profile`'s image (no agent), boots it with the simulated-path command under TCG through OVMF, waits
    /// (at most ``readinessLimit``) for the readiness marker and a byte on the control socket, then stops QEMU.
    static func boot(profile name: String) async throws -> BootOutcome {
        let qemu = try #require(CommandRunner.which("qemu-system-x86_64"), "QEMU must be installed (scripts/setup)")
        let work = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let catalog = GuestProfileCatalog(
            directory: SharedVectors.repositoryRoot.appendingPathComponent("guest-kernels"))
        let image = try await GuestImage.build(
            profile: try catalog.profile(named: name), cacheDirectory: SharedVectors.cacheDirectory,
            output: work.appendingPathComponent("image"))

        let control = try GuestPortListener(path: work.appendingPathComponent("control.sock").path)
        let platform = try GuestPortListener(path: work.appendingPathComponent("platform.sock").path)
        let help = try await CommandRunner.run(qemu, ["-cpu", "help"], timeout: .seconds(30))
        let cpuModel = try #require(
            QEMUCPUModels(help: help.standardOutputText).epycModel(), "QEMU offers no EPYC model")
        let serial = SerialConsoleLog(url: work.appendingPathComponent("serial.log"))
        let pidFile = work.appendingPathComponent("qemu.pid")
        let command = SimulatedLaunchCommand(
            settings: QEMUInstanceSettings(
                name: "cmk-boot-\(name)", kernel: image.kernel.path, initrd: image.initrd.path,
                commandLine: image.commandLine, vcpus: image.vcpus, memoryMiB: image.memoryMiB,
                serialLog: serial.url.path, pidFile: pidFile.path, controlSocket: control.path,
                platformSocket: platform.path, qemu: qemu),
            accelerator: .tcg, cpuModel: cpuModel)

        // From here to stop() nothing throws, so QEMU is always torn down.
        let process = try QEMUProcess.start(try command.commandLine())
        var markerAfter: Duration?
        var frameAfter: Duration?
        var pidFromFile: Int32?
        while markerAfter == nil || frameAfter == nil {
            let elapsed = ContinuousClock.now - process.startedAt
            if elapsed > readinessLimit || !process.isRunning { break }
            if markerAfter == nil, serial.firstLine(containing: InitramfsLayout.readinessMarker) != nil {
                markerAfter = elapsed
            }
            // A whole frame, not its first byte: the init writes the frame in several pieces.
            if frameAfter == nil, Self.holdsWholeFrame(control.receivedBytes()) { frameAfter = elapsed }
            if pidFromFile == nil, let text = try? String(contentsOf: pidFile, encoding: .utf8) {
                pidFromFile = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let wasRunning = process.isRunning
        let stopStarted = ContinuousClock.now
        // A generous grace: on a loaded host QEMU can take seconds to be scheduled and exit; what counts is that it
        // exits on SIGTERM rather than needing SIGKILL (status 137).
        let status = await process.stop(grace: .seconds(30))
        return BootOutcome(
            image: image, cpuModel: cpuModel, markerAfter: markerAfter, frameAfter: frameAfter,
            controlBytes: control.receivedBytes(), platformConnections: platform.connectionCount,
            serialText: serial.text(), pidFromFile: pidFromFile, processIdentifier: process.processIdentifier,
            wasRunning: wasRunning, exitStatus: status, stopTook: ContinuousClock.now - stopStarted,
            qemuOutput: process.output)
    }

    /// Whether `bytes` begin with a complete frame (u32be length, then that many bytes).
    static func holdsWholeFrame(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 4 else { return false }
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        return bytes.count >= 4 + length
    }

    @Test(
        "the general image (no agent) boots through OVMF under TCG to its readiness marker and a control-port frame",
        .timeLimit(.minutes(4)))
    func generalImageBoots() async throws {
        let boot = try await Self.boot(profile: "general")
        #expect(boot.image.agent == nil)

        // Teardown: SIGTERM sufficed, and the process is gone and reaped, not merely signalled.
        #expect(boot.wasRunning, "QEMU exited by itself (status \(boot.exitStatus)): \(boot.qemuOutput)")
        #expect(boot.exitStatus != 128 + SIGKILL, "QEMU ignored SIGTERM and had to be killed")
        #expect(
            kill(boot.processIdentifier, 0) == -1 && errno == ESRCH, "QEMU \(boot.processIdentifier) is still there")
        #expect(boot.pidFromFile == boot.processIdentifier, "the pid file names another process")

        let marker = try #require(
            boot.markerAfter, "no readiness marker within \(Self.readinessLimit); \(boot.diagnosis)")
        let frame = try #require(boot.frameAfter, "no byte on the control socket within \(Self.readinessLimit)")
        var decoder = GuestFrameDecoder()
        decoder.append(boot.controlBytes)
        let message = try #require(try decoder.next(), "the bytes on the control port are not a whole frame")
        guard case .failure(let reason) = message else {
            Issue.record("expected the init's failure frame, got \(message)")
            return
        }
        #expect(reason.contains("no /sbin/cmk-guest"))
        #expect(decoder.pendingByteCount == 0)
        #expect(boot.platformConnections >= 1, "QEMU never connected to the platform socket")

        let readyLine =
            boot.serialText.split(whereSeparator: \.isNewline)
            .first(where: { $0.contains(InitramfsLayout.readinessMarker) }) ?? ""
        let kernelUp =
            readyLine.split(separator: " ").first(where: { $0.hasPrefix("up=") }).map { String($0.dropFirst(3)) } ?? "?"
        print(
            String(
                format:
                    "boot: general image (initrd %d bytes, kernel %d bytes), TCG, %@: "
                    + "QEMU start -> readiness marker %.1f s, "
                    + "-> control frame %.1f s (guest kernel up %@ s at the marker); stop took %.2f s",
                boot.image.initrd.size, boot.image.kernel.size, boot.cpuModel, seconds(marker), seconds(frame),
                kernelUp, seconds(boot.stopTook)))
    }

    @Test(
        "the database and realtime tunings take effect on Debian's cloud kernel", .timeLimit(.minutes(4)),
        arguments: [
            ("database", ["thp always madvise [never]", "dirty 5/10 %", "swappiness 1"]),
            ("realtime", ["isolated cpus '1'", "nohz_full '1'", "(full)", "thp always madvise [never]"]),
        ])
    func tuningTakesEffect(profile: String, expected: [String]) async throws {
        let boot = try await Self.boot(profile: profile)
        _ = try #require(boot.markerAfter, "no readiness marker within \(Self.readinessLimit); \(boot.diagnosis)")
        let tuning = try #require(
            boot.serialText.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmk-init: tuning:") }),
            "the init printed no tuning line")
        for fragment in expected {
            #expect(tuning.contains(fragment), "\(profile): '\(fragment)' missing from '\(tuning)'")
        }
        #expect(!boot.serialText.contains("Unknown kernel command line parameters"))
        print(
            "boot: \(profile) image ready after \(String(format: "%.1f", seconds(boot.markerAfter ?? .zero))) s; "
                + tuning
        )
    }
}

@Suite("guest port sockets")
struct GuestPortListenerTests {
    /// Connects to a UNIX socket as QEMU does; returns the descriptor.
    func connect(_ path: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(result == 0, "connect: \(String(cString: strerror(errno)))")
        return descriptor
    }

    @Test(
        "keeps bytes from successive connections in order, sends to the connected one, removes its socket file",
        .timeLimit(.minutes(3)))
    func receiveSendReconnect() async throws {
        let work = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let path = work.appendingPathComponent("port.sock").path
        let listener = try GuestPortListener(path: path)
        #expect(throws: QEMULaunchError.self) { try listener.send([1]) }

        let first = try connect(path)
        _ = [UInt8]("abc".utf8).withUnsafeBytes { write(first, $0.baseAddress, $0.count) }
        #expect(await listener.waitForBytes(atLeast: 3, timeout: .seconds(30)) == Array("abc".utf8))
        try listener.send(Array("ping".utf8))
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = buffer.withUnsafeMutableBytes { read(first, $0.baseAddress, $0.count) }
        #expect(Array(buffer.prefix(max(count, 0))) == Array("ping".utf8))
        close(first)

        let second = try connect(path)
        _ = [UInt8]("de".utf8).withUnsafeBytes { write(second, $0.baseAddress, $0.count) }
        #expect(await listener.waitForBytes(atLeast: 5, timeout: .seconds(30)) == Array("abcde".utf8))
        #expect(listener.connectionCount == 2)
        close(second)

        listener.close()
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(throws: QEMULaunchError.self) { try GuestPortListener(path: String(repeating: "x", count: 120)) }
    }
}
