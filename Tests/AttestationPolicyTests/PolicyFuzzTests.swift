import AttestationPolicy
import CMKTesting
import Foundation
import Testing

/// Bad input anywhere gets a clear error, never a crash: mutated policy files only ever load or throw PolicyError.
@Suite("Policy loader fuzzing")
struct PolicyFuzzTests {
    @Test("random byte, line and token mutations of the shipped policies load or fail with a PolicyError")
    func mutations() async throws {
        let folder = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        let texts = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { try String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8) }
        let tokens = ["", "-", ":", "[", "]", "{", "}", "0x", "999999999999999999999", "-1", "~", "&a", "*a", "!!binary", "\t", "\"",
                      "'", "#", "? ", "|", ">", "null", "true", "2027-13-45", "1e400", "snp", "tdx", "\u{0}", "é"]
        // Minutes of synchronous work: off the cooperative pool (see `offPool`), checked back here.
        let (loaded, rejected, unexplained) = try await offPool { () throws -> (Int, Int, Int) in
            var generator = SeededGenerator(state: 0x5EED)
            var loaded = 0, rejected = 0, unexplained = 0
            for round in 0..<3000 {
                var lines = texts[round % texts.count].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    let index = Int.random(in: 0..<lines.count, using: &generator)
                    switch Int.random(in: 0..<5, using: &generator) {
                    case 0: lines.remove(at: index); if lines.isEmpty { lines = [""] }
                    case 1: lines.insert(lines[Int.random(in: 0..<lines.count, using: &generator)], at: index)
                    case 2:
                        var chars = Array(lines[index])
                        let replacement = tokens.randomElement(using: &generator)!.first ?? " "
                        if !chars.isEmpty { chars[Int.random(in: 0..<chars.count, using: &generator)] = replacement }
                        lines[index] = String(chars)
                    case 3: lines[index] += tokens.randomElement(using: &generator)!
                    default: lines[index] = String(repeating: " ", count: Int.random(in: 0...6, using: &generator)) + lines[index]
                    }
                }
                do throws(PolicyError) {
                    _ = try PolicyLoader(environment: [:]).load(text: lines.joined(separator: "\n"))
                    loaded += 1
                } catch {
                    if error.reason.isEmpty { unexplained += 1 }
                    rejected += 1
                }
            }
            return (loaded, rejected, unexplained)
        }
        #expect(unexplained == 0)
        #expect(loaded + rejected == 3000)
        #expect(rejected > 1000, "the mutations should mostly break the files")
    }
}
