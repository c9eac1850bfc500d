public import Foundation
public import GuestProtocol
import BinaryFormat
import Dispatch
import Synchronization

/// The relay of one admitted instance, run by its supervisor: a UNIX socket (`<instance folder>/relay.sock`) for the
/// command line and for the supervisor of a peer instance, and the instance's control port for its agent.
///
/// A channel joins two supervisors with one relay link: the initiator's supervisor connects to the responder's
/// (`link`), each checks the allow-list (``ChannelAccess``) itself and tells its own agent to open the channel, then
/// frames go agent → control port → supervisor → link → supervisor → control port → agent. Frames are opaque: the
/// relay counts them, traces them (the initiator's side, both directions, in `<state>/channels/<id>/trace.jsonl`)
/// and moves them. It never holds a key, so it cannot read them; it can drop or alter them, and the ends notice.
public final class ChannelRelay: @unchecked Sendable {
    struct Route {
        let link: RelayLink
        let initiatorSide: Bool
        let peer: String
        var tamperNext = false
        var sequence = 0
    }

    public let state: CMKStateDirectory
    public let instance: String
    let control: FramedConnection
    let manifest: [UInt8]
    private let listener: RelayListener
    private let routes = Mutex<[String: Route]>([:])
    fileprivate let stopped = Atomic<Bool>(false)
    private let log: @Sendable (String) -> Void
    /// Workload requests sent to the agent, waiting for their `.workloadResponse`.
    private let pendingWork = Mutex<[UInt64: WorkloadWaiter]>([:])
    private let nextWorkID = Atomic<UInt64>(1)

    public init(
        state: CMKStateDirectory, instance: String, control: FramedConnection,
        log: @escaping @Sendable (String) -> Void
    ) throws(CoordinatorError) {
        self.state = state
        self.instance = instance
        self.control = control
        self.log = log
        let folder = InstanceSupervisor.folder(state, name: instance)
        do {
            manifest = try Array(Data(contentsOf: folder.appendingPathComponent("manifest.json")))
        } catch {
            throw CoordinatorError(.fileSystem, "cannot read \(instance)'s manifest: \(error)")
        }
        listener = try RelayListener(path: ChannelFiles.relaySocket(state, instance: instance))
    }

    /// Accepts connections on a thread of its own until ``stop()``.
    public func start() {
        Thread.detachNewThread { [self] in
            while !stopped.load(ordering: .acquiring) {
                guard let link = listener.accept(timeout: .milliseconds(200)) else { continue }
                Thread.detachNewThread { [self] in serve(link) }
            }
        }
    }

    public func stop() {
        stopped.store(true, ordering: .releasing)
        let links = routes.withLock { routes in
            defer { routes.removeAll() }
            return routes.values.map(\.link)
        }
        for link in links { link.close() }
    }

    // MARK: From the agent (the supervisor's watch thread)

    /// A message from this instance's agent that is not a heartbeat.
    public func handle(_ message: GuestMessage) {
        switch message {
        case .channelFrame(let channel, let frame):
            guard let relayed = relay(channel: channel, frame: frame, from: instance) else {
                log("channel \(channel): a frame from \(instance)'s agent for no open route; dropped")
                return
            }
            do {
                try relayed.0.send(RelayMessage(.frame, channel: channel, data: Data(relayed.1)))
            } catch {
                log("channel \(channel): the link to the peer failed: \(error)")
            }
        case .channelEvent(let event):
            record(event)
        case .workloadResponse(let id, let response):
            let waiter = pendingWork.withLock { $0.removeValue(forKey: id) }
            guard let waiter else {
                log("a workload answer for no waiting request (\(id)); dropped")
                return
            }
            waiter.resolve(response)
        default:
            log("unexpected \(message.kind) from \(instance)'s agent after the handover")
        }
    }

    private func record(_ event: ChannelEvent) {
        guard (try? ChannelFiles.validate(channel: event.channel)) != nil else { return }
        let folder = ChannelFiles.folder(state, channel: event.channel)
        try? FileManager.default.createDirectory(
            at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        ChannelFiles.append(
            ChannelFiles.Event(
                time: Date(), instance: instance, event: event.event, detail: event.detail,
                recordsSent: event.recordsSent, recordsReceived: event.recordsReceived, micros: event.micros),
            to: folder.appendingPathComponent("\(instance).events.jsonl"))
        if ["established", "failed", "closed", "state-sent", "state-imported", "state-failed"].contains(event.event) {
            if let problem = ChannelFiles.audit(
                state, actor: "coordinator", instance: instance,
                details: ["event": "channel-\(event.event)", "channel": event.channel, "reported": event.detail])
            {
                log(problem)
            }
        }
    }

    /// Traces a frame (on the initiator's side), applies a pending tamper, and returns the link to send it on.
    private func relay(channel: String, frame: [UInt8], from sender: String) -> (RelayLink, [UInt8])? {
        routes.withLock { routes -> (RelayLink, [UInt8])? in
            guard var route = routes[channel] else { return nil }
            var frame = frame
            var tampered = false
            if route.tamperNext, frame.count > 4 {
                frame[frame.count / 2 + 2] ^= 0x01
                route.tamperNext = false
                tampered = true
            }
            route.sequence += 1
            if route.initiatorSide {
                let kind: String
                if frame.starts(with: Array("cmk-alert".utf8) + [0]) {
                    kind = "alert"
                } else if route.sequence <= 3 {
                    kind = "handshake-\(route.sequence)"
                } else {
                    kind = "record"
                }
                ChannelFiles.append(
                    ChannelFiles.TraceEntry(
                        sequence: route.sequence, time: Date(), from: sender,
                        to: sender == instance ? route.peer : instance, length: frame.count, kind: kind,
                        hex: Hex.encode(frame.prefix(4096)), truncated: frame.count > 4096, tampered: tampered),
                    to: ChannelFiles.folder(state, channel: channel).appendingPathComponent("trace.jsonl"))
            }
            routes[channel] = route
            return (route.link, frame)
        }
    }

    // MARK: From the relay socket

    private func serve(_ link: RelayLink) {
        guard let request = try? link.receive(timeout: .seconds(30)) else {
            link.close()
            return
        }
        if request.op == .workload {
            serveWorkload(first: request, link)
            return
        }
        let channel = request.channel ?? ""
        func answer(_ result: Result<String, CoordinatorError>) {
            switch result {
            case .success(let note): try? link.send(RelayMessage(.accepted, channel: channel, reason: note))
            case .failure(let error):
                try? link.send(RelayMessage(.refused, channel: channel, reason: "\(error.code): \(error.reason)"))
            }
        }
        do throws(CoordinatorError) {
            try ChannelFiles.validate(channel: channel)
            switch request.op {
            case .open:
                answer(
                    .success(try open(channel: channel, responder: request.responder ?? "", update: request.update ?? false)))
                link.close()
            case .link:
                try join(
                    channel: channel, initiator: request.initiator ?? "", responder: request.responder ?? "",
                    update: request.update ?? false, link)
                answer(.success("linked"))
                pump(channel: channel, link: link)
            case .send:
                try requireRoute(channel)
                try sendToAgent(.channelSend(channel: channel, data: Array(request.data ?? Data()), echo: request.echo ?? false))
                answer(.success("sent to \(instance)'s agent"))
                link.close()
            case .close:
                try requireRoute(channel)
                try sendToAgent(.channelClose(channel: channel))
                answer(.success("close sent to \(instance)'s agent"))
                link.close()
            case .tamper:
                let armed = routes.withLock { routes -> Bool in
                    guard routes[channel]?.initiatorSide == true else { return false }
                    routes[channel]?.tamperNext = true
                    return true
                }
                guard armed else {
                    throw CoordinatorError(.unknownChannel, "\(instance) relays no channel \(channel) as its initiator")
                }
                log("channel \(channel): the next frame will have one bit flipped (operator's request)")
                _ = ChannelFiles.audit(
                    state, actor: "coordinator", instance: instance,
                    details: ["event": "channel-tamper", "channel": channel])
                answer(.success("the next frame on \(channel) will have one bit flipped"))
                link.close()
            case .stateExport, .stateImport:
                try requireRoute(channel)
                try sendToAgent(
                    request.op == .stateExport ? .stateExport(channel: channel) : .stateImport(channel: channel))
                answer(.success("\(request.op.rawValue) sent to \(instance)'s agent"))
                link.close()
            case .accepted, .refused, .frame, .workload, .hold, .release, .setBackends, .stats:
                throw CoordinatorError(.invalidArgument, "\(request.op.rawValue) is not a request")
            }
        } catch {
            answer(.failure(error))
            link.close()
        }
    }

    private func requireRoute(_ channel: String) throws(CoordinatorError) {
        guard routes.withLock({ $0[channel] != nil }) else {
            throw CoordinatorError(.unknownChannel, "\(instance) relays no channel \(channel)")
        }
    }

    fileprivate func sendToAgent(_ message: GuestMessage) throws(CoordinatorError) {
        do { try control.send(message) } catch {
            throw CoordinatorError(.launch, "cannot reach \(instance)'s agent: \(error)")
        }
    }

    /// Checks the allow-list; a refusal is audited.
    private func admit(channel: String, initiator: String, responder: String, update: Bool) throws(CoordinatorError) {
        do throws(CoordinatorError) {
            if update {
                try UpdateAccess.check(state, predecessor: initiator, successor: responder)
            } else {
                try ChannelAccess.check(state, initiator: initiator, responder: responder)
            }
        } catch {
            log("channel \(channel): REFUSED: \(error.reason)")
            _ = ChannelFiles.audit(
                state, actor: "coordinator", instance: instance,
                details: [
                    "event": "channel-refused", "channel": channel, "initiator": initiator, "responder": responder,
                    "reason": error.reason,
                ])
            throw error
        }
        guard routes.withLock({ $0[channel] == nil }) else {
            throw CoordinatorError(.nameInUse, "\(instance) already relays a channel \(channel)")
        }
    }

    /// The command line asks this (the initiator's) supervisor to open a channel to `responder`.
    private func open(channel: String, responder: String, update: Bool) throws(CoordinatorError) -> String {
        try admit(channel: channel, initiator: instance, responder: responder, update: update)
        // A fresh record: what an earlier channel of this id left goes before either end reports anything.
        ChannelFiles.reset(state, channel: channel)
        let link = try RelayLink.connect(path: ChannelFiles.relaySocket(state, instance: responder))
        let answer: RelayMessage
        do throws(CoordinatorError) {
            answer = try link.request(
                RelayMessage(.link, channel: channel, initiator: instance, responder: responder, update: update),
                timeout: .seconds(30))
        } catch {
            link.close()
            throw error
        }
        guard answer.op == .accepted else {
            link.close()
            throw CoordinatorError(.channelRefused, "\(responder)'s supervisor refused: \(answer.reason ?? "no reason")")
        }
        try ChannelFiles.writeInfo(
            ChannelFiles.Info(channel: channel, initiator: instance, responder: responder, openedAt: Date()),
            state: state)
        routes.withLock { $0[channel] = Route(link: link, initiatorSide: true, peer: responder) }
        _ = ChannelFiles.audit(
            state, actor: "coordinator", instance: instance,
            details: ["event": "channel-opened", "channel": channel, "initiator": instance, "responder": responder])
        try sendToAgent(
            .channelOpen(
                ChannelOpen(
                    channel: channel, initiatorRole: true, initiator: instance, responder: responder,
                    manifest: manifest)))
        Thread.detachNewThread { [self] in pump(channel: channel, link: link) }
        log("channel \(channel): relaying \(instance) ⇄ \(responder)")
        return "relaying \(instance) ⇄ \(responder); the two agents run the handshake"
    }

    /// The initiator's supervisor asks this (the responder's) supervisor to join.
    private func join(
        channel: String, initiator: String, responder: String, update: Bool, _ link: RelayLink
    ) throws(CoordinatorError) {
        guard responder == instance else {
            throw CoordinatorError(.channelRefused, "this relay is \(instance)'s, not \(responder)'s")
        }
        try admit(channel: channel, initiator: initiator, responder: responder, update: update)
        routes.withLock { $0[channel] = Route(link: link, initiatorSide: false, peer: initiator) }
        // The agent hears of the channel before the peer's first frame can arrive.
        try sendToAgent(
            .channelOpen(
                ChannelOpen(
                    channel: channel, initiatorRole: false, initiator: initiator, responder: responder,
                    manifest: manifest)))
        log("channel \(channel): relaying \(initiator) ⇄ \(instance)")
    }

    /// Frames from the peer's supervisor to this instance's agent, until the link closes.
    private func pump(channel: String, link: RelayLink) {
        while !stopped.load(ordering: .acquiring) {
            let message: RelayMessage?
            do { message = try link.receive(timeout: .seconds(1)) } catch { break }
            guard let message else { continue }
            guard message.op == .frame, message.channel == channel, let data = message.data else { continue }
            let peer = routes.withLock { $0[channel]?.peer } ?? "?"
            guard let relayed = relay(channel: channel, frame: Array(data), from: peer) else { break }
            do { try control.send(.channelFrame(channel: channel, frame: relayed.1)) } catch { break }
        }
        link.close()
        routes.withLock { routes in
            if routes[channel]?.link === link { routes[channel] = nil }
        }
    }
}

// MARK: The workload (docs/updates.md)

/// One workload request waiting for the agent's answer.
final class WorkloadWaiter: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let answer = Mutex<[UInt8]?>(nil)

    func resolve(_ response: [UInt8]) {
        answer.withLock { $0 = response }
        semaphore.signal()
    }

    func wait(timeout: Duration) -> [UInt8]? {
        let parts = timeout.components
        let nanoseconds = Int(parts.seconds) * 1_000_000_000 + Int(parts.attoseconds / 1_000_000_000)
        guard semaphore.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success else { return nil }
        return answer.withLock { $0 }
    }
}

extension ChannelRelay {
    /// Serves `workload` requests on one link until it closes: each goes to the agent as `.workloadRequest` with a
    /// fresh id and comes back as the agent's answer. The host sees the requests and answers of the demo workload
    /// (it is the endpoint's traffic, as a load balancer would), never the state an update moves.
    fileprivate func serveWorkload(first: RelayMessage, _ link: RelayLink) {
        var request = first
        while !stopped.load(ordering: .acquiring) {
            guard request.op == .workload else {
                try? link.send(RelayMessage(.refused, reason: "only workload requests on a workload link"))
                break
            }
            let response: RelayMessage
            do throws(CoordinatorError) {
                response = RelayMessage(.accepted, data: Data(try workload(Array(request.data ?? Data()))))
            } catch {
                response = RelayMessage(.refused, reason: "\(error.code): \(error.reason)")
            }
            do { try link.send(response) } catch { break }
            var next: RelayMessage?
            while next == nil, !stopped.load(ordering: .acquiring) {
                do { next = try link.receive(timeout: .seconds(1)) } catch { break }
            }
            guard let next else { break }
            request = next
        }
        link.close()
    }

    /// One request to this instance's workload, answered by its agent within 15 s.
    func workload(_ request: [UInt8]) throws(CoordinatorError) -> [UInt8] {
        guard request.count <= WorkloadMessageLimits.maximumRequest else {
            return Array("ERR bad-request a request has at most \(WorkloadMessageLimits.maximumRequest) bytes".utf8)
        }
        let id = nextWorkID.add(1, ordering: .relaxed).oldValue
        let waiter = WorkloadWaiter()
        pendingWork.withLock { $0[id] = waiter }
        do throws(CoordinatorError) {
            try sendToAgent(.workloadRequest(id: id, request: request))
        } catch {
            pendingWork.withLock { _ = $0.removeValue(forKey: id) }
            throw error
        }
        guard let answer = waiter.wait(timeout: .seconds(15)) else {
            pendingWork.withLock { _ = $0.removeValue(forKey: id) }
            throw CoordinatorError(.launch, "\(instance)'s agent did not answer a workload request within 15 s")
        }
        return answer
    }
}

extension InstanceSupervisor {
    /// The relay of this admitted instance, listening; nil (noted) when it cannot be started, which leaves the
    /// instance running without channels.
    func startChannelRelay(control: FramedConnection) -> ChannelRelay? {
        let progress = self.progress
        do {
            let relay = try ChannelRelay(
                state: state, instance: request.name, control: control, log: { progress(.note($0)) })
            relay.start()
            return relay
        } catch {
            progress(.note("no channel relay for \(request.name): \(error)"))
            return nil
        }
    }
}
