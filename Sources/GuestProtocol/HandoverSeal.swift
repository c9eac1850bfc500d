public import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Why a sealed delivery could not be made or opened.
public struct HandoverSealError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The recipient key is not an X25519 public key.
        public static let invalidKey = Code("invalid-key")
        /// A version or algorithm this side does not implement.
        public static let unsupported = Code("unsupported")
        /// Too many secrets, a secret too large, an invalid name.
        public static let invalidInput = Code("invalid-input")
        /// HPKE refused: the key, the binding (instance, nonce, policy), the order or a byte does not match.
        public static let openFailed = Code("open-failed")
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(reason) [\(code)]" }
}

/// Secrets sealed to an attested child with HPKE (RFC 9180), base mode, suite DHKEM(X25519, HKDF-SHA256) /
/// HKDF-SHA256 / ChaCha20-Poly1305 — to the X25519 key the child's evidence bound in REPORT_DATA.
///
/// - `info` binds the delivery to one launch: `"cmk/handover/v1" ‖ 0x00 ‖ lp(instance) ‖ lp(nonce) ‖
///   lp(policy digest)`, where `lp(x)` is `u32be(len(x)) ‖ x`. A delivery sealed for another instance, another
///   launch's nonce or another policy does not open.
/// - Secret *i* of *n* is sealed with HPKE sequence number *i* and `aad = "cmk/handover/v1/secret" ‖ 0x00 ‖
///   u32be(i) ‖ u32be(n) ‖ lp(name)`: secrets cannot be renamed, reordered, dropped from the end or moved between
///   deliveries.
/// - The receipt key is HPKE's exporter secret for `"cmk/handover/v1/receipt"` (32 bytes): only the holder of the
///   private key derives it. A receipt is HMAC-SHA256 over `lp(name) ‖ contents`.
public enum HandoverSeal {
    /// The suite of format version 1.
    public static let suite = HandoverSuite.x25519SHA256ChaChaPoly
    static let ciphersuite = HPKE.Ciphersuite.Curve25519_SHA256_ChachaPoly
    static let infoLabel = Array("cmk/handover/v1".utf8) + [0]
    static let aadLabel = Array("cmk/handover/v1/secret".utf8) + [0]
    static let receiptLabel = Array("cmk/handover/v1/receipt".utf8)

    /// What a delivery is bound to.
    public struct Binding: Sendable, Hashable {
        public var instance: String
        /// The nonce of the attestation whose evidence bound the recipient key.
        public var nonce: [UInt8]
        public var policyDigest: String

        public init(instance: String, nonce: [UInt8], policyDigest: String) {
            self.instance = instance
            self.nonce = nonce
            self.policyDigest = policyDigest
        }

        /// HPKE's `info` for this binding.
        public var info: [UInt8] {
            var writer = FrameWriter()
            writer.bytes = HandoverSeal.infoLabel
            writer.bytes(Array(instance.utf8))
            writer.bytes(nonce)
            writer.bytes(Array(policyDigest.utf8))
            return writer.bytes
        }
    }

    /// The associated data of secret `index` of `count`.
    public static func associatedData(name: String, index: Int, count: Int) -> [UInt8] {
        var writer = FrameWriter()
        writer.bytes = aadLabel
        writer.u32(UInt32(index))
        writer.u32(UInt32(count))
        writer.bytes(Array(name.utf8))
        return writer.bytes
    }

    /// A sealed delivery and the key its receipts are checked with (keep the key only until they are).
    public struct Sealed: Sendable {
        public let message: SealedSecrets
        public let receiptKey: SymmetricKey
    }

    /// Seals `secrets` (name, plaintext) in order to `recipientKey` (32 raw bytes of X25519).
    public static func seal(
        _ secrets: [(name: String, value: [UInt8])], to recipientKey: [UInt8], binding: Binding
    ) throws(HandoverSealError) -> Sealed {
        guard secrets.count <= HandoverLimits.maximumSecrets else {
            throw HandoverSealError(
                .invalidInput, "\(secrets.count) secrets (at most \(HandoverLimits.maximumSecrets))")
        }
        let publicKey: Curve25519.KeyAgreement.PublicKey
        do {
            publicKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: recipientKey)
        } catch {
            throw HandoverSealError(
                .invalidKey, "the recipient key is not an X25519 public key (\(recipientKey.count) bytes)")
        }
        do {
            var sender = try HPKE.Sender(recipientKey: publicKey, ciphersuite: ciphersuite, info: Data(binding.info))
            var sealed: [SealedSecret] = []
            for (index, secret) in secrets.enumerated() {
                guard SecretName.isValid(secret.name) else {
                    throw HandoverSealError(.invalidInput, "'\(secret.name)' is not a secret reference")
                }
                guard secret.value.count <= HandoverLimits.maximumSecretBytes else {
                    throw HandoverSealError(
                        .invalidInput,
                        "secret \(secret.name) has \(secret.value.count) bytes (at most \(HandoverLimits.maximumSecretBytes))"
                    )
                }
                let aad = associatedData(name: secret.name, index: index, count: secrets.count)
                let ciphertext = try sender.seal(secret.value, authenticating: aad)
                sealed.append(SealedSecret(name: secret.name, ciphertext: Array(ciphertext)))
            }
            let receiptKey = try sender.exportSecret(context: receiptLabel, outputByteCount: 32)
            return Sealed(
                message: SealedSecrets(
                    instance: binding.instance, policyDigest: binding.policyDigest,
                    encapsulatedKey: Array(sender.encapsulatedKey), secrets: sealed),
                receiptKey: receiptKey)
        } catch let error as HandoverSealError {
            throw error
        } catch {
            throw HandoverSealError(.invalidInput, "HPKE could not seal: \(error)")
        }
    }

    /// What opening gave: the secrets in order, and the receipt key.
    public struct Opened: Sendable {
        public private(set) var secrets: [(name: String, value: [UInt8])]
        public let receiptKey: SymmetricKey

        /// Overwrites the plaintexts with zeros (best effort: copies the caller made are its own).
        public mutating func wipe() {
            for index in secrets.indices {
                _ = secrets[index].value.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) }
            }
            secrets.removeAll()
        }
    }

    /// Opens a delivery with the private key of the attestation whose nonce is `nonce`; the instance and policy
    /// digest are the message's own (they are authenticated through `info`).
    public static func open(
        _ message: SealedSecrets, with privateKey: Curve25519.KeyAgreement.PrivateKey, nonce: [UInt8]
    ) throws(HandoverSealError) -> Opened {
        guard message.version == SealedSecrets.currentVersion else {
            throw HandoverSealError(.unsupported, "sealed secrets version \(message.version) (this side reads 1)")
        }
        guard message.suite == suite else {
            throw HandoverSealError(.unsupported, "HPKE suite \(message.suite) (this side implements \(suite))")
        }
        let binding = Binding(instance: message.instance, nonce: nonce, policyDigest: message.policyDigest)
        var recipient: HPKE.Recipient
        do {
            recipient = try HPKE.Recipient(
                privateKey: privateKey, ciphersuite: ciphersuite, info: Data(binding.info),
                encapsulatedKey: Data(message.encapsulatedKey))
        } catch {
            throw HandoverSealError(.openFailed, "the encapsulated key is not usable: \(error)")
        }
        var opened: [(name: String, value: [UInt8])] = []
        for (index, secret) in message.secrets.enumerated() {
            let aad = associatedData(name: secret.name, index: index, count: message.secrets.count)
            do {
                let plaintext = try recipient.open(secret.ciphertext, authenticating: aad)
                opened.append((secret.name, Array(plaintext)))
            } catch {
                throw HandoverSealError(
                    .openFailed,
                    "secret \(index + 1) of \(message.secrets.count) (\(secret.name)) does not open: sealed to another "
                        + "key, for another instance, launch or policy, or altered")
            }
        }
        do {
            let receiptKey = try recipient.exportSecret(context: receiptLabel, outputByteCount: 32)
            return Opened(secrets: opened, receiptKey: receiptKey)
        } catch {
            throw HandoverSealError(.openFailed, "HPKE export failed: \(error)")
        }
    }

    /// The receipt for one secret: HMAC-SHA256(receipt key, lp(name) ‖ contents).
    public static func receipt(name: String, contents: [UInt8], key: SymmetricKey) -> [UInt8] {
        var writer = FrameWriter()
        writer.bytes(Array(name.utf8))
        var hmac = HMAC<SHA256>(key: key)
        hmac.update(data: writer.bytes)
        hmac.update(data: contents)
        return Array(hmac.finalize())
    }

    /// Whether `proof` is the receipt for `name` with `contents` (constant time).
    public static func verifyReceipt(_ proof: [UInt8], name: String, contents: [UInt8], key: SymmetricKey) -> Bool {
        var writer = FrameWriter()
        writer.bytes(Array(name.utf8))
        return HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: writer.bytes + contents, using: key)
    }
}
