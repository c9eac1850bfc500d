import COpenSSL

/// The least an AEAD record layer on OpenSSL can do per record, measured in this process: one ChaCha20-Poly1305 message
/// per record through the EVP interface — a new nonce, 13 bytes of associated data, the body as one update, final,
/// the tag — encrypting a fixed buffer in place, with no framing, no counters, no allocation and no lock.
///
/// `openssl speed -evp chacha20-poly1305` (OpenSSL 3.0, with or without `-aead`) times one long stream of
/// `EVP_EncryptUpdate` calls over the same buffer: no nonce, no Poly1305 key, no finalisation and no tag per message.
/// A record layer pays that per-message work on every record; this baseline pays it too and nothing else, so the
/// channel set beside it shows the record layer's own cost, and the baseline set beside `openssl speed` shows the
/// per-message cost of the AEAD itself.
final class OpenSSLMessageBaseline {
    private let context: OpaquePointer
    private var buffer: [UInt8]
    private var tag = [UInt8](repeating: 0, count: 16)
    private let associatedData = [UInt8](repeating: 0xA5, count: 13)
    private var iv = [UInt8](repeating: 0, count: 12)
    private var counter: UInt64 = 0

    init?(bodySize: Int) {
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        var key = [UInt8](repeating: 0x42, count: 32)
        var iv = [UInt8](repeating: 0, count: 12)
        guard EVP_CipherInit_ex(context, EVP_chacha20_poly1305(), nil, &key, &iv, 1) == 1 else {
            EVP_CIPHER_CTX_free(context)
            return nil
        }
        self.context = context
        buffer = [UInt8](repeating: 0x5A, count: bodySize)
    }

    deinit { EVP_CIPHER_CTX_free(context) }

    /// Seals one message in place; false when OpenSSL refused a step.
    func sealOne() -> Bool {
        counter += 1
        let nonce = counter
        var written: Int32 = 0
        let size = Int32(buffer.count)
        let started = iv.withUnsafeMutableBufferPointer { iv in
            for index in 0..<8 { iv[4 + index] = UInt8(truncatingIfNeeded: nonce >> (8 * UInt64(index))) }
            return EVP_CipherInit_ex(context, nil, nil, nil, iv.baseAddress, 1) == 1
        }
        guard started,
            associatedData.withUnsafeBufferPointer({
                EVP_CipherUpdate(context, nil, &written, $0.baseAddress, 13) == 1
            }),
            buffer.withUnsafeMutableBufferPointer({
                EVP_CipherUpdate(context, $0.baseAddress, &written, $0.baseAddress, size) == 1
                    && EVP_CipherFinal_ex(context, $0.baseAddress! + Int(size), &written) == 1
            })
        else { return false }
        return tag.withUnsafeMutableBufferPointer {
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, $0.baseAddress) == 1
        }
    }
}
