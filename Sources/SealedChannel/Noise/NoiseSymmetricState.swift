public import Crypto

/// A Noise SymmetricState (section 5.2): the cipher state, the chaining key `ck` and the handshake hash `h`.
public struct NoiseSymmetricState: Sendable {
    public let hash: NoiseHash
    private(set) var cipherState: NoiseCipherState
    private var chainingKey: SymmetricKey
    /// `h`: the hash of everything sent and received so far, and of the prologue and protocol name.
    public private(set) var handshakeHash: [UInt8]

    /// InitializeSymmetric(protocol_name): `h` is the name padded with zeros when it fits in HASHLEN bytes, else
    /// HASH(name); `ck = h`; no key.
    public init(protocolName: [UInt8], cipher: NoiseCipher, hash: NoiseHash) {
        self.hash = hash
        if protocolName.count <= hash.length {
            handshakeHash = protocolName + [UInt8](repeating: 0, count: hash.length - protocolName.count)
        } else {
            handshakeHash = hash.hash(protocolName)
        }
        chainingKey = SymmetricKey(data: handshakeHash)
        cipherState = NoiseCipherState(cipher: cipher)
    }

    /// MixKey(input_key_material).
    public mutating func mixKey(_ inputKeyMaterial: SymmetricKey) {
        let (nextChainingKey, temporaryKey) = hash.hkdf2(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial)
        chainingKey = nextChainingKey
        cipherState.initializeKey(temporaryKey.truncatedToCipherKey)
    }

    /// MixHash(data): `h = HASH(h ‖ data)`.
    public mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = hash.hash(handshakeHash + data)
    }

    /// EncryptAndHash(plaintext): encrypts with `h` as associated data, then mixes the ciphertext into `h`.
    public mutating func encryptAndHash(_ plaintext: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        let ciphertext = try cipherState.encrypt(ad: handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// DecryptAndHash(ciphertext).
    public mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        let plaintext = try cipherState.decrypt(ad: handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// Split(): the two transport cipher states, initiator-to-responder first. The chaining key is dropped.
    public mutating func split() -> (NoiseCipherState, NoiseCipherState) {
        let (first, second) = hash.hkdf2(chainingKey: chainingKey, inputKeyMaterial: SymmetricKey(data: [UInt8]()))
        var c1 = NoiseCipherState(cipher: cipherState.cipher)
        var c2 = NoiseCipherState(cipher: cipherState.cipher)
        c1.initializeKey(first.truncatedToCipherKey)
        c2.initializeKey(second.truncatedToCipherKey)
        chainingKey = SymmetricKey(data: [UInt8](repeating: 0, count: hash.length))
        cipherState.erase()
        return (c1, c2)
    }
}
