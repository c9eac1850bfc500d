internal import COpenSSL
internal import Crypto

/// The record layer's AEAD: OpenSSL's EVP interface (libcrypto), one context per direction, sealing a record's body
/// straight into its frame and opening the frame's ciphertext straight into the body it returns.
///
/// swift-crypto's `ChaChaPoly`/`AES.GCM` take whole contiguous plaintexts and hand back `Data`: a record then costs
/// the sealed box's own buffer and a copy into the frame; opening costs a copy to build the box, swift-crypto's copy
/// of it, and a copy of the body out of the plaintext. Here the body goes through the cipher as one update and the
/// output lands where it stays: one pass over the bytes each way. The record type travels in clear before the
/// ciphertext and is authenticated as the last byte of the associated data, so the cipher's input is the body alone:
/// a 16 KiB body is 256 whole ChaCha20 blocks, with no odd tail for the cipher or Poly1305 to finish.
///
/// Used only under the endpoint's lock (``ChannelEndpoint`` serialises every seal and open), so one context is never
/// used by two threads at once; key and nonce are set for every record.
final class RecordCipher: @unchecked Sendable {
    private let context: OpaquePointer
    private let algorithm: OpaquePointer
    private let encrypting: Bool
    let cipher: NoiseCipher
    /// The key epoch (the direction's rekey count) whose key schedule the context holds; nil when it holds none.
    /// While it stays the same, a record sets only its nonce, as `openssl speed` does: setting the key again costs
    /// more than sealing a small record.
    private var keyedEpoch: Int?

    /// Nil when OpenSSL cannot allocate a context or does not offer the cipher.
    init?(_ cipher: NoiseCipher, encrypting: Bool) {
        let algorithm: OpaquePointer? =
            switch cipher {
            case .chaChaPoly: EVP_chacha20_poly1305()
            case .aesGCM: EVP_aes_256_gcm()
            }
        guard let algorithm, let context = EVP_CIPHER_CTX_new() else { return nil }
        guard EVP_CipherInit_ex(context, algorithm, nil, nil, nil, encrypting ? 1 : 0) == 1 else {
            EVP_CIPHER_CTX_free(context)
            return nil
        }
        self.context = context
        self.algorithm = algorithm
        self.encrypting = encrypting
        self.cipher = cipher
    }

    /// EVP_CIPHER_CTX_free cleanses the key schedule before it frees the context.
    deinit { EVP_CIPHER_CTX_free(context) }

    /// Cleanses the context's key schedule now (the direction is closed or torn down); every later record through
    /// this context fails, as it has no cipher any more.
    func cleanse() {
        _ = EVP_CIPHER_CTX_reset(context)
        keyedEpoch = nil
    }

    /// Sets the 96-bit nonce of one record (Noise's layout: 32 zero bits, then the counter little-endian for
    /// ChaChaPoly, big-endian for AESGCM), and the key when `epoch` is not the one the context holds, and feeds the
    /// associated data: `adPrefix` (label, channel id, sender), then the counter and the frame length big-endian and
    /// the record type, 13 bytes on the stack — two AAD updates of one message, MACed as one string (the AEAD pads
    /// the whole AAD once, before the first data update). Nothing here allocates.
    private func begin(
        key: SymmetricKey, epoch: Int, nonce: UInt64, adPrefix: [UInt8], length: Int, type: UInt8
    ) -> Bool {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 13) { iv -> Bool in
            iv.initialize(repeating: 0)
            for index in 0..<8 {
                let byte = UInt8(truncatingIfNeeded: nonce >> (8 * UInt64(index)))
                switch cipher {
                case .chaChaPoly: iv[4 + index] = byte
                case .aesGCM: iv[11 - index] = byte
                }
            }
            let ivPointer = iv.baseAddress!
            let started: Bool
            if keyedEpoch == epoch {
                started = EVP_CipherInit_ex(context, nil, nil, nil, ivPointer, encrypting ? 1 : 0) == 1
            } else {
                keyedEpoch = nil
                started = key.withUnsafeBytes { keyBytes in
                    EVP_CipherInit_ex(
                        context, nil, nil, keyBytes.baseAddress!.assumingMemoryBound(to: UInt8.self), ivPointer,
                        encrypting ? 1 : 0) == 1
                }
            }
            guard started else {
                keyedEpoch = nil
                return false
            }
            keyedEpoch = epoch
            // The counter and length, big-endian, and the type reuse the IV's buffer (OpenSSL copied the IV).
            for index in 0..<8 { iv[index] = UInt8(truncatingIfNeeded: nonce >> (56 - 8 * UInt64(index))) }
            let length32 = UInt32(truncatingIfNeeded: length)
            for index in 0..<4 { iv[8 + index] = UInt8(truncatingIfNeeded: length32 >> (24 - 8 * UInt32(index))) }
            iv[12] = type
            var written: Int32 = 0
            return adPrefix.withUnsafeBufferPointer {
                EVP_CipherUpdate(context, nil, &written, $0.baseAddress, Int32($0.count)) == 1
            } && EVP_CipherUpdate(context, nil, &written, ivPointer, 13) == 1
        }
    }

    /// `u32be length ‖ type ‖ ENCRYPT(k, n, ad, body)`, the ciphertext followed by the 16-byte tag; `length` counts
    /// the type byte, the ciphertext and the tag.
    func sealFrame(
        key: SymmetricKey, epoch: Int, nonce: UInt64, adPrefix: [UInt8], type: UInt8, body: [UInt8]
    ) throws(SealedChannelError)
        -> [UInt8]
    {
        let length = 1 + body.count + NoiseCipher.tagLength
        var sealed = true
        let frame = [UInt8](unsafeUninitializedCapacity: 4 + length) { buffer, initialized in
            buffer[0] = UInt8(truncatingIfNeeded: length >> 24)
            buffer[1] = UInt8(truncatingIfNeeded: length >> 16)
            buffer[2] = UInt8(truncatingIfNeeded: length >> 8)
            buffer[3] = UInt8(truncatingIfNeeded: length)
            buffer[4] = type
            initialized = 4 + length
            let out = buffer.baseAddress! + 5
            var written: Int32 = 0
            guard begin(key: key, epoch: epoch, nonce: nonce, adPrefix: adPrefix, length: length, type: type),
                body.withUnsafeBufferPointer({
                    $0.isEmpty
                        || (EVP_CipherUpdate(context, out, &written, $0.baseAddress, Int32($0.count)) == 1
                            && written == Int32($0.count))
                }),
                EVP_CipherFinal_ex(context, out + body.count, &written) == 1, written == 0,
                EVP_CIPHER_CTX_ctrl(
                    context, EVP_CTRL_AEAD_GET_TAG, Int32(NoiseCipher.tagLength), out + body.count) == 1
            else {
                sealed = false
                return
            }
        }
        guard sealed else { throw SealedChannelError(.unsupported, "OpenSSL refused to seal a record") }
        return frame
    }

    /// DECRYPT(k, n, ad, ciphertext ‖ tag) of a record, given the frame after its length prefix (type ‖ ciphertext ‖
    /// tag): its type byte and body, or nil when the tag does not authenticate the type, the body and the rest of the
    /// associated data (nothing decrypted is returned then: the body is wiped before it is dropped).
    func openRecord(
        key: SymmetricKey, epoch: Int, nonce: UInt64, adPrefix: [UInt8], payload: ArraySlice<UInt8>
    ) -> (type: UInt8, body: [UInt8])? {
        let bodyLength = payload.count - 1 - NoiseCipher.tagLength
        guard bodyLength >= 0 else { return nil }
        var type: UInt8 = 0
        var authentic = false
        var body = [UInt8](unsafeUninitializedCapacity: bodyLength) { buffer, initialized in
            initialized = bodyLength
            payload.withUnsafeBufferPointer { input in
                let inputBase = input.baseAddress!
                type = inputBase[0]
                var written: Int32 = 0
                // The tag goes in before Final; OpenSSL copies it (the control takes a non-const pointer but only
                // reads through it).
                let tag = UnsafeMutableRawPointer(mutating: inputBase + 1 + bodyLength)
                guard
                    begin(key: key, epoch: epoch, nonce: nonce, adPrefix: adPrefix, length: payload.count, type: type),
                    bodyLength == 0
                        || (EVP_CipherUpdate(context, buffer.baseAddress, &written, inputBase + 1, Int32(bodyLength)) == 1
                            && written == Int32(bodyLength)),
                    EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(NoiseCipher.tagLength), tag) == 1
                else { return }
                // An AEAD's Final writes nothing; it checks the tag. A byte of its own keeps the pointer valid.
                var finalWritten: Int32 = 0
                var scratch: UInt8 = 0
                authentic = EVP_CipherFinal_ex(context, &scratch, &finalWritten) == 1 && finalWritten == 0
            }
        }
        guard authentic else {
            wipe(&body)
            type = 0
            return nil
        }
        return (type, body)
    }
}
