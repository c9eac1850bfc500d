import Crypto
import GuestProtocol

/// The agent inside a child: announces itself on the control port, then answers the coordinator until it is told to
/// shut down (docs/guest-agent.md).
///
/// Per attestation request it makes a fresh X25519 key pair, binds the public key and the coordinator's nonce into
/// REPORT_DATA (`ReportData.binding`), and returns the provider's evidence with the public key. The private key stays
/// in this object's memory (swift-crypto keeps it in storage that is zeroed when freed); it is replaced, and so
/// freed, by the next successful attestation. It never leaves the agent: the sealed channel will use it.
public final class GuestAgent {
    /// The agent's version, in `.ready` and `--version`.
    public static let version = "0.1.0"
    /// The longest nonce accepted (a nonce is 32 or 64 bytes in practice).
    public static let maximumNonceLength = 1024

    /// The references the coordinator handed over after admission.
    public struct Handover: Sendable, Hashable {
        public var secrets: [String]
        public var volumes: [String]
        public var channelPeers: [String]

        public init(secrets: [String], volumes: [String], channelPeers: [String]) {
            self.secrets = secrets
            self.volumes = volumes
            self.channelPeers = channelPeers
        }
    }

    /// How serving the control port ended.
    public enum Outcome: Sendable, Hashable {
        /// The coordinator sent `.shutdown`.
        case shutdownRequested
        /// The coordinator closed the port between messages.
        case peerClosed
    }

    /// The instance name in `.ready`.
    public let instance: String
    /// Where evidence comes from.
    public let provider: any EvidenceProvider
    let log: AgentLog
    /// The private key of the last successful attestation; nil before the first.
    private var sessionKey: Curve25519.KeyAgreement.PrivateKey?
    /// The last handover, nil before one arrived.
    public private(set) var handover: Handover?

    public init(instance: String, provider: any EvidenceProvider, log: AgentLog = .standardError) {
        self.instance = instance
        self.provider = provider
        self.log = log
    }

    /// The public half of the current session key (what the last `.attestResponse` carried); nil before the first.
    public var sessionPublicKey: [UInt8]? {
        sessionKey.map { Array($0.publicKey.rawRepresentation) }
    }

    /// Sends `.ready`, then serves requests until `.shutdown` or the port closes.
    ///
    /// - Throws: `.protocolViolation` after answering a malformed or misplaced frame with `.failure` (the port must
    ///   then be closed); `.io`/`.peerClosed` when the port fails.
    public func serve(_ control: MessagePort) throws(GuestAgentError) -> Outcome {
        try control.send(.ready(instance: instance, agentVersion: Self.version, evidenceProvider: provider.name))
        log.write("ready: instance \(instance), agent \(Self.version), evidence from \(provider.name)")
        while true {
            let message: GuestMessage?
            do throws(GuestAgentError) {
                message = try control.receive()
            } catch where error.code == .protocolViolation {
                log.write(error.reason)
                try? control.send(.failure(error.reason))
                throw error
            }
            guard let message else {
                log.write("the coordinator closed the control port")
                return .peerClosed
            }
            switch message {
            case .attestRequest(let nonce):
                try control.send(attest(nonce: nonce))
            case .handover(let secrets, let volumes, let peers):
                handover = Handover(secrets: secrets, volumes: volumes, channelPeers: peers)
                log.write(
                    "handover: \(secrets.count) secret(s), \(volumes.count) volume(s), "
                        + "\(peers.count) channel peer(s)")
                try control.send(.handoverAck)
            case .shutdown:
                log.write("shutdown requested")
                sessionKey = nil
                return .shutdownRequested
            case .ping(let version, let sequence):
                // The coordinator's heartbeat: answer at once, log nothing (several per second).
                try control.send(.pong(version: version, sequence: sequence))
            case .failure(let reason):
                log.write("the coordinator reported a failure: \(reason)")
            case .channelFrame(let channel, _):
                try control.send(.failure("channel \(channel): sealed channels are not implemented by this agent yet"))
            case .snpReportRequest, .snpReportResponse, .tdxQuoteRequest, .tdxQuoteResponse, .ready, .attestResponse,
                .handoverAck, .pong:
                let reason = "unexpected \(message.kind) on the control port"
                log.write(reason)
                try? control.send(.failure(reason))
                throw GuestAgentError(.protocolViolation, reason)
            }
        }
    }

    /// The answer to one attestation request: `.attestResponse`, or `.failure` with the reason.
    func attest(nonce: [UInt8]) -> GuestMessage {
        guard !nonce.isEmpty, nonce.count <= Self.maximumNonceLength else {
            return .failure("a nonce has 1 to \(Self.maximumNonceLength) bytes; this one has \(nonce.count)")
        }
        let key = Curve25519.KeyAgreement.PrivateKey()
        let publicKey = Array(key.publicKey.rawRepresentation)
        let reportData = ReportData.binding(nonce: nonce, publicKey: publicKey)
        do throws(GuestAgentError) {
            let evidence = try provider.evidence(reportData: reportData)
            try EvidenceLayout.check(evidence, carries: reportData)
            sessionKey = key
            log.write(
                "attested: \(evidence.kind), \(evidence.evidence.count) bytes of evidence, "
                    + "\(evidence.auxiliary.count) auxiliary, nonce of \(nonce.count) bytes")
            return .attestResponse(
                kind: evidence.kind.rawValue, publicKey: publicKey, evidence: evidence.evidence,
                auxiliary: evidence.auxiliary)
        } catch {
            log.write("attestation failed: \(error)")
            return .failure("\(provider.name): \(error.reason)")
        }
    }
}
