public import SEVSNP
import SwiftASN1

/// The AMD extensions of a VCEK or VLEK certificate (AMD "Versioned Chip Endorsement Key (VCEK)
/// Certificate and KDS Interface Specification" #57230, Table 8; OID arc 1.3.6.1.4.1.3704.1).
///
/// Every SPL must be a DER INTEGER from 0 to 255; hwID is raw bytes (no DER wrapper), 64 bytes on
/// Milan and Genoa and 8 on Turin; an extension under AMD's arc that cmk does not know is an error.
public struct VCEKExtensions: Sendable, Hashable, Codable {
    public let structVersion: Int
    public let productName: String
    public let bootloaderSPL: UInt8
    public let teeSPL: UInt8
    public let snpSPL: UInt8
    /// spl_4 (absent on Turin), spl_5, spl_6, spl_7: reserved levels, zero in every certificate seen.
    public let spl4: UInt8?
    public let spl5: UInt8
    public let spl6: UInt8
    public let spl7: UInt8
    public let microcodeSPL: UInt8
    /// fmcSPL (Turin only).
    public let fmcSPL: UInt8?
    /// hwID: the chip id (VCEK only).
    public let hardwareID: [UInt8]?
    /// cspID: the cloud provider a VLEK was issued to (VLEK only).
    public let cspID: String?

    /// The TCB the certificate was issued for.
    public var tcb: SNPTCBVersion.Components {
        .init(fmc: fmcSPL, bootloader: bootloaderSPL, tee: teeSPL, snp: snpSPL, microcode: microcodeSPL)
    }

    enum OID {
        static let arcPrefix = "1.3.6.1.4.1.3704.1."
        static let structVersion: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 1]
        static let productName: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 2]
        static let spls: [ASN1ObjectIdentifier] = [
            [1, 3, 6, 1, 4, 1, 3704, 1, 3, 1], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 2], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 3],
            [1, 3, 6, 1, 4, 1, 3704, 1, 3, 4], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 5], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 6],
            [1, 3, 6, 1, 4, 1, 3704, 1, 3, 7], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 8], [1, 3, 6, 1, 4, 1, 3704, 1, 3, 9],
        ]
        /// blSPL = spl(1) ... fmcSPL = spl(9).
        static func spl(_ n: Int) -> ASN1ObjectIdentifier { spls[n - 1] }
        static let hwID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 4]
        static let cspID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 5]
    }

    /// Reads the extensions of `certificate`.
    public init(certificate: AttestationCertificate) throws(AttestationError) {
        let known: Set<String> = Set(
            [OID.structVersion, OID.productName, OID.hwID, OID.cspID].map(\.description)
                + OID.spls.map(\.description))
        for ext in certificate.extensions {
            if ext.oid.description.hasPrefix(OID.arcPrefix), !known.contains(ext.oid.description) {
                throw AttestationError(.endorsementExtension, "unknown AMD extension \(ext.oid) in the endorsement certificate")
            }
        }
        func value(_ oid: ASN1ObjectIdentifier) -> [UInt8]? { certificate.extension(oid)?.value }
        func integer(_ oid: ASN1ObjectIdentifier, _ name: String) throws(AttestationError) -> UInt8? {
            guard let bytes = value(oid) else { return nil }
            // DER INTEGER 0...255: 02 01 xx (xx < 0x80) or 02 02 00 xx (xx >= 0x80).
            if bytes.count == 3, bytes[0] == 0x02, bytes[1] == 0x01, bytes[2] < 0x80 { return bytes[2] }
            if bytes.count == 4, bytes[0] == 0x02, bytes[1] == 0x02, bytes[2] == 0x00, bytes[3] >= 0x80 { return bytes[3] }
            throw AttestationError(.endorsementExtension, "\(name) is not a DER INTEGER from 0 to 255")
        }
        func required(_ oid: ASN1ObjectIdentifier, _ name: String) throws(AttestationError) -> UInt8 {
            guard let value = try integer(oid, name) else {
                throw AttestationError(.endorsementExtension, "the endorsement certificate has no \(name) extension")
            }
            return value
        }
        func ia5(_ oid: ASN1ObjectIdentifier, _ name: String) throws(AttestationError) -> String? {
            guard let bytes = value(oid) else { return nil }
            do {
                return String(try ASN1IA5String(derEncoded: bytes))
            } catch {
                throw AttestationError(.endorsementExtension, "\(name) is not a DER IA5String")
            }
        }
        guard let version = try integer(OID.structVersion, "structVersion") else {
            throw AttestationError(.endorsementExtension, "the endorsement certificate has no structVersion extension")
        }
        structVersion = Int(version)
        guard let name = try ia5(OID.productName, "productName") else {
            throw AttestationError(.endorsementExtension, "the endorsement certificate has no productName extension")
        }
        productName = name
        bootloaderSPL = try required(OID.spl(1), "blSPL")
        teeSPL = try required(OID.spl(2), "teeSPL")
        snpSPL = try required(OID.spl(3), "snpSPL")
        spl4 = try integer(OID.spl(4), "spl_4")
        spl5 = try integer(OID.spl(5), "spl_5") ?? 0
        spl6 = try integer(OID.spl(6), "spl_6") ?? 0
        spl7 = try integer(OID.spl(7), "spl_7") ?? 0
        microcodeSPL = try required(OID.spl(8), "ucodeSPL")
        fmcSPL = try integer(OID.spl(9), "fmcSPL")
        hardwareID = value(OID.hwID)
        cspID = try ia5(OID.cspID, "cspID")
        if let hardwareID, hardwareID.count != 64 && hardwareID.count != 8 {
            throw AttestationError(.endorsementExtension, "hwID has \(hardwareID.count) bytes; AMD issues 64 (Milan, Genoa) or 8 (Turin)")
        }
    }
}
