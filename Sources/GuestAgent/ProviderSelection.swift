import Glibc

/// Which evidence provider to use: `--provider`.
public enum ProviderChoice: String, Sendable, CaseIterable {
    /// configfs-tsm if it can make reports, else `/dev/sev-guest`, else `/dev/tdx_guest`, else the platform port.
    case auto
    case configfsTSM = "configfs-tsm"
    case sevGuest = "sev-guest"
    case tdxGuest = "tdx-guest"
    case simulatedSNP = "simulated-snp"
    case simulatedTDX = "simulated-tdx"
}

/// Where the guest's interfaces are (the Linux defaults; tests point them at temporary directories).
public struct GuestPaths: Sendable {
    public var configfsTSMRoot = ConfigfsTSMProvider.defaultRoot
    public var sevGuestDevice = SEVGuestProvider.defaultPath
    public var tdxGuestDevice = TDXGuestProvider.defaultPath
    public var tdxEventLog = ConfigfsTSMProvider.defaultEventLogPath

    public init() {}
}

/// Turns a `ProviderChoice` into a provider.
public enum ProviderSelection {
    /// The provider for `choice`.
    ///
    /// - Parameters:
    ///   - platformPort: the open platform port, when the child has one (simulated children only).
    ///   - simulatedPlatform: which simulated platform `auto` assumes behind the platform port (`cmk.platform=` on
    ///     the kernel command line; SEV-SNP when unsaid).
    ///   - vmpl: the VMPL for SEV-SNP requests; nil: 0 for the device and the simulation, the provider's default
    ///     for configfs-tsm.
    public static func make(
        _ choice: ProviderChoice, paths: GuestPaths = GuestPaths(), platformPort: MessagePort?,
        simulatedPlatform: SimulatedPlatformProvider.Platform = .sevSNP, vmpl: UInt32? = nil,
        platformTimeoutMilliseconds: Int = 30_000, log: AgentLog = .standardError
    ) throws(GuestAgentError) -> any EvidenceProvider {
        func simulated(_ platform: SimulatedPlatformProvider.Platform) throws(GuestAgentError) -> any EvidenceProvider {
            guard let platformPort else {
                let name = platform == .sevSNP ? "simulated-snp" : "simulated-tdx"
                throw GuestAgentError(.usage, "the \(name) provider needs --platform")
            }
            return SimulatedPlatformProvider(
                port: platformPort, platform: platform, vmpl: vmpl ?? 0,
                timeoutMilliseconds: platformTimeoutMilliseconds,
                log: log)
        }
        let configfs = ConfigfsTSMProvider(
            root: paths.configfsTSMRoot, privilegeLevel: vmpl, eventLogPath: paths.tdxEventLog)
        switch choice {
        case .configfsTSM:
            return configfs
        case .sevGuest:
            return SEVGuestProvider(device: try DeviceFile(path: paths.sevGuestDevice), vmpl: vmpl ?? 0)
        case .tdxGuest:
            return TDXGuestProvider(device: try DeviceFile(path: paths.tdxGuestDevice))
        case .simulatedSNP:
            return try simulated(.sevSNP)
        case .simulatedTDX:
            return try simulated(.tdx)
        case .auto:
            if configfs.probe() { return configfs }
            if access(paths.sevGuestDevice, F_OK) == 0 {
                return SEVGuestProvider(device: try DeviceFile(path: paths.sevGuestDevice), vmpl: vmpl ?? 0)
            }
            if access(paths.tdxGuestDevice, F_OK) == 0 {
                return TDXGuestProvider(device: try DeviceFile(path: paths.tdxGuestDevice))
            }
            if platformPort != nil { return try simulated(simulatedPlatform) }
            throw GuestAgentError(
                .unavailable,
                "no evidence provider: configfs-tsm at \(paths.configfsTSMRoot) makes no reports, there is no "
                    + "\(paths.sevGuestDevice) and no \(paths.tdxGuestDevice), and no platform port was given")
        }
    }
}
