/// The command line of `cmk-guest`, parsed without Foundation:
///
///     cmk-guest --control PATH [--platform PATH] [--provider CHOICE] [--instance NAME] [--vmpl N]
///               [--platform-timeout SECONDS] [--on-shutdown auto|power-off|exit]
///               [--secrets-dir PATH] [--volumes-dir PATH]
///     cmk-guest --version | --help
///
/// The instance name and the simulated platform may also come from the kernel command line (`cmk.instance=NAME`,
/// `cmk.platform=sev-snp|tdx`); flags win.
public struct AgentCommandLine: Sendable, Hashable {
    /// What to do after `.shutdown`.
    public enum ShutdownAction: String, Sendable, CaseIterable {
        /// Power off when PID 1 or when the kernel command line names a cmk instance (inside a child); else exit.
        case auto
        /// Sync and power the machine off.
        case powerOff = "power-off"
        /// Exit with status 0 (the init script decides).
        case exit
    }

    public var controlPath: String?
    public var platformPath: String?
    public var provider: ProviderChoice = .auto
    public var instance: String?
    public var vmpl: UInt32?
    public var simulatedPlatform: SimulatedPlatformProvider.Platform = .sevSNP
    public var platformTimeoutMilliseconds = 30_000
    public var onShutdown: ShutdownAction = .auto
    /// Where handed-over secrets are written (a tmpfs is mounted there inside a child).
    public var secretsDirectory = "/run/cmk/secrets"
    /// Where links to handed-over volumes are made.
    public var volumesDirectory = "/run/cmk/volumes"
    public var showVersion = false
    public var showHelp = false
    /// Whether the kernel command line names a cmk instance (`cmk.instance=`), i.e. this runs inside a child.
    public var kernelNamesInstance = false

    public init() {}

    /// The usage text.
    public static let usage = """
        usage: cmk-guest --control PATH [--platform PATH] [--provider CHOICE] [--instance NAME] [--vmpl N]
                         [--platform-timeout SECONDS] [--on-shutdown auto|power-off|exit]
                         [--secrets-dir PATH] [--volumes-dir PATH]
               cmk-guest --version | --help

          --control PATH          the control port (/dev/virtio-ports/cmk.control), or a UNIX socket
          --platform PATH         the simulated platform's port (/dev/virtio-ports/cmk.platform); simulated only
          --provider CHOICE       auto (default), configfs-tsm, sev-guest, tdx-guest, simulated-snp, simulated-tdx
          --instance NAME         the instance name; default: cmk.instance= on the kernel command line
          --vmpl N                the SEV-SNP VMPL to request reports at (configfs-tsm: privlevel)
          --platform-timeout S    how long the simulated platform may take per request (default 30)
          --on-shutdown ACTION    auto (default: power off inside a child or as PID 1), power-off, exit
          --secrets-dir PATH      where handed-over secrets go (default /run/cmk/secrets; a tmpfs inside a child)
          --volumes-dir PATH      where links to handed-over volumes go (default /run/cmk/volumes)
        """

    /// Parses the arguments (without the program name) and the kernel command line (`/proc/cmdline`'s text).
    public static func parse(
        _ arguments: [String], kernelCommandLine: String = ""
    ) throws(GuestAgentError) -> AgentCommandLine {
        var result = AgentCommandLine()
        for parameter in kernelCommandLine.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            if parameter.hasPrefix("cmk.instance=") {
                result.instance = String(parameter.dropFirst("cmk.instance=".count))
                result.kernelNamesInstance = true
            } else if parameter.hasPrefix("cmk.platform=") {
                let value = String(parameter.dropFirst("cmk.platform=".count))
                guard let platform = SimulatedPlatformProvider.Platform(rawValue: value) else {
                    throw GuestAgentError(
                        .usage, "cmk.platform=\(value) on the kernel command line: use sev-snp or tdx")
                }
                result.simulatedPlatform = platform
            }
        }
        var remaining = arguments[...]
        func value(_ flag: String) throws(GuestAgentError) -> String {
            guard let value = remaining.popFirst(), !value.hasPrefix("--") else {
                throw GuestAgentError(.usage, "\(flag) needs a value")
            }
            return value
        }
        while let argument = remaining.popFirst() {
            var flag = argument
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                flag = String(argument[..<equals])
                remaining.insert(String(argument[argument.index(after: equals)...]), at: remaining.startIndex)
            }
            switch flag {
            case "--control": result.controlPath = try value(flag)
            case "--platform": result.platformPath = try value(flag)
            case "--instance": result.instance = try value(flag)
            case "--provider":
                let text = try value(flag)
                guard let choice = ProviderChoice(rawValue: text) else {
                    let choices = ProviderChoice.allCases.map(\.rawValue).joined(separator: ", ")
                    throw GuestAgentError(.usage, "--provider \(text): use one of \(choices)")
                }
                result.provider = choice
            case "--vmpl":
                let text = try value(flag)
                guard let level = UInt32(text), level <= 3 else {
                    throw GuestAgentError(.usage, "--vmpl \(text): a VMPL is 0 to 3")
                }
                result.vmpl = level
            case "--platform-timeout":
                let text = try value(flag)
                guard let seconds = Double(text), seconds > 0, seconds <= 3600 else {
                    throw GuestAgentError(.usage, "--platform-timeout \(text): seconds, more than 0 and at most 3600")
                }
                result.platformTimeoutMilliseconds = Int(seconds * 1000)
            case "--on-shutdown":
                let text = try value(flag)
                guard let action = ShutdownAction(rawValue: text) else {
                    throw GuestAgentError(.usage, "--on-shutdown \(text): use auto, power-off or exit")
                }
                result.onShutdown = action
            case "--secrets-dir": result.secretsDirectory = try value(flag)
            case "--volumes-dir": result.volumesDirectory = try value(flag)
            case "--version": result.showVersion = true
            case "--help", "-h": result.showHelp = true
            default: throw GuestAgentError(.usage, "unknown argument \(argument)")
            }
        }
        if result.showVersion || result.showHelp { return result }
        guard result.controlPath != nil else { throw GuestAgentError(.usage, "--control PATH is required") }
        // The host knows each child by its control port; the name is informational. cmk does not put it on the
        // kernel command line, which is measured: one image then measures the same whatever the instance is called.
        if result.instance?.isEmpty ?? true { result.instance = "unnamed" }
        return result
    }
}
