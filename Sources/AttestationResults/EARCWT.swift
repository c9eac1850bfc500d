public import Foundation

/// EAR as a CWT (RFC 8392): the claims' CBOR map (``EARCBORKey``) in a COSE_Sign1 tagged 18, signed with ES384
/// (COSE alg -35) or ES256 (-7) by the signing key's curve, the key id (the RFC 7638 thumbprint, as UTF-8 bytes) in the unprotected header.
public enum EARCWT {
    /// The media type of the token (RFC 9782).
    public static let mediaType = "application/eat+cwt"

    /// Signs the claims: returns the encoded, tagged COSE_Sign1.
    public static func sign(_ claims: EARClaims, with key: EARSigningKey) throws(AttestationResultsError) -> [UInt8] {
        let payload = try claims.cborEncoded()
        let message: COSESign1
        do {
            let keyID = Array(key.keyID.utf8)
            switch key.privateKey {
            case .p256(let privateKey): message = try COSESign1.sign(payload: payload, key: privateKey, keyID: keyID)
            case .p384(let privateKey): message = try COSESign1.sign(payload: payload, key: privateKey, keyID: keyID)
            }
        } catch let error as AttestationResultsError {
            throw error
        } catch {
            throw AttestationResultsError(.badSignature, "signing failed: \(error)")
        }
        return try message.encoded(tagged: true)
    }

    /// Verifies a CWT and returns its claims.
    ///
    /// Checks: the COSE_Sign1 structure (tagged 18 or untagged); that the protected header's algorithm is exactly
    /// ES384 or ES256 and no algorithm hides in the unprotected header; that the key id (protected or unprotected) names
    /// a key in `keys` (none only when `keys` holds one key) whose algorithm is the header's; the signature; the claims; and `iat`/`exp` against `now`.
    public static func verify(
        _ bytes: [UInt8], keys: EARKeySet, now: Date, leeway: TimeInterval = 60
    ) throws(AttestationResultsError) -> EARClaims {
        guard bytes.count <= EARJWT.maximumTokenSize else {
            throw AttestationResultsError(.malformedToken, "the CWT is longer than \(EARJWT.maximumTokenSize) bytes")
        }
        let message = try COSESign1(encoded: bytes)
        let algorithm: COSESign1.Algorithm
        do throws(AttestationResultsError) {
            algorithm = try message.algorithm()
        } catch  where error.code == .unsupported {
            throw AttestationResultsError(.algorithmNotAllowed, error.reason)
        }
        let algorithmLabel = CBORValue.int(COSESign1.HeaderLabel.algorithm)
        guard algorithm == .es384 || algorithm == .es256,
            !message.unprotectedHeader.contains(where: { $0.key == algorithmLabel })
        else {
            throw AttestationResultsError(
                .algorithmNotAllowed, "the COSE algorithm is not ES384 (-35) or ES256 (-7) alone in the protected header")
        }
        let keyIDLabel = CBORValue.int(COSESign1.HeaderLabel.keyID)
        let keyIDValue =
            try message.protectedHeaderMap().first { $0.key == keyIDLabel }?.value
            ?? message.unprotectedHeader.first { $0.key == keyIDLabel }?.value
        var keyID: String? = nil
        if let keyIDValue {
            guard let bytes = keyIDValue.bytesValue, let text = String(validating: bytes, as: UTF8.self) else {
                throw AttestationResultsError(.malformedToken, "the COSE key id is not a UTF-8 byte string")
            }
            keyID = text
        }
        let key = try keys.key(named: keyID)
        guard key.algorithm.coseAlgorithm == algorithm else {
            throw AttestationResultsError(
                .algorithmNotAllowed,
                "the CWT names COSE algorithm \(algorithm.rawValue) but key '\(key.keyID)' is for \(key.algorithm.rawValue)")
        }
        guard message.payload != nil, try message.isValidSignature(publicKey: key.coseKey) else {
            throw AttestationResultsError(.badSignature, "the CWT signature does not verify under key '\(key.keyID)'")
        }
        let claims = try EARClaims(cbor: message.payload!)
        try claims.checkTimes(at: now, leeway: leeway)
        return claims
    }

    /// The claims of a CWT WITHOUT verifying its signature or times: for display only, never for a decision.
    public static func unverifiedClaims(of bytes: [UInt8]) throws(AttestationResultsError) -> EARClaims {
        guard let payload = try COSESign1(encoded: bytes).payload else {
            throw AttestationResultsError(.malformedToken, "the CWT's payload is detached")
        }
        return try EARClaims(cbor: payload)
    }
}
