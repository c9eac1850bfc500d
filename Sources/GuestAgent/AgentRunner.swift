import CGuestLinux
import Glibc

/// What `cmk-guest` does, from its arguments to its exit status; the executable only calls `run`.
///
/// Exit status: 0 after `.shutdown` (when not powering off) and for `--version`/`--help`; 1 when serving failed;
/// 2 for a usage error.
public enum AgentRunner {
    /// Runs the agent with these arguments (without the program name).
    public static func run(_ arguments: [String], log: AgentLog = .standardError) -> Int32 {
        // A closed socket peer must be an error, not a signal that kills the agent.
        signal(SIGPIPE, SIG_IGN)
        let kernelCommandLine = (try? SystemFiles().read("/proc/cmdline")).map { String(decoding: $0, as: UTF8.self) }
        let options: AgentCommandLine
        do {
            options = try AgentCommandLine.parse(arguments, kernelCommandLine: kernelCommandLine ?? "")
        } catch {
            log.write(error.reason)
            printStandardOutput(AgentCommandLine.usage)
            return 2
        }
        if options.showVersion {
            printStandardOutput("cmk-guest \(GuestAgent.version)")
            return 0
        }
        if options.showHelp {
            printStandardOutput(AgentCommandLine.usage)
            return 0
        }
        do throws(GuestAgentError) {
            let platformPort = try options.platformPath.map { path throws(GuestAgentError) in
                try MessagePort(path: path, name: "platform")
            }
            let provider = try ProviderSelection.make(
                options.provider, platformPort: platformPort, simulatedPlatform: options.simulatedPlatform,
                vmpl: options.vmpl, platformTimeoutMilliseconds: options.platformTimeoutMilliseconds, log: log)
            let control = try MessagePort(path: options.controlPath!, name: "control")
            let folders = HandoverFolders(
                secrets: options.secretsDirectory, volumes: options.volumesDirectory,
                mountTmpfs: isInsideChild(options))
            let agent = GuestAgent(instance: options.instance!, provider: provider, folders: folders, log: log)
            // Inside a child an admitted agent outlives a supervisor that died: a restarted coordinator re-adopts it.
            agent.awaitsCoordinatorAfterHandover = isInsideChild(options)
            switch try agent.serve(control) {
            case .peerClosed:
                return 1
            case .shutdownRequested:
                if shouldPowerOff(options) { return powerOff(log: log) }
                return 0
            }
        } catch {
            log.write("stopped: \(error)")
            return 1
        }
    }

    /// Whether `.shutdown` powers the machine off: asked for, or `auto` inside a child (PID 1, or the kernel command
    /// line names a cmk instance). A host never powers off because a test ran the agent.
    static func shouldPowerOff(_ options: AgentCommandLine) -> Bool {
        switch options.onShutdown {
        case .powerOff: true
        case .exit: false
        case .auto: isInsideChild(options)
        }
    }

    /// Inside a child: PID 1, or the kernel command line names a cmk instance. Only there does the agent mount a
    /// tmpfs for secrets or power the machine off.
    static func isInsideChild(_ options: AgentCommandLine) -> Bool {
        getpid() == 1 || options.kernelNamesInstance
    }

    /// Syncs the file systems and powers off (`reboot(RB_POWER_OFF)`; as root, PID 1 or not); falls back to
    /// busybox's `poweroff -f`. Returns only when both failed.
    static func powerOff(log: AgentLog) -> Int32 {
        log.write("syncing and powering off")
        sync()
        if reboot(RB_POWER_OFF) == 0 { return 0 }
        log.write("reboot(RB_POWER_OFF) failed: \(describeErrno(errno)); trying poweroff -f")
        var child: pid_t = 0
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("poweroff"), strdup("-f"), nil]
        let environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/bin:/sbin:/usr/bin:/usr/sbin"), nil]
        defer { for pointer in arguments + environment { free(pointer) } }
        guard posix_spawnp(&child, "poweroff", nil, nil, arguments, environment) == 0 else {
            log.write("cannot run poweroff")
            return 1
        }
        var status: Int32 = 0
        _ = retryingOnInterrupt { waitpid(child, &status, 0) }
        return 1
    }

    private static func printStandardOutput(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }
}
