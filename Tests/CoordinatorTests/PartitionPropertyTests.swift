import CMKTesting
import Coordinator
import Foundation
import Testing

/// What the checks look up on every step, computed once per topology.
struct TopologyFacts {
    let inventory: HostInventory
    let online: Set<Int>
    let node: [Int: Int]
    let cores: [[Int]]
    /// Threads per core when every core has the same number.
    let uniformThreads: Int?

    init(_ inventory: HostInventory) {
        self.inventory = inventory
        online = Set(inventory.cpus.map(\.id))
        node = Dictionary(uniqueKeysWithValues: inventory.cpus.map { ($0.id, $0.node) })
        cores = inventory.cores
        let sizes = Set(cores.map(\.count))
        uniformThreads = sizes.count == 1 ? sizes.first : nil
    }
}

/// One synthetic host for the property test.
struct PropertyTopology: Sendable, CustomTestStringConvertible {
    let name: String
    let text: HostInventoryText
    let reserve: HostReserve
    let sequences: Int
    let seed: UInt64

    var testDescription: String { name }

    static let all: [PropertyTopology] = [
        .init(
            name: "the build machine: 2 CPUs", text: RealHostSamples.buildMachine, reserve: .default,
            sequences: 500, seed: 1),
        .init(
            name: "2 sockets × 64 cores × 2 threads",
            text: SyntheticHost.text(sockets: 2, cores: 64, threads: 2, memoryMiB: 524_288),
            reserve: HostReserve(cpuCount: 2, memoryMiB: 4096), sequences: 100, seed: 2),
        .init(
            name: "1 socket × 8 cores × 2 adjacent threads",
            text: SyntheticHost.text(sockets: 1, cores: 8, threads: 2, memoryMiB: 32_768, adjacentSiblings: true),
            reserve: .default, sequences: 600, seed: 3),
        .init(
            name: "4 nodes × 6 cores, cpus 5 and 13 offline",
            text: SyntheticHost.text(sockets: 4, cores: 6, threads: 1, memoryMiB: 65_536, offline: [5, 13]),
            reserve: HostReserve(cpuCount: 3, memoryMiB: 2048), sequences: 500, seed: 4),
        .init(
            name: "2 sockets × 4 cores × 4 threads, no reserve",
            text: SyntheticHost.text(sockets: 2, cores: 4, threads: 4, memoryMiB: 16_384),
            reserve: HostReserve(cpuCount: 0, memoryMiB: 0), sequences: 400, seed: 5),
    ]
}

@Suite("the partition allocator under random allocate/free sequences")
struct PartitionPropertyTests {
    /// Problems found in one step; checks only call into Swift Testing when one is found (1.6 million
    /// `#expect`s would dominate the run time).
    private struct Problems {
        var found: [String] = []
        mutating func check(_ condition: Bool, _ problem: @autoclosure () -> String) {
            if !condition { found.append(problem()) }
        }
    }

    @Test("invariants hold over thousands of seeded random sequences", arguments: PropertyTopology.all)
    func randomSequences(topology: PropertyTopology) throws {
        let inventory = try HostInventory.parse(topology.text)
        let facts = TopologyFacts(inventory)
        for sequence in 0..<topology.sequences {
            let seed = topology.seed &* 1_000_003 &+ UInt64(sequence)
            var generator = SeededGenerator(state: seed)
            var allocator = try PartitionAllocator(inventory: inventory, reserve: topology.reserve)
            var next = 0
            for step in 0..<40 {
                var problems = Problems()
                if allocator.partitions.isEmpty || Double.random(in: 0..<1, using: &generator) < 0.6 {
                    let request = PartitionRequest(
                        cpuCount: Int.random(in: 1...max(1, inventory.cpus.count / 3), using: &generator),
                        memoryMiB: Int.random(in: 1...max(1, allocator.memoryBudgetMiB / 3), using: &generator),
                        allowSharedCores: Double.random(in: 0..<1, using: &generator) < 0.25)
                    next += 1
                    checkAllocation(request, owner: "i\(next)", &allocator, facts, &problems)
                } else {
                    let owner = allocator.partitions.keys.sorted().randomElement(using: &generator)!
                    let before = allocator.partitions[owner]
                    problems.check(allocator.release(owner) == before, "release returned another partition")
                    problems.check(allocator.partitions[owner] == nil, "released partition still there")
                }
                checkInvariants(allocator, facts, reserve: topology.reserve, &problems)
                if step % 10 == 9 {
                    let rebuilt = try PartitionAllocator(
                        inventory: inventory, reserve: topology.reserve, partitions: allocator.partitions)
                    problems.check(rebuilt.available() == allocator.available(), "a rebuilt allocator differs")
                    problems.check(
                        rebuilt.available(shared: true) == allocator.available(shared: true),
                        "a rebuilt allocator differs for shared requests")
                }
                if !problems.found.isEmpty {
                    Issue.record(
                        "\(topology.name), seed \(seed), step \(step): \(problems.found.joined(separator: "; "))")
                    return
                }
            }
        }
    }

    /// Allocates, and checks the result (or the refusal) against a model computed here, not by the allocator.
    private func checkAllocation(
        _ request: PartitionRequest, owner: String, _ allocator: inout PartitionAllocator, _ facts: TopologyFacts,
        _ problems: inout Problems
    ) {
        let reserved = Set(allocator.reservedCPUs)
        let exclusive = Set(allocator.partitions.values.filter { !$0.shared }.flatMap(\.cpus))
        let shared = Set(allocator.partitions.values.filter(\.shared).flatMap(\.cpus))
        let pool = facts.online.subtracting(reserved).subtracting(exclusive)
            .subtracting(request.allowSharedCores ? [] : shared)
        let freeMemory = allocator.memoryBudgetMiB - allocator.partitions.values.reduce(0) { $0 + $1.memoryMiB }
        let fits = pool.count >= request.cpuCount && freeMemory >= request.memoryMiB
        let partition: Partition
        do {
            partition = try allocator.allocate(request, for: owner)
        } catch {
            problems.check(!fits, "refused \(request), which fits: \(error.reason)")
            problems.check(error.code == .insufficientResources, "refused with \(error.code)")
            problems.check(error.reason.hasPrefix("asked for \(request.cpuCount)"), "refusal says \(error.reason)")
            problems.check(allocator.partitions[owner] == nil, "a refused request left a partition")
            return
        }
        problems.check(fits, "allocated \(request), which the model says does not fit")
        problems.check(partition.cpus.count == request.cpuCount, "got \(partition.cpus.count) CPUs for \(request)")
        problems.check(
            partition.memoryMiB == request.memoryMiB && partition.shared == request.allowSharedCores,
            "memory or sharing differ from \(request)")
        problems.check(Set(partition.cpus).isSubset(of: pool), "took \(partition.cpus) outside \(pool.sorted())")
        problems.check(
            partition.nodes == Set(partition.cpus.map { facts.node[$0]! }).sorted(), "wrong node list")
        guard !request.allowSharedCores else { return }
        // One node whenever one node had room.
        var freeByNode: [Int: Int] = [:]
        for cpu in pool { freeByNode[facts.node[cpu]!, default: 0] += 1 }
        let roomyNode = freeByNode.values.contains { $0 >= request.cpuCount }
        problems.check(!roomyNode || partition.nodes.count == 1, "spread over \(partition.nodes) though one node fit")
        // Whole cores whenever a node had enough wholly free cores for the request.
        if let threads = facts.uniformThreads, request.cpuCount % threads == 0 {
            let wholeFreeByNode = Dictionary(grouping: facts.cores.filter { $0.allSatisfy(pool.contains) }) {
                facts.node[$0[0]]!
            }
            if wholeFreeByNode.values.contains(where: { $0.count * threads >= request.cpuCount }) {
                let taken = Set(partition.cpus)
                let splitCores = facts.cores.filter { !taken.isDisjoint(with: $0) && !taken.isSuperset(of: $0) }
                problems.check(splitCores.isEmpty, "split cores \(splitCores) though whole ones were free")
            }
        }
    }

    private func checkInvariants(
        _ allocator: PartitionAllocator, _ facts: TopologyFacts, reserve: HostReserve, _ problems: inout Problems
    ) {
        let online = facts.online
        let inventory = facts.inventory
        let reserved = Set(allocator.reservedCPUs)
        var exclusiveCount: [Int: Int] = [:]
        var sharedCPUs = Set<Int>()
        for partition in allocator.partitions.values {
            for cpu in partition.cpus {
                if partition.shared { sharedCPUs.insert(cpu) } else { exclusiveCount[cpu, default: 0] += 1 }
            }
        }
        // No CPU in two exclusive partitions, nor in an exclusive and a shared one.
        problems.check(exclusiveCount.values.allSatisfy { $0 == 1 }, "a CPU is in two exclusive partitions")
        problems.check(sharedCPUs.isDisjoint(with: exclusiveCount.keys), "a shared partition has an exclusive CPU")
        // The reserve is respected.
        let used = sharedCPUs.union(exclusiveCount.keys)
        problems.check(used.isDisjoint(with: reserved), "a partition holds a reserved CPU")
        problems.check(reserved.count == min(reserve.cpuCount, online.count), "the reserve has \(reserved.count) CPUs")
        // Memory never over budget.
        let usedMemory = allocator.partitions.values.reduce(0) { $0 + $1.memoryMiB }
        problems.check(usedMemory <= inventory.memoryTotalMiB - allocator.reservedMemoryMiB, "memory over budget")
        // free + used (+ reserve) = total, for CPUs and memory.
        let free = allocator.available()
        problems.check(
            Set(free.cpus).isDisjoint(with: used) && Set(free.cpus).isDisjoint(with: reserved),
            "a free CPU is used or reserved")
        problems.check(free.cpus.count + used.count + reserved.count == online.count, "CPUs do not add up")
        problems.check(
            free.memoryMiB + usedMemory + allocator.reservedMemoryMiB == inventory.memoryTotalMiB,
            "memory does not add up")
        problems.check(Set(allocator.usedCPUs) == used, "usedCPUs differs from the partitions")
    }
}
