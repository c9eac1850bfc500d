public import Crypto
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The Noise Protocol Framework, revision 34 (2018-07-11), section 4: the DH, cipher and hash functions. Every
// primitive is swift-crypto's; this file only names them the way the specification does.

/// A Noise DH function (section 4.1). Only Curve25519 is offered: swift-crypto has no X448.
public enum NoiseDH: String, Sendable, Hashable {
    case x25519 = "25519"

    /// DHLEN: the length of a public key and of a DH output.
    public var publicKeyLength: Int { 32 }

    /// DH(key_pair, public_key): the X25519 shared secret as a key. An all-zero output (a low-order peer key) fails.
    func agree(_ pair: NoiseKeyPair, _ publicKey: [UInt8]) throws(SealedChannelError) -> SymmetricKey {
        let peer: Curve25519.KeyAgreement.PublicKey
        do {
            peer = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: publicKey)
        } catch {
            throw SealedChannelError(.keyAgreement, "the peer's public key is not an X25519 key")
        }
        do {
            let shared = try pair.privateKey.sharedSecretFromKeyAgreement(with: peer)
            return shared.withUnsafeBytes { SymmetricKey(data: $0) }
        } catch {
            throw SealedChannelError(.keyAgreement, "X25519 with the peer's key failed (a low-order point?)")
        }
    }
}

/// A Noise key pair (section 4.1, GENERATE_KEYPAIR): an X25519 private key and its public key.
public struct NoiseKeyPair: Sendable {
    let privateKey: Curve25519.KeyAgreement.PrivateKey
    /// The 32-byte public key, as it goes on the wire.
    public let publicKey: [UInt8]

    /// A fresh random key pair.
    public init() {
        self.init(privateKey: Curve25519.KeyAgreement.PrivateKey())
    }

    /// A key pair from a kept private key (a static key, or a fixed key in a test vector).
    public init(privateKey: Curve25519.KeyAgreement.PrivateKey) {
        self.privateKey = privateKey
        self.publicKey = Array(privateKey.publicKey.rawRepresentation)
    }

    /// A key pair from 32 raw private-key bytes.
    public init(rawPrivateKey: [UInt8]) throws(SealedChannelError) {
        do {
            self.init(privateKey: try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: rawPrivateKey))
        } catch {
            throw SealedChannelError(.unsupported, "an X25519 private key is 32 bytes, not \(rawPrivateKey.count)")
        }
    }
}

/// A Noise cipher function (section 4.2): an AEAD with a 256-bit key and a 64-bit counter nonce.
public enum NoiseCipher: String, Sendable, Hashable {
    case chaChaPoly = "ChaChaPoly"
    case aesGCM = "AESGCM"

    /// The authentication tag's length.
    public static let tagLength = 16

    /// The 96-bit nonce: 32 zero bits, then the counter little-endian (ChaChaPoly) or big-endian (AESGCM).
    func nonceBytes(_ counter: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 12)
        for index in 0..<8 {
            let byte = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(index)))
            switch self {
            case .chaChaPoly: bytes[4 + index] = byte
            case .aesGCM: bytes[11 - index] = byte
            }
        }
        return bytes
    }

    /// ENCRYPT(k, n, ad, plaintext): the ciphertext followed by the 16-byte tag.
    func encrypt(
        key: SymmetricKey, nonce: UInt64, ad: [UInt8], plaintext: [UInt8]
    ) throws(SealedChannelError) -> [UInt8] {
        do {
            switch self {
            // `combined` is nonce ‖ ciphertext ‖ tag: one copy instead of two and a concatenation.
            case .chaChaPoly:
                let box = try ChaChaPoly.seal(
                    plaintext, using: key, nonce: try ChaChaPoly.Nonce(data: nonceBytes(nonce)), authenticating: ad)
                return Array(box.combined.dropFirst(12))
            case .aesGCM:
                let box = try AES.GCM.seal(
                    plaintext, using: key, nonce: try AES.GCM.Nonce(data: nonceBytes(nonce)), authenticating: ad)
                guard let combined = box.combined else {
                    throw SealedChannelError(.unsupported, "AES-GCM without a 96-bit nonce")
                }
                return Array(combined.dropFirst(12))
            }
        } catch {
            throw SealedChannelError(.unsupported, "the AEAD refused to seal: \(error)")
        }
    }

    /// DECRYPT(k, n, ad, ciphertext): the plaintext, or nil when the tag does not authenticate.
    func decrypt(key: SymmetricKey, nonce: UInt64, ad: [UInt8], ciphertext: ArraySlice<UInt8>) -> [UInt8]? {
        guard ciphertext.count >= Self.tagLength else { return nil }
        let body = ciphertext[..<(ciphertext.endIndex - Self.tagLength)]
        let tag = ciphertext[(ciphertext.endIndex - Self.tagLength)...]
        do {
            switch self {
            case .chaChaPoly:
                let box = try ChaChaPoly.SealedBox(
                    nonce: try ChaChaPoly.Nonce(data: nonceBytes(nonce)), ciphertext: body, tag: tag)
                return Array(try ChaChaPoly.open(box, using: key, authenticating: ad))
            case .aesGCM:
                let box = try AES.GCM.SealedBox(
                    nonce: try AES.GCM.Nonce(data: nonceBytes(nonce)), ciphertext: body, tag: tag)
                return Array(try AES.GCM.open(box, using: key, authenticating: ad))
            }
        } catch {
            return nil
        }
    }

    /// REKEY(k) (section 4.2): the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes).
    func rekey(_ key: SymmetricKey) throws(SealedChannelError) -> SymmetricKey {
        var sealed = try encrypt(key: key, nonce: UInt64.max, ad: [], plaintext: [UInt8](repeating: 0, count: 32))
        defer { wipe(&sealed) }
        return SymmetricKey(data: sealed[..<32])
    }
}

/// A Noise hash function (section 4.3). swift-crypto has no BLAKE2, so SHA-256 and SHA-512 are offered.
public enum NoiseHash: String, Sendable, Hashable {
    case sha256 = "SHA256"
    case sha512 = "SHA512"

    /// HASHLEN.
    public var length: Int {
        switch self {
        case .sha256: 32
        case .sha512: 64
        }
    }

    /// HASH(data).
    func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: Array(SHA256.hash(data: data))
        case .sha512: Array(SHA512.hash(data: data))
        }
    }

    /// HMAC-HASH(key, data) (RFC 2104), as a key: every HMAC output in Noise is secret.
    func hmac(_ key: SymmetricKey, _ data: [UInt8]) -> SymmetricKey {
        switch self {
        case .sha256: SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: data, using: key))
        case .sha512: SymmetricKey(data: HMAC<SHA512>.authenticationCode(for: data, using: key))
        }
    }

    /// HKDF(chaining_key, input_key_material, 2) (section 4.3): two HASHLEN outputs.
    func hkdf2(chainingKey: SymmetricKey, inputKeyMaterial: SymmetricKey) -> (SymmetricKey, SymmetricKey) {
        let temp = inputKeyMaterial.withUnsafeBytes { hmac(chainingKey, Array($0)) }
        let first = hmac(temp, [0x01])
        let second = first.withUnsafeBytes { hmac(temp, Array($0) + [0x02]) }
        return (first, second)
    }
}

/// Overwrites a buffer that held secret bytes before it is released.
@inline(never)
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) }
}

/// Overwrites a `Data` that held secret bytes (swift-crypto's plaintext) before it is released.
@inline(never)
func wipe(_ bytes: inout Data) {
    bytes.resetBytes(in: bytes.startIndex..<bytes.endIndex)
}

extension SymmetricKey {
    /// The first 32 bytes: a cipher key from a HASHLEN output (section 5.2: truncate when HASHLEN is 64).
    var truncatedToCipherKey: SymmetricKey {
        withUnsafeBytes { SymmetricKey(data: Array($0.prefix(32))) }
    }

    /// The key's bytes, for mixing into a hash (the handshake's chaining key is never sent anywhere).
    var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
