import BinaryFormat
import Crypto
import CryptoExtras

/// X.509 signature checks the child makes without Foundation or OpenSSL: a certificate's signature over its
/// tbsCertificate under its issuer's SubjectPublicKeyInfo, for the two algorithms a TEE's chain uses — ECDSA P-256
/// with SHA-256 (Intel's PCK chain) and RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt (AMD's ARK → ASK →
/// VCEK). Nothing else of a certificate (validity, extensions, names, CRLs) is read: see docs/channels.md, "What
/// the child checks".
enum GuestCertificate {
    /// ecdsa-with-SHA256 (1.2.840.10045.4.3.2) as a DER OBJECT IDENTIFIER.
    static let ecdsaWithSHA256: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]
    /// id-RSASSA-PSS (1.2.840.113549.1.1.10).
    static let rsassaPSS: [UInt8] = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A]

    struct Parts {
        let tbs: ArraySlice<UInt8>
        let algorithm: ArraySlice<UInt8>
        let signature: ArraySlice<UInt8>
    }

    /// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }.
    static func parts(_ der: [UInt8]) throws(BinaryFormatError) -> Parts {
        let certificate = try DERCertificate.element(der, at: 0, end: der.count)
        guard certificate.tag == 0x30, certificate.whole.upperBound == der.count else {
            throw BinaryFormatError(.invalidValue, field: "Certificate", offset: 0, "not one DER SEQUENCE")
        }
        let end = certificate.content.upperBound
        let tbs = try DERCertificate.element(der, at: certificate.content.lowerBound, end: end)
        let algorithm = try DERCertificate.element(der, at: tbs.whole.upperBound, end: end)
        let signature = try DERCertificate.element(der, at: algorithm.whole.upperBound, end: end)
        guard tbs.tag == 0x30, algorithm.tag == 0x30, signature.tag == 0x03, signature.whole.upperBound == end,
            signature.content.count >= 2, der[signature.content.lowerBound] == 0
        else {
            throw BinaryFormatError(
                .invalidValue, field: "Certificate", offset: 0, "not tbsCertificate, algorithm, BIT STRING signature")
        }
        let oid = try DERCertificate.element(der, at: algorithm.content.lowerBound, end: algorithm.content.upperBound)
        guard oid.tag == 0x06 else {
            throw BinaryFormatError(.invalidValue, field: "signatureAlgorithm", offset: oid.whole.lowerBound, "no OID")
        }
        return Parts(
            tbs: der[tbs.whole], algorithm: der[oid.whole],
            signature: der[(signature.content.lowerBound + 1)..<signature.content.upperBound])
    }

    /// Whether `certificate` carries a valid signature by the key in `issuerKeyInfo` (a SubjectPublicKeyInfo).
    /// Any other algorithm, a key of the wrong type or a malformed signature is a failure, never a pass.
    static func isSigned(_ certificate: [UInt8], by issuerKeyInfo: [UInt8]) -> Bool {
        guard let parts = try? parts(certificate) else { return false }
        if parts.algorithm.elementsEqual(ecdsaWithSHA256) {
            guard let key = try? P256.Signing.PublicKey(derRepresentation: issuerKeyInfo),
                let signature = try? P256.Signing.ECDSASignature(derRepresentation: parts.signature)
            else { return false }
            return key.isValidSignature(signature, for: parts.tbs)
        }
        if parts.algorithm.elementsEqual(rsassaPSS) {
            guard let key = try? _RSA.Signing.PublicKey(derRepresentation: issuerKeyInfo) else { return false }
            let signature = _RSA.Signing.RSASignature(rawRepresentation: parts.signature)
            return key.isValidSignature(signature, for: SHA384.hash(data: parts.tbs), padding: .PSS)
        }
        return false
    }

    /// Checks `chain` (leaf first, root last): each certificate is signed by the next, the root by itself. Returns the
    /// leaf's SubjectPublicKeyInfo; throws a sentence naming the first link that fails.
    static func verifyChain(_ chain: [[UInt8]], names: [String]) throws(GuestEvidenceError) -> [UInt8] {
        guard chain.count == names.count, let root = chain.last else {
            throw GuestEvidenceError("the certificate chain has \(chain.count) certificates, not \(names.count)")
        }
        var keys: [[UInt8]] = []
        for (certificate, name) in zip(chain, names) {
            do {
                keys.append(try DERCertificate.subjectPublicKeyInfo(certificate))
            } catch {
                throw GuestEvidenceError("the \(name) certificate cannot be read: \(error)")
            }
        }
        for index in chain.indices {
            let issuer = index + 1 < chain.count ? index + 1 : index
            guard isSigned(chain[index], by: keys[issuer]) else {
                throw GuestEvidenceError(
                    index == issuer
                        ? "the \(names[index]) certificate is not self-signed"
                        : "the \(names[index]) certificate is not signed by the \(names[issuer]) key")
            }
        }
        _ = root
        return keys[0]
    }
}

/// Why a piece of evidence fails one of the child's own checks: a sentence; the caller chooses the channel error code.
struct GuestEvidenceError: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// RFC 7468 PEM: the CERTIFICATE blocks of a text, base64-decoded (RFC 4648, strict: no stray characters).
enum GuestPEM {
    static func certificates(_ text: ArraySlice<UInt8>) throws(GuestEvidenceError) -> [[UInt8]] {
        let begin = Array("-----BEGIN CERTIFICATE-----".utf8)
        let end = Array("-----END CERTIFICATE-----".utf8)
        var result: [[UInt8]] = []
        var index = text.startIndex
        func find(_ marker: [UInt8], from start: Int) -> Int? {
            guard text.endIndex - start >= marker.count else { return nil }
            var position = start
            while position + marker.count <= text.endIndex {
                if text[position..<(position + marker.count)].elementsEqual(marker) { return position }
                position += 1
            }
            return nil
        }
        while let start = find(begin, from: index) {
            let bodyStart = start + begin.count
            guard let stop = find(end, from: bodyStart) else {
                throw GuestEvidenceError("a PEM CERTIFICATE block is not closed")
            }
            result.append(try base64(text[bodyStart..<stop]))
            index = stop + end.count
        }
        return result
    }

    static func base64(_ text: ArraySlice<UInt8>) throws(GuestEvidenceError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text {
            let value: UInt32
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = UInt32(byte - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt32(byte - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="):
                padding += 1
                continue
            case 0x20, 0x09, 0x0A, 0x0D: continue
            default: throw GuestEvidenceError("a PEM block holds a byte that is not base64")
            }
            guard padding == 0 else { throw GuestEvidenceError("base64 continues after its padding") }
            accumulator = accumulator << 6 | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        guard padding <= 2, accumulator == 0 else { throw GuestEvidenceError("a PEM block's base64 is malformed") }
        return output
    }
}
