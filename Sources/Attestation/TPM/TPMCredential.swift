public import BinaryFormat
import Crypto
import TPM2

/// MakeCredential done by the verifier, in software (TPM 2.0 Library Part 1, §24 "Credential Protection", and
/// Part 3 §12.6 TPM2_MakeCredential): a secret sealed to one EK so that only its TPM can recover it, and only while
/// an object with the given Name is loaded there. When ActivateCredential in the attester returns the secret, the
/// AK with that Name is proven to sit in the same TPM as the EK.
///
/// Supported: RSA EKs (the TCG default EK template, RSA-2048 with AES-128-CFB), SHA-256/384/512 name algorithms.
public struct TPMCredentialChallenge: Sendable, Hashable {
    /// "IDENTITY\0": the OAEP label of the encrypted seed.
    static let identityLabel = Array("IDENTITY".utf8) + [0]

    /// The secret the attester must give back; keep it, never send it.
    public let secret: [UInt8]
    /// The AK Name the credential was made for.
    public let attestationKeyName: [UInt8]
    /// The EK's TPMT_PUBLIC.
    public let endorsementKey: [UInt8]
    /// TPM2B_ID_OBJECT: the HMAC-protected, AES-CFB-encrypted credential.
    public let credentialBlob: [UInt8]
    /// TPM2B_ENCRYPTED_SECRET: the seed, RSA-OAEP encrypted to the EK.
    public let encryptedSecret: [UInt8]

    /// The file `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads: magic 0xBADCC0DE, version 1,
    /// the TPM2B_ID_OBJECT, the TPM2B_ENCRYPTED_SECRET.
    public var tpm2ToolsFile: [UInt8] { [0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1] + credentialBlob + encryptedSecret }

    /// Makes a credential for `attestationKey` (its TPMT_PUBLIC or TPM2B_PUBLIC) under `endorsementKey`.
    /// `secret` and `seed` are the verifier's random bytes (`seed` must be the EK name algorithm's digest size; an ECC
    /// EK ignores it: its seed comes from ECDH with a fresh ephemeral key).
    public init(
        endorsementKey: [UInt8], attestationKey: [UInt8], secret: [UInt8], seed verifierSeed: [UInt8]
    ) throws(AttestationError) {
        let ek: TPMTPublic
        let ak: TPMTPublic
        do {
            ek = try TPMTPublic(marshalled: endorsementKey)
            ak = try TPMTPublic(marshalled: attestationKey)
        } catch {
            throw AttestationError(.malformedEvidence, "a key for MakeCredential is not a TPM public area: \(error)")
        }
        let name: [UInt8]
        do {
            name = try ak.name()
        } catch {
            throw AttestationError(.tpmAKUnsuitable, "the AK's Name cannot be computed: \(error)")
        }
        guard ek.attributes.contains(.restricted), ek.attributes.contains(.decrypt), ek.symmetricAlgorithm == 0x0006 else {
            throw AttestationError(
                .unsupportedPublicKey, "the EK is not a restricted decryption key with AES protection (TCG EK template)")
        }
        let hash: DigestAlgorithm
        switch ek.nameAlgorithm {
        case TPMHash.sha256: hash = .sha256
        case TPMHash.sha384: hash = .sha384
        case TPMHash.sha512: hash = .sha512
        default: throw AttestationError(.unsupportedPublicKey, "the EK's name algorithm is not SHA-256/384/512")
        }
        let digestSize = TPMHash.size(ek.nameAlgorithm) ?? 32
        guard !secret.isEmpty, secret.count <= digestSize else {
            throw AttestationError(.malformedEvidence, "the secret must be 1 to \(digestSize) bytes")
        }
        let seed: [UInt8]
        let encryptedSeed: [UInt8]
        switch ek.key {
        case .rsa(_, let exponent, let modulus):
            // RSA EK: the verifier's seed, RSA-OAEP encrypted with the label "IDENTITY" (Part 1, §B.10.3).
            guard verifierSeed.count == digestSize else {
                throw AttestationError(.malformedEvidence, "the seed must be \(digestSize) bytes")
            }
            let key = try OpenSSLPublicKey(
                subjectPublicKeyInfo: RSASubjectPublicKeyInfo.der(modulus: modulus, exponent: exponent == 0 ? 65537 : exponent))
            seed = verifierSeed
            encryptedSeed = try key.encryptRSAOAEP(seed, hash: hash, label: Self.identityLabel)
        case .ecc(let curve, let x, let y):
            // ECC EK: one-pass ECDH with an ephemeral key (Part 1, §C.6.4); seed = KDFe(Z, "IDENTITY", ephemeral x,
            // EK x); the ephemeral point is the encrypted secret.
            (seed, encryptedSeed) = try Self.eccSeed(curve: curve, x: x, y: y, hash: hash, bits: digestSize * 8)
        }
        let symmetricKey = Self.kdfa(
            hash, key: seed, label: "STORAGE", contextU: name, contextV: [], bits: Int(ek.symmetricKeyBits))
        let encIdentity = try OpenSSLPublicKey.encryptAESCFB(Self.sized(secret), key: symmetricKey)
        let hmacKey = Self.kdfa(hash, key: seed, label: "INTEGRITY", contextU: [], contextV: [], bits: digestSize * 8)
        let outerHMAC = Self.hmac(hash, key: hmacKey, encIdentity + name)
        self.secret = secret
        attestationKeyName = name
        self.endorsementKey = ek.bytes
        credentialBlob = Self.sized(Self.sized(outerHMAC) + encIdentity)
        encryptedSecret = Self.sized(encryptedSeed)
    }

    /// A credential with a fresh random 32-byte secret and a fresh seed of the EK name algorithm's digest size
    /// (the system's cryptographic random generator).
    public static func random(endorsementKey: [UInt8], attestationKey: [UInt8]) throws(AttestationError) -> TPMCredentialChallenge {
        let nameAlgorithm: UInt16
        do {
            nameAlgorithm = try TPMTPublic(marshalled: endorsementKey).nameAlgorithm
        } catch {
            throw AttestationError(.malformedEvidence, "the EK is not a TPM public area: \(error)")
        }
        var generator = SystemRandomNumberGenerator()
        func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        return try TPMCredentialChallenge(
            endorsementKey: endorsementKey, attestationKey: attestationKey, secret: bytes(32),
            seed: bytes(TPMHash.size(nameAlgorithm) ?? 32))
    }

    /// What the verifier checks once the attester answered: a ``TPMCredentialActivation`` for ``TPMVerifier``.
    public func activation(returned: [UInt8]) -> TPMCredentialActivation {
        TPMCredentialActivation(
            endorsementKey: endorsementKey, attestationKeyName: attestationKeyName, secret: secret, activatedSecret: returned)
    }

    /// The seed for an ECC EK (P-256 or P-384) and TPMS_ECC_POINT of the ephemeral public key.
    static func eccSeed(
        curve: UInt16, x: [UInt8], y: [UInt8], hash: DigestAlgorithm, bits: Int
    ) throws(AttestationError) -> (seed: [UInt8], point: [UInt8]) {
        func padded(_ bytes: [UInt8], _ size: Int) -> [UInt8] {
            Array(repeating: 0, count: max(0, size - bytes.count)) + bytes.suffix(size)
        }
        let z: [UInt8]
        let ephemeral: (x: [UInt8], y: [UInt8])
        do {
            switch curve {
            case 0x0003:  // TPM_ECC_NIST_P256
                let peer = try P256.KeyAgreement.PublicKey(rawRepresentation: padded(x, 32) + padded(y, 32))
                let key = P256.KeyAgreement.PrivateKey()
                z = try key.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
                let raw = Array(key.publicKey.rawRepresentation)
                ephemeral = (Array(raw.prefix(32)), Array(raw.suffix(32)))
            case 0x0004:  // TPM_ECC_NIST_P384
                let peer = try P384.KeyAgreement.PublicKey(rawRepresentation: padded(x, 48) + padded(y, 48))
                let key = P384.KeyAgreement.PrivateKey()
                z = try key.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
                let raw = Array(key.publicKey.rawRepresentation)
                ephemeral = (Array(raw.prefix(48)), Array(raw.suffix(48)))
            default:
                throw AttestationError(
                    .unsupportedPublicKey, "MakeCredential to an ECC EK on curve 0x\(String(curve, radix: 16)) is not supported (P-256, P-384)")
            }
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.unsupportedPublicKey, "the EK's ECC point is not on its curve: \(error)")
        }
        let seed = kdfe(hash, z: z, label: "IDENTITY", partyU: ephemeral.x, partyV: x, bits: bits)
        return (seed, sized(ephemeral.x) + sized(ephemeral.y))
    }

    /// KDFe (Part 1 §11.4.10.3): hash in counter mode over u32(i) ‖ Z ‖ label ‖ 0 ‖ partyUInfo ‖ partyVInfo.
    static func kdfe(_ hash: DigestAlgorithm, z: [UInt8], label: String, partyU: [UInt8], partyV: [UInt8], bits: Int) -> [UInt8] {
        func u32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        var output: [UInt8] = []
        var counter = 1
        while output.count * 8 < bits {
            let message = u32(counter) + z + Array(label.utf8) + [0] + partyU + partyV
            switch hash {
            case .sha256: output += Array(SHA256.hash(data: message))
            case .sha384: output += Array(SHA384.hash(data: message))
            case .sha512: output += Array(SHA512.hash(data: message))
            }
            counter += 1
        }
        return Array(output.prefix((bits + 7) / 8))
    }

    /// A TPM2B: u16 big-endian size, then the bytes.
    static func sized(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes }

    static func hmac(_ hash: DigestAlgorithm, key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        let k = SymmetricKey(data: key)
        switch hash {
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: k))
        case .sha384: return Array(HMAC<SHA384>.authenticationCode(for: data, using: k))
        case .sha512: return Array(HMAC<SHA512>.authenticationCode(for: data, using: k))
        }
    }

    /// KDFa (Part 1 §11.4.10.2): HMAC in counter mode over u32(i) ‖ label ‖ 0 ‖ contextU ‖ contextV ‖ u32(bits).
    static func kdfa(_ hash: DigestAlgorithm, key: [UInt8], label: String, contextU: [UInt8], contextV: [UInt8], bits: Int) -> [UInt8] {
        func u32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        var output: [UInt8] = []
        var counter = 1
        while output.count * 8 < bits {
            output += hmac(hash, key: key, u32(counter) + Array(label.utf8) + [0] + contextU + contextV + u32(bits))
            counter += 1
        }
        return Array(output.prefix((bits + 7) / 8))
    }
}
