import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk endpoint`: stable host endpoints (127.0.0.1:PORT) that forward the demo workload's requests to instances.
    struct EndpointCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "endpoint",
            abstract: "Stable endpoints on 127.0.0.1 that forward requests to instances' workloads (docs/updates.md).",
            discussion: """
                An endpoint listens on 127.0.0.1:PORT for the workload's line protocol (one request line, one answer \
                line) and forwards each request to one of its backend instances, round-robin, through the instance's \
                supervisor and the control port. `cmk update` switches it to the successor atomically. Exit status: \
                0 done, 1 the endpoint refused or does not serve, 2 a usage error.
                """,
            subcommands: [Create.self, Serve.self, Set.self, Call.self, List.self, StopEndpoint.self])
    }
}

enum EndpointCLI {
    static func fail(_ message: String, json: Bool, status: Int32 = 1) -> ExitCode {
        if json {
            print((try? JSONOutput.encode(ErrorOutput(code: "endpoint", reason: message))) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("cmk endpoint: \(message)\n".utf8))
        }
        return ExitCode(status)
    }

    static func validateInstances(_ names: [String]) throws {
        guard !names.isEmpty else { throw ValidationError("name at least one --instance") }
        for name in names where (try? EndpointFiles.validate(name: name)) == nil {
            throw ValidationError("'\(name)' is not an instance name")
        }
    }

    /// One request over TCP to a serving endpoint; the answer line.
    static func call(port: Int, _ request: String, timeout: TimeInterval = 60) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CoordinatorError(.fileSystem, "socket failed") }
        defer { close(fd) }
        var seconds = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            throw CoordinatorError(.fileSystem, "cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        let bytes = Array((request + "\n").utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw CoordinatorError(.fileSystem, "cannot send to 127.0.0.1:\(port)")
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !answer.contains(0x0A) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw CoordinatorError(.fileSystem, "the endpoint closed the connection without an answer") }
            answer += chunk[0..<n]
        }
        return String(decoding: answer.prefix { $0 != 0x0A }, as: UTF8.self)
    }
}

extension CMK.EndpointCommand {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start an endpoint NAME for one or more admitted instances (its own detached process).")

        @Argument(help: "The endpoint name.") var name: String
        @Option(name: .customLong("instance"), help: "A backend instance (repeat for several; round-robin).")
        var instances: [String] = []
        @Option(help: "The TCP port on 127.0.0.1 (0: any free port).") var port = 0
        @Flag(help: "Print the endpoint as JSON.") var json = false
        @OptionGroup var state: StateOptions

        func validate() throws {
            try EndpointCLI.validateInstances(instances)
            if (try? EndpointFiles.validate(name: name)) == nil { throw ValidationError("'\(name)' is not an endpoint name") }
            if !(0...65535).contains(port) { throw ValidationError("--port must be 0 to 65535") }
        }

        func run() async throws {
            let state = state.state
            try state.prepare()
            if let existing = EndpointFiles.read(state, name: name), existing.isServing {
                throw EndpointCLI.fail("endpoint \(name) already serves on port \(existing.port)", json: json, status: 7)
            }
            try? FileManager.default.removeItem(at: EndpointFiles.recordFile(state, name: name))
            try FileManager.default.createDirectory(at: EndpointFiles.folder(state), withIntermediateDirectories: true)
            let log = EndpointFiles.log(state, name: name)
            FileManager.default.createFile(atPath: log.path, contents: nil)
            var arguments = [CommandLine.arguments[0], "endpoint", "serve", name, "--port", String(port),
                             "--state-dir", state.url.path]
            for instance in instances { arguments += ["--instance", instance] }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = arguments
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if let record = EndpointFiles.read(state, name: name), record.isServing {
                    if json {
                        print(try JSONOutput.encode(record))
                    } else {
                        print("endpoint \(name) on 127.0.0.1:\(record.port) → \(record.backends.joined(separator: ", "))")
                    }
                    return
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw EndpointCLI.fail("the endpoint did not start: \(text.suffix(400))", json: json)
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve an endpoint in the foreground (what `cmk endpoint create` starts).", shouldDisplay: false)

        @Argument(help: "The endpoint name.") var name: String
        @Option(name: .customLong("instance"), help: "A backend instance.") var instances: [String] = []
        @Option(help: "The TCP port on 127.0.0.1.") var port = 0
        @OptionGroup var state: StateOptions

        func validate() throws { try EndpointCLI.validateInstances(instances) }

        static func makeServer(
            name: String, state: CMKStateDirectory, port: Int, forwarder: EndpointForwarder,
            makeBackend: @escaping @Sendable (String) -> any EndpointBackend, log: @escaping @Sendable (String) -> Void
        ) -> EndpointServer? {
            do {
                let server = try EndpointServer(
                    name: name, state: state, port: port, forwarder: forwarder, makeBackend: makeBackend, log: log)
                try server.persist()
                return server
            } catch {
                log("cannot serve: \(error.reason)")
                return nil
            }
        }

        func run() async throws {
            let state = state.state
            let stop = StopSignal()
            let log: @Sendable (String) -> Void = { line in
                FileHandle.standardError.write(Data("\(ISO8601DateFormatter().string(from: Date())) \(line)\n".utf8))
            }
            let makeBackend: @Sendable (String) -> any EndpointBackend = { RelayBackend(state: state, instance: $0) }
            let forwarder = EndpointForwarder(backends: instances.map(makeBackend))
            guard let server = Self.makeServer(name: name, state: state, port: port, forwarder: forwarder, makeBackend: makeBackend, log: log) else {
                throw ExitCode(2)
            }
            server.start()
            log("endpoint \(name) on 127.0.0.1:\(server.port) → \(instances.joined(separator: ", "))")
            while !stop.requested { try await Task.sleep(for: .milliseconds(200)) }
            server.stop()
            try? FileManager.default.removeItem(atPath: EndpointFiles.controlSocket(state, name: name))
            log("stopped")
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Replace an endpoint's backends atomically.")

        @Argument(help: "The endpoint name.") var name: String
        @Option(name: .customLong("instance"), help: "A backend instance (repeat for several).") var instances: [String] = []
        @OptionGroup var state: StateOptions

        func validate() throws { try EndpointCLI.validateInstances(instances) }

        func run() async throws {
            let result = Result { () throws(CoordinatorError) -> RelayMessage in
                try EndpointFiles.ask(state.state, name: name, RelayMessage(.setBackends, backends: instances))
            }
            switch result {
            case .success(let answer): print("\(name): \(answer.reason ?? "switched")")
            case .failure(let error): throw EndpointCLI.fail(error.reason, json: false)
            }
        }
    }

    struct Call: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send one request line to an endpoint and print the answer (e.g. cmk endpoint call kv 'INCR hits').",
            discussion: "Exit status: 0 the answer starts with OK, 1 it is an ERR answer or the endpoint is unreachable.")

        @Argument(help: "The endpoint name.") var name: String
        @Argument(help: "The request line: PING, WHO, GET k, SET k v, INCR k [d], DEL k, COUNT.") var request: String
        @OptionGroup var state: StateOptions

        func run() async throws {
            guard let record = EndpointFiles.read(state.state, name: name), record.isServing else {
                throw EndpointCLI.fail("no endpoint \(name) serves (cmk endpoint ls)", json: false)
            }
            let answer: String
            do { answer = try EndpointCLI.call(port: record.port, request) } catch {
                throw EndpointCLI.fail("\(error)", json: false)
            }
            print(answer)
            if !answer.hasPrefix("OK") { throw ExitCode(1) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List endpoints, their backends and per-backend request counts and rates.")

        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var state: StateOptions

        struct Row: Encodable {
            let record: EndpointFiles.Record
            let serving: Bool
            let stats: EndpointStats?
        }

        func run() async throws {
            let state = state.state
            let rows = EndpointFiles.all(state).map { record -> Row in
                var stats: EndpointStats?
                if record.isServing, let answer = try? EndpointFiles.ask(state, name: record.name, RelayMessage(.stats), timeout: .seconds(5)),
                   let data = answer.data {
                    stats = try? JSONDecoder().decode(EndpointStats.self, from: data)
                }
                return Row(record: record, serving: record.isServing, stats: stats)
            }
            if json {
                print(try JSONOutput.encode(rows))
                return
            }
            if rows.isEmpty { print("no endpoints") }
            for row in rows {
                print("\(row.record.name)  127.0.0.1:\(row.record.port)  \(row.serving ? "serving" : "not serving")  → \(row.record.backends.joined(separator: ", "))")
                for backend in row.stats?.perBackend ?? [] {
                    print("  \(backend.name)\(backend.active ? "" : " (replaced)"): \(backend.requests) requests, \(backend.failures) failed, \(String(format: "%.1f", backend.ratePerSecond))/s")
                }
            }
        }
    }

    struct StopEndpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop serving an endpoint.")

        @Argument(help: "The endpoint name.") var name: String
        @OptionGroup var state: StateOptions

        func run() async throws {
            guard let record = EndpointFiles.read(state.state, name: name) else {
                throw EndpointCLI.fail("no endpoint \(name)", json: false, status: 6)
            }
            if record.isServing {
                kill(record.pid, SIGTERM)
                let deadline = Date().addingTimeInterval(10)
                while Date() < deadline, record.isServing { try await Task.sleep(for: .milliseconds(50)) }
                if record.isServing { kill(record.pid, SIGKILL) }
            }
            try? FileManager.default.removeItem(at: EndpointFiles.recordFile(state.state, name: name))
            print("stopped endpoint \(name)")
        }
    }
}
