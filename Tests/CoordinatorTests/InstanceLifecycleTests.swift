import Coordinator
import Foundation
import Testing

@Suite("the instance life cycle")
struct InstanceLifecycleTests {
    static let expectedTable: Set<String> = [
        "requested>reserved", "requested>failed",
        "reserved>booting", "reserved>rejected", "reserved>failed", "reserved>stopping",
        "booting>attesting", "booting>rejected", "booting>failed", "booting>stopping",
        "attesting>admitted", "attesting>rejected", "attesting>failed", "attesting>stopping",
        "admitted>stopping", "admitted>failed",
        "rejected>stopping", "failed>stopping",
        "stopping>stopped",
    ]

    @Test("exactly the documented transitions are allowed, every other pair is refused")
    func transitionTable() {
        for from in InstanceState.allCases {
            for to in InstanceState.allCases {
                #expect(
                    InstanceLifecycle.allows(from, to) == Self.expectedTable.contains("\(from)>\(to)"),
                    "\(from) -> \(to)")
            }
        }
    }

    @Test("the happy path records each transition with its time and reason")
    func happyPath() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var lifecycle = InstanceLifecycle(requestedAt: start)
        let steps: [InstanceState] = [.reserved, .booting, .attesting, .admitted, .stopping, .stopped]
        for (index, state) in steps.enumerated() {
            try lifecycle.transition(
                to: state, reason: "step \(index)", at: start.addingTimeInterval(Double(index + 1)))
        }
        #expect(lifecycle.state == .stopped)
        #expect(lifecycle.history.map(\.to) == [.requested] + steps)
        #expect(
            lifecycle.history[3]
                == InstanceTransition(
                    from: .booting, to: .attesting, time: start.addingTimeInterval(3), reason: "step 2"))
        #expect(try InstanceLifecycle(history: lifecycle.history) == lifecycle)
    }

    @Test("an illegal transition is an error that says what is allowed, and changes nothing")
    func illegalTransition() throws {
        var lifecycle = InstanceLifecycle(requestedAt: Date())
        try lifecycle.transition(to: .reserved, reason: "cpus 1", at: Date())
        let before = lifecycle
        #expect {
            try lifecycle.transition(to: .admitted, reason: "skip the attestation", at: Date())
        } throws: { error in
            let error = error as? CoordinatorError
            return error?.code == .illegalTransition
                && error?.reason == "an instance cannot go from reserved to admitted; from reserved it can go to "
                    + "booting, failed, rejected, stopping"
        }
        #expect(lifecycle == before)
        try lifecycle.transition(to: .failed, reason: "no QEMU", at: Date())
        try lifecycle.transition(to: .stopping, reason: "cleanup", at: Date())
        try lifecycle.transition(to: .stopped, reason: "done", at: Date())
        #expect {
            try lifecycle.transition(to: .requested, reason: "again", at: Date())
        } throws: { ($0 as? CoordinatorError)?.reason.contains("stopped is final") == true }
    }

    @Test("a transition needs a reason")
    func reasonRequired() {
        var lifecycle = InstanceLifecycle(requestedAt: Date())
        #expect(throws: CoordinatorError.self) { try lifecycle.transition(to: .reserved, reason: "  ", at: Date()) }
    }

    @Test("a recorded history that does not follow the table is refused")
    func badHistory() {
        let now = Date()
        let skipping = [
            InstanceTransition(from: nil, to: .requested, time: now, reason: "r"),
            InstanceTransition(from: .requested, to: .admitted, time: now, reason: "x"),
        ]
        let gap = [
            InstanceTransition(from: nil, to: .requested, time: now, reason: "r"),
            InstanceTransition(from: .booting, to: .attesting, time: now, reason: "x"),
        ]
        for history in [skipping, gap, []] {
            #expect(throws: CoordinatorError.self) { try InstanceLifecycle(history: history) }
        }
    }
}
