import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("the partition allocator's rules")
struct PartitionAllocatorTests {
    static func twoCPUHost(memoryMiB: Int = 21_504) throws -> HostInventory {
        try SyntheticHost.inventory(sockets: 1, cores: 2, threads: 1, memoryMiB: memoryMiB)
    }

    @Test("the default reserve keeps cpu0 and 1 GiB: on a 2-CPU host one CPU is left")
    func defaultReserve() throws {
        let allocator = try PartitionAllocator(inventory: try Self.twoCPUHost())
        #expect(allocator.reservedCPUs == [0])
        #expect(allocator.reservedMemoryMiB == 1024)
        #expect(allocator.available().cpus == [1])
        #expect(allocator.available().memoryMiB == 20_480)
    }

    @Test("an impossible request fails saying what is free after the reserve")
    func impossibleRequestMessage() throws {
        var allocator = try PartitionAllocator(inventory: try Self.twoCPUHost())
        #expect {
            try allocator.allocate(PartitionRequest(cpuCount: 2, memoryMiB: 4096), for: "a")
        } throws: { error in
            let error = error as? CoordinatorError
            return error?.code == .insufficientResources
                && error?.reason == "asked for 2 CPUs and 4096 MiB; free: 1 CPU (cpu1, node 0) and 20480 MiB after "
                    + "the host reserve of 1 CPU and 1024 MiB"
        }
        #expect(allocator.partitions.isEmpty)
        _ = try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 20_000), for: "a")
        #expect {
            try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 1024), for: "b")
        } throws: { error in
            (error as? CoordinatorError)?.reason
                == "asked for 1 CPU and 1024 MiB; free: no CPU and 480 MiB after the host reserve of 1 CPU and 1024 MiB"
        }
    }

    @Test("a CPU is never in two exclusive partitions, and releasing returns it")
    func exclusiveAndRelease() throws {
        var allocator = try PartitionAllocator(inventory: try Self.twoCPUHost())
        let first = try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 512), for: "a")
        #expect(first == Partition(cpus: [1], nodes: [0], memoryMiB: 512, shared: false))
        #expect(throws: CoordinatorError.self) {
            try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 512), for: "b")
        }
        #expect(allocator.release("a") == first)
        #expect(allocator.release("a") == nil)
        #expect(try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 512), for: "b").cpus == [1])
    }

    @Test("shared partitions overlap each other, never an exclusive one, and say they are shared")
    func sharedPartitions() throws {
        let host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 1)
        var allocator = try PartitionAllocator(inventory: host)
        let exclusive = try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 100), for: "x")
        let shared1 = try allocator.allocate(
            PartitionRequest(cpuCount: 2, memoryMiB: 100, allowSharedCores: true), for: "s1")
        let shared2 = try allocator.allocate(
            PartitionRequest(cpuCount: 2, memoryMiB: 100, allowSharedCores: true), for: "s2")
        #expect(shared1.shared && shared2.shared && !exclusive.shared)
        #expect(Set(shared1.cpus).isDisjoint(with: exclusive.cpus))
        #expect(Set(shared2.cpus).isDisjoint(with: exclusive.cpus))
        #expect(shared1.cpus == shared2.cpus, "with only two CPUs left both shared partitions take them")
        // The shared CPUs are not free for an exclusive partition any more.
        #expect(allocator.available().cpus.isEmpty)
        #expect(allocator.available(shared: true).cpus == shared1.cpus)
        #expect {
            try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 100), for: "y")
        } throws: { ($0 as? CoordinatorError)?.reason.contains("free: no CPU") == true }
        allocator.release("s1")
        allocator.release("s2")
        #expect(allocator.available().cpus == shared1.cpus)
    }

    @Test("shared partitions spread over the least shared CPUs first")
    func sharedSpread() throws {
        let host = try SyntheticHost.inventory(sockets: 1, cores: 5, threads: 1)
        var allocator = try PartitionAllocator(inventory: host)
        let first = try allocator.allocate(
            PartitionRequest(cpuCount: 2, memoryMiB: 1, allowSharedCores: true), for: "a")
        let second = try allocator.allocate(
            PartitionRequest(cpuCount: 2, memoryMiB: 1, allowSharedCores: true), for: "b")
        #expect(Set(first.cpus).isDisjoint(with: second.cpus))
        let third = try allocator.allocate(
            PartitionRequest(cpuCount: 3, memoryMiB: 1, allowSharedCores: true), for: "c")
        #expect(third.cpus.count == 3)
    }

    @Test("whole cores are preferred; an odd request fills a core the reserve already split")
    func wholeCores() throws {
        let host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 2)  // cores {0,4} {1,5} {2,6} {3,7}
        var allocator = try PartitionAllocator(inventory: host)
        #expect(allocator.reservedCPUs == [0])
        #expect(try allocator.allocate(PartitionRequest(cpuCount: 2, memoryMiB: 1), for: "a").cpus == [1, 5])
        #expect(try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 1), for: "b").cpus == [4])
        #expect(try allocator.allocate(PartitionRequest(cpuCount: 3, memoryMiB: 1), for: "c").cpus == [2, 3, 6])
        #expect(try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 1), for: "d").cpus == [7])
    }

    @Test("one NUMA node is preferred, the fullest that fits; requests span nodes only when none fits")
    func numaPreference() throws {
        let host = try SyntheticHost.inventory(sockets: 2, cores: 4, threads: 1)  // node 0: 0-3, node 1: 4-7
        var allocator = try PartitionAllocator(inventory: host, reserve: HostReserve(cpuCount: 1, memoryMiB: 0))
        let a = try allocator.allocate(PartitionRequest(cpuCount: 2, memoryMiB: 1), for: "a")
        #expect(a.nodes == [0] && a.cpus == [1, 2], "node 0 has 3 free CPUs, node 1 four: best fit is node 0")
        let b = try allocator.allocate(PartitionRequest(cpuCount: 4, memoryMiB: 1), for: "b")
        #expect(b.nodes == [1] && b.cpus == [4, 5, 6, 7])
        allocator.release("b")
        let c = try allocator.allocate(PartitionRequest(cpuCount: 5, memoryMiB: 1), for: "c")
        #expect(c.nodes == [0, 1] && c.cpus == [3, 4, 5, 6, 7])
    }

    @Test("the reserve takes whole cores from the lowest; a reserve larger than the host keeps everything")
    func reserveChoice() throws {
        let host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 2)
        #expect(try PartitionAllocator(inventory: host, reserve: HostReserve(cpuCount: 3)).reservedCPUs == [0, 1, 4])
        let all = try PartitionAllocator(inventory: host, reserve: HostReserve(cpuCount: 99, memoryMiB: 1 << 30))
        #expect(all.available().cpus.isEmpty && all.available().memoryMiB == 0)
        #expect(throws: CoordinatorError.self) {
            try PartitionAllocator(inventory: host, reserve: HostReserve(cpuCount: -1))
        }
    }

    @Test("invalid requests are refused before anything is taken")
    func invalidRequests() throws {
        var allocator = try PartitionAllocator(inventory: try Self.twoCPUHost())
        for request in [PartitionRequest(cpuCount: 0, memoryMiB: 1), PartitionRequest(cpuCount: 1, memoryMiB: 0)] {
            #expect { try allocator.allocate(request, for: "a") } throws: {
                ($0 as? CoordinatorError)?.code == .invalidArgument
            }
        }
        _ = try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 1), for: "a")
        #expect { try allocator.allocate(PartitionRequest(cpuCount: 1, memoryMiB: 1), for: "a") } throws: {
            ($0 as? CoordinatorError)?.code == .invalidArgument
        }
    }

    @Test("partitions that break the rules are refused when the allocator is rebuilt from them")
    func inconsistentPartitions() throws {
        let host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 1)
        let exclusive = Partition(cpus: [1, 2], nodes: [0], memoryMiB: 1, shared: false)
        let overlapping = Partition(cpus: [2, 3], nodes: [0], memoryMiB: 1, shared: false)
        let shared = Partition(cpus: [2], nodes: [0], memoryMiB: 1, shared: true)
        for pair in [
            ["a": exclusive, "b": overlapping], ["a": exclusive, "b": shared], ["a": shared, "b": exclusive],
        ] {
            #expect { try PartitionAllocator(inventory: host, partitions: pair) } throws: {
                ($0 as? CoordinatorError)?.code == .inconsistentStore
                    && ($0 as? CoordinatorError)?.reason.contains("cpu2") == true
            }
        }
        let sharedTwice = try PartitionAllocator(inventory: host, partitions: ["a": shared, "b": shared])
        #expect(sharedTwice.usedCPUs == [2])
    }

    @Test("the free summary groups CPUs by node")
    func summaryText() throws {
        let host = try SyntheticHost.inventory(sockets: 2, cores: 4, threads: 1, memoryMiB: 4096)
        let allocator = try PartitionAllocator(inventory: host, reserve: HostReserve(cpuCount: 2, memoryMiB: 1024))
        #expect(allocator.available().summary == "6 CPUs (cpus 2-3 on node 0, 4-7 on node 1) and 3072 MiB")
    }
}
