import Foundation
import Prometheus

/// The service's Prometheus metrics, in a registry of its own (several servers in one process stay apart).
final class ServiceMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    /// Counts one answered request and its latency, by route pattern (never the raw path), method and status.
    func request(route: String, method: String, status: Int, duration: Duration) {
        registry.makeCounter(
            descriptor: .init(namespace: "cmk", subsystem: "serve", metricName: "requests", unitName: "total",
                              helpText: "HTTP requests answered, by route, method and status"),
            labels: [("route", route), ("method", method), ("status", String(status))]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "cmk", subsystem: "serve", metricName: "request_duration", unitName: "seconds",
                              helpText: "Time from request to response, by route"),
            labels: [("route", route)], buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// Counts one verdict by tenant, policy and reason (the first failed rule, or `admitted`).
    func verdict(tenant: String, policy: String, verdict: String, reason: String) {
        registry.makeCounter(
            descriptor: .init(namespace: "cmk", subsystem: "serve", metricName: "verdicts", unitName: "total",
                              helpText: "Appraisals, by tenant, policy, verdict and reason"),
            labels: [("tenant", tenant), ("policy", policy), ("verdict", verdict), ("reason", reason)]
        ).increment()
    }

    /// Counts a look-up in one of the caches (`policy`: parsed policies; `snp-collateral`, `tdx-collateral`: the
    /// offline collateral caches) as a hit or a miss.
    func cache(_ cache: String, hit: Bool) {
        registry.makeCounter(
            descriptor: .init(namespace: "cmk", subsystem: "serve", metricName: "cache_lookups", unitName: "total",
                              helpText: "Cache look-ups, by cache and result"),
            labels: [("cache", cache), ("result", hit ? "hit" : "miss")]
        ).increment()
    }

    func exposition() -> [UInt8] { registry.emitToBuffer() }
}
