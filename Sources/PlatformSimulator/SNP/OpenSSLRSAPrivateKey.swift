internal import COpenSSL

/// The one owner of an OpenSSL RSA `EVP_PKEY` holding a private key: generated or read from PKCS#8 DER, freed in
/// `deinit`. Nothing outside this file sees the pointer. Used only to issue the simulated ARK, ASK and VCEK
/// certificates, with AMD's RSASSA-PSS parameters (SHA-384, MGF1-SHA-384, salt 48).
final class OpenSSLRSAPrivateKey {
    private let key: OpaquePointer

    private init(owning key: OpaquePointer) { self.key = key }

    deinit { EVP_PKEY_free(key) }

    /// A fresh RSA key of `bits` bits, public exponent 65537.
    static func generate(bits: Int) throws(PlatformSimulatorError) -> OpenSSLRSAPrivateKey {
        ERR_clear_error()
        guard let key = cmk_rsa_generate(UInt32(bits)) else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not generate an RSA-\(bits) key", nativeCode: UInt64(ERR_get_error()))
        }
        return OpenSSLRSAPrivateKey(owning: key)
    }

    /// Reads a PKCS#8 PrivateKeyInfo (DER); the key must be RSA.
    init(pkcs8 der: [UInt8]) throws(PlatformSimulatorError) {
        ERR_clear_error()
        let info: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_PKCS8_PRIV_KEY_INFO(nil, &cursor, buffer.count)
        }
        guard let info else {
            throw PlatformSimulatorError(
                .inconsistentState, "the key file is not a PKCS#8 private key", nativeCode: UInt64(ERR_get_error()))
        }
        defer { PKCS8_PRIV_KEY_INFO_free(info) }
        guard let parsed = EVP_PKCS82PKEY(info) else {
            throw PlatformSimulatorError(
                .inconsistentState, "OpenSSL could not read the PKCS#8 private key", nativeCode: UInt64(ERR_get_error())
            )
        }
        guard EVP_PKEY_get_base_id(parsed) == EVP_PKEY_RSA else {
            EVP_PKEY_free(parsed)
            throw PlatformSimulatorError(.inconsistentState, "the key file holds a key that is not RSA")
        }
        self.key = parsed
    }

    /// The key size in bits.
    var bits: Int { Int(EVP_PKEY_get_bits(key)) }

    /// The private key as PKCS#8 PrivateKeyInfo DER (what the key file holds, inside PEM).
    func pkcs8() throws(PlatformSimulatorError) -> [UInt8] {
        ERR_clear_error()
        guard let info = EVP_PKEY2PKCS8(key) else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not encode the private key as PKCS#8",
                nativeCode: UInt64(ERR_get_error()))
        }
        defer { PKCS8_PRIV_KEY_INFO_free(info) }
        return try Self.encode { i2d_PKCS8_PRIV_KEY_INFO(info, $0) }
    }

    /// The public key as SubjectPublicKeyInfo DER.
    func subjectPublicKeyInfo() throws(PlatformSimulatorError) -> [UInt8] {
        ERR_clear_error()
        return try Self.encode { i2d_PUBKEY(key, $0) }
    }

    /// Signs `message` with RSASSA-PSS (RFC 8017 §8.1): SHA-384, MGF1 with SHA-384, a 48-byte salt, which are
    /// AMD's parameters for every ARK, ASK and VCEK signature.
    func signRSAPSSSHA384(_ message: [UInt8]) throws(PlatformSimulatorError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else {
            throw PlatformSimulatorError(.cryptoLibrary, "OpenSSL could not allocate a digest context")
        }
        defer { EVP_MD_CTX_free(context) }
        ERR_clear_error()
        var keyContext: OpaquePointer?
        guard EVP_DigestSignInit(context, &keyContext, EVP_sha384(), nil, key) == 1, let keyContext,
            cmk_pkey_ctx_set_rsa_pss(keyContext, EVP_sha384(), 48) == 1
        else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not set up RSA-PSS signing", nativeCode: UInt64(ERR_get_error()))
        }
        var length = 0
        guard message.withUnsafeBufferPointer({ EVP_DigestSign(context, nil, &length, $0.baseAddress, $0.count) }) == 1
        else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not size the RSA-PSS signature", nativeCode: UInt64(ERR_get_error()))
        }
        var signature = [UInt8](repeating: 0, count: length)
        let status = signature.withUnsafeMutableBufferPointer { output in
            message.withUnsafeBufferPointer { input in
                EVP_DigestSign(context, output.baseAddress, &length, input.baseAddress, input.count)
            }
        }
        guard status == 1 else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not make the RSA-PSS signature", nativeCode: UInt64(ERR_get_error()))
        }
        return Array(signature.prefix(length))
    }

    /// Runs an OpenSSL `i2d_*` function twice: once for the length, once into a buffer of that length.
    private static func encode(
        _ i2d: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32
    ) throws(PlatformSimulatorError) -> [UInt8] {
        let length = Int(i2d(nil))
        guard length > 0 else {
            throw PlatformSimulatorError(
                .cryptoLibrary, "OpenSSL could not encode a key", nativeCode: UInt64(ERR_get_error()))
        }
        var bytes = [UInt8](repeating: 0, count: length)
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return i2d(&cursor)
        }
        guard Int(written) == length else {
            throw PlatformSimulatorError(.cryptoLibrary, "OpenSSL encoded \(written) bytes of \(length)")
        }
        return bytes
    }
}
