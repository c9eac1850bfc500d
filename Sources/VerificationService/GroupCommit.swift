import Dispatch
import Synchronization

/// Group commit for the embedded store's writes (nonce spends, audit appends): each request submits one item and
/// waits; one drain loop on a thread of its own hands every item waiting at that moment to `commit` as one batch —
/// one SQLite transaction, so one durable sync for all of them — and resumes each waiter with its own outcome only
/// after `commit` returned, that is after the transaction committed.
///
/// While one batch is being committed (the disk sync dominates), the next requests queue, so the batch size grows
/// with the load and the number of syncs per request falls; a request alone is committed at once, without waiting
/// for company. The synchronous SQLite work never runs on Swift's cooperative pool, whose two threads on a 2-core
/// machine are left to the verification's cryptography.
final class GroupCommitter<Item: Sendable, Output: Sendable>: Sendable {
    /// Commits a batch: one result per item, in order. A thrown error fails every item of the batch (nothing of it
    /// may be reported as stored).
    typealias Commit = @Sendable ([Item]) throws -> [Result<Output, any Error>]

    private struct Waiting: Sendable {
        let item: Item
        let continuation: CheckedContinuation<Output, any Error>
    }

    private struct State: Sendable {
        var waiting: [Waiting] = []
        var draining = false
    }

    private let state = Mutex(State())
    private let queue: DispatchQueue
    private let maximumBatch: Int
    private let commit: Commit

    init(label: String, maximumBatch: Int = 256, commit: @escaping Commit) {
        queue = DispatchQueue(label: label)
        self.maximumBatch = maximumBatch
        self.commit = commit
    }

    /// Queues `item` and returns its outcome once the batch holding it has been committed.
    func submit(_ item: Item) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state in
                state.waiting.append(Waiting(item: item, continuation: continuation))
                guard !state.draining else { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            let batch: [Waiting] = state.withLock { state in
                guard !state.waiting.isEmpty else {
                    state.draining = false
                    return []
                }
                let count = min(state.waiting.count, maximumBatch)
                let batch = Array(state.waiting.prefix(count))
                state.waiting.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            var results: [Result<Output, any Error>]
            do {
                results = try commit(batch.map(\.item))
                if results.count != batch.count {
                    let error = StoreError(.database, "a group commit returned \(results.count) results for \(batch.count) items")
                    results = Array(repeating: .failure(error), count: batch.count)
                }
            } catch {
                results = Array(repeating: .failure(error), count: batch.count)
            }
            for (waiting, result) in zip(batch, results) { waiting.continuation.resume(with: result) }
        }
    }
}
