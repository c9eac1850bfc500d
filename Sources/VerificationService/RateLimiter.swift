import Foundation
import Synchronization

/// Token buckets per client: each client may send `burst` requests at once and `requestsPerSecond` sustained.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Double
    }

    let limit: ServiceConfiguration.RateLimit
    private let buckets = Mutex<[String: Bucket]>([:])

    init(_ limit: ServiceConfiguration.RateLimit) { self.limit = limit }

    /// Takes one token for `client` at `now` (seconds on a monotonic scale); nil when allowed, else the whole seconds
    /// to wait before the next token.
    func take(client: String, now: Double) -> Int? {
        if limit.requestsPerSecond.isInfinite { return nil }
        return buckets.withLock { buckets in
            if buckets.count > 10_000 {  // forget clients whose buckets are full again
                buckets = buckets.filter { now - $0.value.updated < limit.burst / limit.requestsPerSecond }
            }
            var bucket = buckets[client] ?? Bucket(tokens: limit.burst, updated: now)
            bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.requestsPerSecond)
            bucket.updated = now
            defer { buckets[client] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / limit.requestsPerSecond).rounded(.up)))
        }
    }
}
