/// An event type (TCG PC Client Platform Firmware Profile, rev 1.05, §10.4.1 "Event Types", the table of
/// EV_* values). Any 32-bit value can be carried; ``name`` knows the types the profile defines.
public struct TCGEventType: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let preBootCert = TCGEventType(rawValue: 0x0000_0000)
    public static let postCode = TCGEventType(rawValue: 0x0000_0001)
    public static let unused = TCGEventType(rawValue: 0x0000_0002)
    /// EV_NO_ACTION: logged but never extended (Spec ID, StartupLocality, vendor information).
    public static let noAction = TCGEventType(rawValue: 0x0000_0003)
    public static let separator = TCGEventType(rawValue: 0x0000_0004)
    public static let action = TCGEventType(rawValue: 0x0000_0005)
    public static let eventTag = TCGEventType(rawValue: 0x0000_0006)
    public static let sCRTMContents = TCGEventType(rawValue: 0x0000_0007)
    public static let sCRTMVersion = TCGEventType(rawValue: 0x0000_0008)
    public static let cpuMicrocode = TCGEventType(rawValue: 0x0000_0009)
    public static let platformConfigFlags = TCGEventType(rawValue: 0x0000_000A)
    public static let tableOfDevices = TCGEventType(rawValue: 0x0000_000B)
    public static let compactHash = TCGEventType(rawValue: 0x0000_000C)
    public static let ipl = TCGEventType(rawValue: 0x0000_000D)
    public static let iplPartitionData = TCGEventType(rawValue: 0x0000_000E)
    public static let nonhostCode = TCGEventType(rawValue: 0x0000_000F)
    public static let nonhostConfig = TCGEventType(rawValue: 0x0000_0010)
    public static let nonhostInfo = TCGEventType(rawValue: 0x0000_0011)
    public static let omitBootDeviceEvents = TCGEventType(rawValue: 0x0000_0012)
    public static let postCode2 = TCGEventType(rawValue: 0x0000_0013)
    public static let efiEventBase = TCGEventType(rawValue: 0x8000_0000)
    public static let efiVariableDriverConfig = TCGEventType(rawValue: 0x8000_0001)
    public static let efiVariableBoot = TCGEventType(rawValue: 0x8000_0002)
    public static let efiBootServicesApplication = TCGEventType(rawValue: 0x8000_0003)
    public static let efiBootServicesDriver = TCGEventType(rawValue: 0x8000_0004)
    public static let efiRuntimeServicesDriver = TCGEventType(rawValue: 0x8000_0005)
    public static let efiGPTEvent = TCGEventType(rawValue: 0x8000_0006)
    public static let efiAction = TCGEventType(rawValue: 0x8000_0007)
    public static let efiPlatformFirmwareBlob = TCGEventType(rawValue: 0x8000_0008)
    public static let efiHandoffTables = TCGEventType(rawValue: 0x8000_0009)
    public static let efiPlatformFirmwareBlob2 = TCGEventType(rawValue: 0x8000_000A)
    public static let efiHandoffTables2 = TCGEventType(rawValue: 0x8000_000B)
    public static let efiVariableBoot2 = TCGEventType(rawValue: 0x8000_000C)
    public static let efiGPTEvent2 = TCGEventType(rawValue: 0x8000_000D)
    public static let efiHCRTMEvent = TCGEventType(rawValue: 0x8000_0010)
    public static let efiVariableAuthority = TCGEventType(rawValue: 0x8000_00E0)
    public static let efiSPDMFirmwareBlob = TCGEventType(rawValue: 0x8000_00E1)
    public static let efiSPDMFirmwareConfig = TCGEventType(rawValue: 0x8000_00E2)
    public static let efiSPDMDevicePolicy = TCGEventType(rawValue: 0x8000_00E3)
    public static let efiSPDMDeviceAuthority = TCGEventType(rawValue: 0x8000_00E4)

    private static let names: [UInt32: String] = [
        0x0000_0000: "EV_PREBOOT_CERT", 0x0000_0001: "EV_POST_CODE", 0x0000_0002: "EV_UNUSED",
        0x0000_0003: "EV_NO_ACTION", 0x0000_0004: "EV_SEPARATOR", 0x0000_0005: "EV_ACTION",
        0x0000_0006: "EV_EVENT_TAG", 0x0000_0007: "EV_S_CRTM_CONTENTS", 0x0000_0008: "EV_S_CRTM_VERSION",
        0x0000_0009: "EV_CPU_MICROCODE", 0x0000_000A: "EV_PLATFORM_CONFIG_FLAGS", 0x0000_000B: "EV_TABLE_OF_DEVICES",
        0x0000_000C: "EV_COMPACT_HASH", 0x0000_000D: "EV_IPL", 0x0000_000E: "EV_IPL_PARTITION_DATA",
        0x0000_000F: "EV_NONHOST_CODE", 0x0000_0010: "EV_NONHOST_CONFIG", 0x0000_0011: "EV_NONHOST_INFO",
        0x0000_0012: "EV_OMIT_BOOT_DEVICE_EVENTS", 0x0000_0013: "EV_POST_CODE2",
        0x8000_0000: "EV_EFI_EVENT_BASE", 0x8000_0001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002: "EV_EFI_VARIABLE_BOOT", 0x8000_0003: "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004: "EV_EFI_BOOT_SERVICES_DRIVER", 0x8000_0005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006: "EV_EFI_GPT_EVENT", 0x8000_0007: "EV_EFI_ACTION", 0x8000_0008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009: "EV_EFI_HANDOFF_TABLES", 0x8000_000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B: "EV_EFI_HANDOFF_TABLES2", 0x8000_000C: "EV_EFI_VARIABLE_BOOT2", 0x8000_000D: "EV_EFI_GPT_EVENT2",
        0x8000_0010: "EV_EFI_HCRTM_EVENT", 0x8000_00E0: "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1: "EV_EFI_SPDM_FIRMWARE_BLOB", 0x8000_00E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
        0x8000_00E3: "EV_EFI_SPDM_DEVICE_POLICY", 0x8000_00E4: "EV_EFI_SPDM_DEVICE_AUTHORITY",
    ]

    /// The profile's name (`EV_EFI_ACTION`); nil for a value the profile does not define.
    public var name: String? { Self.names[rawValue] }

    /// The name, or `EV_UNKNOWN(0x....)`.
    public var description: String { name ?? "EV_UNKNOWN(0x" + String(rawValue, radix: 16) + ")" }

    /// Encodes as the number, so an unknown type survives a round trip.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(UInt32.self))
    }
}
