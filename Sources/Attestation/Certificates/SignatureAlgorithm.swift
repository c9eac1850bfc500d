public import SwiftASN1

/// A message digest named by an X.509 algorithm identifier.
public enum DigestAlgorithm: String, Sendable, Hashable, Codable {
    case sha256 = "SHA-256", sha384 = "SHA-384", sha512 = "SHA-512"

    init?(oid: ASN1ObjectIdentifier) {
        switch oid {
        case ObjectIdentifiers.sha256: self = .sha256
        case ObjectIdentifiers.sha384: self = .sha384
        case ObjectIdentifiers.sha512: self = .sha512
        default: return nil
        }
    }
}

/// RSASSA-PSS-params (RFC 4055 §3.1 / RFC 8017 Appendix A.2.3), fully spelled out: defaults applied.
public struct RSAPSSParameters: Sendable, Hashable, CustomStringConvertible {
    public let hash: DigestAlgorithm
    public let mgf1Hash: DigestAlgorithm
    public let saltLength: Int
    public let trailerField: Int

    public init(hash: DigestAlgorithm, mgf1Hash: DigestAlgorithm, saltLength: Int, trailerField: Int = 1) {
        self.hash = hash
        self.mgf1Hash = mgf1Hash
        self.saltLength = saltLength
        self.trailerField = trailerField
    }

    /// The parameters AMD uses for every ARK, ASK, ASVK, VCEK and VLEK signature.
    public static let amdSEV = RSAPSSParameters(hash: .sha384, mgf1Hash: .sha384, saltLength: 48)

    public var description: String { "RSA-PSS(\(hash.rawValue), MGF1-\(mgf1Hash.rawValue), salt \(saltLength))" }
}

/// The signature algorithms cmk verifies on certificates. Anything else is rejected when parsed.
public enum CertificateSignatureAlgorithm: Sendable, Hashable, CustomStringConvertible {
    case rsaPSS(RSAPSSParameters)
    case ecdsaWithSHA256
    case ecdsaWithSHA384
    /// RSASSA-PKCS1-v1_5 (sha256WithRSAEncryption ...): what swtpm's local CA signs vTPM EK certificates with. Every
    /// AMD and Intel chain names its required algorithm, so accepting it here widens none of them.
    case rsaPKCS1(DigestAlgorithm)

    public var description: String {
        switch self {
        case .rsaPKCS1(let hash): "RSA-PKCS1-\(hash.rawValue)"
        case .rsaPSS(let parameters): parameters.description
        case .ecdsaWithSHA256: "ECDSA-SHA-256"
        case .ecdsaWithSHA384: "ECDSA-SHA-384"
        }
    }

    /// Reads an AlgorithmIdentifier (RFC 5280 §4.1.1.2).
    init(derEncoded node: ASN1Node) throws(AttestationError) {
        do {
            self = try DER.sequence(node, identifier: .sequence) { nodes in
                let oid = try ASN1ObjectIdentifier(derEncoded: &nodes)
                let parameters = nodes.next()
                guard nodes.next() == nil else {
                    throw AttestationError(.malformedCertificate, "AlgorithmIdentifier has trailing elements")
                }
                switch oid {
                case ObjectIdentifiers.rsassaPSS:
                    guard let parameters else {
                        throw AttestationError(.unsupportedSignatureAlgorithm, "RSA-PSS without parameters (SHA-1 defaults) is not accepted")
                    }
                    return .rsaPSS(try Self.readPSSParameters(parameters))
                case ObjectIdentifiers.sha256WithRSA, ObjectIdentifiers.sha384WithRSA, ObjectIdentifiers.sha512WithRSA:
                    // RFC 4055 §5: the parameters are NULL (or absent).
                    if let parameters, parameters.identifier != .null {
                        throw AttestationError(.malformedCertificate, "an RSA PKCS #1 AlgorithmIdentifier carries parameters")
                    }
                    switch oid {
                    case ObjectIdentifiers.sha256WithRSA: return .rsaPKCS1(.sha256)
                    case ObjectIdentifiers.sha384WithRSA: return .rsaPKCS1(.sha384)
                    default: return .rsaPKCS1(.sha512)
                    }
                case ObjectIdentifiers.ecdsaWithSHA256, ObjectIdentifiers.ecdsaWithSHA384:
                    // RFC 5758 §3.2: the parameters field MUST be absent.
                    guard parameters == nil else {
                        throw AttestationError(.malformedCertificate, "ECDSA AlgorithmIdentifier must not carry parameters")
                    }
                    return oid == ObjectIdentifiers.ecdsaWithSHA256 ? .ecdsaWithSHA256 : .ecdsaWithSHA384
                default:
                    throw AttestationError(.unsupportedSignatureAlgorithm, "signature algorithm \(oid) is not accepted")
                }
            }
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.malformedCertificate, "AlgorithmIdentifier: \(error)")
        }
    }

    private static func readHashAlgorithm(_ node: ASN1Node) throws -> DigestAlgorithm {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let oid = try ASN1ObjectIdentifier(derEncoded: &nodes)
            if let parameters = nodes.next() {
                // Absent or NULL are both seen in practice.
                _ = try ASN1Null(derEncoded: parameters)
            }
            guard let digest = DigestAlgorithm(oid: oid) else {
                throw AttestationError(.unsupportedSignatureAlgorithm, "digest \(oid) is not accepted in RSA-PSS")
            }
            return digest
        }
    }

    private static func readPSSParameters(_ node: ASN1Node) throws -> RSAPSSParameters {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let hash = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) {
                try readHashAlgorithm($0)
            }
            let mgf1Hash = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 1, tagClass: .contextSpecific) { node in
                try DER.sequence(node, identifier: .sequence) { inner in
                    let oid = try ASN1ObjectIdentifier(derEncoded: &inner)
                    guard oid == ObjectIdentifiers.mgf1 else {
                        throw AttestationError(.unsupportedSignatureAlgorithm, "mask generation \(oid) is not MGF1")
                    }
                    guard let hashNode = inner.next() else {
                        throw AttestationError(.malformedCertificate, "MGF1 without a digest")
                    }
                    return try readHashAlgorithm(hashNode)
                }
            }
            let salt = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 2, tagClass: .contextSpecific) {
                try Int(derEncoded: $0)
            }
            let trailer = try DER.optionalExplicitlyTagged(&nodes, tagNumber: 3, tagClass: .contextSpecific) {
                try Int(derEncoded: $0)
            }
            guard let hash, let mgf1Hash else {
                throw AttestationError(.unsupportedSignatureAlgorithm, "RSA-PSS with the SHA-1 default digest is not accepted")
            }
            let parameters = RSAPSSParameters(hash: hash, mgf1Hash: mgf1Hash, saltLength: salt ?? 20, trailerField: trailer ?? 1)
            guard parameters.trailerField == 1, parameters.saltLength >= 0 else {
                throw AttestationError(.unsupportedSignatureAlgorithm, "RSA-PSS trailer field or salt length is invalid: \(parameters)")
            }
            return parameters
        }
    }
}

/// Object identifiers cmk recognises.
enum ObjectIdentifiers {
    static let rsassaPSS: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 10]
    static let mgf1: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 8]
    static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]
    static let sha384: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 2]
    static let sha512: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 3]
    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    static let ecdsaWithSHA384: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 3]
    static let sha256WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 11]
    static let sha384WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 12]
    static let sha512WithRSA: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 13]
    static let commonName: ASN1ObjectIdentifier = [2, 5, 4, 3]
}
