public import Foundation

/// Where an instance is in its life (docs/coordinator.md, "Life cycle").
public enum InstanceState: String, Sendable, Codable, Hashable, CaseIterable, CustomStringConvertible {
    /// Asked for; no resources yet.
    case requested
    /// Holds its partition; QEMU not started.
    case reserved
    /// QEMU runs; the child kernel boots.
    case booting
    /// The child's evidence is being appraised.
    case attesting
    /// Attested and admitted: it may receive secrets, volumes and peer channels.
    case admitted
    /// Its evidence did not satisfy the policy; it gets nothing and must be stopped.
    case rejected
    /// Something broke (QEMU died, a timeout, no resources); it must be stopped.
    case failed
    /// Being torn down: QEMU is being stopped, sockets removed.
    case stopping
    /// Gone: QEMU is not running and the partition is back in the pool. Final.
    case stopped

    public var description: String { rawValue }

    /// The states a QEMU process may run in, which reconciliation checks against the process table.
    public var mayHaveProcess: Bool { [.booting, .attesting, .admitted, .rejected, .failed, .stopping].contains(self) }

    /// Every state but `stopped`: a live instance keeps its name from being reused.
    public var isLive: Bool { self != .stopped }
}

/// One change of state, with when and why.
public struct InstanceTransition: Sendable, Codable, Hashable {
    /// nil for the first record (the instance was requested).
    public let from: InstanceState?
    public let to: InstanceState
    public let time: Date
    public let reason: String

    public init(from: InstanceState?, to: InstanceState, time: Date, reason: String) {
        self.from = from
        self.to = to
        self.time = time
        self.reason = reason
    }
}

/// The instance state machine: the allowed transitions, and one instance's state with its history.
///
/// ```
/// requested -> reserved | failed
/// reserved  -> booting  | rejected | failed | stopping
/// booting   -> attesting | rejected | failed | stopping
/// attesting -> admitted | rejected | failed | stopping
/// admitted  -> stopping | failed
/// rejected  -> stopping
/// failed    -> stopping
/// stopping  -> stopped
/// stopped   (final)
/// ```
///
/// `requested -> failed`: no partition could be made. `admitted -> failed`: the QEMU of an admitted instance
/// died (reconciliation finds that). `reserved | booting | attesting -> stopping`: the operator stopped it before a
/// verdict (`cmk stop`). Every other way out goes through `stopping`, where teardown happens, so an instance is
/// `stopped` only after its QEMU is known to be gone.
public struct InstanceLifecycle: Sendable, Codable, Hashable {
    /// The allowed transitions.
    public static let table: [InstanceState: Set<InstanceState>] = [
        .requested: [.reserved, .failed],
        .reserved: [.booting, .rejected, .failed, .stopping],
        .booting: [.attesting, .rejected, .failed, .stopping],
        .attesting: [.admitted, .rejected, .failed, .stopping],
        .admitted: [.stopping, .failed],
        .rejected: [.stopping],
        .failed: [.stopping],
        .stopping: [.stopped],
        .stopped: [],
    ]

    /// Whether the life cycle allows going from `from` to `to`.
    public static func allows(_ from: InstanceState, _ to: InstanceState) -> Bool {
        table[from, default: []].contains(to)
    }

    /// The current state.
    public private(set) var state: InstanceState
    /// Every transition, oldest first; the first is the request itself.
    public private(set) var history: [InstanceTransition]

    /// A new instance, `requested` at `time`.
    public init(requestedAt time: Date, reason: String = "requested") {
        state = .requested
        history = [InstanceTransition(from: nil, to: .requested, time: time, reason: reason)]
    }

    /// Restores a life cycle from its recorded history (the instance store); the history must follow the table.
    public init(history: [InstanceTransition]) throws(CoordinatorError) {
        guard let first = history.first, first.from == nil, first.to == .requested else {
            throw CoordinatorError(.illegalTransition, "a recorded life cycle must begin with the request")
        }
        self.state = .requested
        self.history = [first]
        for step in history.dropFirst() {
            guard step.from == state else {
                throw CoordinatorError(
                    .illegalTransition,
                    "a recorded transition starts from \(step.from.map(\.rawValue) ?? "nothing"), not from \(state)")
            }
            try transition(to: step.to, reason: step.reason, at: step.time)
        }
    }

    /// Moves to `state`, recording `reason` and `time`.
    ///
    /// - Throws: `illegalTransition` when the table does not allow it, or the reason is empty.
    public mutating func transition(to next: InstanceState, reason: String, at time: Date) throws(CoordinatorError) {
        guard Self.allows(state, next) else {
            let allowed = Self.table[state, default: []].map(\.rawValue).sorted()
            throw CoordinatorError(
                .illegalTransition,
                "an instance cannot go from \(state) to \(next); from \(state) it can go to "
                    + (allowed.isEmpty ? "nothing (\(state) is final)" : allowed.joined(separator: ", ")))
        }
        guard !reason.trimmingWhitespace().isEmpty else {
            throw CoordinatorError(.illegalTransition, "every transition needs a reason (\(state) -> \(next))")
        }
        history.append(InstanceTransition(from: state, to: next, time: time, reason: reason))
        state = next
    }
}
