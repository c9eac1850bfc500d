public import Foundation
import AuditLog

/// The pool's stable endpoint, as the controller drives it: the backends that receive traffic and what each served.
public protocol PoolTraffic: Sendable {
    /// Where clients connect (`127.0.0.1:PORT`).
    var endpoint: String { get }
    /// Replaces the backends at once (round robin over them); a backend left out gets no new requests, while the
    /// requests it is serving finish.
    func setBackends(_ backends: [PoolBackendAddress]) async
    /// Requests forwarded so far and requests in progress, per backend name.
    func counts() async -> [String: PoolBackendCount]
    /// Closes the endpoint.
    func close() async
}

/// One backend of the endpoint: a pool member and where its workload is reached.
public struct PoolBackendAddress: Sendable, Hashable {
    public var name: String
    public var address: String
    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }
}

public struct PoolBackendCount: Sendable, Hashable {
    public var requests: Int
    public var inFlight: Int
    public init(requests: Int, inFlight: Int) {
        self.requests = requests
        self.inFlight = inFlight
    }
}

/// How the controller launches and stops whole instances. The real one runs `cmk launch` and `cmk stop` (each
/// instance gets its own supervisor, exactly as a hand-launched one); tests may inject another.
public protocol PoolInstanceActions: Sendable {
    /// Launches, attests and (on `admit`) hands over instance `name`; returns when there is a verdict.
    func launch(_ name: String, spec: PoolSpec) async -> PoolLaunchResult
    /// Stops instance `name` and waits until its partition is reclaimed.
    func stop(_ name: String) async -> String?
    /// The workload address of an admitted instance (nil when it has none).
    func backendAddress(of name: String) async -> String?
}

/// How a pool member's launch ended.
public struct PoolLaunchResult: Sendable, Hashable {
    public var admitted: Bool
    /// A ``CoordinatorError`` code when the launch did not get to a verdict (`insufficient-resources` ...).
    public var errorCode: String?
    public var reason: String
    public var instanceID: String?
    public var auditSequence: Int64?
    public var measurement: String?

    public init(admitted: Bool, errorCode: String?, reason: String, instanceID: String? = nil,
                auditSequence: Int64? = nil, measurement: String? = nil) {
        self.admitted = admitted
        self.errorCode = errorCode
        self.reason = reason
        self.instanceID = instanceID
        self.auditSequence = auditSequence
        self.measurement = measurement
    }
}

/// The pool controller: measures the pool's load every interval, applies ``PoolScaling/decide(rule:observation:memory:)``,
/// launches whole attested instances (traffic only after admission) and drains and stops them, audits every decision
/// and writes `status.json` after every step (docs/pools.md).
public final class PoolController: @unchecked Sendable {
    public let spec: PoolSpec
    let files: PoolFiles
    let traffic: any PoolTraffic
    let actions: any PoolInstanceActions
    /// Asked before every scale-out (nil: only the launches' own reservations decide).
    let capacity: PoolHostCapacity?
    let log: @Sendable (String) -> Void
    let clock: @Sendable () -> Date

    private let lock = NSLock()
    private var status: PoolStatus
    private var finished: [(String, PoolLaunchResult)] = []
    private var stopped: [(String, String?)] = []
    private var nextIndex = 1
    private var rate = CounterRate()
    private var lastHoldReason: String?
    /// What a previous controller of this pool left (nil on a new pool).
    private let previous: PoolStatus?

    public init(
        spec: PoolSpec, state: CMKStateDirectory, traffic: any PoolTraffic, actions: any PoolInstanceActions,
        capacity: PoolHostCapacity? = nil, clock: @escaping @Sendable () -> Date = { Date() },
        log: @escaping @Sendable (String) -> Void
    ) {
        self.spec = spec
        self.capacity = capacity
        self.files = PoolFiles(state: state, name: spec.name)
        self.traffic = traffic
        self.actions = actions
        self.clock = clock
        self.log = log
        var status = PoolStatus(name: spec.name, controllerPID: getpid(), updatedAt: clock())
        status.endpoint = traffic.endpoint
        // Continue numbering after the members a previous controller made, and its memory (cool-downs) and events.
        let previous = files.readStatus()
        if let previous {
            let used = (previous.events.compactMap(\.instance) + previous.members.map(\.name))
                .compactMap { Int($0.split(separator: "-").last ?? "") }
            nextIndex = (used.max() ?? 0) + 1
            status.memory = previous.memory
            status.events = previous.events
        }
        self.previous = previous
        self.status = status
    }

    /// The current status (a copy).
    public var currentStatus: PoolStatus { lock.withLock { status } }

    /// Runs until `stopRequested` returns true, then drains and stops every member and returns.
    public func run(stopRequested: @escaping @Sendable () -> Bool) async {
        record(event: "controller-started", detail: "endpoint \(traffic.endpoint); rule \(describe(spec.rule))")
        await adoptPrevious()
        writeStatus()
        while !stopRequested() {
            await step()
            writeStatus()
            let until = clock().addingTimeInterval(spec.intervalSeconds)
            while clock() < until, !stopRequested() { try? await Task.sleep(for: .milliseconds(50)) }
        }
        await shutdown()
    }

    /// Takes over the members a previous controller of this pool left when it died (its members keep running: each
    /// has its own supervisor). Admitted ones serve again at once; launches still in progress (their `cmk launch`
    /// outlives the controller) are followed to their verdict and join only if admitted; ones that were being drained
    /// or stopped are stopped; ones that are gone are dropped. Nothing is launched in their place.
    func adoptPrevious() async {
        guard let previous, !previous.members.isEmpty else { return }
        let store = try? InstanceStore.openForReading(files.state)
        defer { store?.close() }
        var adopted: [String] = []
        var following: [(String, String)] = []
        var stopping: [String] = []
        var gone: [String] = []
        for old in previous.members {
            let record = (try? store?.instance(old.instanceID ?? old.name)) ?? nil
            guard let record, [.requested, .reserved, .booting, .attesting, .admitted, .stopping].contains(record.state)
            else {
                gone.append(old.name)
                continue
            }
            var member = old
            member.instanceID = record.id
            member.phaseSince = clock()
            member.inFlight = 0
            member.requests = 0
            if record.state == .stopping || old.phase == .draining || old.phase == .stopping {
                member.phase = .stopping
                stopping.append(old.name)
            } else if record.state == .admitted, let address = await actions.backendAddress(of: old.name) {
                member.phase = .serving
                member.backend = address
                member.auditSequence = record.auditSequence ?? old.auditSequence
                member.admittedAt = old.admittedAt ?? clock()
                adopted.append(old.name)
            } else if record.state == .admitted {
                member.phase = .stopping
                stopping.append(old.name)
            } else {
                member.phase = .starting
                following.append((old.name, record.id))
            }
            lock.withLock { status.members.append(member) }
        }
        await publishBackends()
        for name in stopping { stopInBackground(name) }
        for (name, id) in following { followLaunch(name, id: id) }
        let detail = "from the controller that stopped (pid \(previous.controllerPID)): serving \(adopted.joined(separator: ", ").ifEmpty("none")); "
            + "launch followed \(following.map(\.0).joined(separator: ", ").ifEmpty("none")); stopping \(stopping.joined(separator: ", ").ifEmpty("none")); "
            + "gone \(gone.joined(separator: ", ").ifEmpty("none"))"
        let sequence = audit(["event": "adopted", "serving": adopted.joined(separator: ","),
                              "following": following.map(\.0).joined(separator: ","),
                              "stopping": stopping.joined(separator: ","), "gone": gone.joined(separator: ","),
                              "previousController": String(previous.controllerPID)])
        record(event: "adopted", detail: detail, auditSequence: sequence, audited: false)
    }

    /// Follows a launch a previous controller started (its `cmk launch` still runs) until the instance store has its
    /// outcome: admitted, or not.
    func followLaunch(_ name: String, id: String) {
        let state = files.state
        let deadline = clock().addingTimeInterval(Double(spec.bootTimeoutSeconds) + 300)
        let clock = clock
        Task.detached { [weak self] in
            var result = PoolLaunchResult(admitted: false, errorCode: CoordinatorError.Code.launch.name,
                                          reason: "the launch started by the previous controller did not end in time")
            while clock() < deadline {
                let store = try? InstanceStore.openForReading(state)
                let record = (try? store?.instance(id)) ?? nil
                store?.close()
                if let record, ![.requested, .reserved, .booting, .attesting].contains(record.state) {
                    let admitted = record.state == .admitted
                    result = PoolLaunchResult(
                        admitted: admitted, errorCode: admitted ? nil : CoordinatorError.Code.launch.name,
                        reason: admitted ? "verdict admit" : "\(record.state.rawValue): \(record.reason)",
                        instanceID: record.id, auditSequence: record.auditSequence)
                    break
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
            self?.lock.withLock { self?.finished.append((name, result)) }
        }
    }

    func describe(_ rule: ScalingRule) -> String {
        "\(rule.metric.rawValue) target \(rule.target) \(rule.metric.unit), min \(rule.minimum), max \(rule.maximum), scale in under \(rule.scaleInFraction) × target, sustain \(rule.sustainSeconds) s, cool-down out \(rule.scaleOutCooldown) s / in \(rule.scaleInCooldown) s"
    }

    /// One measurement, one decision, its actions.
    func step() async {
        let now = clock()
        await collectLaunches(now: now)
        collectStops()
        let counts = await traffic.counts()
        let load = measureLoad(counts: counts, now: now)
        var status = lock.withLock { self.status }
        for index in status.members.indices {
            if let count = counts[status.members[index].name] {
                status.members[index].requests = count.requests
                status.members[index].inFlight = count.inFlight
                if count.requests > 0, status.members[index].firstServedAt == nil {
                    status.members[index].firstServedAt = now
                    let member = status.members[index]
                    lock.withLock { self.status.members = status.members }
                    record(event: "first-request", detail: reactionDetail(member, now: now), instance: member.name)
                    status = lock.withLock { self.status }
                }
            }
        }
        status.load = load
        let observation = PoolObservation(time: now, load: load, serving: status.serving, starting: status.starting)
        let (decision, memory) = PoolScaling.decide(rule: spec.rule, observation: observation, memory: status.memory)
        status.memory = memory
        status.lastDecision = decision
        status.updatedAt = now
        lock.withLock { self.status = status }

        switch decision.action {
        case .scaleOut:
            // The host's partitions first: launch only what fits, say host-full for the rest (never exceed the host).
            var to = decision.to
            let pending = status.members.filter { $0.phase == .starting }.map(\.name)
            if let room = capacity?.room(wanted: decision.to - decision.from, pending: pending), room.fits < room.wanted {
                to = decision.from + room.fits
                hostFull(wanted: room.wanted, fits: room.fits, refusal: room.refusal ?? "no room", decision: decision, now: now)
                if room.fits == 0 { break }
            } else {
                setCondition(.scaling, decision.reason)
            }
            let sequence = audit(["event": "scale-out", "from": String(decision.from), "to": String(to),
                                  "reason": decision.reason, "load": String(format: "%.2f", load)])
            record(event: "scale-out", detail: "\(decision.from) → \(to): \(decision.reason)", auditSequence: sequence,
                   audited: false)
            for _ in decision.from..<to { startMember(decidedAt: now) }
        case .scaleIn:
            setCondition(.scaling, decision.reason)
            let sequence = audit(["event": "scale-in", "from": String(decision.from), "to": String(decision.to),
                                  "reason": decision.reason, "load": String(format: "%.2f", load)])
            record(event: "scale-in", detail: "\(decision.from) → \(decision.to): \(decision.reason)", auditSequence: sequence,
                   audited: false)
            if let victim = lock.withLock({ self.status.members.last(where: { $0.phase == .serving }) }) {
                await drain(victim.name)
            }
        case .hold:
            let condition: PoolStatus.Condition
            if decision.reason.contains("at --max") {
                condition = .atMaximum
            } else if decision.reason.contains("host had no room") {
                condition = .hostFull
            } else if status.starting > 0 || status.members.contains(where: { $0.phase == .draining || $0.phase == .stopping }) {
                condition = .scaling
            } else {
                condition = status.serving >= spec.rule.minimum ? .steady : .starting
            }
            setCondition(condition, decision.reason)
            // Refusals to grow are audited once each time they begin, never every interval.
            let kind = condition == .atMaximum ? "at-max" : nil
            if let kind, lastHoldReason != kind {
                let sequence = audit(["event": "cannot-grow", "why": kind, "reason": decision.reason])
                record(event: "cannot-grow", detail: decision.reason, auditSequence: sequence, audited: false)
            }
            lastHoldReason = kind ?? (condition == .hostFull ? "host-full" : nil)
        }
    }

    /// The host's partitions cannot hold every member the rule wants: a state (condition `host-full`, one audit
    /// record per refusal, the next scale-out after the cool-down), never an error loop.
    func hostFull(wanted: Int, fits: Int, refusal: String, decision: ScalingDecision, now: Date) {
        lock.withLock { status.memory = PoolScaling.hostFull(status.memory, at: now) }
        let reason = "the rule wants \(decision.from) → \(decision.to) (\(decision.reason)); the host's partitions hold "
            + "\(fits) more: \(refusal)"
        setCondition(.hostFull, reason)
        let sequence = audit(["event": "cannot-grow", "why": "host-full", "wanted": String(wanted), "fits": String(fits),
                              "size": String(decision.from), "reason": refusal])
        record(event: "cannot-grow", detail: "host full: \(reason)", auditSequence: sequence, audited: false)
        lastHoldReason = "host-full"
    }

    func reactionDetail(_ member: PoolMember, now: Date) -> String {
        var parts: [String] = []
        if let decided = member.decidedAt {
            if let admitted = member.admittedAt {
                parts.append(String(format: "decision → admitted %.2f s", admitted.timeIntervalSince(decided)))
            }
            parts.append(String(format: "decision → first request %.2f s", now.timeIntervalSince(decided)))
        }
        return parts.isEmpty ? "first request served" : parts.joined(separator: ", ")
    }

    func measureLoad(counts: [String: PoolBackendCount], now: Date) -> Double {
        switch spec.rule.metric {
        case .requests:
            return rate.rate(counts.mapValues { Double($0.requests) }, at: now)
        case .cpu:
            // Percent of one CPU, summed over the serving members' QEMUs.
            let serving = lock.withLock { status.members.filter { $0.phase == .serving }.map(\.name) }
            var seconds: [String: Double] = [:]
            if let store = try? InstanceStore.openForReading(files.state) {
                for name in serving {
                    if let record = try? store.instance(name), let process = record.process,
                       ProcessIdentity.isRunning(pid: process.pid, startTime: process.startTime),
                       let used = ProcessCPUTime.seconds(pid: process.pid)
                    {
                        seconds[name] = used * 100
                    }
                }
                store.close()
            }
            return rate.rate(seconds, at: now)
        }
    }

    func setCondition(_ condition: PoolStatus.Condition, _ reason: String) {
        lock.withLock {
            status.condition = condition
            status.reason = reason
        }
    }

    func startMember(decidedAt: Date) {
        let name = lock.withLock { () -> String in
            let name = self.spec.instanceName(nextIndex)
            nextIndex += 1
            var member = PoolMember(name: name, phase: .starting, since: decidedAt)
            member.decidedAt = decidedAt
            status.members.append(member)
            return name
        }
        record(event: "launching", detail: "launching and attesting \(name) (no traffic before admission)", instance: name)
        let actions = actions
        let poolSpec = spec
        Task.detached { [weak self] in
            let result = await actions.launch(name, spec: poolSpec)
            self?.lock.withLock { self?.finished.append((name, result)) }
        }
    }

    /// Takes in launches that ended: an admitted member joins the backends now, and only now.
    func collectLaunches(now: Date) async {
        let ended = lock.withLock { () -> [(String, PoolLaunchResult)] in
            defer { finished = [] }
            return finished
        }
        for (name, result) in ended {
            if result.admitted, let address = await actions.backendAddress(of: name) {
                lock.withLock {
                    if let index = status.members.firstIndex(where: { $0.name == name }) {
                        status.members[index].phase = .serving
                        status.members[index].phaseSince = now
                        status.members[index].admittedAt = now
                        status.members[index].instanceID = result.instanceID
                        status.members[index].auditSequence = result.auditSequence
                        status.members[index].measurement = result.measurement
                        status.members[index].backend = address
                    }
                }
                await publishBackends()
                let sequence = audit(["event": "member-serving", "member": name, "instanceID": result.instanceID ?? "",
                                      "admissionRecord": result.auditSequence.map(String.init) ?? "", "backend": address],
                                     instance: name)
                let member = lock.withLock { status.members.first { $0.name == name } }
                let timing = member?.decidedAt.map { String(format: " %.2f s after the decision", now.timeIntervalSince($0)) } ?? ""
                record(event: "serving", detail: "admitted (audit record #\(result.auditSequence.map(String.init) ?? "?")) and added to the endpoint\(timing)",
                       instance: name, auditSequence: sequence, audited: false)
                continue
            }
            lock.withLock { status.members.removeAll { $0.name == name } }
            if result.admitted {
                // Admitted but without a workload address: it cannot serve; stop it rather than keep a partition idle.
                let sequence = audit(["event": "launch-failed", "member": name, "reason": "admitted, but no workload endpoint"], instance: name)
                record(event: "launch-failed", detail: "admitted, but no workload endpoint; stopping it", instance: name,
                       auditSequence: sequence, audited: false)
                stopInBackground(name)
            } else if result.errorCode == CoordinatorError.Code.insufficientResources.name {
                lock.withLock { status.memory = PoolScaling.hostFull(status.memory, at: now) }
                setCondition(.hostFull, "the host cannot fit another instance: \(result.reason)")
                let sequence = audit(["event": "cannot-grow", "why": "host-full", "member": name, "reason": result.reason])
                record(event: "cannot-grow", detail: "host full: \(result.reason)", instance: name, auditSequence: sequence, audited: false)
            } else {
                // A rejected or failed launch: back off like a full host, so a pool never loops on a failing launch.
                lock.withLock { status.memory = PoolScaling.hostFull(status.memory, at: now) }
                let sequence = audit(["event": "launch-failed", "member": name, "code": result.errorCode ?? "rejected",
                                      "reason": result.reason], instance: name)
                record(event: result.errorCode == nil ? "rejected" : "launch-failed", detail: result.reason, instance: name,
                       auditSequence: sequence, audited: false)
            }
        }
        // A serving member whose instance is gone (QEMU died, stopped by hand) leaves the backends at once.
        let serving = lock.withLock { status.members.filter { $0.phase == .serving } }
        if !serving.isEmpty, let store = try? InstanceStore.openForReading(files.state) {
            var lost: [String] = []
            for member in serving {
                if let record = try? store.instance(member.instanceID ?? member.name), record.state != .admitted {
                    lost.append(member.name)
                }
            }
            store.close()
            if !lost.isEmpty {
                lock.withLock { status.members.removeAll { lost.contains($0.name) } }
                await publishBackends()
                for name in lost {
                    let sequence = audit(["event": "member-lost", "member": name, "reason": "the instance is no longer admitted"], instance: name)
                    record(event: "member-lost", detail: "no longer admitted; removed from the endpoint", instance: name,
                           auditSequence: sequence, audited: false)
                }
            }
        }
    }

    func collectStops() {
        let done = lock.withLock { () -> [(String, String?)] in
            defer { stopped = [] }
            return stopped
        }
        for (name, failure) in done {
            lock.withLock { status.members.removeAll { $0.name == name } }
            let sequence = audit(["event": "member-stopped", "member": name, "result": failure ?? "stopped, partition reclaimed"], instance: name)
            record(event: "stopped", detail: failure ?? "stopped, partition reclaimed", instance: name, auditSequence: sequence, audited: false)
        }
    }

    func publishBackends() async {
        let backends = lock.withLock {
            status.members.filter { $0.phase == .serving }.compactMap { member in
                member.backend.map { PoolBackendAddress(name: member.name, address: $0) }
            }
        }
        await traffic.setBackends(backends)
    }

    /// Scale-in of one member: out of the backends first, in-flight requests finish (up to `drainSeconds`), then
    /// `cmk stop` in the background.
    func drain(_ name: String) async {
        let now = clock()
        lock.withLock {
            if let index = status.members.firstIndex(where: { $0.name == name }) {
                status.members[index].phase = .draining
                status.members[index].phaseSince = now
            }
        }
        await publishBackends()
        record(event: "draining", detail: "removed from the endpoint; waiting for in-flight requests", instance: name)
        writeStatus()
        let deadline = clock().addingTimeInterval(spec.drainSeconds)
        var inFlight = 0
        repeat {
            inFlight = await traffic.counts()[name]?.inFlight ?? 0
            if inFlight == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        } while clock() < deadline
        let detail = inFlight == 0
            ? String(format: "no request in flight after %.2f s", clock().timeIntervalSince(now))
            : "\(inFlight) request(s) still in flight after \(spec.drainSeconds) s; stopping anyway"
        let sequence = audit(["event": "member-drained", "member": name, "detail": detail], instance: name)
        record(event: "drained", detail: detail, instance: name, auditSequence: sequence, audited: false)
        stopInBackground(name)
    }

    func stopInBackground(_ name: String) {
        lock.withLock {
            if let index = status.members.firstIndex(where: { $0.name == name }) {
                status.members[index].phase = .stopping
                status.members[index].phaseSince = clock()
            }
        }
        let actions = actions
        Task.detached { [weak self] in
            let failure = await actions.stop(name)
            self?.lock.withLock { self?.stopped.append((name, failure)) }
        }
    }

    /// Deleting the pool: traffic off, every member stopped (starting ones too), the endpoint closed.
    func shutdown() async {
        setCondition(.deleting, "stopping every member")
        record(event: "deleting", detail: "the controller was asked to stop: draining and stopping every member")
        writeStatus()
        let members = lock.withLock { status.members }
        for member in members where member.phase == .serving { await drain(member.name) }
        for member in members where member.phase == .starting { stopInBackground(member.name) }
        // Wait for the stops (and for launches that end meanwhile, which are stopped as they end).
        let deadline = clock().addingTimeInterval(Double(spec.bootTimeoutSeconds) + 120)
        while clock() < deadline {
            collectStops()
            let ended = lock.withLock { () -> [(String, PoolLaunchResult)] in
                defer { finished = [] }
                return finished
            }
            for (name, _) in ended { stopInBackground(name) }
            if lock.withLock({ status.members.isEmpty }) { break }
            writeStatus()
            try? await Task.sleep(for: .milliseconds(200))
        }
        await traffic.close()
        setCondition(.stopped, "the controller stopped")
        record(event: "controller-stopped", detail: "every member stopped; endpoint closed")
        writeStatus()
    }

    // MARK: Records

    @discardableResult
    func audit(_ details: [String: String], instance: String? = nil) -> Int64? {
        var details = details
        details["pool"] = spec.name
        do {
            let log = try AuditLog(path: files.state.auditLog, keyDirectory: files.state.keysDirectory)
            return try log.append(AuditEntry(actor: "coordinator:pool", kind: "pool-event", instance: instance, details: details)).sequence
        } catch {
            self.log("cannot append to the audit log: \(error)")
            return nil
        }
    }

    func record(event: String, detail: String, instance: String? = nil, auditSequence: Int64? = nil, audited: Bool = true) {
        var sequence = auditSequence
        if audited, sequence == nil {
            var details = ["event": event, "detail": detail]
            if let instance { details["member"] = instance }
            sequence = audit(details, instance: instance)
        }
        let entry = PoolEvent(time: clock(), event: event, detail: detail, instance: instance, auditSequence: sequence)
        lock.withLock {
            status.events.append(entry)
            if status.events.count > 200 { status.events.removeFirst(status.events.count - 200) }
        }
        log("\(event)\(instance.map { " \($0)" } ?? ""): \(detail)\(sequence.map { " (audit #\($0))" } ?? "")")
        writeStatus()
    }

    func writeStatus() {
        let snapshot = lock.withLock { () -> PoolStatus in
            status.updatedAt = clock()
            return status
        }
        do { try files.writeStatus(snapshot) } catch { log("cannot write \(files.status.path): \(error)") }
    }
}

extension String {
    fileprivate func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}
