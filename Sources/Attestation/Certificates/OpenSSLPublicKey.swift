internal import COpenSSL

/// The one owner of an OpenSSL `EVP_PKEY`: created from SubjectPublicKeyInfo DER, freed in `deinit`.
/// Nothing outside this file sees the pointer.
final class OpenSSLPublicKey {
    private let key: OpaquePointer

    /// Parses a DER SubjectPublicKeyInfo.
    init(subjectPublicKeyInfo der: [UInt8]) throws(AttestationError) {
        ERR_clear_error()
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_PUBKEY(nil, &cursor, buffer.count)
        }
        guard let parsed else {
            throw AttestationError(
                .unsupportedPublicKey, "OpenSSL could not read the SubjectPublicKeyInfo", nativeCode: UInt64(ERR_get_error()))
        }
        self.key = parsed
    }

    deinit { EVP_PKEY_free(key) }

    /// The key, for the verification methods in this file only.
    fileprivate var keyPointer: OpaquePointer { key }

    /// Whether this is an RSA key.
    var isRSA: Bool { EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA }

    /// The key size in bits.
    var bits: Int { Int(EVP_PKEY_get_bits(key)) }

    /// Verifies an RSASSA-PSS signature (RFC 8017 §8.1) with exactly the given parameters: OpenSSL is told
    /// the digest, the MGF1 digest and the salt length, and rejects a signature made with any other salt length.
    func verifyRSAPSS(
        signature: [UInt8], message: [UInt8], parameters: RSAPSSParameters
    ) throws(AttestationError) -> Bool {
        guard isRSA else {
            throw AttestationError(.unsupportedPublicKey, "an RSA-PSS signature needs an RSA key")
        }
        guard let md = parameters.hash.openSSLDigest, let mgf1 = parameters.mgf1Hash.openSSLDigest else {
            throw AttestationError(.unsupportedSignatureAlgorithm, "no OpenSSL digest for \(parameters)")
        }
        guard let context = EVP_MD_CTX_new() else {
            throw AttestationError(.cryptoLibrary, "OpenSSL could not allocate a digest context")
        }
        defer { EVP_MD_CTX_free(context) }
        ERR_clear_error()
        var keyContext: OpaquePointer?
        guard EVP_DigestVerifyInit(context, &keyContext, md, nil, key) == 1, let keyContext,
            cmk_pkey_ctx_set_rsa_pss(keyContext, mgf1, Int32(parameters.saltLength)) == 1
        else {
            throw AttestationError(
                .cryptoLibrary, "OpenSSL could not set up RSA-PSS verification", nativeCode: UInt64(ERR_get_error()))
        }
        let result = signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(context, sig.baseAddress, sig.count, msg.baseAddress, msg.count)
            }
        }
        // 1: valid; 0: invalid signature; < 0: the signature could not even be processed (also invalid).
        ERR_clear_error()
        return result == 1
    }
}

extension OpenSSLPublicKey {
    /// Verifies an RSASSA-PKCS1-v1_5 signature (RFC 8017 §8.2) over `message` with `hash`.
    func verifyRSAPKCS1(signature: [UInt8], message: [UInt8], hash: DigestAlgorithm) throws(AttestationError) -> Bool {
        guard isRSA else {
            throw AttestationError(.unsupportedPublicKey, "an RSASSA signature needs an RSA key")
        }
        guard let md = hash.openSSLDigest else {
            throw AttestationError(.unsupportedSignatureAlgorithm, "no OpenSSL digest for \(hash)")
        }
        guard let context = EVP_MD_CTX_new() else {
            throw AttestationError(.cryptoLibrary, "OpenSSL could not allocate a digest context")
        }
        defer { EVP_MD_CTX_free(context) }
        ERR_clear_error()
        guard EVP_DigestVerifyInit(context, nil, md, nil, keyPointer) == 1 else {
            throw AttestationError(
                .cryptoLibrary, "OpenSSL could not set up RSASSA verification", nativeCode: UInt64(ERR_get_error()))
        }
        let result = signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(context, sig.baseAddress, sig.count, msg.baseAddress, msg.count)
            }
        }
        ERR_clear_error()
        return result == 1
    }
}

extension OpenSSLPublicKey {
    /// RSA-OAEP encryption (RFC 8017 §7.1) with `hash` for OAEP and MGF1 and the given label.
    func encryptRSAOAEP(_ plaintext: [UInt8], hash: DigestAlgorithm, label: [UInt8]) throws(AttestationError) -> [UInt8] {
        guard isRSA, let md = hash.openSSLDigest else {
            throw AttestationError(.unsupportedPublicKey, "RSA-OAEP needs an RSA key")
        }
        var output = [UInt8](repeating: 0, count: (bits + 7) / 8)
        var length = output.count
        ERR_clear_error()
        let ok = label.withUnsafeBufferPointer { l in
            plaintext.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { o in
                    cmk_rsa_oaep_encrypt(keyPointer, md, l.baseAddress, l.count, p.baseAddress, p.count, o.baseAddress, &length)
                }
            }
        }
        guard ok == 1 else {
            throw AttestationError(.cryptoLibrary, "OpenSSL could not RSA-OAEP encrypt", nativeCode: UInt64(ERR_get_error()))
        }
        return Array(output.prefix(length))
    }

    /// AES-CFB128 encryption with a zero IV (TPM 2.0 Part 1 §24.4: the credential's symmetric protection).
    static func encryptAESCFB(_ plaintext: [UInt8], key: [UInt8]) throws(AttestationError) -> [UInt8] {
        let cipher: OpaquePointer?
        switch key.count {
        case 16: cipher = EVP_aes_128_cfb128()
        case 24: cipher = EVP_aes_192_cfb128()
        case 32: cipher = EVP_aes_256_cfb128()
        default: throw AttestationError(.unsupportedPublicKey, "no AES key of \(key.count) bytes")
        }
        guard let context = EVP_CIPHER_CTX_new() else {
            throw AttestationError(.cryptoLibrary, "OpenSSL could not allocate a cipher context")
        }
        defer { EVP_CIPHER_CTX_free(context) }
        let iv = [UInt8](repeating: 0, count: 16)
        var output = [UInt8](repeating: 0, count: plaintext.count + 16)
        var length: Int32 = 0
        var final: Int32 = 0
        let ok = output.withUnsafeMutableBufferPointer { out -> Bool in
            EVP_EncryptInit_ex(context, cipher, nil, key, iv) == 1
                && EVP_EncryptUpdate(context, out.baseAddress, &length, plaintext, Int32(plaintext.count)) == 1
                && EVP_EncryptFinal_ex(context, out.baseAddress! + Int(length), &final) == 1
        }
        guard ok else {
            throw AttestationError(.cryptoLibrary, "OpenSSL could not AES-CFB encrypt", nativeCode: UInt64(ERR_get_error()))
        }
        return Array(output.prefix(Int(length + final)))
    }
}

extension DigestAlgorithm {
    fileprivate var openSSLDigest: OpaquePointer? {
        switch self {
        case .sha256: EVP_sha256()
        case .sha384: EVP_sha384()
        case .sha512: EVP_sha512()
        }
    }
}
