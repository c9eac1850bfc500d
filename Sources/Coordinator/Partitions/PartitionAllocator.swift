/// What the host keeps for itself and never gives to an instance.
public struct HostReserve: Sendable, Codable, Hashable {
    /// CPUs kept, taken from the lowest-numbered cores (cpu0 first: it takes most of the host's interrupts).
    public var cpuCount: Int
    /// MiB of memory kept, out of `MemTotal`.
    public var memoryMiB: Int

    public init(cpuCount: Int = 1, memoryMiB: Int = 1024) {
        self.cpuCount = cpuCount
        self.memoryMiB = memoryMiB
    }

    /// One CPU and 1 GiB: on a 2-CPU host one CPU is left for instances.
    public static let `default` = HostReserve()
}

/// What an instance asks for.
public struct PartitionRequest: Sendable, Codable, Hashable {
    /// Logical CPUs (hardware threads).
    public var cpuCount: Int
    /// Guest memory in MiB.
    public var memoryMiB: Int
    /// Overcommit: the partition's CPUs may also be in other shared partitions (never in an exclusive one).
    public var allowSharedCores: Bool

    public init(cpuCount: Int, memoryMiB: Int, allowSharedCores: Bool = false) {
        self.cpuCount = cpuCount
        self.memoryMiB = memoryMiB
        self.allowSharedCores = allowSharedCores
    }
}

/// The host resources one instance holds.
public struct Partition: Sendable, Codable, Hashable {
    /// Host CPUs, ascending.
    public let cpus: [Int]
    /// The NUMA nodes of those CPUs, ascending (one, unless no single node had room).
    public let nodes: [Int]
    /// Guest memory in MiB.
    public let memoryMiB: Int
    /// Whether the CPUs may be shared with other shared partitions (the request allowed overcommit).
    public let shared: Bool

    public init(cpus: [Int], nodes: [Int], memoryMiB: Int, shared: Bool) {
        self.cpus = Set(cpus).sorted()
        self.nodes = Set(nodes).sorted()
        self.memoryMiB = memoryMiB
        self.shared = shared
    }
}

/// What is left for instances after the host reserve and the live partitions.
public struct AvailableResources: Sendable, Codable, Hashable {
    /// Free CPUs, ascending.
    public let cpus: [Int]
    /// The same CPUs by NUMA node.
    public let cpusByNode: [Int: [Int]]
    /// Free memory in MiB.
    public let memoryMiB: Int

    /// "1 CPU (cpu1, node 0) and 20480 MiB", "6 CPUs (cpus 2-3,6-7 on node 0, 8-9 on node 1) and 0 MiB".
    public var summary: String {
        let count = cpuCountText(cpus.count)
        if cpus.isEmpty { return "\(count) and \(memoryMiB) MiB" }
        if cpus.count == 1 { return "\(count) (cpu\(cpus[0]), node \(cpusByNode.first!.key)) and \(memoryMiB) MiB" }
        let parts = cpusByNode.sorted { $0.key < $1.key }.map { "\(CPUList.format($0.value)) on node \($0.key)" }
        return "\(count) (cpus \(parts.joined(separator: ", "))) and \(memoryMiB) MiB"
    }
}

/// Divides the host's CPUs and memory among instances: each partition gets CPUs no exclusive partition holds,
/// and memory within the budget left after the host reserve.
///
/// Rules (docs/coordinator.md, "Allocator"):
/// - the reserve's CPUs are the lowest-numbered ones, whole cores first; its memory comes out of `MemTotal`;
/// - a CPU is in at most one exclusive partition, and never in an exclusive and a shared one at once;
///   shared partitions (``PartitionRequest/allowSharedCores``) may overlap each other and prefer the least
///   shared CPUs;
/// - whole cores are preferred to split ones, one NUMA node to several, and among nodes that fit the one
///   with the fewest free CPUs (best fit, so large requests find room later);
/// - memory is never overcommitted;
/// - a request that cannot be met fails with a message that says what is free.
///
/// A value type: the coordinator rebuilds it from the instance store for every decision, so the store stays
/// the one source of truth.
public struct PartitionAllocator: Sendable {
    public let inventory: HostInventory
    public let reserve: HostReserve
    /// The host's CPUs, as picked by the reserve rule.
    public let reservedCPUs: [Int]
    /// The live partitions by owner (an instance id).
    public private(set) var partitions: [String: Partition]

    private let onlineCPUs: Set<Int>
    private let reservedSet: Set<Int>
    /// Node, core and core size of each online CPU, looked up on every decision.
    private let topology: [Int: (node: Int, core: Int, coreSize: Int)]
    private var exclusiveOwner: [Int: String] = [:]
    private var sharedLoad: [Int: Int] = [:]

    /// Sets the allocator up over `inventory`, with the partitions that are already live.
    ///
    /// - Throws: `invalidArgument` for a negative reserve; `inconsistentStore` when two live partitions claim
    ///   the same CPU against the rules (the store was changed by something other than cmk).
    public init(
        inventory: HostInventory, reserve: HostReserve = .default, partitions: [String: Partition] = [:]
    ) throws(CoordinatorError) {
        guard reserve.cpuCount >= 0, reserve.memoryMiB >= 0 else {
            throw CoordinatorError(.invalidArgument, "the host reserve cannot be negative")
        }
        self.inventory = inventory
        self.reserve = reserve
        self.onlineCPUs = Set(inventory.cpus.map(\.id))
        self.topology = Dictionary(
            uniqueKeysWithValues: inventory.cpus.map { ($0.id, ($0.node, $0.core, $0.siblings.count)) })
        var reserved: [Int] = []
        for core in inventory.cores {
            for cpu in core where reserved.count < reserve.cpuCount { reserved.append(cpu) }
        }
        self.reservedCPUs = reserved.sorted()
        self.reservedSet = Set(reserved)
        self.partitions = [:]
        for (owner, partition) in partitions.sorted(by: { $0.key < $1.key }) {
            try adopt(partition, for: owner)
        }
    }

    // MARK: Accounting

    /// The memory the reserve actually keeps (never more than the host has).
    public var reservedMemoryMiB: Int { min(reserve.memoryMiB, inventory.memoryTotalMiB) }
    /// The memory instances may share out: `MemTotal` less the reserve.
    public var memoryBudgetMiB: Int { inventory.memoryTotalMiB - reservedMemoryMiB }
    /// The memory held by live partitions.
    public var usedMemoryMiB: Int { partitions.values.reduce(0) { $0 + $1.memoryMiB } }
    /// Online CPUs held by at least one live partition, ascending.
    public var usedCPUs: [Int] {
        onlineCPUs.filter { exclusiveOwner[$0] != nil || sharedLoad[$0, default: 0] > 0 }.sorted()
    }

    /// What a new partition could get: for an exclusive one, CPUs no partition holds; for a shared one, also
    /// CPUs that only shared partitions hold.
    public func available(shared: Bool = false) -> AvailableResources {
        let cpus = onlineCPUs.filter { isAvailable($0, shared: shared) }.sorted()
        var byNode: [Int: [Int]] = [:]
        for cpu in cpus { byNode[topology[cpu]!.node, default: []].append(cpu) }
        return AvailableResources(cpus: cpus, cpusByNode: byNode, memoryMiB: max(0, memoryBudgetMiB - usedMemoryMiB))
    }

    private func isAvailable(_ cpu: Int, shared: Bool) -> Bool {
        guard onlineCPUs.contains(cpu), !reservedSet.contains(cpu), exclusiveOwner[cpu] == nil else { return false }
        return shared || sharedLoad[cpu, default: 0] == 0
    }

    // MARK: Allocating and releasing

    /// Gives `owner` a partition for `request`, or fails saying what is free.
    public mutating func allocate(
        _ request: PartitionRequest, for owner: String
    ) throws(CoordinatorError) -> Partition {
        guard request.cpuCount >= 1 else {
            throw CoordinatorError(.invalidArgument, "an instance needs at least one CPU, not \(request.cpuCount)")
        }
        guard request.memoryMiB >= 1 else {
            throw CoordinatorError(.invalidArgument, "an instance needs memory; \(request.memoryMiB) MiB was asked for")
        }
        guard partitions[owner] == nil else {
            throw CoordinatorError(.invalidArgument, "\(owner) already holds a partition; release it first")
        }
        let available = available(shared: request.allowSharedCores)
        guard request.memoryMiB <= available.memoryMiB, let cpus = pickCPUs(request) else {
            throw insufficient(request, available)
        }
        let partition = Partition(
            cpus: cpus, nodes: cpus.map { topology[$0]!.node }, memoryMiB: request.memoryMiB,
            shared: request.allowSharedCores)
        try adopt(partition, for: owner)
        return partition
    }

    /// Returns `owner`'s partition to the free pool; nil when it held none.
    @discardableResult
    public mutating func release(_ owner: String) -> Partition? {
        guard let partition = partitions.removeValue(forKey: owner) else { return nil }
        for cpu in partition.cpus {
            if partition.shared {
                sharedLoad[cpu, default: 0] -= 1
                if sharedLoad[cpu] == 0 { sharedLoad[cpu] = nil }
            } else if exclusiveOwner[cpu] == owner {
                exclusiveOwner[cpu] = nil
            }
        }
        return partition
    }

    private mutating func adopt(_ partition: Partition, for owner: String) throws(CoordinatorError) {
        guard partitions[owner] == nil else {
            throw CoordinatorError(.inconsistentStore, "\(owner) holds two partitions")
        }
        for cpu in partition.cpus {
            if let other = exclusiveOwner[cpu] {
                throw CoordinatorError(
                    .inconsistentStore,
                    "cpu\(cpu) is in \(other)'s exclusive partition and in \(owner)'s; mark one of them failed")
            }
            if !partition.shared, sharedLoad[cpu, default: 0] > 0 {
                let other = partitions.first { $0.value.shared && $0.value.cpus.contains(cpu) }?.key ?? "?"
                throw CoordinatorError(
                    .inconsistentStore,
                    "cpu\(cpu) is in \(owner)'s exclusive partition and in \(other)'s shared one; mark one of "
                        + "them failed")
            }
        }
        for cpu in partition.cpus {
            if partition.shared { sharedLoad[cpu, default: 0] += 1 } else { exclusiveOwner[cpu] = owner }
        }
        partitions[owner] = partition
    }

    private func insufficient(_ request: PartitionRequest, _ available: AvailableResources) -> CoordinatorError {
        let kind = request.allowSharedCores ? " shared" : ""
        let freeLabel = request.allowSharedCores ? "free for sharing" : "free"
        return CoordinatorError(
            .insufficientResources,
            "asked for \(request.cpuCount)\(kind) \(request.cpuCount == 1 ? "CPU" : "CPUs") and "
                + "\(request.memoryMiB) MiB; \(freeLabel): \(available.summary) after the host reserve of "
                + "\(cpuCountText(reservedCPUs.count)) and \(reservedMemoryMiB) MiB")
    }

    // MARK: Choosing CPUs

    /// Exclusive requests take from CPUs no partition holds; shared ones from the least shared CPUs first.
    private func pickCPUs(_ request: PartitionRequest) -> [Int]? {
        let candidates = onlineCPUs.filter { isAvailable($0, shared: request.allowSharedCores) }
        guard request.allowSharedCores else { return pick(request.cpuCount, from: candidates) }
        let loads = Set(candidates.map { sharedLoad[$0, default: 0] }).sorted()
        for ceiling in loads {
            if let cpus = pick(request.cpuCount, from: candidates.filter { sharedLoad[$0, default: 0] <= ceiling }) {
                return cpus
            }
        }
        return nil
    }

    /// One node when one has room (fewest split cores, then fewest free CPUs, then lowest number); else the
    /// nodes with the most free CPUs first.
    private func pick(_ count: Int, from pool: Set<Int>) -> [Int]? {
        guard pool.count >= count else { return nil }
        var byNode: [Int: [Int]] = [:]
        for cpu in pool { byNode[topology[cpu]!.node, default: []].append(cpu) }
        var best: (split: Int, free: Int, node: Int, cpus: [Int])?
        for (node, cpus) in byNode where cpus.count >= count {
            let (taken, split) = takeCores(count, from: cpus)
            if best == nil || (split, cpus.count, node) < (best!.split, best!.free, best!.node) {
                best = (split, cpus.count, node, taken)
            }
        }
        if let best { return best.cpus }
        var taken: [Int] = []
        for (_, cpus) in byNode.sorted(by: { ($0.value.count, -$0.key) > ($1.value.count, -$1.key) }) {
            let remaining = count - taken.count
            if remaining == 0 { break }
            taken += takeCores(min(remaining, cpus.count), from: cpus).cpus
        }
        return taken
    }

    /// Takes `count` CPUs of one node: whole free cores first (lowest first), then the free threads of
    /// partly used cores (fullest fragments first), and only then part of a core, the smallest that will do.
    /// `split` counts the cores the result shares with someone else.
    private func takeCores(_ count: Int, from cpus: [Int]) -> (cpus: [Int], split: Int) {
        var freeThreads: [Int: [Int]] = [:]
        for cpu in cpus { freeThreads[topology[cpu]!.core, default: []].append(cpu) }
        let cores = freeThreads.keys.map { core in
            CoreSlot(core: core, free: freeThreads[core]!.sorted(), size: topology[core]!.coreSize)
        }
        let whole = cores.filter(\.isWhole).sorted { $0.core < $1.core }
        let partial = cores.filter { !$0.isWhole }.sorted { ($0.free.count, -$0.core) > ($1.free.count, -$1.core) }
        var taken: [Int] = []
        var used = Set<Int>()
        var split = 0
        for core in whole where core.size <= count - taken.count {
            taken += core.free
            used.insert(core.core)
        }
        for core in partial where core.free.count <= count - taken.count {
            taken += core.free
            used.insert(core.core)
            split += 1
        }
        let remaining = count - taken.count
        if remaining > 0 {
            // The smallest core that will do; a partly used one before a whole one of the same size.
            let leftover = cores.filter { !used.contains($0.core) }
                .min { ($0.free.count, $0.isWhole ? 1 : 0, $0.core) < ($1.free.count, $1.isWhole ? 1 : 0, $1.core) }!
            taken += leftover.free.prefix(remaining)
            split += 1
        }
        return (taken.sorted(), split)
    }
}

/// The free hardware threads of one core.
private struct CoreSlot {
    let core: Int
    let free: [Int]
    let size: Int
    var isWhole: Bool { free.count == size }
}

/// "1 CPU", "3 CPUs", "no CPU".
func cpuCountText(_ count: Int) -> String {
    count == 0 ? "no CPU" : count == 1 ? "1 CPU" : "\(count) CPUs"
}
