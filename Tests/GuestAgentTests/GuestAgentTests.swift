import Crypto
import Foundation
import GuestAgent
import GuestProtocol
import Glibc
import Testing

/// The control loop over real sockets: the test plays the coordinator on one socket pair and the simulated
/// platform on another; the agent runs on its own thread.
@Suite("Control loop")
struct ControlLoopTests {
    /// An agent with a simulated SEV-SNP platform; returns the coordinator's and the platform's ends.
    func startAgent(
        instance: String = "child-1"
    ) throws -> (agent: GuestAgent, run: Background<Result<GuestAgent.Outcome, GuestAgentError>>, control: MessagePort,
        platform: MessagePort)
    {
        let (agentControl, coordinatorEnd) = try socketPair()
        let (agentPlatform, platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentPlatform, name: "platform"), platform: .sevSNP, timeoutMilliseconds: 5000,
            log: .silent)
        let agent = GuestAgent(instance: instance, provider: provider, log: .silent)
        let controlPort = MessagePort(agentControl, name: "control")
        nonisolated(unsafe) let unsafeAgent = agent
        let run = Background { () -> Result<GuestAgent.Outcome, GuestAgentError> in
            do throws(GuestAgentError) {
                return .success(try unsafeAgent.serve(controlPort))
            } catch {
                return .failure(error)
            }
        }
        return (agent, run, MessagePort(coordinatorEnd, name: "coordinator"), MessagePort(platformEnd, name: "sim"))
    }

    @Test("ready, two attestations bound to nonce and a fresh key each, handover, shutdown")
    func fullSession() throws {
        let (agent, run, control, platform) = try startAgent()
        #expect(
            try control.receive(milliseconds: 5000)
                == .ready(instance: "child-1", agentVersion: GuestAgent.version, evidenceProvider: "simulated-snp"))

        var keys: [[UInt8]] = []
        for round in 0..<2 {
            let nonce = (0..<32).map { UInt8($0 + round) }
            try control.send(.attestRequest(nonce: nonce))
            let asked = try answerSNPRequest(on: platform, certificateTable: [9, 9, 9])
            guard case .attestResponse(let kind, let publicKey, let evidence, let auxiliary)? =
                try control.receive(milliseconds: 5000)
            else {
                Issue.record("no attestResponse")
                return
            }
            #expect(kind == "sev-snp")
            #expect(publicKey.count == 32)
            #expect(asked == ReportData.binding(nonce: nonce, publicKey: publicKey))
            #expect(evidence == fakeSNPReport(reportData: asked))
            #expect(auxiliary == [9, 9, 9])
            // The key is a real X25519 public key.
            #expect(throws: Never.self) { try Curve25519.KeyAgreement.PublicKey(rawRepresentation: publicKey) }
            keys.append(publicKey)
        }
        #expect(keys[0] != keys[1])

        try control.send(.handover(secrets: ["db-password"], volumes: ["vol-a"], channelPeers: ["child-2"]))
        #expect(try control.receive(milliseconds: 5000) == .handoverAck)
        try control.send(.shutdown)
        guard case .success(let outcome)? = run.join() else {
            Issue.record("the agent did not stop cleanly")
            return
        }
        #expect(outcome == .shutdownRequested)
        let expected = GuestAgent.Handover(secrets: ["db-password"], volumes: ["vol-a"], channelPeers: ["child-2"])
        #expect(agent.handover == expected)
        #expect(agent.sessionPublicKey == nil)  // dropped at shutdown
    }

    @Test("heartbeats are answered at once with the same version and sequence, between other requests")
    func answersHeartbeats() throws {
        let (_, run, control, platform) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        for sequence in [UInt64(1), 2, 0xFFFF_FFFF_FFFF] {
            try control.send(.ping(version: GuestMessage.heartbeatVersion, sequence: sequence))
            #expect(
                try control.receive(milliseconds: 5000)
                    == .pong(version: GuestMessage.heartbeatVersion, sequence: sequence))
        }
        // A heartbeat after an attestation is still answered: the loop goes on.
        try control.send(.attestRequest(nonce: [7]))
        _ = try answerSNPRequest(on: platform)
        guard case .attestResponse? = try control.receive(milliseconds: 5000) else {
            Issue.record("no attestResponse")
            return
        }
        try control.send(.ping(version: GuestMessage.heartbeatVersion, sequence: 9))
        #expect(try control.receive(milliseconds: 5000) == .pong(version: GuestMessage.heartbeatVersion, sequence: 9))
        try control.send(.shutdown)
        _ = run.join()
    }

    @Test("a pong sent to the agent does not belong on its side of the control port and closes it")
    func refusesPong() throws {
        let (_, run, control, _) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.send(.pong(version: GuestMessage.heartbeatVersion, sequence: 1))
        guard case .failure? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure answer")
            return
        }
        guard case .failure(let error)? = run.join() else {
            Issue.record("the agent went on")
            return
        }
        #expect(error.code == .protocolViolation)
    }

    @Test("the private key stays in the agent: its public half is what the response carried")
    func keepsSessionKey() throws {
        let (agent, run, control, platform) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.send(.attestRequest(nonce: [1, 2, 3]))
        _ = try answerSNPRequest(on: platform)
        guard case .attestResponse(_, let publicKey, _, _)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no attestResponse")
            return
        }
        #expect(agent.sessionPublicKey == publicKey)
        try control.send(.shutdown)
        _ = run.join()
    }

    @Test("a provider failure is answered with .failure and the loop goes on")
    func providerFailure() throws {
        let (_, run, control, platform) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.send(.attestRequest(nonce: [1]))
        guard case .snpReportRequest? = try platform.receive(milliseconds: 5000) else {
            Issue.record("no platform request")
            return
        }
        try platform.send(.failure("no launch measured for this instance"))
        guard case .failure(let reason)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure")
            return
        }
        #expect(reason.contains("no launch measured"))
        try control.send(.attestRequest(nonce: []))  // an empty nonce is refused without asking the platform
        guard case .failure(let empty)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure for the empty nonce")
            return
        }
        #expect(empty.contains("nonce"))
        try control.send(.shutdown)
        guard case .success(.shutdownRequested)? = run.join() else {
            Issue.record("the agent did not stop cleanly")
            return
        }
    }

    @Test("evidence for another REPORT_DATA is refused")
    func refusesUnboundEvidence() throws {
        let (_, run, control, platform) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.send(.attestRequest(nonce: [1, 2]))
        guard case .snpReportRequest? = try platform.receive(milliseconds: 5000) else {
            Issue.record("no platform request")
            return
        }
        // Too short to carry REPORT_DATA at 0x50: the agent cannot show the evidence is bound to the request.
        try platform.send(.snpReportResponse(report: [1, 2, 3], certificateTable: []))
        guard case .failure(let reason)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure")
            return
        }
        #expect(reason.contains("too short"))
        try control.send(.shutdown)
        _ = run.join()
    }

    @Test("a malformed frame is answered with .failure and the port is closed")
    func malformedFrame() throws {
        let (_, run, control, _) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.descriptor.writeAll([0, 0, 0, 2, 0x11, 0xFF])  // attestRequest with a truncated nonce
        guard case .failure(let reason)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure")
            return
        }
        #expect(reason.contains("malformed"))
        guard case .failure(let error)? = run.join() else {
            Issue.record("the agent kept serving")
            return
        }
        #expect(error.code == .protocolViolation)
    }

    @Test("a message that does not belong on the control port closes it")
    func misplacedMessage() throws {
        let (_, run, control, _) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        try control.send(.snpReportResponse(report: [], certificateTable: []))
        guard case .failure(let reason)? = try control.receive(milliseconds: 5000) else {
            Issue.record("no failure")
            return
        }
        #expect(reason.contains("unexpected"))
        guard case .failure(let error)? = run.join() else {
            Issue.record("the agent kept serving")
            return
        }
        #expect(error.code == .protocolViolation)
    }

    @Test("the coordinator closing the port ends the loop")
    func peerClosed() throws {
        var (_, run, control, _) = try startAgent()
        _ = try control.receive(milliseconds: 5000)
        control = MessagePort(try socketPair().0, name: "unused")  // drop the coordinator's end
        guard case .success(.peerClosed)? = run.join() else {
            Issue.record("the agent did not notice the close")
            return
        }
    }
}

@Suite("Simulated platform provider")
struct SimulatedPlatformTests {
    @Test("no answer in time is a timeout")
    func timeout() throws {
        let (agentEnd, _platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentEnd, name: "platform"), platform: .tdx, timeoutMilliseconds: 100, log: .silent)
        let error = #expect(throws: GuestAgentError.self) {
            try provider.evidence(reportData: [UInt8](repeating: 0, count: 64))
        }
        #expect(error?.code == .timeout)
        _ = _platformEnd
    }

    @Test("a stale answer for another REPORT_DATA is dropped, the right one taken")
    func dropsStaleAnswer() throws {
        let (agentEnd, platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentEnd, name: "platform"), platform: .sevSNP, timeoutMilliseconds: 5000, log: .silent)
        let reportData = [UInt8](repeating: 0x42, count: 64)
        let stale = fakeSNPReport(reportData: [UInt8](repeating: 0x41, count: 64))
        try MessagePort(platformEnd, name: "sim").send(.snpReportResponse(report: stale, certificateTable: []))
        let platform = MessagePort(platformEnd, name: "sim")
        let answer = Background { try? answerSNPRequest(on: platform) }
        let evidence = try provider.evidence(reportData: reportData)
        #expect(Array(evidence.evidence[0x50..<0x90]) == reportData)
        #expect(answer.join() == reportData)
    }

    @Test("TDX: a quote request, the quote and the event log back")
    func tdxQuote() throws {
        let (agentEnd, platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentEnd, name: "platform"), platform: .tdx, timeoutMilliseconds: 5000, log: .silent)
        let platform = MessagePort(platformEnd, name: "sim")
        let reportData = [UInt8](repeating: 0x33, count: 64)
        let answer = Background { () -> Bool in
            guard case .tdxQuoteRequest(let asked)? = try? platform.receive(milliseconds: 5000) else { return false }
            var quote = [UInt8](repeating: 0, count: 0x278 + 4)
            quote[0] = 4
            quote.replaceSubrange(0x238..<0x278, with: asked)
            return (try? platform.send(.tdxQuoteResponse(quote: quote, eventLog: [7, 7]))) != nil
        }
        let evidence = try provider.evidence(reportData: reportData)
        #expect(evidence.kind == .tdx)
        #expect(evidence.auxiliary == [7, 7])
        #expect(EvidenceLayout.reportData(in: evidence) == reportData)
        #expect(answer.join() == true)
    }

    @Test("an answer of the wrong kind is a protocol violation")
    func wrongKind() throws {
        let (agentEnd, platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentEnd, name: "platform"), platform: .tdx, timeoutMilliseconds: 5000, log: .silent)
        try MessagePort(platformEnd, name: "sim").send(.snpReportResponse(report: [], certificateTable: []))
        let error = #expect(throws: GuestAgentError.self) {
            try provider.evidence(reportData: [UInt8](repeating: 0, count: 64))
        }
        #expect(error?.code == .protocolViolation)
    }
}

@Suite("Command line and provider selection")
struct CommandLineTests {
    @Test("flags, --flag=value, and the kernel command line's cmk.instance and cmk.platform")
    func parses() throws {
        let options = try AgentCommandLine.parse(
            ["--control", "/dev/virtio-ports/cmk.control", "--platform=/dev/virtio-ports/cmk.platform",
             "--provider", "simulated-tdx", "--vmpl", "1", "--platform-timeout", "2.5"],
            kernelCommandLine: "console=ttyS0 cmk.instance=web-3 cmk.platform=tdx quiet\n")
        #expect(options.controlPath == "/dev/virtio-ports/cmk.control")
        #expect(options.platformPath == "/dev/virtio-ports/cmk.platform")
        #expect(options.provider == .simulatedTDX)
        #expect(options.instance == "web-3")
        #expect(options.vmpl == 1)
        #expect(options.simulatedPlatform == .tdx)
        #expect(options.platformTimeoutMilliseconds == 2500)
        #expect(options.kernelNamesInstance)
        let overridden = try AgentCommandLine.parse(
            ["--control", "c", "--instance", "flag-wins"], kernelCommandLine: "cmk.instance=kernel")
        #expect(overridden.instance == "flag-wins")
        #expect(overridden.provider == .auto)
    }

    @Test("without a name the agent calls itself unnamed: the host knows a child by its control port, not its name")
    func unnamed() throws {
        #expect(try AgentCommandLine.parse(["--control", "c"], kernelCommandLine: "console=ttyS0").instance == "unnamed")
    }

    @Test("usage errors say what is wrong", arguments: [
        ["--instance", "x"], ["--control", "c", "--instance", "x", "--provider", "tpm"],
        ["--control", "c", "--instance", "x", "--vmpl", "4"], ["--control"], ["--control", "c", "--bogus"],
    ])
    func usageErrors(arguments: [String]) {
        let error = #expect(throws: GuestAgentError.self) { try AgentCommandLine.parse(arguments) }
        #expect(error?.code == .usage)
    }

    @Test("auto: configfs-tsm, then /dev/sev-guest, then /dev/tdx_guest, then the platform port")
    func autoSelection() throws {
        let directory = try temporaryDirectory("select")
        defer { removeTree(directory) }
        var paths = GuestPaths()
        paths.configfsTSMRoot = "\(directory)/tsm/report"
        paths.sevGuestDevice = "\(directory)/sev-guest"
        paths.tdxGuestDevice = "\(directory)/tdx_guest"
        let port = MessagePort(try socketPair().0, name: "platform")
        func chosen(
            _ platformPort: MessagePort?, _ platform: SimulatedPlatformProvider.Platform = .sevSNP
        ) throws -> String {
            try ProviderSelection.make(
                .auto, paths: paths, platformPort: platformPort, simulatedPlatform: platform, log: .silent
            ).name
        }
        let nothing = #expect(throws: GuestAgentError.self) { try chosen(nil) }
        #expect(nothing?.code == .unavailable)
        #expect(try chosen(port) == "simulated-snp")
        #expect(try chosen(port, .tdx) == "simulated-tdx")
        try writeFile(paths.tdxGuestDevice, [])
        #expect(try chosen(port) == "tdx-guest")
        try writeFile(paths.sevGuestDevice, [])
        #expect(try chosen(port) == "sev-guest")
        try FileManager.default.createDirectory(atPath: paths.configfsTSMRoot, withIntermediateDirectories: true)
        #expect(try chosen(port) == "configfs-tsm")
        #expect(try FileManager.default.contentsOfDirectory(atPath: paths.configfsTSMRoot).isEmpty)  // probe cleaned up
    }

    @Test("explicit choices: a simulated provider needs the platform port, a device must exist")
    func explicitSelection() throws {
        var paths = GuestPaths()
        paths.sevGuestDevice = "/nonexistent/sev-guest"
        let simulated = #expect(throws: GuestAgentError.self) {
            try ProviderSelection.make(.simulatedSNP, paths: paths, platformPort: nil, log: .silent)
        }
        #expect(simulated?.code == .usage)
        let device = #expect(throws: GuestAgentError.self) {
            try ProviderSelection.make(.sevGuest, paths: paths, platformPort: nil, log: .silent)
        }
        #expect(device?.code == .unavailable)
        let configfs = try ProviderSelection.make(.configfsTSM, paths: paths, platformPort: nil, log: .silent)
        #expect(configfs.name == "configfs-tsm")
    }
}
