import CMKTesting
import AttestationPolicy
import AttestationResults
import Foundation
import Testing

/// Independent verifiers of cmk's tokens: joserfc (JWT) and pycose (CWT) from the project venv.
///
/// Each script exits 3 when the signature does not verify, 1 when a claim check fails (a Python assertion), and 0
/// after printing what it read. Arguments: the token, the key, the dialect, the expected policy id and simulated flag.
enum ThirdPartyVerifier {
    static let joserfcScript = #"""
        import json, sys
        from joserfc import jwt
        from joserfc.jwk import KeySet
        jwks_text, token, dialect, expected_policy, expected_simulated = sys.argv[1:6]
        keys = KeySet.import_key_set(json.loads(jwks_text))
        try:
            decoded = jwt.decode(token, keys, algorithms=["ES384", "ES256"])
        except Exception as error:
            print(f"verification failed: {type(error).__name__}: {error}", file=sys.stderr)
            sys.exit(3)
        header = decoded.header
        curve = keys.get_by_kid(header["kid"]).as_dict()["crv"]
        assert header["alg"] == {"P-384": "ES384", "P-256": "ES256"}[curve] and header["typ"] == "JWT", header
        assert keys.get_by_kid(header["kid"]).thumbprint() == header["kid"], "kid is not the RFC 7638 thumbprint"
        claims = decoded.claims
        jwt.JWTClaimsRegistry(now=claims["iat"] + 1, iat={"essential": True}, exp={"essential": True}).validate(claims)
        status, policy_name, cmk_name = {
            "deployed": ("ear.status", "ear.appraisal-policy-id", "ear.cmk.appraisal"),
            "draft03": ("ear_status", "ear_appraisal_policy_ids", "ear_cmk_appraisal"),
        }[dialect]
        cpu0 = claims["submods"]["cpu0"]
        policy = cpu0[policy_name] if dialect == "deployed" else cpu0[policy_name][0]
        assert policy == expected_policy, policy
        simulated = cpu0[cmk_name]["simulated"]
        assert simulated is (expected_simulated == "true"), simulated
        print(json.dumps({"kid": header["kid"], "status": cpu0[status], "policy": policy, "simulated": simulated}))
        """#

    static let pycoseScript = #"""
        import json, sys
        import cbor2
        from cryptography.hazmat.primitives.serialization import load_der_public_key
        from pycose.messages import Sign1Message
        from pycose.keys import EC2Key
        from pycose.keys.curves import P256, P384
        from pycose.algorithms import Es256, Es384
        from pycose.headers import Algorithm, KID
        token_hex, spki_hex, dialect, expected_policy, expected_simulated = sys.argv[1:6]
        token = bytes.fromhex(token_hex)
        public_key = load_der_public_key(bytes.fromhex(spki_hex))
        numbers = public_key.public_numbers()
        curve, algorithm, size = {"secp384r1": (P384, Es384, 48), "secp256r1": (P256, Es256, 32)}[public_key.curve.name]
        try:
            outer = cbor2.loads(token)
            assert isinstance(outer, cbor2.CBORTag) and outer.tag == 18, "not a tagged COSE_Sign1"
            # cbor2 6 decodes a tag's content as immutable (tuple, frozendict), which pycose 1.1's
            # CoseMessage.decode does not accept; hand pycose the same four elements as list and dict.
            protected, unprotected, payload, signature = outer.value
            message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
            assert isinstance(message, Sign1Message), type(message)
            assert message.phdr.get(Algorithm) is algorithm, message.phdr
            message.key = EC2Key(crv=curve, x=numbers.x.to_bytes(size, "big"), y=numbers.y.to_bytes(size, "big"))
            valid = message.verify_signature()
        except Exception as error:
            print(f"verification failed: {type(error).__name__}: {error}", file=sys.stderr)
            sys.exit(3)
        if not valid:
            print("verification failed: bad signature", file=sys.stderr)
            sys.exit(3)
        kid = message.phdr.get(KID) or message.uhdr.get(KID)
        claims = cbor2.loads(message.payload)
        assert isinstance(claims[6], int) and isinstance(claims[4], int) and claims[4] > claims[6], claims
        cpu0 = claims[266]["cpu0"]
        policy = cpu0[1003] if dialect == "deployed" else cpu0[1003][0]
        assert policy == expected_policy, policy
        simulated = cpu0[-71000]["simulated"]
        assert simulated is (expected_simulated == "true"), simulated
        print(json.dumps({"kid": kid.decode(), "status": cpu0[1000], "policy": policy, "simulated": simulated,
                          "profile": claims[265]}))
        """#

    /// Runs one of the scripts with the venv's Python.
    static func run(_ script: String, _ arguments: [String]) throws -> BuiltCMK.Output {
        try ExternalTool.run(ExternalTool.python, ["-c", script] + arguments, timeout: 60)
    }

    /// The JSON object a script printed on success.
    static func printed(_ output: BuiltCMK.Output) throws -> [String: Any] {
        try #require(
            JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any],
            "printed: \(output.standardOutput) \(output.standardError)")
    }
}

@Suite("Third-party verification of cmk's EARs (joserfc, pycose)", .serialized)
struct ThirdPartyVerificationTests {
    let key = EARSigningKey.generate()

    static let cases: [(EARProfile, Bool)] = [(.veraison, true), (.draft03, true), (.veraison, false)]

    static func dialect(_ profile: EARProfile) -> String { profile.dialect == .draft03 ? "draft03" : "deployed" }

    @Test(
        "joserfc verifies the JWT against the exported JWKS and reads the policy id and simulated flag",
        .timeLimit(.minutes(4)), arguments: cases)
    func joserfcVerifiesJWT(profile: EARProfile, simulated: Bool) throws {
        let token = try EARJWT.sign(EARFixtures.claims(profile: profile, simulated: simulated), with: key)
        let jwks = EARKeySet(keys: [key.publicKey]).jwksJSON().utf8String
        let output = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.joserfcScript,
            [jwks, token, Self.dialect(profile), EARFixtures.expectedPolicyID, simulated ? "true" : "false"])
        #expect(output.status == 0, "\(output.standardError)")
        let printed = try ThirdPartyVerifier.printed(output)
        #expect(printed["kid"] as? String == key.keyID)
        #expect(printed["status"] as? String == "warning")
        #expect(printed["policy"] as? String == EARFixtures.expectedPolicyID)
        #expect(printed["simulated"] as? Bool == simulated)
    }

    @Test(
        "pycose verifies the CWT against the public key and reads the policy id and simulated flag",
        .timeLimit(.minutes(4)), arguments: cases)
    func pycoseVerifiesCWT(profile: EARProfile, simulated: Bool) throws {
        let token = try EARCWT.sign(EARFixtures.claims(profile: profile, simulated: simulated), with: key)
        let output = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.pycoseScript,
            [
                hex(token), hex(key.publicKey.derRepresentation), Self.dialect(profile), EARFixtures.expectedPolicyID,
                simulated ? "true" : "false",
            ])
        #expect(output.status == 0, "\(output.standardError)")
        let printed = try ThirdPartyVerifier.printed(output)
        #expect(printed["kid"] as? String == key.keyID)
        #expect(printed["status"] as? Int == 32)
        #expect(printed["policy"] as? String == EARFixtures.expectedPolicyID)
        #expect(printed["simulated"] as? Bool == simulated)
        #expect(printed["profile"] as? String == profile.rawValue)
    }

    @Test("an ES256 (P-256) key's JWT and CWT verify in joserfc and pycose; a flipped signature byte fails both", .timeLimit(.minutes(4)))
    func es256VerifiesInThirdPartyTools() throws {
        let p256 = EARSigningKey.generate(.es256)
        #expect(p256.algorithm == .es256)
        let jwt = try EARJWT.sign(EARFixtures.claims(), with: p256)
        let jwks = EARKeySet(keys: [p256.publicKey]).jwksJSON().utf8String
        let cwt = try EARCWT.sign(EARFixtures.claims(), with: p256)
        let spki = hex(p256.publicKey.derRepresentation)
        let jose = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.joserfcScript, [jwks, jwt, "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(jose.status == 0, "\(jose.standardError)")
        #expect(try ThirdPartyVerifier.printed(jose)["kid"] as? String == p256.keyID)
        let cose = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.pycoseScript, [hex(cwt), spki, "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(cose.status == 0, "\(cose.standardError)")
        var parts = jwt.split(separator: ".").map(String.init)
        var signature = try #require(unbase64url(parts[2]))
        signature[5] ^= 0x01
        parts[2] = base64url(signature)
        let badJWT = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.joserfcScript, [jwks, parts.joined(separator: "."), "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(badJWT.status == 3, "\(badJWT.standardOutput) \(badJWT.standardError)")
        let message = try COSESign1(encoded: cwt)
        var cwtSignature = message.signature
        cwtSignature[5] ^= 0x01
        let badCWT = try COSESign1(
            protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader,
            payload: message.payload, signature: cwtSignature
        ).encoded()
        let badCOSE = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.pycoseScript, [hex(badCWT), spki, "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(badCOSE.status == 3, "\(badCOSE.standardOutput) \(badCOSE.standardError)")
    }

    @Test("joserfc rejects a JWT with a flipped payload or signature byte", .timeLimit(.minutes(4)))
    func joserfcRejectsTamperedJWT() throws {
        let token = try EARJWT.sign(EARFixtures.claims(), with: key)
        let jwks = EARKeySet(keys: [key.publicKey]).jwksJSON().utf8String
        var parts = token.split(separator: ".").map(String.init)
        var payload = try #require(unbase64url(parts[1]))
        payload[payload.count / 2] ^= 0x01
        var signature = try #require(unbase64url(parts[2]))
        signature[0] ^= 0x01
        let original = parts
        parts[1] = base64url(payload)
        let badPayload = parts.joined(separator: ".")
        parts = original
        parts[2] = base64url(signature)
        let badSignature = parts.joined(separator: ".")
        for tampered in [badPayload, badSignature] {
            let output = try ThirdPartyVerifier.run(
                ThirdPartyVerifier.joserfcScript, [jwks, tampered, "deployed", EARFixtures.expectedPolicyID, "true"])
            #expect(output.status == 3, "\(output.standardOutput) \(output.standardError)")
        }
        // The same script accepts the untouched token, so the failures above are the signature's.
        let good = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.joserfcScript, [jwks, token, "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(good.status == 0, "\(good.standardError)")
    }

    @Test("pycose rejects a CWT with a flipped payload or signature byte", .timeLimit(.minutes(4)))
    func pycoseRejectsTamperedCWT() throws {
        let token = try EARCWT.sign(EARFixtures.claims(), with: key)
        let message = try COSESign1(encoded: token)
        let spki = hex(key.publicKey.derRepresentation)
        var payload = try #require(message.payload)
        payload[payload.count / 2] ^= 0x01
        var signature = message.signature
        signature[0] ^= 0x01
        let tampered = [
            try COSESign1(
                protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader,
                payload: payload, signature: message.signature
            ).encoded(),
            try COSESign1(
                protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader,
                payload: message.payload, signature: signature
            ).encoded(),
        ]
        for bytes in tampered {
            let output = try ThirdPartyVerifier.run(
                ThirdPartyVerifier.pycoseScript, [hex(bytes), spki, "deployed", EARFixtures.expectedPolicyID, "true"])
            #expect(output.status == 3, "\(output.standardOutput) \(output.standardError)")
        }
        // A claim check that does not hold fails too: the script really reads the claim.
        let wrongPolicy = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.pycoseScript, [hex(token), spki, "deployed", "policy:cmk/other@1#0", "true"])
        #expect(wrongPolicy.status == 1, "\(wrongPolicy.standardError)")
        let good = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.pycoseScript, [hex(token), spki, "deployed", EARFixtures.expectedPolicyID, "true"])
        #expect(good.status == 0, "\(good.standardError)")
    }

    @Test("joserfc refuses the flipped simulated flag: the claim check is real", .timeLimit(.minutes(4)))
    func joserfcClaimCheckIsReal() throws {
        let token = try EARJWT.sign(EARFixtures.claims(simulated: true), with: key)
        let jwks = EARKeySet(keys: [key.publicKey]).jwksJSON().utf8String
        let output = try ThirdPartyVerifier.run(
            ThirdPartyVerifier.joserfcScript, [jwks, token, "deployed", EARFixtures.expectedPolicyID, "false"])
        #expect(output.status == 1, "\(output.standardError)")
    }
}

func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
