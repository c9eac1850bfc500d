import BinaryFormat
import CMKTesting
import EventLog
import Foundation
import Testing

/// Boots the Debian cloud kernel under a real OVMF with a software TPM (swtpm) attached, in QEMU with TCG,
/// and reads back the event log the firmware and the kernel's EFI stub wrote: an independent, live source
/// of a crypto-agile log with SHA-1, SHA-256, SHA-384 and SHA-512 banks.
struct MeasuredBoot {
    static let beginMarker = "CMK-EVENTLOG-BEGIN"
    static let endMarker = "CMK-EVENTLOG-END"
    static let firmware = "/usr/share/ovmf/OVMF.fd"
    static let busybox = "/bin/busybox"
    /// Hard limit for the whole QEMU run (the boot takes about 30 s of wall time under TCG here).
    static let qemuTimeout: TimeInterval = 150

    /// The init script: mount what the log needs, print it base64-encoded between markers, power off.
    static func initScript(modules: [String]) -> String {
        """
        #!/bin/busybox sh
        /bin/busybox mount -t devtmpfs devtmpfs /dev
        exec </dev/console >/dev/console 2>&1
        /bin/busybox mount -t proc proc /proc
        /bin/busybox mount -t sysfs sysfs /sys
        /bin/busybox mount -t securityfs securityfs /sys/kernel/security
        echo 1 > /proc/sys/kernel/printk
        \(modules.map { "/bin/busybox insmod /lib/modules/\($0)\n" }.joined())\
        echo \(beginMarker)
        /bin/busybox base64 /sys/kernel/security/tpm0/binary_bios_measurements
        echo \(endMarker)
        /bin/busybox poweroff -f

        """
    }

    let work: URL
    let kernelRoot: URL

    init() throws {
        kernelRoot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel")
        work = URL(fileURLWithPath: "/tmp").appendingPathComponent("cmk-evl-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    func removeWorkDirectory() { try? FileManager.default.removeItem(at: work) }

    /// The Debian cloud kernel `scripts/setup` unpacked.
    func kernel() throws -> URL {
        let boot = kernelRoot.appendingPathComponent("boot")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: boot.path)) ?? []
        let name = try #require(
            names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last,
            "no guest kernel in \(boot.path): run scripts/setup (it unpacks linux-image-*-cloud-amd64 there)")
        return boot.appendingPathComponent(name)
    }

    /// The TPM driver modules to load from the initramfs, in order; none when the kernel has them built in.
    func tpmModules(into directory: URL) throws -> [String] {
        let boot = kernelRoot.appendingPathComponent("boot")
        let config = try #require(
            try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("config-") },
            "no kernel config beside the kernel")
        let text = try String(contentsOf: boot.appendingPathComponent(config), encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map(String.init))
        if lines.contains("CONFIG_TCG_TIS=y") && lines.contains("CONFIG_TCG_TPM=y") { return [] }
        // tpm_tis is a module: load tpm, tpm_tis_core and tpm_tis, decompressed (busybox insmod reads plain .ko).
        let modulesRoot = kernelRoot.appendingPathComponent("lib/modules")
        let release = try #require(try FileManager.default.contentsOfDirectory(atPath: modulesRoot.path).first)
        let tpm = modulesRoot.appendingPathComponent("\(release)/kernel/drivers/char/tpm")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var loaded: [String] = []
        for (name, configKey) in [("tpm", "CONFIG_TCG_TPM"), ("tpm_tis_core", "CONFIG_TCG_TIS_CORE"), ("tpm_tis", "CONFIG_TCG_TIS")]
        where lines.contains("\(configKey)=m") {
            let plain = tpm.appendingPathComponent("\(name).ko")
            let target = directory.appendingPathComponent("\(name).ko")
            if FileManager.default.fileExists(atPath: plain.path) {
                try FileManager.default.copyItem(at: plain, to: target)
            } else {
                let compressed = tpm.appendingPathComponent("\(name).ko.xz")
                let status = try runTool("/usr/bin/xz", ["-dc", compressed.path], standardOutput: target)
                try #require(status == 0, "xz could not decompress \(compressed.path)")
            }
            loaded.append("\(name).ko")
        }
        return loaded
    }

    /// Builds the initramfs (busybox, /init, TPM modules when needed) with `cpio -o -H newc`.
    func buildInitramfs() throws -> URL {
        let fm = FileManager.default
        let root = work.appendingPathComponent("root")
        for directory in ["bin", "dev", "proc", "sys", "lib/modules"] {
            try fm.createDirectory(at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: Self.busybox, toPath: root.appendingPathComponent("bin/busybox").path)
        let modules = try tpmModules(into: root.appendingPathComponent("lib/modules"))
        let initURL = root.appendingPathComponent("init")
        try Self.initScript(modules: modules).write(to: initURL, atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: initURL.path)
        var entries = ["."]
        let enumerator = try #require(fm.enumerator(atPath: root.path))
        while let entry = enumerator.nextObject() as? String { entries.append(entry) }
        let list = work.appendingPathComponent("initramfs.list")
        try (entries.sorted().joined(separator: "\n") + "\n").write(to: list, atomically: true, encoding: .utf8)
        let archive = work.appendingPathComponent("initrd.cpio")
        let status = try runTool(
            "/usr/bin/cpio", ["-o", "-H", "newc", "--quiet"], directory: root, standardInput: list, standardOutput: archive)
        try #require(status == 0, "cpio failed with status \(status)")
        return archive
    }

    /// Runs a tool to completion with its output in a file; returns the exit status.
    @discardableResult
    func runTool(
        _ path: String, _ arguments: [String], directory: URL? = nil, standardInput: URL? = nil, standardOutput: URL
    ) throws -> Int32 {
        _ = FileManager.default.createFile(atPath: standardOutput.path, contents: nil)
        let output = try FileHandle(forWritingTo: standardOutput)
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        process.standardInput = try standardInput.map { try FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        waitForExit(process, timeout: 60)
        return process.terminationStatus
    }

    /// Starts a process with standard output and error in `log`.
    func start(_ path: String, _ arguments: [String], log: URL) throws -> Process {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Stops a process this test started: SIGTERM, then SIGKILL (CMKTesting's bounded wait).
    static func stop(_ process: Process?) {
        guard let process else { return }
        if process.isRunning { process.terminate() }
        waitForExit(process, timeout: 5)
    }

    /// Boots the guest and returns the event log it printed, with the initramfs it booted.
    func bootAndReadEventLog() async throws -> (log: [UInt8], initramfs: [UInt8]) {
        let kernel = try kernel()
        let initramfs = try buildInitramfs()
        let state = work.appendingPathComponent("tpm")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        let socket = state.appendingPathComponent("swtpm.sock")
        var swtpm: Process?
        var qemu: Process?
        defer {
            Self.stop(qemu)
            Self.stop(swtpm)
        }
        swtpm = try start(
            "/usr/bin/swtpm",
            ["socket", "--tpm2", "--tpmstate", "dir=\(state.path)", "--ctrl", "type=unixio,path=\(socket.path)",
             "--flags", "startup-clear"],
            log: work.appendingPathComponent("swtpm.log"))
        let socketDeadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socket.path) && Date() < socketDeadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(FileManager.default.fileExists(atPath: socket.path), "swtpm did not create its socket")
        let serial = work.appendingPathComponent("serial.log")
        qemu = try start(
            "/usr/bin/qemu-system-x86_64",
            ["-machine", "q35", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
             "-bios", Self.firmware,
             "-chardev", "socket,id=chrtpm,path=\(socket.path)",
             "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
             "-kernel", kernel.path, "-initrd", initramfs.path, "-append", "console=ttyS0 panic=-1"],
            log: serial)
        let deadline = Date().addingTimeInterval(Self.qemuTimeout)
        var output = ""
        while Date() < deadline {
            output = String(decoding: (try? Data(contentsOf: serial)) ?? Data(), as: UTF8.self)
            if output.contains(Self.endMarker + "\r") || output.contains(Self.endMarker + "\n") { break }
            if qemu?.isRunning != true { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let lines = output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.lastIndex(of: Self.beginMarker),
            let end = lines[begin...].firstIndex(of: Self.endMarker)
        else {
            Issue.record("the guest printed no event log; serial tail:\n\(lines.suffix(30).joined(separator: "\n"))")
            throw CocoaError(.fileReadCorruptFile)
        }
        let encoded = lines[(begin + 1)..<end].joined()
        let log = try #require(Data(base64Encoded: encoded), "the guest's base64 did not decode")
        return ([UInt8](log), [UInt8](try Data(contentsOf: initramfs)))
    }

    /// The `pcrs:` section of `tpm2_eventlog` output: bank name → PCR index → value (lower-case hex).
    static func tpm2ToolsPCRs(_ yaml: String) -> [String: [UInt32: String]] {
        var banks: [String: [UInt32: String]] = [:]
        var inSection = false
        var bank: String?
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: true) {
            if line == "pcrs:" {
                inSection = true
                continue
            }
            guard inSection else { continue }
            guard line.hasPrefix(" ") else { break }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("    "), let bank {
                let parts = trimmed.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, let index = UInt32(parts[0]) else { continue }
                banks[bank, default: [:]][index] = parts[1].lowercased().replacingOccurrences(of: "0x", with: "")
            } else if trimmed.hasSuffix(":") {
                bank = String(trimmed.dropLast())
                banks[bank!] = [:]
            }
        }
        return banks
    }
}

@Suite("A live OVMF event log (QEMU, swtpm, Debian cloud kernel)", .serialized)
struct OVMFEventLogTests {
    @Test(
        "the log a real OVMF boot leaves parses and replays to the PCRs tpm2_eventlog computes, in every bank",
        .timeLimit(.minutes(3)))
    func replayMatchesTPM2Tools() async throws {
        let boot = try MeasuredBoot()
        defer { boot.removeWorkDirectory() }
        let (bytes, initramfs) = try await boot.bootAndReadEventLog()
        let log = try TCGEventLog(bytes: bytes)
        #expect(log.termination == .endOfInput)
        #expect(log.header.pcrIndex == 0)
        #expect(log.algorithms.contains(.sha1) && log.algorithms.contains(.sha256))
        let replay = log.replay()
        #expect(replay.skippedAlgorithms.isEmpty)

        // The independent replay: tpm2-tools reads the same bytes from a file.
        let file = boot.work.appendingPathComponent("binary_bios_measurements")
        try Data(bytes).write(to: file)
        let yamlURL = boot.work.appendingPathComponent("tpm2_eventlog.yaml")
        let status = try boot.runTool("/usr/bin/tpm2_eventlog", [file.path], standardOutput: yamlURL)
        #expect(status == 0)
        let yaml = try String(contentsOf: yamlURL, encoding: .utf8)
        let theirs = MeasuredBoot.tpm2ToolsPCRs(yaml)
        #expect(theirs["sha1"]?.isEmpty == false)
        #expect(theirs["sha256"]?.isEmpty == false)
        #expect(Set(theirs.keys) == Set(replay.banks.map(\.algorithm.description)))
        for bank in replay.banks {
            let ours = Dictionary(uniqueKeysWithValues: bank.registers.map { ($0.index, $0.value.description) })
            #expect(ours == theirs[bank.algorithm.description], "bank \(bank.algorithm)")
        }
        let theirEvents = yaml.split(separator: "\n").filter { $0.hasPrefix("- EventNum:") }.count
        #expect(theirEvents == log.events.count + 1)  // tpm2_eventlog numbers the Spec ID header as event 0

        // What the boot must have logged: separators in PCRs 0-7, the kernel in PCR 4, and the Linux EFI stub's
        // initrd measurement in PCR 9, whose SHA-256 digest is the hash of the initramfs this test built.
        for pcr: UInt32 in 0...7 {
            #expect(log.events.contains { $0.pcrIndex == pcr && $0.eventType == .separator }, "PCR \(pcr) separator")
        }
        #expect(log.events.contains { $0.pcrIndex == 4 && $0.eventType == .efiBootServicesApplication })
        let initrdEvent = try #require(log.events.first {
            $0.pcrIndex == 9 && $0.eventType == .eventTag && $0.eventData.starts(with: [0xEC, 0x22, 0x3B, 0x8F])
        })
        #expect(initrdEvent.digest(for: .sha256) == TCGAlgorithm.sha256.hash(initramfs))
    }
}
