public import Foundation

/// The `cmk ps` table: one line per instance with its state, CPUs, memory, policy and age.
public enum InstanceTable {
    /// Renders `records` as a table, ages counted up to `now`.
    public static func render(_ records: [InstanceRecord], now: Date) -> String {
        guard !records.isEmpty else { return "no instances" }
        let header = ["NAME", "STATE", "CPUS", "MEMORY", "POLICY", "AGE"]
        let rows = records.map { record -> [String] in
            let cpus = CPUList.format(record.partition.cpus) + (record.partition.shared ? " (shared)" : "")
            let held = record.holdsPartition || record.state == .stopped ? cpus : cpus + " (released)"
            return [
                record.name, record.state.rawValue, held, "\(record.partition.memoryMiB) MiB",
                record.policy?.description ?? "-", age(from: record.createdAt, to: now),
            ]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max()! }
        return ([header] + rows).map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// "42s", "5m", "3h", "2d".
    public static func age(from start: Date, to now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(start)))
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3600: return "\(seconds / 60)m"
        case ..<(48 * 3600): return "\(seconds / 3600)h"
        default: return "\(seconds / 86400)d"
        }
    }
}

/// What `cmk host` reports: the inventory, the reserve, what live instances hold and what is free.
public struct HostReport: Sendable, Codable, Hashable {
    /// CPUs and memory of one kind of use.
    public struct Share: Sendable, Codable, Hashable {
        public let cpus: [Int]
        public let memoryMiB: Int
    }

    public let inventory: HostInventory
    public let reserve: Share
    /// Held by live instances' partitions.
    public let held: Share
    /// Free for an exclusive partition.
    public let free: AvailableResources
    /// Free for a shared partition (also CPUs only shared partitions hold).
    public let freeForSharing: AvailableResources
    /// Instances holding a partition.
    public let partitionCount: Int

    public init(_ allocator: PartitionAllocator) {
        inventory = allocator.inventory
        reserve = Share(cpus: allocator.reservedCPUs, memoryMiB: allocator.reservedMemoryMiB)
        held = Share(cpus: allocator.usedCPUs, memoryMiB: allocator.usedMemoryMiB)
        free = allocator.available(shared: false)
        freeForSharing = allocator.available(shared: true)
        partitionCount = allocator.partitions.count
    }

    /// The report as aligned lines.
    public func render() -> String {
        let cores = inventory.cores
        let threads = Set(cores.map(\.count)).sorted().map(String.init).joined(separator: " or ")
        var lines: [(String, String)] = [
            (
                "CPUs",
                "\(inventory.cpus.count) online (\(CPUList.format(inventory.cpus.map(\.id)))) in \(cores.count) "
                    + "core\(cores.count == 1 ? "" : "s") of \(threads) thread\(threads == "1" ? "" : "s")"
            )
        ]
        for node in inventory.nodes {
            let cpus = inventory.cpus(onNode: node)
            lines.append(("node \(node)", "\(cpuCountText(cpus.count)): \(CPUList.format(cpus))"))
        }
        lines.append(("memory", "\(inventory.memoryTotalMiB) MiB total, \(inventory.memoryAvailableMiB) MiB available"))
        let pools = inventory.hugePages.map { "\($0.pageSizeKiB) kB pages: \($0.free) of \($0.total) free" }
        lines.append(("huge pages", pools.isEmpty ? "none" : pools.joined(separator: "; ")))
        lines.append(("reserve", "\(describe(reserve.cpus)) and \(reserve.memoryMiB) MiB kept for the host"))
        lines.append(
            (
                "held",
                "\(describe(held.cpus)) and \(held.memoryMiB) MiB by \(partitionCount) "
                    + "instance\(partitionCount == 1 ? "" : "s")"
            ))
        lines.append(("free", free.summary))
        if freeForSharing.cpus != free.cpus { lines.append(("free shared", freeForSharing.summary)) }
        let width = lines.map(\.0.count).max()!
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
            .joined(separator: "\n")
    }

    private func describe(_ cpus: [Int]) -> String {
        switch cpus.count {
        case 0: cpuCountText(0)
        case 1: "1 CPU (cpu\(cpus[0]))"
        default: "\(cpuCountText(cpus.count)) (cpus \(CPUList.format(cpus)))"
        }
    }
}
