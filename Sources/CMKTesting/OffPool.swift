import Foundation

/// Runs CPU-heavy synchronous test work on a thread of its own and waits for it without holding a thread of
/// Swift's cooperative pool.
///
/// The cooperative pool has one thread per core — two on the machines CI uses. A synchronous test that computes
/// for minutes (a fuzz loop, a property test) occupies one of them for that long, and two such tests starve every
/// asynchronous test of the run: their continuations cannot resume, and their time limits expire while they wait
/// for a thread rather than for what they test. Work moved here still competes for the CPU, but the kernel's
/// scheduler shares it fairly, and the pool stays free for everything else.
public func offPool<T: Sendable>(
    _ name: String = "cmk test work", _ work: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            continuation.resume(with: Result { try work() })
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }
}
