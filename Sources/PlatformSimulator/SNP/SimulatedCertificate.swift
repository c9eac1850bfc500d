import Crypto
import Foundation
import SwiftASN1

/// An X.509 v3 certificate (RFC 5280 §4.1) a simulated platform issues: the TBSCertificate encoded with swift-asn1,
/// signed over the exact TBS bytes either with RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 (AMD's parameters for the
/// ARK, ASK and VCEK) or with ECDSA P-256 / SHA-256 (Intel's for every SGX/TDX certificate).
struct SimulatedCertificate {
    /// The signature algorithm of the certificate.
    enum Algorithm {
        /// RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48 (AMD).
        case rsaPSSSHA384
        /// ecdsa-with-SHA256 (RFC 5758 §3.2; Intel SGX/TDX).
        case ecdsaSHA256
    }

    /// A distinguished name of the simulated platform: organization, organizational unit, common name (UTF8String).
    struct Name {
        var organization: String
        var organizationalUnit: String
        var commonName: String
    }

    /// One extension: OID, criticality, and the contents of extnValue.
    struct Extension {
        var oid: ASN1ObjectIdentifier
        var critical: Bool
        var value: [UInt8]
    }

    /// Positive, minimal big-endian serial number bytes.
    var serialNumber: [UInt8]
    var issuer: Name
    var subject: Name
    var notBefore: Date
    var notAfter: Date
    /// The subject's SubjectPublicKeyInfo DER.
    var subjectPublicKeyInfo: [UInt8]
    var extensions: [Extension]
    var algorithm: Algorithm = .rsaPSSSHA384

    enum OID {
        static let rsassaPSS: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 10]
        static let mgf1: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 8]
        static let sha384: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 2]
        static let organization: ASN1ObjectIdentifier = [2, 5, 4, 10]
        static let organizationalUnit: ASN1ObjectIdentifier = [2, 5, 4, 11]
        static let commonName: ASN1ObjectIdentifier = [2, 5, 4, 3]
        static let basicConstraints: ASN1ObjectIdentifier = [2, 5, 29, 19]
        static let keyUsage: ASN1ObjectIdentifier = [2, 5, 29, 15]
        static let subjectKeyIdentifier: ASN1ObjectIdentifier = [2, 5, 29, 14]
        static let authorityKeyIdentifier: ASN1ObjectIdentifier = [2, 5, 29, 35]
        static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
        static let crlNumber: ASN1ObjectIdentifier = [2, 5, 29, 20]
    }

    /// A random serial number: 16 bytes, positive, no leading zero byte.
    static func randomSerialNumber() -> [UInt8] {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = bytes[0] & 0x7F | 0x01
        return bytes
    }

    /// The whole certificate, DER, signed by `issuerKey` (RSASSA-PSS; ``algorithm`` must be `.rsaPSSSHA384`).
    func signed(by issuerKey: OpenSSLRSAPrivateKey) throws(PlatformSimulatorError) -> [UInt8] {
        guard algorithm == .rsaPSSSHA384 else {
            throw PlatformSimulatorError(.certificateEncoding, "an RSA key cannot sign an ECDSA certificate")
        }
        let tbs = try encodeTBS()
        return try Self.assemble(tbs, algorithm: algorithm, signature: try issuerKey.signRSAPSSSHA384(tbs))
    }

    /// The whole certificate, DER, signed by `issuerKey` (ECDSA P-256 SHA-256; ``algorithm`` must be
    /// `.ecdsaSHA256`): the signature is the DER Ecdsa-Sig-Value (RFC 3279 §2.2.3).
    func signed(by issuerKey: P256.Signing.PrivateKey) throws(PlatformSimulatorError) -> [UInt8] {
        guard algorithm == .ecdsaSHA256 else {
            throw PlatformSimulatorError(.certificateEncoding, "a P-256 key cannot sign an RSA-PSS certificate")
        }
        let tbs = try encodeTBS()
        return try Self.assemble(tbs, algorithm: algorithm, signature: try Self.ecdsaSignature(tbs, issuerKey))
    }

    /// An ECDSA P-256 / SHA-256 signature over `message`, DER-encoded as X.509 carries it.
    static func ecdsaSignature(
        _ message: [UInt8], _ key: P256.Signing.PrivateKey
    ) throws(PlatformSimulatorError) -> [UInt8] {
        do {
            return Array(try key.signature(for: message).derRepresentation)
        } catch {
            throw PlatformSimulatorError(.cryptoLibrary, "a simulated P-256 key could not sign: \(error)")
        }
    }

    /// SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }: a certificate or a CRL.
    static func assemble(
        _ tbs: [UInt8], algorithm: Algorithm, signature: [UInt8]
    ) throws(PlatformSimulatorError) -> [UInt8] {
        try encoding("signed structure") { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { certificate in
                certificate.serializeRawBytes(tbs)
                try appendAlgorithm(algorithm, &certificate)
                try certificate.serialize(ASN1BitString(bytes: signature[...]))
            }
        }
    }

    /// The AlgorithmIdentifier of `algorithm`: RSASSA-PSS with its parameters, or ecdsa-with-SHA256 without any.
    static func appendAlgorithm(_ algorithm: Algorithm, _ serializer: inout DER.Serializer) throws {
        switch algorithm {
        case .rsaPSSSHA384:
            try appendPSSAlgorithm(&serializer)
        case .ecdsaSHA256:
            try serializer.appendConstructedNode(identifier: .sequence) { try $0.serialize(OID.ecdsaWithSHA256) }
        }
    }

    /// The TBSCertificate DER: the bytes the signature covers.
    func encodeTBS() throws(PlatformSimulatorError) -> [UInt8] {
        try Self.encoding("TBSCertificate") { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { tbs in
                try tbs.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { version in
                    try version.serialize(2)  // v3
                }
                tbs.appendPrimitiveNode(identifier: .integer) { $0 += serialNumber }
                try Self.appendAlgorithm(algorithm, &tbs)
                try Self.appendName(issuer, &tbs)
                try tbs.appendConstructedNode(identifier: .sequence) { validity in
                    try Self.appendTime(notBefore, &validity)
                    try Self.appendTime(notAfter, &validity)
                }
                try Self.appendName(subject, &tbs)
                tbs.serializeRawBytes(subjectPublicKeyInfo)
                if !extensions.isEmpty {
                    try tbs.serialize(explicitlyTaggedWithTagNumber: 3, tagClass: .contextSpecific) { wrapper in
                        try wrapper.appendConstructedNode(identifier: .sequence) { list in
                            for ext in extensions {
                                try list.appendConstructedNode(identifier: .sequence) { item in
                                    try item.serialize(ext.oid)
                                    if ext.critical { try item.serialize(true) }
                                    try item.serialize(ASN1OctetString(contentBytes: ext.value[...]))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// RSASSA-PSS AlgorithmIdentifier (RFC 4055 §3.1): hash SHA-384, MGF1 with SHA-384, salt 48; the trailer field
    /// has its default value (1) and DER omits it.
    static func appendPSSAlgorithm(_ serializer: inout DER.Serializer) throws {
        func sha384(_ s: inout DER.Serializer) throws {
            try s.appendConstructedNode(identifier: .sequence) { algorithm in
                try algorithm.serialize(OID.sha384)
                try algorithm.serialize(ASN1Null())
            }
        }
        try serializer.appendConstructedNode(identifier: .sequence) { identifier in
            try identifier.serialize(OID.rsassaPSS)
            try identifier.appendConstructedNode(identifier: .sequence) { parameters in
                try parameters.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) {
                    try sha384(&$0)
                }
                try parameters.serialize(explicitlyTaggedWithTagNumber: 1, tagClass: .contextSpecific) { mgf in
                    try mgf.appendConstructedNode(identifier: .sequence) { inner in
                        try inner.serialize(OID.mgf1)
                        try sha384(&inner)
                    }
                }
                try parameters.serialize(explicitlyTaggedWithTagNumber: 2, tagClass: .contextSpecific) { salt in
                    try salt.serialize(48)
                }
            }
        }
    }

    /// Name ::= RDNSequence, one attribute per RDN, in the order O, OU, CN.
    static func appendName(_ name: Name, _ serializer: inout DER.Serializer) throws {
        try serializer.appendConstructedNode(identifier: .sequence) { sequence in
            for (oid, value) in [
                (OID.organization, name.organization), (OID.organizationalUnit, name.organizationalUnit),
                (OID.commonName, name.commonName),
            ] {
                try sequence.appendConstructedNode(identifier: .set) { set in
                    try set.appendConstructedNode(identifier: .sequence) { attribute in
                        try attribute.serialize(oid)
                        try attribute.serialize(ASN1UTF8String(value))
                    }
                }
            }
        }
    }

    /// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), whole seconds, UTC.
    static func appendTime(_ date: Date, _ serializer: inout DER.Serializer) throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let (year, month, day) = (c.year ?? 1970, c.month ?? 1, c.day ?? 1)
        let (hours, minutes, seconds) = (c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
        if (1950...2049).contains(year) {
            try serializer.serialize(
                UTCTime(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds))
        } else {
            try serializer.serialize(
                GeneralizedTime(
                    year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds,
                    fractionalSeconds: 0))
        }
    }

    static func encoding(
        _ what: String, _ body: (inout DER.Serializer) throws -> Void
    ) throws(PlatformSimulatorError) -> [UInt8] {
        var serializer = DER.Serializer()
        do {
            try body(&serializer)
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(.certificateEncoding, "cannot encode the \(what): \(error)")
        }
        return serializer.serializedBytes
    }
}

/// DER contents of the standard extensions the simulated CAs carry.
enum StandardExtensions {
    /// BasicConstraints: CA true, and a path length when given.
    static func basicConstraints(pathLength: Int?) -> [UInt8] {
        pathLength.map { [0x30, 0x06, 0x01, 0x01, 0xFF, 0x02, 0x01, UInt8($0)] } ?? [0x30, 0x03, 0x01, 0x01, 0xFF]
    }

    /// KeyUsage keyCertSign and cRLSign (the ARK's), as AMD encodes it: `03 02 01 06`.
    static let keyUsageCertificateAndCRLSign: [UInt8] = [0x03, 0x02, 0x01, 0x06]
    /// KeyUsage keyCertSign only (the ASK's): `03 02 02 04`.
    static let keyUsageCertificateSign: [UInt8] = [0x03, 0x02, 0x02, 0x04]
    /// KeyUsage digitalSignature and nonRepudiation (Intel's PCK and TCB Signing certificates): `03 02 06 C0`.
    static let keyUsageDigitalSignature: [UInt8] = [0x03, 0x02, 0x06, 0xC0]
    /// BasicConstraints of an end entity: CA false, which DER omits, leaving an empty SEQUENCE.
    static let basicConstraintsEndEntity: [UInt8] = [0x30, 0x00]

    /// SubjectKeyIdentifier: OCTET STRING of the 20-byte identifier.
    static func subjectKeyIdentifier(_ identifier: [UInt8]) -> [UInt8] { [0x04, UInt8(identifier.count)] + identifier }

    /// AuthorityKeyIdentifier { keyIdentifier [0] }.
    static func authorityKeyIdentifier(_ identifier: [UInt8]) -> [UInt8] {
        [0x30, UInt8(identifier.count + 2), 0x80, UInt8(identifier.count)] + identifier
    }
}

/// An X.509 v2 CRL (RFC 5280 §5.1) a simulated CA issues: issuer, thisUpdate, nextUpdate, the revoked serial numbers
/// (none, normally) and a CRL number, signed with ECDSA P-256 / SHA-256 as Intel's SGX CRLs are.
struct SimulatedCRL {
    var issuer: SimulatedCertificate.Name
    var thisUpdate: Date
    var nextUpdate: Date
    /// Revoked certificates' serial numbers (positive, minimal big-endian bytes), revoked at ``thisUpdate``.
    var revoked: [[UInt8]] = []
    var number: Int

    /// The CRL, DER, signed by `issuerKey`.
    func signed(by issuerKey: P256.Signing.PrivateKey) throws(PlatformSimulatorError) -> [UInt8] {
        let tbs = try SimulatedCertificate.encoding("TBSCertList") { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { list in
                try list.serialize(1)  // v2
                try SimulatedCertificate.appendAlgorithm(.ecdsaSHA256, &list)
                try SimulatedCertificate.appendName(issuer, &list)
                try SimulatedCertificate.appendTime(thisUpdate, &list)
                try SimulatedCertificate.appendTime(nextUpdate, &list)
                if !revoked.isEmpty {
                    try list.appendConstructedNode(identifier: .sequence) { entries in
                        for serial in revoked {
                            try entries.appendConstructedNode(identifier: .sequence) { entry in
                                entry.appendPrimitiveNode(identifier: .integer) { $0 += serial }
                                try SimulatedCertificate.appendTime(thisUpdate, &entry)
                            }
                        }
                    }
                }
                try list.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { wrapper in
                    try wrapper.appendConstructedNode(identifier: .sequence) { extensions in
                        try extensions.appendConstructedNode(identifier: .sequence) { item in
                            try item.serialize(SimulatedCertificate.OID.crlNumber)
                            var value = DER.Serializer()
                            try value.serialize(number)
                            try item.serialize(ASN1OctetString(contentBytes: value.serializedBytes[...]))
                        }
                    }
                }
            }
        }
        return try SimulatedCertificate.assemble(
            tbs, algorithm: .ecdsaSHA256, signature: try SimulatedCertificate.ecdsaSignature(tbs, issuerKey))
    }
}
