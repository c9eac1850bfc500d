public import Crypto
public import BinaryFormat

/// A P-384 public key in the format AMD's firmware hashes for ID_KEY_DIGEST and AUTHOR_KEY_DIGEST (SEV-SNP ABI
/// spec, Table 10 "ECDSA Public Key Format" / chapter 10 "Public Key Formats"): u32 curve (2 = P-384), Qx and Qy
/// as 72-byte little-endian fields, zero-padded to 0x404 bytes.
public enum AMDPublicKeyFormat {
    public static let size = 0x404
    public static let curveP384: UInt32 = 2
    static let componentSize = 72

    /// The 0x404-byte encoding of `key`.
    public static func encode(_ key: P384.Signing.PublicKey) -> [UInt8] {
        // x963: 0x04 ‖ X (48, big-endian) ‖ Y (48, big-endian).
        let point = Array(key.x963Representation)
        var bytes = [UInt8](repeating: 0, count: size)
        bytes[0] = UInt8(curveP384)
        for index in 0..<48 {
            bytes[4 + index] = point[48 - index]  // X, little-endian
            bytes[4 + componentSize + index] = point[96 - index]  // Y, little-endian
        }
        return bytes
    }

    /// SHA-384 of the encoding: what a report carries as ID_KEY_DIGEST or AUTHOR_KEY_DIGEST.
    public static func digest(_ key: P384.Signing.PublicKey) -> [UInt8] {
        Array(SHA384.hash(data: encode(key)))
    }
}

/// An ECDSA P-384 signature in AMD's 512-byte format (ABI spec, Table 12 "ECDSA Signature Format"):
/// r and s as 72-byte little-endian fields, then 368 reserved bytes.
public enum AMDSignatureFormat {
    public static let size = 512

    public static func encode(_ signature: P384.Signing.ECDSASignature) -> [UInt8] {
        let raw = Array(signature.rawRepresentation)  // r ‖ s, 48 bytes each, big-endian
        var bytes = [UInt8](repeating: 0, count: size)
        for index in 0..<48 {
            bytes[index] = raw[47 - index]
            bytes[72 + index] = raw[95 - index]
        }
        return bytes
    }

    /// Decodes r and s; the high bytes of each field and the reserved bytes must be zero.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(BinaryFormatError) -> P384.Signing.ECDSASignature {
        var cursor = ByteCursor(Array(bytes))
        let r = try cursor.readBytes(48, field: "SIGNATURE.R")
        try cursor.readReserved(24, field: "SIGNATURE.R high bytes")
        let s = try cursor.readBytes(48, field: "SIGNATURE.S")
        try cursor.readReserved(24, field: "SIGNATURE.S high bytes")
        try cursor.readReserved(368, field: "signature reserved bytes")
        guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: Array(r.reversed()) + Array(s.reversed())) else {
            throw BinaryFormatError(.invalidValue, field: "SIGNATURE", offset: 0, "r and s are not a P-384 signature")
        }
        return signature
    }
}

/// ID_BLOCK (SEV-SNP ABI spec, Table 75 "ID Block Structure"): what the guest owner vouches for at launch;
/// QEMU passes it with `-object sev-snp-guest,id-block=<base64>,id-auth=<base64>`.
public struct SNPIDBlock: Sendable, Hashable {
    public static let size = 96
    public static let version: UInt32 = 1

    public var launchDigest: [UInt8]
    public var familyID: [UInt8]
    public var imageID: [UInt8]
    public var guestSVN: UInt32
    public var policy: UInt64

    public init(launchDigest: [UInt8], familyID: [UInt8] = .init(repeating: 0, count: 16),
                imageID: [UInt8] = .init(repeating: 0, count: 16), guestSVN: UInt32 = 0, policy: UInt64 = 0x30000) throws(SNPMeasurementError) {
        guard launchDigest.count == 48 else { throw SNPMeasurementError(.invalidArgument, "the launch digest is 48 bytes, not \(launchDigest.count)") }
        guard familyID.count == 16, imageID.count == 16 else {
            throw SNPMeasurementError(.invalidArgument, "FAMILY_ID and IMAGE_ID are 16 bytes each")
        }
        guard SNPGuestPolicy(raw: policy).reservedBitIsOne, SNPGuestPolicy(raw: policy).unknownBits == 0 else {
            throw SNPMeasurementError(.invalidArgument, "policy 0x\(String(policy, radix: 16)) must set bit 17 and no bit above 25")
        }
        self.launchDigest = launchDigest
        self.familyID = familyID
        self.imageID = imageID
        self.guestSVN = guestSVN
        self.policy = policy
    }

    /// LD ‖ FAMILY_ID ‖ IMAGE_ID ‖ VERSION ‖ GUEST_SVN ‖ POLICY, little-endian.
    public var bytes: [UInt8] {
        var bytes = launchDigest + familyID + imageID
        for index in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: Self.version >> (8 * UInt32(index)))) }
        for index in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: guestSVN >> (8 * UInt32(index)))) }
        for index in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: policy >> (8 * UInt64(index)))) }
        return bytes
    }
}

/// ID_AUTH_INFO (SEV-SNP ABI spec, Table 76 "ID Authentication Information Structure"): the ID block's
/// signature by the ID key, the ID key, and optionally the ID key's signature by an author key.
public struct SNPIDAuth: Sendable {
    public static let size = 0x1000
    enum Offset {
        static let idKeyAlgorithm = 0x000, authorKeyAlgorithm = 0x004
        static let idBlockSignature = 0x040, idKey = 0x240, idKeySignature = 0x680, authorKey = 0x880
    }
    /// ECDSA P-384 with SHA-384.
    public static let ecdsaP384SHA384: UInt32 = 1

    public let bytes: [UInt8]

    /// Signs `block` with `idKey`, and `idKey` with `authorKey` when one is given.
    public init(signing block: SNPIDBlock, idKey: P384.Signing.PrivateKey, authorKey: P384.Signing.PrivateKey? = nil) throws {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        func put(_ value: [UInt8], at offset: Int) { bytes.replaceSubrange(offset..<(offset + value.count), with: value) }
        put([UInt8(Self.ecdsaP384SHA384), 0, 0, 0], at: Offset.idKeyAlgorithm)
        put(AMDSignatureFormat.encode(try idKey.signature(for: block.bytes)), at: Offset.idBlockSignature)
        let encodedIDKey = AMDPublicKeyFormat.encode(idKey.publicKey)
        put(encodedIDKey, at: Offset.idKey)
        if let authorKey {
            put([UInt8(Self.ecdsaP384SHA384), 0, 0, 0], at: Offset.authorKeyAlgorithm)
            put(AMDSignatureFormat.encode(try authorKey.signature(for: encodedIDKey)), at: Offset.idKeySignature)
            put(AMDPublicKeyFormat.encode(authorKey.publicKey), at: Offset.authorKey)
        }
        self.bytes = bytes
    }

    /// Checks the structure the way the firmware does at SNP_LAUNCH_FINISH: the ID block signature under the
    /// ID key, and, when an author key is present, the ID key's signature under it.
    public static func isValid(_ bytes: [UInt8], for block: SNPIDBlock) -> Bool {
        guard bytes.count == size, bytes[Offset.idKeyAlgorithm] == 1,
            let idKey = publicKey(bytes[Offset.idKey..<(Offset.idKey + AMDPublicKeyFormat.size)]),
            let signature = try? AMDSignatureFormat.decode(bytes[Offset.idBlockSignature..<(Offset.idBlockSignature + 512)]),
            idKey.isValidSignature(signature, for: block.bytes)
        else { return false }
        if bytes[Offset.authorKeyAlgorithm] == 0 { return true }
        guard let authorKey = publicKey(bytes[Offset.authorKey..<(Offset.authorKey + AMDPublicKeyFormat.size)]),
            let keySignature = try? AMDSignatureFormat.decode(bytes[Offset.idKeySignature..<(Offset.idKeySignature + 512)])
        else { return false }
        return authorKey.isValidSignature(keySignature, for: Array(bytes[Offset.idKey..<(Offset.idKey + AMDPublicKeyFormat.size)]))
    }

    /// Reads a key in AMD's format back into a P-384 public key.
    static func publicKey(_ bytes: ArraySlice<UInt8>) -> P384.Signing.PublicKey? {
        let b = Array(bytes)
        guard b.count == AMDPublicKeyFormat.size, b[0] == 2, b[1...3].allSatisfy({ $0 == 0 }) else { return nil }
        let x = Array(b[4..<52].reversed())
        let y = Array(b[76..<124].reversed())
        guard b[52..<76].allSatisfy({ $0 == 0 }), b[124...].allSatisfy({ $0 == 0 }) else { return nil }
        return try? P384.Signing.PublicKey(x963Representation: [0x04] + x + y)
    }
}
