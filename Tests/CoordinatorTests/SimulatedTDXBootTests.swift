import Attestation
import BinaryFormat
import CMKTesting
import Coordinator
import Crypto
import Foundation
import GuestImage
import GuestProtocol
import PlatformSimulator
import TDX
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("a simulated TD under QEMU: cmk-guest fetches simulated TDX evidence", .serialized)
struct SimulatedTDXBootTests {
    /// Waits (polling, never blocking a thread) until the control port has delivered one more whole frame.
    static func nextFrame(
        _ control: GuestPortListener, _ decoder: inout GuestFrameDecoder, consumed: inout Int,
        deadline: ContinuousClock.Instant,
        process: QEMUProcess
    ) async throws -> GuestMessage? {
        while ContinuousClock.now < deadline && process.isRunning {
            let bytes = control.receivedBytes()
            if bytes.count > consumed {
                decoder.append(bytes[consumed...])
                consumed = bytes.count
            }
            if let message = try decoder.next() { return message }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test(
        "cmk-guest in a simulated TD (TCG, OVMF) fetches TDX evidence for a fresh nonce and it verifies",
        .timeLimit(.minutes(6)))
    func agentFetchesVerifiableTDXEvidence() async throws {
        let qemu = try #require(CommandRunner.which("qemu-system-x86_64"), "QEMU must be installed (scripts/setup)")
        let agent = try GuestAgentBinary.url()
        try #require(FileManager.default.isExecutableFile(atPath: agent.path), "build cmk-guest first (swift build)")
        let work = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let catalog = GuestProfileCatalog(
            directory: SharedVectors.repositoryRoot.appendingPathComponent("guest-kernels"))
        let image = try await GuestImage.build(
            profile: try catalog.profile(named: "general"), cacheDirectory: SharedVectors.cacheDirectory, agent: agent,
            output: work.appendingPathComponent("image"))

        // The simulated TDX platform measures exactly what QEMU is given.
        let firmwarePath = "/usr/share/ovmf/OVMF.fd"
        let commandLine = image.commandLine + " cmk.platform=tdx"
        let manifest = Array("{\"name\":\"tdx-boot-test\",\"nonce-free\":true}".utf8)
        let module = try SimulatedTDXModule(directory: work.appendingPathComponent("state/simulated/intel"))
        let launch = try module.launch(
            .init(
                firmware: [UInt8](try Data(contentsOf: URL(fileURLWithPath: firmwarePath))),
                kernel: [UInt8](try Data(contentsOf: URL(fileURLWithPath: image.kernel.path))),
                initrd: [UInt8](try Data(contentsOf: URL(fileURLWithPath: image.initrd.path))),
                cmdline: commandLine, memoryMiB: image.memoryMiB,
                mrConfigID: Array(SHA384.hash(data: manifest))))
        let platformPath = work.appendingPathComponent("platform.sock").path
        let service = try SimulatedPlatformService(socketPath: platformPath, launch: launch)
        defer { service.stop() }
        let control = try GuestPortListener(path: work.appendingPathComponent("control.sock").path)
        defer { control.close() }

        let help = try await CommandRunner.run(qemu, ["-cpu", "help"], timeout: .seconds(30))
        let cpuModel = try #require(
            QEMUCPUModels(help: help.standardOutputText).epycModel(), "QEMU offers no EPYC model")
        let serial = SerialConsoleLog(url: work.appendingPathComponent("serial.log"))
        let command = SimulatedLaunchCommand(
            settings: QEMUInstanceSettings(
                name: "cmk-sim-tdx", firmware: firmwarePath, kernel: image.kernel.path, initrd: image.initrd.path,
                commandLine: commandLine, vcpus: image.vcpus, memoryMiB: image.memoryMiB, serialLog: serial.url.path,
                pidFile: work.appendingPathComponent("qemu.pid").path, controlSocket: control.path,
                platformSocket: platformPath, qemu: qemu),
            accelerator: .tcg, cpuModel: cpuModel)
        let process = try QEMUProcess.start(try command.commandLine())
        var decoder = GuestFrameDecoder()
        var consumed = 0
        var outcome: (ready: GuestMessage?, answer: GuestMessage?, nonce: [UInt8], seconds: Double) = (nil, nil, [], 0)
        do {
            let deadline = ContinuousClock.now + .seconds(180)
            outcome.ready = try await Self.nextFrame(
                control, &decoder, consumed: &consumed, deadline: deadline, process: process)
            if case .ready? = outcome.ready {
                outcome.nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
                let asked = ContinuousClock.now
                try control.send(GuestMessage.attestRequest(nonce: outcome.nonce).encoded())
                outcome.answer = try await Self.nextFrame(
                    control, &decoder, consumed: &consumed, deadline: ContinuousClock.now + .seconds(120),
                    process: process)
                outcome.seconds = seconds(ContinuousClock.now - asked)
            }
        } catch {
            Issue.record("the control port failed: \(error)")
        }
        if outcome.ready != nil { try? control.send(GuestMessage.shutdown.encoded()) }
        _ = await process.stop(grace: .seconds(5))

        guard case .ready(_, _, let provider)? = outcome.ready else {
            Issue.record("no ready frame; serial log:\n\(serial.text().suffix(3000))\nQEMU: \(process.output)")
            return
        }
        #expect(provider == "simulated-tdx")
        guard case .attestResponse(let kind, let publicKey, let quoteBytes, let eventLog)? = outcome.answer else {
            Issue.record(
                "no attestation response: \(String(describing: outcome.answer)); \(serial.text().suffix(2000))")
            return
        }
        #expect(kind == "tdx")
        let anchors = try TrustAnchorStore(directory: SharedVectors.attestationDirectory, simulated: module.directory)
        let quote = try TDXQuote(bytes: quoteBytes)
        let result = try TDXVerifier(trustAnchors: anchors).verify(
            quote, collateral: try module.collateral(), options: TDXVerificationOptions(evaluationTime: Date()))
        #expect(result.valid && result.tcbStatus == "UpToDate", "\(result.failures)")
        #expect(result.claims.simulated && result.claims.trustAnchor == "simulated-intel")
        #expect(result.claims.reportData.bytes == ReportData.binding(nonce: outcome.nonce, publicKey: publicKey))
        #expect(result.claims.mrTD.bytes == launch.mrTD)
        #expect(result.claims.mrConfigID.bytes == Array(SHA384.hash(data: manifest)))
        #expect(eventLog == launch.eventLog)
        print(
            String(
                format: "simulated TDX boot: agent ready, quote of %d bytes + event log of %d bytes for a fresh nonce "
                    + "in %.2f s round trip (TCG guest)", quoteBytes.count, eventLog.count, outcome.seconds))
    }
}
