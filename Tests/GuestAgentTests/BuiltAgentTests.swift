import CMKTesting
import Foundation
import GuestAgent
import GuestProtocol
import Glibc
import Testing

/// The `cmk-guest` executable that `swift build --build-tests` put beside the test bundle.
func builtAgent() throws -> URL { try GuestAgentBinary.debugBuild() }

/// The debug binary, and the static release binary the images carry when scripts/test named it ($CMK_GUEST_AGENT).
func agentBinaries() -> [String] {
    var binaries: [String] = []
    if let debug = try? builtAgent() { binaries.append(debug.path) }
    if let shipped = try? GuestAgentBinary.url(), !binaries.contains(shipped.path) { binaries.append(shipped.path) }
    return binaries
}

/// The real `cmk-guest` binary, run as a child process.
@Suite("cmk-guest executable")
struct BuiltAgentTests {
    @Test("the debug binary is built beside the tests")
    func debugBinaryExists() throws {
        _ = try builtAgent()
    }

    @Test("--version exits 0 and names the version; the binary's size is reported", arguments: agentBinaries())
    func version(binary: String) throws {
        let output = try ExternalTool.run(URL(fileURLWithPath: binary), ["--version"], timeout: 30)
        #expect(output.status == 0)
        #expect(output.standardOutput == "cmk-guest \(GuestAgent.version)\n")
        let size = try FileManager.default.attributesOfItem(atPath: binary)[.size] as? Int ?? 0
        print("cmk-guest at \(binary): \(size) bytes (\(size / 1024) KiB)")
        #expect(size > 0)
    }

    @Test("a usage error exits 2 and says why")
    func usageError() throws {
        let output = try ExternalTool.run(try builtAgent(), ["--control"], timeout: 30)
        #expect(output.status == 2)
        #expect(output.standardError.contains("--control needs a value"))
    }

    /// Synchronous on purpose: the test blocks on sockets, each wait bounded, and never on a concurrency thread.
    @Test(
        "end to end: ready, attestation through the platform port bound to nonce and key, shutdown ends the process",
        arguments: agentBinaries())
    func endToEnd(binary: String) throws {
        let directory = try temporaryDirectory("e2e")
        defer { removeTree(directory) }
        let controlListener = try UnixListener(path: "\(directory)/cmk.control")
        let platformListener = try UnixListener(path: "\(directory)/cmk.platform")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--control", controlListener.path, "--platform", platformListener.path, "--instance", "e2e-child",
            "--provider", "simulated-snp", "--platform-timeout", "10", "--on-shutdown", "exit",
        ]
        let standardError = Pipe()
        process.standardError = standardError
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        let platform = MessagePort(try platformListener.accept(milliseconds: 20_000), name: "platform")
        let control = MessagePort(try controlListener.accept(milliseconds: 20_000), name: "coordinator")
        #expect(
            try control.receive(milliseconds: 20_000)
                == .ready(instance: "e2e-child", agentVersion: GuestAgent.version, evidenceProvider: "simulated-snp"))

        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        try control.send(.attestRequest(nonce: nonce))
        guard case .snpReportRequest(let reportData, let vmpl)? = try platform.receive(milliseconds: 20_000) else {
            Issue.record("no report request on the platform port")
            return
        }
        #expect(vmpl == 0)
        let report = fakeSNPReport(reportData: reportData)
        let table = fakeCertificateTable(padTo: 0)
        try platform.send(.snpReportResponse(report: report, certificateTable: table))
        guard case .attestResponse(let kind, let publicKey, let evidence, let auxiliary)? =
            try control.receive(milliseconds: 20_000)
        else {
            Issue.record("no attestResponse")
            return
        }
        #expect(kind == "sev-snp")
        #expect(reportData == ReportData.binding(nonce: nonce, publicKey: publicKey))
        #expect(evidence == report)
        #expect(auxiliary == table)

        try control.send(.shutdown)
        waitForExit(process, timeout: 20)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        let log = String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("ready: instance e2e-child"))
        #expect(log.contains("shutdown requested"))
    }
}
