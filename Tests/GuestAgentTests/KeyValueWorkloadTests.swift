import CMKTesting
import GuestAgent
import Testing

@Suite("the demo key-value workload")
struct KeyValueWorkloadTests {
    func ask(_ workload: KeyValueWorkload, _ line: String) -> String {
        String(decoding: workload.handle(Array(line.utf8)), as: UTF8.self)
    }

    @Test("serves PING, WHO, SET, GET, INCR, DEL and COUNT as documented")
    func commands() {
        let kv = KeyValueWorkload(instance: "kv")
        #expect(ask(kv, "PING") == "OK PONG")
        #expect(ask(kv, "WHO") == "OK kv")
        #expect(ask(kv, "SET user:1 Ada Lovelace") == "OK")
        #expect(ask(kv, "GET user:1") == "OK Ada Lovelace")
        #expect(ask(kv, "SET empty ") == "OK")
        #expect(ask(kv, "GET empty") == "OK ")
        #expect(ask(kv, "INCR hits") == "OK 1")
        #expect(ask(kv, "incr hits 41") == "OK 42")
        #expect(ask(kv, "INCR hits -50") == "OK -8")
        #expect(ask(kv, "COUNT") == "OK 3")
        #expect(ask(kv, "DEL hits") == "OK 1")
        #expect(ask(kv, "DEL hits") == "OK 0")
        #expect(ask(kv, "GET hits") == "ERR not-found no key hits")
        #expect(kv.count == 2)
    }

    @Test(
        "bad input is a clear ERR answer, never a crash",
        arguments: [
            ("", "ERR bad-request"), ("NOPE", "ERR bad-request unknown command"), ("GET", "ERR bad-request usage: GET"),
            ("GET a b", "ERR bad-request usage: GET"), ("GET bad key!", "ERR bad-request"),
            ("SET k", "ERR bad-request usage: SET"), ("SET \(String(repeating: "k", count: 129)) v", "ERR bad-request"),
            ("SET k \(String(repeating: "v", count: 4097))", "ERR bad-request a value has at most 4096"),
            ("INCR k x", "ERR bad-request the delta"), ("INCR k 1 2", "ERR bad-request usage: INCR"),
            ("INCR k 99999999999999999999", "ERR bad-request the delta"), ("PING x", "ERR bad-request"),
            ("GET k\u{7}", "ERR bad-request control characters"), ("SET k v\tw", "ERR bad-request control characters"),
        ])
    func badInput(line: String, expected: String) {
        let kv = KeyValueWorkload(instance: "kv")
        #expect(ask(kv, line).hasPrefix(expected), "\(line) → \(ask(kv, line))")
        #expect(kv.count == 0)
    }

    @Test("a non-integer value and an overflow are refused and leave the value unchanged")
    func counters() {
        let kv = KeyValueWorkload(instance: "kv")
        _ = ask(kv, "SET name cmk")
        #expect(ask(kv, "INCR name").hasPrefix("ERR not-integer"))
        _ = ask(kv, "SET big \(Int64.max)")
        #expect(ask(kv, "INCR big").hasPrefix("ERR overflow"))
        #expect(ask(kv, "GET big") == "OK \(Int64.max)")
        #expect(String(decoding: kv.handle([0xFF, 0xFE]), as: UTF8.self).hasPrefix("ERR bad-request the request is not UTF-8"))
    }

    @Test("random bytes never crash the workload and always get an OK or ERR answer")
    func fuzz() async throws {
        let bad = try await offPool { () -> [String] in
            var bad: [String] = []
            var random = SeededGenerator(state: 12)
            let kv = KeyValueWorkload(instance: "kv")
            let words = ["GET", "SET", "INCR", "DEL", "COUNT", "PING", "WHO", "k", "1", "-", " ", "\u{0}", "é"]
            for _ in 0..<20_000 {
                var line: [UInt8]
                if Bool.random(using: &random) {
                    line = (0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                } else {
                    line = Array((0..<Int.random(in: 1...5, using: &random)).map { _ in words.randomElement(using: &random)! }
                        .joined(separator: " ").utf8)
                }
                let answer = String(decoding: kv.handle(line), as: UTF8.self)
                if !(answer.hasPrefix("OK") || answer.hasPrefix("ERR ")) { bad.append("\(line) → \(answer)") }
            }
            return bad
        }
        #expect(bad.isEmpty, "\(bad.prefix(5))")
    }

    @Test("the state moves whole: export then import gives the same entries, checked by count, size and digest")
    func stateRoundTrip() throws {
        let kv = KeyValueWorkload(instance: "old")
        for i in 0..<3000 { _ = ask(kv, "SET key:\(i) value number \(i) \(String(repeating: "x", count: i % 300))") }
        _ = ask(kv, "INCR counter 1234")
        let export = kv.exportState(maximumChunk: 16 << 10)
        #expect(export.chunks.count > 10)
        #expect(export.summary.entries == 3001)
        var importer = WorkloadState.Import()
        for chunk in export.chunks { try importer.add(chunk: chunk) }
        let state = try importer.finish(try WorkloadState.Summary(bytes: export.summary.encoded))
        #expect(state.count == 3001)
        #expect(state["counter"] == "1234")
        #expect(state["key:2999"] == kv.value("key:2999"))
    }

    @Test("a transfer with a chunk missing, altered, repeated or a wrong summary is refused")
    func stateRefusals() throws {
        let kv = KeyValueWorkload(instance: "old")
        for i in 0..<500 { _ = ask(kv, "SET k\(i) \(i)") }
        let export = kv.exportState(maximumChunk: 1024)
        #expect(export.chunks.count > 3)
        // A chunk dropped.
        var dropped = WorkloadState.Import()
        for chunk in export.chunks.dropFirst() { try dropped.add(chunk: chunk) }
        #expect(throws: WorkloadStateError.self) { try dropped.finish(export.summary) }
        // A chunk repeated: the same key twice.
        var repeated = WorkloadState.Import()
        try repeated.add(chunk: export.chunks[0])
        #expect(throws: WorkloadStateError.self) { try repeated.add(chunk: export.chunks[0]) }
        // A summary with another digest.
        var whole = WorkloadState.Import()
        for chunk in export.chunks { try whole.add(chunk: chunk) }
        var digest = export.summary.digest
        digest[0] ^= 1
        #expect(throws: WorkloadStateError.self) {
            try whole.finish(WorkloadState.Summary(entries: export.summary.entries, bytes: export.summary.bytes, digest: digest))
        }
        // A chunk cut at every offset, and malformed summaries.
        let chunk = export.chunks[0]
        for cut in 0..<chunk.count {
            var partial = WorkloadState.Import()
            #expect(throws: WorkloadStateError.self) { try partial.add(chunk: Array(chunk.prefix(cut))) }
        }
        #expect(throws: WorkloadStateError.self) { try WorkloadState.Summary(bytes: Array(export.summary.encoded.dropLast())) }
        #expect(throws: WorkloadStateError.self) { try WorkloadState.Summary(bytes: export.summary.encoded + [0]) }
        // An entry the workload would refuse (a key with a space).
        var bad = WorkloadState.Import()
        #expect(throws: WorkloadStateError.self) { try bad.add(chunk: [0, 0, 0, 1, 0, 3] + Array("a b".utf8) + [0, 0, 0, 0]) }
    }
}
