public import Crypto

/// The signature algorithms cmk signs attestation results with: ECDSA with SHA-256 on P-256 (JWS `ES256`, COSE -7)
/// or with SHA-384 on P-384 (JWS `ES384`, COSE -35). A key has exactly one; a token is accepted only under a key of
/// the algorithm its header names.
public enum EARAlgorithm: String, Sendable, CaseIterable, Codable {
    case es256 = "ES256"
    case es384 = "ES384"

    /// The JWK `crv` of its keys.
    public var curve: String {
        switch self {
        case .es256: "P-256"
        case .es384: "P-384"
        }
    }

    /// The size of one coordinate, and of each of r and s.
    var coordinateSize: Int {
        switch self {
        case .es256: 32
        case .es384: 48
        }
    }

    var coseAlgorithm: COSESign1.Algorithm {
        switch self {
        case .es256: .es256
        case .es384: .es384
        }
    }

    /// The algorithm a JWS `alg` names, nil for any other (`none`, HMAC, RSA, EdDSA ...).
    public init?(jws name: String) { self.init(rawValue: name) }
}

/// A public key that verifies cmk's attestation results: P-256 (ES256) or P-384 (ES384), named by its RFC 7638 JWK
/// thumbprint.
public struct EARPublicKey: Sendable {
    public enum Key: Sendable {
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
    }

    public let key: Key
    /// The key id (`kid`) tokens carry: by default the key's RFC 7638 thumbprint.
    public let keyID: String

    /// The key, named by `keyID` or, when nil, by its RFC 7638 thumbprint.
    public init(_ key: P384.Signing.PublicKey, keyID: String? = nil) {
        self.init(.p384(key), keyID: keyID)
    }

    /// The key, named by `keyID` or, when nil, by its RFC 7638 thumbprint.
    public init(_ key: P256.Signing.PublicKey, keyID: String? = nil) {
        self.init(.p256(key), keyID: keyID)
    }

    public init(_ key: Key, keyID: String? = nil) {
        self.key = key
        self.keyID = keyID ?? Self.thumbprint(of: key)
    }

    /// The algorithm this key verifies.
    public var algorithm: EARAlgorithm {
        switch key {
        case .p256: .es256
        case .p384: .es384
        }
    }

    /// The uncompressed point: 0x04 ‖ x ‖ y.
    public var x963Representation: [UInt8] {
        switch key {
        case .p256(let key): Array(key.x963Representation)
        case .p384(let key): Array(key.x963Representation)
        }
    }

    /// The x and y coordinates, 32 (P-256) or 48 (P-384) bytes each.
    var coordinates: (x: [UInt8], y: [UInt8]) {
        let point = x963Representation
        let size = algorithm.coordinateSize
        return (Array(point[1...size]), Array(point[(size + 1)...(2 * size)]))
    }

    /// Whether `signature` (r ‖ s) is this key's signature of `message` under its algorithm.
    func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == 2 * algorithm.coordinateSize else { return false }
        switch key {
        case .p256(let key):
            guard let value = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(value, for: message)
        case .p384(let key):
            guard let value = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(value, for: message)
        }
    }

    var coseKey: COSEVerificationKey {
        switch key {
        case .p256(let key): .p256(key)
        case .p384(let key): .p384(key)
        }
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256 of `{"crv":…,"kty":"EC","x":…,"y":…}`).
    public static func thumbprint(of key: P384.Signing.PublicKey) -> String { thumbprint(of: .p384(key)) }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256 of `{"crv":…,"kty":"EC","x":…,"y":…}`).
    public static func thumbprint(of key: Key) -> String {
        let (curve, point): (String, [UInt8]) =
            switch key {
            case .p256(let key): ("P-256", Array(key.x963Representation))
            case .p384(let key): ("P-384", Array(key.x963Representation))
            }
        let size = (point.count - 1) / 2
        let canonical =
            #"{"crv":""# + curve + #"","kty":"EC","x":""# + Base64URL.encode(point[1...size]) + #"","y":""#
            + Base64URL.encode(point[(size + 1)...(2 * size)]) + #""}"#
        return Base64URL.encode(Array(SHA256.hash(data: Array(canonical.utf8))))
    }

    var jwkValue: JSONValue {
        let (x, y) = coordinates
        return .object([
            "kty": .string("EC"), "crv": .string(algorithm.curve), "x": .string(Base64URL.encode(x)),
            "y": .string(Base64URL.encode(y)), "alg": .string(algorithm.rawValue), "use": .string("sig"),
            "kid": .string(keyID),
        ])
    }

    /// The key as a JWK (RFC 7517): `{"alg":"ES384","crv":"P-384","kid":…,"kty":"EC","use":"sig","x":…,"y":…}`
    /// (ES256 and P-256 for a P-256 key).
    public var jwk: String { String(decoding: jwkValue.serialized, as: UTF8.self) }

    /// The key as a DER SubjectPublicKeyInfo (for tools that take PEM or DER).
    public var derRepresentation: [UInt8] {
        switch key {
        case .p256(let key): Array(key.derRepresentation)
        case .p384(let key): Array(key.derRepresentation)
        }
    }
}

/// The keys a relying party accepts cmk's attestation results from: a JWK Set (RFC 7517 §5).
public struct EARKeySet: Sendable {
    public let keys: [EARPublicKey]

    public init(keys: [EARPublicKey]) { self.keys = keys }

    /// The key with this id, if any.
    public func key(id: String) -> EARPublicKey? { keys.first { $0.keyID == id } }

    /// The set as JSON: `{"keys":[{kty, crv, x, y, alg, use, kid}, …]}`.
    public func jwksJSON() -> [UInt8] { JSONValue.object(["keys": .array(keys.map(\.jwkValue))]).serialized }

    /// Reads a JWK Set, keeping the EC signing keys for ES256 (P-256) and ES384 (P-384) and skipping keys of other
    /// kinds, and keys whose `alg` is not their curve's.
    ///
    /// A key without `kid` is named by its thumbprint. Throws when the JSON is not a JWK Set, or when a kept key's
    /// coordinates are not a point on its curve.
    public init(jwksJSON bytes: [UInt8]) throws(AttestationResultsError) {
        let top = try ClaimReader(try JSONValue(parsing: bytes), context: "the JWK Set")
        guard let entries = top.members["keys"]?.arrayValue else {
            throw AttestationResultsError(.invalidClaims, "a JWK Set needs a 'keys' array")
        }
        var keys: [EARPublicKey] = []
        for (index, entry) in entries.enumerated() {
            let jwk = try ClaimReader(entry, context: "key \(index) of the JWK Set")
            guard jwk.members["kty"]?.stringValue == "EC",
                let algorithm = EARAlgorithm.allCases.first(where: { $0.curve == jwk.members["crv"]?.stringValue })
            else { continue }
            if let use = jwk.members["use"], use.stringValue != "sig" { continue }
            if let alg = jwk.members["alg"], alg.stringValue != algorithm.rawValue { continue }
            let size = algorithm.coordinateSize
            guard let x = Base64URL.decode(try jwk.string("x")), let y = Base64URL.decode(try jwk.string("y")),
                x.count == size, y.count == size
            else {
                throw AttestationResultsError(.invalidClaims, "key \(index) of the JWK Set has malformed coordinates")
            }
            let key: EARPublicKey.Key
            switch algorithm {
            case .es256:
                guard let point = try? P256.Signing.PublicKey(x963Representation: [0x04] + x + y) else {
                    throw AttestationResultsError(.invalidClaims, "key \(index) of the JWK Set is not a point on P-256")
                }
                key = .p256(point)
            case .es384:
                guard let point = try? P384.Signing.PublicKey(x963Representation: [0x04] + x + y) else {
                    throw AttestationResultsError(.invalidClaims, "key \(index) of the JWK Set is not a point on P-384")
                }
                key = .p384(point)
            }
            keys.append(EARPublicKey(key, keyID: try jwk.optionalString("kid")))
        }
        self.keys = keys
    }

    /// The key a token names; a token without a key id is accepted only when the set holds exactly one key.
    func key(named keyID: String?) throws(AttestationResultsError) -> EARPublicKey {
        if let keyID {
            guard let key = key(id: keyID) else {
                throw AttestationResultsError(.unknownKey, "no trusted key has the id '\(keyID)'")
            }
            return key
        }
        guard keys.count == 1 else {
            throw AttestationResultsError(.unknownKey, "the token names no key id and \(keys.count) keys are trusted")
        }
        return keys[0]
    }
}
