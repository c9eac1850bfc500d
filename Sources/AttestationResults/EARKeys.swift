public import Crypto

/// A public key that verifies cmk's attestation results: P-384, ES384, named by its RFC 7638 JWK thumbprint.
public struct EARPublicKey: Sendable {
    public let key: P384.Signing.PublicKey
    /// The key id (`kid`) tokens carry: by default the key's RFC 7638 thumbprint.
    public let keyID: String

    /// The key, named by `keyID` or, when nil, by its RFC 7638 thumbprint.
    public init(_ key: P384.Signing.PublicKey, keyID: String? = nil) {
        self.key = key
        self.keyID = keyID ?? Self.thumbprint(of: key)
    }

    /// The x and y coordinates, 48 bytes each.
    var coordinates: (x: [UInt8], y: [UInt8]) {
        let point = Array(key.x963Representation)  // 0x04 ‖ x ‖ y
        return (Array(point[1...48]), Array(point[49...96]))
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256 of `{"crv":"P-384","kty":"EC","x":…,"y":…}`).
    public static func thumbprint(of key: P384.Signing.PublicKey) -> String {
        let point = Array(key.x963Representation)
        let canonical =
            #"{"crv":"P-384","kty":"EC","x":""# + Base64URL.encode(point[1...48]) + #"","y":""#
            + Base64URL.encode(point[49...96]) + #""}"#
        return Base64URL.encode(Array(SHA256.hash(data: Array(canonical.utf8))))
    }

    var jwkValue: JSONValue {
        let (x, y) = coordinates
        return .object([
            "kty": .string("EC"), "crv": .string("P-384"), "x": .string(Base64URL.encode(x)),
            "y": .string(Base64URL.encode(y)), "alg": .string(EARJWT.algorithm), "use": .string("sig"),
            "kid": .string(keyID),
        ])
    }

    /// The key as a JWK (RFC 7517): `{"alg":"ES384","crv":"P-384","kid":…,"kty":"EC","use":"sig","x":…,"y":…}`.
    public var jwk: String { String(decoding: jwkValue.serialized, as: UTF8.self) }

    /// The key as a DER SubjectPublicKeyInfo (for tools that take PEM or DER).
    public var derRepresentation: [UInt8] { Array(key.derRepresentation) }
}

/// The keys a relying party accepts cmk's attestation results from: a JWK Set (RFC 7517 §5).
public struct EARKeySet: Sendable {
    public let keys: [EARPublicKey]

    public init(keys: [EARPublicKey]) { self.keys = keys }

    /// The key with this id, if any.
    public func key(id: String) -> EARPublicKey? { keys.first { $0.keyID == id } }

    /// The set as JSON: `{"keys":[{kty, crv, x, y, alg, use, kid}, …]}`.
    public func jwksJSON() -> [UInt8] { JSONValue.object(["keys": .array(keys.map(\.jwkValue))]).serialized }

    /// Reads a JWK Set, keeping the EC P-384 signing keys for ES384 and skipping keys of other kinds.
    ///
    /// A key without `kid` is named by its thumbprint. Throws when the JSON is not a JWK Set, or when a P-384 key's
    /// coordinates are not a point on the curve.
    public init(jwksJSON bytes: [UInt8]) throws(AttestationResultsError) {
        let top = try ClaimReader(try JSONValue(parsing: bytes), context: "the JWK Set")
        guard let entries = top.members["keys"]?.arrayValue else {
            throw AttestationResultsError(.invalidClaims, "a JWK Set needs a 'keys' array")
        }
        var keys: [EARPublicKey] = []
        for (index, entry) in entries.enumerated() {
            let jwk = try ClaimReader(entry, context: "key \(index) of the JWK Set")
            guard jwk.members["kty"]?.stringValue == "EC", jwk.members["crv"]?.stringValue == "P-384" else { continue }
            if let use = jwk.members["use"], use.stringValue != "sig" { continue }
            if let alg = jwk.members["alg"], alg.stringValue != EARJWT.algorithm { continue }
            guard let x = Base64URL.decode(try jwk.string("x")), let y = Base64URL.decode(try jwk.string("y")),
                x.count == 48, y.count == 48
            else {
                throw AttestationResultsError(.invalidClaims, "key \(index) of the JWK Set has malformed coordinates")
            }
            guard let key = try? P384.Signing.PublicKey(x963Representation: [0x04] + x + y) else {
                throw AttestationResultsError(.invalidClaims, "key \(index) of the JWK Set is not a point on P-384")
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
