import AttestationPolicy
import AttestationResults
import Crypto
import Foundation
import Testing

@Suite("EAR as a CWT (COSE_Sign1, ES384)")
struct EARCWTTests {
    let privateKey = P384.Signing.PrivateKey()
    var key: EARSigningKey { EARSigningKey(privateKey: privateKey) }
    var keys: EARKeySet { EARKeySet(keys: [key.publicKey]) }

    @Test(
        "a signed CWT verifies and gives back the claims, in both dialects", arguments: [EARProfile.veraison, .draft03])
    func roundTrip(profile: EARProfile) throws {
        let claims = try EARFixtures.claims(profile: profile)
        let token = try EARCWT.sign(claims, with: key)
        #expect(try EARCWT.verify(token, keys: keys, now: EARFixtures.now) == claims)
        #expect(try EARCWT.unverifiedClaims(of: token) == claims)
        #expect(try EARClaims(cbor: claims.cborEncoded()) == claims)
    }

    @Test("the CWT is a COSE_Sign1 tagged 18, alg -35 protected, the key id unprotected")
    func envelope() throws {
        let token = try EARCWT.sign(EARFixtures.claims(), with: key)
        #expect(token.first == 0xD2)
        let message = try COSESign1(encoded: token)
        #expect(try message.protectedHeaderMap() == [CBORMapEntry(.int(1), .int(-35))])
        #expect(message.unprotectedHeader == [CBORMapEntry(.int(4), .bytes(Array(key.keyID.utf8)))])
        #expect(message.signature.count == 96)
    }

    @Test("the claims use the integer keys of the EAR CDDL and cmk's private-use key")
    func integerKeys() throws {
        let claims = try EARFixtures.claims(profile: .draft03)
        let map = try CBORValue(encoded: claims.cborEncoded())
        #expect(map[.int(265)] == .text("tag:ietf.org,2026:rats/ear#03"))
        #expect(map[.int(6)] == .int(1_787_000_000))
        #expect(map[.int(4)] == .int(1_787_000_300))
        #expect(map[.int(1)] == .text("cmk"))
        #expect(map[.int(10)] == .bytes(Array(0..<16)))
        #expect(map[.int(1000)] == .int(32))
        #expect(map[.int(1004)]?[.int(0)] == .text("https://cmk.dev/verifier"))
        #expect(map[.int(1004)]?[.int(1)] == .text("cmk 0.4.0"))
        let cpu0 = try #require(map[.int(266)]?[.text("cpu0")])
        #expect(cpu0[.int(1000)] == .int(32))
        #expect(
            cpu0[.int(1001)]
                == .map([
                    CBORMapEntry(.int(1), .int(32)), CBORMapEntry(.int(2), .int(2)), CBORMapEntry(.int(4), .int(2)),
                    CBORMapEntry(.int(5), .int(2)),
                ]))
        #expect(cpu0[.int(1003)] == .array([.text(EARFixtures.expectedPolicyID)]))
        let cmk = try #require(cpu0[.int(-71000)])
        #expect(cmk[.text("simulated")] == .bool(true))
        #expect(cmk[.text("policy-version")] == .int(3))
        // The deployed dialect carries the policy id as text and has no top-level status.
        let deployed = try CBORValue(encoded: EARFixtures.claims(profile: .veraison).cborEncoded())
        #expect(deployed[.int(266)]?[.text("cpu0")]?[.int(1003)] == .text(EARFixtures.expectedPolicyID))
        #expect(deployed[.int(1000)] == nil)
    }

    @Test("encoding is deterministic: keys in bytewise order of their encodings")
    func deterministic() throws {
        let claims = try EARFixtures.claims()
        let bytes = try claims.cborEncoded()
        #expect(try EARClaims(cbor: bytes).cborEncoded() == bytes)
        let keys = try #require(try CBORValue(encoded: bytes).mapValue).map { try $0.key.encoded() }
        #expect(keys == keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// A COSE_Sign1 over `payload` with a chosen protected header, signed by `key` with ES384.
    func sign1(protected: [CBORMapEntry], unprotected: [CBORMapEntry], payload: [UInt8]) throws -> [UInt8] {
        let protectedBytes = try CBORValue.map(protected).encoded()
        let message = try COSESign1.toBeSigned(protectedHeader: protectedBytes, externalAAD: [], payload: payload)
        let signature = Array(try privateKey.signature(for: message).rawRepresentation)
        return try COSESign1(
            protectedHeader: protectedBytes, unprotectedHeader: unprotected, payload: payload, signature: signature
        ).encoded()
    }

    @Test("a changed payload or signature is rejected")
    func tamperingRejected() throws {
        let token = try EARCWT.sign(EARFixtures.claims(), with: key)
        let message = try COSESign1(encoded: token)
        var payload = try #require(message.payload)
        let index = try #require(payload.lastIndex(of: 0xF5))  // `true`: the simulated flag
        payload[index] = 0xF4
        let forged = COSESign1(
            protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader, payload: payload,
            signature: message.signature)
        #expect(errorCode { try EARCWT.verify(forged.encoded(), keys: keys, now: EARFixtures.now) } == .badSignature)
        var signature = message.signature
        signature[10] ^= 0x80
        let badSignature = COSESign1(
            protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader,
            payload: message.payload, signature: signature)
        #expect(
            errorCode { try EARCWT.verify(badSignature.encoded(), keys: keys, now: EARFixtures.now) } == .badSignature)
    }

    @Test("every flipped byte of the CWT is rejected, except in the unsigned header, which cannot change the claims")
    func everyByteFlipRejected() throws {
        let claims = try EARFixtures.claims()
        let token = try EARCWT.sign(claims, with: key)
        let message = try COSESign1(encoded: token)
        // Tag, array head, protected bstr: the unprotected map follows, and it is not covered by the signature.
        let unprotectedStart = 2 + 1 + message.protectedHeader.count
        let unprotected =
            unprotectedStart..<(unprotectedStart + (try CBORValue.map(message.unprotectedHeader).encoded().count))
        for index in token.indices {
            var mutated = token
            mutated[index] ^= 0x01
            guard let verified = try? EARCWT.verify(mutated, keys: keys, now: EARFixtures.now) else { continue }
            // E.g. the kid's label 4 turned into 5: no key id, and the one trusted key still verifies the signature.
            #expect(unprotected.contains(index), "byte \(index)")
            #expect(verified == claims, "byte \(index)")
        }
    }

    @Test("ES256 under a P-384 key, EdDSA, and an algorithm in the unprotected header are rejected")
    func algorithmPinned() throws {
        let payload = try EARFixtures.claims().cborEncoded()
        let kid = CBORMapEntry(.int(4), .bytes(Array(key.keyID.utf8)))
        let es256 = try sign1(protected: [CBORMapEntry(.int(1), .int(-7))], unprotected: [kid], payload: payload)
        #expect(errorCode { try EARCWT.verify(es256, keys: keys, now: EARFixtures.now) } == .algorithmNotAllowed)
        let eddsa = try sign1(protected: [CBORMapEntry(.int(1), .int(-8))], unprotected: [kid], payload: payload)
        #expect(errorCode { try EARCWT.verify(eddsa, keys: keys, now: EARFixtures.now) } == .algorithmNotAllowed)
        let noAlgorithm = try sign1(
            protected: [], unprotected: [CBORMapEntry(.int(1), .int(-35)), kid], payload: payload)
        #expect(errorCode { try EARCWT.verify(noAlgorithm, keys: keys, now: EARFixtures.now) } != nil)
        let both = try sign1(
            protected: [CBORMapEntry(.int(1), .int(-35))], unprotected: [CBORMapEntry(.int(1), .int(-7)), kid],
            payload: payload)
        #expect(errorCode { try EARCWT.verify(both, keys: keys, now: EARFixtures.now) } == .algorithmNotAllowed)
        // The same construction with the right header verifies, so the rejections above are about the algorithm.
        let good = try sign1(protected: [CBORMapEntry(.int(1), .int(-35)), kid], unprotected: [], payload: payload)
        #expect(errorCode { try EARCWT.verify(good, keys: keys, now: EARFixtures.now) } == nil)
    }

    @Test("an unknown key id is rejected")
    func unknownKey() throws {
        let token = try EARCWT.sign(EARFixtures.claims(), with: EARSigningKey.generate())
        #expect(errorCode { try EARCWT.verify(token, keys: keys, now: EARFixtures.now) } == .unknownKey)
    }

    @Test("an expired CWT is rejected")
    func expired() throws {
        let token = try EARCWT.sign(EARFixtures.claims(lifetime: 60), with: key)
        #expect(
            errorCode { try EARCWT.verify(token, keys: keys, now: EARFixtures.evaluatedAt.addingTimeInterval(200)) }
                == .expired)
    }

    @Test("CBOR claims that break the rules are rejected")
    func invalidCBORClaims() throws {
        let good = try CBORValue(encoded: EARFixtures.claims().cborEncoded())
        func replacing(_ key: Int64, with value: CBORValue?) -> [UInt8] {
            var entries = good.mapValue!.filter { $0.key != .int(key) }
            if let value { entries.append(CBORMapEntry(.int(key), value)) }
            return (try? CBORValue.map(entries).encoded()) ?? []
        }
        #expect(
            errorCode { try EARClaims(cbor: replacing(265, with: .text("tag:example.com,2025:x"))) } == .unknownProfile)
        #expect(errorCode { try EARClaims(cbor: replacing(6, with: .text("now"))) } == .invalidClaims)
        #expect(errorCode { try EARClaims(cbor: replacing(6, with: nil)) } == .invalidClaims)
        #expect(errorCode { try EARClaims(cbor: replacing(10, with: .text("nonce-as-text"))) } == .invalidClaims)
        let affirmingWithBadVector = CBORValue.map([
            CBORMapEntry(.int(1000), .int(2)), CBORMapEntry(.int(1001), .map([CBORMapEntry(.int(4), .int(97))])),
        ])
        #expect(
            errorCode {
                try EARClaims(cbor: replacing(266, with: .map([CBORMapEntry(.text("cpu0"), affirmingWithBadVector)])))
            } == .statusBetterThanTrustVector)
        let unknownStatus = CBORValue.map([CBORMapEntry(.int(1000), .int(3))])
        #expect(
            errorCode { try EARClaims(cbor: replacing(266, with: .map([CBORMapEntry(.text("cpu0"), unknownStatus)]))) }
                == .invalidClaims)
        let repeated = CBORValue.map(good.mapValue! + [CBORMapEntry(.int(6), .int(1))])
        #expect(errorCode { try EARClaims(cbor: repeated.encoded()) } == .invalidClaims)
    }
}
