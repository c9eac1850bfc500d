public import Foundation
public import X509
public import SwiftASN1
import Crypto
import Synchronization

/// An X.509 certificate as attestation chains carry it (RFC 5280 §4.1), with the exact signed bytes kept.
///
/// swift-certificates does not read RSA-PSS-signed certificates, and every AMD SEV certificate is one,
/// so cmk reads the outer structure and the TBSCertificate itself with swift-asn1 and borrows only
/// swift-certificates' `DistinguishedName`. What is verified is what was received: ``tbsBytes`` is the
/// DER of the TBSCertificate exactly as it arrived.
public struct AttestationCertificate: Sendable, Hashable {
    /// One extension (RFC 5280 §4.1.2.9): its OID, criticality and the contents of extnValue.
    public struct Extension: Sendable, Hashable {
        public let oid: ASN1ObjectIdentifier
        public let isCritical: Bool
        public let value: [UInt8]
    }

    /// The whole certificate, DER.
    public let der: [UInt8]
    /// The DER of the TBSCertificate: the bytes the issuer signed.
    public let tbsBytes: [UInt8]
    /// The signature algorithm (outer and inner identifiers are required to be equal).
    public let signatureAlgorithm: CertificateSignatureAlgorithm
    /// The signature value (BIT STRING contents).
    public let signature: [UInt8]
    /// X.509 version number (3 for v3).
    public let version: Int
    /// The serial number's big-endian bytes as encoded.
    public let serialNumber: [UInt8]
    public let issuer: DistinguishedName
    public let subject: DistinguishedName
    public let notBefore: Date
    public let notAfter: Date
    /// The DER of the SubjectPublicKeyInfo.
    public let subjectPublicKeyInfo: [UInt8]
    public let extensions: [Extension]
    /// SHA-256 of ``der``: the certificate's identity in caches and audit records.
    public let fingerprint: [UInt8]
    /// The subject's common name, if it has one.
    public let subjectCommonName: String?
    /// The issuer's common name, if it has one.
    public let issuerCommonName: String?

    /// ``init(der:)`` for certificates that come again and again (a relying party sends its VCEK, ASK and ARK
    /// with every report): the parsed form is kept by its exact DER bytes, so a certificate seen before is not
    /// parsed again. Bounded (emptied when full); what fails to parse is never kept and fails each time.
    public static func reusing(der: [UInt8]) throws(AttestationError) -> AttestationCertificate {
        if let known = ParsedCertificates.shared.entries.withLock({ $0[der] }) { return known }
        let parsed = try AttestationCertificate(der: der)
        ParsedCertificates.shared.entries.withLock { entries in
            if entries.count >= ParsedCertificates.capacity { entries.removeAll() }
            entries[der] = parsed
        }
        return parsed
    }

    /// Parses a DER certificate; rejects trailing bytes, unknown signature algorithms and
    /// mismatched inner/outer algorithm identifiers.
    public init(der: [UInt8]) throws(AttestationError) {
        guard !der.isEmpty else { throw AttestationError(.malformedCertificate, "the certificate is empty") }
        let root: ASN1Node
        do {
            root = try DER.parse(der)
        } catch {
            throw AttestationError(.malformedCertificate, "not a DER certificate: \(error)")
        }
        var tbsNode: ASN1Node?
        var outerAlgorithmNode: ASN1Node?
        var signatureBits: ASN1BitString?
        do {
            try DER.sequence(root, identifier: .sequence) { nodes in
                tbsNode = nodes.next()
                outerAlgorithmNode = nodes.next()
                if let node = nodes.next() { signatureBits = try ASN1BitString(derEncoded: node) }
                guard nodes.next() == nil else {
                    throw AttestationError(.malformedCertificate, "Certificate has more than three elements")
                }
            }
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.malformedCertificate, "Certificate: \(error)")
        }
        guard let tbsNode, let outerAlgorithmNode, let signatureBits else {
            throw AttestationError(.malformedCertificate, "Certificate needs tbsCertificate, signatureAlgorithm and signatureValue")
        }
        guard signatureBits.paddingBits == 0 else {
            throw AttestationError(.malformedCertificate, "signatureValue has \(signatureBits.paddingBits) padding bits")
        }
        self.der = der
        self.tbsBytes = Array(tbsNode.encodedBytes)
        self.signatureAlgorithm = try CertificateSignatureAlgorithm(derEncoded: outerAlgorithmNode)
        self.signature = Array(signatureBits.bytes)

        let outerAlgorithmBytes = Array(outerAlgorithmNode.encodedBytes)
        var fields: TBSFields?
        do {
            fields = try DER.sequence(tbsNode, identifier: .sequence) { nodes in
                try TBSFields(reading: &nodes, outerAlgorithmBytes: outerAlgorithmBytes)
            }
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.malformedCertificate, "TBSCertificate: \(error)")
        }
        guard let fields else { throw AttestationError(.malformedCertificate, "TBSCertificate is missing") }
        self.version = fields.version
        self.serialNumber = fields.serialNumber
        self.issuer = fields.issuer
        self.subject = fields.subject
        self.notBefore = fields.notBefore
        self.notAfter = fields.notAfter
        self.subjectPublicKeyInfo = fields.subjectPublicKeyInfo
        self.extensions = fields.extensions
        self.fingerprint = Array(SHA256.hash(data: der))
        self.subjectCommonName = Self.commonName(of: fields.subject)
        self.issuerCommonName = Self.commonName(of: fields.issuer)
    }

    /// Parses the first certificate of a PEM document.
    public init(pem: String) throws(AttestationError) {
        try self.init(der: try PEMDocuments.certificates(in: pem).first.orThrow(
            AttestationError(.malformedCertificate, "no CERTIFICATE block in the PEM text")))
    }

    /// The extension with `oid`, if present.
    public func `extension`(_ oid: ASN1ObjectIdentifier) -> Extension? {
        extensions.first(where: { $0.oid == oid })
    }

    static func commonName(of name: DistinguishedName) -> String? {
        for rdn in name {
            for attribute in rdn where attribute.type == ObjectIdentifiers.commonName {
                return String(describing: attribute.value)
            }
        }
        return nil
    }
}

/// The fields of a TBSCertificate, read in order.
private struct TBSFields {
    var version = 1
    var serialNumber: [UInt8] = []
    var issuer = DistinguishedName()
    var subject = DistinguishedName()
    var notBefore = Date.distantPast
    var notAfter = Date.distantPast
    var subjectPublicKeyInfo: [UInt8] = []
    var extensions: [AttestationCertificate.Extension] = []

    init(reading nodes: inout ASN1NodeCollection.Iterator, outerAlgorithmBytes: [UInt8]) throws {
        let declaredVersion = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) {
            try Int(derEncoded: $0)
        }
        version = (declaredVersion ?? 0) + 1
        guard (1...3).contains(version) else {
            throw AttestationError(.malformedCertificate, "unknown X.509 version \(version)")
        }
        guard let serialNode = nodes.next(), serialNode.identifier == .integer,
            case .primitive(let serialBytes) = serialNode.content
        else { throw AttestationError(.malformedCertificate, "serialNumber is missing") }
        serialNumber = Array(serialBytes)
        guard let innerAlgorithm = nodes.next() else {
            throw AttestationError(.malformedCertificate, "TBSCertificate.signature is missing")
        }
        guard Array(innerAlgorithm.encodedBytes) == outerAlgorithmBytes else {
            throw AttestationError(
                .malformedCertificate, "TBSCertificate.signature differs from Certificate.signatureAlgorithm (RFC 5280 §4.1.1.2)")
        }
        issuer = try DistinguishedName(derEncoded: &nodes)
        guard let validity = nodes.next() else { throw AttestationError(.malformedCertificate, "validity is missing") }
        (notBefore, notAfter) = try DER.sequence(validity, identifier: .sequence) { inner in
            guard let start = inner.next(), let end = inner.next(), inner.next() == nil else {
                throw AttestationError(.malformedCertificate, "validity must hold exactly notBefore and notAfter")
            }
            return (try X509Time.read(start), try X509Time.read(end))
        }
        subject = try DistinguishedName(derEncoded: &nodes)
        guard let spki = nodes.next(), spki.identifier == .sequence else {
            throw AttestationError(.malformedCertificate, "subjectPublicKeyInfo is missing")
        }
        subjectPublicKeyInfo = Array(spki.encodedBytes)
        // issuerUniqueID [1] and subjectUniqueID [2] are implicitly tagged and carry nothing cmk uses.
        var next = nodes.next()
        while let node = next, node.identifier.tagClass == .contextSpecific, node.identifier.tagNumber == 1 || node.identifier.tagNumber == 2 {
            next = nodes.next()
        }
        if let node = next {
            guard node.identifier.tagClass == .contextSpecific, node.identifier.tagNumber == 3, version == 3 else {
                throw AttestationError(.malformedCertificate, "unexpected element \(node.identifier) in TBSCertificate")
            }
            extensions = try DER.explicitlyTagged(node, tagNumber: 3, tagClass: .contextSpecific) { sequence in
                try DER.sequence(sequence, identifier: .sequence) { items in
                    var result: [AttestationCertificate.Extension] = []
                    while let item = items.next() {
                        result.append(try Self.readExtension(item))
                    }
                    return result
                }
            }
            let oids = extensions.map(\.oid)
            guard Set(oids.map(\.description)).count == oids.count else {
                throw AttestationError(.malformedCertificate, "an extension appears twice (RFC 5280 §4.2)")
            }
        }
        guard nodes.next() == nil else {
            throw AttestationError(.malformedCertificate, "TBSCertificate has trailing elements")
        }
    }

    static func readExtension(_ node: ASN1Node) throws -> AttestationCertificate.Extension {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let oid = try ASN1ObjectIdentifier(derEncoded: &nodes)
            var critical = false
            var valueNode = nodes.next()
            if let node = valueNode, node.identifier == .boolean {
                critical = try Bool(derEncoded: node)
                valueNode = nodes.next()
            }
            guard let valueNode else { throw AttestationError(.malformedCertificate, "extension \(oid) has no value") }
            let value = try ASN1OctetString(derEncoded: valueNode)
            guard nodes.next() == nil else { throw AttestationError(.malformedCertificate, "extension \(oid) has trailing elements") }
            return .init(oid: oid, isCritical: critical, value: Array(value.bytes))
        }
    }

}

/// X.509 Time (RFC 5280 §4.1.2.5): UTCTime or GeneralizedTime, always UTC.
enum X509Time {
    static func read(_ node: ASN1Node) throws -> Date {
        let parts: (year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int)
        switch node.identifier {
        case .utcTime:
            let time = try UTCTime(derEncoded: node)
            parts = (time.year, time.month, time.day, time.hours, time.minutes, time.seconds)
        case .generalizedTime:
            let time = try GeneralizedTime(derEncoded: node)
            parts = (time.year, time.month, time.day, time.hours, time.minutes, time.seconds)
        default:
            throw AttestationError(.malformedCertificate, "validity time has tag \(node.identifier)")
        }
        // Days from the civil date (proleptic Gregorian), H. Hinnant's algorithm.
        let y = parts.month <= 2 ? parts.year - 1 : parts.year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let monthIndex = (parts.month + 9) % 12
        let dayOfYear = (153 * monthIndex + 2) / 5 + parts.day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146097 + dayOfEra - 719468
        let seconds = days * 86400 + parts.hours * 3600 + parts.minutes * 60 + parts.seconds
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}

/// Splitting PEM text into its DER blocks.
public enum PEMDocuments {
    /// Every `CERTIFICATE` block of a PEM text, decoded, in order.
    public static func certificates(in text: String) throws(AttestationError) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var body: String?
        for rawLine in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line == "-----BEGIN CERTIFICATE-----" {
                guard body == nil else { throw AttestationError(.malformedCertificate, "nested BEGIN CERTIFICATE in PEM") }
                body = ""
            } else if line == "-----END CERTIFICATE-----" {
                guard let text = body, let der = Data(base64Encoded: text) else {
                    throw AttestationError(.malformedCertificate, "PEM block is not valid base64 or has no BEGIN line")
                }
                result.append(Array(der))
                body = nil
            } else if body != nil {
                body! += line
            }
        }
        guard body == nil else { throw AttestationError(.malformedCertificate, "PEM block has no END line") }
        return result
    }
}

extension Optional {
    func orThrow<E: Error>(_ error: E) throws(E) -> Wrapped {
        guard let value = self else { throw error }
        return value
    }
}

/// The certificates ``AttestationCertificate/reusing(der:)`` parsed, by their DER bytes.
private final class ParsedCertificates: Sendable {
    static let shared = ParsedCertificates()
    static let capacity = 1024
    let entries = Mutex<[[UInt8]: AttestationCertificate]>([:])
}
