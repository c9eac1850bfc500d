import AttestationPolicy
import Foundation
import Testing

@testable import AuditLog

/// `append(batch:)`, the group commit `cmk serve` uses: one transaction, the same chain as one-by-one appends.
@Suite struct BatchAppendTests {
    @Test("a batch makes the same records, hashes and checkpoints as one-by-one appends, and returns them as a read does")
    func sameChainAsOneByOne() throws {
        let entries = (0..<12).map { index in
            Fixture.entry(Fixture.appraisal(
                failing: index % 3 == 2 ? ["snp.tcb.reported.minimum"] : [], at: Fixture.time(hours: Double(index))))
        }
        let single = try TemporaryFolder()
        let one = try Fixture.log(in: single, interval: 5)
        let expected = try entries.map { try one.append($0) }
        let batched = try TemporaryFolder()
        let other = try Fixture.log(in: batched, interval: 5)
        let first = try other.append(batch: Array(entries[0..<7])).map { try $0.get() }
        let second = try other.append(batch: Array(entries[7...])).map { try $0.get() }
        #expect((first + second).map(\.hash) == expected.map(\.hash))
        #expect((first + second).map(\.sequence) == Array(1...12))
        #expect(first + second == expected)
        let read = try other.records(matching: AuditQuery(order: .oldestFirst, limit: 100)).records
        #expect(read == first + second)
        #expect(try other.checkpoints().map(\.sequence) == [5, 10])
        #expect(try other.verify().isIntact)
    }

    @Test("an invalid entry is refused alone; the rest of its batch is appended in order")
    func invalidEntryAlone() throws {
        let folder = try TemporaryFolder()
        let log = try Fixture.log(in: folder, interval: 0)
        var bad = Fixture.entry(Fixture.appraisal())
        bad.resultTokenDigest = "not-a-digest"
        let results = try log.append(batch: [
            Fixture.entry(Fixture.appraisal(at: Fixture.time(hours: 1))), bad,
            Fixture.entry(Fixture.appraisal(at: Fixture.time(hours: 2))),
        ])
        #expect(try results[0].get().sequence == 1)
        #expect(throws: AuditLogError.self) { try results[1].get() }
        #expect(try results[2].get().sequence == 2)
        #expect(try results[2].get().previousHash == results[0].get().hash)
        #expect(try log.head().sequence == 2)
        #expect(try log.verify().isIntact)
        #expect(try log.append(batch: []).isEmpty)
    }
}
