import CMKTesting
import Coordinator
import Foundation
import Synchronization
import Testing

/// An in-process backend: a counter service answering like the demo workload, with a delay and a switch to fail.
/// (The real backend, an instance's agent behind its supervisor, is exercised by UpdateCommandTests under QEMU.)
final class CountingBackend: EndpointBackend, @unchecked Sendable {
    let name: String
    let delay: Duration
    let failing = Atomic<Bool>(false)
    let calls = Atomic<Int>(0)
    let closes = Atomic<Int>(0)
    private let value: Mutex<Int>

    init(_ name: String, start: Int = 0, delay: Duration = .zero) {
        self.name = name
        self.delay = delay
        value = Mutex(start)
    }

    func call(_ request: [UInt8], timeout: Duration) throws(CoordinatorError) -> [UInt8] {
        calls.add(1, ordering: .relaxed)
        if failing.load(ordering: .relaxed) { throw CoordinatorError(.launch, "\(name) is down") }
        if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.attoseconds) / 1e18 + Double(delay.components.seconds)) }
        let next = value.withLock { value in
            value += 1
            return value
        }
        return Array("OK \(next) \(name) \(String(decoding: request, as: UTF8.self))".utf8)
    }

    func close() { closes.add(1, ordering: .relaxed) }
}

@Suite("endpoint forwarder: round-robin, atomic switch, hold and drain, statistics")
struct EndpointForwarderTests {
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("spreads requests round-robin over its backends and counts each one's requests and rate")
    func roundRobin() {
        let a = CountingBackend("a")
        let b = CountingBackend("b")
        let forwarder = EndpointForwarder(backends: [a, b])
        let answers = (0..<10).map { _ in text(forwarder.forward(Array("PING".utf8))) }
        #expect(answers.filter { $0.contains(" a ") }.count == 5)
        #expect(answers.filter { $0.contains(" b ") }.count == 5)
        let stats = forwarder.stats()
        #expect(stats.map(\.name) == ["a", "b"])
        #expect(stats.map(\.requests) == [5, 5])
        #expect(stats.allSatisfy { $0.active && $0.failures == 0 && $0.ratePerSecond > 0 })
    }

    @Test("setBackends switches every later request to the new set while requests run on many threads, losing none")
    func atomicSwitch() async throws {
        let old = CountingBackend("old", delay: .milliseconds(2))
        let new = CountingBackend("new", delay: .milliseconds(2))
        let forwarder = EndpointForwarder(backends: [old])
        let results = try await offPool { () -> (failures: Int, afterSwitchOnOld: Int, total: Int) in
            let switched = Atomic<Bool>(false)
            let failures = Atomic<Int>(0)
            let afterSwitchOnOld = Atomic<Int>(0)
            let total = Atomic<Int>(0)
            let group = DispatchGroup()
            for _ in 0..<4 {
                group.enter()
                Thread.detachNewThread {
                    for _ in 0..<150 {
                        let startedAfterSwitch = switched.load(ordering: .acquiring)
                        let answer = String(decoding: forwarder.forward(Array("INCR".utf8)), as: UTF8.self)
                        total.add(1, ordering: .relaxed)
                        if !answer.hasPrefix("OK") { failures.add(1, ordering: .relaxed) }
                        if startedAfterSwitch, answer.contains(" old ") { afterSwitchOnOld.add(1, ordering: .relaxed) }
                    }
                    group.leave()
                }
            }
            Thread.sleep(forTimeInterval: 0.2)
            forwarder.setBackends([new])
            switched.store(true, ordering: .releasing)
            group.wait()
            return (failures.load(ordering: .relaxed), afterSwitchOnOld.load(ordering: .relaxed), total.load(ordering: .relaxed))
        }
        #expect(results.failures == 0)
        #expect(results.afterSwitchOnOld == 0)
        #expect(results.total == 600)
        #expect(new.calls.load(ordering: .relaxed) > 0)
        #expect(old.closes.load(ordering: .relaxed) == 1)
        let stats = forwarder.stats()
        #expect(stats.first { $0.name == "old" }?.active == false)
        #expect(stats.first { $0.name == "new" }?.active == true)
        #expect(stats.map(\.requests).reduce(0, +) == 600)
    }

    @Test("a hold drains the requests in flight, makes new ones wait (a pause, not an error) and release lets them through")
    func holdAndRelease() async throws {
        let slow = CountingBackend("slow", delay: .milliseconds(300))
        let forwarder = EndpointForwarder(backends: [slow])
        let outcome = try await offPool { () -> (drained: Bool, inFlightDone: Bool, waiterAnswer: String, waited: Double) in
            let inFlight = Mutex<String?>(nil)
            Thread.detachNewThread {
                let answer = String(decoding: forwarder.forward(Array("A".utf8)), as: UTF8.self)
                inFlight.withLock { $0 = answer }
            }
            while slow.calls.load(ordering: .relaxed) == 0 { Thread.sleep(forTimeInterval: 0.005) }
            let drained = forwarder.hold(timeout: .seconds(10))
            // The hold returned once the forwarder had the backend's answer; the client thread stores it just after
            // (on a loaded host it may be descheduled in between), so wait for that, boundedly, and check the answer.
            let answerDeadline = Date().addingTimeInterval(10)
            while inFlight.withLock({ $0 == nil }), Date() < answerDeadline { Thread.sleep(forTimeInterval: 0.005) }
            let inFlightDone = inFlight.withLock { $0?.hasPrefix("OK 1 slow A") ?? false }
            let waiter = Mutex<String?>(nil)
            let started = Date()
            Thread.detachNewThread {
                let answer = String(decoding: forwarder.forward(Array("B".utf8)), as: UTF8.self)
                waiter.withLock { $0 = answer }
            }
            Thread.sleep(forTimeInterval: 0.3)
            let stillWaiting = waiter.withLock { $0 == nil }
            forwarder.release()
            while waiter.withLock({ $0 == nil }) { Thread.sleep(forTimeInterval: 0.01) }
            return (drained, inFlightDone, stillWaiting ? waiter.withLock { $0! } : "answered during the hold",
                    Date().timeIntervalSince(started))
        }
        #expect(outcome.drained)
        #expect(outcome.inFlightDone)
        #expect(outcome.waiterAnswer.hasPrefix("OK 2 slow B"))
        #expect(forwarder.longestHoldWait > .milliseconds(250))
    }

    @Test("a hold that cannot drain in time is undone; a request with no backend in time is ERR unavailable")
    func holdTimeoutAndNoBackend() async throws {
        let stuck = CountingBackend("stuck", delay: .seconds(2))
        let forwarder = EndpointForwarder(backends: [stuck], waitLimit: .milliseconds(200))
        let drained = try await offPool { () -> Bool in
            Thread.detachNewThread { _ = forwarder.forward([0x41]) }
            while stuck.calls.load(ordering: .relaxed) == 0 { Thread.sleep(forTimeInterval: 0.005) }
            return forwarder.hold(timeout: .milliseconds(100))
        }
        #expect(!drained)
        #expect(!forwarder.isHeld)
        let empty = EndpointForwarder(backends: [], waitLimit: .milliseconds(100))
        let answer = try await offPool { String(decoding: empty.forward(Array("PING".utf8)), as: UTF8.self) }
        #expect(answer.hasPrefix("ERR unavailable"))
    }

    @Test("a backend that fails is retried once, then the client gets ERR unavailable naming it, counted as a failure")
    func backendFailure() async throws {
        let down = CountingBackend("down")
        down.failing.store(true, ordering: .relaxed)
        let forwarder = EndpointForwarder(backends: [down])
        let answer = try await offPool { String(decoding: forwarder.forward(Array("PING".utf8)), as: UTF8.self) }
        #expect(answer.hasPrefix("ERR unavailable down: down is down"))
        #expect(down.calls.load(ordering: .relaxed) == 2)
        #expect(forwarder.stats().first?.failures == 1)
    }

    @Test("the line decoder splits at newlines in every split of the stream and refuses an over-long line")
    func lineDecoder() throws {
        let stream = Array("PING\r\nSET a b\nGET a\n".utf8)
        for cut in 0...stream.count {
            var decoder = LineDecoder(maximum: 64)
            var lines: [String] = []
            decoder.append(stream[..<cut])
            while let line = try decoder.next() { lines.append(String(decoding: line, as: UTF8.self)) }
            decoder.append(stream[cut...])
            while let line = try decoder.next() { lines.append(String(decoding: line, as: UTF8.self)) }
            #expect(lines == ["PING", "SET a b", "GET a"], "cut at \(cut)")
        }
        var decoder = LineDecoder(maximum: 8)
        decoder.append(Array("123456789".utf8))
        #expect(throws: LineDecoder.TooLong.self) { try decoder.next() }
    }

    @Test("the TCP endpoint answers line by line, switches backends over its control socket, and refuses bad requests")
    func tcpEndpoint() async throws {
        let state = CMKStateDirectory(URL(fileURLWithPath: "/tmp/cmk-endpoint-\(UUID().uuidString.prefix(8))"))
        defer { try? FileManager.default.removeItem(at: state.url) }
        let backends = ["one": CountingBackend("one"), "two": CountingBackend("two", start: 100)]
        let forwarder = EndpointForwarder(backends: [backends["one"]!])
        let server = try EndpointServer(
            name: "ep", state: state, port: 0, forwarder: forwarder, makeBackend: { backends[$0] ?? CountingBackend($0) },
            log: { _ in })
        try server.persist()
        server.start()
        defer { server.stop() }
        let record = try #require(EndpointFiles.read(state, name: "ep"))
        #expect(record.port == server.port && record.backends == ["one"] && record.isServing)

        let answers = try await offPool { () -> [String] in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(server.port).bigEndian)
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            func exchange(_ bytes: [UInt8]) -> String {
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                var answer: [UInt8] = []
                var byte: UInt8 = 0
                while read(fd, &byte, 1) == 1, byte != 0x0A { answer.append(byte) }
                return String(decoding: answer, as: UTF8.self)
            }
            var answers = [exchange(Array("PING\n".utf8))]
            _ = try EndpointFiles.ask(state, name: "ep", RelayMessage(.setBackends, backends: ["two"]))
            answers.append(exchange(Array("PING\n".utf8)))
            answers.append(exchange(Array(repeating: 0x41, count: EndpointServer.maximumLine + 10)))
            return answers
        }
        #expect(answers[0] == "OK 1 one PING")
        #expect(answers[1] == "OK 101 two PING")
        #expect(answers[2].hasPrefix("ERR bad-request a line longer than"))
        #expect(EndpointFiles.read(state, name: "ep")?.backends == ["two"])
        let stats = try EndpointFiles.ask(state, name: "ep", RelayMessage(.stats))
        let decoded = try JSONDecoder().decode(EndpointStats.self, from: try #require(stats.data))
        #expect(decoded.backends == ["two"])
        #expect(decoded.perBackend.map(\.requests) == [1, 1])
        #expect(throws: CoordinatorError.self) {
            try EndpointFiles.ask(state, name: "ep", RelayMessage(.setBackends, backends: ["../etc"]))
        }
    }

    @Test("successor names count up; update paths parse strictly and match predecessors and successors")
    func updateNamingAndPath() throws {
        #expect(UpdateNaming.successor(of: "kv") == "kv.u1")
        #expect(UpdateNaming.successor(of: "kv.u1") == "kv.u2")
        #expect(UpdateNaming.successor(of: "kv.u9") == "kv.u10")
        #expect(UpdateNaming.successor(of: "db.2024") == "db.2024.u1")
        #expect(UpdateNaming.updatePeers(of: "kv.u1", predecessor: "kv") == ["kv.u2", "kv"])
        let folder = URL(fileURLWithPath: "/tmp/cmk-update-path-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ text: String) throws -> String {
            let url = folder.appendingPathComponent("\(UUID().uuidString).yaml")
            try ("id: p\nversion: 1\nevidence: sev-snp\n" + text).write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        #expect(try UpdatePath.load(policyPath: try write("")) == nil)
        let path = try #require(
            try UpdatePath.load(policyPath: try write("update:\n  from:\n    - profile: general\n      policy: development\n  to:\n    - profile: realtime\n")))
        func manifest(_ profile: String, _ policy: String) -> InstanceManifest {
            InstanceManifest(
                name: "kv", platform: "sim-snp",
                image: .init(profile: profile, kernelSHA256: String(repeating: "a", count: 64), initrdSHA256: "", firmwareSHA256: "", cmdline: ""),
                vcpus: 1, memoryMiB: 512, policyID: policy, policyVersion: 1, policyDigest: "", channelPeers: [])
        }
        #expect(path.allows(predecessor: manifest("general", "development")) == nil)
        #expect(path.allows(predecessor: manifest("general", "other"))?.contains("matches no update.from entry") == true)
        #expect(path.allows(successor: manifest("realtime", "x")) == nil)
        #expect(path.allows(successor: manifest("database", "x")) != nil)
        for bad in ["update: yes\n", "update:\n  from: []\n", "update:\n  from:\n    - profil: general\n",
                    "update:\n  from:\n    - kernel-sha256: abc\n", "update:\n  form:\n    - profile: a\n"] {
            #expect(throws: CoordinatorError.self, "\(bad)") { try UpdatePath.load(policyPath: try write(bad)) }
        }
    }
}
