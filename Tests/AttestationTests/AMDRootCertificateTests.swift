import Attestation
import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import SEVSNP
import Testing

@Suite("AMD roots through OpenSSL RSA-PSS")
struct AMDRootCertificateTests {
    static func certificate(_ name: String) throws -> AttestationCertificate {
        try AttestationCertificate(pem: try SharedVectors.text("snp/roots/\(name).pem"))
    }

    static func roots(_ product: AMDProduct) throws -> AMDRootCertificates {
        let prefix = product.rawValue.lowercased()
        return AMDRootCertificates(
            product: product, ark: try certificate("\(prefix)_ark"), ask: try certificate("\(prefix)_ask"),
            asvk: try certificate("\(prefix)_asvk"))
    }

    static let now = Date(timeIntervalSince1970: 1_790_000_000)  // 2026-09

    @Test("each ARK is self-signed and signs its ASK and ASVK with RSA-PSS SHA-384 salt 48", arguments: AMDProduct.allCases)
    func rootsVerify(product: AMDProduct) throws {
        let roots = try Self.roots(product)
        try roots.verify(at: Self.now)
        #expect(roots.ark.signatureAlgorithm == .rsaPSS(.amdSEV))
        #expect(try roots.ark.rsaKeyBits() == 4096)
    }

    @Test("parsed names, serials, validity and fingerprints match the vectors' expected.json", arguments: AMDProduct.allCases)
    func fieldsMatchExpected(product: AMDProduct) throws {
        let expected = try #require(try SharedVectors.json("snp/roots/expected.json")["certificates"] as? [String: [String: Any]])
        for role in ["ark", "ask", "asvk"] {
            let name = "\(product.rawValue.lowercased())_\(role)"
            let reference = try #require(expected["\(name).pem"])
            let certificate = try Self.certificate(name)
            #expect(certificate.subjectCommonName == reference["subject_cn"] as? String)
            #expect(certificate.issuerCommonName == reference["issuer_cn"] as? String)
            #expect("0x" + Hex.encode(certificate.serialNumber).drop(while: { $0 == "0" }) == reference["serial"] as? String)
            let formatter = ISO8601DateFormatter()
            let notBefore = try #require((reference["not_before"] as? String).flatMap { formatter.date(from: $0) })
            let notAfter = try #require((reference["not_after"] as? String).flatMap { formatter.date(from: $0) })
            #expect(certificate.notBefore == notBefore)
            #expect(certificate.notAfter == notAfter)
            #expect(Hex.encode(SHA256Digest.of(certificate.der)) == reference["sha256_der"] as? String)
        }
    }

    @Test("a single flipped bit in any ARK signature is rejected", arguments: AMDProduct.allCases)
    func flippedSignatureBit(product: AMDProduct) throws {
        let ark = try Self.roots(product).ark
        for bit in stride(from: 0, to: ark.der.count * 8, by: 997) {
            var der = ark.der
            der[bit / 8] ^= 1 << UInt8(bit % 8)
            guard let mutated = try? AttestationCertificate(der: der) else { continue }  // unparseable: also rejected
            #expect(throws: AttestationError.self, "bit \(bit)") { try mutated.verifySignature(issuedBy: mutated) }
        }
        // Flip a bit inside the signature value itself (its last byte) and inside the signed TBS bytes.
        var signatureFlip = ark.der
        signatureFlip[signatureFlip.count - 1] ^= 0x01
        let badSignature = try AttestationCertificate(der: signatureFlip)
        #expect { try badSignature.verifySignature(issuedBy: badSignature) } throws: {
            ($0 as? AttestationError)?.code == .badSignature
        }
    }

    @Test("an ASK under another product's ARK is rejected")
    func wrongProductRoot() throws {
        let milanASK = try Self.certificate("milan_ask")
        let genoaARK = try Self.certificate("genoa_ark")
        #expect { try milanASK.verifySignature(issuedBy: genoaARK) } throws: {
            ($0 as? AttestationError)?.code == .issuerMismatch
        }
        let mixed = AMDRootCertificates(product: .genoa, ark: genoaARK, ask: milanASK, asvk: nil)
        #expect(throws: AttestationError.self) { try mixed.verify(at: Self.now) }
    }

    @Test("RSA-PSS parameters other than AMD's are refused before any signature math")
    func requiredParameters() throws {
        let ark = try Self.certificate("turin_ark")
        let other = CertificateSignatureAlgorithm.rsaPSS(RSAPSSParameters(hash: .sha384, mgf1Hash: .sha384, saltLength: 32))
        #expect { try ark.verifySignature(issuedBy: ark, requiredAlgorithm: other) } throws: {
            ($0 as? AttestationError)?.code == .unsupportedSignatureAlgorithm
        }
    }

    @Test("validity is checked at the explicit validation time")
    func validityWindow() throws {
        let roots = try Self.roots(.milan)
        #expect { try roots.verify(at: Date(timeIntervalSince1970: 1_500_000_000)) } throws: {
            ($0 as? AttestationError)?.code == .certificateNotYetValid
        }
        #expect { try roots.verify(at: Date(timeIntervalSince1970: 2_500_000_000)) } throws: {
            ($0 as? AttestationError)?.code == .certificateExpired
        }
    }

    @Test("garbage, PEM where DER is expected, and truncated DER are malformed-certificate errors")
    func badInput() throws {
        let der = try Self.certificate("milan_ark").der
        let pemBytes = Array(try SharedVectors.text("snp/roots/milan_ark.pem").utf8)
        for input in [[], [0x30], pemBytes, Array(der.prefix(der.count / 2)), der + [0]] {
            #expect { try AttestationCertificate(der: input) } throws: {
                ($0 as? AttestationError)?.code == .malformedCertificate
            }
        }
    }

    @Test("a certificate reused by its DER is the one parsed; a changed byte is parsed afresh; bad DER fails every time")
    func reusedParses() throws {
        let der = try Self.certificate("genoa_ask").der
        let first = try AttestationCertificate.reusing(der: der)
        #expect(first == (try AttestationCertificate(der: der)))
        #expect(try AttestationCertificate.reusing(der: der) == first)
        // One bit of the signature changed: another certificate, parsed from its own bytes (and not verifying).
        var flipped = der
        flipped[flipped.count - 1] ^= 0x01
        let other = try AttestationCertificate.reusing(der: flipped)
        #expect(other.der == flipped && other.signature != first.signature && other.fingerprint != first.fingerprint)
        for _ in 0..<2 {
            #expect { try AttestationCertificate.reusing(der: der + [0]) } throws: {
                ($0 as? AttestationError)?.code == .malformedCertificate
            }
        }
    }
}

/// SHA-256 for fingerprint checks, through the same swift-crypto the store uses.
enum SHA256Digest {
    static func of(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
}
