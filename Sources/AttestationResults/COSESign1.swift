public import Crypto

/// COSE_Sign1 (RFC 9052 §4.2): one signer's signature over a payload and a protected header.
///
/// The protected header is kept as the exact byte string that was received (or produced), because it is
/// what the signature covers; decoding and re-encoding a COSE_Sign1 gives back the same bytes.
public struct COSESign1: Sendable, Hashable {
    /// The CBOR tag of a COSE_Sign1 message (RFC 9052 §2).
    public static let tag: UInt64 = 18

    /// COSE algorithm identifiers (IANA "COSE Algorithms") cmk signs and verifies with.
    public enum Algorithm: Int64, Sendable, Hashable {
        case es256 = -7
        case es384 = -35
    }

    /// Header labels (RFC 9052 §3.1).
    public enum HeaderLabel {
        public static let algorithm: Int64 = 1
        public static let contentType: Int64 = 3
        public static let keyID: Int64 = 4
    }

    /// The serialized protected header map (the contents of the bstr), exactly as signed.
    public let protectedHeader: [UInt8]
    /// The unprotected header map.
    public let unprotectedHeader: [CBORMapEntry]
    /// The payload, or nil when it is detached.
    public let payload: [UInt8]?
    /// The signature: for ECDSA, r ‖ s, each the curve's size (RFC 9053 §2.1).
    public let signature: [UInt8]

    public init(protectedHeader: [UInt8], unprotectedHeader: [CBORMapEntry], payload: [UInt8]?, signature: [UInt8]) {
        self.protectedHeader = protectedHeader
        self.unprotectedHeader = unprotectedHeader
        self.payload = payload
        self.signature = signature
    }

    /// The decoded protected header map (an empty bstr means an empty map, RFC 9052 §3).
    public func protectedHeaderMap() throws(CBORError) -> [CBORMapEntry] {
        guard !protectedHeader.isEmpty else { return [] }
        guard let map = try CBORValue(encoded: protectedHeader).mapValue else {
            throw CBORError(.invalidStructure, "the protected header is not a map")
        }
        return map
    }

    /// The algorithm named in the protected header (RFC 9052 §3.1: `alg` belongs there).
    public func algorithm() throws(CBORError) -> Algorithm {
        guard let value = try protectedHeaderMap().first(where: { $0.key == .int(HeaderLabel.algorithm) })?.value else {
            throw CBORError(.invalidStructure, "the protected header names no algorithm")
        }
        guard let raw = value.intValue, let algorithm = Algorithm(rawValue: raw) else {
            throw CBORError(.unsupported, "COSE algorithm \(value) is not accepted (ES256 and ES384 are)")
        }
        return algorithm
    }

    /// Decodes a COSE_Sign1, tagged (18) or untagged.
    public init(encoded bytes: [UInt8]) throws(CBORError) {
        var value = try CBORValue(encoded: bytes)
        if case .tagged(let tag, let inner) = value {
            guard tag == Self.tag else { throw CBORError(.invalidStructure, "CBOR tag \(tag) is not COSE_Sign1 (18)") }
            value = inner
        }
        guard let elements = value.arrayValue, elements.count == 4 else {
            throw CBORError(.invalidStructure, "a COSE_Sign1 is an array of four elements")
        }
        guard let protected = elements[0].bytesValue else {
            throw CBORError(.invalidStructure, "the protected header must be a byte string")
        }
        guard let unprotected = elements[1].mapValue else {
            throw CBORError(.invalidStructure, "the unprotected header must be a map")
        }
        let payload: [UInt8]?
        switch elements[2] {
        case .bytes(let bytes): payload = bytes
        case .null: payload = nil
        default: throw CBORError(.invalidStructure, "the payload must be a byte string or nil")
        }
        guard let signature = elements[3].bytesValue else {
            throw CBORError(.invalidStructure, "the signature must be a byte string")
        }
        self.init(protectedHeader: protected, unprotectedHeader: unprotected, payload: payload, signature: signature)
        // Reject duplicate labels and a protected header that is not a map (RFC 9052 §3).
        let protectedMap = try protectedHeaderMap()
        for map in [protectedMap, unprotected] where Set(map.map(\.key)).count != map.count {
            throw CBORError(.invalidStructure, "a COSE header repeats a label")
        }
    }

    /// Encodes the message, with tag 18 unless `tagged` is false.
    public func encoded(tagged: Bool = true) throws(CBORError) -> [UInt8] {
        let array = CBORValue.array([
            .bytes(protectedHeader), .map(unprotectedHeader), payload.map(CBORValue.bytes) ?? .null, .bytes(signature),
        ])
        return try (tagged ? CBORValue.tagged(Self.tag, array) : array).encoded()
    }

    /// The Sig_structure that a COSE_Sign1 signature covers (RFC 9052 §4.4).
    public static func toBeSigned(protectedHeader: [UInt8], externalAAD: [UInt8], payload: [UInt8]) throws(CBORError) -> [UInt8] {
        try CBORValue.array([.text("Signature1"), .bytes(protectedHeader), .bytes(externalAAD), .bytes(payload)]).encoded()
    }

    /// Signs `payload` with ES384 (ECDSA P-384, SHA-384).
    public static func sign(
        payload: [UInt8], key: P384.Signing.PrivateKey, keyID: [UInt8]? = nil, externalAAD: [UInt8] = []
    ) throws -> COSESign1 {
        try sign(payload: payload, algorithm: .es384, keyID: keyID, externalAAD: externalAAD) {
            Array(try key.signature(for: $0).rawRepresentation)
        }
    }

    /// Signs `payload` with ES256 (ECDSA P-256, SHA-256).
    public static func sign(
        payload: [UInt8], key: P256.Signing.PrivateKey, keyID: [UInt8]? = nil, externalAAD: [UInt8] = []
    ) throws -> COSESign1 {
        try sign(payload: payload, algorithm: .es256, keyID: keyID, externalAAD: externalAAD) {
            Array(try key.signature(for: $0).rawRepresentation)
        }
    }

    static func sign(
        payload: [UInt8], algorithm: Algorithm, keyID: [UInt8]?, externalAAD: [UInt8],
        signer: ([UInt8]) throws -> [UInt8]
    ) throws -> COSESign1 {
        let protected = try CBORValue.map([CBORMapEntry(.int(HeaderLabel.algorithm), .int(algorithm.rawValue))]).encoded()
        let message = try toBeSigned(protectedHeader: protected, externalAAD: externalAAD, payload: payload)
        return COSESign1(
            protectedHeader: protected,
            unprotectedHeader: keyID.map { [CBORMapEntry(.int(HeaderLabel.keyID), .bytes($0))] } ?? [],
            payload: payload, signature: try signer(message))
    }

    /// Verifies the signature with an ECDSA public key of the algorithm the protected header names.
    ///
    /// - Parameter detachedPayload: the payload, when the message carries none.
    public func isValidSignature(
        publicKey: COSEVerificationKey, externalAAD: [UInt8] = [], detachedPayload: [UInt8]? = nil
    ) throws(CBORError) -> Bool {
        guard let content = payload ?? detachedPayload else {
            throw CBORError(.invalidStructure, "the payload is detached and none was supplied")
        }
        let message = try Self.toBeSigned(protectedHeader: protectedHeader, externalAAD: externalAAD, payload: content)
        switch (try algorithm(), publicKey) {
        case (.es256, .p256(let key)):
            guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: message)
        case (.es384, .p384(let key)):
            guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: message)
        default:
            // A key of another curve than the header names is a mismatch, never a fallback.
            return false
        }
    }
}

/// A public key that verifies COSE signatures.
public enum COSEVerificationKey: Sendable {
    case p256(P256.Signing.PublicKey)
    case p384(P384.Signing.PublicKey)
}
