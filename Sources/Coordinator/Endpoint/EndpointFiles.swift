public import Foundation

/// What the state folder keeps about endpoints (`<state>/endpoints/`): one JSON record per endpoint, written by the
/// process that serves it whenever its backends change, so `cmk endpoint ls`, `cmk update` and pools find which
/// instance(s) back it; its control socket; its log.
public enum EndpointFiles {
    /// One endpoint as recorded.
    public struct Record: Codable, Sendable, Hashable {
        public var name: String
        /// Always 127.0.0.1 (the endpoint is for clients on this host).
        public var host: String
        public var port: Int
        /// The instances requests go to, in round-robin order.
        public var backends: [String]
        /// The serving process (`cmk endpoint serve`): pid and `/proc/<pid>/stat` start time.
        public var pid: Int32
        public var startTime: UInt64
        public var updatedAt: Date

        public init(name: String, host: String, port: Int, backends: [String], pid: Int32, startTime: UInt64, updatedAt: Date) {
            self.name = name
            self.host = host
            self.port = port
            self.backends = backends
            self.pid = pid
            self.startTime = startTime
            self.updatedAt = updatedAt
        }

        /// Whether the serving process still runs.
        public var isServing: Bool { ProcessIdentity.isRunning(pid: pid, startTime: startTime) }
    }

    /// An endpoint name: 1 to 63 of letters, digits, `-`, `_`, `.`; not `.` or `..`.
    public static func validate(name: String) throws(CoordinatorError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard (1...63).contains(name.count), name.allSatisfy({ allowed.contains($0) }), name != ".", name != ".." else {
            throw CoordinatorError(
                .invalidArgument, "an endpoint name is 1 to 63 of letters, digits, '-', '_', '.' (got '\(name)')")
        }
    }

    public static func folder(_ state: CMKStateDirectory) -> URL { state.url.appendingPathComponent("endpoints") }
    public static func recordFile(_ state: CMKStateDirectory, name: String) -> URL {
        folder(state).appendingPathComponent("\(name).json")
    }
    public static func controlSocket(_ state: CMKStateDirectory, name: String) -> String {
        folder(state).appendingPathComponent("\(name).sock").path
    }
    public static func log(_ state: CMKStateDirectory, name: String) -> URL {
        folder(state).appendingPathComponent("\(name).log")
    }

    public static func write(_ record: Record, state: CMKStateDirectory) throws(CoordinatorError) {
        do {
            try FileManager.default.createDirectory(
                at: folder(state), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            try encoder.encode(record).write(to: recordFile(state, name: record.name), options: .atomic)
        } catch {
            throw CoordinatorError(.fileSystem, "cannot record endpoint \(record.name): \(error.localizedDescription)")
        }
    }

    public static func read(_ state: CMKStateDirectory, name: String) -> Record? {
        guard let data = try? Data(contentsOf: recordFile(state, name: name)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(Record.self, from: data)
    }

    public static func all(_ state: CMKStateDirectory) -> [Record] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder(state).path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.sorted().compactMap {
            read(state, name: String($0.dropLast(5)))
        }
    }

    /// The serving endpoints whose backends include `instance`.
    public static func serving(_ state: CMKStateDirectory, instance: String) -> [Record] {
        all(state).filter { $0.isServing && $0.backends.contains(instance) }
    }

    /// Sends one control request to a serving endpoint and returns the answer (refusals thrown).
    public static func ask(_ state: CMKStateDirectory, name: String, _ message: RelayMessage, timeout: Duration = .seconds(60))
        throws(CoordinatorError) -> RelayMessage
    {
        let link = try RelayLink.connect(path: controlSocket(state, name: name))
        defer { link.close() }
        let answer = try link.request(message, timeout: timeout)
        guard answer.op == .accepted else {
            throw CoordinatorError(.invalidArgument, "endpoint \(name) refused: \(answer.reason ?? "no reason")")
        }
        return answer
    }
}
