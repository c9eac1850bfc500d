public import BinaryFormat
import SwiftASN1

/// The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1; Intel "SGX PCK Certificate and
/// Certificate Revocation List Profile Specification", §1.3.5): what the platform's TCB was when Intel issued
/// the certificate. TCB matching uses these component SVNs and PCESVN, never the CPUSVN bytes of a report.
public struct PCKExtensions: Sendable, Hashable, Codable {
    public let ppid: HexBytes
    /// SGX TCB component SVNs comp01..comp16.
    public let sgxTCBComponents: [UInt8]
    public let pceSVN: UInt16
    public let cpuSVN: HexBytes
    public let pceID: HexBytes
    public let fmspc: HexBytes
    /// 0 Standard, 1 Scalable, 2 Scalable with integrity.
    public let sgxType: Int
    /// Platform CA certificates only.
    public let platformInstanceID: HexBytes?
    public let dynamicPlatform: Bool?
    public let cachedKeys: Bool?
    public let smtEnabled: Bool?

    static let sgxExtensionsOID: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1]
    static let prefix = "1.2.840.113741.1.13.1."

    /// Reads the SGX extension of a PCK leaf certificate; every field Intel defines as mandatory must be present.
    public init(certificate: AttestationCertificate) throws(AttestationError) {
        guard let ext = certificate.extension(Self.sgxExtensionsOID) else {
            throw AttestationError(.endorsementExtension, "the PCK certificate has no SGX extension (\(Self.sgxExtensionsOID))")
        }
        do {
            var fields: [String: ASN1Node] = [:]
            try DER.sequence(try DER.parse(ext.value), identifier: .sequence) { nodes in
                while let item = nodes.next() {
                    try DER.sequence(item, identifier: .sequence) { pair in
                        let oid = try ASN1ObjectIdentifier(derEncoded: &pair)
                        guard let value = pair.next(), pair.next() == nil else {
                            throw AttestationError(.endorsementExtension, "SGX extension entry \(oid) is not {OID, value}")
                        }
                        let key = String(oid.description.dropFirst(Self.prefix.count))
                        guard oid.description.hasPrefix(Self.prefix), fields[key] == nil else {
                            throw AttestationError(.endorsementExtension, "SGX extension entry \(oid) is foreign or repeated")
                        }
                        fields[key] = value
                    }
                }
            }
            func octets(_ key: String, _ name: String, size: Int) throws -> HexBytes {
                guard let node = fields[key] else { throw AttestationError(.endorsementExtension, "the SGX extension has no \(name)") }
                let bytes = Array(try ASN1OctetString(derEncoded: node).bytes)
                guard bytes.count == size else {
                    throw AttestationError(.endorsementExtension, "SGX \(name) has \(bytes.count) bytes, not \(size)")
                }
                return HexBytes(bytes)
            }
            ppid = try octets("1", "PPID", size: 16)
            pceID = try octets("3", "PCE-ID", size: 2)
            fmspc = try octets("4", "FMSPC", size: 6)
            guard let typeNode = fields["5"] else { throw AttestationError(.endorsementExtension, "the SGX extension has no SGX type") }
            sgxType = try Int(derEncoded: typeNode, withIdentifier: .enumerated)
            platformInstanceID = fields["6"] == nil ? nil : try octets("6", "PlatformInstanceID", size: 16)
            guard let tcbNode = fields["2"] else { throw AttestationError(.endorsementExtension, "the SGX extension has no TCB") }
            var components = [UInt8?](repeating: nil, count: 16)
            var pce: UInt16?
            var cpu: HexBytes?
            try DER.sequence(tcbNode, identifier: .sequence) { nodes in
                while let item = nodes.next() {
                    try DER.sequence(item, identifier: .sequence) { pair in
                        let oid = try ASN1ObjectIdentifier(derEncoded: &pair)
                        guard let value = pair.next() else { throw AttestationError(.endorsementExtension, "TCB entry \(oid) has no value") }
                        let suffix = oid.description.dropFirst((Self.prefix + "2.").count)
                        guard oid.description.hasPrefix(Self.prefix + "2."), let index = Int(suffix) else {
                            throw AttestationError(.endorsementExtension, "unexpected TCB entry \(oid)")
                        }
                        switch index {
                        case 1...16:
                            let svn = try Int(derEncoded: value)
                            guard (0...255).contains(svn), components[index - 1] == nil else {
                                throw AttestationError(.endorsementExtension, "SGX TCB comp\(index) SVN \(svn) is out of range or repeated")
                            }
                            components[index - 1] = UInt8(svn)
                        case 17:
                            let svn = try Int(derEncoded: value)
                            guard (0...0xFFFF).contains(svn) else { throw AttestationError(.endorsementExtension, "PCESVN \(svn) is out of range") }
                            pce = UInt16(svn)
                        case 18:
                            let bytes = Array(try ASN1OctetString(derEncoded: value).bytes)
                            guard bytes.count == 16 else { throw AttestationError(.endorsementExtension, "CPUSVN is not 16 bytes") }
                            cpu = HexBytes(bytes)
                        default:
                            throw AttestationError(.endorsementExtension, "unexpected TCB entry \(oid)")
                        }
                    }
                }
            }
            guard components.allSatisfy({ $0 != nil }), let pce, let cpu else {
                throw AttestationError(.endorsementExtension, "the SGX TCB lacks component SVNs, PCESVN or CPUSVN")
            }
            sgxTCBComponents = components.compactMap { $0 }
            pceSVN = pce
            cpuSVN = cpu
            var configuration: [String: Bool] = [:]
            if let node = fields["7"] {
                try DER.sequence(node, identifier: .sequence) { nodes in
                    while let item = nodes.next() {
                        try DER.sequence(item, identifier: .sequence) { pair in
                            let oid = try ASN1ObjectIdentifier(derEncoded: &pair)
                            guard let value = pair.next() else { return }
                            configuration[String(oid.description.dropFirst((Self.prefix + "7.").count))] = try Bool(derEncoded: value)
                        }
                    }
                }
            }
            dynamicPlatform = configuration["1"]
            cachedKeys = configuration["2"]
            smtEnabled = configuration["3"]
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.endorsementExtension, "the SGX extension is not valid DER: \(error)")
        }
    }
}
