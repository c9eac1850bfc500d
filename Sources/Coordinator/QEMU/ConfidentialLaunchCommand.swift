import Foundation

/// A child in an SEV-SNP guest on a real AMD host: KVM, the `sev-snp-guest` object (QEMU >= 9.1; QEMU
/// docs/system/i386/amd-memory-encryption.rst, "Launching (SEV-SNP)") with `kernel-hashes=on` so the kernel, initrd
/// and command line are in the launch digest, and guest memory from a shared memfd backend as published SNP launch
/// scripts give it. Only the control port: a real child asks its own hardware for reports.
public struct SEVSNPLaunchCommand: QEMULaunchCommand, Hashable {
    public static let hostDataLength = 32
    public static let idBlockLength = 96
    public static let idAuthLength = 4096

    public var settings: QEMUInstanceSettings
    public var cpuModel: String
    /// The guest POLICY (SNP_LAUNCH_START); QEMU's default 0x30000 (SMT allowed, bit 17 reserved-one).
    public var policy: UInt64
    /// The C-bit position in guest page-table entries (51 on EPYC Milan and Genoa).
    public var cbitPosition: Int
    public var reducedPhysicalBits: Int
    public var kernelHashes: Bool
    /// HOST_DATA, 32 bytes the report carries (cmk binds the instance configuration hash here).
    public var hostData: [UInt8]?
    /// ID block and ID auth (`cmk measure id-block`), checked by the firmware at SNP_LAUNCH_FINISH.
    public var idBlock: [UInt8]?
    public var idAuth: [UInt8]?
    /// Whether `idAuth` carries an author key too.
    public var authorKeyEnabled: Bool

    public init(
        settings: QEMUInstanceSettings, cpuModel: String = "EPYC-v4", policy: UInt64 = 0x30000, cbitPosition: Int = 51,
        reducedPhysicalBits: Int = 1, kernelHashes: Bool = true, hostData: [UInt8]? = nil, idBlock: [UInt8]? = nil,
        idAuth: [UInt8]? = nil, authorKeyEnabled: Bool = false
    ) {
        self.settings = settings
        self.cpuModel = cpuModel
        self.policy = policy
        self.cbitPosition = cbitPosition
        self.reducedPhysicalBits = reducedPhysicalBits
        self.kernelHashes = kernelHashes
        self.hostData = hostData
        self.idBlock = idBlock
        self.idAuth = idAuth
        self.authorKeyEnabled = authorKeyEnabled
    }

    /// The `sev-snp-guest` object's options.
    public func guestObject() throws(QEMULaunchError) -> String {
        guard (32...63).contains(cbitPosition), (0...63).contains(reducedPhysicalBits) else {
            throw QEMULaunchError(
                .invalidSetting, "cbitpos \(cbitPosition) / reduced-phys-bits \(reducedPhysicalBits) are out of range")
        }
        var options = [
            "sev-snp-guest", "id=sev0", "cbitpos=\(cbitPosition)", "reduced-phys-bits=\(reducedPhysicalBits)",
            "policy=0x\(String(policy, radix: 16))",
        ]
        if kernelHashes { options.append("kernel-hashes=on") }
        if let hostData {
            try Self.check(hostData, Self.hostDataLength, "host-data")
            options.append("host-data=\(Data(hostData).base64EncodedString())")
        }
        switch (idBlock, idAuth) {
        case (let block?, let auth?):
            try Self.check(block, Self.idBlockLength, "id-block")
            try Self.check(auth, Self.idAuthLength, "id-auth")
            options += ["id-block=\(Data(block).base64EncodedString())", "id-auth=\(Data(auth).base64EncodedString())"]
            if authorKeyEnabled { options.append("author-key-enabled=on") }
        case (nil, nil):
            guard !authorKeyEnabled else {
                throw QEMULaunchError(.invalidSetting, "author-key-enabled needs an id-block and id-auth")
            }
        default:
            throw QEMULaunchError(.invalidSetting, "id-block and id-auth go together: give both or neither")
        }
        return options.joined(separator: ",")
    }

    static func check(_ blob: [UInt8], _ length: Int, _ name: String) throws(QEMULaunchError) {
        guard blob.count == length else {
            throw QEMULaunchError(.invalidSetting, "\(name) is \(length) bytes, not \(blob.count)")
        }
    }

    public func arguments() throws(QEMULaunchError) -> [String] {
        try settings.validate()
        try QEMUOption.validateModel(cpuModel)
        guard settings.platformSocket == nil else {
            throw QEMULaunchError(.invalidSetting, "a real SEV-SNP child has no platform port; it asks its hardware")
        }
        return [
            "-name", settings.name,
            "-machine", "q35,confidential-guest-support=sev0,memory-backend=ram1",
            "-accel", "kvm", "-cpu", cpuModel,
        ] + settings.sizeArguments + [
            "-object", "memory-backend-memfd,id=ram1,size=\(settings.memoryMiB)M,share=true",
            "-object", try guestObject(),
        ] + settings.bootArguments + settings.deviceArguments
    }
}

/// A child in an Intel TDX trust domain: KVM, `-cpu host`, the `tdx-guest` object (QEMU >= 10.1; QEMU
/// docs/system/i386/tdx.rst, "Launching a TD") with a split IRQ chip, and a quote-generation socket so the guest can
/// turn TDREPORTs into quotes. The object is given as JSON because `quote-generation-socket` is a SocketAddress,
/// as in the QEMU patch that added it (`-object '{"qom-type":"tdx-guest",...}'`). Only the control port.
public struct TDXLaunchCommand: QEMULaunchCommand, Hashable {
    /// Where the host's Quote Generation Service listens.
    public enum QuoteGenerationSocket: Sendable, Hashable {
        case vsock(cid: UInt32, port: UInt32)
        case unix(path: String)
    }

    /// MRCONFIGID, MROWNER and MROWNERCONFIG are SHA-384-sized.
    public static let measurementRegisterLength = 48

    public var settings: QEMUInstanceSettings
    /// MRCONFIGID (cmk puts the instance configuration hash here).
    public var mrConfigID: [UInt8]?
    public var mrOwner: [UInt8]?
    public var mrOwnerConfig: [UInt8]?
    public var quoteGenerationSocket: QuoteGenerationSocket?

    public init(
        settings: QEMUInstanceSettings, mrConfigID: [UInt8]? = nil, mrOwner: [UInt8]? = nil,
        mrOwnerConfig: [UInt8]? = nil, quoteGenerationSocket: QuoteGenerationSocket? = nil
    ) {
        self.settings = settings
        self.mrConfigID = mrConfigID
        self.mrOwner = mrOwner
        self.mrOwnerConfig = mrOwnerConfig
        self.quoteGenerationSocket = quoteGenerationSocket
    }

    /// The `tdx-guest` object as JSON with sorted keys.
    public func guestObject() throws(QEMULaunchError) -> String {
        var object: [String: Any] = ["qom-type": "tdx-guest", "id": "tdx0"]
        for (key, value) in [("mrconfigid", mrConfigID), ("mrowner", mrOwner), ("mrownerconfig", mrOwnerConfig)] {
            guard let value else { continue }
            try SEVSNPLaunchCommand.check(value, Self.measurementRegisterLength, key)
            object[key] = Data(value).base64EncodedString()
        }
        switch quoteGenerationSocket {
        case .vsock(let cid, let port)?:
            object["quote-generation-socket"] = ["type": "vsock", "cid": "\(cid)", "port": "\(port)"]
        case .unix(let path)?:
            guard !path.isEmpty, !path.contains("\0") else {
                throw QEMULaunchError(
                    .invalidSetting, "the quote-generation socket path '\(path)' is empty or holds a NUL")
            }
            object["quote-generation-socket"] = ["type": "unix", "path": path]
        case nil:
            break
        }
        do {
            let data = try JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            return String(decoding: data, as: UTF8.self)
        } catch {
            throw QEMULaunchError(.invalidSetting, "the tdx-guest object cannot be written as JSON: \(error)")
        }
    }

    public func arguments() throws(QEMULaunchError) -> [String] {
        try settings.validate()
        guard settings.platformSocket == nil else {
            throw QEMULaunchError(.invalidSetting, "a real TDX child has no platform port; it asks its hardware")
        }
        return [
            "-name", settings.name,
            "-machine", "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
            "-accel", "kvm", "-cpu", "host",
        ] + settings.sizeArguments + ["-object", try guestObject()] + settings.bootArguments + settings.deviceArguments
    }
}
