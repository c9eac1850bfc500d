/// The status Intel assigns to one TCB level in TCB Info and QE Identity (Intel PCS API v4, `tcbStatus`;
/// QVL `TcbStatus.h` `VALID_TCB_INFO_STATUSES`). TDX module identity levels use only `UpToDate`, `OutOfDate`
/// and `Revoked`.
public enum TDXTCBLevelStatus: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case revoked = "Revoked"

    public var description: String { rawValue }
}

/// The TCB status of a TD after every rule of TDX.md §6.1 (QVL `TcbLevelCheck.cpp`, `TdxModuleCheck.cpp`,
/// `TDRelaunchCheck.cpp`): the TDX TCB level's status combined with the TDX module's and the QE's.
/// Raw values are Intel's names. Whether a status is acceptable is policy, not this type's business.
public enum TDXTCBStatus: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case revoked = "Revoked"
    /// TDX 1.5: the platform has already been updated (TEE_TCB_SVN2 reaches the newest level); relaunching the TD
    /// brings it up to date.
    case tdRelaunchAdvised = "TDRelaunchAdvised"
    /// As ``tdRelaunchAdvised``, and the platform also needs configuration changes.
    case tdRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"

    /// The same status as a TCB level's.
    public init(_ level: TDXTCBLevelStatus) {
        switch level {
        case .upToDate: self = .upToDate
        case .swHardeningNeeded: self = .swHardeningNeeded
        case .configurationNeeded: self = .configurationNeeded
        case .configurationAndSWHardeningNeeded: self = .configurationAndSWHardeningNeeded
        case .outOfDate: self = .outOfDate
        case .outOfDateConfigurationNeeded: self = .outOfDateConfigurationNeeded
        case .revoked: self = .revoked
        }
    }

    /// Whether the status asks for a platform configuration change (QVL `isConfigurationNeeded`).
    public var needsConfiguration: Bool {
        switch self {
        case .configurationNeeded, .outOfDateConfigurationNeeded, .configurationAndSWHardeningNeeded,
            .tdRelaunchAdvisedConfigurationNeeded:
            true
        default: false
        }
    }

    /// What an out-of-date component (TDX module or QE) makes of this status (TDX.md §6.1 steps 4 and 6):
    /// UpToDate and SWHardeningNeeded become OutOfDate, the two configuration statuses become
    /// OutOfDateConfigurationNeeded, anything else stays.
    func degradedByOutOfDateComponent() -> Self {
        switch self {
        case .upToDate, .swHardeningNeeded: .outOfDate
        case .configurationNeeded, .configurationAndSWHardeningNeeded: .outOfDateConfigurationNeeded
        default: self
        }
    }

    public var description: String { rawValue }
}

/// A TCB evaluation that ends without a status: the collateral cannot vouch for this TD at all (TDX.md §6.1,
/// "hard failures"). Raw values are QVL's status names.
public enum TDXTCBFailure: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// No TCB level (platform, TDX module or QE) covers the reported SVNs.
    case tcbNotSupported = "TCB_NOT_SUPPORTED"
    /// The TDX module's identity (MRSIGNERSEAM, SEAMATTRIBUTES, major version) is not one the TCB Info describes.
    case tdxModuleMismatch = "TDX_MODULE_MISMATCH"
    /// The TCB Info does not belong to this platform (FMSPC, PCE-ID) or lacks the structure the quote needs.
    case tcbInfoMismatch = "TCB_INFO_MISMATCH"
    /// The quoting enclave is not the one the QE Identity describes.
    case qeIdentityMismatch = "QE_IDENTITY_MISMATCH"

    public var description: String { rawValue }
}
