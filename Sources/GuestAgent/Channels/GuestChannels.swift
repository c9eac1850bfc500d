import BinaryFormat
import GuestProtocol
import SealedChannel

/// The sealed channels of one agent: the handshake with this child's own evidence, the peer check this child runs
/// itself (``GuestPeerVerifier``), and the records. Every input is one control-port message; every output is a list of
/// messages to send back (frames for the peer, events for the coordinator). Events carry lengths, counts, codes and
/// reasons, never plaintext.
///
/// A record body starts with one byte: `0x01` a message, `0x02` a message the peer should send back, `0x03` such an
/// echo. A peer that sends anything else fails the channel (`record-malformed` reported by this side).
final class GuestChannels {
    enum Body: UInt8 {
        case message = 0x01
        case echoRequest = 0x02
        case echoReply = 0x03
        /// A chunk of workload state (`cmk update`): only to a child told to import on this channel.
        case stateChunk = 0x04
        /// The end of a state transfer: the summary (entries, bytes, SHA-256) the receiver checks.
        case stateEnd = 0x05
    }

    /// A handshake alert: sent in the clear (nothing authenticated exists yet) when the handshake fails on this side,
    /// so the other end can say why instead of waiting. The relay could forge or drop it; it is a diagnosis only.
    static let alertMagic = Array("cmk-alert".utf8) + [0]

    enum State {
        case initiating(ChannelInitiator)
        case responding(ChannelResponder, sentMessage2: Bool)
        case open(ChannelEndpoint)
        case ended
    }

    struct Entry {
        var state: State
        let open: ChannelOpen
        var pendingEchoes: [(data: [UInt8], sent: ContinuousClock.Instant)] = []
        /// When this child got `.channelOpen`: `established` reports the handshake's cost from here (this child's
        /// evidence, the peer's, and checking it), in microseconds.
        let started = ContinuousClock.now
    }

    static func micros(since start: ContinuousClock.Instant) -> UInt64 {
        let elapsed = (ContinuousClock.now - start).components
        return UInt64(max(0, elapsed.seconds)) * 1_000_000 + UInt64(max(0, elapsed.attoseconds) / 1_000_000_000_000)
    }

    private var channels: [String: Entry] = [:]
    private var platform: GuestPlatformIdentity?
    let instance: String
    let provider: any EvidenceProvider
    let log: AgentLog
    /// The workload whose state an update moves (nil: this table moves none).
    let workload: KeyValueWorkload?
    /// Channels on which this child accepts its predecessor's state, with what arrived so far.
    private var imports: [String: (state: WorkloadState.Import, started: ContinuousClock.Instant?)] = [:]

    init(instance: String, provider: any EvidenceProvider, log: AgentLog, workload: KeyValueWorkload? = nil) {
        self.instance = instance
        self.provider = provider
        self.log = log
        self.workload = workload
    }

    private func event(
        _ channel: String, _ event: String, _ detail: String, _ endpoint: ChannelEndpoint? = nil, micros: UInt64 = 0
    ) -> GuestMessage {
        let counts: (sent: UInt64, received: UInt64) = endpoint?.recordCounts ?? (sent: 0, received: 0)
        log.write("channel \(channel): \(event)\(detail.isEmpty ? "" : " (\(detail))")")
        return .channelEvent(
            ChannelEvent(
                channel: channel, event: event, detail: detail, recordsSent: counts.sent, recordsReceived: counts.received,
                micros: micros))
    }

    private func failed(_ channel: String, _ error: SealedChannelError, alert: Bool) -> [GuestMessage] {
        var out: [GuestMessage] = []
        if alert {
            var frame = Self.alertMagic + [error.code.wireValue]
            frame += Array(error.reason.utf8.prefix(512))
            out.append(.channelFrame(channel: channel, frame: frame))
        }
        let endpoint: ChannelEndpoint? = if case .open(let endpoint)? = channels[channel]?.state { endpoint } else { nil }
        if let endpoint, let abort = endpoint.abortFrame() {
            out.append(.channelFrame(channel: channel, frame: abort))
        }
        channels[channel]?.state = .ended
        let peer = error.peerCode.map { ", the peer's code \($0)" } ?? ""
        out.append(event(channel, "failed", "\(error.code)\(peer): \(error.reason)", endpoint))
        return out
    }

    /// `.channelOpen`: check this child's own platform and manifest (once), then start the handshake.
    func open(_ request: ChannelOpen) -> [GuestMessage] {
        let channel = request.channel
        if let existing = channels[channel], case .ended = existing.state {
        } else if channels[channel] != nil {
            return [event(channel, "failed", "invalid-state: the channel id \(channel) is already in use on this child")]
        }
        let me = request.initiatorRole ? request.initiator : request.responder
        let platform: GuestPlatformIdentity
        do throws(SealedChannelError) {
            if let known = self.platform, known.manifest == request.manifest {
                platform = known
            } else {
                platform = try GuestPlatformIdentity.establish(
                    provider: provider, manifest: request.manifest, instance: instance)
                self.platform = platform
            }
        } catch {
            return [event(channel, "failed", "\(error.code): \(error.reason)")]
        }
        guard platform.identity.name == me else {
            return [
                event(channel, "failed", "peer-wrong-instance: this child is \(platform.identity.name), not \(me)")
            ]
        }
        // This child's own allow-list, from its own measured manifest: not the coordinator's word.
        guard platform.identity.permits(request.peer) else {
            return [
                event(
                    channel, "failed",
                    "peer-not-permitted: this child's manifest does not list \(request.peer) as a channel or update peer")
            ]
        }
        do throws(SealedChannelError) {
            let descriptor = try ChannelDescriptor(
                channelID: channel, initiator: request.initiator, responder: request.responder)
            let attester = GuestChannelAttester(provider: provider, manifest: platform.manifest)
            let verifier = GuestPeerVerifier(platform: platform, expectedPeer: request.peer)
            let key = NoiseKeyPair()
            if request.initiatorRole {
                var initiator = try ChannelInitiator(
                    descriptor: descriptor, staticKey: key, attester: attester, verifier: verifier)
                let message1 = try initiator.start()
                channels[channel] = Entry(state: .initiating(initiator), open: request)
                return [
                    event(channel, "handshake-started", "initiator, peer \(request.peer)"),
                    .channelFrame(channel: channel, frame: message1),
                ]
            }
            let responder = try ChannelResponder(
                descriptor: descriptor, staticKey: key, attester: attester, verifier: verifier)
            channels[channel] = Entry(state: .responding(responder, sentMessage2: false), open: request)
            return [event(channel, "handshake-started", "responder, peer \(request.peer)")]
        } catch {
            return failed(channel, error, alert: false)
        }
    }

    /// `.channelFrame` from the coordinator: a handshake message, a record, or the peer's handshake alert.
    func frame(channel: String, bytes: [UInt8]) -> [GuestMessage] {
        guard var entry = channels[channel] else {
            return [event(channel, "failed", "invalid-state: a frame for a channel this child did not open")]
        }
        if bytes.count > Self.alertMagic.count, Array(bytes.prefix(Self.alertMagic.count)) == Self.alertMagic {
            if case .open = entry.state {
                // Records are authenticated; an unauthenticated alert on an open channel is an attack or a bug.
                return failed(
                    channel, SealedChannelError(.recordMalformed, "an unauthenticated alert on an open channel"),
                    alert: false)
            }
            let code = SealedChannelError.Code.fromWire(bytes[Self.alertMagic.count])?.name ?? "unknown"
            let reason = String(decoding: bytes.dropFirst(Self.alertMagic.count + 1).prefix(512), as: UTF8.self)
            channels[channel]?.state = .ended
            return [event(channel, "failed", "peer-aborted (unauthenticated handshake alert), the peer's code \(code): \(reason)")]
        }
        do throws(SealedChannelError) {
            switch entry.state {
            case .initiating(var initiator):
                let (message3, endpoint) = try initiator.finish(bytes)
                entry.state = .open(endpoint)
                channels[channel] = entry
                return [
                    .channelFrame(channel: channel, frame: message3),
                    event(
                        channel, "established", established(endpoint), endpoint,
                        micros: Self.micros(since: entry.started)),
                ]
            case .responding(var responder, let sentMessage2):
                if !sentMessage2 {
                    let message2 = try responder.respond(to: bytes)
                    entry.state = .responding(responder, sentMessage2: true)
                    channels[channel] = entry
                    return [.channelFrame(channel: channel, frame: message2)]
                }
                let endpoint = try responder.finish(bytes)
                entry.state = .open(endpoint)
                channels[channel] = entry
                return [
                    event(
                        channel, "established", established(endpoint), endpoint,
                        micros: Self.micros(since: entry.started))
                ]
            case .open(let endpoint):
                return try record(channel: channel, frame: bytes, endpoint: endpoint)
            case .ended:
                return []
            }
        } catch {
            let handshaking: Bool = if case .open = entry.state { false } else { true }
            return failed(channel, error, alert: handshaking)
        }
    }

    private func established(_ endpoint: ChannelEndpoint) -> String {
        let peer = endpoint.peer
        return "peer \(peer.instance) verified by this child: \(peer.evidenceType) measurement \(peer.measurement)"
            + "\(peer.simulated ? " (SIMULATED platform)" : ""), handshake hash \(Hex.encode(endpoint.handshakeHash.prefix(8)))…"
    }

    private func record(channel: String, frame: [UInt8], endpoint: ChannelEndpoint) throws(SealedChannelError)
        -> [GuestMessage]
    {
        switch try endpoint.open(frame: frame) {
        case .closed(let reason):
            channels[channel]?.state = .ended
            return [event(channel, "closed", "the peer closed the channel\(reason.isEmpty ? "" : ": \(reason)")", endpoint)]
        case .data(let body):
            guard let first = body.first, let kind = Body(rawValue: first) else {
                throw SealedChannelError(.recordMalformed, "a record body of an unknown kind")
            }
            let data = Array(body.dropFirst())
            switch kind {
            case .message:
                return [event(channel, "received", "\(data.count) bytes", endpoint)]
            case .echoRequest:
                let reply = try endpoint.seal([Body.echoReply.rawValue] + data)
                return [
                    event(channel, "received", "\(data.count) bytes; echoed", endpoint),
                    .channelFrame(channel: channel, frame: reply),
                ]
            case .stateChunk, .stateEnd:
                return try stateRecord(channel: channel, kind: kind, body: data, endpoint: endpoint)
            case .echoReply:
                guard var entry = channels[channel], !entry.pendingEchoes.isEmpty else {
                    throw SealedChannelError(.recordMalformed, "an echo that was not asked for")
                }
                let pending = entry.pendingEchoes.removeFirst()
                channels[channel] = entry
                let micros = Self.micros(since: pending.sent)
                let same = constantTimeEqual(pending.data, data)
                return [
                    event(
                        channel, "echoed", "\(data.count) bytes came back \(same ? "unchanged" : "CHANGED")", endpoint,
                        micros: micros)
                ]
            }
        }
    }

    /// `.channelSend`: seal a message for the peer.
    func send(channel: String, data: [UInt8], echo: Bool) -> [GuestMessage] {
        guard var entry = channels[channel], case .open(let endpoint) = entry.state else {
            return [event(channel, "failed", "invalid-state: the channel is not open on this child")]
        }
        do throws(SealedChannelError) {
            let frame = try endpoint.seal([(echo ? Body.echoRequest : Body.message).rawValue] + data)
            if echo {
                entry.pendingEchoes.append((data, ContinuousClock.now))
                channels[channel] = entry
            }
            return [.channelFrame(channel: channel, frame: frame), event(channel, "sent", "\(data.count) bytes", endpoint)]
        } catch {
            return failed(channel, error, alert: false)
        }
    }

    /// `.channelClose`: an orderly, authenticated close.
    func close(channel: String) -> [GuestMessage] {
        guard let entry = channels[channel], case .open(let endpoint) = entry.state else {
            channels[channel]?.state = .ended
            return [event(channel, "closed", "closed before it was open")]
        }
        channels[channel]?.state = .ended
        guard let frame = try? endpoint.close(reason: "closed by the operator") else {
            return [event(channel, "closed", "closed", endpoint)]
        }
        return [.channelFrame(channel: channel, frame: frame), event(channel, "closed", "this side closed it", endpoint)]
    }

    // MARK: Workload state (cmk update, docs/updates.md)

    /// The peer of an open channel, when it is one of this child's update peers; else why not.
    private func updateEndpoint(_ channel: String) -> Result<ChannelEndpoint, SealedChannelError> {
        guard let entry = channels[channel], case .open(let endpoint) = entry.state else {
            return .failure(SealedChannelError(.invalidState, "the channel is not open on this child"))
        }
        guard let platform, platform.identity.updatePeers.contains(entry.open.peer) else {
            return .failure(
                SealedChannelError(
                    .peerNotPermitted, "\(entry.open.peer) is not an update peer in this child's manifest"))
        }
        return .success(endpoint)
    }

    /// `.stateExport`: seal the workload's whole state onto the channel, chunk by chunk, then the summary.
    func exportState(channel: String) -> [GuestMessage] {
        guard let workload else { return [event(channel, "failed", "invalid-state: this agent runs no workload")] }
        let endpoint: ChannelEndpoint
        switch updateEndpoint(channel) {
        case .success(let open): endpoint = open
        case .failure(let error): return [event(channel, "state-failed", "\(error.code): \(error.reason)")]
        }
        let started = ContinuousClock.now
        let export = workload.exportState()
        var out: [GuestMessage] = []
        do throws(SealedChannelError) {
            for chunk in export.chunks {
                out.append(.channelFrame(channel: channel, frame: try endpoint.seal([Body.stateChunk.rawValue] + chunk)))
            }
            out.append(
                .channelFrame(channel: channel, frame: try endpoint.seal([Body.stateEnd.rawValue] + export.summary.encoded)))
        } catch {
            return failed(channel, error, alert: false)
        }
        out.append(
            event(
                channel, "state-sent",
                "\(export.summary.entries) entries, \(export.summary.bytes) bytes in \(export.chunks.count + 1) records",
                endpoint, micros: Self.micros(since: started)))
        return out
    }

    /// `.stateImport`: accept the update peer's state on this channel.
    func armImport(channel: String) -> [GuestMessage] {
        guard workload != nil else { return [event(channel, "failed", "invalid-state: this agent runs no workload")] }
        if case .failure(let error) = updateEndpoint(channel) {
            return [event(channel, "state-failed", "\(error.code): \(error.reason)")]
        }
        imports[channel] = (WorkloadState.Import(), nil)
        return [event(channel, "state-armed", "waiting for the update peer's state")]
    }

    private func stateRecord(channel: String, kind: Body, body: [UInt8], endpoint: ChannelEndpoint)
        throws(SealedChannelError) -> [GuestMessage]
    {
        guard var pending = imports[channel], let workload else {
            throw SealedChannelError(.recordMalformed, "workload state on a channel this child was not told to import from")
        }
        if pending.started == nil { pending.started = .now }
        do throws(WorkloadStateError) {
            if kind == .stateChunk {
                try pending.state.add(chunk: body)
                imports[channel] = pending
                return []
            }
            let summary = try WorkloadState.Summary(bytes: body)
            let state = try pending.state.finish(summary)
            imports[channel] = nil
            workload.replace(with: state)
            return [
                event(
                    channel, "state-imported", "\(summary.entries) entries, \(summary.bytes) bytes, digest checked",
                    endpoint, micros: Self.micros(since: pending.started ?? .now))
            ]
        } catch {
            imports[channel] = nil
            throw SealedChannelError(.recordMalformed, "workload state refused: \(error.description)")
        }
    }

    /// Channel names and states, for the status.
    var names: [String] { channels.keys.sorted() }
}
