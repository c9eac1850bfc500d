public import BinaryFormat

/// The payloads of the handover messages (docs/guest-protocol.md, "Handover"): what an admitted child is given, and
/// what it answers. Every list and byte string has a stated bound, checked when decoding.
public enum HandoverLimits {
    /// At most this many secrets in one delivery.
    public static let maximumSecrets = 64
    /// At most this many bytes in one secret's plaintext (its ciphertext is 16 bytes longer: the AEAD tag).
    public static let maximumSecretBytes = 1 << 20
    /// At most this many volumes in one attachment request.
    public static let maximumVolumes = 16
    /// A virtio-blk serial holds at most 20 bytes (VIRTIO_BLK_ID_BYTES).
    public static let maximumSerialBytes = 20
    /// An HPKE encapsulated key of the supported KEMs is at most this long (P-521's 133 bytes; X25519's is 32).
    public static let maximumEncapsulatedKeyBytes = 133
}

/// The HPKE algorithm identifiers of a sealed delivery (RFC 9180, §7): KEM, KDF, AEAD.
public struct HandoverSuite: Sendable, Hashable, CustomStringConvertible {
    public var kem: UInt16
    public var kdf: UInt16
    public var aead: UInt16

    public init(kem: UInt16, kdf: UInt16, aead: UInt16) {
        self.kem = kem
        self.kdf = kdf
        self.aead = aead
    }

    /// DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001, ChaCha20-Poly1305 0x0003: the only suite of version 1.
    public static let x25519SHA256ChaChaPoly = HandoverSuite(kem: 0x0020, kdf: 0x0001, aead: 0x0003)

    public var description: String {
        func hex(_ value: UInt16) -> String {
            let digits = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        }
        return "KEM \(hex(kem)), KDF \(hex(kdf)), AEAD \(hex(aead))"
    }
}

/// One secret in a sealed delivery: its reference (in the clear: the host knows the policy's names anyway) and its
/// HPKE ciphertext.
public struct SealedSecret: Sendable, Hashable {
    public var name: String
    public var ciphertext: [UInt8]

    public init(name: String, ciphertext: [UInt8]) {
        self.name = name
        self.ciphertext = ciphertext
    }
}

/// Message 0x15, host → guest: the secrets the policy names, sealed with HPKE to the public key the child's verified
/// evidence bound (``HandoverSeal``). The instance name and policy digest travel in the clear and are bound into
/// HPKE's `info`: changing either makes every secret fail to open.
public struct SealedSecrets: Sendable, Hashable {
    /// The only format version so far.
    public static let currentVersion: UInt8 = 1

    public var version: UInt8
    public var suite: HandoverSuite
    /// The instance the delivery was sealed for.
    public var instance: String
    /// The digest of the policy that admitted it.
    public var policyDigest: String
    /// HPKE's `enc`: the sender's ephemeral public key.
    public var encapsulatedKey: [UInt8]
    /// In sealing order: secret *i* is opened with HPKE sequence number *i*.
    public var secrets: [SealedSecret]

    public init(
        version: UInt8 = Self.currentVersion, suite: HandoverSuite = .x25519SHA256ChaChaPoly, instance: String,
        policyDigest: String, encapsulatedKey: [UInt8], secrets: [SealedSecret]
    ) {
        self.version = version
        self.suite = suite
        self.instance = instance
        self.policyDigest = policyDigest
        self.encapsulatedKey = encapsulatedKey
        self.secrets = secrets
    }
}

/// In message 0x95, guest → host: one secret written, and proof of it — HMAC-SHA256 under a key exported from the
/// HPKE context (only the holder of the private key can derive it) over the name and the bytes read back from the
/// file. The host checks it against what it sealed; the secret itself never travels back.
public struct SecretReceipt: Sendable, Hashable {
    public var name: String
    /// 32 bytes.
    public var proof: [UInt8]

    public init(name: String, proof: [UInt8]) {
        self.name = name
        self.proof = proof
    }
}

/// In message 0x16, host → guest: a data volume hot-plugged for the child, and the virtio-blk serial it carries.
public struct VolumeAttachment: Sendable, Hashable {
    public var name: String
    public var serial: String

    public init(name: String, serial: String) {
        self.name = name
        self.serial = serial
    }
}

/// In message 0x96, guest → host: a volume the child sees, as which block device, and its size.
public struct AttachedVolume: Sendable, Hashable {
    public var name: String
    /// The kernel's name for it (`vda`).
    public var device: String
    public var sizeBytes: UInt64

    public init(name: String, device: String, sizeBytes: UInt64) {
        self.name = name
        self.device = device
        self.sizeBytes = sizeBytes
    }
}

/// Message 0x97, guest → host: what the agent holds now, by name only.
public struct AgentStatus: Sendable, Hashable, Codable {
    /// Whether an attestation succeeded (a session key exists).
    public var attested: Bool
    /// The files in the agent's secrets folder (their file names), read from the folder itself.
    public var secretFiles: [String]
    /// The volumes it confirmed.
    public var volumes: [String]
    /// The channel peers of the last handover.
    public var channelPeers: [String]
    /// Whether the final `.handover` arrived.
    public var handoverReceived: Bool

    public init(
        attested: Bool, secretFiles: [String], volumes: [String], channelPeers: [String], handoverReceived: Bool
    ) {
        self.attested = attested
        self.secretFiles = secretFiles
        self.volumes = volumes
        self.channelPeers = channelPeers
        self.handoverReceived = handoverReceived
    }
}

/// How a secret reference (`vault:db/credentials`, `api-token`) becomes one file name, the same on both ends:
/// `%`, `:` and `/` are percent-encoded, so names never collide and a name is never a path.
public enum SecretName {
    /// The characters a reference may hold (those the policy language allows).
    static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@".utf8)

    /// Whether `reference` is a valid secret reference: 1 to 128 allowed characters, not `.` or `..`.
    public static func isValid(_ reference: String) -> Bool {
        let bytes = Array(reference.utf8)
        return !bytes.isEmpty && bytes.count <= 128 && bytes.allSatisfy(allowed.contains) && reference != "."
            && reference != ".."
    }

    /// The file name for a valid reference; nil for an invalid one.
    public static func fileName(_ reference: String) -> String? {
        guard isValid(reference) else { return nil }
        var name = ""
        for character in reference {
            switch character {
            case ":": name += "%3A"
            case "/": name += "%2F"
            default: name.append(character)
            }
        }
        return name
    }
}

extension FrameWriter {
    mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func list<T>(_ items: [T], _ write: (inout FrameWriter, T) -> Void) {
        u32(UInt32(items.count))
        for item in items { write(&self, item) }
    }
}

/// Field readers over one frame body, shared by every message's decoder.
struct FrameReader {
    var cursor: ByteCursor

    init(_ body: [UInt8]) { cursor = ByteCursor(body) }
    init(cursor: ByteCursor) { self.cursor = cursor }

    mutating func u8(_ field: String) throws(BinaryFormatError) -> UInt8 { try cursor.readUInt8(field: field) }
    mutating func u16(_ field: String) throws(BinaryFormatError) -> UInt16 {
        try cursor.readBigEndian(UInt16.self, field: field)
    }
    mutating func u32(_ field: String) throws(BinaryFormatError) -> UInt32 {
        try cursor.readBigEndian(UInt32.self, field: field)
    }
    mutating func u64(_ field: String) throws(BinaryFormatError) -> UInt64 {
        try cursor.readBigEndian(UInt64.self, field: field)
    }

    /// A length-prefixed byte string of at most `maximum` bytes.
    mutating func bytes(_ field: String, maximum: Int = GuestMessage.maximumFrameSize) throws(BinaryFormatError)
        -> [UInt8]
    {
        let count = Int(try u32("\(field) length"))
        guard count <= maximum else {
            throw BinaryFormatError(
                .invalidValue, field: field, offset: cursor.offset, "\(count) bytes (at most \(maximum))")
        }
        return try cursor.readBytes(count, field: field)
    }

    /// Length-prefixed UTF-8 of at most `maximum` bytes.
    mutating func text(_ field: String, maximum: Int = GuestMessage.maximumFrameSize) throws(BinaryFormatError)
        -> String
    {
        let raw = try bytes(field, maximum: maximum)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw BinaryFormatError(.invalidValue, field: field, offset: cursor.offset, "not UTF-8")
        }
        return string
    }

    /// A count-prefixed list of at most `maximum` items.
    mutating func list<T>(
        _ field: String, maximum: Int, _ item: (inout FrameReader) throws(BinaryFormatError) -> T
    ) throws(BinaryFormatError) -> [T] {
        let count = Int(try u32("\(field) count"))
        guard count <= maximum else {
            throw BinaryFormatError(
                .invalidValue, field: field, offset: cursor.offset, "\(count) items (at most \(maximum))")
        }
        var items: [T] = []
        for _ in 0..<count { items.append(try item(&self)) }
        return items
    }

    /// A secret reference: valid by ``SecretName/isValid(_:)``.
    mutating func secretName(_ field: String) throws(BinaryFormatError) -> String {
        let name = try text(field, maximum: 128)
        guard SecretName.isValid(name) else {
            throw BinaryFormatError(.invalidValue, field: field, offset: cursor.offset, "not a secret reference")
        }
        return name
    }

    mutating func bool(_ field: String) throws(BinaryFormatError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let other:
            throw BinaryFormatError(.invalidValue, field: field, offset: cursor.offset - 1, "\(other) (0 or 1)")
        }
    }
}

extension SealedSecrets {
    func encode(into writer: inout FrameWriter) {
        writer.bytes.append(version)
        writer.u16(suite.kem)
        writer.u16(suite.kdf)
        writer.u16(suite.aead)
        writer.text(instance)
        writer.text(policyDigest)
        writer.bytes(encapsulatedKey)
        writer.list(secrets) { writer, secret in
            writer.text(secret.name)
            writer.bytes(secret.ciphertext)
        }
    }

    /// Decodes the payload; an unknown version is refused here, before any field whose layout it could change.
    init(reading reader: inout FrameReader) throws(BinaryFormatError) {
        let version = try reader.u8("sealed secrets version")
        guard version == Self.currentVersion else {
            throw BinaryFormatError(
                .invalidValue, field: "sealed secrets version", offset: reader.cursor.offset - 1,
                "\(version) (this agent reads version \(Self.currentVersion))")
        }
        let suite = HandoverSuite(kem: try reader.u16("KEM"), kdf: try reader.u16("KDF"), aead: try reader.u16("AEAD"))
        let instance = try reader.text("instance", maximum: 256)
        let policyDigest = try reader.text("policy digest", maximum: 256)
        let encapsulatedKey = try reader.bytes("encapsulated key", maximum: HandoverLimits.maximumEncapsulatedKeyBytes)
        let secrets = try reader.list("secrets", maximum: HandoverLimits.maximumSecrets) {
            (reader: inout FrameReader) throws(BinaryFormatError) in
            SealedSecret(
                name: try reader.secretName("secret name"),
                ciphertext: try reader.bytes("ciphertext", maximum: HandoverLimits.maximumSecretBytes + 16))
        }
        self.init(
            version: version, suite: suite, instance: instance, policyDigest: policyDigest,
            encapsulatedKey: encapsulatedKey, secrets: secrets)
    }
}

extension AgentStatus {
    func encode(into writer: inout FrameWriter) {
        writer.bytes.append(attested ? 1 : 0)
        for list in [secretFiles, volumes, channelPeers] { writer.list(list) { $0.text($1) } }
        writer.bytes.append(handoverReceived ? 1 : 0)
    }

    init(reading reader: inout FrameReader) throws(BinaryFormatError) {
        let attested = try reader.bool("attested")
        func names(_ reader: inout FrameReader, _ field: String) throws(BinaryFormatError) -> [String] {
            try reader.list(field, maximum: 4096) { (reader: inout FrameReader) throws(BinaryFormatError) in
                try reader.text(field, maximum: 4096)
            }
        }
        let secretFiles = try names(&reader, "secret files")
        let volumes = try names(&reader, "volumes")
        let peers = try names(&reader, "channel peers")
        self.init(
            attested: attested, secretFiles: secretFiles, volumes: volumes, channelPeers: peers,
            handoverReceived: try reader.bool("handover received"))
    }
}
