public import Foundation
import GRDB

extension CMKStateDirectory {
    /// The instance store (SQLite, WAL).
    public var instanceStore: URL { url.appendingPathComponent("instances.sqlite") }
    /// The lock a coordinator that changes instances holds (``StateLock``).
    public var coordinatorLock: URL { url.appendingPathComponent("coordinator.lock") }
}

/// The instances of one installation and every change of their state, in `<state-dir>/instances.sqlite`.
///
/// One writer at a time: a store opened for writing holds the state folder's ``StateLock`` until it is closed,
/// so a second coordinator fails at once with a message naming the first one's pid; SQLite's own locking
/// (WAL, `BEGIN IMMEDIATE`) backs it up. Every change is one transaction. The partitions are not kept anywhere
/// else: each allocation rebuilds the ``PartitionAllocator`` from the held partitions inside the transaction
/// that records the new one. Readers (``openForReading(_:options:)``, for `cmk ps`) take no lock and never
/// block the writer.
public final class InstanceStore: Sendable {
    /// How the store behaves.
    public struct Options: Sendable {
        /// What the host keeps for itself when partitions are allocated.
        public var reserve: HostReserve
        /// How long to wait for SQLite's write lock (held briefly by a reader's checkpoint, or a crashed writer's
        /// recovery) before failing.
        public var busyTimeout: TimeInterval
        /// The clock for transition times (inject a fixed one in tests).
        public var clock: @Sendable () -> Date
        /// How long opening for writing waits for the state lock when another process holds it (zero: fail at
        /// once). Supervisors hold it only for one change at a time, so writers that share the state folder with
        /// running supervisors wait a little instead of failing; the short default also covers a descriptor a
        /// forking child holds until its `exec`.
        public var lockWait: Duration

        public init(
            reserve: HostReserve = .default, busyTimeout: TimeInterval = 10,
            clock: @escaping @Sendable () -> Date = { Date() }, lockWait: Duration = .seconds(2)
        ) {
            self.reserve = reserve
            self.busyTimeout = busyTimeout
            self.clock = clock
            self.lockWait = lockWait
        }
    }

    /// The SQLite file.
    public let path: URL
    public let options: Options
    /// The state lock; nil for a store opened for reading.
    public let lock: StateLock?
    let pool: DatabasePool

    /// Opens the store of `state` for writing: takes the state lock, then opens (creating and migrating when
    /// needed) `instances.sqlite`.
    ///
    /// - Throws: `stateLocked` when another coordinator holds the lock; `unsupportedSchema` when a newer cmk
    ///   wrote the store; `database` or `fileSystem` when it cannot be opened.
    public init(_ state: CMKStateDirectory, options: Options = Options()) throws(CoordinatorError) {
        do {
            try state.prepare()
        } catch {
            throw CoordinatorError(.fileSystem, "cannot create the state folder \(state.url.path): \(error)")
        }
        let lock = try StateLock(path: state.coordinatorLock, wait: options.lockWait)
        self.lock = lock
        self.path = state.instanceStore
        self.options = options
        do {
            let pool = try Self.openPool(state.instanceStore, options: options, readonly: false)
            self.pool = pool
            try Self.database("migrate the instance store") {
                let migrator = InstanceSchema.migrator
                if try pool.read({ try migrator.hasBeenSuperseded($0) }) {
                    throw CoordinatorError(
                        .unsupportedSchema,
                        "the instance store \(state.instanceStore.path) was written by a newer "
                            + "cmk; upgrade cmk")
                }
                try migrator.migrate(pool)
            }
        } catch {
            lock.release()
            throw error
        }
    }

    private init(path: URL, options: Options, pool: DatabasePool) {
        self.path = path
        self.options = options
        self.lock = nil
        self.pool = pool
    }

    /// Opens the store of `state` to read it, without the lock; nil when there is no store yet (no instance was
    /// ever reserved).
    public static func openForReading(
        _ state: CMKStateDirectory, options: Options = Options()
    ) throws(CoordinatorError) -> InstanceStore? {
        guard FileManager.default.fileExists(atPath: state.instanceStore.path) else { return nil }
        let pool = try openPool(state.instanceStore, options: options, readonly: true)
        // A writer may be creating or migrating the store right now (each migration is its own transaction): an
        // incomplete layout gets up to two seconds to complete before it counts as an older one.
        var attempt = 0
        while true {
            do {
                try database("read the instance store's schema") {
                    let migrator = InstanceSchema.migrator
                    try pool.read { db in
                        if try migrator.hasBeenSuperseded(db) {
                            throw CoordinatorError(
                                .unsupportedSchema,
                                "the instance store \(state.instanceStore.path) was written by a newer cmk; upgrade cmk")
                        }
                        guard try migrator.hasCompletedMigrations(db) else {
                            throw CoordinatorError(
                                .unsupportedSchema,
                                "the instance store \(state.instanceStore.path) has an older layout; any cmk command "
                                    + "that changes instances upgrades it")
                        }
                    }
                }
                break
            } catch where error.code == .unsupportedSchema && error.reason.contains("older layout") && attempt < 20 {
                attempt += 1
                usleep(100_000)
            }
        }
        return InstanceStore(path: state.instanceStore, options: options, pool: pool)
    }

    private static func openPool(
        _ path: URL, options: Options, readonly: Bool
    ) throws(CoordinatorError) -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(options.busyTimeout)
        configuration.readonly = readonly
        configuration.label = "cmk.instances"
        if !readonly {
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        }
        return try database("open the instance store at \(path.path)") {
            try DatabasePool(path: path.path, configuration: configuration)
        }
    }

    /// Whether the store was opened for writing (and holds the state lock).
    public var isWritable: Bool { lock != nil }

    /// Closes the database and releases the state lock; the store cannot be used afterwards.
    public func close() {
        try? pool.close()
        lock?.release()
    }

    // MARK: Reading

    /// The instances, oldest first; stopped ones only when asked for.
    public func instances(includeStopped: Bool = false) throws(CoordinatorError) -> [InstanceRecord] {
        try Self.database("read the instances") {
            try pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM instance \(includeStopped ? "" : "WHERE state != 'stopped'") "
                        + "ORDER BY created_ms, rowid"
                ).map(Self.record)
            }
        }
    }

    /// The instance with this id, else the live one with this name, else the newest stopped one with it.
    public func instance(_ idOrName: String) throws(CoordinatorError) -> InstanceRecord? {
        try Self.database("look up instance \(idOrName)") {
            try pool.read { db in try Self.find(db, idOrName).map(Self.record) }
        }
    }

    /// Every transition of the instance `id`, oldest first.
    public func history(of id: String) throws(CoordinatorError) -> [InstanceTransition] {
        try Self.database("read the history of instance \(id)") { try pool.read { db in try Self.history(db, id) } }
    }

    /// The allocator as the held partitions make it now (what `cmk host` reports as free).
    public func allocator(for inventory: HostInventory) throws(CoordinatorError) -> PartitionAllocator {
        try Self.database("read the held partitions") {
            try pool.read { db in try Self.allocator(db, inventory: inventory, reserve: options.reserve) }
        }
    }

    // MARK: Changing

    /// Records a new instance and gives it a partition, in one transaction: it is stored as `reserved` (with its
    /// `requested` and `reserved` transitions), or not at all.
    ///
    /// - Throws: `invalidArgument` for a bad name or request; `nameInUse` when a live instance has the name;
    ///   `insufficientResources` saying what is free.
    public func reserve(
        _ request: InstanceRequest, on inventory: HostInventory
    ) throws(CoordinatorError) -> InstanceRecord {
        try requireWritable()
        try Self.validate(name: request.name)
        let now = options.clock()
        let id = UUID().uuidString.lowercased()
        let reserve = options.reserve
        return try write("reserve a partition for \(request.name)") { db in
            if let row = try Row.fetchOne(
                db, sql: "SELECT state FROM instance WHERE name = ? AND state != 'stopped'", arguments: [request.name])
            {
                let state: String = row["state"]
                throw CoordinatorError(
                    .nameInUse, "an instance named \(request.name) is \(state); stop it or choose another name")
            }
            var allocator = try Self.allocator(db, inventory: inventory, reserve: reserve)
            let partition = try allocator.allocate(request.resources, for: id)
            let resources = request.resources
            var lifecycle = InstanceLifecycle(
                requestedAt: now,
                reason: "asked for \(cpuCountText(resources.cpuCount))\(resources.allowSharedCores ? " (shared)" : "")"
                    + " and \(resources.memoryMiB) MiB")
            try lifecycle.transition(
                to: .reserved,
                reason: "given cpus \(CPUList.format(partition.cpus)) on node\(partition.nodes.count == 1 ? "" : "s") "
                    + "\(CPUList.format(partition.nodes)) and \(partition.memoryMiB) MiB", at: now)
            let record = InstanceRecord(
                id: id, name: request.name, state: lifecycle.state, reason: lifecycle.history.last!.reason,
                partition: partition, holdsPartition: true, policy: request.policy, profile: request.profile,
                process: nil, sockets: [:], evidenceDigest: nil, auditSequence: nil, createdAt: now, updatedAt: now,
                supervisor: request.supervisor)
            try Self.insert(db, record)
            for step in lifecycle.history { try Self.insert(db, step, of: id) }
            return record
        }
    }

    /// Moves the instance `idOrName` to `state`, recording `reason`, and applies `changes`, in one transaction.
    ///
    /// Entering `booting` needs the QEMU's identity (in `changes` or already recorded). Entering `stopped`
    /// releases the partition; entering `rejected` or `failed` releases it too when no QEMU was ever recorded or
    /// `changes.processGone` says it is gone.
    ///
    /// - Throws: `unknownInstance`; `illegalTransition` when the life cycle does not allow the change.
    @discardableResult
    public func transition(
        _ idOrName: String, to state: InstanceState, reason: String, changes: InstanceChanges = InstanceChanges()
    ) throws(CoordinatorError) -> InstanceRecord {
        try requireWritable()
        let now = options.clock()
        return try write("move instance \(idOrName) to \(state)") { db in
            guard let row = try Self.find(db, idOrName) else { throw Self.unknown(idOrName) }
            var record = try Self.record(row)
            return try Self.apply(db, &record, to: state, reason: reason, changes: changes, at: now)
        }
    }

    /// Sets fields of the instance `idOrName` without changing its state (sockets, the audit sequence ...). With
    /// `changes.processGone`, a rejected or failed instance gives its partition back.
    @discardableResult
    public func update(_ idOrName: String, _ changes: InstanceChanges) throws(CoordinatorError) -> InstanceRecord {
        try requireWritable()
        let now = options.clock()
        return try write("update instance \(idOrName)") { db in
            guard let row = try Self.find(db, idOrName) else { throw Self.unknown(idOrName) }
            var record = try Self.record(row)
            Self.merge(changes, into: &record)
            if changes.processGone, record.state == .rejected || record.state == .failed { record.holdsPartition = false }
            record.updatedAt = now
            try Self.save(db, record)
            return record
        }
    }

    // MARK: Reconciliation

    /// Brings the store in line with the processes that really run, after this coordinator took over the state
    /// folder (docs/coordinator.md, "Reconciliation"), in one transaction. Call it right after opening the store
    /// and before reserving.
    ///
    /// An instance whose supervisor (``InstanceRecord/supervisor``) still runs is left alone: that process owns
    /// its life cycle. Every other one was left behind by a process that died: an instance caught in the middle of
    /// its launch (`requested` to `attesting`) has its QEMU killed — the recorded one and any process carrying its
    /// marker (``QEMUInstanceMarker``) — and is marked failed, its partition released once no QEMU of it runs; an
    /// admitted one whose QEMU runs is re-adopted as it is.
    ///
    /// - Parameter processes: the process table (``ProcessTable/host`` on a real host).
    /// - Returns: what was done to each instance that is not stopped.
    @discardableResult
    public func reconcile(processes: ProcessTable = .host) throws(CoordinatorError) -> [ReconciliationOutcome] {
        try requireWritable()
        let now = options.clock()
        return try write("reconcile the instance store") { db in
            var outcomes: [ReconciliationOutcome] = []
            for row in try Row.fetchAll(
                db, sql: "SELECT * FROM instance WHERE state != 'stopped' ORDER BY created_ms, rowid")
            {
                var record = try Self.record(row)
                let before = record.state
                if let supervisor = record.supervisor, processes.isRunning(supervisor.pid, supervisor.startTime) {
                    outcomes.append(
                        ReconciliationOutcome(
                            instanceID: record.id, name: record.name, previousState: before, state: record.state,
                            action: .supervised, reason: "its supervisor (\(supervisor)) runs and owns it"))
                    continue
                }
                let orphaned =
                    record.supervisor.map { "its supervisor (\($0)) is gone" }
                    ?? "no supervisor runs it"
                let alive = record.process.map { processes.isRunning($0.pid, $0.startTime) } ?? false
                let gone =
                    record.process.map { "its QEMU (\($0)) is no longer running" } ?? "no QEMU was recorded for it"
                /// Kills every QEMU of the instance; returns what was killed and whether none is left.
                func killQEMUs() -> (killed: [ProcessIdentity], allGone: Bool) {
                    var targets = processes.markedQEMUs(record.id)
                    if alive, let recorded = record.process, !targets.contains(recorded) { targets.append(recorded) }
                    var allGone = true
                    for target in targets where !processes.kill(target) { allGone = false }
                    return (targets, allGone)
                }
                func describe(_ killed: [ProcessIdentity], _ allGone: Bool) -> String {
                    if killed.isEmpty { return gone }
                    let list = killed.map { "pid \($0.pid)" }.joined(separator: ", ")
                    return allGone ? "its QEMU (\(list)) was killed" : "its QEMU (\(list)) could not be killed"
                }
                let action: ReconciliationOutcome.Action
                let reason: String
                switch record.state {
                case .requested, .reserved, .booting, .attesting:
                    let (killed, allGone) = killQEMUs()
                    let stage = record.state == .requested || record.state == .reserved ? "before booting it" : "while it was \(record.state.rawValue)"
                    (action, reason) = (
                        killed.isEmpty ? .failed : .killed,
                        "\(orphaned) \(stage); \(describe(killed, allGone)) (found while reconciling)"
                    )
                    try Self.apply(
                        db, &record, to: .failed, reason: reason, changes: .init(processGone: allGone), at: now)
                case .admitted:
                    if alive {
                        (action, reason) = (.readopted, "its QEMU (\(record.process!)) still runs; \(orphaned)")
                    } else {
                        let (killed, allGone) = killQEMUs()
                        (action, reason) = (.failed, "\(gone); \(orphaned) (found while reconciling)")
                        _ = killed
                        try Self.apply(
                            db, &record, to: .failed, reason: reason, changes: .init(processGone: allGone), at: now)
                    }
                case .stopping:
                    let (killed, allGone) = killQEMUs()
                    if allGone {
                        (action, reason) = (
                            .stopped, "\(describe(killed, allGone)); teardown complete (found while reconciling)"
                        )
                        try Self.apply(
                            db, &record, to: .stopped, reason: reason, changes: .init(processGone: true), at: now)
                    } else {
                        (action, reason) = (.readopted, "\(describe(killed, allGone)); stop it again")
                    }
                case .rejected, .failed:
                    let (killed, allGone) = killQEMUs()
                    guard allGone else {
                        (action, reason) = (.readopted, "\(describe(killed, allGone)); stop it again")
                        break
                    }
                    guard record.holdsPartition else { continue }
                    (action, reason) = (
                        killed.isEmpty ? .reclaimed : .killed, "\(describe(killed, allGone)); its partition is free again"
                    )
                    record.holdsPartition = false
                    record.updatedAt = now
                    try Self.save(db, record)
                case .stopped:
                    continue
                }
                outcomes.append(
                    ReconciliationOutcome(
                        instanceID: record.id, name: record.name, previousState: before, state: record.state,
                        action: action, reason: reason))
            }
            // The held partitions must still be consistent: no CPU with two exclusive owners.
            _ = try Self.heldPartitions(db)
            return outcomes
        }
    }

    /// ``reconcile(processes:)`` with only a liveness test: no marked QEMU is searched for and none is killed.
    @discardableResult
    public func reconcile(liveProcess: @escaping @Sendable (Int32, UInt64) -> Bool) throws(CoordinatorError)
        -> [ReconciliationOutcome]
    {
        try reconcile(processes: ProcessTable(isRunning: liveProcess))
    }

    // MARK: Rows

    @discardableResult
    private static func apply(
        _ db: Database, _ record: inout InstanceRecord, to state: InstanceState, reason: String,
        changes: InstanceChanges, at now: Date
    ) throws -> InstanceRecord {
        var lifecycle = try InstanceLifecycle(history: history(db, record.id))
        try lifecycle.transition(to: state, reason: reason, at: now)
        merge(changes, into: &record)
        if state == .booting, record.process == nil {
            throw CoordinatorError(
                .illegalTransition, "instance \(record.name) cannot be booting without its QEMU's pid and start time")
        }
        switch state {
        case .stopped:
            record.holdsPartition = false
        case .rejected, .failed:
            if changes.processGone || record.process == nil { record.holdsPartition = false }
        default:
            break
        }
        record.state = state
        record.reason = reason
        record.updatedAt = now
        try save(db, record)
        try insert(db, lifecycle.history.last!, of: record.id)
        return record
    }

    private static func merge(_ changes: InstanceChanges, into record: inout InstanceRecord) {
        if let process = changes.process { record.process = process }
        record.sockets.merge(changes.sockets) { $1 }
        if let digest = changes.evidenceDigest { record.evidenceDigest = digest }
        if let sequence = changes.auditSequence { record.auditSequence = sequence }
        if let policy = changes.policy { record.policy = policy }
        if let supervisor = changes.supervisor { record.supervisor = supervisor }
    }

    private static func find(_ db: Database, _ idOrName: String) throws -> Row? {
        try Row.fetchOne(
            db,
            sql: """
                SELECT * FROM instance WHERE id = ?1 OR name = ?1
                ORDER BY id = ?1 DESC, state != 'stopped' DESC, created_ms DESC, rowid DESC LIMIT 1
                """,
            arguments: [idOrName])
    }

    private static func history(_ db: Database, _ id: String) throws -> [InstanceTransition] {
        try Row.fetchAll(
            db, sql: "SELECT * FROM instance_transition WHERE instance_id = ? ORDER BY id", arguments: [id]
        ).map { row in
            let from = try row.optionalText("from_state")
            return InstanceTransition(
                from: try from.map { try state($0) }, to: try state(try row.text("to_state")),
                time: Timestamp.date(try row.integer("time_ms")), reason: try row.text("reason"))
        }
    }

    private static func heldPartitions(_ db: Database) throws -> [String: Partition] {
        var partitions: [String: Partition] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM instance WHERE holds_partition = 1") {
            let record = try record(row)
            partitions[record.id] = record.partition
        }
        // Overlaps are checked against a topology-free allocator: the rule does not depend on the host.
        var exclusive: [Int: String] = [:]
        var shared: [Int: String] = [:]
        for (id, partition) in partitions.sorted(by: { $0.key < $1.key }) {
            for cpu in partition.cpus {
                if let other = exclusive[cpu] ?? (partition.shared ? nil : shared[cpu]) {
                    throw CoordinatorError(
                        .inconsistentStore,
                        "cpu\(cpu) is held by instances \(other) and \(id) against the partition rules; the store "
                            + "was changed by something other than cmk: mark one of them failed")
                }
                if partition.shared { shared[cpu] = id } else { exclusive[cpu] = id }
            }
        }
        return partitions
    }

    private static func allocator(
        _ db: Database, inventory: HostInventory, reserve: HostReserve
    ) throws -> PartitionAllocator {
        try PartitionAllocator(inventory: inventory, reserve: reserve, partitions: try heldPartitions(db))
    }

    private static func record(_ row: Row) throws -> InstanceRecord {
        let id = (try? row.text("id")) ?? "?"
        do {
            let pid = try row.optionalInteger("qemu_pid")
            let startTime = try row.optionalInteger("qemu_start_time")
            let policyID = try row.optionalText("policy_id")
            let policyVersion = try row.optionalInteger("policy_version")
            let policyDigest = try row.optionalText("policy_digest")
            let socketsJSON = try row.text("sockets_json")
            guard let sockets = try? JSONDecoder().decode([String: String].self, from: Data(socketsJSON.utf8)) else {
                throw MalformedInstanceColumn(column: "sockets_json", detail: "is not a JSON object of paths")
            }
            let supervisorPID = try row.optionalInteger("supervisor_pid")
            let supervisorStart = try row.optionalInteger("supervisor_start_time")
            let cpus = try cpuList(row, "cpus")
            let nodes = try cpuList(row, "numa_nodes")
            return InstanceRecord(
                id: id, name: try row.text("name"), state: try state(try row.text("state")),
                reason: try row.text("reason"),
                partition: Partition(
                    cpus: cpus, nodes: nodes, memoryMiB: Int(try row.integer("memory_mib")),
                    shared: try row.integer("shared") == 1),
                holdsPartition: try row.integer("holds_partition") == 1,
                policy: policyID.map {
                    PolicyReference(id: $0, version: Int(policyVersion ?? 0), digest: policyDigest ?? "")
                },
                profile: try row.optionalText("profile"),
                process: pid.map {
                    ProcessIdentity(pid: Int32(truncatingIfNeeded: $0), startTime: UInt64(startTime ?? 0))
                },
                sockets: sockets, evidenceDigest: try row.optionalText("evidence_digest"),
                auditSequence: try row.optionalInteger("audit_sequence"),
                createdAt: Timestamp.date(try row.integer("created_ms")),
                updatedAt: Timestamp.date(try row.integer("updated_ms")),
                supervisor: supervisorPID.map {
                    ProcessIdentity(
                        pid: Int32(truncatingIfNeeded: $0), startTime: UInt64(bitPattern: supervisorStart ?? 0))
                })
        } catch let error as MalformedInstanceColumn {
            throw CoordinatorError(
                .inconsistentStore,
                "instance \(id)'s column \(error.column) \(error.detail): the store was changed by "
                    + "something other than cmk")
        }
    }

    private static func cpuList(_ row: Row, _ column: String) throws -> [Int] {
        do {
            return try CPUList.parse(try row.text(column), file: column)
        } catch {
            throw MalformedInstanceColumn(column: column, detail: "is not a CPU list")
        }
    }

    private static func state(_ text: String) throws -> InstanceState {
        guard let state = InstanceState(rawValue: text) else {
            throw MalformedInstanceColumn(column: "state", detail: "holds the unknown state '\(text)'")
        }
        return state
    }

    private static func insert(_ db: Database, _ record: InstanceRecord) throws {
        try db.execute(
            sql: """
                INSERT INTO instance (id, name, state, reason, cpus, numa_nodes, memory_mib, shared, holds_partition,
                    sockets_json, created_ms, updated_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?)
                """,
            arguments: [
                record.id, record.name, record.state.rawValue, record.reason, CPUList.format(record.partition.cpus),
                CPUList.format(record.partition.nodes), record.partition.memoryMiB, record.partition.shared,
                record.holdsPartition, Timestamp.milliseconds(record.createdAt),
                Timestamp.milliseconds(record.updatedAt),
            ])
        try save(db, record)
    }

    /// Writes every mutable column of `record`.
    private static func save(_ db: Database, _ record: InstanceRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let sockets = String(decoding: try encoder.encode(record.sockets), as: UTF8.self)
        try db.execute(
            sql: """
                UPDATE instance SET state = ?, reason = ?, holds_partition = ?, policy_id = ?, policy_version = ?,
                    policy_digest = ?, profile = ?, qemu_pid = ?, qemu_start_time = ?, sockets_json = ?,
                    evidence_digest = ?, audit_sequence = ?, updated_ms = ?, supervisor_pid = ?,
                    supervisor_start_time = ?
                WHERE id = ?
                """,
            arguments: [
                record.state.rawValue, record.reason, record.holdsPartition, record.policy?.id,
                record.policy?.version, record.policy?.digest, record.profile, record.process?.pid,
                record.process.map { Int64(bitPattern: $0.startTime) }, sockets, record.evidenceDigest,
                record.auditSequence, Timestamp.milliseconds(record.updatedAt), record.supervisor?.pid,
                record.supervisor.map { Int64(bitPattern: $0.startTime) }, record.id,
            ])
    }

    private static func insert(_ db: Database, _ transition: InstanceTransition, of id: String) throws {
        try db.execute(
            sql: """
                INSERT INTO instance_transition (instance_id, from_state, to_state, time_ms, reason)
                VALUES (?, ?, ?, ?, ?)
                """,
            arguments: [
                id, transition.from?.rawValue, transition.to.rawValue, Timestamp.milliseconds(transition.time),
                transition.reason,
            ])
    }

    // MARK: Checks and errors

    /// 1 to 63 of a-z, 0-9, '-', '_', '.', beginning with a letter or digit (usable in file and QEMU names).
    static func validate(name: String) throws(CoordinatorError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
        guard (1...63).contains(name.count), name.allSatisfy(allowed.contains), let first = name.first,
            first.isLetter || first.isNumber
        else {
            throw CoordinatorError(
                .invalidArgument,
                "'\(name)' is not an instance name: use 1 to 63 of a-z, 0-9, '-', '_' and '.', beginning with a "
                    + "letter or digit")
        }
    }

    func requireWritable() throws(CoordinatorError) {
        guard isWritable else {
            throw CoordinatorError(
                .invalidArgument, "the instance store was opened for reading; open it for writing to change instances")
        }
    }

    private static func unknown(_ idOrName: String) -> CoordinatorError {
        CoordinatorError(.unknownInstance, "no instance has the id or name '\(idOrName)' (cmk ps --all lists them)")
    }

    func write<T>(_ what: String, _ body: (Database) throws -> T) throws(CoordinatorError) -> T {
        try Self.database("\(what)") {
            try pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        }
    }

    /// Runs `body`, turning SQLite's errors into ``CoordinatorError``s that say what was being done.
    static func database<T>(_ what: String, _ body: () throws -> T) throws(CoordinatorError) -> T {
        do {
            return try body()
        } catch let error as CoordinatorError {
            throw error
        } catch let error as DatabaseError {
            throw CoordinatorError(
                .database, "could not \(what): \(error.message ?? error.description)",
                nativeCode: error.extendedResultCode.rawValue)
        } catch {
            throw CoordinatorError(.database, "could not \(what): \(error)")
        }
    }
}

/// What reconciliation did to one instance.
public struct ReconciliationOutcome: Sendable, Codable, Hashable {
    public enum Action: String, Sendable, Codable, Hashable {
        /// Its QEMU still runs (same pid, same start time): this coordinator takes it over as it is.
        case readopted
        /// Its QEMU is gone (or never started): marked failed, partition released.
        case failed
        /// It was stopping and its QEMU is gone: marked stopped, partition released.
        case stopped
        /// It was already rejected or failed and its QEMU is gone: its partition was released.
        case reclaimed
        /// Its supervisor died before the instance was admitted (or after it failed): its QEMU was killed, the
        /// instance marked failed and its partition released.
        case killed
        /// Its supervisor still runs and owns it: left alone.
        case supervised
    }

    public let instanceID: String
    public let name: String
    public let previousState: InstanceState
    public let state: InstanceState
    public let action: Action
    public let reason: String
}

/// A column that does not hold what the schema says.
private struct MalformedInstanceColumn: Error {
    let column: String
    let detail: String
}

extension Row {
    fileprivate func text(_ column: String) throws -> String {
        guard case .string(let text) = (self[column] as DatabaseValue).storage else {
            throw MalformedInstanceColumn(column: column, detail: "is not text")
        }
        return text
    }

    fileprivate func optionalText(_ column: String) throws -> String? {
        switch (self[column] as DatabaseValue).storage {
        case .null: return nil
        case .string(let text): return text
        default: throw MalformedInstanceColumn(column: column, detail: "is not text")
        }
    }

    fileprivate func integer(_ column: String) throws -> Int64 {
        guard case .int64(let number) = (self[column] as DatabaseValue).storage else {
            throw MalformedInstanceColumn(column: column, detail: "is not an integer")
        }
        return number
    }

    fileprivate func optionalInteger(_ column: String) throws -> Int64? {
        switch (self[column] as DatabaseValue).storage {
        case .null: return nil
        case .int64(let number): return number
        default: throw MalformedInstanceColumn(column: column, detail: "is not an integer")
        }
    }
}

/// Milliseconds since 1970, as the store keeps times.
enum Timestamp {
    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func date(_ milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }
}
