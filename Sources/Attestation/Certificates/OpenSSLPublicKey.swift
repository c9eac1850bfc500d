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

extension DigestAlgorithm {
    fileprivate var openSSLDigest: OpaquePointer? {
        switch self {
        case .sha256: EVP_sha256()
        case .sha384: EVP_sha384()
        case .sha512: EVP_sha512()
        }
    }
}
