import BinaryFormat
import Crypto
public import GuestProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

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
    /// Where secrets and volumes go.
    public let folders: HandoverFolders
    /// The private key of the last successful attestation and the nonce it was bound to; nil before the first.
    private var sessionKey: Curve25519.KeyAgreement.PrivateKey?
    private var sessionNonce: [UInt8] = []
    /// Whether the current session's key has opened a delivery (each opens at most one: no replays).
    private var sessionDelivered = false
    /// Whether the secrets folder (and its tmpfs) exists: made at the first delivery, never before admission.
    private var secretsFolderReady = false
    private var waitingForCoordinator = false
    /// The last handover, nil before one arrived.
    public private(set) var handover: Handover?
    /// The volumes confirmed so far.
    public private(set) var volumes: [AttachedVolume] = []
    /// The sealed channels (docs/channels.md): created at the first `.channelOpen`.
    private var channels: GuestChannels?
    /// The vTPM's EK and AK (docs/tpm-verification.md): created at the first `.tpmKeyRequest`. While it exists,
    /// REPORT_DATA binds the session key followed by SHA-256 of the AK.
    private var vtpm: VTPMAttester?
    /// Where the TPM is (the resource manager first); a swtpm server socket in host-side tests.
    public var tpmDevicePaths = ["/dev/tpmrm0", "/dev/tpm0"]
    /// Where the firmware's event log is read from; securityfs is mounted when it is missing and `mountSecurityFS`.
    public var eventLogPath = VTPMAttester.defaultEventLogPath
    public var mountSecurityFS = true
    /// The demo workload (docs/updates.md): served after the handover only.
    public let workload: KeyValueWorkload

    public init(
        instance: String, provider: any EvidenceProvider, folders: HandoverFolders = HandoverFolders(),
        log: AgentLog = .standardError
    ) {
        self.instance = instance
        self.provider = provider
        self.folders = folders
        self.log = log
        self.workload = KeyValueWorkload(instance: instance)
    }

    /// Whether an admitted agent (one that received its handover) outlives its coordinator: when the control port
    /// closes it waits for a coordinator to reconnect (a restarted one re-adopting the child after its supervisor
    /// died: QEMU's chardev reconnects to the new listener) instead of returning. Before the handover a closed port
    /// still ends ``serve(_:)`` (a launch that lost its supervisor is torn down, not resumed). Set inside a child.
    public var awaitsCoordinatorAfterHandover = false
    /// How often a waiting agent looks at the port again (a virtio-serial port without a host reads end-of-file).
    public var reconnectPollMilliseconds: UInt32 = 50

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
                guard awaitsCoordinatorAfterHandover, handover != nil else {
                    log.write("the coordinator closed the control port")
                    return .peerClosed
                }
                if !waitingForCoordinator {
                    log.write("the coordinator closed the control port; waiting for it to come back (admitted)")
                    waitingForCoordinator = true
                }
                usleep(reconnectPollMilliseconds * 1000)
                continue
            }
            if waitingForCoordinator {
                log.write("a coordinator reconnected to the control port")
                waitingForCoordinator = false
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
            case .sealedSecrets(let sealed):
                try control.send(deliver(sealed))
            case .attachVolumes(let attachments):
                try control.send(attach(attachments))
            case .statusRequest:
                try control.send(.status(status))
            case .shutdown:
                log.write("shutdown requested")
                sessionKey = nil
                return .shutdownRequested
            case .ping(let version, let sequence):
                // The coordinator's heartbeat: answer at once, log nothing (several per second).
                try control.send(.pong(version: version, sequence: sequence))
            case .failure(let reason):
                log.write("the coordinator reported a failure: \(reason)")
            case .channelOpen, .channelFrame, .channelSend, .channelClose, .stateExport, .stateImport:
                for reply in channelMessage(message) { try control.send(reply) }
            case .tpmKeyRequest, .tpmActivateRequest, .tpmQuoteRequest:
                try control.send(tpmMessage(message))
            case .workloadRequest(let id, let request):
                // The demo workload answers only an admitted child's coordinator (after the handover).
                let response: [UInt8] =
                    handover == nil
                    ? Array("ERR unavailable this child is not admitted yet".utf8) : workload.handle(request)
                try control.send(.workloadResponse(id: id, response: response))
            case .tpmKeys, .tpmActivated, .tpmQuote,
                .snpReportRequest, .snpReportResponse, .tdxQuoteRequest, .tdxQuoteResponse, .ready, .attestResponse,
                .handoverAck, .secretsDelivered, .volumesAttached, .status, .pong, .channelEvent, .workloadResponse:
                let reason = "unexpected \(message.kind) on the control port"
                log.write(reason)
                try? control.send(.failure(reason))
                throw GuestAgentError(.protocolViolation, reason)
            }
        }
    }

    /// A channel message from the coordinator; what to send back. Channels exist only after the handover (admission).
    func channelMessage(_ message: GuestMessage) -> [GuestMessage] {
        guard handover != nil else {
            let channel: String =
                switch message {
                case .channelOpen(let open): open.channel
                case .channelFrame(let channel, _), .channelSend(let channel, _, _), .channelClose(let channel),
                    .stateExport(let channel), .stateImport(let channel):
                    channel
                default: "?"
                }
            return [
                .channelEvent(
                    ChannelEvent(
                        channel: channel, event: "failed",
                        detail: "invalid-state: no sealed channel before the handover (this child is not admitted)"))
            ]
        }
        let table = channels ?? GuestChannels(instance: instance, provider: provider, log: log, workload: workload)
        channels = table
        switch message {
        case .channelOpen(let open): return table.open(open)
        case .channelFrame(let channel, let frame): return table.frame(channel: channel, bytes: frame)
        case .channelSend(let channel, let data, let echo): return table.send(channel: channel, data: data, echo: echo)
        case .channelClose(let channel): return table.close(channel: channel)
        case .stateExport(let channel): return table.exportState(channel: channel)
        case .stateImport(let channel): return table.armImport(channel: channel)
        default: return []
        }
    }

    /// The answer to one attestation request: `.attestResponse`, or `.failure` with the reason.
    func attest(nonce: [UInt8]) -> GuestMessage {
        guard !nonce.isEmpty, nonce.count <= Self.maximumNonceLength else {
            return .failure("a nonce has 1 to \(Self.maximumNonceLength) bytes; this one has \(nonce.count)")
        }
        let key = Curve25519.KeyAgreement.PrivateKey()
        let publicKey = Array(key.publicKey.rawRepresentation)
        // With a vTPM, the AK is bound after the session key (one rule: ReportData.withAttestationKey).
        let boundKey =
            vtpm.map {
                ReportData.withAttestationKey(sessionKey: publicKey, attestationKeyDigest: $0.attestationKeyDigest)
            } ?? publicKey
        let reportData = ReportData.binding(nonce: nonce, publicKey: boundKey)
        do throws(GuestAgentError) {
            let evidence = try provider.evidence(reportData: reportData)
            try EvidenceLayout.check(evidence, carries: reportData)
            sessionKey = key
            sessionNonce = nonce
            sessionDelivered = false
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

    /// A vTPM request from the coordinator; the answer, or `.failure` with the reason.
    func tpmMessage(_ message: GuestMessage) -> GuestMessage {
        do throws(GuestAgentError) {
            switch message {
            case .tpmKeyRequest:
                let attester: VTPMAttester
                if let existing = vtpm {
                    attester = existing
                } else {
                    attester = try VTPMAttester(
                        device: try TPMDevice.open(tpmDevicePaths), eventLogPath: eventLogPath,
                        mountSecurityFS: mountSecurityFS)
                    vtpm = attester
                }
                log.write(
                    "vTPM: EK and AK ready (\(attester.device.path)), AK SHA-256 "
                        + Hex.encode(attester.attestationKeyDigest))
                return .tpmKeys(endorsementKey: attester.endorsementKey, attestationKey: attester.attestationKey)
            case .tpmActivateRequest(let blob, let encryptedSecret):
                guard let attester = vtpm else { return .failure("vTPM: no attestation key yet (send tpmKeyRequest first)") }
                let secret = try attester.activate(credentialBlob: blob, encryptedSecret: encryptedSecret)
                log.write("vTPM: credential activated")
                return .tpmActivated(secret: secret)
            case .tpmQuoteRequest(let nonce):
                guard let attester = vtpm else { return .failure("vTPM: no attestation key yet (send tpmKeyRequest first)") }
                guard !nonce.isEmpty, nonce.count <= 64 else {
                    return .failure("vTPM: a quote's nonce has 1 to 64 bytes; this one has \(nonce.count)")
                }
                let quote = try attester.quote(nonce: nonce)
                log.write("vTPM: quote over PCRs 0-9, event log of \(quote.eventLog.count) bytes")
                return .tpmQuote(quote: quote.quote, signature: quote.signature, eventLog: quote.eventLog)
            default:
                return .failure("\(message.kind) is not a vTPM request")
            }
        } catch {
            log.write("vTPM: \(error)")
            return .failure("vTPM: \(error.reason)")
        }
    }

    /// Opens a sealed delivery with the current session key, writes each secret into the secrets folder, reads it
    /// back, and answers with one receipt per secret; or `.failure` saying why nothing was written.
    ///
    /// Refused: no attestation yet; a delivery already opened with this key (a replay); a version or suite this agent
    /// does not implement; anything HPKE will not open (another key, instance, nonce or policy, or an altered byte).
    /// All secrets are opened before the first is written, so a refusal writes nothing.
    func deliver(_ sealed: SealedSecrets) -> GuestMessage {
        guard let key = sessionKey else {
            log.write("refused sealed secrets: no attestation yet")
            return .failure("sealed secrets refused: this agent has not attested, so it holds no key to open them")
        }
        guard !sessionDelivered else {
            log.write("refused sealed secrets: this attestation's key already opened a delivery")
            return .failure("sealed secrets refused: this attestation's key already opened a delivery (replay?)")
        }
        var opened: HandoverSeal.Opened
        do throws(HandoverSealError) {
            opened = try HandoverSeal.open(sealed, with: key, nonce: sessionNonce)
        } catch {
            log.write("refused sealed secrets: \(error.code)")
            return .failure("sealed secrets refused: \(error.reason)")
        }
        sessionDelivered = true
        // Best effort: the plaintext copies in this process are overwritten once written (the files are the copy).
        defer { opened.wipe() }
        var receipts: [SecretReceipt] = []
        do throws(GuestAgentError) {
            if !opened.secrets.isEmpty && !secretsFolderReady {
                try folders.prepareSecrets()
                secretsFolderReady = true
            }
            for secret in opened.secrets {
                guard let fileName = SecretName.fileName(secret.name) else {
                    return .failure("sealed secrets refused: '\(secret.name)' is not a secret reference")
                }
                try folders.writeSecret(fileName: fileName, contents: secret.value)
                var readBack = try folders.readSecret(fileName: fileName)
                defer { _ = readBack.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) } }
                receipts.append(
                    SecretReceipt(
                        name: secret.name,
                        proof: HandoverSeal.receipt(name: secret.name, contents: readBack, key: opened.receiptKey)))
            }
        } catch {
            log.write("writing secrets failed: \(error.code)")
            return .failure("sealed secrets opened but not written: \(error.reason)")
        }
        log.write("secrets: \(receipts.count) opened and written to \(folders.secrets)")
        return .secretsDelivered(receipts)
    }

    /// Waits for hot-plugged volumes and links them; `.failure` when one does not appear in time.
    func attach(_ attachments: [VolumeAttachment]) -> GuestMessage {
        guard sessionKey != nil else {
            return .failure("volumes refused: this agent has not attested")
        }
        do throws(GuestAgentError) {
            let attached = try folders.attach(attachments)
            volumes += attached
            log.write("volumes: \(attached.count) attached under \(folders.volumes)")
            return .volumesAttached(attached)
        } catch {
            log.write("volumes failed: \(error.code)")
            return .failure("volumes: \(error.reason)")
        }
    }

    /// What the agent holds now, by name, read from its folders.
    public var status: AgentStatus {
        AgentStatus(
            attested: sessionKey != nil, secretFiles: folders.secretFiles(), volumes: volumes.map(\.name),
            channelPeers: handover?.channelPeers ?? [], handoverReceived: handover != nil)
    }
}
