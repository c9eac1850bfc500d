public import Foundation
import AuditLog
import BinaryFormat

extension CoordinatorError.Code {
    /// The host refuses to relay a channel: an instance not admitted, or policies that do not list each other.
    public static let channelRefused = CoordinatorError.Code("channel-refused")
    /// No such channel.
    public static let unknownChannel = CoordinatorError.Code("unknown-channel")
}

/// What the host keeps about a channel under `<state>/channels/<id>/` (docs/channels.md, "Transport"): who it joins,
/// each end's reported events, and the relay's trace of every frame — lengths, counters and ciphertext, never
/// plaintext (the host has none).
public enum ChannelFiles {
    /// A channel id: 1 to 64 of letters, digits, `-`, `_`, `.`; not `.` or `..` (it names a folder).
    public static func validate(channel: String) throws(CoordinatorError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard (1...64).contains(channel.count), channel.allSatisfy({ allowed.contains($0) }), channel != ".",
            channel != ".."
        else {
            throw CoordinatorError(
                .invalidArgument, "a channel id is 1 to 64 of letters, digits, '-', '_', '.' (got '\(channel)')")
        }
    }

    public static func folder(_ state: CMKStateDirectory, channel: String) -> URL {
        state.url.appendingPathComponent("channels").appendingPathComponent(channel)
    }

    /// The supervisor's relay socket of an instance.
    public static func relaySocket(_ state: CMKStateDirectory, instance: String) -> String {
        InstanceSupervisor.folder(state, name: instance).appendingPathComponent("relay.sock").path
    }

    /// Who a channel joins; written when the relay opens it.
    public struct Info: Codable, Sendable, Hashable {
        public let channel: String
        public let initiator: String
        public let responder: String
        public let openedAt: Date
    }

    /// One event an end's agent reported (its supervisor writes it).
    public struct Event: Codable, Sendable, Hashable {
        public let time: Date
        public let instance: String
        public let event: String
        public let detail: String
        public let recordsSent: UInt64
        public let recordsReceived: UInt64
        /// For `echoed`: the round trip the agent measured, in microseconds.
        public let micros: UInt64
    }

    /// One frame as the relay saw it.
    public struct TraceEntry: Codable, Sendable, Hashable {
        public let sequence: Int
        public let time: Date
        public let from: String
        public let to: String
        /// The sealed frame's length in bytes.
        public let length: Int
        /// `handshake-1`, `handshake-2`, `handshake-3`, `record`, or `alert` (an unauthenticated handshake alert).
        public let kind: String
        /// The frame, hex: at most the first 4096 bytes (`truncated` then says so).
        public let hex: String
        public let truncated: Bool
        /// The relay flipped a bit in this frame (`cmk channel tamper`).
        public let tampered: Bool
    }

    static func append<T: Encodable>(_ value: T, to url: URL) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? encoder.encode(value) else { return }
        line.append(0x0A)
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        guard let handle = try? FileHandle(forWritingTo: url) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: line)
    }

    static func readLines<T: Decodable>(_ type: T.Type, from url: URL) -> [T] {
        guard let data = try? Data(contentsOf: url), let text = String(data: data, encoding: .utf8) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return text.split(separator: "\n").compactMap { try? decoder.decode(T.self, from: Data($0.utf8)) }
    }

    static func writeInfo(_ info: Info, state: CMKStateDirectory) throws(CoordinatorError) {
        let folder = folder(state, channel: info.channel)
        do {
            try FileManager.default.createDirectory(
                at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            try encoder.encode(info).write(to: folder.appendingPathComponent("channel.json"))
        } catch {
            throw CoordinatorError(.fileSystem, "cannot write the channel record in \(folder.path): \(error)")
        }
    }

    /// Removes what an earlier channel of the same id left.
    static func reset(_ state: CMKStateDirectory, channel: String) {
        try? FileManager.default.removeItem(at: folder(state, channel: channel))
    }

    public static func info(_ state: CMKStateDirectory, channel: String) -> Info? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let data = try? Data(contentsOf: folder(state, channel: channel).appendingPathComponent("channel.json"))
        else { return nil }
        return try? decoder.decode(Info.self, from: data)
    }

    public static func events(_ state: CMKStateDirectory, channel: String, instance: String) -> [Event] {
        readLines(Event.self, from: folder(state, channel: channel).appendingPathComponent("\(instance).events.jsonl"))
    }

    public static func trace(_ state: CMKStateDirectory, channel: String) -> [TraceEntry] {
        readLines(TraceEntry.self, from: folder(state, channel: channel).appendingPathComponent("trace.jsonl"))
    }

    /// Every channel the state folder knows, by id.
    public static func all(_ state: CMKStateDirectory) -> [Info] {
        let root = state.url.appendingPathComponent("channels")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.sorted().compactMap { info(state, channel: $0) }
    }

    /// Appends to the audit log; a failure to audit is reported to the caller's log, not thrown.
    @discardableResult
    static func audit(_ state: CMKStateDirectory, actor: String, instance: String, details: [String: String]) -> String? {
        do {
            let log = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
            _ = try log.append(AuditEntry(actor: actor, kind: .instanceEvent, instance: instance, details: details))
            return nil
        } catch {
            return "cannot append to the audit log: \(error)"
        }
    }
}

/// The host's allow-list for channels: it relays only between two admitted instances whose policies' handover
/// sections (`handover.channel-peers`, recorded at the handover) list each other, by instance name or policy id.
public enum ChannelAccess {
    public static func check(_ state: CMKStateDirectory, initiator: String, responder: String) throws(CoordinatorError) {
        guard initiator != responder else {
            throw CoordinatorError(.channelRefused, "an instance cannot open a channel with itself (\(initiator))")
        }
        guard let store = try InstanceStore.openForReading(state) else {
            throw CoordinatorError(.unknownInstance, "no instances in \(state.url.path)")
        }
        defer { store.close() }
        var records: [InstanceRecord] = []
        for name in [initiator, responder] {
            guard let record = try store.instance(name) else {
                throw CoordinatorError(.unknownInstance, "no instance named \(name)")
            }
            guard record.state == .admitted else {
                throw CoordinatorError(
                    .channelRefused,
                    "\(name) is \(record.state), not admitted: only admitted instances get channels")
            }
            records.append(record)
        }
        for (me, other) in [(records[0], records[1]), (records[1], records[0])] {
            let peers = try store.handover(of: me.id)?.channelPeers ?? []
            let names = [other.name] + (other.policy.map { [$0.id] } ?? [])
            guard peers.contains(where: { names.contains($0) }) else {
                let policy = me.policy.map { "policy \($0.id) v\($0.version)" } ?? "its policy"
                throw CoordinatorError(
                    .channelRefused,
                    "\(policy) of \(me.name) does not list \(other.name) in handover.channel-peers "
                        + "(it lists \(peers.isEmpty ? "none" : peers.joined(separator: ", ")))")
            }
        }
    }
}

/// A channel as `cmk channel ls` shows it: who, the state both ends report, and what the relay moved.
public struct ChannelSummary: Codable, Sendable, Hashable {
    public struct End: Codable, Sendable, Hashable {
        public let instance: String
        /// The newest event this end's agent reported (`none` before any).
        public let state: String
        public let detail: String
        public let recordsSent: UInt64
        public let recordsReceived: UInt64
        /// For an established end: the handshake as this end measured it (µs), evidence included.
        public let handshakeMicros: UInt64?
    }

    public struct Direction: Codable, Sendable, Hashable {
        public let from: String
        public let to: String
        public let frames: Int
        public let bytes: Int
    }

    public let channel: String
    public let initiator: End
    public let responder: End
    /// `handshaking`, `open`, `closed` or `failed`.
    public let state: String
    public let relayed: [Direction]
    public let tamperedFrames: Int
    public let openedAt: Date

    public init(_ state: CMKStateDirectory, info: ChannelFiles.Info) {
        func end(_ name: String) -> End {
            let events = ChannelFiles.events(state, channel: info.channel, instance: name)
            // What an end is in: the newest event that changes the state (sent/received keep it open).
            let decisive = events.last { ["handshake-started", "established", "failed", "closed"].contains($0.event) }
            let last = events.last
            return End(
                instance: name, state: decisive?.event ?? "none", detail: decisive?.detail ?? "",
                recordsSent: last?.recordsSent ?? 0, recordsReceived: last?.recordsReceived ?? 0,
                handshakeMicros: events.last { $0.event == "established" }.map(\.micros))
        }
        channel = info.channel
        initiator = end(info.initiator)
        responder = end(info.responder)
        let states = [initiator.state, responder.state]
        if states.contains("failed") {
            self.state = "failed"
        } else if states.contains("closed") {
            self.state = "closed"
        } else if states.allSatisfy({ $0 == "established" }) {
            self.state = "open"
        } else {
            self.state = "handshaking"
        }
        let trace = ChannelFiles.trace(state, channel: info.channel)
        relayed = [(info.initiator, info.responder), (info.responder, info.initiator)].map { pair in
            let frames = trace.filter { $0.from == pair.0 }
            return Direction(from: pair.0, to: pair.1, frames: frames.count, bytes: frames.reduce(0) { $0 + $1.length })
        }
        tamperedFrames = trace.filter(\.tampered).count
        openedAt = info.openedAt
    }
}
