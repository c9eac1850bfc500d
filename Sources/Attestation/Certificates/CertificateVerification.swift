public import Foundation
import Crypto
public import SwiftASN1

extension AttestationCertificate {
    /// Extensions whose criticality cmk honours: basicConstraints and keyUsage are read and enforced.
    static let understoodCriticalExtensions: Set<String> = [
        ExtensionOIDs.basicConstraints.description, ExtensionOIDs.keyUsage.description,
    ]

    /// Verifies that `issuer` signed this certificate: names chain, and the signature verifies under the
    /// issuer's key with exactly this certificate's algorithm and parameters.
    ///
    /// - Parameter requiredAlgorithm: when given, the certificate must use exactly this algorithm
    ///   (e.g. AMD's RSA-PSS SHA-384 salt 48), so a chain cannot be downgraded to other parameters.
    public func verifySignature(
        issuedBy issuer: AttestationCertificate, requiredAlgorithm: CertificateSignatureAlgorithm? = nil
    ) throws(AttestationError) {
        guard self.issuer == issuer.subject else {
            throw AttestationError(
                .issuerMismatch,
                "certificate '\(subjectCommonName ?? "?")' names issuer '\(issuerCommonName ?? "?")', but the presented issuer is '\(issuer.subjectCommonName ?? "?")'")
        }
        if let requiredAlgorithm, requiredAlgorithm != signatureAlgorithm {
            throw AttestationError(
                .unsupportedSignatureAlgorithm,
                "certificate '\(subjectCommonName ?? "?")' is signed with \(signatureAlgorithm); the chain requires \(requiredAlgorithm)")
        }
        let valid = try SignatureVerification.verify(
            algorithm: signatureAlgorithm, signature: signature, message: tbsBytes,
            issuerPublicKey: issuer.subjectPublicKeyInfo)
        guard valid else {
            throw AttestationError(
                .badSignature,
                "the signature on '\(subjectCommonName ?? "?")' does not verify under the key of '\(issuer.subjectCommonName ?? "?")'")
        }
    }

    /// Throws unless `time` lies within [notBefore, notAfter] (RFC 5280 §4.1.2.5, both ends inclusive).
    public func checkValidity(at time: Date) throws(AttestationError) {
        let name = subjectCommonName ?? "certificate"
        if time < notBefore {
            throw AttestationError(
                .certificateNotYetValid,
                "'\(name)' is valid from \(notBefore.ISO8601Format()); the validation time \(time.ISO8601Format()) is earlier")
        }
        if time > notAfter {
            throw AttestationError(
                .certificateExpired,
                "'\(name)' expired at \(notAfter.ISO8601Format()); the validation time is \(time.ISO8601Format())")
        }
    }

    /// Throws if a critical extension is neither understood by cmk nor listed in `alsoUnderstood`.
    public func checkCriticalExtensions(alsoUnderstood: Set<String> = []) throws(AttestationError) {
        for ext in extensions where ext.isCritical {
            let oid = ext.oid.description
            guard Self.understoodCriticalExtensions.contains(oid) || alsoUnderstood.contains(oid) else {
                throw AttestationError(
                    .unhandledCriticalExtension,
                    "'\(subjectCommonName ?? "?")' carries critical extension \(oid), which cmk does not process")
            }
        }
    }

    /// Whether basicConstraints marks this certificate as a CA and keyUsage (if present) allows keyCertSign.
    public func isCertificateAuthority() throws(AttestationError) -> Bool {
        do {
            guard let constraints = `extension`(ExtensionOIDs.basicConstraints) else { return false }
            let isCA = try DER.sequence(try DER.parse(constraints.value), identifier: .sequence) { nodes -> Bool in
                var isCA = false
                var next = nodes.next()
                if let first = next, first.identifier == .boolean {
                    isCA = try Bool(derEncoded: first)
                    next = nodes.next()
                }
                if let pathLength = next {
                    _ = try Int(derEncoded: pathLength)
                }
                return isCA
            }
            guard isCA else { return false }
            if let usage = `extension`(ExtensionOIDs.keyUsage) {
                let bits = try ASN1BitString(derEncoded: try DER.parse(usage.value))
                // keyCertSign is bit 5, counted from the most significant bit of the first byte.
                guard let first = bits.bytes.first, first & 0x04 != 0 else { return false }
            }
            return true
        } catch {
            throw AttestationError(.malformedCertificate, "'\(subjectCommonName ?? "?")': unreadable basicConstraints or keyUsage: \(error)")
        }
    }

    /// The RSA modulus size of the subject key in bits, or nil when the key is not RSA.
    public func rsaKeyBits() throws(AttestationError) -> Int? {
        let key = try OpenSSLPublicKey(subjectPublicKeyInfo: subjectPublicKeyInfo)
        return key.isRSA ? key.bits : nil
    }
}

/// X.509 extension identifiers cmk reads.
public enum ExtensionOIDs {
    public static let basicConstraints: ASN1ObjectIdentifier = [2, 5, 29, 19]
    public static let keyUsage: ASN1ObjectIdentifier = [2, 5, 29, 15]
}

/// Signature checks shared by certificates, CRLs and signed collateral.
enum SignatureVerification {
    /// Verifies `signature` over `message` with the key in `issuerPublicKey` (SubjectPublicKeyInfo DER).
    static func verify(
        algorithm: CertificateSignatureAlgorithm, signature: [UInt8], message: [UInt8], issuerPublicKey: [UInt8]
    ) throws(AttestationError) -> Bool {
        switch algorithm {
        case .rsaPSS(let parameters):
            let key = try OpenSSLPublicKey(subjectPublicKeyInfo: issuerPublicKey)
            return try key.verifyRSAPSS(signature: signature, message: message, parameters: parameters)
        case .rsaPKCS1(let hash):
            let key = try OpenSSLPublicKey(subjectPublicKeyInfo: issuerPublicKey)
            return try key.verifyRSAPKCS1(signature: signature, message: message, hash: hash)
        case .ecdsaWithSHA256:
            return try verifyECDSA(signature: signature, digest: SHA256.hash(data: message), spki: issuerPublicKey)
        case .ecdsaWithSHA384:
            return try verifyECDSA(signature: signature, digest: SHA384.hash(data: message), spki: issuerPublicKey)
        }
    }

    private static func verifyECDSA<D: Digest>(signature: [UInt8], digest: D, spki: [UInt8]) throws(AttestationError) -> Bool {
        if let key = try? P256.Signing.PublicKey(derRepresentation: spki) {
            guard let sig = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: digest)
        }
        if let key = try? P384.Signing.PublicKey(derRepresentation: spki) {
            guard let sig = try? P384.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: digest)
        }
        throw AttestationError(.unsupportedPublicKey, "the issuer key is not an ECDSA P-256 or P-384 key")
    }
}
