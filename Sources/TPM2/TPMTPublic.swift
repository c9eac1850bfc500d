internal import CTSS2
import Crypto

/// TPMT_PUBLIC, the public area of a TPM object (TPM 2.0 Library Part 2, §12.2.4 Table 217): the key's type,
/// name algorithm, attributes, parameters and public point or modulus.
///
/// Parsed with libtss2-mu. ``bytes`` keeps the exact marshalled TPMT_PUBLIC, because the object's Name (Part 1
/// §16) and the REPORT_DATA binding of an attestation key are digests of exactly those bytes.
public struct TPMTPublic: Sendable, Hashable {
    /// TPMA_OBJECT bits (Part 2 §8.3.2 Table 31) a verifier looks at.
    public struct Attributes: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let fixedTPM = Attributes(rawValue: 1 << 1)
        public static let fixedParent = Attributes(rawValue: 1 << 4)
        public static let sensitiveDataOrigin = Attributes(rawValue: 1 << 5)
        public static let userWithAuth = Attributes(rawValue: 1 << 6)
        public static let adminWithPolicy = Attributes(rawValue: 1 << 7)
        public static let restricted = Attributes(rawValue: 1 << 16)
        public static let decrypt = Attributes(rawValue: 1 << 17)
        public static let sign = Attributes(rawValue: 1 << 18)
    }

    /// TPM_ALG_RSA.
    public static let algorithmRSA: UInt16 = 0x0001
    /// TPM_ALG_ECC.
    public static let algorithmECC: UInt16 = 0x0023
    /// TPM_ECC_NIST_P256.
    public static let curveNISTP256: UInt16 = 0x0003
    /// TPM_ECC_NIST_P384.
    public static let curveNISTP384: UInt16 = 0x0004

    /// The public key itself.
    public enum Key: Sendable, Hashable {
        /// An RSA key: modulus (big-endian) and public exponent (0 in the structure means 65537).
        case rsa(keyBits: UInt16, exponent: UInt32, modulus: [UInt8])
        /// An ECC key: the TPM curve id and the affine coordinates (big-endian).
        case ecc(curve: UInt16, x: [UInt8], y: [UInt8])
    }

    /// The marshalled TPMT_PUBLIC, exactly as received.
    public let bytes: [UInt8]
    /// TPMI_ALG_PUBLIC: ``algorithmRSA`` or ``algorithmECC`` (other types are rejected).
    public let type: UInt16
    /// The hash algorithm of the object's Name (TPM_ALG_SHA256 = 0x000B ...).
    public let nameAlgorithm: UInt16
    public let attributes: Attributes
    /// The signing scheme fixed in the key (TPM_ALG_RSASSA 0x0014, RSAPSS 0x0016, ECDSA 0x0018), or TPM_ALG_NULL.
    public let scheme: UInt16
    /// The hash algorithm of that scheme, or TPM_ALG_NULL.
    public let schemeHash: UInt16
    /// The companion symmetric algorithm of a restricted decryption key such as an EK (TPM_ALG_AES 0x0006 ...), or
    /// TPM_ALG_NULL, with its key size in bits: what MakeCredential encrypts the credential with.
    public let symmetricAlgorithm: UInt16
    public let symmetricKeyBits: UInt16
    public let key: Key

    /// Parses a marshalled TPMT_PUBLIC, or a TPM2B_PUBLIC (a 2-byte size, then the TPMT_PUBLIC: what
    /// `tpm2_createak -u` and `tpm2_readpublic -o` write). Rejects trailing bytes and key types other than RSA and ECC.
    public init(marshalled input: [UInt8]) throws(TPM2Error) {
        var bytes = input
        if input.count > 2, Int(input[0]) << 8 | Int(input[1]) == input.count - 2 {
            bytes = Array(input[2...])
        }
        var c = TPMT_PUBLIC()
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { buffer in
            Tss2_MU_TPMT_PUBLIC_Unmarshal(buffer.baseAddress, buffer.count, &offset, &c)
        }
        try check(rc, "unmarshal a TPMT_PUBLIC from \(bytes.count) bytes")
        guard offset == bytes.count else {
            throw TPM2Error(.trailingBytes, "\(bytes.count - offset) bytes follow the TPMT_PUBLIC")
        }
        self.bytes = bytes
        type = c.type
        nameAlgorithm = c.nameAlg
        attributes = Attributes(rawValue: c.objectAttributes)
        switch c.type {
        case Self.algorithmRSA:
            let rsa = c.parameters.rsaDetail
            symmetricAlgorithm = rsa.symmetric.algorithm
            symmetricKeyBits = rsa.symmetric.algorithm == 0x0010 ? 0 : rsa.symmetric.keyBits.sym
            scheme = rsa.scheme.scheme
            schemeHash = scheme == 0x0010 ? 0x0010 : rsa.scheme.details.anySig.hashAlg
            key = .rsa(
                keyBits: rsa.keyBits, exponent: rsa.exponent,
                modulus: try load(c.unique.rsa.buffer, count: Int(c.unique.rsa.size), field: "RSA modulus"))
        case Self.algorithmECC:
            let ecc = c.parameters.eccDetail
            symmetricAlgorithm = ecc.symmetric.algorithm
            symmetricKeyBits = ecc.symmetric.algorithm == 0x0010 ? 0 : ecc.symmetric.keyBits.sym
            scheme = ecc.scheme.scheme
            schemeHash = scheme == 0x0010 ? 0x0010 : ecc.scheme.details.anySig.hashAlg
            key = .ecc(
                curve: ecc.curveID,
                x: try load(c.unique.ecc.x.buffer, count: Int(c.unique.ecc.x.size), field: "ECC x"),
                y: try load(c.unique.ecc.y.buffer, count: Int(c.unique.ecc.y.size), field: "ECC y"))
        default:
            throw TPM2Error(.unsupported, "key type 0x\(String(c.type, radix: 16)) is neither RSA nor ECC")
        }
    }

    /// The object's Name (Part 1 §16): nameAlg as a big-endian u16, then nameAlg's digest of ``bytes``.
    public func name() throws(TPM2Error) -> [UInt8] {
        guard let digest = TPMHash.digest(nameAlgorithm, bytes) else {
            throw TPM2Error(.unsupported, "name algorithm 0x\(String(nameAlgorithm, radix: 16)) is not SHA-1/256/384/512")
        }
        return [UInt8(nameAlgorithm >> 8), UInt8(nameAlgorithm & 0xFF)] + digest
    }
}

/// The TPM hash algorithms cmk computes (TPM_ALG_ID values, Part 2 §6.3).
public enum TPMHash {
    public static let sha1: UInt16 = 0x0004
    public static let sha256: UInt16 = 0x000B
    public static let sha384: UInt16 = 0x000C
    public static let sha512: UInt16 = 0x000D
    /// TPM_ALG_NULL.
    public static let null: UInt16 = 0x0010

    /// The digest of `data` under `algorithm`, nil for an algorithm cmk does not compute.
    public static func digest(_ algorithm: UInt16, _ data: [UInt8]) -> [UInt8]? {
        switch algorithm {
        case sha1: Array(Insecure.SHA1.hash(data: data))
        case sha256: Array(SHA256.hash(data: data))
        case sha384: Array(SHA384.hash(data: data))
        case sha512: Array(SHA512.hash(data: data))
        default: nil
        }
    }

    /// The digest size of `algorithm`, nil for one cmk does not compute.
    public static func size(_ algorithm: UInt16) -> Int? {
        switch algorithm {
        case sha1: 20
        case sha256: 32
        case sha384: 48
        case sha512: 64
        default: nil
        }
    }

    /// The registry name (`sha256`).
    public static func name(_ algorithm: UInt16) -> String {
        switch algorithm {
        case sha1: "sha1"
        case sha256: "sha256"
        case sha384: "sha384"
        case sha512: "sha512"
        default: "0x" + String(algorithm, radix: 16)
        }
    }
}

/// TPMT_SIGNATURE (Part 2 §11.3.4 Table 192): a signature and the scheme and hash that made it.
public struct TPMTSignature: Sendable, Hashable {
    /// TPM_ALG_RSASSA (PKCS #1 v1.5).
    public static let rsassa: UInt16 = 0x0014
    /// TPM_ALG_RSAPSS.
    public static let rsapss: UInt16 = 0x0016
    /// TPM_ALG_ECDSA.
    public static let ecdsa: UInt16 = 0x0018

    public enum Value: Sendable, Hashable {
        /// An RSASSA or RSA-PSS signature, as many bytes as the modulus.
        case rsa([UInt8])
        /// An ECDSA signature: r and s, big-endian.
        case ecdsa(r: [UInt8], s: [UInt8])
    }

    /// The signature scheme: ``rsassa``, ``rsapss`` or ``ecdsa``.
    public let scheme: UInt16
    /// The hash algorithm the TPM digested the signed structure with.
    public let hashAlgorithm: UInt16
    public let value: Value

    /// Parses a marshalled TPMT_SIGNATURE (what `tpm2_quote -s` writes by default); rejects trailing bytes and
    /// schemes other than RSASSA, RSA-PSS and ECDSA.
    public init(marshalled bytes: [UInt8]) throws(TPM2Error) {
        var c = TPMT_SIGNATURE()
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { buffer in
            Tss2_MU_TPMT_SIGNATURE_Unmarshal(buffer.baseAddress, buffer.count, &offset, &c)
        }
        try check(rc, "unmarshal a TPMT_SIGNATURE from \(bytes.count) bytes")
        guard offset == bytes.count else {
            throw TPM2Error(.trailingBytes, "\(bytes.count - offset) bytes follow the TPMT_SIGNATURE")
        }
        scheme = c.sigAlg
        switch c.sigAlg {
        case Self.rsassa, Self.rsapss:
            let rsa = c.sigAlg == Self.rsassa ? c.signature.rsassa : c.signature.rsapss
            hashAlgorithm = rsa.hash
            value = .rsa(try load(rsa.sig.buffer, count: Int(rsa.sig.size), field: "RSA signature"))
        case Self.ecdsa:
            let ecc = c.signature.ecdsa
            hashAlgorithm = ecc.hash
            value = .ecdsa(
                r: try load(ecc.signatureR.buffer, count: Int(ecc.signatureR.size), field: "ECDSA r"),
                s: try load(ecc.signatureS.buffer, count: Int(ecc.signatureS.size), field: "ECDSA s"))
        default:
            throw TPM2Error(.unsupported, "signature scheme 0x\(String(c.sigAlg, radix: 16)) is not RSASSA, RSA-PSS or ECDSA")
        }
    }
}
