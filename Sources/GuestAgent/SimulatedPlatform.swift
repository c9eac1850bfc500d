import GuestProtocol

/// Evidence from the simulated platform, over the child's platform port (`cmk.platform`): the only way a simulated
/// child reaches its simulated AMD secure processor or TDX module (docs/guest-protocol.md).
///
/// Each request waits a bounded time. An answer for another REPORT_DATA (one that arrived after an earlier request
/// timed out) is dropped, not returned.
public final class SimulatedPlatformProvider: EvidenceProvider {
    /// Which simulated platform the child runs on.
    public enum Platform: String, Sendable, CaseIterable {
        case sevSNP = "sev-snp"
        case tdx
    }

    public var name: String { platform == .sevSNP ? "simulated-snp" : "simulated-tdx" }
    /// The platform asked.
    public let platform: Platform
    /// The VMPL of SEV-SNP requests.
    public let vmpl: UInt32
    /// How long one request may take.
    public let timeoutMilliseconds: Int
    let port: MessagePort
    let log: AgentLog

    /// A provider over an open platform port.
    public init(
        port: MessagePort, platform: Platform, vmpl: UInt32 = 0, timeoutMilliseconds: Int = 30_000,
        log: AgentLog = .standardError
    ) {
        self.port = port
        self.platform = platform
        self.vmpl = vmpl
        self.timeoutMilliseconds = timeoutMilliseconds
        self.log = log
    }

    public func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        try requireReportData(reportData)
        switch platform {
        case .sevSNP: try port.send(.snpReportRequest(reportData: reportData, vmpl: vmpl))
        case .tdx: try port.send(.tdxQuoteRequest(reportData: reportData))
        }
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            let (seconds, attoseconds) = left.components
            let milliseconds = left <= .zero ? 0 : Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
            let answer: GuestMessage?
            do throws(GuestAgentError) {
                answer = try port.receive(milliseconds: milliseconds)
            } catch where error.code == .timeout {
                throw GuestAgentError(
                    .timeout, "the simulated platform did not answer within \(timeoutMilliseconds) ms")
            }
            let evidence: Evidence
            switch (platform, answer) {
            case (_, nil):
                throw GuestAgentError(.peerClosed, "the simulated platform closed the platform port")
            case (_, .failure(let reason)?):
                throw GuestAgentError(.firmware, "the simulated platform refused: \(reason)")
            case (.sevSNP, .snpReportResponse(let report, let table)?):
                evidence = Evidence(kind: .sevSNP, evidence: report, auxiliary: table)
            case (.tdx, .tdxQuoteResponse(let quote, let eventLog)?):
                evidence = Evidence(kind: .tdx, evidence: quote, auxiliary: eventLog)
            case (_, let other?):
                throw GuestAgentError(
                    .protocolViolation,
                    "the simulated platform answered with \(other.kind), not a \(platform) response")
            }
            if let found = EvidenceLayout.reportData(in: evidence), found != reportData {
                log.write("dropped a stale \(evidence.kind) answer from the platform port (another REPORT_DATA)")
                continue
            }
            return evidence
        }
    }
}
