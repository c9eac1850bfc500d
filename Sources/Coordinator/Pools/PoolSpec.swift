public import Foundation

/// What an operator asked for with `cmk pool create`: the instances' launch settings and the scaling rule.
public struct PoolSpec: Sendable, Codable, Hashable {
    public var name: String
    public var profile: String
    /// The policy file every instance is appraised against (absolute path).
    public var policyPath: String
    public var rule: ScalingRule
    public var allowSharedCores: Bool
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var bootTimeoutSeconds: Int
    /// The agent binary to put in the image (nil: the built one).
    public var agentPath: String?
    /// The endpoint's TCP port on 127.0.0.1 (0: any free port, chosen when the controller starts).
    public var port: Int
    /// Seconds a draining instance gets for its in-flight requests before it is stopped anyway.
    public var drainSeconds: Double
    /// Seconds between measurements and decisions.
    public var intervalSeconds: Double
    public var createdAt: Date

    public init(
        name: String, profile: String, policyPath: String, rule: ScalingRule, allowSharedCores: Bool,
        vcpus: Int? = nil, memoryMiB: Int? = nil, bootTimeoutSeconds: Int = 300, agentPath: String? = nil,
        port: Int = 0, drainSeconds: Double = 10, intervalSeconds: Double = 1, createdAt: Date = Date()
    ) {
        self.name = name
        self.profile = profile
        self.policyPath = policyPath
        self.rule = rule
        self.allowSharedCores = allowSharedCores
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.bootTimeoutSeconds = bootTimeoutSeconds
        self.agentPath = agentPath
        self.port = port
        self.drainSeconds = drainSeconds
        self.intervalSeconds = intervalSeconds
        self.createdAt = createdAt
    }

    /// Pool names: 1 to 40 of a-z, 0-9, '-', starting with a letter (instances are named `NAME-<n>`).
    public static func validateName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-")
        guard (1...40).contains(name.count), name.allSatisfy({ allowed.contains($0) }), name.first!.isLetter,
              name.last != "-"
        else {
            throw CoordinatorError(
                .invalidArgument,
                "pool name \"\(name)\" is not valid: 1 to 40 of a-z, 0-9 and '-', starting with a letter, not ending in '-'")
        }
    }

    /// Every problem with the spec at once, as one `invalid-argument` error.
    public func validate() throws {
        try Self.validateName(name)
        try rule.validate()
        var problems: [String] = []
        if !(0...65535).contains(port) { problems.append("--port must be 0 to 65535 (got \(port))") }
        if !(drainSeconds >= 0 && drainSeconds <= 600) { problems.append("--drain must be 0 to 600 seconds") }
        if !(intervalSeconds >= 0.1 && intervalSeconds <= 60) { problems.append("--interval must be 0.1 to 60 seconds") }
        if !(10...3600).contains(bootTimeoutSeconds) { problems.append("--boot-timeout must be 10 to 3600 seconds") }
        if let vcpus, !(1...64).contains(vcpus) { problems.append("--vcpus must be 1 to 64") }
        if let memoryMiB, !(64...1_048_576).contains(memoryMiB) { problems.append("--memory must be 64 to 1048576 MiB") }
        if !problems.isEmpty { throw CoordinatorError(.invalidArgument, problems.joined(separator: "; ")) }
    }

    /// The name of the pool's `n`th instance.
    public func instanceName(_ n: Int) -> String { "\(name)-\(n)" }
}

/// One instance of a pool as the controller sees it.
public struct PoolMember: Sendable, Codable, Hashable {
    public enum Phase: String, Sendable, Codable, Hashable {
        /// Being launched and attested; no traffic.
        case starting
        /// Admitted and in the endpoint's backends.
        case serving
        /// Removed from the backends; in-flight requests finishing.
        case draining
        /// Being stopped (`cmk stop`).
        case stopping
    }

    public var name: String
    public var instanceID: String?
    public var phase: Phase
    /// The audit record of its admission.
    public var auditSequence: Int64?
    public var measurement: String?
    /// Where its workload is reached (the forwarder's backend address), once admitted.
    public var backend: String?
    /// Requests forwarded to it so far.
    public var requests: Int
    /// Requests to it in progress.
    public var inFlight: Int
    /// When the decision that made it was taken, when it was admitted, when it first served a request.
    public var decidedAt: Date?
    public var admittedAt: Date?
    public var firstServedAt: Date?
    public var phaseSince: Date

    public init(name: String, phase: Phase, since: Date) {
        self.name = name
        self.phase = phase
        self.phaseSince = since
        self.requests = 0
        self.inFlight = 0
    }
}

/// One decision the controller acted on (or refused), as kept in the status and in the audit log.
public struct PoolEvent: Sendable, Codable, Hashable {
    public var time: Date
    /// `scale-out`, `scale-in`, `admitted`, `serving`, `drained`, `stopped`, `cannot-grow`, `launch-failed`, ...
    public var event: String
    public var detail: String
    public var instance: String?
    public var auditSequence: Int64?

    public init(time: Date, event: String, detail: String, instance: String? = nil, auditSequence: Int64? = nil) {
        self.time = time
        self.event = event
        self.detail = detail
        self.instance = instance
        self.auditSequence = auditSequence
    }
}

/// What the controller writes after every step: `<state>/pools/NAME/status.json`.
public struct PoolStatus: Sendable, Codable, Hashable {
    public enum Condition: String, Sendable, Codable, Hashable {
        case starting
        /// At least `min` instances serving, the rule holding.
        case steady
        case scaling
        /// The rule wants more instances but the host has no room (the reason says what is free).
        case hostFull = "host-full"
        /// The rule wants more instances but the pool is at `max`.
        case atMaximum = "at-max"
        case deleting
        case stopped
    }

    public var name: String
    public var condition: Condition
    public var reason: String
    /// The stable endpoint clients use.
    public var endpoint: String?
    public var controllerPID: Int32
    public var load: Double
    public var members: [PoolMember]
    public var lastDecision: ScalingDecision?
    public var memory: ScalingMemory
    /// The newest events, oldest first (at most 200).
    public var events: [PoolEvent]
    public var updatedAt: Date

    public init(name: String, controllerPID: Int32, updatedAt: Date) {
        self.name = name
        self.condition = .starting
        self.reason = "the controller started"
        self.controllerPID = controllerPID
        self.load = 0
        self.members = []
        self.memory = ScalingMemory()
        self.events = []
        self.updatedAt = updatedAt
    }

    public var serving: Int { members.filter { $0.phase == .serving }.count }
    public var starting: Int { members.filter { $0.phase == .starting }.count }
}

/// The files of pool NAME in the state folder: `<state>/pools/NAME/{spec.json, status.json, controller.pid,
/// controller.log}`.
public struct PoolFiles: Sendable {
    public let state: CMKStateDirectory
    public let name: String

    public init(state: CMKStateDirectory, name: String) {
        self.state = state
        self.name = name
    }

    public static func root(_ state: CMKStateDirectory) -> URL { state.url.appendingPathComponent("pools") }
    public var folder: URL { Self.root(state).appendingPathComponent(name) }
    public var spec: URL { folder.appendingPathComponent("spec.json") }
    public var status: URL { folder.appendingPathComponent("status.json") }
    public var controllerPID: URL { folder.appendingPathComponent("controller.pid") }
    public var log: URL { folder.appendingPathComponent("controller.log") }

    /// The names of the pools that have a spec.
    public static func names(_ state: CMKStateDirectory) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root(state).path)) ?? []
        return entries.filter { FileManager.default.fileExists(atPath: root(state).appendingPathComponent("\($0)/spec.json").path) }
            .sorted()
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601withFractions
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601withFractions
        return decoder
    }()

    public func readSpec() throws -> PoolSpec {
        guard let data = FileManager.default.contents(atPath: spec.path) else {
            throw CoordinatorError(.unknownInstance, "no pool named \(name) (no \(spec.path))")
        }
        do { return try Self.decoder.decode(PoolSpec.self, from: data) } catch {
            throw CoordinatorError(.fileSystem, "the pool spec \(spec.path) cannot be read: \(error)")
        }
    }

    public func writeSpec(_ value: PoolSpec) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Self.encoder.encode(value).write(to: spec, options: .atomic)
    }

    public func readStatus() -> PoolStatus? {
        guard let data = FileManager.default.contents(atPath: status.path) else { return nil }
        return try? Self.decoder.decode(PoolStatus.self, from: data)
    }

    public func writeStatus(_ value: PoolStatus) throws {
        try Self.encoder.encode(value).write(to: status, options: .atomic)
    }

    /// The controller's pid, when the pid file names a running process whose command line is this pool's controller.
    public func runningController() -> Int32? {
        guard let text = try? String(contentsOf: controllerPID, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
              let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
        else { return nil }
        let arguments = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let run = arguments.firstIndex(of: "run"), run > 0, arguments[run - 1] == "pool",
              arguments.dropFirst(run + 1).first == name
        else { return nil }
        // A zombie (exited, not yet reaped) does not run.
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { return nil }
        return pid
    }
}

extension JSONEncoder.DateEncodingStrategy {
    /// ISO 8601 with milliseconds: reaction times are measured from these stamps.
    static var iso8601withFractions: JSONEncoder.DateEncodingStrategy {
        .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
    }
}

extension JSONDecoder.DateDecodingStrategy {
    static var iso8601withFractions: JSONDecoder.DateDecodingStrategy {
        .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) {
                return date
            }
            if let date = try? Date(text, strategy: .iso8601) { return date }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 date: \(text)"))
        }
    }
}
