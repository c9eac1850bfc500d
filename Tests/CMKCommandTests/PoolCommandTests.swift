import CMKTesting
import Foundation
import Glibc
import Testing

/// `cmk pool` for real: children under QEMU (TCG, simulated SEV-SNP) behind the pool's endpoint (the coordinator's
/// forwarder), clients over real sockets as the load generator. The pool grows to two under load, each new instance
/// attested and admitted before the endpoint routes a request to it, and shrinks back to one when the load stops,
/// with zero failed client requests; `cmk pool delete` leaves no controller, no child and no partition behind.
/// Two boots in all; the reaction times are printed (`POOL-FIGURES`), never asserted.
extension RealBoots {
@Suite("cmk pool with real children", .serialized)
struct PoolCommandTests: CommandSuite {
    let state: URL
    let environment: [String: String]

    static let commandTimeout: TimeInterval = 900

    init() {
        (state, environment) = Self.sandbox("cmk-pool")
    }

    /// The JSON array `cmk --json` printed.
    func array(_ output: BuiltCMK.Output) throws -> [[String: Any]] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [[String: Any]],
            "\(output.standardOutput)\n\(output.standardError)")
    }

    /// The pool's `status.json` as the controller last wrote it (milliseconds in its times), or nil.
    func status(_ pool: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: state.appendingPathComponent("pools/\(pool)/status.json").path)
        else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    static func date(_ value: Any?) -> Date? {
        guard let text = value as? String else { return nil }
        return try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }

    /// Waits (asynchronously) until `condition` holds for the pool's status, up to `seconds`; returns the status.
    func waitForStatus(
        _ pool: String, seconds: TimeInterval, _ condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any]? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let status = status(pool), condition(status) { return status }
            try await Task.sleep(for: .milliseconds(250))
        }
        return nil
    }

    static func members(_ status: [String: Any]) -> [[String: Any]] { status["members"] as? [[String: Any]] ?? [] }

    static func serving(_ status: [String: Any]) -> [String] {
        members(status).filter { $0["phase"] as? String == "serving" }.compactMap { $0["name"] as? String }
    }

    /// Stops what a failed run left behind: the pool controllers (their members' supervisors are stopped by
    /// RealBoots).
    func stopControllers() {
        let folder = state.appendingPathComponent("pools")
        for pool in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
            if let text = try? String(contentsOfFile: folder.appendingPathComponent("\(pool)/controller.pid").path, encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                kill(pid, SIGTERM)
            }
        }
    }

    static func isRunning(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }

    @Test(
        "a pool grows to two under load, each new instance admitted before it gets traffic, shrinks back when the load stops with zero failed requests, and delete leaves nothing behind",
        .timeLimit(.minutes(30)))
    func growsUnderLoadAndShrinks() async throws {
        defer {
            stopControllers()
            RealBoots.stopSupervisors(state)
        }
        let hostBefore = try object(try await cmk(["host", "--json"]))
        let policy = SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml").path
        let createStart = Date()
        let created = try await cmk([
            "pool", "create", "web", "--policy", policy, "--min", "1", "--max", "2", "--target", "2",
            "--sustain", "3", "--scale-out-cooldown", "5", "--scale-in-cooldown", "5", "--drain", "30",
            "--allow-shared-cores", "--json",
        ])
        try #require(created.status == 0, "\(created.standardOutput)\n\(created.standardError)")
        let createdStatus = try object(created)
        let endpoint = try #require(createdStatus["endpoint"] as? String)
        let port = try #require(Int(endpoint.split(separator: ":").last ?? ""))
        #expect(Self.serving(createdStatus) == ["web-1"], "\(createdStatus)")
        let createSeconds = Date().timeIntervalSince(createStart)
        var controllerPID = try #require((createdStatus["controllerPID"] as? NSNumber)?.int32Value)
        #expect(Self.isRunning(controllerPID))

        // Which instance answers: web-1 gets one key now, while it is the only one behind the endpoint; a new
        // instance starts empty. So `COUNT` answers `OK 1` from web-1 and `OK 0` from web-2.
        let set = try await cmk(["endpoint", "call", "pool-web", "SET origin web-1"])
        try #require(set.standardOutput.hasPrefix("OK"), "\(set.standardOutput)\(set.standardError)")

        // The load: two clients asking COUNT over the pool's endpoint, about 2 × 25 requests/s when the instances keep
        // up, against a target of 2 per instance.
        let clients = (0..<2).map { _ in LoopingClient(port: port, request: "COUNT", pause: 0.04, checksSequence: false) }
        let loadStart = Date()
        for client in clients { client.start() }
        let grown = try await waitForStatus("web", seconds: 900) { status in
            Self.members(status).contains { $0["name"] as? String == "web-2" && $0["firstServedAt"] != nil }
        }
        // A few more seconds at --max under load: the pool holds and says at-max once.
        try await Task.sleep(for: .seconds(3))
        let loadStop = Date()
        let results = clients.map { $0.stop() }
        let seen = clients.map(\.answersSeen)
        let atPeak = status("web")
        try #require(grown != nil, "the pool did not grow to web-2 serving: \(status("web") ?? [:])")
        #expect(Self.serving(atPeak ?? [:]).sorted() == ["web-1", "web-2"], "\(atPeak ?? [:])")

        // Zero failed requests; both instances answered.
        for result in results {
            #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
            #expect(result.answers > 0)
        }
        var firstAnswerFromWeb2: Date?
        var answeredBy: [String: Int] = [:]
        for (tally, firstSeen) in seen {
            for (answer, count) in tally { answeredBy[answer, default: 0] += count }
            if let first = firstSeen["OK 0"] { firstAnswerFromWeb2 = min(firstAnswerFromWeb2 ?? first, first) }
        }
        #expect(answeredBy["OK 1", default: 0] > 0, "web-1 answered: \(answeredBy)")
        #expect(answeredBy["OK 0", default: 0] > 0, "web-2 answered: \(answeredBy)")
        #expect(Set(answeredBy.keys).isSubset(of: ["OK 0", "OK 1"]), "\(answeredBy)")

        // The load stops: back to one instance, the newest drained and stopped.
        let shrunk = try await waitForStatus("web", seconds: 600) { status in
            Self.members(status).count == 1 && Self.serving(status) == ["web-1"]
                && ((status["events"] as? [[String: Any]]) ?? []).contains {
                    $0["event"] as? String == "stopped" && $0["instance"] as? String == "web-2"
                }
        }
        let shrunkStatus = try #require(shrunk, "the pool did not shrink back to web-1: \(status("web") ?? [:])")
        let inspect = try object(try await cmk(["pool", "inspect", "web", "--json"]))
        #expect(inspect["controllerRunning"] as? Bool == true)
        let ls = try await cmk(["pool", "ls", "--json"])
        #expect(ls.standardOutput.contains("\"web\""), "\(ls.standardOutput)")

        // The order in the audit log: web-2's admission (an appraisal that admits) before it joined the endpoint
        // (member-serving), before the first request the endpoint routed to it (first-request).
        let audit = try object(try await cmk(["audit", "log", "--json", "--limit", "1000"]))
        let records = (audit["records"] as? [[String: Any]] ?? []).sorted {
            ($0["sequence"] as? Int ?? 0) < ($1["sequence"] as? Int ?? 0)
        }
        func poolRecord(_ event: String, _ member: String? = nil) -> [String: Any]? {
            records.first {
                guard $0["kind"] as? String == "pool-event", let details = $0["details"] as? [String: String] else { return false }
                return details["event"] == event && (member == nil || details["member"] == member)
            }
        }
        for member in ["web-1", "web-2"] {
            let serving = try #require(poolRecord("member-serving", member), "no member-serving record for \(member)")
            let servingSequence = try #require(serving["sequence"] as? Int)
            let details = try #require(serving["details"] as? [String: String])
            let admissionSequence = try #require(Int(details["admissionRecord"] ?? ""), "\(details)")
            let admission = try #require(records.first { $0["sequence"] as? Int == admissionSequence })
            #expect(admission["kind"] as? String == "appraisal")
            #expect(admission["instance"] as? String == member)
            #expect((admission["appraisal"] as? [String: Any])?["verdict"] as? String == "admit", "\(admission)")
            #expect(admissionSequence < servingSequence)
            let first = try #require(poolRecord("first-request", member), "no first-request record for \(member)")
            #expect(servingSequence < (first["sequence"] as? Int ?? 0))
        }
        // web-2 was launched on a decision about load (web-1's was "below --min").
        let web2Launch = try #require(poolRecord("launching", "web-2"))
        let launchSequence = web2Launch["sequence"] as? Int ?? 0
        let scaleOut = records.last {
            $0["kind"] as? String == "pool-event" && ($0["details"] as? [String: String])?["event"] == "scale-out"
                && ($0["sequence"] as? Int ?? 0) < launchSequence
        }
        #expect((scaleOut?["details"] as? [String: String])?["reason"]?.contains("above the target") == true, "\(scaleOut ?? [:])")
        let scaleIn = try #require(poolRecord("scale-in"))
        let drained = try #require(poolRecord("member-drained", "web-2"))
        let stopped = try #require(poolRecord("member-stopped", "web-2"))
        #expect((scaleIn["sequence"] as? Int ?? 0) < (drained["sequence"] as? Int ?? 0))
        #expect((drained["sequence"] as? Int ?? 0) < (stopped["sequence"] as? Int ?? 0))
        #expect(poolRecord("cannot-grow") != nil, "at --max under load the pool says so")
        #expect(try await cmk(["audit", "verify"]).status == 0)

        // The figures, from the controller's event times (milliseconds) and the clients' own clocks.
        let events = (shrunkStatus["events"] as? [[String: Any]]) ?? []
        func eventTime(_ name: String, _ member: String? = nil, after: Date? = nil) -> Date? {
            events.first {
                $0["event"] as? String == name && (member == nil || $0["instance"] as? String == member)
                    && (after == nil || (Self.date($0["time"]) ?? .distantPast) >= after!)
            }.flatMap { Self.date($0["time"]) }
        }
        func seconds(_ from: Date?, _ to: Date?) -> String {
            guard let from, let to else { return "?" }
            return String(format: "%.2f s", to.timeIntervalSince(from))
        }
        let decided = eventTime("scale-out", after: loadStart)
        let admittedWeb2 = eventTime("serving", "web-2")
        let firstServedWeb2 = eventTime("first-request", "web-2")
        let scaledIn = eventTime("scale-in", after: loadStart)
        let drainedAt = eventTime("drained", "web-2")
        let stoppedAt = eventTime("stopped", "web-2")
        let drainDetail = events.first { $0["event"] as? String == "drained" }?["detail"] as? String ?? "?"
        // The clients' first answer from web-2 came after the controller learnt of its admission (and put it in the
        // endpoint), never while it was starting.
        let web2AtPeak = Self.members(atPeak ?? [:]).first { $0["name"] as? String == "web-2" }
        let web2Admitted = try #require(Self.date(web2AtPeak?["admittedAt"]), "\(web2AtPeak ?? [:])")
        let web2FirstAnswer = try #require(firstAnswerFromWeb2)
        #expect(web2FirstAnswer > web2Admitted)
        // The controller notes the first request at its next measurement (so possibly at the admission's own step).
        #expect((Self.date(web2AtPeak?["firstServedAt"]) ?? .distantPast) >= web2Admitted)
        print(
            "POOL-FIGURES: create → web-1 serving \(String(format: "%.2f s", createSeconds)); "
                + "load start → scale-out decision \(seconds(loadStart, decided)); "
                + "decision → web-2 admitted and in the endpoint \(seconds(decided, admittedWeb2)); "
                + "decision → web-2 first request \(seconds(decided, firstServedWeb2)); "
                + "load start → first answer from web-2 \(seconds(loadStart, firstAnswerFromWeb2)); "
                + "load stop → scale-in decision \(seconds(loadStop, scaledIn)); drain: \(drainDetail); "
                + "drained → stopped, partition reclaimed \(seconds(drainedAt, stoppedAt)); "
                + "client requests \(results.map(\.answers).reduce(0, +)) OK, "
                + "\(results.map(\.failures.count).reduce(0, +)) failed (web-1 \(answeredBy["OK 1", default: 0]), "
                + "web-2 \(answeredBy["OK 0", default: 0])); longest client gap "
                + String(format: "%.3f s", results.map(\.longestGap).max() ?? 0))

        // The controller dies (SIGKILL: no chance to clean up). web-1 keeps running; ls and inspect say the controller
        // is lost; resume starts a new one that adopts web-1 — no new launch — on the same endpoint port.
        let web1Before = try array(try await cmk(["ps", "--json"])).first { $0["name"] as? String == "web-1" }
        kill(controllerPID, SIGKILL)
        for _ in 0..<100 where Self.isRunning(controllerPID) { try await Task.sleep(for: .milliseconds(100)) }
        let lost = try array(try await cmk(["pool", "ls", "--json"])).first
        #expect(lost?["controllerRunning"] as? Bool == false, "\(lost ?? [:])")
        #expect(lost?["controllerLost"] as? Bool == true, "\(lost ?? [:])")
        let lostText = try await cmk(["pool", "inspect", "web"])
        #expect(lostText.standardOutput.contains("lost: pid \(controllerPID) is gone"), "\(lostText.standardOutput)")
        let resumeStart = Date()
        let resumed = try await cmk(["pool", "resume", "web", "--json"])
        try #require(resumed.status == 0, "\(resumed.standardOutput)\n\(resumed.standardError)")
        let resumeSeconds = Date().timeIntervalSince(resumeStart)
        let resumedStatus = try object(resumed)
        #expect(Self.serving(resumedStatus) == ["web-1"], "\(resumedStatus)")
        #expect(resumedStatus["endpoint"] as? String == endpoint)
        let newPID = try #require((resumedStatus["controllerPID"] as? NSNumber)?.int32Value)
        #expect(newPID != controllerPID && Self.isRunning(newPID))
        controllerPID = newPID
        let again = try await cmk(["pool", "resume", "web"])
        #expect(again.status == 7, "a running controller is not resumed twice: \(again.standardError)")
        let count = try await cmk(["endpoint", "call", "pool-web", "COUNT"])
        #expect(count.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "OK 1", "web-1 serves, its state intact")
        let web1After = try array(try await cmk(["ps", "--json"])).first { $0["name"] as? String == "web-1" }
        #expect(web1After?["id"] as? String == web1Before?["id"] as? String)
        #expect(web1After?["state"] as? String == "admitted")
        let afterResume = try object(try await cmk(["audit", "log", "--json", "--limit", "1000"]))
        let adoptedRecords = (afterResume["records"] as? [[String: Any]] ?? []).filter {
            ($0["details"] as? [String: String])?["event"] == "adopted"
        }
        #expect(adoptedRecords.count == 1)
        let adoptedSequence = adoptedRecords.first?["sequence"] as? Int ?? .max
        #expect((adoptedRecords.first?["details"] as? [String: String])?["serving"] == "web-1")
        #expect(!(afterResume["records"] as? [[String: Any]] ?? []).contains {
            ($0["details"] as? [String: String])?["event"] == "launching" && ($0["sequence"] as? Int ?? 0) > adoptedSequence
        }, "nothing launched after the adoption")
        print("POOL-FIGURES: controller killed → resumed controller serving web-1 again \(String(format: "%.2f s", resumeSeconds))")

        // Delete: the controller and every child gone, the partitions given back.
        let deleteStart = Date()
        let deleted = try await cmk(["pool", "delete", "web", "--json"])
        #expect(deleted.status == 0, "\(deleted.standardOutput)\n\(deleted.standardError)")
        print("POOL-FIGURES: delete (drain and stop web-1) \(String(format: "%.2f s", Date().timeIntervalSince(deleteStart)))")
        #expect(!Self.isRunning(controllerPID))
        #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("pools/web").path))
        let ps = try array(try await cmk(["ps", "--all", "--json"]))
        #expect(Set(ps.compactMap { $0["name"] as? String }) == ["web-1", "web-2"], "\(ps)")
        for row in ps {
            #expect(row["state"] as? String == "stopped", "\(row)")
            #expect(row["holdsPartition"] as? Bool == false, "\(row)")
            if let pid = ((row["process"] as? [String: Any])?["pid"] as? NSNumber)?.int32Value {
                #expect(!Self.isRunning(pid), "QEMU of \(row["name"] ?? "?") still runs")
            }
            if let pid = ((row["supervisor"] as? [String: Any])?["pid"] as? NSNumber)?.int32Value {
                #expect(!Self.isRunning(pid), "the supervisor of \(row["name"] ?? "?") still runs")
            }
        }
        let hostAfter = try object(try await cmk(["host", "--json"]))
        #expect(hostAfter["partitionCount"] as? Int == 0)
        #expect(
            (hostAfter["freeForSharing"] as? NSDictionary) == (hostBefore["freeForSharing"] as? NSDictionary),
            "\(hostAfter["freeForSharing"] ?? "?") vs \(hostBefore["freeForSharing"] ?? "?")")
        let endpointFile = state.appendingPathComponent("endpoints/pool-web.json")
        if let data = FileManager.default.contents(atPath: endpointFile.path),
           let record = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let pid = (record["pid"] as? NSNumber)?.int32Value
        {
            #expect(!Self.isRunning(pid))
        }
        try? FileManager.default.removeItem(at: state)
    }
}
}
