public import Crypto
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A Noise CipherState (section 5.1): a key `k` (or none) and a 64-bit nonce `n`.
///
/// Encryption is the identity while there is no key. The nonce 2^64-1 is reserved (section 5.1): reaching it fails
/// instead of wrapping, so no nonce is ever used twice under one key.
public struct NoiseCipherState: Sendable {
    public let cipher: NoiseCipher
    private var key: SymmetricKey?
    /// `n`: the nonce the next encryption or decryption uses.
    public private(set) var nonce: UInt64 = 0

    public init(cipher: NoiseCipher) {
        self.cipher = cipher
    }

    /// InitializeKey(key): sets `k` and resets `n` to zero.
    public mutating func initializeKey(_ key: SymmetricKey?) {
        self.key = key
        nonce = 0
    }

    /// HasKey().
    public var hasKey: Bool { key != nil }

    /// SetNonce(nonce).
    public mutating func setNonce(_ nonce: UInt64) { self.nonce = nonce }

    /// EncryptWithAd(ad, plaintext).
    public mutating func encrypt(ad: [UInt8], _ plaintext: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce < UInt64.max else {
            throw SealedChannelError(.nonceExhausted, "the cipher state used every nonce; rekeying does not reset it")
        }
        let sealed = try cipher.encrypt(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        nonce += 1
        return sealed
    }

    /// EncryptWithAd(ad ‖ type, body) of a record, written by `engine` straight into its frame
    /// (`u32be length ‖ type ‖ ciphertext ‖ tag`); only with a key. `keyEpoch` changes whenever the key does (a rekey).
    mutating func sealRecord(
        adPrefix: [UInt8], type: UInt8, body: [UInt8], engine: RecordCipher, keyEpoch: Int
    ) throws(SealedChannelError) -> [UInt8] {
        guard let key else { throw SealedChannelError(.invalidState, "a record without a key") }
        guard nonce < UInt64.max else {
            throw SealedChannelError(.nonceExhausted, "the cipher state used every nonce; rekeying does not reset it")
        }
        let frame = try engine.sealFrame(
            key: key, epoch: keyEpoch, nonce: nonce, adPrefix: adPrefix, type: type, body: body)
        nonce += 1
        return frame
    }

    /// DecryptWithAd(ad ‖ type, ciphertext) of a record by `engine`, given the frame after its length prefix
    /// (`type ‖ ciphertext ‖ tag`): its type byte and body. The nonce moves on only when the record authenticates.
    mutating func openRecord(
        adPrefix: [UInt8], payload: ArraySlice<UInt8>, engine: RecordCipher, keyEpoch: Int
    ) throws(SealedChannelError) -> (type: UInt8, body: [UInt8]) {
        guard let key else { throw SealedChannelError(.invalidState, "a record without a key") }
        guard nonce < UInt64.max else {
            throw SealedChannelError(.nonceExhausted, "the cipher state used every nonce; rekeying does not reset it")
        }
        guard
            let opened = engine.openRecord(
                key: key, epoch: keyEpoch, nonce: nonce, adPrefix: adPrefix, payload: payload)
        else {
            throw SealedChannelError(.handshakeAuthentication, "a ciphertext did not authenticate under nonce \(nonce)")
        }
        nonce += 1
        return opened
    }

    /// DecryptWithAd(ad, ciphertext): the nonce moves on only when the ciphertext authenticates.
    public mutating func decrypt(ad: [UInt8], _ ciphertext: [UInt8]) throws(SealedChannelError) -> [UInt8] {
        try decrypt(ad: ad, slice: ciphertext[...])
    }

    mutating func decrypt(ad: [UInt8], slice ciphertext: ArraySlice<UInt8>) throws(SealedChannelError) -> [UInt8] {
        guard let key else { return Array(ciphertext) }
        guard nonce < UInt64.max else {
            throw SealedChannelError(.nonceExhausted, "the cipher state used every nonce; rekeying does not reset it")
        }
        guard let plaintext = cipher.decrypt(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext) else {
            throw SealedChannelError(.handshakeAuthentication, "a ciphertext did not authenticate under nonce \(nonce)")
        }
        nonce += 1
        return plaintext
    }

    /// Rekey() (section 4.2 and 11.3): `k = REKEY(k)`; the nonce is kept.
    public mutating func rekey() throws(SealedChannelError) {
        guard let key else { throw SealedChannelError(.invalidState, "rekey without a key") }
        self.key = try cipher.rekey(key)
    }

    /// Drops the key; the state encrypts nothing after this.
    public mutating func erase() {
        key = nil
    }
}
