// relay: the round trip of a 64-byte message between two children through the coordinator's relay, in process with
// real sockets, next to three baselines measured in the same run (docs/channels.md, "Benchmarks"):
//
//   plain    64 bytes written to one end of a UNIX socket pair and written back by a thread at the other end: no
//            record layer, no relay (the kernel's floor for a round trip between two threads).
//   records  the same ping-pong carrying sealed records: a ChannelEndpoint pair (the record layer the agents use),
//            each record a guest-protocol `channelFrame` on one UNIX socket pair; the far end opens it and seals the
//            reply. Record layer and framing, no relay, no agent.
//   agents   two real cmk-guest agents (GuestAgent.serve, simulated SEV-SNP evidence, their own peer checks), each on
//            its own control socket, joined by a bare forwarder that hands `channelFrame`s from one control
//            socket to the other: the agents' work and their two socket hops, no coordinator.
//   relay    two real agents joined by the coordinator's own code: per instance a control socket, the supervisor's
//            watch loop (InstanceWatch, heartbeats every 100 ms included) feeding ChannelRelay, the allow-list
//            checked against a real instance store (both admitted, each handed the other as channel peer), the two
//            relays joined by their RelayLink over `<instance>/relay.sock`, the trace and event files written as in
//            production. The channel is opened by `cmk channel open`'s request on the initiator's relay socket.
//
// agents and relay: the round trip is the one the initiating agent measures itself (`channelSend` with echo: from
// sealing the message to opening the peer's echo; the `echoed` event's µs), so both use the same clock points; the
// first three modes time the same span in the benchmark's own threads. Rounds alternate the order of the modes.
import Coordinator
import Crypto
import Foundation
import GuestAgent
import GuestProtocol
import PlatformSimulator
import SealedChannel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A value handed to another thread that is used there only (the benchmark's own hand-offs).
final class Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Events an agent reported, as its supervisor (or the bare forwarder) saw them; the benchmark waits on them.
final class EventInbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [ChannelEvent] = []

    func post(_ event: ChannelEvent) {
        condition.lock()
        events.append(event)
        condition.signal()
        condition.unlock()
    }

    /// The first event named one of `names` (earlier events of other names are dropped); throws after `timeout`.
    func next(_ names: Set<String>, timeout: TimeInterval, what: String) throws -> ChannelEvent {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            while let first = events.first {
                events.removeFirst()
                if first.event == "failed" { throw RelayBenchmarkError("\(what): the channel failed: \(first.detail)") }
                if names.contains(first.event) { return first }
            }
            guard condition.wait(until: deadline) else { throw RelayBenchmarkError("\(what): nothing within \(Int(timeout)) s") }
        }
    }
}

struct RelayBenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Round-trip samples in µs and their summary.
struct RoundTrips {
    var samples: [Double] = []

    var sorted: [Double] { samples.sorted() }
    func percentile(_ p: Double) -> Double {
        let values = sorted
        return values[min(values.count - 1, Int(Double(values.count) * p))]
    }
    var mean: Double { samples.reduce(0, +) / Double(samples.count) }
}

/// Runs `exchange` (one round trip, returning its µs) for `seconds`; the samples.
func roundTrips(seconds: Double, _ exchange: () throws -> Double) rethrows -> [Double] {
    let clock = ContinuousClock()
    let end = clock.now + .milliseconds(Int64(seconds * 1000))
    var samples: [Double] = []
    while clock.now < end { samples.append(try exchange()) }
    return samples
}

func microseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

func socketPair() throws -> (Int32, Int32) {
    var ends: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
        throw RelayBenchmarkError("socketpair: \(String(cString: strerror(errno)))")
    }
    return (ends[0], ends[1])
}

func readExactly(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
    var got = 0
    while got < buffer.count {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { return false }
        got += n
    }
    return true
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { return false }
        sent += n
    }
    return true
}

/// Two children as the relay benchmark runs them: simulated SEV-SNP launches whose HOST_DATA binds their manifests,
/// agents serving in threads of this process.
struct RelayBenchChildren {
    let amd: SimulatedAMDSecureProcessor
    let firmware: [UInt8]
    let kernel: [UInt8]

    /// The manifest and an evidence provider for a child named `name` that lists `peer`.
    func child(_ name: String, peer: String) throws -> (manifest: [UInt8], provider: InProcessProvider) {
        try simulatedSNPChild(name, peer: peer, amd: amd, firmware: firmware, kernel: kernel)
    }

    /// Starts a real agent named `name` on a new control socket at `path`; returns the host end after the agent's
    /// `.ready` and its handover (which lists `peer` as its channel peer) were exchanged.
    func agent(_ name: String, peer: String, provider: InProcessProvider, path: String) throws -> FramedConnection {
        let listener = try UnixSocketListener(path: path)
        let port = Handoff(try FileDescriptor.connect(unixSocket: path))
        Thread.detachNewThread {
            let agent = GuestAgent(instance: name, provider: provider, log: .silent)
            _ = try? agent.serve(MessagePort(port.value, name: "control"))
        }
        let control = try listener.accept(timeout: .seconds(30))
        guard case .ready = try control.receive(timeout: .seconds(30)) else {
            throw RelayBenchmarkError("\(name)'s agent did not announce itself")
        }
        try control.send(.handover(secrets: [], volumes: [], channelPeers: [peer]))
        guard case .handoverAck = try control.receive(timeout: .seconds(30)) else {
            throw RelayBenchmarkError("\(name)'s agent did not acknowledge its handover")
        }
        return control
    }
}

@MainActor func benchmarkRelay() throws {
    let folder = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmkrb-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let body = [UInt8](repeating: 0x5A, count: 64)

    // plain: a 64-byte ping-pong on one socket pair.
    let (plainNear, plainFar) = try socketPair()
    Thread.detachNewThread {
        var buffer = [UInt8](repeating: 0, count: 64)
        while readExactly(plainFar, &buffer), writeAll(plainFar, buffer) {}
        close(plainFar)
    }
    defer { close(plainNear) }
    var plainBuffer = [UInt8](repeating: 0, count: 64)
    func plainExchange() throws -> Double {
        let start = ContinuousClock.now
        guard writeAll(plainNear, body), readExactly(plainNear, &plainBuffer) else {
            throw RelayBenchmarkError("the plain socket pair broke")
        }
        return microseconds(ContinuousClock.now - start)
    }

    // records: a ChannelEndpoint pair (a handshake with self-asserted evidence: only the records matter here).
    let descriptor = try ChannelDescriptor(channelID: "bench", initiator: "a", responder: "b")
    var initiator = try ChannelInitiator(
        descriptor: descriptor, staticKey: NoiseKeyPair(), attester: SelfAssertedBinding(), verifier: SelfAssertedBinding())
    var responder = try ChannelResponder(
        descriptor: descriptor, staticKey: NoiseKeyPair(), attester: SelfAssertedBinding(), verifier: SelfAssertedBinding())
    let (message3, near) = try initiator.finish(try responder.respond(to: try initiator.start()))
    let far = Handoff(try responder.finish(message3))
    let (recordsNearFD, recordsFarFD) = try socketPair()
    let recordsNear = MessagePort(FileDescriptor(adopting: recordsNearFD), name: "records")
    let farDescriptor = Handoff(FileDescriptor(adopting: recordsFarFD))
    Thread.detachNewThread {
        let port = MessagePort(farDescriptor.value, name: "records")
        while let message = try? port.receive(), case .channelFrame(let channel, let frame) = message {
            guard case .data(let opened)? = try? far.value.open(frame: frame),
                let reply = try? far.value.seal([0x03] + opened.dropFirst()),
                (try? port.send(.channelFrame(channel: channel, frame: reply))) != nil
            else { return }
        }
    }
    func recordsExchange() throws -> Double {
        let start = ContinuousClock.now
        try recordsNear.send(.channelFrame(channel: "bench", frame: try near.seal([0x02] + body)))
        guard case .channelFrame(_, let frame)? = try recordsNear.receive(milliseconds: 30_000),
            case .data(let echoed) = try near.open(frame: frame), echoed.count == 65
        else { throw RelayBenchmarkError("the record ping-pong broke") }
        return microseconds(ContinuousClock.now - start)
    }

    // The children: two pairs of real agents with simulated SEV-SNP evidence.
    if !options.json { FileHandle.standardError.write(Data("generating the simulated platform (RSA-4096 roots)...\n".utf8)) }
    let boot = URL(fileURLWithPath: ".cache/guest-kernel/boot")
    guard let kernelName = try? FileManager.default.contentsOfDirectory(atPath: boot.path).first(where: { $0.hasPrefix("vmlinuz") })
    else { throw RelayBenchmarkError("no guest kernel in .cache/guest-kernel/boot (run scripts/setup; run from the repository)") }
    let children = RelayBenchChildren(
        amd: try SimulatedAMDSecureProcessor(directory: folder.appendingPathComponent("amd")),
        firmware: [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/usr/share/ovmf/OVMF.fd"))),
        kernel: [UInt8](try Data(contentsOf: boot.appendingPathComponent(kernelName))))

    // agents: a bare forwarder between the two control sockets; this benchmark opens the channel as a coordinator
    // would (each agent gets `channelOpen` with its own manifest).
    let (directA, directB) = (try children.child("direct-a", peer: "direct-b"), try children.child("direct-b", peer: "direct-a"))
    let directControlA = try children.agent(
        "direct-a", peer: "direct-b", provider: directA.provider, path: folder.appendingPathComponent("direct-a.sock").path)
    let directControlB = try children.agent(
        "direct-b", peer: "direct-a", provider: directB.provider, path: folder.appendingPathComponent("direct-b.sock").path)
    let directInbox = EventInbox()
    let stopping = Atomic<Bool>(false)
    for (from, to) in [(directControlA, directControlB), (directControlB, directControlA)] {
        Thread.detachNewThread {
            while !stopping.load(ordering: .acquiring) {
                guard let message = try? from.receive(timeout: .seconds(1)) else { continue }
                switch message {
                case .channelFrame: try? to.send(message)
                case .channelEvent(let event) where from === directControlA: directInbox.post(event)
                default: break
                }
            }
        }
    }
    try directControlB.send(
        .channelOpen(ChannelOpen(channel: "direct", initiatorRole: false, initiator: "direct-a", responder: "direct-b", manifest: directB.manifest)))
    try directControlA.send(
        .channelOpen(ChannelOpen(channel: "direct", initiatorRole: true, initiator: "direct-a", responder: "direct-b", manifest: directA.manifest)))
    _ = try directInbox.next(["established"], timeout: 60, what: "the direct channel's handshake")
    func agentExchange(_ control: FramedConnection, _ inbox: EventInbox, channel: String) throws -> (agent: Double, host: Double) {
        let start = ContinuousClock.now
        try control.send(.channelSend(channel: channel, data: body, echo: true))
        let echoed = try inbox.next(["echoed"], timeout: 30, what: "an echo on \(channel)")
        guard echoed.detail.hasSuffix("unchanged") else { throw RelayBenchmarkError("an echo came back changed: \(echoed.detail)") }
        return (Double(echoed.micros), microseconds(ContinuousClock.now - start))
    }

    // relay: a state directory with two admitted instances, each handed the other as its channel peer; per instance
    // a supervisor's watch loop and relay, as `cmk launch` runs them (a `sleep` stands in for QEMU, for the watch's
    // exit notifier and run-queue reading).
    let state = CMKStateDirectory(folder.appendingPathComponent("state"))
    let store = try InstanceStore(state)
    let host = HostInventory(
        cpus: (0..<4).map { HostInventory.CPU(id: $0, node: 0, core: $0, siblings: [$0]) }, memoryTotalKiB: 16 << 20,
        memoryAvailableKiB: 16 << 20)
    let relayInbox = EventInbox()
    var standIns: [Process] = []
    var relays: [ChannelRelay] = []
    var relayControlA: FramedConnection?
    // Set up before the first stand-in starts, so a failure half-way leaves no `sleep` behind.
    defer {
        stopping.store(true, ordering: .releasing)
        for relay in relays { relay.stop() }
        for sleeper in standIns { sleeper.terminate() }
    }
    for (name, peer) in [("bench-a", "bench-b"), ("bench-b", "bench-a")] {
        let (manifest, provider) = try children.child(name, peer: peer)
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["3600"]
        try sleeper.run()
        standIns.append(sleeper)
        guard let identity = ProcessIdentity.of(pid: sleeper.processIdentifier) else {
            throw RelayBenchmarkError("cannot read the stand-in process's identity")
        }
        let record = try store.reserve(
            InstanceRequest(
                name: name, resources: PartitionRequest(cpuCount: 1, memoryMiB: 64, allowSharedCores: true),
                profile: "minimal", policy: PolicyReference(id: "bench", version: 1, digest: String(repeating: "ab", count: 32))),
            on: host)
        try store.transition(name, to: .booting, reason: "benchmark", changes: InstanceChanges(process: identity))
        try store.transition(name, to: .attesting, reason: "benchmark")
        try store.transition(name, to: .admitted, reason: "benchmark")
        try store.recordHandover(record.id, secrets: [], volumes: [], channelPeers: [peer], sealedSecretsSHA256: nil)
        let instanceFolder = InstanceSupervisor.folder(state, name: name)
        try FileManager.default.createDirectory(at: instanceFolder, withIntermediateDirectories: true)
        try Data(manifest).write(to: instanceFolder.appendingPathComponent("manifest.json"))
        let control = try children.agent(
            name, peer: peer, provider: provider, path: instanceFolder.appendingPathComponent("control.sock").path)
        let relay = try ChannelRelay(state: state, instance: name, control: control, log: { _ in })
        relay.start()
        relays.append(relay)
        let notifier = try ProcessExitNotifier(pid: sleeper.processIdentifier)
        let initiatorSide = name == "bench-a"
        if initiatorSide { relayControlA = control }
        Thread.detachNewThread {
            _ = InstanceWatch().run(
                connection: control, exit: notifier, stopRequested: { stopping.load(ordering: .acquiring) },
                other: { message in
                    relay.handle(message)
                    if initiatorSide, case .channelEvent(let event) = message { relayInbox.post(event) }
                })
        }
    }
    store.close()
    let link = try RelayLink.connect(path: ChannelFiles.relaySocket(state, instance: "bench-a"))
    let opened = try link.request(RelayMessage(.open, channel: "bench", responder: "bench-b"), timeout: .seconds(60))
    link.close()
    guard opened.op == .accepted else { throw RelayBenchmarkError("the relay refused the channel: \(opened.reason ?? "")") }
    _ = try relayInbox.next(["established"], timeout: 60, what: "the relayed channel's handshake")
    guard let relayControlA else { throw RelayBenchmarkError("no control connection for bench-a") }

    // Warm up each path, then alternate.
    for _ in 0..<50 {
        _ = try plainExchange()
        _ = try recordsExchange()
        _ = try agentExchange(directControlA, directInbox, channel: "direct")
        _ = try agentExchange(relayControlA, relayInbox, channel: "bench")
    }
    var plain = RoundTrips(), records = RoundTrips(), agents = RoundTrips(), relayed = RoundTrips()
    var agentsHost = RoundTrips(), relayedHost = RoundTrips()
    for round in 0..<options.rounds {
        var modes: [() throws -> Void] = [
            { plain.samples += try roundTrips(seconds: options.seconds, plainExchange) },
            { records.samples += try roundTrips(seconds: options.seconds, recordsExchange) },
            {
                var host: [Double] = []
                agents.samples += try roundTrips(seconds: options.seconds) {
                    let (agent, measured) = try agentExchange(directControlA, directInbox, channel: "direct")
                    host.append(measured)
                    return agent
                }
                agentsHost.samples += host
            },
            {
                var host: [Double] = []
                relayed.samples += try roundTrips(seconds: options.seconds) {
                    let (agent, measured) = try agentExchange(relayControlA, relayInbox, channel: "bench")
                    host.append(measured)
                    return agent
                }
                relayedHost.samples += host
            },
        ]
        if round % 2 == 1 { modes.reverse() }
        for mode in modes { try mode() }
        if !options.json {
            FileHandle.standardError.write(Data(String(
                format: "relay round %d/%d: p50 plain %.1f, records %.1f, agents %.1f, relay %.1f µs\n", round + 1,
                options.rounds, plain.percentile(0.5), records.percentile(0.5), agents.percentile(0.5),
                relayed.percentile(0.5)).utf8))
        }
    }
    let trace = ChannelFiles.trace(state, channel: "bench")
    let wireBytes = trace.last(where: { $0.kind == "record" })?.length ?? 0

    func summary(_ trips: RoundTrips) -> [String: Any] {
        ["p50_us": trips.percentile(0.5), "p99_us": trips.percentile(0.99), "mean_us": trips.mean, "samples": trips.samples.count]
    }
    results.append([
        "benchmark": "channel-relay-round-trip-64", "message_bytes": 64, "frame_bytes_on_the_relay": wireBytes,
        "baseline": "plain 64-byte ping-pong on a UNIX socket pair",
        "plain": summary(plain), "records": summary(records), "agents_direct": summary(agents), "relay": summary(relayed),
        "agents_direct_host_measured": summary(agentsHost), "relay_host_measured": summary(relayedHost),
        "ratio_relay_to_plain_p50": relayed.percentile(0.5) / plain.percentile(0.5),
        "ratio_relay_to_records_p50": relayed.percentile(0.5) / records.percentile(0.5),
        "ratio_relay_to_agents_direct_p50": relayed.percentile(0.5) / agents.percentile(0.5),
        "ratio_relay_to_agents_direct_mean": relayed.mean / agents.mean,
        "rounds": options.rounds, "seconds_per_mode_per_round": options.seconds,
    ])
    if !options.json {
        print("Round trip of a 64-byte message (\(wireBytes)-byte frame on the relay), \(options.rounds) rounds of \(options.seconds) s per mode, µs:")
        print("                                               p50        p99       mean   samples")
        for (name, trips) in [
            ("plain socket pair, 64 B (baseline)", plain), ("sealed records, one socket pair", records),
            ("cmk-guest ⇄ bare forwarder ⇄ cmk-guest", agents), ("cmk-guest ⇄ coordinator relay ⇄ cmk-guest", relayed),
        ] {
            print(
                "  " + name.padding(toLength: 42, withPad: " ", startingAt: 0)
                    + String(format: " %9.1f  %9.1f  %9.1f  %8d", trips.percentile(0.5), trips.percentile(0.99), trips.mean, trips.samples.count))
        }
        print(String(
            format: "  relay / agents direct %.2f× (p50), %.2f× (mean); relay / records %.1f×; relay / plain %.1f× (p50)",
            relayed.percentile(0.5) / agents.percentile(0.5), relayed.mean / agents.mean,
            relayed.percentile(0.5) / records.percentile(0.5), relayed.percentile(0.5) / plain.percentile(0.5)))
    }
    if options.qemu { try benchmarkRelayUnderQEMU(inProcess: results.last ?? [:]) }
    try? directControlA.send(.shutdown)
    try? directControlB.send(.shutdown)
    try? relayControlA.send(.shutdown)
}

/// `relay --qemu`: the same round trip between two real children under QEMU (TCG), through their real supervisors,
/// driven by the `cmk` beside this benchmark (or `$CMK_BENCH_CMK`) in a state folder of its own: two `cmk launch`es
/// of the development policy handing each other over as channel peers, `cmk channel open`, then `cmk channel send
/// --size 64 --count N --echo --json` (each round trip measured inside the sending child). The children carry
/// `$CMK_GUEST_AGENT` (scripts/build-guest-agent) as `cmk launch` does. Set beside the in-process figures of the same
/// run (`inProcess`); not alternated with them (two boots take a minute under TCG).
@MainActor func benchmarkRelayUnderQEMU(inProcess: [String: Any]) throws {
    let cmk = ProcessInfo.processInfo.environment["CMK_BENCH_CMK"]
        ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cmk").path
    guard FileManager.default.isExecutableFile(atPath: cmk) else {
        throw RelayBenchmarkError("relay --qemu needs cmk beside cmk-bench or in $CMK_BENCH_CMK (not found: \(cmk))")
    }
    let folder = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmkrq-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    var environment = ProcessInfo.processInfo.environment
    environment["CMK_STATE_DIR"] = folder.path
    environment["CMK_IMAGES"] = folder.appendingPathComponent("images").path
    func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cmk)
        process.arguments = arguments
        process.environment = environment
        let output = Pipe()
        // Standard error to a file: a second pipe could fill and block the command while standard output is read.
        let errorFile = folder.appendingPathComponent("cmk-\(arguments[0]).stderr")
        guard FileManager.default.createFile(atPath: errorFile.path, contents: nil) else {
            throw RelayBenchmarkError("cannot create \(errorFile.path)")
        }
        let errors = try FileHandle(forWritingTo: errorFile)
        defer { try? errors.close() }
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let stderr = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
            throw RelayBenchmarkError(
                "cmk \(arguments.prefix(2).joined(separator: " ")) exited \(process.terminationStatus): \(stderr.suffix(800))")
        }
        return text
    }
    let policyText = try String(contentsOf: URL(fileURLWithPath: "policies/development.yaml"), encoding: .utf8)
    var launched: [String] = []
    defer {
        for name in launched { _ = try? run(["stop", name]) }
        try? FileManager.default.removeItem(at: folder)
    }
    for (name, peer) in [("rtt-a", "rtt-b"), ("rtt-b", "rtt-a")] {
        let policy = folder.appendingPathComponent("\(name).yaml")
        try (policyText + "handover:\n  channel-peers: [\(peer)]\n").write(to: policy, atomically: true, encoding: .utf8)
        if !options.json { FileHandle.standardError.write(Data("relay --qemu: launching \(name) (TCG)...\n".utf8)) }
        launched.append(name)
        _ = try run(["launch", "--name", name, "--policy", policy.path, "--allow-shared-cores"])
    }
    _ = try run(["channel", "open", "rtt-a", "rtt-b", "--name", "rtt", "--json"])
    let messages = max(20, options.rounds * 40)
    let sent = try run(["channel", "send", "rtt", "--size", "64", "--count", "\(messages)", "--echo", "--json", "--timeout", "120"])
    guard let object = try JSONSerialization.jsonObject(with: Data(sent.utf8)) as? [String: Any],
        let micros = object["roundTripMicros"] as? [Int], !micros.isEmpty, (object["changed"] as? Int) == 0
    else { throw RelayBenchmarkError("cmk channel send gave no round trips: \(sent.prefix(400))") }
    var trips = RoundTrips()
    trips.samples = micros.map(Double.init)
    let relayP50 = (inProcess["relay"] as? [String: Any])?["p50_us"] as? Double ?? .nan
    let plainP50 = (inProcess["plain"] as? [String: Any])?["p50_us"] as? Double ?? .nan
    results.append([
        "benchmark": "channel-relay-round-trip-64-qemu", "message_bytes": 64,
        "baseline": "the in-process relay and plain socket figures of the same run",
        "qemu": ["p50_us": trips.percentile(0.5), "p99_us": trips.percentile(0.99), "mean_us": trips.mean, "samples": micros.count],
        "ratio_to_in_process_relay_p50": trips.percentile(0.5) / relayP50,
        "ratio_to_plain_p50": trips.percentile(0.5) / plainP50,
    ])
    if !options.json {
        print(
            "  " + "two QEMU children ⇄ their supervisors".padding(toLength: 42, withPad: " ", startingAt: 0)
                + String(format: " %9.1f  %9.1f  %9.1f  %8d", trips.percentile(0.5), trips.percentile(0.99), trips.mean, micros.count))
        print(String(format: "  under QEMU / in-process relay %.1f× (p50); under QEMU / plain %.0f× (p50)", trips.percentile(0.5) / relayP50, trips.percentile(0.5) / plainP50))
    }
}
