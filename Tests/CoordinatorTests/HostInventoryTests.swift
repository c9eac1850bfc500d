import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("the host inventory, read from /sys and /proc")
struct HostInventoryTests {
    @Test(
        "CPU lists with ranges and single CPUs are parsed",
        arguments: [
            ("0-3,8-11", [0, 1, 2, 3, 8, 9, 10, 11]),
            ("0", [0]),
            ("0-1\n", [0, 1]),
            ("0,128", [0, 128]),
            ("", []),
            ("\n", []),
            ("5,1-2", [1, 2, 5]),
        ])
    func parsesCPULists(text: String, expected: [Int]) throws {
        #expect(try CPUList.parse(text, file: "/test") == expected)
    }

    @Test(
        "malformed CPU lists are errors that name the file",
        arguments: [
            "0-", "-3", "a", "0,,1", "3-1", "0-3:2/4", "1 2", "0-99999999", "0x1",
        ])
    func rejectsMalformedCPULists(text: String) {
        #expect {
            try CPUList.parse(text, file: "/sys/devices/system/cpu/online")
        } throws: { error in
            let error = error as? CoordinatorError
            return error?.code == .malformedHostFile && error?.reason.contains("/sys/devices/system/cpu/online") == true
        }
    }

    @Test("CPU lists are formatted as the kernel writes them, and read back the same")
    func formatsCPULists() throws {
        #expect(CPUList.format([0, 1, 2, 3, 8, 9, 10, 11]) == "0-3,8-11")
        #expect(CPUList.format([5, 0, 1]) == "0-1,5")
        #expect(CPUList.format([]) == "")
        var generator = SeededGenerator(state: 8)
        for _ in 0..<200 {
            let cpus = Set(
                (0..<Int.random(in: 0...40, using: &generator)).map { _ in Int.random(in: 0...300, using: &generator) })
            #expect(try CPUList.parse(CPUList.format(cpus), file: "x") == cpus.sorted())
        }
    }

    @Test("the build machine's own texts: 2 CPUs on node 0, no SMT, 24 GiB, two empty huge-page pools")
    func parsesBuildMachineSample() throws {
        let inventory = try HostInventory.parse(RealHostSamples.buildMachine)
        #expect(inventory.cpus.map(\.id) == [0, 1])
        #expect(inventory.nodes == [0])
        #expect(inventory.cores == [[0], [1]])
        #expect(inventory.memoryTotalKiB == 24_684_096)
        #expect(inventory.memoryAvailableKiB == 23_601_828)
        #expect(inventory.memoryTotalMiB == 24_105)
        #expect(
            inventory.hugePages == [
                .init(pageSizeKiB: 2048, total: 0, free: 0), .init(pageSizeKiB: 1_048_576, total: 0, free: 0),
            ])
    }

    @Test("2 sockets × 64 cores × 2 threads: 256 CPUs on 2 nodes, cpu N and N+128 share a core")
    func parsesLargeSMTTopology() throws {
        let inventory = try SyntheticHost.inventory(sockets: 2, cores: 64, threads: 2)
        #expect(inventory.cpus.count == 256)
        #expect(inventory.nodes == [0, 1])
        #expect(inventory.cores.count == 128)
        #expect(inventory.cpu(0)?.siblings == [0, 128])
        #expect(inventory.cpu(128)?.core == 0)
        #expect(inventory.cpu(64)?.node == 1 && inventory.cpu(192)?.node == 1)
        #expect(inventory.cpus(onNode: 0) == Array(0...63) + Array(128...191))
    }

    @Test("adjacent sibling numbering, SMT-4 and offline CPUs are understood")
    func parsesOtherTopologies() throws {
        let adjacent = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 2, adjacentSiblings: true)
        #expect(adjacent.cores == [[0, 1], [2, 3], [4, 5], [6, 7]])
        let smt4 = try SyntheticHost.inventory(sockets: 2, cores: 4, threads: 4)
        #expect(smt4.cpu(0)?.siblings == [0, 8, 16, 24])
        let holes = try SyntheticHost.inventory(sockets: 2, cores: 4, threads: 2, offline: [3, 8])
        #expect(holes.cpus.count == 14)
        #expect(holes.cpu(3) == nil && holes.cpu(8) == nil)
        #expect(holes.cpu(0)?.siblings == [0])
        #expect(holes.cpu(11)?.siblings == [11])
    }

    @Test("a kernel without NUMA (no node folders) puts every CPU on node 0; no sibling file makes a core")
    func noNUMANoTopology() throws {
        let inventory = try HostInventory.parse(
            HostInventoryText(online: "0-3", meminfo: "MemTotal: 1048576 kB\nMemFree: 4 kB\n"))
        #expect(inventory.nodes == [0])
        #expect(inventory.cores == [[0], [1], [2], [3]])
        #expect(inventory.memoryAvailableKiB == 4)
    }

    @Test(
        "malformed or contradictory host text is an error naming the file",
        arguments: [
            ("online", "/sys/devices/system/cpu/online"),
            ("node", "/sys/devices/system/node/node1/cpulist"),
            ("node-overlap", "/sys/devices/system/node/node1/cpulist"),
            ("orphan", "no /sys/devices/system/node/node*/cpulist"),
            ("siblings", "/sys/devices/system/cpu/cpu2/topology/thread_siblings_list"),
            ("asymmetric", "/sys/devices/system/cpu/cpu1/topology/thread_siblings_list"),
            ("not-self", "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"),
            ("meminfo", "/proc/meminfo line 2"),
            ("memtotal", "/proc/meminfo has no MemTotal"),
            ("hugepages", "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"),
            ("empty", "/sys/devices/system/cpu/online names no online CPU"),
        ])
    func rejectsMalformedText(kind: String, fileMention: String) {
        var text = SyntheticHost.text(sockets: 2, cores: 2, threads: 2)
        switch kind {
        case "online": text.online = "0-7,x"
        case "node": text.nodeCPULists[1] = "2-"
        case "node-overlap": text.nodeCPULists[1] = "0-7"
        case "orphan": text.nodeCPULists[1] = ""
        case "siblings": text.threadSiblings[2] = "2,,6"
        case "asymmetric": text.threadSiblings[1] = "1,3"
        case "not-self": text.threadSiblings[0] = "4"
        case "meminfo": text.meminfo = "MemTotal: 1 kB\nMemFree 12 kB\n"
        case "memtotal": text.meminfo = "MemFree: 12 kB\n"
        case "hugepages": text.hugePages = ["hugepages-2048kB": ("4\n", "9\n")]
        case "empty": text.online = "\n"
        default: Issue.record("unknown case \(kind)")
        }
        #expect {
            try HostInventory.parse(text)
        } throws: { error in
            let error = error as? CoordinatorError
            return error?.code == .malformedHostFile && error?.reason.contains(fileMention) == true
        }
    }

    @Test("a prepared file tree is read like a host: nodes, siblings, meminfo and huge pages")
    func readsPreparedRoot() throws {
        let root = try TemporaryFolder()
        let text = SyntheticHost.text(
            sockets: 2, cores: 2, threads: 2, hugePages: ["hugepages-2048kB": ("16\n", "12\n")])
        try root.write("sys/devices/system/cpu/online", text.online)
        for (node, list) in text.nodeCPULists { try root.write("sys/devices/system/node/node\(node)/cpulist", list) }
        try root.write("sys/devices/system/node/possible", "0-1\n")
        for (cpu, list) in text.threadSiblings {
            try root.write("sys/devices/system/cpu/cpu\(cpu)/topology/thread_siblings_list", list)
        }
        try root.write("proc/meminfo", text.meminfo)
        try root.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "16\n")
        try root.write("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "12\n")
        let inventory = try HostInventory.read(root: root.url)
        #expect(inventory == (try HostInventory.parse(text)))
        #expect(inventory.hugePages == [.init(pageSizeKiB: 2048, total: 16, free: 12)])

        try FileManager.default.removeItem(at: root.url.appendingPathComponent("proc/meminfo"))
        #expect {
            try HostInventory.read(root: root.url)
        } throws: { error in
            (error as? CoordinatorError)?.code == .hostFileUnreadable
                && (error as? CoordinatorError)?.reason.contains("/proc/meminfo") == true
        }
    }

    @Test("this host's inventory agrees with what the C library and /proc say")
    func readsThisHost() throws {
        let inventory = try HostInventory.read()
        #expect(inventory.cpus.count == sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let pages = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        #expect(abs(inventory.memoryTotalKiB - pages / 1024) < 64 * 1024)
        #expect(inventory.memoryAvailableKiB <= inventory.memoryTotalKiB)
        for cpu in inventory.cpus { #expect(cpu.siblings.contains(cpu.id) && cpu.core == cpu.siblings[0]) }
    }
}

/// A temporary folder, removed when the value goes away.
final class TemporaryFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ relative: String, _ text: String) throws {
        let file = url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
    }
}
