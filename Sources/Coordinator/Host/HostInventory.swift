public import Foundation

/// The CPUs, NUMA nodes, memory and huge pages of this host, as the kernel reports them: what the
/// ``PartitionAllocator`` divides among instances.
///
/// Reading (``read(root:)``) is separate from parsing (``parse(_:)``), which works on texts, so every topology
/// can be tested without the machine that has it.
public struct HostInventory: Sendable, Codable, Hashable {
    /// One online logical CPU.
    public struct CPU: Sendable, Codable, Hashable {
        /// The kernel's CPU number.
        public let id: Int
        /// The NUMA node it belongs to.
        public let node: Int
        /// The physical core, named by its lowest online hardware thread (`thread_siblings_list`).
        public let core: Int
        /// Every online hardware thread of its core, itself included, ascending.
        public let siblings: [Int]

        public init(id: Int, node: Int, core: Int, siblings: [Int]) {
            self.id = id
            self.node = node
            self.core = core
            self.siblings = siblings
        }
    }

    /// One pool of huge pages of one size (`/sys/kernel/mm/hugepages/hugepages-<size>kB`).
    public struct HugePagePool: Sendable, Codable, Hashable {
        public let pageSizeKiB: Int
        /// Pages in the pool (`nr_hugepages`).
        public let total: Int
        /// Pages not in use (`free_hugepages`).
        public let free: Int

        public init(pageSizeKiB: Int, total: Int, free: Int) {
            self.pageSizeKiB = pageSizeKiB
            self.total = total
            self.free = free
        }
    }

    /// Online CPUs, ascending by id.
    public let cpus: [CPU]
    /// `MemTotal` of /proc/meminfo.
    public let memoryTotalKiB: Int
    /// `MemAvailable` of /proc/meminfo (`MemFree` on kernels before 3.14): what could be used now without
    /// swapping; informative, the allocator budgets against the total.
    public let memoryAvailableKiB: Int
    /// Huge-page pools, by page size; empty when the kernel has none.
    public let hugePages: [HugePagePool]

    public init(cpus: [CPU], memoryTotalKiB: Int, memoryAvailableKiB: Int, hugePages: [HugePagePool] = []) {
        self.cpus = cpus.sorted { $0.id < $1.id }
        self.memoryTotalKiB = memoryTotalKiB
        self.memoryAvailableKiB = memoryAvailableKiB
        self.hugePages = hugePages.sorted { $0.pageSizeKiB < $1.pageSizeKiB }
    }

    /// `MemTotal` in MiB, rounded down.
    public var memoryTotalMiB: Int { memoryTotalKiB / 1024 }
    /// `MemAvailable` in MiB, rounded down.
    public var memoryAvailableMiB: Int { memoryAvailableKiB / 1024 }

    /// The NUMA nodes that have online CPUs, ascending.
    public var nodes: [Int] { Set(cpus.map(\.node)).sorted() }

    /// The online CPUs of one node.
    public func cpus(onNode node: Int) -> [Int] { cpus.filter { $0.node == node }.map(\.id) }

    /// The physical cores, each as its online hardware threads, ordered by their lowest thread.
    public var cores: [[Int]] {
        var seen = Set<Int>()
        return cpus.compactMap { cpu in seen.insert(cpu.core).inserted ? cpu.siblings : nil }
    }

    /// Looks a CPU up by number (a binary search: `cpus` is ascending).
    public func cpu(_ id: Int) -> CPU? {
        var low = 0
        var high = cpus.count
        while low < high {
            let middle = (low + high) / 2
            if cpus[middle].id < id { low = middle + 1 } else { high = middle }
        }
        return low < cpus.count && cpus[low].id == id ? cpus[low] : nil
    }
}

// MARK: Parsing (texts in, inventory out)

/// The texts the inventory is made of, keyed as the kernel lays them out. What ``HostInventory/read(root:)``
/// collects from a host; tests build it from samples and synthetic topologies.
public struct HostInventoryText: Sendable {
    /// `/sys/devices/system/cpu/online`.
    public var online: String
    /// `/sys/devices/system/node/node<N>/cpulist` by node number; empty on a kernel without NUMA, where every
    /// CPU counts as node 0.
    public var nodeCPULists: [Int: String]
    /// `/sys/devices/system/cpu/cpu<N>/topology/thread_siblings_list` by CPU number; a CPU without one is a
    /// core of its own.
    public var threadSiblings: [Int: String]
    /// `/proc/meminfo`.
    public var meminfo: String
    /// `nr_hugepages` and `free_hugepages` by the folder name under /sys/kernel/mm/hugepages
    /// (`hugepages-2048kB`).
    public var hugePages: [String: (total: String, free: String)]

    public init(
        online: String, nodeCPULists: [Int: String] = [:], threadSiblings: [Int: String] = [:], meminfo: String,
        hugePages: [String: (total: String, free: String)] = [:]
    ) {
        self.online = online
        self.nodeCPULists = nodeCPULists
        self.threadSiblings = threadSiblings
        self.meminfo = meminfo
        self.hugePages = hugePages
    }

    static let onlinePath = "/sys/devices/system/cpu/online"
    static let meminfoPath = "/proc/meminfo"
    static func nodePath(_ node: Int) -> String { "/sys/devices/system/node/node\(node)/cpulist" }
    static func siblingsPath(_ cpu: Int) -> String { "/sys/devices/system/cpu/cpu\(cpu)/topology/thread_siblings_list" }
    static func hugePagesPath(_ folder: String) -> String { "/sys/kernel/mm/hugepages/\(folder)" }
}

extension HostInventory {
    /// Builds the inventory from the kernel's texts; malformed or contradictory text is an error naming the file.
    public static func parse(_ text: HostInventoryText) throws(CoordinatorError) -> HostInventory {
        let online = try CPUList.parse(text.online, file: HostInventoryText.onlinePath)
        guard !online.isEmpty else {
            throw CoordinatorError(.malformedHostFile, "\(HostInventoryText.onlinePath) names no online CPU")
        }
        let onlineSet = Set(online)

        var nodeOf: [Int: Int] = [:]
        for (node, listText) in text.nodeCPULists.sorted(by: { $0.key < $1.key }) {
            let path = HostInventoryText.nodePath(node)
            for cpu in try CPUList.parse(listText, file: path) where onlineSet.contains(cpu) {
                if let other = nodeOf[cpu] {
                    throw CoordinatorError(
                        .malformedHostFile, "\(path) names cpu\(cpu), which node\(other)'s cpulist names too")
                }
                nodeOf[cpu] = node
            }
        }
        if !text.nodeCPULists.isEmpty, let orphan = online.first(where: { nodeOf[$0] == nil }) {
            throw CoordinatorError(
                .malformedHostFile,
                "\(HostInventoryText.onlinePath) names cpu\(orphan), but no /sys/devices/system/node/node*/cpulist does"
            )
        }

        var siblingsOf: [Int: [Int]] = [:]
        for cpu in online {
            let path = HostInventoryText.siblingsPath(cpu)
            guard let listText = text.threadSiblings[cpu] else {
                siblingsOf[cpu] = [cpu]
                continue
            }
            let siblings = try CPUList.parse(listText, file: path).filter(onlineSet.contains)
            guard siblings.contains(cpu) else {
                throw CoordinatorError(.malformedHostFile, "\(path) does not name cpu\(cpu) itself")
            }
            siblingsOf[cpu] = siblings
        }
        var cpus: [CPU] = []
        for cpu in online {
            let siblings = siblingsOf[cpu]!
            let node = nodeOf[cpu] ?? 0
            for sibling in siblings where sibling != cpu {
                guard siblingsOf[sibling] == siblings else {
                    throw CoordinatorError(
                        .malformedHostFile,
                        "\(HostInventoryText.siblingsPath(cpu)) names cpu\(sibling) as a sibling, but "
                            + "\(HostInventoryText.siblingsPath(sibling)) lists \(CPUList.format(siblingsOf[sibling]!))"
                    )
                }
                guard (nodeOf[sibling] ?? 0) == node else {
                    throw CoordinatorError(
                        .malformedHostFile,
                        "\(HostInventoryText.siblingsPath(cpu)) names cpu\(sibling) as a sibling on another NUMA node")
                }
            }
            cpus.append(CPU(id: cpu, node: node, core: siblings[0], siblings: siblings))
        }

        let memory = try MemInfo.parse(text.meminfo, file: HostInventoryText.meminfoPath)
        guard let total = memory["MemTotal"] else {
            throw CoordinatorError(.malformedHostFile, "\(HostInventoryText.meminfoPath) has no MemTotal line")
        }
        guard let available = memory["MemAvailable"] ?? memory["MemFree"] else {
            throw CoordinatorError(
                .malformedHostFile, "\(HostInventoryText.meminfoPath) has neither a MemAvailable nor a MemFree line")
        }

        var pools: [HugePagePool] = []
        for (folder, counts) in text.hugePages {
            let path = HostInventoryText.hugePagesPath(folder)
            guard folder.hasPrefix("hugepages-"), folder.hasSuffix("kB"),
                let size = Int(folder.dropFirst("hugepages-".count).dropLast(2)), size > 0
            else { throw CoordinatorError(.malformedHostFile, "\(path) is not named hugepages-<size>kB") }
            guard let pages = Int(counts.total.trimmingWhitespace()), pages >= 0 else {
                throw CoordinatorError(.malformedHostFile, "\(path)/nr_hugepages does not hold a page count")
            }
            guard let free = Int(counts.free.trimmingWhitespace()), (0...pages).contains(free) else {
                throw CoordinatorError(
                    .malformedHostFile, "\(path)/free_hugepages does not hold a page count of at most \(pages)")
            }
            pools.append(HugePagePool(pageSizeKiB: size, total: pages, free: free))
        }
        return HostInventory(cpus: cpus, memoryTotalKiB: total, memoryAvailableKiB: available, hugePages: pools)
    }
}

/// `/proc/meminfo`: one "Name:   value [kB]" line per counter.
public enum MemInfo {
    /// The counters by name, in KiB for those with a unit (and plain counts, like `HugePages_Total`, as they are).
    public static func parse(_ text: String, file: String) throws(CoordinatorError) -> [String: Int] {
        var values: [String: Int] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingWhitespace().isEmpty { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw CoordinatorError(.malformedHostFile, "\(file) line \(index + 1) has no ':': '\(line)'")
            }
            let name = String(line[..<colon])
            let fields = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)
            guard !name.isEmpty, (1...2).contains(fields.count), fields.count == 1 || fields[1] == "kB",
                let value = Int(fields[0]), value >= 0
            else {
                throw CoordinatorError(
                    .malformedHostFile, "\(file) line \(index + 1) is not 'Name: number [kB]': '\(line)'")
            }
            values[name] = value
        }
        return values
    }
}

// MARK: Reading (a host in, texts out)

extension HostInventory {
    /// Reads and parses the inventory of the host whose file system starts at `root` (a prepared tree in tests).
    public static func read(root: URL = URL(fileURLWithPath: "/")) throws(CoordinatorError) -> HostInventory {
        try parse(try HostInventoryText.read(root: root))
    }
}

extension HostInventoryText {
    /// Collects the texts from the host whose file system starts at `root`.
    public static func read(root: URL = URL(fileURLWithPath: "/")) throws(CoordinatorError) -> HostInventoryText {
        func path(_ canonical: String) -> String { root.appendingPathComponent(String(canonical.dropFirst())).path }
        func required(_ canonical: String) throws(CoordinatorError) -> String {
            do {
                return try String(contentsOfFile: path(canonical), encoding: .utf8)
            } catch {
                throw CoordinatorError(.hostFileUnreadable, "cannot read \(canonical): \(error.localizedDescription)")
            }
        }
        func optional(_ canonical: String) -> String? { try? String(contentsOfFile: path(canonical), encoding: .utf8) }
        func folders(_ canonical: String, prefix: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path(canonical))) ?? []).filter {
                $0.hasPrefix(prefix)
            }
        }

        let online = try required(onlinePath)
        var nodes: [Int: String] = [:]
        for folder in folders("/sys/devices/system/node", prefix: "node") {
            guard let node = Int(folder.dropFirst(4)) else { continue }
            nodes[node] = try required(nodePath(node))
        }
        var siblings: [Int: String] = [:]
        for cpu in try CPUList.parse(online, file: onlinePath) {
            siblings[cpu] = optional(siblingsPath(cpu))
        }
        var pools: [String: (total: String, free: String)] = [:]
        for folder in folders("/sys/kernel/mm/hugepages", prefix: "hugepages-") {
            pools[folder] = (
                try required(hugePagesPath(folder) + "/nr_hugepages"),
                try required(hugePagesPath(folder) + "/free_hugepages")
            )
        }
        return HostInventoryText(
            online: online, nodeCPULists: nodes, threadSiblings: siblings, meminfo: try required(meminfoPath),
            hugePages: pools)
    }
}
