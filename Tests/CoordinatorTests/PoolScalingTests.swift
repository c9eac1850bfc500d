import Coordinator
import Foundation
import Testing

@Suite("the pool scaling rule")
struct PoolScalingTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let rule = ScalingRule(
        metric: .requests, target: 10, minimum: 1, maximum: 3, scaleInFraction: 0.5, sustainSeconds: 3,
        scaleOutCooldown: 10, scaleInCooldown: 15)

    /// Feeds one observation per second from `start + from` to `start + to` with the given load and sizes, and returns
    /// every decision with its second.
    static func run(
        _ rule: ScalingRule = rule, load: Double, serving: Int, starting: Int = 0, from: Int = 0, to: Int,
        memory: inout ScalingMemory
    ) -> [(Int, ScalingDecision)] {
        var decisions: [(Int, ScalingDecision)] = []
        for second in from...to {
            let observation = PoolObservation(
                time: start.addingTimeInterval(Double(second)), load: load, serving: serving, starting: starting)
            let (decision, next) = PoolScaling.decide(rule: rule, observation: observation, memory: memory)
            memory = next
            decisions.append((second, decision))
        }
        return decisions
    }

    @Test("an empty pool below --min scales out at once, whatever the load")
    func belowMinimum() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 0, serving: 0, to: 0, memory: &memory)
        #expect(decisions[0].1.action == .scaleOut)
        #expect(decisions[0].1.from == 0 && decisions[0].1.to == 1)
    }

    @Test("load above the target scales out only after it was sustained, and to ceil(load / target) within --max")
    func sustainedScaleOut() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 25, serving: 1, to: 5, memory: &memory)
        let outs = decisions.filter { $0.1.action == .scaleOut }
        #expect(outs.count == 1)
        #expect(outs.first?.0 == 3)  // above since second 0, sustained 3 s at second 3
        #expect(outs.first?.1.to == 3)  // ceil(25 / 10)
        #expect(decisions[1].1.action == .hold && decisions[1].1.reason.contains("for 1.0 s of 3.0 s"))
    }

    @Test("a dip below the target restarts the sustain timer (no flapping on a spike)")
    func spikeDoesNotScale() {
        var memory = ScalingMemory()
        _ = Self.run(load: 25, serving: 1, to: 2, memory: &memory)
        _ = Self.run(load: 8, serving: 1, from: 3, to: 3, memory: &memory)
        let after = Self.run(load: 25, serving: 1, from: 4, to: 6, memory: &memory)
        #expect(after.allSatisfy { $0.1.action == .hold })
        let later = Self.run(load: 25, serving: 1, from: 7, to: 7, memory: &memory)
        #expect(later[0].1.action == .scaleOut)
    }

    @Test("never above --max: a pool at --max under load holds and says so")
    func holdsAtMaximum() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 100, serving: 3, to: 20, memory: &memory)
        #expect(decisions.allSatisfy { $0.1.action == .hold })
        #expect(decisions.last?.1.reason.contains("at --max 3") == true)
    }

    @Test("a scale-out never goes past --max even when the load asks for more")
    func scaleOutCappedAtMaximum() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 1000, serving: 1, to: 3, memory: &memory)
        #expect(decisions.last?.1.action == .scaleOut)
        #expect(decisions.last?.1.to == 3)
    }

    @Test("while an instance starts the pool holds, so one boot is not counted as missing capacity twice")
    func holdsWhileStarting() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 50, serving: 1, starting: 1, to: 30, memory: &memory)
        #expect(decisions.allSatisfy { $0.1.action == .hold && $0.1.reason.contains("starting") })
    }

    @Test("the scale-out cool-down holds a second scale-out after a change")
    func scaleOutCooldown() {
        var memory = ScalingMemory(lastChange: Self.start)
        let early = Self.run(load: 50, serving: 2, to: 9, memory: &memory)
        #expect(early.allSatisfy { $0.1.action == .hold })
        #expect(early.last?.1.reason.contains("cooling down") == true)
        let later = Self.run(load: 50, serving: 2, from: 10, to: 10, memory: &memory)
        #expect(later[0].1.action == .scaleOut)
    }

    @Test("hysteresis: load between scaleInFraction × target and the target changes nothing")
    func hysteresisBand() {
        var memory = ScalingMemory()
        // Two instances, 12 requests/s: one fewer would carry 12 > 0.5 × 10; each carries 6 < 10.
        let decisions = Self.run(load: 12, serving: 2, to: 60, memory: &memory)
        #expect(decisions.allSatisfy { $0.1.action == .hold })
    }

    @Test("low load scales in by one after it was sustained and the scale-in cool-down passed, never below --min")
    func scaleIn() {
        var memory = ScalingMemory(lastChange: Self.start)
        let decisions = Self.run(load: 2, serving: 3, to: 20, memory: &memory)
        let ins = decisions.filter { $0.1.action == .scaleIn }
        #expect(ins.count == 1)
        #expect(ins.first?.0 == 15)  // the cool-down (15 s) outlasts the sustain time (3 s)
        #expect(ins.first?.1.from == 3 && ins.first?.1.to == 2)
        var atMinimum = ScalingMemory()
        let none = Self.run(load: 0, serving: 1, to: 60, memory: &atMinimum)
        #expect(none.allSatisfy { $0.1.action == .hold })
    }

    @Test("more serving instances than --max scale in at once")
    func aboveMaximum() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: 100, serving: 4, to: 0, memory: &memory)
        #expect(decisions[0].1.action == .scaleIn && decisions[0].1.to == 3)
    }

    @Test("a host that had no room holds scale-outs for the cool-down, then tries again (no retry loop)")
    func hostFullBacksOff() {
        var memory = PoolScaling.hostFull(ScalingMemory(), at: Self.start)
        let held = Self.run(load: 50, serving: 1, to: 9, memory: &memory)
        #expect(held.allSatisfy { $0.1.action == .hold })
        #expect(held.last?.1.reason.contains("host had no room") == true)
        let retried = Self.run(load: 50, serving: 1, from: 10, to: 10, memory: &memory)
        #expect(retried[0].1.action == .scaleOut)
        // Below --min the same back-off applies.
        var empty = PoolScaling.hostFull(ScalingMemory(), at: Self.start)
        #expect(Self.run(load: 0, serving: 0, to: 5, memory: &empty).allSatisfy { $0.1.action == .hold })
    }

    @Test("the CPU metric uses the same rule on percent of one CPU")
    func cpuMetric() {
        let rule = ScalingRule(metric: .cpu, target: 60, minimum: 1, maximum: 2, sustainSeconds: 0)
        var memory = ScalingMemory()
        let decisions = Self.run(rule, load: 95, serving: 1, to: 0, memory: &memory)
        #expect(decisions[0].1.action == .scaleOut)
        #expect(decisions[0].1.reason.contains("% CPU"))
    }

    @Test("a load that is not a number counts as none")
    func nonFiniteLoad() {
        var memory = ScalingMemory()
        let decisions = Self.run(load: .nan, serving: 2, to: 20, memory: &memory)
        #expect(decisions.contains { $0.1.action == .scaleIn })
        #expect(!decisions.contains { $0.1.action == .scaleOut })
    }

    @Test("invalid rules are refused with every problem named", arguments: [
        (ScalingRule(metric: .requests, target: 10, minimum: 3, maximum: 2), "--min 3 is above --max 2"),
        (ScalingRule(metric: .requests, target: 0, minimum: 1, maximum: 2), "--target must be a positive number"),
        (ScalingRule(metric: .requests, target: .infinity, minimum: 1, maximum: 2), "--target must be a positive number"),
        (ScalingRule(metric: .requests, target: 10, minimum: -1, maximum: 2), "--min must be 0 or more"),
        (ScalingRule(metric: .requests, target: 10, minimum: 0, maximum: 0), "--max must be 1 or more"),
        (ScalingRule(metric: .requests, target: 10, minimum: 0, maximum: 65), "--max must be at most 64"),
        (ScalingRule(metric: .requests, target: 10, minimum: 1, maximum: 2, scaleInFraction: 1), "scale-in fraction"),
        (ScalingRule(metric: .requests, target: 10, minimum: 1, maximum: 2, sustainSeconds: -1), "--sustain"),
    ])
    func invalidRules(rule: ScalingRule, message: String) {
        #expect {
            try rule.validate()
        } throws: { error in
            guard let error = error as? CoordinatorError else { return false }
            return error.code == .invalidArgument && error.reason.contains(message)
        }
    }

    @Test("pool names are checked")
    func poolNames() throws {
        try PoolSpec.validateName("web")
        try PoolSpec.validateName("web-2")
        for bad in ["", "Web", "2web", "web-", "we b", "web_1", String(repeating: "a", count: 41)] {
            #expect(throws: CoordinatorError.self, "\(bad)") { try PoolSpec.validateName(bad) }
        }
    }

    @Test("counter rates: first sample 0, deltas over elapsed time, restarted counters and new keys add nothing")
    func counterRate() {
        var rate = CounterRate()
        #expect(rate.rate(["a": 10], at: Self.start) == 0)
        #expect(rate.rate(["a": 30, "b": 5], at: Self.start.addingTimeInterval(2)) == 10)
        #expect(rate.rate(["a": 2, "b": 9], at: Self.start.addingTimeInterval(3)) == 4)
    }

    @Test("CPU ticks come from fields 14 and 15 of /proc/PID/stat, counted after the command name")
    func statTicks() throws {
        let text = "4242 (qemu-system-x86 (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 3 0 99 0 0"
        #expect(ProcessCPUTime.ticks(statText: text) == 1801)
        #expect(ProcessCPUTime.ticks(statText: "1 (x) S 1 2") == nil)
        #expect(ProcessCPUTime.ticks(statText: "garbage") == nil)
        // This process runs, so it has a CPU time.
        #expect(ProcessCPUTime.seconds(pid: getpid()) != nil)
    }
}
