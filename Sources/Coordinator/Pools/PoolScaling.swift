public import Foundation

/// What a pool scales on: the load the coordinator itself measures.
public enum PoolMetric: String, Sendable, Codable, Hashable, CaseIterable {
    /// Requests per second through the pool's endpoint (the forwarder's per-backend counts).
    case requests
    /// CPU of the pool's instances: their QEMU processes' user + system time (`/proc/<pid>/stat`), in percent of one
    /// host CPU.
    case cpu

    /// The unit `target` is given in.
    public var unit: String {
        switch self {
        case .requests: "requests/s per instance"
        case .cpu: "% of one CPU per instance"
        }
    }
}

/// The scaling rule of a pool: bounds, the per-instance target, hysteresis and cool-downs (docs/pools.md).
public struct ScalingRule: Sendable, Codable, Hashable {
    public var metric: PoolMetric
    /// The load one serving instance should carry (requests/s, or percent of one CPU).
    public var target: Double
    public var minimum: Int
    public var maximum: Int
    /// Scale in only when the instances left after removing one would each carry less than this fraction of
    /// `target` (hysteresis: between this and 1.0 nothing changes).
    public var scaleInFraction: Double
    /// Seconds the load must stay above (or below) its threshold before the pool acts on it.
    public var sustainSeconds: Double
    /// Seconds after a scale-out or a refusal by the host before the next scale-out.
    public var scaleOutCooldown: Double
    /// Seconds after any change before a scale-in.
    public var scaleInCooldown: Double

    public init(
        metric: PoolMetric, target: Double, minimum: Int, maximum: Int, scaleInFraction: Double = 0.5,
        sustainSeconds: Double = 3, scaleOutCooldown: Double = 10, scaleInCooldown: Double = 15
    ) {
        self.metric = metric
        self.target = target
        self.minimum = minimum
        self.maximum = maximum
        self.scaleInFraction = scaleInFraction
        self.sustainSeconds = sustainSeconds
        self.scaleOutCooldown = scaleOutCooldown
        self.scaleInCooldown = scaleInCooldown
    }

    /// Every problem with the rule, as one `invalid-argument` error (nothing when it is valid).
    public func validate() throws {
        var problems: [String] = []
        if minimum < 0 { problems.append("--min must be 0 or more (got \(minimum))") }
        if maximum < 1 { problems.append("--max must be 1 or more (got \(maximum))") }
        if maximum > 64 { problems.append("--max must be at most 64 (got \(maximum))") }
        if minimum > maximum { problems.append("--min \(minimum) is above --max \(maximum)") }
        if !target.isFinite || target <= 0 { problems.append("--target must be a positive number (got \(target))") }
        if metric == .cpu, target > 100 * 64 { problems.append("--target for cpu is percent of one CPU, at most 6400") }
        if !(scaleInFraction > 0 && scaleInFraction < 1) {
            problems.append("the scale-in fraction must be between 0 and 1 exclusive (got \(scaleInFraction))")
        }
        for (name, value) in [("--sustain", sustainSeconds), ("--scale-out-cooldown", scaleOutCooldown),
                              ("--scale-in-cooldown", scaleInCooldown)] where !(value.isFinite && value >= 0 && value <= 3600) {
            problems.append("\(name) must be 0 to 3600 seconds (got \(value))")
        }
        if !problems.isEmpty { throw CoordinatorError(.invalidArgument, problems.joined(separator: "; ")) }
    }
}

/// One measurement of a pool, the input of a decision.
public struct PoolObservation: Sendable, Hashable {
    public var time: Date
    /// The pool's total load over the last interval (requests/s, or percent of one CPU summed over instances).
    public var load: Double
    /// Admitted instances that receive traffic.
    public var serving: Int
    /// Instances being launched and attested (not yet receiving traffic).
    public var starting: Int

    public init(time: Date, load: Double, serving: Int, starting: Int) {
        self.time = time
        self.load = load
        self.serving = serving
        self.starting = starting
    }
}

/// What a pool remembers between decisions: when the load crossed a threshold, the last change, the last refusal.
public struct ScalingMemory: Sendable, Hashable, Codable {
    public var aboveSince: Date?
    public var belowSince: Date?
    public var lastChange: Date?
    /// When the host last could not fit another instance (insufficient resources).
    public var hostFullAt: Date?

    public init(aboveSince: Date? = nil, belowSince: Date? = nil, lastChange: Date? = nil, hostFullAt: Date? = nil) {
        self.aboveSince = aboveSince
        self.belowSince = belowSince
        self.lastChange = lastChange
        self.hostFullAt = hostFullAt
    }
}

/// A scaling decision: how many instances the pool should have, and why.
public struct ScalingDecision: Sendable, Hashable, Codable {
    public enum Action: String, Sendable, Hashable, Codable {
        case hold
        case scaleOut = "scale-out"
        case scaleIn = "scale-in"
    }

    public var action: Action
    /// The pool's size (serving + starting) when deciding.
    public var from: Int
    /// The size it should have.
    public var to: Int
    public var reason: String

    public init(action: Action, from: Int, to: Int, reason: String) {
        self.action = action
        self.from = from
        self.to = to
        self.reason = reason
    }
}

/// The scaling rule applied: a pure function of the rule, one observation and the memory, so every case is a unit test.
public enum PoolScaling {
    /// Decides what the pool should do now and returns the updated memory.
    ///
    /// In order: below `minimum` → scale out now; above `maximum` → scale in now; an instance still starting → hold
    /// (one launch at a time, so a boot is never counted as missing capacity twice); load per serving instance above
    /// `target` for `sustainSeconds` → scale out to `ceil(load / target)` (at least one more, at most `maximum`),
    /// unless within `scaleOutCooldown` of the last change or of a refusal by the host; load that the instances left
    /// after removing one would carry at under `scaleInFraction × target` each, for `sustainSeconds` → scale in by one,
    /// unless within `scaleInCooldown` of the last change. Anything else holds.
    public static func decide(
        rule: ScalingRule, observation: PoolObservation, memory: ScalingMemory
    ) -> (ScalingDecision, ScalingMemory) {
        var memory = memory
        let now = observation.time
        let size = observation.serving + observation.starting
        let load = max(0, observation.load.isFinite ? observation.load : 0)
        let unit = rule.metric == .requests ? "requests/s" : "% CPU"
        func format(_ value: Double) -> String { String(format: "%.1f", value) }
        func since(_ date: Date?) -> Double { date.map { now.timeIntervalSince($0) } ?? .infinity }
        func hold(_ reason: String) -> (ScalingDecision, ScalingMemory) {
            (ScalingDecision(action: .hold, from: size, to: size, reason: reason), memory)
        }

        // The thresholds, tracked even while holding for other reasons.
        let above = observation.serving > 0 && load > rule.target * Double(observation.serving)
        let remaining = observation.serving - 1
        let below = remaining >= 1 && load < rule.scaleInFraction * rule.target * Double(remaining)
        memory.aboveSince = above ? (memory.aboveSince ?? now) : nil
        memory.belowSince = below ? (memory.belowSince ?? now) : nil

        if size < rule.minimum {
            if since(memory.hostFullAt) < rule.scaleOutCooldown {
                return hold("below --min \(rule.minimum) with \(size), but the host had no room \(format(since(memory.hostFullAt))) s ago; retrying after \(format(rule.scaleOutCooldown)) s")
            }
            memory.lastChange = now
            memory.aboveSince = nil
            return (ScalingDecision(action: .scaleOut, from: size, to: size + 1, reason: "below --min \(rule.minimum)"), memory)
        }
        if observation.serving > rule.maximum {
            memory.lastChange = now
            memory.belowSince = nil
            return (ScalingDecision(action: .scaleIn, from: size, to: size - 1, reason: "above --max \(rule.maximum)"), memory)
        }
        if observation.starting > 0 {
            return hold("\(observation.starting) instance(s) starting; load \(format(load)) \(unit)")
        }
        let perInstance = observation.serving > 0 ? load / Double(observation.serving) : 0
        if above {
            let sustained = since(memory.aboveSince)
            if sustained < rule.sustainSeconds {
                return hold("load \(format(perInstance)) \(unit) per instance above the target \(format(rule.target)) for \(format(sustained)) s of \(format(rule.sustainSeconds)) s")
            }
            if size >= rule.maximum {
                return hold("load \(format(perInstance)) \(unit) per instance above the target \(format(rule.target)), but the pool is at --max \(rule.maximum)")
            }
            if since(memory.hostFullAt) < rule.scaleOutCooldown {
                return hold("load above the target, but the host had no room \(format(since(memory.hostFullAt))) s ago; retrying after \(format(rule.scaleOutCooldown)) s")
            }
            if since(memory.lastChange) < rule.scaleOutCooldown {
                return hold("load above the target; cooling down (\(format(since(memory.lastChange))) s of \(format(rule.scaleOutCooldown)) s since the last change)")
            }
            let wanted = Int((load / rule.target).rounded(.up))
            let to = min(rule.maximum, max(size + 1, wanted))
            memory.lastChange = now
            memory.aboveSince = nil
            return (ScalingDecision(action: .scaleOut, from: size, to: to,
                                    reason: "load \(format(load)) \(unit) is \(format(perInstance)) per instance, above the target \(format(rule.target)) for \(format(rule.sustainSeconds)) s"), memory)
        }
        if below, size > rule.minimum {
            let sustained = since(memory.belowSince)
            let after = load / Double(remaining)
            if sustained < rule.sustainSeconds {
                return hold("load \(format(load)) \(unit) would be \(format(after)) per instance with one fewer, under \(format(rule.scaleInFraction * rule.target)), for \(format(sustained)) s of \(format(rule.sustainSeconds)) s")
            }
            if since(memory.lastChange) < rule.scaleInCooldown {
                return hold("load low; cooling down (\(format(since(memory.lastChange))) s of \(format(rule.scaleInCooldown)) s since the last change)")
            }
            memory.lastChange = now
            memory.belowSince = nil
            return (ScalingDecision(action: .scaleIn, from: size, to: size - 1,
                                    reason: "load \(format(load)) \(unit) would be \(format(after)) per instance with one fewer, under \(format(rule.scaleInFraction * rule.target)) for \(format(rule.sustainSeconds)) s"), memory)
        }
        return hold("load \(format(perInstance)) \(unit) per instance within the band \(format(rule.scaleInFraction * rule.target))–\(format(rule.target))")
    }

    /// Records that the host refused an instance (insufficient resources): scale-outs wait `scaleOutCooldown`.
    public static func hostFull(_ memory: ScalingMemory, at time: Date) -> ScalingMemory {
        var memory = memory
        memory.hostFullAt = time
        return memory
    }
}
