import CMKTesting
import Coordinator
import CoreFoundation
import Foundation
import GuestProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The host half of the handover against a real QEMU (paused with -S: no guest needs to run for QMP, thread
/// pinning or hot-plug), and the coordinator's secret and volume stores.
@Suite("Handover on the host: QMP, vCPU pinning, hot-plug, stores", .serialized)
struct HandoverHostTests {
    /// A paused q35 QEMU with `vcpus` vCPUs, `slots` hot-plug root ports and a QMP socket, pinned to `cpus`.
    static func pausedQEMU(vcpus: Int, slots: Int, cpus: [Int], folder: URL) throws -> (QEMUProcess, String) {
        let qmp = folder.appendingPathComponent("qmp.sock").path
        var arguments = [
            "taskset", "--cpu-list", CPUList.format(cpus), "qemu-system-x86_64", "-S", "-machine", "q35", "-accel",
            "tcg",
            "-smp", "\(vcpus)", "-m", "128M", "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
            "-qmp", "unix:\(qmp),server=on,wait=off",
        ]
        for slot in 0..<slots {
            arguments += ["-device", "pcie-root-port,id=\(Handover.slotID(slot)),bus=pcie.0,chassis=\(slot + 1)"]
        }
        return (try QEMUProcess.start(arguments), qmp)
    }

    /// A file's permission bits, through FileManager rather than stat(2): which C module owns `struct stat` on Linux
    /// (Glibc or CDispatch) moves with the order the target's files load them in.
    static func mode(_ path: String) throws -> Int {
        ((try FileManager.default.attributesOfItem(atPath: path))[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    /// Runs blocking work on its own thread (never on the cooperative pool) and awaits its result.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    @Test(
        "each vCPU thread QMP reports is pinned to one partition CPU, as /proc shows; QEMU's other threads keep the partition",
        .timeLimit(.minutes(3)))
    func pinsVCPUThreads() async throws {
        let folder = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let online = try CPUList.parse(
            try String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), file: "online")
        let (qemu, socket) = try Self.pausedQEMU(vcpus: 2, slots: 0, cpus: online, folder: folder)
        defer { Task { _ = await qemu.stop(grace: .seconds(2)) } }
        let pid = qemu.processIdentifier
        let (vcpus, pins) = try await Self.blocking {
            let client = try QMPClient(path: socket)
            let vcpus = try client.vcpus()
            return (vcpus, try VCPUPinning.pin(pid: pid, vcpus: vcpus, cpus: online))
        }
        #expect(vcpus.map(\.index) == [0, 1])
        #expect(Set(vcpus.map(\.threadID)).count == 2 && !vcpus.map(\.threadID).contains(pid))
        #expect(pins.map(\.cpu) == [online[0], online[1 % online.count]])
        for pin in pins {
            // Read back independently of VCPUPinning's own check.
            let status = try String(contentsOfFile: "/proc/\(pid)/task/\(pin.threadID)/status", encoding: .utf8)
            let line = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            #expect(line?.split(separator: "\t").last.map(String.init) == "\(pin.cpu)")
        }
        // The main thread is not a vCPU: it keeps the whole partition.
        #expect(try VCPUPinning.allowedCPUs(statusFile: "/proc/\(pid)/task/\(pid)/status") == online)
        // A thread id that is not QEMU's is refused, not pinned.
        #expect(throws: CoordinatorError.self) {
            try VCPUPinning.pin(pid: pid, vcpus: [QMPClient.VCPU(index: 0, threadID: getpid())], cpus: online)
        }
    }

    @Test("a volume image is hot-plugged as virtio-blk into a root port; QMP errors are typed", .timeLimit(.minutes(3)))
    func hotPlugsVolume() async throws {
        let folder = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let state = CMKStateDirectory(folder.appendingPathComponent("state"))
        let store = VolumeStore(state)
        let image = try store.create("data", sizeMiB: 4)
        #expect(throws: CoordinatorError.self) { try store.create("data", sizeMiB: 4) }
        #expect(throws: CoordinatorError.self) { try store.resolve("nothing") }
        #expect(throws: CoordinatorError.self) { try store.image(for: "../etc") }
        let attributes = try FileManager.default.attributesOfItem(atPath: image.path)
        #expect((attributes[.size] as? NSNumber)?.intValue == 4 << 20)
        #expect(try Self.mode(image.path) == 0o600)

        let (qemu, socket) = try Self.pausedQEMU(vcpus: 1, slots: 1, cpus: [0], folder: folder)
        defer { Task { _ = await qemu.stop(grace: .seconds(2)) } }
        let path = try store.resolve("data").path
        let (blocks, refused) = try await Self.blocking { () -> ([String], String) in
            let client = try QMPClient(path: socket)
            try client.execute(
                "blockdev-add",
                arguments: [
                    "driver": "raw", "node-name": "cmkvol0",
                    "file": ["driver": "file", "filename": path] as [String: Any],
                ])
            try client.execute(
                "device_add",
                arguments: [
                    "driver": "virtio-blk-pci", "id": "cmkvoldev0", "drive": "cmkvol0", "bus": Handover.slotID(0),
                    "serial": Handover.serial(0),
                ])
            let blocks = (try client.execute("query-block") as? [[String: Any]] ?? []).compactMap {
                $0["qdev"] as? String
            }
            var refused = ""
            do {
                try client.execute(
                    "device_add", arguments: ["driver": "virtio-blk-pci", "drive": "cmkvol0", "bus": "nowhere"])
            } catch let error as CoordinatorError {
                refused = "\(error.code): \(error.reason)"
            }
            return (blocks, refused)
        }
        #expect(blocks.contains { $0.contains("cmkvoldev0") }, "\(blocks)")
        #expect(refused.hasPrefix("qmp: QEMU refused device_add"), "\(refused)")
    }

    @Test("no QMP socket is a typed error, not a hang")
    func noSocket() throws {
        #expect { try QMPClient(path: "/tmp/cmk-no-such-qmp.sock", timeout: .milliseconds(200)) } throws: {
            ($0 as? CoordinatorError)?.code == .qmp
        }
    }

    @Test("secrets are stored 0600 by reference and resolved; loose permissions, links and unknown names are refused")
    func secretStore() throws {
        let folder = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = SecretStore(CMKStateDirectory(folder))
        try store.put("vault:db/credentials", contents: Array("pw".utf8))
        let file = try store.file(for: "vault:db/credentials")
        #expect(file.lastPathComponent == "vault%3Adb%2Fcredentials")
        #expect(try Self.mode(file.path) == 0o600)
        #expect(try Self.mode(store.directory.path) == 0o700)
        #expect(try store.resolve("vault:db/credentials") == Array("pw".utf8))
        #expect(store.references() == ["vault:db/credentials"])
        #expect { try store.resolve("other") } throws: { "\($0)".contains("cmk secret put other") }
        chmod(file.path, 0o644)
        #expect { try store.resolve("vault:db/credentials") } throws: { "\($0)".contains("mode 644): chmod 600 it") }
        chmod(file.path, 0o600)
        symlink(file.path, store.directory.appendingPathComponent("link").path)
        #expect(throws: CoordinatorError.self) { try store.resolve("link") }
        #expect(throws: CoordinatorError.self) { try store.put("..", contents: [1]) }
        #expect(throws: CoordinatorError.self) { try store.put("a b", contents: [1]) }
        // A reference with dots and slashes is one flat file inside the store, never a path out of it.
        try store.put("../x", contents: [1])
        #expect(try store.file(for: "../x").deletingLastPathComponent().path == store.directory.path)
        #expect(throws: CoordinatorError.self) {
            try store.put("big", contents: [UInt8](repeating: 0, count: (1 << 20) + 1))
        }
    }

    @Test("the QEMU command line has the QMP socket and one root port per volume slot")
    func commandLine() throws {
        let settings = QEMUInstanceSettings(
            name: "h", kernel: "/k", initrd: "/i", commandLine: "console=ttyS0", vcpus: 1, memoryMiB: 512,
            serialLog: "/s",
            pidFile: "/p", controlSocket: "/c", platformSocket: "/pl", qmpSocket: "/q,mp", hotplugSlots: 2)
        let arguments = try SimulatedLaunchCommand(settings: settings).arguments()
        #expect(arguments.contains("unix:/q,,mp,server=on,wait=off"))
        #expect(arguments.contains("pcie-root-port,id=cmkslot0,bus=pcie.0,chassis=1"))
        #expect(arguments.contains("pcie-root-port,id=cmkslot1,bus=pcie.0,chassis=2"))
        var bad = settings
        bad.hotplugSlots = 17
        #expect(throws: QEMULaunchError.self) { try SimulatedLaunchCommand(settings: bad).arguments() }
    }

    @Test("the store records what an instance was handed, names only, and reads it back by id or name")
    func recordsHandover() throws {
        let folder = try shortTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try InstanceStore(CMKStateDirectory(folder))
        defer { store.close() }
        let host = try SyntheticHost.inventory(sockets: 1, cores: 4, threads: 1, memoryMiB: 16_384)
        let record = try store.reserve(
            InstanceRequest(
                name: "web", resources: PartitionRequest(cpuCount: 1, memoryMiB: 1024), profile: "general",
                policy: PolicyReference(id: "p", version: 1, digest: "d")),
            on: host)
        #expect(try store.handover(of: "web") == nil)
        try store.recordHandover(
            record.id, secrets: ["vault:a/b"], volumes: ["data"], channelPeers: ["gateway", "db"],
            sealedSecretsSHA256: "00ff")
        let stored = try #require(try store.handover(of: "web"))
        #expect(stored.instanceID == record.id)
        #expect(
            stored.secrets == ["vault:a/b"] && stored.volumes == ["data"] && stored.channelPeers == ["gateway", "db"])
        #expect(stored.sealedSecretsSHA256 == "00ff")
        #expect(try store.handover(of: record.id) == stored)
        #expect {
            try store.recordHandover("nobody", secrets: [], volumes: [], channelPeers: [], sealedSecretsSHA256: nil)
        } throws: {
            ($0 as? CoordinatorError)?.code == .unknownInstance
        }
    }
}
