import Foundation

/// Where QEMU runs guest code.
public enum QEMUAccelerator: String, Sendable, Hashable, Codable {
    /// QEMU's own emulator: slow, but runs everywhere.
    case tcg
    /// The host's KVM; only when a probe guest has actually run under it (`cmk doctor`'s KVM row).
    case kvm

    /// KVM when the host showed it usable, TCG otherwise.
    public static func choose(kvmUsable: Bool) -> QEMUAccelerator { kvmUsable ? .kvm : .tcg }
}

/// How QEMU, as the client of a guest-port socket, retries when the host end is not (or no longer) listening.
public enum QEMUReconnect: Sendable, Hashable {
    /// `reconnect=<seconds>` (QEMU up to 10.x; deprecated since 9.2).
    case seconds(Int)
    /// `reconnect-ms=<milliseconds>` (QEMU 9.2 and later).
    case milliseconds(Int)

    var option: String {
        switch self {
        case .seconds(let value): "reconnect=\(value)"
        case .milliseconds(let value): "reconnect-ms=\(value)"
        }
    }
}

/// What every child launch gives QEMU, whatever the platform: the boot files, the size, the console log, the pid
/// file, the host sockets behind the guest ports, and the host CPUs it may run on.
///
/// The guest ports are virtio-serial ports named `cmk.control` and `cmk.platform` (docs/guest-protocol.md). The
/// host side listens on each UNIX socket (the coordinator on the control socket, the simulated platform on the
/// platform socket); QEMU connects to them as a client and reconnects when the listener restarts.
public struct QEMUInstanceSettings: Sendable, Hashable {
    /// `-name`: letters, digits, `.`, `_` and `-`.
    public var name: String
    /// `-bios`: the firmware, which is part of the launch measurement, so the guest boots through it.
    public var firmware: String
    public var kernel: String
    public var initrd: String
    /// `-append`.
    public var commandLine: String
    public var vcpus: Int
    public var memoryMiB: Int
    /// The first serial port (the guest's console) is written to this file.
    public var serialLog: String
    public var pidFile: String
    public var controlSocket: String
    /// Only simulated children have a platform port; real SEV-SNP and TDX children ask their hardware.
    public var platformSocket: String?
    public var reconnect: QEMUReconnect
    /// Host CPUs QEMU may run on. Pinning is done outside QEMU: the command line starts with
    /// `taskset --cpu-list <list>`, which QEMU's threads inherit.
    public var hostCPUs: [Int]?
    /// The QEMU executable.
    public var qemu: String
    /// QEMU's machine protocol on a UNIX socket QEMU listens on (`-qmp unix:PATH,server=on,wait=off`); the
    /// coordinator connects only after admission (vCPU pinning, volume hot-plug).
    public var qmpSocket: String?
    /// Empty PCIe root ports (`cmkslot0`...) for data volumes hot-plugged after admission; the q35 root bus itself
    /// takes no hot-plugged devices. Devices are not part of the launch measurement.
    public var hotplugSlots: Int

    public init(
        name: String, firmware: String = "/usr/share/ovmf/OVMF.fd", kernel: String, initrd: String, commandLine: String,
        vcpus: Int, memoryMiB: Int, serialLog: String, pidFile: String, controlSocket: String,
        platformSocket: String? = nil, reconnect: QEMUReconnect = .seconds(1), hostCPUs: [Int]? = nil,
        qemu: String = "qemu-system-x86_64", qmpSocket: String? = nil, hotplugSlots: Int = 0
    ) {
        self.name = name
        self.firmware = firmware
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.serialLog = serialLog
        self.pidFile = pidFile
        self.controlSocket = controlSocket
        self.platformSocket = platformSocket
        self.reconnect = reconnect
        self.hostCPUs = hostCPUs
        self.qemu = qemu
        self.qmpSocket = qmpSocket
        self.hotplugSlots = hotplugSlots
    }

    /// The port names the guest sees under /dev/virtio-ports.
    public static let controlPortName = "cmk.control"
    public static let platformPortName = "cmk.platform"

    func validate() throws(QEMULaunchError) {
        guard !name.isEmpty, name.count <= 64,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") })
        else {
            throw QEMULaunchError(.invalidSetting, "the instance name '\(name)' must be 1 to 64 of A-Z a-z 0-9 . _ -")
        }
        guard (1...255).contains(vcpus) else { throw QEMULaunchError(.invalidSetting, "\(vcpus) vCPUs: give 1 to 255") }
        guard memoryMiB >= 64 else {
            throw QEMULaunchError(.invalidSetting, "\(memoryMiB) MiB of memory: give at least 64")
        }
        for (what, path) in [
            ("firmware", firmware), ("kernel", kernel), ("initrd", initrd), ("serial log", serialLog),
            ("pid file", pidFile), ("control socket", controlSocket), ("platform socket", platformSocket ?? "/"),
            ("QMP socket", qmpSocket ?? "/"),
        ]
        where path.isEmpty || path.contains("\0") || path.contains("\n") {
            throw QEMULaunchError(.invalidSetting, "the \(what) path '\(path)' is empty or holds a NUL or newline")
        }
        guard !commandLine.contains("\0") && !commandLine.contains("\n") else {
            throw QEMULaunchError(.invalidSetting, "the kernel command line holds a NUL or newline")
        }
        guard (0...16).contains(hotplugSlots) else {
            throw QEMULaunchError(.invalidSetting, "\(hotplugSlots) hot-plug slots: give 0 to 16")
        }
        switch reconnect {
        case .seconds(let value), .milliseconds(let value):
            guard value >= 1 else {
                throw QEMULaunchError(.invalidSetting, "a reconnect interval must be positive, not \(value)")
            }
        }
        if let hostCPUs {
            guard !hostCPUs.isEmpty, hostCPUs.allSatisfy({ $0 >= 0 }), Set(hostCPUs).count == hostCPUs.count else {
                throw QEMULaunchError(
                    .invalidSetting, "the host CPU list \(hostCPUs) must be non-empty, distinct CPU numbers")
            }
        }
    }

    /// `-smp`, `-m`.
    var sizeArguments: [String] { ["-smp", "\(vcpus)", "-m", "\(memoryMiB)M"] }

    /// Firmware and direct kernel boot, without QEMU's default devices or user configuration files.
    var bootArguments: [String] {
        [
            "-nodefaults", "-no-user-config", "-bios", firmware, "-kernel", kernel, "-initrd", initrd, "-append",
            commandLine,
        ]
    }

    /// No display or monitor, the console to the log file, the guest ports, no reboot, the pid file.
    var deviceArguments: [String] {
        var arguments = [
            "-display", "none", "-monitor", "none",
            "-chardev", "file,id=cmkserial,path=\(QEMUOption.escape(serialLog))", "-serial", "chardev:cmkserial",
            "-device", "virtio-serial-pci,id=cmkports",
        ]
        var ports = [("cmkcontrol", controlSocket, Self.controlPortName)]
        if let platformSocket { ports.append(("cmkplatform", platformSocket, Self.platformPortName)) }
        for (id, socket, portName) in ports {
            arguments += [
                "-chardev", "socket,id=\(id),path=\(QEMUOption.escape(socket)),\(reconnect.option)",
                "-device", "virtserialport,bus=cmkports.0,chardev=\(id),name=\(portName)",
            ]
        }
        for slot in 0..<hotplugSlots {
            arguments += ["-device", "pcie-root-port,id=cmkslot\(slot),bus=pcie.0,chassis=\(slot + 1)"]
        }
        if let qmpSocket { arguments += ["-qmp", "unix:\(QEMUOption.escape(qmpSocket)),server=on,wait=off"] }
        return arguments + ["-no-reboot", "-pidfile", pidFile]
    }

    /// The executable, behind `taskset` when the instance is pinned.
    var launcher: [String] {
        guard let hostCPUs else { return [qemu] }
        return ["taskset", "--cpu-list", hostCPUs.map(String.init).joined(separator: ","), qemu]
    }
}

/// A QEMU command line for one kind of child.
public protocol QEMULaunchCommand: Sendable {
    var settings: QEMUInstanceSettings { get }
    /// QEMU's arguments, without the executable.
    func arguments() throws(QEMULaunchError) -> [String]
}

extension QEMULaunchCommand {
    /// The whole argv: `[taskset --cpu-list L] qemu-system-x86_64 arguments...`.
    public func commandLine() throws(QEMULaunchError) -> [String] {
        settings.launcher + (try arguments())
    }
}

/// A child of cmk's simulated platform: an ordinary q35 guest under TCG (or KVM when it is usable) that boots
/// through the same OVMF the expected SEV-SNP measurement covers, with an AMD EPYC vCPU model whose CPUID signature
/// the measurement's VMSAs carry, and both guest ports.
public struct SimulatedLaunchCommand: QEMULaunchCommand, Hashable {
    public var settings: QEMUInstanceSettings
    public var accelerator: QEMUAccelerator
    /// `-cpu`; EPYC-v4 unless the host's QEMU lacks it (QEMU < 8.1: EPYC-v3 has the same family, model and stepping,
    /// see ``QEMUCPUModels``).
    public var cpuModel: String

    public init(settings: QEMUInstanceSettings, accelerator: QEMUAccelerator = .tcg, cpuModel: String = "EPYC-v4") {
        self.settings = settings
        self.accelerator = accelerator
        self.cpuModel = cpuModel
    }

    public func arguments() throws(QEMULaunchError) -> [String] {
        try settings.validate()
        guard settings.platformSocket != nil else {
            throw QEMULaunchError(
                .invalidSetting, "a simulated child needs a platform socket for its simulated platform")
        }
        try QEMUOption.validateModel(cpuModel)
        return ["-name", settings.name, "-machine", "q35", "-accel", accelerator.rawValue, "-cpu", cpuModel]
            + settings.sizeArguments + settings.bootArguments + settings.deviceArguments
    }
}

/// Helpers for QEMU's option syntax.
public enum QEMUOption {
    /// A value inside a `key=value,...` option: QEMU reads `,,` as a literal comma.
    public static func escape(_ value: String) -> String { value.replacingOccurrences(of: ",", with: ",,") }

    static func validateModel(_ model: String) throws(QEMULaunchError) {
        guard !model.isEmpty, model.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else {
            throw QEMULaunchError(.invalidSetting, "'\(model)' is not a QEMU CPU model name")
        }
    }
}

/// The CPU models a QEMU offers (`qemu-system-x86_64 -cpu help`), and the choice of the EPYC model for simulated
/// children.
public struct QEMUCPUModels: Sendable, Hashable {
    public let names: Set<String>

    public init(names: Set<String>) { self.names = names }

    /// Reads `-cpu help` output: lines `x86 <model> <description>`.
    public init(help: String) {
        var names: Set<String> = []
        for line in help.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, fields[0] == "x86" { names.insert(String(fields[1])) }
        }
        self.names = names
    }

    /// The versions of QEMU's "EPYC" model, newest first. All report family 23, model 1, stepping 2 (CPUID(1).EAX
    /// 0x800F12), which is all the SEV-SNP measurement takes from the model (the VMSA's RDX); they differ in feature
    /// flags only.
    public static let epycVersions = ["EPYC-v4", "EPYC-v3", "EPYC-v2", "EPYC-v1"]

    /// `preferred` when this QEMU has it, else the newest EPYC version it has with the same signature.
    public func epycModel(preferred: String = "EPYC-v4") -> String? {
        if names.contains(preferred) { return preferred }
        guard Self.epycVersions.contains(preferred) else { return nil }
        return Self.epycVersions.first(where: names.contains)
    }
}
