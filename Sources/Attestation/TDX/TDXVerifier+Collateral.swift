import BinaryFormat
import Crypto
public import Foundation
import Synchronization
import TDX

/// Collateral parsed and signature-checked once against the pinned root, ready for many quotes.
public final class PreparedTDXCollateral: Sendable {
    /// A signed collateral item (TCB Info or QE Identity) with its time-independent checks done.
    struct SignedItem<Value: Sendable>: Sendable {
        let value: Value?
        /// The reason the item could not be parsed or was absent.
        let unusable: String?
        let signer: AttestationCertificate?
        let chainOK: Bool
        let signatureOK: Bool
    }

    let rootCACRL: CertificateRevocationList?
    let rootCRLSigned: Bool
    let pckCRL: CertificateRevocationList?
    let tcbInfo: SignedItem<TDXTCBInfo>
    let qeIdentity: SignedItem<TDXQEIdentity>
    private let pckCRLSignedBy = Mutex<[[UInt8]: Bool]>([:])

    init(_ collateral: TDXCollateral, root: AttestationCertificate) {
        rootCACRL = collateral.rootCACRL
        rootCRLSigned = collateral.rootCACRL.map { (try? $0.verify(issuedBy: root, at: nil, requiredAlgorithm: .ecdsaWithSHA256)) != nil } ?? false
        pckCRL = collateral.pckCRL
        func signed<Value>(
            _ json: [UInt8]?, chain: [AttestationCertificate], missing: String, parse: ([UInt8]) throws -> Value,
            verify: (Value, P256.Signing.PublicKey) -> Bool
        ) -> SignedItem<Value> {
            guard let json else { return SignedItem(value: nil, unusable: missing, signer: nil, chainOK: false, signatureOK: false) }
            let value: Value
            do {
                value = try parse(json)
            } catch {
                return SignedItem(value: nil, unusable: "\(error)", signer: nil, chainOK: false, signatureOK: false)
            }
            let signer = chain.first
            var chainOK = signer?.subjectCommonName?.contains("SGX TCB Signing") == true
            if let carried = chain.dropFirst().first, carried.fingerprint != root.fingerprint { chainOK = false }
            if let signer, (try? signer.verifySignature(issuedBy: root, requiredAlgorithm: .ecdsaWithSHA256)) == nil { chainOK = false }
            let key = signer.flatMap { try? P256.Signing.PublicKey(derRepresentation: $0.subjectPublicKeyInfo) }
            return SignedItem(value: value, unusable: nil, signer: signer, chainOK: chainOK, signatureOK: key.map { verify(value, $0) } ?? false)
        }
        tcbInfo = signed(
            collateral.tcbInfoJSON, chain: collateral.tcbInfoIssuerChain, missing: "no TCB Info in the collateral",
            parse: { try TDXTCBInfo(json: $0) }, verify: { $0.isSignatureValid(publicKey: $1) })
        qeIdentity = signed(
            collateral.qeIdentityJSON, chain: collateral.qeIdentityIssuerChain,
            missing: "no QE Identity in the collateral (\(IntelPCS.qeIdentityURL))",
            parse: { try TDXQEIdentity(json: $0) }, verify: { $0.isSignatureValid(publicKey: $1) })
    }

    /// Whether the PCK CRL is issued and signed by `intermediate` (checked once per intermediate).
    func pckCRLSigned(by intermediate: AttestationCertificate) -> Bool {
        guard let pckCRL else { return false }
        if let known = pckCRLSignedBy.withLock({ $0[intermediate.fingerprint] }) { return known }
        let signed = pckCRL.issuer == intermediate.subject
            && (try? pckCRL.verify(issuedBy: intermediate, at: nil, requiredAlgorithm: .ecdsaWithSHA256)) != nil
        pckCRLSignedBy.withLock { $0[intermediate.fingerprint] = signed }
        return signed
    }
}

extension TDXVerifier {
    /// Parses the collateral and checks its signatures and signing chains against the pinned root, once.
    public func prepare(_ collateral: TDXCollateral) throws(AttestationError) -> PreparedTDXCollateral {
        PreparedTDXCollateral(collateral, root: try trustAnchors.intelSGXRoot())
    }

    /// A. CRLs, B. TCB Info, C. QE Identity, D .4.9–.4.11, .4.14–.4.15, .4.17: everything that needs collateral.
    func evaluateCollateral(
        _ collateral: PreparedTDXCollateral, quote: TDXQuote, chain: TDXChainCache.Entry, root: AttestationCertificate,
        options: TDXVerificationOptions, checks: inout Checks, warnings: inout [String], tcbStatus: inout String?,
        qeStatus: inout String?, advisories: inout [String]
    ) throws(AttestationError) {
        let time = options.evaluationTime
        let (leaf, intermediate, pck) = (chain.leaf, chain.intermediate, chain.pck)
        func crlTimeValid(_ crl: CertificateRevocationList) -> Bool {
            time >= crl.thisUpdate && (crl.nextUpdate.map { time <= $0 } ?? true)
        }
        // Root CA CRL: signed by the pinned root, current, and not listing the PCK CA.
        if let rootCRL = collateral.rootCACRL {
            checks.record("root_ca_crl_signature", collateral.rootCRLSigned, "the Root CA CRL is not signed by the pinned Intel SGX Root CA")
            checks.record("root_ca_crl_time_valid", crlTimeValid(rootCRL), "the Root CA CRL is not current at \(time.ISO8601Format())")
            checks.record("intermediate_not_revoked", !rootCRL.isRevoked(intermediate), "'\(intermediate.subjectCommonName ?? "?")' is revoked by the Root CA CRL")
        } else if options.revocation == .hard {
            checks.record("root_ca_crl_signature", false, "no Root CA CRL (\(IntelPCS.rootCACRLURL)) in the collateral")
        } else {
            warnings.append("no Root CA CRL: the PCK CA's revocation was not checked")
        }
        // PCK CRL: issued by the PCK certificate's issuer, current, and not listing the PCK certificate.
        if let pckCRL = collateral.pckCRL {
            checks.record("pck_crl_signature", collateral.pckCRLSigned(by: intermediate),
                          "the PCK CRL is not issued and signed by '\(intermediate.subjectCommonName ?? "?")'")
            checks.record("pck_crl_time_valid", crlTimeValid(pckCRL), "the PCK CRL is not current at \(time.ISO8601Format())")
            checks.record("pck_not_revoked", !pckCRL.isRevoked(leaf), "the PCK certificate is revoked by its CA's CRL")
        } else if options.revocation == .hard {
            let ca = intermediate.subjectCommonName?.contains("Processor") == true ? "processor" : "platform"
            checks.record("pck_crl_signature", false, "no PCK CRL (\(IntelPCS.pckCRLURL(ca: ca))) in the collateral")
        } else {
            warnings.append("no PCK CRL: the PCK certificate's revocation was not checked")
        }
        // B and C: the signed items, their chains at the evaluation time.
        func signing<Value>(_ item: PreparedTDXCollateral.SignedItem<Value>, prefix: String, name: String) {
            guard item.value != nil, let signer = item.signer else {
                checks.record("\(prefix)_signing_chain", false, "no \(name) issuer chain in the collateral")
                return
            }
            checks.record("\(prefix)_signing_chain", item.chainOK, "the \(name) signing certificate does not chain to the pinned Intel SGX Root CA")
            checks.record("\(prefix)_signature", item.signatureOK, "the \(name) signature does not verify under its signing key")
            let timeOK = (try? signer.checkValidity(at: time)) != nil && (try? root.checkValidity(at: time)) != nil
            checks.record("\(prefix)_signing_cert_time_valid", timeOK, "the \(name) signing certificate is not valid at \(time.ISO8601Format())")
            if let rootCRL = collateral.rootCACRL {
                checks.record("\(prefix)_signing_cert_not_revoked", !rootCRL.isRevoked(signer), "the \(name) signing certificate is revoked")
            }
        }
        if let tcbInfo = collateral.tcbInfo.value {
            checks.record("tcb_info_is_tdx_v3", true, "")
            signing(collateral.tcbInfo, prefix: "tcb_info", name: "TCB Info")
            let validity = tcbInfo.checkValidity(at: time)
            checks.record("tcb_info_time_valid", validity.isValid, "the TCB Info is not valid at \(time.ISO8601Format()): \(validity)")
            if let pck {
                checks.record(
                    "tcb_info_fmspc_pceid_match", tcbInfo.fmspc == pck.fmspc.bytes && tcbInfo.pceID == pck.pceID.bytes,
                    "the TCB Info is for FMSPC \(Hex.encode(tcbInfo.fmspc))/PCE-ID \(Hex.encode(tcbInfo.pceID)), the PCK certificate says \(pck.fmspc)/\(pck.pceID)")
            }
        } else {
            let url = pck.map { IntelPCS.tcbInfoURL(fmspc: $0.fmspc.bytes) } ?? "Intel PCS"
            checks.record("tcb_info_is_tdx_v3", false, "the TCB Info cannot be used: \(collateral.tcbInfo.unusable ?? "") (\(url))")
        }
        var qeMatch: TDXQEIdentityMatch?
        if let qeIdentity = collateral.qeIdentity.value {
            checks.record("qe_identity_is_td_qe_v2", true, "")
            signing(collateral.qeIdentity, prefix: "qe_identity", name: "QE Identity")
            let validity = qeIdentity.checkValidity(at: time)
            checks.record("qe_identity_time_valid", validity.isValid, "the QE Identity is not valid at \(time.ISO8601Format()): \(validity)")
            let report = quote.qeReport
            let match = qeIdentity.match(
                miscselect: report.miscSelect, attributes: report.attributes, mrsigner: report.mrSigner,
                isvprodid: report.isvProdID, isvsvn: report.isvSVN)
            qeMatch = match
            switch match {
            case .mismatch:
                checks.record("qe_identity_match", false, match.description)
            case .tcbNotSupported:
                checks.record("qe_identity_match", true, "")
                qeStatus = TDXTCBFailure.tcbNotSupported.rawValue
            case .matched(let level):
                checks.record("qe_identity_match", true, "")
                qeStatus = level.tcbStatus.rawValue
            }
        } else {
            checks.record("qe_identity_is_td_qe_v2", false, "the QE Identity cannot be used: \(collateral.qeIdentity.unusable ?? "")")
        }
        // D .4.11 and .4.17: the TDX module identity and the TCB status.
        guard let tcbInfo = collateral.tcbInfo.value, let qeMatch, let pck else { return }
        let inputs: TDXTCBEvaluation.Inputs
        do {
            inputs = try TDXTCBEvaluation.Inputs(
                pckSGXComponentSVNs: pck.sgxTCBComponents, pckPCESVN: pck.pceSVN, pckFMSPC: pck.fmspc.bytes,
                pckPCEID: pck.pceID.bytes, quoteVersion: quote.version, teeTCBSVN: quote.body.teeTCBSVN,
                teeTCBSVN2: quote.body.teeTCBSVN2, mrSignerSEAM: quote.body.mrSignerSeam, seamAttributes: quote.body.seamAttributes,
                qeIdentity: qeMatch)
        } catch {
            throw AttestationError(.malformedEvidence, "the TCB inputs are malformed: \(error.description)")
        }
        let evaluation = TDXTCBEvaluation(tcbInfo: tcbInfo, inputs: inputs)
        checks.record("tdx_module_identity", evaluation.failure != .tdxModuleMismatch, evaluation.reason)
        tcbStatus = evaluation.outcome.name
        advisories = evaluation.advisoryIDs
        if evaluation.failure != nil { warnings.append("TCB evaluation: \(evaluation.reason)") }
    }
}
