import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("cmk ps and cmk host, run as a user runs them", .serialized)
struct InstanceCommandTests {
    @Test("cmk ps on a fresh state folder lists nothing, in both forms")
    func psEmpty() throws {
        let folder = try TemporaryFolder()
        let table = try BuiltCMK.run(["ps", "--state-dir", folder.url.path])
        #expect(table.status == 0, "\(table.standardError)")
        #expect(table.standardOutput == "no instances\n")
        let json = try BuiltCMK.run(["ps", "--json", "--state-dir", folder.url.path])
        #expect(json.status == 0, "\(json.standardError)")
        #expect((try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [Any])?.isEmpty == true)
    }

    @Test("cmk ps shows state, CPUs (shared marked), memory, policy and age of live instances; --all adds stopped ones")
    func psLists() throws {
        let folder = try TemporaryFolder()
        let state = CMKStateDirectory(folder.url)
        let host = try HostInventory.read()
        let store = try InstanceStore(state, options: .init(reserve: HostReserve(cpuCount: 0, memoryMiB: 0)))
        let web = try store.reserve(
            InstanceRequest(
                name: "web", resources: PartitionRequest(cpuCount: 1, memoryMiB: 512),
                policy: PolicyReference(id: "web-snp", version: 3, digest: String(repeating: "0", count: 64))),
            on: host)
        let batch = try store.reserve(
            InstanceRequest(
                name: "batch", resources: PartitionRequest(cpuCount: 1, memoryMiB: 256, allowSharedCores: true)),
            on: host)
        let old = try store.reserve(
            InstanceRequest(
                name: "old", resources: PartitionRequest(cpuCount: 1, memoryMiB: 64, allowSharedCores: true)), on: host)
        try store.transition("old", to: .failed, reason: "never booted")
        try store.transition("old", to: .stopping, reason: "cleanup")
        try store.transition("old", to: .stopped, reason: "done")
        // The coordinator keeps running (holds the lock) while cmk ps reads.
        defer { store.close() }

        let table = try BuiltCMK.run(["ps", "--state-dir", folder.url.path])
        #expect(table.status == 0, "\(table.standardError)")
        let lines = table.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(
            lines[0].hasPrefix("NAME") && lines[0].contains("STATE") && lines[0].contains("CPUS")
                && lines[0].hasSuffix("AGE"))
        #expect(lines[1].hasPrefix("web ") && lines[1].contains("reserved") && lines[1].contains("512 MiB"))
        #expect(lines[1].contains("web-snp@3") && lines[1].contains(CPUList.format(web.partition.cpus)))
        #expect(lines[2].hasPrefix("batch") && lines[2].contains("\(CPUList.format(batch.partition.cpus)) (shared)"))
        #expect(lines[2].contains(" - "), "no policy is shown as -")

        let all = try BuiltCMK.run(["ps", "--all", "--json", "--state-dir", folder.url.path])
        #expect(all.status == 0, "\(all.standardError)")
        let records = try #require(
            try JSONSerialization.jsonObject(with: Data(all.standardOutput.utf8)) as? [[String: Any]])
        #expect(records.map { $0["name"] as? String } == ["web", "batch", "old"])
        #expect(records.map { $0["state"] as? String } == ["reserved", "reserved", "stopped"])
        #expect(records[2]["id"] as? String == old.id)
        let partition = try #require(records[1]["partition"] as? [String: Any])
        #expect(partition["shared"] as? Bool == true && partition["memoryMiB"] as? Int == 256)
        #expect((records[0]["policy"] as? [String: Any])?["version"] as? Int == 3)
    }

    @Test("cmk host reports this host's CPUs and memory, and what is free after the reserve")
    func hostReport() throws {
        let folder = try TemporaryFolder()
        let host = try HostInventory.read()
        let output = try BuiltCMK.run(["host", "--json", "--state-dir", folder.url.path])
        #expect(output.status == 0, "\(output.standardError)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any])
        let inventory = try #require(json["inventory"] as? [String: Any])
        #expect((inventory["cpus"] as? [Any])?.count == host.cpus.count)
        #expect(inventory["memoryTotalKiB"] as? Int == host.memoryTotalKiB)
        let reserve = try #require(json["reserve"] as? [String: Any])
        #expect(reserve["cpus"] as? [Int] == [host.cpus[0].id] && reserve["memoryMiB"] as? Int == 1024)
        let free = try #require(json["free"] as? [String: Any])
        #expect((free["cpus"] as? [Int])?.count == host.cpus.count - 1)
        #expect(free["memoryMiB"] as? Int == host.memoryTotalMiB - 1024)

        let table = try BuiltCMK.run([
            "host", "--reserve-cpus", "0", "--reserve-memory-mib", "0", "--state-dir", folder.url.path,
        ])
        #expect(table.status == 0, "\(table.standardError)")
        for label in ["CPUs", "node 0", "memory", "huge pages", "reserve", "held", "free"] {
            #expect(table.standardOutput.contains(label), "missing \(label)")
        }
        let freeLine = table.standardOutput.split(separator: "\n").first { $0.hasPrefix("free ") }
        #expect(freeLine?.contains(" \(cpuCount(host.cpus.count)) ") == true, "\(table.standardOutput)")
        #expect(table.standardOutput.contains("and \(host.memoryTotalMiB) MiB"))
    }

    @Test("cmk host counts the partitions live instances hold")
    func hostWithInstances() throws {
        let folder = try TemporaryFolder()
        let host = try HostInventory.read()
        let store = try InstanceStore(CMKStateDirectory(folder.url))
        let record = try store.reserve(
            InstanceRequest(name: "web", resources: PartitionRequest(cpuCount: 1, memoryMiB: 2048)), on: host)
        store.close()
        let output = try BuiltCMK.run(["host", "--json", "--state-dir", folder.url.path])
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any])
        let held = try #require(json["held"] as? [String: Any])
        #expect(held["cpus"] as? [Int] == record.partition.cpus && held["memoryMiB"] as? Int == 2048)
        #expect((json["free"] as? [String: Any])?["memoryMiB"] as? Int == host.memoryTotalMiB - 1024 - 2048)
    }

    @Test("bad flags are usage errors (2); a store from a newer cmk is an error that says so")
    func errors() throws {
        #expect(try BuiltCMK.run(["host", "--reserve-cpus", "-1"]).status == 2)
        let folder = try TemporaryFolder()
        try InstanceStore(CMKStateDirectory(folder.url)).close()
        let edit = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/env"),
            [
                "python3", "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                    + "c.execute(\"INSERT INTO grdb_migrations VALUES ('v99-future')\"); c.commit()",
                folder.url.appendingPathComponent("instances.sqlite").path,
            ])
        #expect(edit.status == 0, "\(edit.standardError)")
        let output = try BuiltCMK.run(["ps", "--state-dir", folder.url.path])
        #expect(output.status == 2)
        #expect(output.standardError.contains("[unsupported-schema]") && output.standardError.contains("newer cmk"))
    }

    private func cpuCount(_ count: Int) -> String { count == 1 ? "1 CPU" : "\(count) CPUs" }
}
