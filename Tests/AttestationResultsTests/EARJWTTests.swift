import AttestationPolicy
import AttestationResults
import Crypto
import Foundation
import Testing

@Suite("EAR as a JWT (ES384)")
struct EARJWTTests {
    let key = EARSigningKey.generate()
    var keys: EARKeySet { EARKeySet(keys: [key.publicKey]) }

    /// Splits a token into its three parts.
    static func parts(_ token: String) -> [String] {
        token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    @Test(
        "a signed token verifies and gives back the claims, in both dialects",
        arguments: [EARProfile.veraison, .draft03])
    func roundTrip(profile: EARProfile) throws {
        let claims = try EARFixtures.claims(profile: profile)
        let token = try EARJWT.sign(claims, with: key)
        #expect(try EARJWT.verify(token, keys: keys, now: EARFixtures.now) == claims)
        #expect(try EARJWT.unverifiedClaims(of: token) == claims)
        #expect(try EARJWT.keyID(of: token) == key.keyID)
    }

    @Test("the header is exactly alg ES384, typ JWT and the key's thumbprint; the signature is 96 raw bytes")
    func headerAndSignatureForm() throws {
        let token = try EARJWT.sign(EARFixtures.claims(), with: key)
        let parts = Self.parts(token)
        #expect(parts.count == 3)
        #expect(!token.contains("="))
        let header = try #require(unbase64url(parts[0]))
        #expect(header.utf8String == #"{"alg":"ES384","kid":""# + key.keyID + #"","typ":"JWT"}"#)
        #expect(unbase64url(parts[2])?.count == 96)
        #expect(
            try jsonObject(#require(unbase64url(parts[1])))["eat_profile"] as? String == EARProfile.veraison.rawValue)
    }

    @Test("the key id is the RFC 7638 thumbprint of the public key")
    func keyIDIsThumbprint() throws {
        let point = Array(key.publicKey.x963Representation)
        let canonical =
            #"{"crv":"P-384","kty":"EC","x":""# + base64url(point[1...48]) + #"","y":""#
            + base64url(point[49...96]) + #""}"#
        #expect(key.keyID == base64url(SHA256.hash(data: Array(canonical.utf8))))
        #expect(key.keyID.count == 43)
    }

    @Test("the JWKS lists the key with kty, crv, x, y, alg, use and kid, and reads back")
    func jwksExport() throws {
        let jwks = keys.jwksJSON()
        let object = try jsonObject(jwks)
        let entries = try #require(object["keys"] as? [[String: String]])
        #expect(entries.count == 1)
        let entry = entries[0]
        #expect(Set(entry.keys) == ["kty", "crv", "x", "y", "alg", "use", "kid"])
        #expect(entry["kty"] == "EC" && entry["crv"] == "P-384" && entry["alg"] == "ES384" && entry["use"] == "sig")
        #expect(entry["kid"] == key.keyID)
        let point = Array(key.publicKey.x963Representation)
        #expect(unbase64url(entry["x"]!) == Array(point[1...48]))
        #expect(unbase64url(entry["y"]!) == Array(point[49...96]))
        let read = try EARKeySet(jwksJSON: jwks)
        #expect(read.keys.count == 1)
        #expect(read.keys[0].keyID == key.keyID)
        #expect(read.keys[0].x963Representation == key.publicKey.x963Representation)
        let token = try EARJWT.sign(EARFixtures.claims(), with: key)
        #expect(throws: Never.self) { try EARJWT.verify(token, keys: read, now: EARFixtures.now) }
    }

    @Test("a JWKS read skips keys of other kinds and names a key without kid by its thumbprint")
    func jwksSkipsOtherKeys() throws {
        let point = Array(key.publicKey.x963Representation)
        let json =
            #"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},"#
            + #"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},"#
            + #"{"kty":"EC","crv":"P-256","alg":"ES384","x":"AA","y":"AA"},"#
            + #"{"kty":"EC","crv":"P-384","use":"enc","x":"AA","y":"AA"},"#
            + #"{"kty":"EC","crv":"P-384","x":""# + base64url(point[1...48]) + #"","y":""# + base64url(point[49...96])
            + #""}]}"#
        let read = try EARKeySet(jwksJSON: [UInt8](utf8: json))
        #expect(read.keys.map(\.keyID) == [key.keyID])
        let offCurve = json.replacingOccurrences(of: base64url(point[49...96]), with: base64url(point[1...48]))
        #expect(errorCode { try EARKeySet(jwksJSON: [UInt8](utf8: offCurve)) } == .invalidClaims)
    }

    @Test("a changed payload is rejected")
    func tamperedPayloadRejected() throws {
        let token = try EARJWT.sign(EARFixtures.claims(), with: key)
        var parts = Self.parts(token)
        let payload = try #require(unbase64url(parts[1])).utf8String
        let forged = payload.replacingOccurrences(of: #""simulated":true"#, with: #""simulated":false"#)
        #expect(forged != payload)
        parts[1] = base64url(Array(forged.utf8))
        #expect(
            errorCode { try EARJWT.verify(parts.joined(separator: "."), keys: keys, now: EARFixtures.now) }
                == .badSignature)
    }

    @Test("a changed signature is rejected, whichever byte changes")
    func tamperedSignatureRejected() throws {
        let token = try EARJWT.sign(EARFixtures.claims(), with: key)
        var parts = Self.parts(token)
        let signature = try #require(unbase64url(parts[2]))
        for index in stride(from: 0, to: signature.count, by: 5) {
            var mutated = signature
            mutated[index] ^= 0x01
            parts[2] = base64url(mutated)
            #expect(
                errorCode { try EARJWT.verify(parts.joined(separator: "."), keys: keys, now: EARFixtures.now) }
                    == .badSignature, "byte \(index)")
        }
        parts[2] = base64url(signature.dropLast())
        #expect(
            errorCode { try EARJWT.verify(parts.joined(separator: "."), keys: keys, now: EARFixtures.now) }
                == .badSignature)
    }

    @Test("every changed character of the token is rejected")
    func everyCharacterChangeRejected() throws {
        let claims = try EARClaims(
            issuedAt: 1_787_000_000, verifierID: EARFixtures.verifier,
            submods: [
                "cpu0": EARAppraisal(status: .affirming, trustVector: TrustVector([.hardware: 2]), policyIDs: ["p"])
            ])
        let token = Array(try EARJWT.sign(claims, with: key).utf8)
        for index in token.indices where token[index] != UInt8(ascii: ".") {
            var mutated = token
            mutated[index] = mutated[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            #expect(
                errorCode { try EARJWT.verify(mutated.utf8String, keys: keys, now: EARFixtures.now) } != nil,
                "character \(index)")
        }
    }

    /// A token with a hand-made header over valid claims, signed with `signature`.
    func token(header: String, signature: [UInt8]) throws -> String {
        base64url(Array(header.utf8)) + "." + base64url(try EARFixtures.claims().jsonEncoded()) + "."
            + base64url(signature)
    }

    @Test("alg none is rejected, with or without a signature")
    func algNoneRejected() throws {
        for header in [
            #"{"alg":"none","typ":"JWT"}"#, #"{"alg":"none","kid":""# + key.keyID + #""}"#, #"{"alg":"NONE"}"#,
        ] {
            #expect(
                errorCode {
                    try EARJWT.verify(self.token(header: header, signature: []), keys: keys, now: EARFixtures.now)
                }
                    == .algorithmNotAllowed)
        }
        #expect(
            errorCode {
                try EARJWT.verify(
                    self.token(header: #"{"typ":"JWT"}"#, signature: []), keys: keys, now: EARFixtures.now)
            }
                == .malformedToken)
    }

    @Test("HMAC keyed with the public key (algorithm confusion) and other curves are rejected")
    func otherAlgorithmsRejected() throws {
        let payload = base64url(try EARFixtures.claims().jsonEncoded())
        let hmacHeader = base64url(Array((#"{"alg":"HS384","kid":""# + key.keyID + #""}"#).utf8))
        let mac = HMAC<SHA384>.authenticationCode(
            for: Array((hmacHeader + "." + payload).utf8), using: SymmetricKey(data: keys.jwksJSON()))
        let hmacToken = hmacHeader + "." + payload + "." + base64url(mac)
        #expect(errorCode { try EARJWT.verify(hmacToken, keys: keys, now: EARFixtures.now) } == .algorithmNotAllowed)

        let p256 = P256.Signing.PrivateKey()
        let es256Header = base64url(Array((#"{"alg":"ES256","kid":""# + key.keyID + #""}"#).utf8))
        let es256 = try p256.signature(for: Array((es256Header + "." + payload).utf8))
        let es256Token = es256Header + "." + payload + "." + base64url(es256.rawRepresentation)
        #expect(errorCode { try EARJWT.verify(es256Token, keys: keys, now: EARFixtures.now) } == .algorithmNotAllowed)

        // The other way round: a trusted P-256 key is used for ES256 only. A token naming it with ES384 is refused
        // before any signature check, whatever the signature bytes.
        let p256Key = EARSigningKey.generate(.es256)
        let p256Keys = EARKeySet(keys: [p256Key.publicKey])
        let good = try EARJWT.sign(EARFixtures.claims(), with: p256Key)
        #expect(errorCode { try EARJWT.verify(good, keys: p256Keys, now: EARFixtures.now) } == nil)
        let es384Header = base64url(Array((#"{"alg":"ES384","kid":""# + p256Key.keyID + #""}"#).utf8))
        let es384 = try P384.Signing.PrivateKey().signature(for: Array((es384Header + "." + payload).utf8))
        let es384Token = es384Header + "." + payload + "." + base64url(es384.rawRepresentation)
        #expect(errorCode { try EARJWT.verify(es384Token, keys: p256Keys, now: EARFixtures.now) } == .algorithmNotAllowed)
        // An ES256 signature of the right length but by another P-256 key is a bad signature, not an accepted one.
        let forged = es256Token.replacingOccurrences(of: es256Header, with: base64url(Array((#"{"alg":"ES256","kid":""# + p256Key.keyID + #""}"#).utf8)))
        #expect(errorCode { try EARJWT.verify(forged, keys: p256Keys, now: EARFixtures.now) } == .badSignature)
    }

    @Test("a critical header extension is rejected")
    func critRejected() throws {
        let header = #"{"alg":"ES384","crit":["exp"],"exp":1,"kid":""# + key.keyID + #""}"#
        #expect(
            errorCode {
                try EARJWT.verify(
                    self.token(header: header, signature: [UInt8](repeating: 1, count: 96)), keys: keys,
                    now: EARFixtures.now)
            }
                == .algorithmNotAllowed)
    }

    @Test("a key id that names no trusted key is rejected, even when the signature is good")
    func unknownKeyRejected() throws {
        let other = EARSigningKey.generate()
        let token = try EARJWT.sign(EARFixtures.claims(), with: other)
        #expect(errorCode { try EARJWT.verify(token, keys: keys, now: EARFixtures.now) } == .unknownKey)
        // Trusting two keys: the token must name which one.
        let both = EARKeySet(keys: [key.publicKey, other.publicKey])
        #expect(errorCode { try EARJWT.verify(token, keys: both, now: EARFixtures.now) } == nil)
        // A token signed by `other` but naming `key` fails its signature.
        var parts = Self.parts(token)
        parts[0] = base64url(Array((#"{"alg":"ES384","kid":""# + key.keyID + #"","typ":"JWT"}"#).utf8))
        #expect(
            errorCode { try EARJWT.verify(parts.joined(separator: "."), keys: both, now: EARFixtures.now) }
                == .badSignature)
    }

    @Test("an expired token, or one issued in the future, is rejected after its signature verifies")
    func timesChecked() throws {
        let token = try EARJWT.sign(EARFixtures.claims(lifetime: 300), with: key)
        #expect(
            errorCode { try EARJWT.verify(token, keys: keys, now: EARFixtures.evaluatedAt.addingTimeInterval(400)) }
                == .expired)
        #expect(
            errorCode { try EARJWT.verify(token, keys: keys, now: EARFixtures.evaluatedAt.addingTimeInterval(-400)) }
                == .issuedInFuture)
    }

    @Test(
        "a token that is not three base64url parts is malformed",
        arguments: ["", "a.b", "a.b.c.d", "e30.e30.e30=", "e30.e+0.AA"])
    func malformedTokens(token: String) {
        #expect(errorCode { try EARJWT.verify(token, keys: keys, now: EARFixtures.now) } == .malformedToken)
    }
}
