import ArgumentParser
import AttestationPolicy
import Coordinator
import Foundation

extension CMK {
    /// `cmk pool`: elastic pools of attested instances behind one endpoint (docs/pools.md).
    struct PoolCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pool",
            abstract: "Elastic pools of attested instances behind one stable endpoint, scaled on the load cmk measures.",
            discussion: """
                Exit status: 0 done, 2 usage error or unreadable state, 3 the host cannot fit the pool's --min, \
                4 the pool did not reach --min (a launch failed or was rejected), 6 no such pool, 7 the pool exists.
                """,
            subcommands: [Create.self, List.self, InspectPool.self, Resume.self, Delete.self, Run.self])
    }
}

/// Exit statuses of `cmk pool`.
enum PoolExit {
    static let usage: Int32 = 2
    static let hostFull: Int32 = 3
    static let notReady: Int32 = 4
    static let unknownPool: Int32 = 6
    static let exists: Int32 = 7

    static func fail(_ code: String, _ reason: String, status: Int32, json: Bool) -> ExitCode {
        if json {
            print((try? JSONOutput.encode(["error": ErrorOutput(code: code, reason: reason)])) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("cmk pool: error [\(code)]: \(reason)\n".utf8))
        }
        return ExitCode(status)
    }

    /// The files of pool `name`, or exit 6 `unknown-pool` when no pool of that name was created.
    static func existingPool(_ name: String, state: CMKStateDirectory, json: Bool) throws -> PoolFiles {
        let files = PoolFiles(state: state, name: name)
        guard FileManager.default.fileExists(atPath: files.spec.path) else {
            throw fail("unknown-pool", "no pool named \(name)", status: unknownPool, json: json)
        }
        return files
    }
}


/// The cmk executable beside the running one (the pool controller and its launches run it).
enum CMKExecutable {
    static var url: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("cmk")
    }
}

extension CMK.PoolCommand {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a pool and start its controller; wait until --min instances are attested and serving.",
            discussion: """
                The controller runs detached (`cmk pool run NAME`, log in <state>/pools/NAME/controller.log). It \
                launches every instance with `cmk launch` (attested against --policy; traffic only after admission), \
                measures the pool's load each --interval (requests/s through the endpoint, or CPU of the instances' \
                QEMUs) and scales between --min and --max: out when the load per instance stays above --target for \
                --sustain seconds, in when the instances left after removing one would each carry less than \
                --scale-in-below × --target; a scale-in drains the instance (out of the endpoint first, in-flight \
                requests finish) before `cmk stop` reclaims its partition. It never exceeds the host's partitions: \
                when the host has no room the pool says `host-full` (status and audit record) and retries after the \
                cool-down. Every decision is in the audit log (kind pool-event).
                """)

        @Argument(help: "The pool name: 1 to 40 of a-z, 0-9, '-' (instances are NAME-1, NAME-2, ...).")
        var name: String

        @Option(help: "The guest-kernels/ profile every instance boots.")
        var profile = "general"

        @Option(help: "The policy every instance is attested against.")
        var policy: String

        @Option(help: "The fewest instances.")
        var min: Int

        @Option(help: "The most instances.")
        var max: Int

        @Option(help: "What to scale on: requests (per second, through the endpoint) or cpu (percent of one CPU, from the instances' QEMUs).")
        var scaleOn = "requests"

        @Option(help: "The load one instance should carry: requests/s, or percent of one CPU (default 20 requests/s, 60 % CPU).")
        var target: Double?

        @Option(help: "Scale in when the instances left would each carry under this fraction of --target.")
        var scaleInBelow = 0.5

        @Option(help: "Seconds the load must stay past a threshold before the pool acts.")
        var sustain = 3.0

        @Option(help: "Seconds between a change (or a refusal by the host) and the next scale-out.")
        var scaleOutCooldown = 10.0

        @Option(help: "Seconds between a change and the next scale-in.")
        var scaleInCooldown = 15.0

        @Option(help: "Seconds a draining instance gets for its in-flight requests.")
        var drain = 10.0

        @Option(help: "Seconds between measurements.")
        var interval = 1.0

        @Option(help: "The endpoint's TCP port on 127.0.0.1 (0: any free one).")
        var port = 0

        @Flag(help: "Let instances share host CPUs with other shared instances when too few are free (as cmk launch).")
        var allowSharedCores = false

        @Option(help: "vCPUs per instance (default: the profile's).")
        var vcpus: Int?

        @Option(help: "Memory per instance in MiB (default: the profile's).")
        var memory: Int?

        @Option(help: "Seconds an instance may take to boot to its agent.")
        var bootTimeout = 300

        @Option(help: "The cmk-guest executable to put into the images (default: the one beside cmk).")
        var agent: String?

        @Flag(help: "Return once the controller runs, without waiting for --min instances.")
        var noWait = false

        @Flag(help: "Print the pool's status as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func spec() throws -> PoolSpec {
            guard let scaleOn = PoolMetric(rawValue: scaleOn) else {
                throw ValidationError("--scale-on must be requests or cpu (got '\(self.scaleOn)')")
            }
            let rule = ScalingRule(
                metric: scaleOn, target: target ?? (scaleOn == .requests ? 20 : 60), minimum: min, maximum: max,
                scaleInFraction: scaleInBelow, sustainSeconds: sustain, scaleOutCooldown: scaleOutCooldown,
                scaleInCooldown: scaleInCooldown)
            return PoolSpec(
                name: name, profile: profile, policyPath: URL(fileURLWithPath: policy).standardizedFileURL.path, rule: rule,
                allowSharedCores: allowSharedCores, vcpus: vcpus, memoryMiB: memory, bootTimeoutSeconds: bootTimeout,
                agentPath: agent.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, port: port,
                drainSeconds: drain, intervalSeconds: interval)
        }

        func validate() throws {
            do { try spec().validate() } catch let error as CoordinatorError { throw ValidationError(error.reason) }
            if !FileManager.default.isReadableFile(atPath: policy) {
                throw ValidationError("--policy '\(policy)' is not a readable file")
            }
            if let agent, !FileManager.default.isExecutableFile(atPath: agent) {
                throw ValidationError("--agent '\(agent)' is not an executable file")
            }
        }

        func run() async throws {
            let spec = try spec()
            let stateDirectory = state.state
            // The policy must load before anything starts (an image reference not built yet is fine).
            do {
                _ = try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: spec.policyPath)
            } catch where error.code != .referenceArtifact {
                throw PoolExit.fail("invalid-argument", "--policy: \(error.description)", status: PoolExit.usage, json: json)
            } catch {}
            let files = PoolFiles(state: stateDirectory, name: name)
            if let pid = files.runningController() {
                throw PoolExit.fail("pool-exists", "pool \(name) exists (controller pid \(pid)); `cmk pool delete \(name)` first",
                                    status: PoolExit.exists, json: json)
            }
            try stateDirectory.prepare()
            try? FileManager.default.removeItem(at: files.folder)
            try files.writeSpec(spec)
            FileManager.default.createFile(atPath: files.log.path, contents: nil)
            try PoolControllerProcess.start(files: files)
            try await follow(files: files, spec: spec)
        }

        /// Shows the controller's events until --min instances serve (or it cannot get there).
        func follow(files: PoolFiles, spec: PoolSpec) async throws {
            var shown = 0
            let started = Date()
            let deadline = started.addingTimeInterval(Double(spec.bootTimeoutSeconds + 120) * Double(Swift.max(1, spec.rule.minimum)) + 30)
            while Date() < deadline {
                if let status = files.readStatus() {
                    if !json {
                        for event in status.events.dropFirst(shown) {
                            FileHandle.standardError.write(Data("  \(PoolText.time(event.time))  \(event.event)\(event.instance.map { " \($0)" } ?? ""): \(event.detail)\n".utf8))
                        }
                    }
                    shown = status.events.count
                    if noWait || status.serving >= spec.rule.minimum {
                        report(status)
                        return
                    }
                    if status.condition == .hostFull {
                        report(status)
                        FileHandle.standardError.write(Data("cmk pool: host-full: \(status.reason); the controller retries every \(String(format: "%g", spec.rule.scaleOutCooldown)) s (cmk pool inspect \(name), cmk pool delete \(name))\n".utf8))
                        throw ExitCode(PoolExit.hostFull)
                    }
                    if let failed = status.events.last(where: { $0.event == "launch-failed" || $0.event == "rejected" }) {
                        report(status)
                        FileHandle.standardError.write(Data("cmk pool: \(failed.instance ?? name) \(failed.event): \(failed.detail); the controller keeps trying (cmk pool inspect \(name))\n".utf8))
                        throw ExitCode(PoolExit.notReady)
                    }
                }
                if Date().timeIntervalSince(started) > 15, files.runningController() == nil {
                    let log = (try? String(contentsOf: files.log, encoding: .utf8)) ?? ""
                    throw PoolExit.fail("launch", "the pool controller exited: \(log.suffix(600))", status: PoolExit.notReady, json: json)
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw PoolExit.fail("launch", "the pool did not reach --min \(spec.rule.minimum) in time; see \(files.log.path)",
                                status: PoolExit.notReady, json: json)
        }

        func report(_ status: PoolStatus) {
            if json { print((try? JSONOutput.encode(status)) ?? "{}") } else { print(PoolText.summary(status)) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List pools: condition, members serving/starting, bounds, load, endpoint.")

        @Flag(help: "Print the pools as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            var rows: [PoolListing] = []
            for name in PoolFiles.names(stateDirectory) {
                let files = PoolFiles(state: stateDirectory, name: name)
                guard let spec = try? files.readSpec() else { continue }
                rows.append(PoolListing(spec: spec, status: files.readStatus(), controllerRunning: files.runningController() != nil))
            }
            if json {
                print(try JSONOutput.encode(rows))
                return
            }
            print(PoolText.table(rows))
        }
    }

    struct InspectPool: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect", abstract: "Show a pool: its rule, members (phase, admission record, requests), last decision and recent events.")

        @Argument(help: "The pool name.")
        var name: String

        @Flag(help: "Print the pool as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() async throws {
            let files = PoolFiles(state: state.state, name: name)
            let spec: PoolSpec
            do { spec = try files.readSpec() } catch let error as CoordinatorError {
                let unknown = error.code == .unknownInstance
                throw PoolExit.fail(unknown ? "unknown-pool" : error.code.name, error.reason,
                                    status: unknown ? PoolExit.unknownPool : PoolExit.usage, json: json)
            }
            let listing = PoolListing(spec: spec, status: files.readStatus(), controllerRunning: files.runningController() != nil)
            if json {
                print(try JSONOutput.encode(listing))
                return
            }
            print(PoolText.detail(listing))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a pool: traffic stops, every instance is drained and stopped, its partition reclaimed.")

        @Argument(help: "The pool name.")
        var name: String

        @Option(help: "Seconds to wait for the controller to stop every instance.")
        var timeout = 300

        @Flag(help: "Print the result as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            let files = try PoolExit.existingPool(name, state: stateDirectory, json: json)
            var stoppedByHand: [String] = []
            if let pid = files.runningController() {
                kill(pid, SIGTERM)
                let deadline = Date().addingTimeInterval(TimeInterval(timeout))
                var shown = 0
                while Date() < deadline, files.runningController() != nil {
                    if !json, let status = files.readStatus() {
                        for event in status.events.dropFirst(shown) where shown > 0 {
                            FileHandle.standardError.write(Data("  \(PoolText.time(event.time))  \(event.event)\(event.instance.map { " \($0)" } ?? ""): \(event.detail)\n".utf8))
                        }
                        shown = status.events.count
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                if files.runningController() != nil {
                    throw PoolExit.fail("timeout", "the controller of \(name) did not stop within \(timeout) s", status: 1, json: json)
                }
            }
            // Members a dead controller left behind are stopped here.
            if let status = files.readStatus() {
                for member in status.members {
                    let actions = CommandPoolInstanceActions(cmk: CMKExecutable.url, state: stateDirectory) { _ in nil }
                    if let failure = await actions.stop(member.name) {
                        FileHandle.standardError.write(Data("cmk pool: \(failure)\n".utf8))
                    } else {
                        stoppedByHand.append(member.name)
                    }
                }
            }
            try? FileManager.default.removeItem(at: files.folder)
            if json {
                print(try JSONOutput.encode(["deleted": name]))
            } else {
                print("deleted pool \(name)" + (stoppedByHand.isEmpty ? "" : " (stopped \(stoppedByHand.joined(separator: ", ")))"))
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a new controller for a pool whose controller died; it adopts the running members.",
            discussion: """
                The members of a pool keep running when its controller dies (each has its own supervisor). `resume` \
                starts a new controller (`cmk pool run NAME`, detached) that takes them over without launching new \
                ones: admitted members serve again at once (on the same endpoint port when it is free), launches \
                still in progress join when admitted, members that were being drained are stopped. \
                Exit status: 0 the controller runs, 6 no such pool, 7 its controller is running.
                """)

        @Argument(help: "The pool name.")
        var name: String

        @Flag(help: "Print the pool's status as JSON.")
        var json = false

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            let files = try PoolExit.existingPool(name, state: stateDirectory, json: json)
            if let pid = files.runningController() {
                throw PoolExit.fail("controller-running", "the controller of pool \(name) runs (pid \(pid)); nothing to resume",
                                    status: PoolExit.exists, json: json)
            }
            let hadMembers = !(files.readStatus()?.members.isEmpty ?? true)
            let started = Date().addingTimeInterval(-1)
            try PoolControllerProcess.start(files: files)
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let status = files.readStatus(), let pid = files.runningController(), status.controllerPID == pid {
                    let new = status.events.filter { $0.time >= started }
                    if new.contains(where: { $0.event == "adopted" })
                        || (!hadMembers && new.contains(where: { $0.event == "controller-started" }))
                    {
                        if json {
                            print((try? JSONOutput.encode(status)) ?? "{}")
                        } else {
                            for event in new {
                                FileHandle.standardError.write(Data("  \(PoolText.time(event.time))  \(event.event)\(event.instance.map { " \($0)" } ?? ""): \(event.detail)\n".utf8))
                            }
                            print(PoolText.summary(status))
                        }
                        return
                    }
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            let log = (try? String(contentsOf: files.log, encoding: .utf8)) ?? ""
            throw PoolExit.fail("launch", "the pool controller did not start: \(log.suffix(600))", status: PoolExit.notReady, json: json)
        }
    }

    /// The controller itself, started detached by `cmk pool create`.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pool's controller in the foreground (started by cmk pool create; not meant to be run by hand).",
            shouldDisplay: false)

        @Argument(help: "The pool name.")
        var name: String

        @OptionGroup var state: StateOptions

        func run() async throws {
            let stateDirectory = state.state
            let files = PoolFiles(state: stateDirectory, name: name)
            let spec = try files.readSpec()
            try Data("\(getpid())\n".utf8).write(to: files.controllerPID)
            defer { try? FileManager.default.removeItem(at: files.controllerPID) }
            let stop = StopSignal()
            let log: @Sendable (String) -> Void = { line in
                FileHandle.standardError.write(Data("\(PoolText.time(Date())) cmk pool \(spec.name): \(line)\n".utf8))
            }
            // A resumed pool keeps its endpoint's port when it is free (clients keep their address).
            var traffic: (any PoolTraffic)?
            if spec.port == 0, let previous = files.readStatus()?.endpoint,
               let port = Int(previous.split(separator: ":").last ?? ""), (1...65535).contains(port)
            {
                var again = spec
                again.port = port
                traffic = try? await PoolEndpoint.open(spec: again, state: stateDirectory)
            }
            if traffic == nil { traffic = try await PoolEndpoint.open(spec: spec, state: stateDirectory) }
            guard let endpoint = traffic else { return }
            let actions = CommandPoolInstanceActions(cmk: CMKExecutable.url, state: stateDirectory) { member in
                await PoolEndpoint.backendAddress(of: member, state: stateDirectory)
            }
            let capacity = PoolHostCapacity.request(for: spec).map { PoolHostCapacity(state: stateDirectory, request: $0) }
            if capacity == nil { log("cannot read profile \(spec.profile): only the launches' reservations check the host") }
            let controller = PoolController(
                spec: spec, state: stateDirectory, traffic: endpoint, actions: actions, capacity: capacity, log: log)
            await controller.run { stop.requested }
        }
    }
}

/// Starting a pool's controller detached: `setsid cmk pool run NAME`, its output appended to controller.log.
enum PoolControllerProcess {
    static func start(files: PoolFiles) throws {
        if !FileManager.default.fileExists(atPath: files.log.path) {
            FileManager.default.createFile(atPath: files.log.path, contents: nil)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = [CMKExecutable.url.path, "pool", "run", files.name, "--state-dir", files.state.url.path]
        let handle = try FileHandle(forWritingTo: files.log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
    }
}

/// A pool as `cmk pool ls` and `inspect` show it.
struct PoolListing: Encodable {
    let spec: PoolSpec
    let status: PoolStatus?
    let controllerRunning: Bool
    /// The controller is not running, but the pool was not deleted: it died (its members still run, each with its
    /// own supervisor); `cmk pool resume` adopts them.
    let controllerLost: Bool

    init(spec: PoolSpec, status: PoolStatus?, controllerRunning: Bool) {
        self.spec = spec
        self.status = status
        self.controllerRunning = controllerRunning
        controllerLost = !controllerRunning && status.map { $0.condition != .stopped } ?? false
    }

    var controllerText: String {
        if controllerRunning { return "running" }
        if controllerLost { return "lost (pid \(status?.controllerPID ?? 0) is gone)" }
        return "stopped"
    }
}

enum PoolText {
    static func time(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true).time(includingFractionalSeconds: true))
    }

    static func summary(_ status: PoolStatus) -> String {
        var lines = ["pool \(status.name): \(status.condition.rawValue), \(status.serving) serving, \(status.starting) starting; endpoint \(status.endpoint ?? "-")"]
        for member in status.members {
            lines.append("  \(member.name)  \(member.phase.rawValue)" + (member.auditSequence.map { "  admitted (audit record #\($0))" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }

    static func table(_ rows: [PoolListing]) -> String {
        if rows.isEmpty { return "no pools" }
        var lines = ["NAME  CONDITION  SERVING  STARTING  MIN-MAX  METRIC  TARGET  LOAD  ENDPOINT  CONTROLLER"]
        for row in rows {
            let status = row.status
            lines.append([row.spec.name, status?.condition.rawValue ?? "-", String(status?.serving ?? 0),
                          String(status?.starting ?? 0), "\(row.spec.rule.minimum)-\(row.spec.rule.maximum)",
                          row.spec.rule.metric.rawValue, String(format: "%g", row.spec.rule.target),
                          String(format: "%.1f", status?.load ?? 0), status?.endpoint ?? "-",
                          row.controllerRunning ? "running" : row.controllerLost ? "lost" : "stopped"].joined(separator: "  "))
        }
        return lines.joined(separator: "\n")
    }

    static func detail(_ listing: PoolListing) -> String {
        let spec = listing.spec
        let rule = spec.rule
        var lines = [
            "pool \(spec.name)",
            "  profile      \(spec.profile)",
            "  policy       \(spec.policyPath)",
            "  rule         \(rule.metric.rawValue): target \(String(format: "%g", rule.target)) \(rule.metric.unit); min \(rule.minimum), max \(rule.maximum); scale in under \(String(format: "%g", rule.scaleInFraction)) × target; sustain \(String(format: "%g", rule.sustainSeconds)) s; cool-down out \(String(format: "%g", rule.scaleOutCooldown)) s, in \(String(format: "%g", rule.scaleInCooldown)) s",
            "  cores        \(spec.allowSharedCores ? "shared allowed" : "exclusive only")",
            "  controller   \(listing.controllerRunning ? "running (pid \(listing.status?.controllerPID ?? 0))" : listing.controllerLost ? "lost: pid \(listing.status?.controllerPID ?? 0) is gone; its members keep running (cmk pool resume \(spec.name) adopts them)" : "not running")",
        ]
        guard let status = listing.status else { return lines.joined(separator: "\n") }
        lines.append("  condition    \(status.condition.rawValue): \(status.reason)")
        lines.append("  endpoint     \(status.endpoint ?? "-")")
        lines.append("  load         \(String(format: "%.2f", status.load)) (\(rule.metric == .requests ? "requests/s" : "% of one CPU"))")
        if let decision = status.lastDecision {
            lines.append("  decision     \(decision.action.rawValue) \(decision.from) → \(decision.to): \(decision.reason)")
        }
        lines.append("  members")
        for member in status.members {
            lines.append("    \(member.name)  \(member.phase.rawValue)  requests \(member.requests), in flight \(member.inFlight)"
                         + (member.auditSequence.map { ", admitted by audit record #\($0)" } ?? ""))
        }
        lines.append("  events")
        for event in status.events.suffix(20) {
            lines.append("    \(time(event.time))  \(event.event)\(event.instance.map { " \($0)" } ?? ""): \(event.detail)"
                         + (event.auditSequence.map { " [audit #\($0)]" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}
