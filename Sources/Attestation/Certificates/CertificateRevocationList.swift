public import Foundation
public import X509
import SwiftASN1

/// An X.509 CRL (RFC 5280 §5) as AMD KDS and Intel PCS publish them, with the exact signed bytes kept.
public struct CertificateRevocationList: Sendable, Hashable {
    public let der: [UInt8]
    /// The DER of TBSCertList: the bytes the issuer signed.
    public let tbsBytes: [UInt8]
    public let signatureAlgorithm: CertificateSignatureAlgorithm
    public let signature: [UInt8]
    public let issuer: DistinguishedName
    public let thisUpdate: Date
    public let nextUpdate: Date?
    /// Serial numbers of revoked certificates, as their encoded big-endian bytes.
    public let revokedSerialNumbers: Set<[UInt8]>

    public init(der: [UInt8]) throws(AttestationError) {
        guard !der.isEmpty else { throw AttestationError(.crlInvalid, "the CRL is empty") }
        do {
            let root = try DER.parse(der)
            var parts: (tbs: ASN1Node, algorithm: ASN1Node, signature: ASN1BitString)?
            try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbs = nodes.next(), let algorithm = nodes.next(), let signatureNode = nodes.next(), nodes.next() == nil else {
                    throw AttestationError(.crlInvalid, "CertificateList must hold exactly three elements")
                }
                parts = (tbs, algorithm, try ASN1BitString(derEncoded: signatureNode))
            }
            guard let parts else { throw AttestationError(.crlInvalid, "CertificateList is empty") }
            self.der = der
            self.tbsBytes = Array(parts.tbs.encodedBytes)
            self.signatureAlgorithm = try CertificateSignatureAlgorithm(derEncoded: parts.algorithm)
            self.signature = Array(parts.signature.bytes)
            let outerAlgorithm = Array(parts.algorithm.encodedBytes)
            var issuer = DistinguishedName()
            var thisUpdate = Date.distantPast
            var nextUpdate: Date?
            var revoked = Set<[UInt8]>()
            try DER.sequence(parts.tbs, identifier: .sequence) { nodes in
                var next = nodes.next()
                if let node = next, node.identifier == .integer {
                    guard try Int(derEncoded: node) == 1 else { throw AttestationError(.crlInvalid, "CRL version is not v2") }
                    next = nodes.next()
                }
                guard let algorithm = next, Array(algorithm.encodedBytes) == outerAlgorithm else {
                    throw AttestationError(.crlInvalid, "TBSCertList.signature differs from the outer signature algorithm")
                }
                issuer = try DistinguishedName(derEncoded: &nodes)
                guard let this = nodes.next() else { throw AttestationError(.crlInvalid, "thisUpdate is missing") }
                thisUpdate = try X509Time.read(this)
                next = nodes.next()
                if let node = next, node.identifier == .utcTime || node.identifier == .generalizedTime {
                    nextUpdate = try X509Time.read(node)
                    next = nodes.next()
                }
                if let node = next, node.identifier == .sequence {
                    try DER.sequence(node, identifier: .sequence) { entries in
                        while let entry = entries.next() {
                            try DER.sequence(entry, identifier: .sequence) { fields in
                                guard let serial = fields.next(), serial.identifier == .integer,
                                    case .primitive(let bytes) = serial.content
                                else { throw AttestationError(.crlInvalid, "a revoked entry has no serial number") }
                                revoked.insert(Array(bytes))
                                while fields.next() != nil {}  // revocationDate, crlEntryExtensions
                            }
                        }
                    }
                    next = nodes.next()
                }
                if let node = next {
                    guard node.identifier.tagClass == .contextSpecific, node.identifier.tagNumber == 0 else {
                        throw AttestationError(.crlInvalid, "unexpected element in TBSCertList")
                    }
                    // crlExtensions: a critical one cmk does not understand makes the CRL unusable (RFC 5280 §5.2).
                    try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) { sequence in
                        try DER.sequence(sequence, identifier: .sequence) { items in
                            while let item = items.next() {
                                try DER.sequence(item, identifier: .sequence) { fields in
                                    let oid = try ASN1ObjectIdentifier(derEncoded: &fields)
                                    var critical = false
                                    if let flag = fields.next(), flag.identifier == .boolean {
                                        critical = try Bool(derEncoded: flag)
                                        _ = fields.next()
                                    }
                                    while fields.next() != nil {}
                                    let understood: Set<ASN1ObjectIdentifier> = [[2, 5, 29, 20], [2, 5, 29, 35]]  // CRL number, AKI
                                    if critical && !understood.contains(oid) {
                                        throw AttestationError(.crlInvalid, "the CRL has an unknown critical extension \(oid)")
                                    }
                                }
                            }
                        }
                    }
                }
                guard nodes.next() == nil else { throw AttestationError(.crlInvalid, "TBSCertList has trailing elements") }
            }
            self.issuer = issuer
            self.thisUpdate = thisUpdate
            self.nextUpdate = nextUpdate
            self.revokedSerialNumbers = revoked
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.crlInvalid, "the CRL is not valid DER: \(error)")
        }
    }

    /// Checks the CRL was signed by `issuer` (with exactly `requiredAlgorithm`, when given) and, when `time` is
    /// given, that it has not passed its nextUpdate. A CRL issued after `time` is accepted: it can only know more.
    public func verify(
        issuedBy issuerCertificate: AttestationCertificate, at time: Date?, requiredAlgorithm: CertificateSignatureAlgorithm? = nil
    ) throws(AttestationError) {
        if let requiredAlgorithm, requiredAlgorithm != signatureAlgorithm {
            throw AttestationError(.crlInvalid, "the CRL is signed with \(signatureAlgorithm); \(requiredAlgorithm) is required")
        }
        guard issuer == issuerCertificate.subject else {
            throw AttestationError(.crlInvalid, "the CRL was issued by another authority than '\(issuerCertificate.subjectCommonName ?? "?")'")
        }
        let valid: Bool
        do {
            valid = try SignatureVerification.verify(
                algorithm: signatureAlgorithm, signature: signature, message: tbsBytes,
                issuerPublicKey: issuerCertificate.subjectPublicKeyInfo)
        } catch {
            throw AttestationError(.crlInvalid, "the CRL signature cannot be checked: \(error.reason)")
        }
        guard valid else { throw AttestationError(.crlInvalid, "the CRL signature does not verify under '\(issuerCertificate.subjectCommonName ?? "?")'") }
        if let time, let nextUpdate, time > nextUpdate {
            throw AttestationError(.crlInvalid, "the CRL expired at \(nextUpdate.ISO8601Format()); fetch a current one")
        }
    }

    /// Whether `certificate` is listed.
    public func isRevoked(_ certificate: AttestationCertificate) -> Bool {
        revokedSerialNumbers.contains(certificate.serialNumber)
    }
}
