import Attestation
import AttestationPolicy
import BinaryFormat
import Foundation
import SEVSNP
import TDX

/// The body of `POST /v1/attest` (docs/api.md): evidence, the nonce from `POST /v1/challenge`, the policy to
/// appraise against, and what the evidence binds (the instance's public key, its manifest).
struct AttestRequest: Decodable, Sendable {
    struct Evidence: Decodable, Sendable {
        /// `sev-snp` or `tdx`.
        var type: String
        /// SEV-SNP: the ATTESTATION_REPORT, base64.
        var report: String?
        /// SEV-SNP: the extended report's certificate table (GUID table holding VCEK, ASK, ARK), base64.
        var certificateTable: String?
        /// SEV-SNP: the VCEK or VLEK certificate, DER, base64.
        var vcek: String?
        /// TDX: the quote, base64.
        var quote: String?
        /// TDX: the collateral, each item base64; absent items are looked up in the offline cache.
        var collateral: Collateral?
        /// TDX: the TD's CCEL event log, base64; replayed against the quote's RTMRs (`tdx.event-log`).
        var eventLog: String?

        enum CodingKeys: String, CodingKey {
            case type, report, vcek, quote, collateral
            case certificateTable = "certificate_table"
            case eventLog = "event_log"
        }
    }

    struct Collateral: Decodable, Sendable {
        var tcbInfo: String?
        var tcbInfoIssuerChain: String?
        var qeIdentity: String?
        var qeIdentityIssuerChain: String?
        var pckCRL: String?
        var rootCACRL: String?

        enum CodingKeys: String, CodingKey {
            case tcbInfo = "tcb_info"
            case tcbInfoIssuerChain = "tcb_info_issuer_chain"
            case qeIdentity = "qe_identity"
            case qeIdentityIssuerChain = "qe_identity_issuer_chain"
            case pckCRL = "pck_crl"
            case rootCACRL = "root_ca_crl"
        }
    }

    /// A vTPM quote beside the TEE evidence (the policy's `tpm:` section appraises it): each item base64.
    struct TPM: Decodable, Sendable {
        /// The marshalled TPMS_ATTEST (`tpm2_quote -m`); its extraData must be the nonce.
        var quote: String
        /// The marshalled TPMT_SIGNATURE (`tpm2_quote -s`).
        var signature: String
        /// The AK's TPM2B_PUBLIC or TPMT_PUBLIC (`tpm2_createak -u`); the TEE report's REPORT_DATA binds its SHA-256.
        var attestationKey: String
        /// The TCG crypto-agile event log that explains the quoted PCRs.
        var eventLog: String
        /// What the TPM's ActivateCredential returned for the credential `POST /v1/challenge` made with the nonce.
        var activatedSecret: String?
        /// The EK's certificate (DER), checked against the server's pinned vTPM chain (`--tpm-ek-chain`); only with
        /// `activated_secret`, whose credential names the EK it must certify.
        var ekCertificate: String?

        enum CodingKeys: String, CodingKey {
            case quote, signature
            case attestationKey = "attestation_key"
            case eventLog = "event_log"
            case activatedSecret = "activated_secret"
            case ekCertificate = "ek_certificate"
        }
    }

    var tenant: String?
    var nonce: String
    var policy: String
    var policyVersion: Int?
    var evidence: Evidence
    var tpm: TPM?
    var publicKey: String?
    var manifest: String?
    var instance: String?

    enum CodingKeys: String, CodingKey {
        case tenant, nonce, policy, evidence, manifest, instance, tpm
        case policyVersion = "policy_version"
        case publicKey = "public_key"
    }

    /// Decodes the body, or a 400 that names what is wrong and where (never echoing the evidence).
    static func decode(_ bytes: [UInt8]) throws(Problem) -> AttestRequest {
        do {
            return try JSONDecoder().decode(AttestRequest.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw Problem.badRequest("malformed-json", JSONProblem.describe(error))
        } catch {
            throw Problem.badRequest("malformed-json", "the body is not JSON")
        }
    }
}

enum JSONProblem {
    static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "the body" : "'" + codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context): "\(path(context.codingPath + [key])) is required"
        case .typeMismatch(let type, let context): "\(path(context.codingPath)) must be \(name(type))"
        case .valueNotFound(let type, let context): "\(path(context.codingPath)) must be \(name(type)), not null"
        case .dataCorrupted(let context):
            context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context.codingPath)) is not valid"
        @unknown default: "the body cannot be read"
        }
    }

    static func name(_ type: Any.Type) -> String {
        if type == String.self { return "a string" }
        if type == Int.self { return "an integer" }
        return "an object"
    }
}

/// Field decoding with a precise 400 for each kind of bad value.
enum Field {
    /// Standard or URL-safe base64, padded or not.
    static func base64(_ text: String, _ name: String) throws(Problem) -> [UInt8] {
        // ASCII text (every valid value) is normalized byte by byte; other text takes the character path below, which
        // also drops Unicode whitespace, so both accept and refuse the same values.
        if let bytes = asciiBase64(text) {
            guard let data = Data(base64Encoded: bytes), !data.isEmpty else {
                throw Problem.badRequest("bad-base64", text.isEmpty ? "'\(name)' is empty" : "'\(name)' is not base64")
            }
            return [UInt8](data)
        }
        var normalized = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        normalized = normalized.filter { !$0.isWhitespace }
        while normalized.count % 4 != 0 { normalized += "=" }
        guard let data = Data(base64Encoded: normalized), !data.isEmpty || text.isEmpty else {
            throw Problem.badRequest("bad-base64", "'\(name)' is not base64")
        }
        guard !data.isEmpty else { throw Problem.badRequest("bad-base64", "'\(name)' is empty") }
        return [UInt8](data)
    }

    /// Standard padded base64 of ASCII `text`: URL-safe digits mapped, ASCII whitespace dropped, padding added; nil
    /// when the text is not all ASCII.
    static func asciiBase64(_ text: String) -> Data? {
        var text = text
        return text.withUTF8 { source -> Data? in
            var bytes = [UInt8]()
            bytes.reserveCapacity(source.count + 3)
            for byte in source {
                switch byte {
                case 0x80...: return nil
                case UInt8(ascii: "-"): bytes.append(UInt8(ascii: "+"))
                case UInt8(ascii: "_"): bytes.append(UInt8(ascii: "/"))
                case 0x09...0x0D, 0x20: continue  // the ASCII characters Character.isWhitespace accepts
                default: bytes.append(byte)
                }
            }
            while bytes.count % 4 != 0 { bytes.append(UInt8(ascii: "=")) }
            return Data(bytes)
        }
    }

    static func optionalBase64(_ text: String?, _ name: String) throws(Problem) -> [UInt8]? {
        guard let text else { return nil }
        return try base64(text, name)
    }

    /// The nonce as issued: 64 lower- or upper-case hex digits.
    static func nonce(_ text: String) throws(Problem) -> [UInt8] {
        guard text.utf8.count == 2 * ChallengeIssuer.nonceSize, let bytes = Hex.decode(text) else {
            throw Problem.badRequest(
                "bad-nonce", "'nonce' must be the \(2 * ChallengeIssuer.nonceSize) hex digits POST /v1/challenge returned")
        }
        return bytes
    }
}

extension AttestRequest {
    /// The evidence as the appraiser takes it; sizes and formats checked here so each fault is its own 4xx.
    func presentedEvidence() throws(Problem) -> PresentedEvidence {
        switch evidence.type {
        case "sev-snp":
            guard let reportText = evidence.report else {
                throw Problem.badRequest("malformed-json", "'evidence.report' is required for sev-snp evidence")
            }
            if evidence.quote != nil || evidence.collateral != nil || evidence.eventLog != nil {
                throw Problem.badRequest(
                    "malformed-json", "sev-snp evidence has no 'quote', 'collateral' or 'event_log'; send 'report'")
            }
            let report = try Field.base64(reportText, "evidence.report")
            guard report.count == SNPReport.Layout.size else {
                throw Problem.badRequest(
                    "report-size", "'evidence.report' is \(report.count) bytes; an SEV-SNP report is \(SNPReport.Layout.size)")
            }
            let table = try Field.optionalBase64(evidence.certificateTable, "evidence.certificate_table")
            let endorsement: AttestationCertificate?
            if let der = try Field.optionalBase64(evidence.vcek, "evidence.vcek") {
                do {
                    endorsement = try AttestationCertificate.reusing(der: der)
                } catch {
                    throw Problem.unprocessable("bad-certificate", "'evidence.vcek' is not a DER certificate: \(error.reason)")
                }
            } else {
                endorsement = nil
            }
            if table != nil, endorsement != nil {
                throw Problem.badRequest("malformed-json", "send either 'evidence.certificate_table' or 'evidence.vcek', not both")
            }
            return .snp(report: report, certificateTable: table, endorsement: endorsement, chain: [])
        case "tdx":
            guard let quoteText = evidence.quote else {
                throw Problem.badRequest("malformed-json", "'evidence.quote' is required for tdx evidence")
            }
            if evidence.report != nil || evidence.vcek != nil || evidence.certificateTable != nil {
                throw Problem.badRequest("malformed-json", "tdx evidence has no 'report', 'vcek' or 'certificate_table'; send 'quote'")
            }
            let quote = try Field.base64(quoteText, "evidence.quote")
            guard quote.count >= 48 else {
                throw Problem.badRequest("quote-size", "'evidence.quote' is \(quote.count) bytes, shorter than a TDX quote header")
            }
            return .tdx(
                quote: quote, collateral: try collateral(),
                eventLog: try Field.optionalBase64(evidence.eventLog, "evidence.event_log"))
        default:
            throw Problem.badRequest(
                "unknown-evidence-type", "'evidence.type' must be sev-snp or tdx, not '\(TenantRegistry.printable(evidence.type))'")
        }
    }

    /// The vTPM evidence, when the request carries it; each item must be base64 (its format is the verifier's to judge).
    func presentedTPM() throws(Problem) -> TPMEvidence? {
        guard let tpm else { return nil }
        return TPMEvidence(
            quote: try Field.base64(tpm.quote, "tpm.quote"), signature: try Field.base64(tpm.signature, "tpm.signature"),
            attestationKey: try Field.base64(tpm.attestationKey, "tpm.attestation_key"),
            eventLog: try Field.base64(tpm.eventLog, "tpm.event_log"))
    }

    private func collateral() throws(Problem) -> TDXCollateral? {
        guard let given = evidence.collateral else { return nil }
        func chain(_ text: String?, _ name: String) throws(Problem) -> [AttestationCertificate] {
            guard let bytes = try Field.optionalBase64(text, name) else { return [] }
            do {
                return try PEMDocuments.certificates(in: String(decoding: bytes, as: UTF8.self)).map {
                    (der: [UInt8]) throws(AttestationError) in try AttestationCertificate(der: der)
                }
            } catch {
                throw Problem.unprocessable("bad-certificate", "'\(name)' is not a PEM certificate chain: \(error.reason)")
            }
        }
        func crl(_ text: String?, _ name: String) throws(Problem) -> CertificateRevocationList? {
            guard let bytes = try Field.optionalBase64(text, name) else { return nil }
            do {
                return try CertificateRevocationList(der: bytes)
            } catch {
                throw Problem.unprocessable("bad-crl", "'\(name)' is not a DER CRL: \(error.reason)")
            }
        }
        return TDXCollateral(
            tcbInfoJSON: try Field.optionalBase64(given.tcbInfo, "evidence.collateral.tcb_info"),
            tcbInfoIssuerChain: try chain(given.tcbInfoIssuerChain, "evidence.collateral.tcb_info_issuer_chain"),
            qeIdentityJSON: try Field.optionalBase64(given.qeIdentity, "evidence.collateral.qe_identity"),
            qeIdentityIssuerChain: try chain(given.qeIdentityIssuerChain, "evidence.collateral.qe_identity_issuer_chain"),
            pckCRL: try crl(given.pckCRL, "evidence.collateral.pck_crl"),
            rootCACRL: try crl(given.rootCACRL, "evidence.collateral.root_ca_crl"))
    }
}
