public import BinaryFormat

/// What a UEFI measured boot says about itself, read from a TCG event log: the claims a policy can name instead
/// of raw PCR values (TCG PC Client Platform Firmware Profile rev 1.05, §10.4 "Event Descriptions"; the Linux EFI
/// stub's tagged events, include/linux/efi.h).
///
/// A pure view of the log: nothing here is trusted until the log has been matched against a verified quote
/// (``TCGEventLog/eventDataMismatches`` and the replay) — the verifier does that first.
public struct MeasuredBootEvents: Sendable, Hashable, Codable {
    /// EV_EVENT_TAG id with which the Linux EFI stub measures the initrd into PCR 9 (LINUX_EFI_INITRD_MEDIA_GUID load).
    public static let linuxInitrdTag: UInt32 = 0x8F3B_22EC
    /// EV_EVENT_TAG id with which the Linux EFI stub measures its load options (the command line) into PCR 9.
    public static let linuxLoadOptionsTag: UInt32 = 0x8F3B_22ED
    /// EFI_GLOBAL_VARIABLE, the vendor GUID of SecureBoot, PK, KEK, BootOrder ... (little-endian GUID bytes).
    public static let efiGlobalVariable: [UInt8] = [
        0x61, 0xDF, 0xE4, 0x8B, 0xCA, 0x93, 0xD2, 0x11, 0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C,
    ]

    /// One UEFI variable measured into the log (UEFI_VARIABLE_DATA, §10.4.4.1).
    public struct Variable: Sendable, Hashable, Codable {
        public let pcr: UInt32
        public let name: String
        /// The vendor GUID in its canonical text form.
        public let vendor: String
        public let data: HexBytes
    }

    /// An EFI application loaded during boot services (EV_EFI_BOOT_SERVICES_APPLICATION, PCR 4): its SHA-256
    /// Authenticode digest, the value `sbsign`/`pesign --hash` and `cmk measure` print for a PE image.
    public struct BootApplication: Sendable, Hashable, Codable {
        public let sequence: Int
        public let authenticodeSHA256: HexBytes
    }

    /// Every application loaded from PCR 4, in order; with QEMU's direct kernel boot the kernel is the last one.
    public let bootApplications: [BootApplication]
    /// The last boot application's Authenticode digest: the kernel for a direct (or UKI) boot.
    public var kernelAuthenticodeSHA256: HexBytes? { bootApplications.last?.authenticodeSHA256 }
    /// SHA-256 of the initrd, from the Linux EFI stub's initrd event (PCR 9).
    public let initrdSHA256: HexBytes?
    /// SHA-256 of the kernel's load options as the EFI stub measured them (the command line as the firmware passed it,
    /// in UTF-16; OVMF's direct boot adds to what `-append` says, so pin the digest a reference boot produced).
    public let commandLineSHA256: HexBytes?
    /// The value of the SecureBoot variable as measured (EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7); nil when not measured.
    public let secureBoot: Bool?
    /// The Secure Boot configuration variables measured into PCR 7 (SecureBoot, PK, KEK, db, dbx).
    public let variables: [Variable]
    /// EV_EFI_ACTION strings, in order ("Calling EFI Application from Boot Option", "Exit Boot Services Invocation" ...).
    public let actions: [String]
    /// SHA-256 digests of firmware volumes measured into PCR 0 (EV_EFI_PLATFORM_FIRMWARE_BLOB/BLOB2).
    public let firmwareBlobs: [HexBytes]

    /// Reads the events of `log`; with `pcrs`, only the events measured into those PCRs (what a quote covers).
    public init(log: TCGEventLog, pcrs: Set<UInt32>? = nil) {
        var applications: [BootApplication] = []
        var initrd: HexBytes?
        var commandLine: HexBytes?
        var secureBoot: Bool?
        var variables: [Variable] = []
        var actions: [String] = []
        var blobs: [HexBytes] = []
        for event in log.events where event.isMeasured && pcrs.map({ $0.contains(event.pcrIndex) }) != false {
            let sha256 = event.digest(for: .sha256).map(HexBytes.init)
            switch event.eventType {
            case .efiBootServicesApplication where event.pcrIndex == 4:
                if let sha256 { applications.append(BootApplication(sequence: event.sequence, authenticodeSHA256: sha256)) }
            case .eventTag where event.pcrIndex == 9:
                var c = ByteCursor(event.eventData)
                guard let tag: UInt32 = try? c.readLittleEndian(field: "taggedEventID") else { break }
                if tag == Self.linuxInitrdTag { initrd = sha256 }
                if tag == Self.linuxLoadOptionsTag { commandLine = sha256 }
            case .efiVariableDriverConfig:
                guard let variable = Self.variable(event) else { break }
                variables.append(variable)
                if variable.name == "SecureBoot", variable.vendor == Self.guidText(Self.efiGlobalVariable) {
                    secureBoot = variable.data.bytes.first.map { $0 == 1 } ?? false
                }
            case .efiAction:
                actions.append(String(decoding: event.eventData, as: UTF8.self))
            case .efiPlatformFirmwareBlob, .efiPlatformFirmwareBlob2:
                if let sha256 { blobs.append(sha256) }
            default:
                break
            }
        }
        bootApplications = applications
        initrdSHA256 = initrd
        commandLineSHA256 = commandLine
        self.secureBoot = secureBoot
        self.variables = variables
        self.actions = actions
        firmwareBlobs = blobs
    }

    /// Reads a UEFI_VARIABLE_DATA (GUID, u64 name length in characters, u64 data length, UTF-16LE name, data).
    static func variable(_ event: TCGEvent) -> Variable? {
        var c = ByteCursor(event.eventData)
        guard let guid = try? c.readBytes(16, field: "VariableName"),
            let nameLength: UInt64 = try? c.readLittleEndian(field: "UnicodeNameLength"),
            let dataLength: UInt64 = try? c.readLittleEndian(field: "VariableDataLength"),
            nameLength < 1024, dataLength < UInt64(TCGEventLog.maximumEventSize),
            let name = try? c.readBytes(Int(nameLength) * 2, field: "UnicodeName"),
            let data = try? c.readBytes(Int(dataLength), field: "VariableData")
        else { return nil }
        let units = stride(from: 0, to: name.count, by: 2).map { UInt16(name[$0]) | UInt16(name[$0 + 1]) << 8 }
        return Variable(
            pcr: event.pcrIndex, name: String(decoding: units, as: UTF16.self), vendor: guidText(guid), data: HexBytes(data))
    }

    /// A little-endian EFI_GUID as text (8-4-4-4-12).
    static func guidText(_ g: [UInt8]) -> String {
        func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
        return [
            hex(g[0..<4].reversed()), hex(g[4..<6].reversed()), hex(g[6..<8].reversed()), hex(Array(g[8..<10])),
            hex(Array(g[10..<16])),
        ].joined(separator: "-")
    }
}

extension TCGEventLog {
    /// Measured events whose digest must be the hash of their own data (an EV_SEPARATOR, an EV_EFI_ACTION string, a
    /// Secure Boot configuration variable; PC Client PFP rev 1.05 §10.4.1, §10.4.4) but is not, in any replayable
    /// bank: the sign of a log edited after the fact. Other events (firmware blobs, applications, tagged events)
    /// measure things that are not in the log, so only the replay can check them.
    public var eventDataMismatches: [(event: TCGEvent, algorithm: TCGAlgorithm)] {
        var mismatches: [(TCGEvent, TCGAlgorithm)] = []
        for event in events where event.isMeasured {
            guard [.separator, .efiAction, .efiVariableDriverConfig].contains(event.eventType) else { continue }
            for digest in event.digests where digest.algorithm.isReplayable {
                if let computed = digest.algorithm.hash(event.eventData),
                    !constantTimeEqual(computed, digest.digest.bytes)
                {
                    mismatches.append((event, digest.algorithm))
                }
            }
        }
        return mismatches
    }
}
