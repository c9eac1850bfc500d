import Crypto
public import Foundation

/// EAR as a JWT: a compact JWS (RFC 7515) signed with ES384 or ES256 (RFC 7518 §3.4) by the signing key's curve,
/// header `{"alg":"ES384","kid":<RFC 7638 thumbprint>,"typ":"JWT"}`, payload the claims' JSON.
public enum EARJWT {
    /// The JWS algorithm of cmk's default signing key.
    public static let algorithm = EARAlgorithm.es384.rawValue
    /// The media type of the token (RFC 9782).
    public static let mediaType = "application/eat+jwt"
    /// The longest token read; an EAR with every rule outcome is a few kilobytes.
    public static let maximumTokenSize = 1 << 20

    /// Signs the claims: returns `base64url(header).base64url(payload).base64url(signature)`.
    public static func sign(_ claims: EARClaims, with key: EARSigningKey) throws(AttestationResultsError) -> String {
        let header = JSONValue.object([
            "alg": .string(key.algorithm.rawValue), "typ": .string("JWT"), "kid": .string(key.keyID),
        ])
        let signingInput = Base64URL.encode(header.serialized) + "." + Base64URL.encode(claims.jsonEncoded())
        let signature: [UInt8]
        do {
            signature = try key.signature(for: Array(signingInput.utf8))
        } catch {
            throw AttestationResultsError(.badSignature, "signing failed: \(error)")
        }
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Verifies a token and returns its claims.
    ///
    /// Checks, in order: the token's form; that the header's `alg` is exactly `ES384` or `ES256` (so `none`, HMAC and
    /// every other algorithm are refused, whatever the key) and that it has no `crit`; that `kid` names a key in `keys`
    /// (a token without `kid` only when `keys` holds one key) whose algorithm is the header's; the signature; the claims (profile, status rule); and `iat` and
    /// `exp` against `now` with `leeway` seconds of clock skew. Header keys such as `jwk`, `jku` and `x5u` are never
    /// used to find a key.
    public static func verify(
        _ token: String, keys: EARKeySet, now: Date, leeway: TimeInterval = 60
    ) throws(AttestationResultsError) -> EARClaims {
        let parts = try split(token)
        guard let headerValue = try? JSONValue(parsing: parts.header), headerValue.objectValue != nil else {
            throw AttestationResultsError(.malformedToken, "the JWT header is not a JSON object")
        }
        let header = try ClaimReader(headerValue, context: "the JWT header")
        guard let alg = header.members["alg"]?.stringValue else {
            throw AttestationResultsError(.malformedToken, "the JWT header names no algorithm")
        }
        guard let headerAlgorithm = EARAlgorithm(jws: alg) else {
            throw AttestationResultsError(
                .algorithmNotAllowed, "the JWT algorithm '\(alg)' is not accepted; only ES256 and ES384 are")
        }
        guard header.members["crit"] == nil else {
            throw AttestationResultsError(
                .algorithmNotAllowed, "the JWT header lists critical extensions cmk does not know")
        }
        if let typ = header.members["typ"] {
            guard let text = typ.stringValue, ["jwt", "eat+jwt", "application/eat+jwt"].contains(text.lowercased())
            else {
                throw AttestationResultsError(.malformedToken, "the JWT header's typ is not JWT")
            }
        }
        let keyIDValue = header.members["kid"]
        if keyIDValue != nil, keyIDValue?.stringValue == nil {
            throw AttestationResultsError(.malformedToken, "the JWT header's kid is not a string")
        }
        let key = try keys.key(named: keyIDValue?.stringValue)
        guard key.algorithm == headerAlgorithm else {
            throw AttestationResultsError(
                .algorithmNotAllowed,
                "the JWT names \(alg) but key '\(key.keyID)' is a \(key.algorithm.curve) key for \(key.algorithm.rawValue)")
        }
        guard key.isValidSignature(parts.signature, for: parts.signingInput) else {
            throw AttestationResultsError(.badSignature, "the JWT signature does not verify under key '\(key.keyID)'")
        }
        let claims = try EARClaims(json: parts.payload)
        try claims.checkTimes(at: now, leeway: leeway)
        return claims
    }

    /// The claims of a token WITHOUT verifying its signature or times: for display only, never for a decision.
    public static func unverifiedClaims(of token: String) throws(AttestationResultsError) -> EARClaims {
        try EARClaims(json: try split(token).payload)
    }

    /// The key id a token's header names, if any (unverified).
    public static func keyID(of token: String) throws(AttestationResultsError) -> String? {
        try JSONValue(parsing: try split(token).header).objectValue?["kid"]?.stringValue
    }

    private static func split(
        _ token: String
    ) throws(AttestationResultsError) -> (header: [UInt8], payload: [UInt8], signature: [UInt8], signingInput: [UInt8])
    {
        let utf8 = Array(token.utf8)
        guard utf8.count <= maximumTokenSize else {
            throw AttestationResultsError(.malformedToken, "the JWT is longer than \(maximumTokenSize) bytes")
        }
        let parts = utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw AttestationResultsError(
                .malformedToken, "a JWS in compact form has three parts; this has \(parts.count)")
        }
        let names = ["header", "payload", "signature"]
        var decoded: [[UInt8]] = []
        for (index, part) in parts.enumerated() {
            guard let bytes = Base64URL.decode(String(decoding: part, as: UTF8.self)) else {
                throw AttestationResultsError(
                    .malformedToken, "the JWT \(names[index]) is not base64url without padding")
            }
            decoded.append(bytes)
        }
        return (decoded[0], decoded[1], decoded[2], Array(utf8[..<(parts[0].count + 1 + parts[1].count)]))
    }
}
