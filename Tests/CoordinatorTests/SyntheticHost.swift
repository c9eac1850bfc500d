import Coordinator

/// Host texts for topologies this machine does not have, numbered the way Linux numbers them.
enum SyntheticHost {
    /// The texts of a host with `sockets` sockets (one NUMA node each) of `cores` cores of `threads` threads.
    ///
    /// - Parameters:
    ///   - adjacentSiblings: number a core's threads next to each other (cpu0, cpu1 on core 0), as some firmware
    ///     does; otherwise Linux's usual x86 order (cpu N and N + sockets × cores on one core).
    ///   - offline: CPUs taken offline; they vanish from `online`, node lists and sibling lists.
    static func text(
        sockets: Int, cores: Int, threads: Int, memoryMiB: Int = 65_536, adjacentSiblings: Bool = false,
        offline: Set<Int> = [], hugePages: [String: (total: String, free: String)] = [:]
    ) -> HostInventoryText {
        let coreCount = sockets * cores
        func cpu(socket: Int, core: Int, thread: Int) -> Int {
            adjacentSiblings
                ? (socket * cores + core) * threads + thread : thread * coreCount + socket * cores + core
        }
        var nodes: [Int: String] = [:]
        var siblings: [Int: String] = [:]
        var online: [Int] = []
        for socket in 0..<sockets {
            var nodeCPUs: [Int] = []
            for core in 0..<cores {
                let threadsOfCore = (0..<threads).map { cpu(socket: socket, core: core, thread: $0) }
                    .filter { !offline.contains($0) }
                for id in threadsOfCore { siblings[id] = CPUList.format(threadsOfCore) + "\n" }
                nodeCPUs += threadsOfCore
                online += threadsOfCore
            }
            nodes[socket] = CPUList.format(nodeCPUs) + "\n"
        }
        let kiB = memoryMiB * 1024
        let meminfo = """
            MemTotal:       \(kiB) kB
            MemFree:        \(kiB / 2) kB
            MemAvailable:   \(kiB * 3 / 4) kB
            HugePages_Total:       0
            Hugepagesize:       2048 kB

            """
        return HostInventoryText(
            online: CPUList.format(online) + "\n", nodeCPULists: nodes, threadSiblings: siblings, meminfo: meminfo,
            hugePages: hugePages)
    }

    static func inventory(
        sockets: Int, cores: Int, threads: Int, memoryMiB: Int = 65_536, adjacentSiblings: Bool = false,
        offline: Set<Int> = []
    ) throws -> HostInventory {
        try HostInventory.parse(
            text(
                sockets: sockets, cores: cores, threads: threads, memoryMiB: memoryMiB,
                adjacentSiblings: adjacentSiblings, offline: offline))
    }
}

/// Texts read off real machines.
enum RealHostSamples {
    /// The 2-CPU build machine (one node, no SMT), 2026-11.
    static let buildMachine = HostInventoryText(
        online: "0-1\n", nodeCPULists: [0: "0-1\n"], threadSiblings: [0: "0\n", 1: "1\n"],
        meminfo: """
            MemTotal:       24684096 kB
            MemFree:        18052984 kB
            MemAvailable:   23601828 kB
            Buffers:          136808 kB
            Cached:          5380532 kB
            SwapCached:            0 kB
            Active:          3500644 kB
            Inactive:        2249820 kB
            Active(anon):       1608 kB
            Inactive(anon):   240608 kB
            Active(file):    3499036 kB
            Inactive(file):  2009212 kB
            Unevictable:       16908 kB
            Mlocked:           16000 kB
            SwapTotal:             0 kB
            SwapFree:              0 kB
            AnonHugePages:         0 kB
            ShmemHugePages:        0 kB
            FileHugePages:     81920 kB
            HugePages_Total:       0
            HugePages_Free:        0
            HugePages_Rsvd:        0
            HugePages_Surp:        0
            Hugepagesize:       2048 kB
            Hugetlb:               0 kB
            DirectMap4k:      155476 kB
            DirectMap2M:     6135808 kB
            DirectMap1G:    19922944 kB

            """,
        hugePages: ["hugepages-2048kB": ("0\n", "0\n"), "hugepages-1048576kB": ("0\n", "0\n")])
}
