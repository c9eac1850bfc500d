public import Attestation
import BinaryFormat
import Crypto
import EventLog
import Foundation
import SEVSNP
import TDX

/// Evidence as presented, before verification: the bytes and the collateral that came with them.
public enum PresentedEvidence: Sendable {
    /// An SEV-SNP report with its endorsement: a certificate table (extended report), or a VCEK/VLEK and the
    /// chain presented with it, or nothing (then the collateral cache must hold the VCEK).
    case snp(report: [UInt8], certificateTable: [UInt8]?, endorsement: AttestationCertificate?, chain: [AttestationCertificate])
    /// A TDX quote, the collateral (TCB Info, QE Identity, CRLs) to judge it with, and the TD's CCEL event log when
    /// it came with the quote (replayed against RTMR0–3 by the `tdx.event-log` rule).
    case tdx(quote: [UInt8], collateral: TDXCollateral?, eventLog: [UInt8]? = nil)

    public var evidenceType: String {
        switch self {
        case .snp: "sev-snp"
        case .tdx: "tdx"
        }
    }

    /// The bytes the evidence digest covers.
    public var bytes: [UInt8] {
        switch self {
        case .snp(let report, _, _, _): report
        case .tdx(let quote, _, _): quote
        }
    }
}

/// The whole appraisal pipeline in one place — verify the evidence, then evaluate the policy over its claims —
/// shared by `cmk policy test`, the coordinator's admission and the verification service.
///
/// Verification failures do not throw: they become the `evidence.verified` outcome, so a denial always says why.
public struct EvidenceAppraiser: Sendable {
    public let snpVerifier: SNPVerifier
    public let tdxVerifier: TDXVerifier

    public init(trustAnchors: TrustAnchorStore, snpCollateral: SNPCollateralStore? = nil) {
        snpVerifier = SNPVerifier(trustAnchors: trustAnchors, collateral: snpCollateral)
        tdxVerifier = TDXVerifier(trustAnchors: trustAnchors)
    }

    /// Verifies `evidence` at the context's evaluation time with the policy's revocation mode and evaluates `policy`.
    public func appraise(_ evidence: PresentedEvidence, policy: Policy, context: AppraisalContext) -> Appraisal {
        policy.evaluate(input(evidence, revocation: policy.trust.crl, context: context))
    }

    /// Verifies `evidence` and the vTPM quote that came with it, then evaluates `policy`. The quote is checked against
    /// the context's nonce, the verified TEE report's REPORT_DATA (which must bind the context's bound key, ending
    /// with SHA-256 of the AK), the credential activation, if any, and the EK certificate under the vTPM root, if
    /// given.
    public func appraise(
        _ evidence: PresentedEvidence, tpm: TPMEvidence, activation: TPMCredentialActivation?, policy: Policy,
        context: AppraisalContext, endorsementRoots: [AttestationCertificate] = [],
        endorsementCertificate: [UInt8]? = nil
    ) -> Appraisal {
        policy.evaluate(
            input(
                evidence, tpm: tpm, activation: activation, revocation: policy.trust.crl, context: context,
                endorsementRoots: endorsementRoots, endorsementCertificate: endorsementCertificate))
    }

    /// The verification half with a vTPM quote: the input a policy evaluates.
    public func input(
        _ evidence: PresentedEvidence, tpm: TPMEvidence, activation: TPMCredentialActivation?, revocation: RevocationMode,
        context: AppraisalContext, endorsementRoots: [AttestationCertificate] = [],
        endorsementCertificate: [UInt8]? = nil
    ) -> AppraisalInput {
        var input = input(evidence, revocation: revocation, context: context)
        let reportData = input.claims?.reportData
        input.tpm = Result { () throws(AttestationError) -> TPMVerificationResult in
            try TPMVerifier().verify(
                tpm,
                options: TPMVerificationOptions(
                    nonce: context.nonce, teeReportData: reportData, teeBoundKey: context.boundKey,
                    credentialActivation: activation, endorsementRoots: endorsementRoots,
                    endorsementCertificate: endorsementCertificate))
        }
        return input
    }

    /// The verification half: the input a policy evaluates.
    public func input(_ evidence: PresentedEvidence, revocation: RevocationMode, context: AppraisalContext) -> AppraisalInput {
        let digest = Hex.encode(SHA256.hash(data: evidence.bytes))
        var collateral: [String: String] = [:]
        func note(_ name: String, _ bytes: [UInt8]?) {
            if let bytes { collateral[name] = Hex.encode(SHA256.hash(data: bytes)) }
        }
        let verification: Result<EvidenceClaims, AttestationError>
        var replayed: ReplayedEventLog?
        switch evidence {
        case .snp(let reportBytes, let table, let endorsement, let chain):
            verification = Result { () throws(AttestationError) -> EvidenceClaims in
                let report: SNPReport
                do {
                    report = try SNPReport(bytes: reportBytes)
                } catch {
                    throw AttestationError(.malformedEvidence, "not an SEV-SNP report: \(error)")
                }
                let presented: SNPEvidence
                if let table {
                    note("certificate-table", table)
                    let parsed: SNPCertificateTable
                    do {
                        parsed = try SNPCertificateTable(bytes: table)
                    } catch {
                        throw AttestationError(.malformedEvidence, "the certificate table cannot be read: \(error)")
                    }
                    presented = try SNPEvidence(report: report, certificateTable: parsed)
                } else {
                    presented = SNPEvidence(report: report, endorsementCertificate: endorsement, presentedChain: chain)
                }
                // Soft here, so a missing CRL does not hide every other rule's outcome: `trust.revocation` enforces
                // the policy's mode (hard fails when no CRL was checked). A revoked certificate still fails here.
                let result = try snpVerifier.verify(
                    presented, options: SNPVerificationOptions(validationTime: context.evaluationTime, revocation: .soft))
                for certificate in result.chain { collateral[certificate.role.lowercased()] = certificate.sha256 }
                return .snp(result)
            }
        case .tdx(let quoteBytes, let set, let log):
            note("event-log", log)
            if let log { replayed = Self.replay(tdx: log) }
            note("tcb-info", set?.tcbInfoJSON)
            note("qe-identity", set?.qeIdentityJSON)
            note("pck-crl", set?.pckCRL?.der)
            note("root-ca-crl", set?.rootCACRL?.der)
            verification = Result { () throws(AttestationError) -> EvidenceClaims in
                let quote: TDXQuote
                do {
                    quote = try TDXQuote(bytes: quoteBytes)
                } catch {
                    throw AttestationError(.malformedEvidence, "not a TDX quote: \(error)")
                }
                let result = try tdxVerifier.verify(
                    quote, collateral: set, options: TDXVerificationOptions(evaluationTime: context.evaluationTime, revocation: revocation))
                return .tdx(result)
            }
        }
        return AppraisalInput(
            evidenceType: evidence.evidenceType, verification: verification, evidenceDigest: digest,
            collateralDigests: collateral, context: context, eventLog: replayed)
    }

    /// Replays a CCEL log's SHA-384 bank into RTMR0–3; a log that cannot be read becomes `.unreadable` with the
    /// parser's reason (the rule fails on it — it never throws past the appraisal).
    static func replay(tdx log: [UInt8]) -> ReplayedEventLog {
        do {
            let parsed = try TCGEventLog(bytes: log)
            let registers = try TDXMeasurementRegisters(log: parsed)
            return .tdx(rtmrs: registers.rtmrs, events: parsed.events.filter(\.isMeasured).count, size: log.count)
        } catch {
            return .unreadable(reason: "\(error)", size: log.count)
        }
    }
}
