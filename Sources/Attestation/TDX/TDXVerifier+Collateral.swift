import BinaryFormat
import Crypto
import Foundation
import Synchronization
import TDX

/// Collateral parsed and signature-checked once against the pinned root, ready for many quotes.
public final class PreparedTDXCollateral: Sendable {
    /// A signed collateral item (TCB Info or QE Identity), parsed, with its time-independent checks done; a class,
    /// so each verification reads it in place rather than copying it.
    final class SignedItem<Value: Sendable>: Sendable {
        let value: Value
        /// The validity period and serial number of the issuer chain's first certificate (the TCB Signing
        /// certificate), read once: what each verification checks. Nil when the chain is empty.
        let signerValidity: (notBefore: Date, notAfter: Date)?
        let signerSerialNumber: [UInt8]?
        let chainOK: Bool
        let signatureOK: Bool

        init(value: Value, signer: AttestationCertificate?, chainOK: Bool, signatureOK: Bool) {
            self.value = value
            signerValidity = signer.map { ($0.notBefore, $0.notAfter) }
            signerSerialNumber = signer?.serialNumber
            self.chainOK = chainOK
            self.signatureOK = signatureOK
        }
    }

    /// A collateral item ready for verification, or the reason it is not (absent or unreadable).
    enum Item<Value: Sendable>: Sendable {
        case usable(SignedItem<Value>)
        case unusable(String)
    }

    /// The fingerprint of the root the collateral was checked against: a quote whose chain ends in another root
    /// gets no use of it (its signing chains and Root CA CRL count as failed).
    let rootFingerprint: [UInt8]
    let rootCACRL: CertificateRevocationList?
    let rootCRLSigned: Bool
    let pckCRL: CertificateRevocationList?
    let tcbInfo: Item<TDXTCBInfo>
    let qeIdentity: Item<TDXQEIdentity>
    /// Whether the PCK CRL is signed by an intermediate, by the intermediate's fingerprint. Intel has two PCK CAs,
    /// so the list stays short and a linear search beats hashing.
    private let pckCRLSignedBy = Mutex<[(fingerprint: [UInt8], signed: Bool)]>([])

    init(_ collateral: TDXCollateral, root: AttestationCertificate) {
        rootFingerprint = root.fingerprint
        rootCACRL = collateral.rootCACRL
        rootCRLSigned = collateral.rootCACRL.map { crl in
            (try? crl.verify(issuedBy: root, at: nil, requiredAlgorithm: .ecdsaWithSHA256)) != nil
        } ?? false
        pckCRL = collateral.pckCRL
        func signed<Value>(
            _ json: [UInt8]?, chain: [AttestationCertificate], missing: String, parse: ([UInt8]) throws -> Value,
            verify: (Value, P256.Signing.PublicKey) -> Bool
        ) -> Item<Value> {
            guard let json else { return .unusable(missing) }
            let value: Value
            do {
                value = try parse(json)
            } catch {
                return .unusable("\(error)")
            }
            let signer = chain.first
            var chainOK = signer?.subjectCommonName?.contains("SGX TCB Signing") == true
            if let carried = chain.dropFirst().first, carried.fingerprint != root.fingerprint { chainOK = false }
            if let signer, (try? signer.verifySignature(issuedBy: root, requiredAlgorithm: .ecdsaWithSHA256)) == nil {
                chainOK = false
            }
            let key = signer.flatMap { try? P256.Signing.PublicKey(derRepresentation: $0.subjectPublicKeyInfo) }
            let signatureOK = key.map { verify(value, $0) } ?? false
            return .usable(SignedItem(value: value, signer: signer, chainOK: chainOK, signatureOK: signatureOK))
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
        let fingerprint = intermediate.fingerprint
        if let known = pckCRLSignedBy.withLock({ $0.first { $0.fingerprint == fingerprint }?.signed }) { return known }
        let signed = pckCRL.issuer == intermediate.subject
            && (try? pckCRL.verify(issuedBy: intermediate, at: nil, requiredAlgorithm: .ecdsaWithSHA256)) != nil
        pckCRLSignedBy.withLock { known in
            if known.count >= 64 { known.removeAll() }
            known.append((fingerprint, signed))
        }
        return signed
    }
}

extension TDXVerifier {
    /// Parses the collateral and checks its signatures and signing chains against the pinned root, once: Intel's,
    /// or — for collateral whose signing certificate is issued under the simulated root's name — the installation's
    /// simulated root, when it was loaded (else `untrusted-root`).
    public func prepare(_ collateral: TDXCollateral) throws(AttestationError) -> PreparedTDXCollateral {
        let issuer = (collateral.tcbInfoIssuerChain.first ?? collateral.qeIdentityIssuerChain.first)?.issuerCommonName
        return PreparedTDXCollateral(collateral, root: try root(forIssuer: issuer).certificate)
    }

    /// The checks of one signed collateral item (TCB Info or QE Identity) and the name reasons give it.
    struct SigningChecks {
        let chain: TDXCheck
        let signature: TDXCheck
        let certificateTimeValid: TDXCheck
        let certificateNotRevoked: TDXCheck
        let name: String

        static let tcbInfo = SigningChecks(
            chain: .tcbInfoSigningChain, signature: .tcbInfoSignature,
            certificateTimeValid: .tcbInfoSigningCertTimeValid, certificateNotRevoked: .tcbInfoSigningCertNotRevoked,
            name: "TCB Info")
        static let qeIdentity = SigningChecks(
            chain: .qeIdentitySigningChain, signature: .qeIdentitySignature,
            certificateTimeValid: .qeIdentitySigningCertTimeValid,
            certificateNotRevoked: .qeIdentitySigningCertNotRevoked, name: "QE Identity")
    }

    /// A. CRLs, B. TCB Info, C. QE Identity, D .4.9–.4.11, .4.14–.4.15, .4.17: everything that needs collateral.
    func evaluateCollateral(
        _ collateral: PreparedTDXCollateral, quote: TDXQuote, chain: TDXChainCache.Entry, anchor: PinnedRoot,
        options: TDXVerificationOptions, checks: inout TDXCheckSet, warnings: inout [String], tcbStatus: inout String?,
        qeStatus: inout String?, advisories: inout [String]
    ) throws(AttestationError) {
        let time = options.evaluationTime
        let pck = chain.pck
        // Collateral checked against another root than the quote's chain vouches for nothing about this quote.
        let sameRoot = collateral.rootFingerprint == anchor.certificate.fingerprint
        let otherRoot = sameRoot ? "" : " (the collateral is signed under another root than the quote's PCK chain)"
        func crlTimeValid(_ crl: CertificateRevocationList) -> Bool {
            time >= crl.thisUpdate && (crl.nextUpdate.map { time <= $0 } ?? true)
        }
        // Root CA CRL: signed by the pinned root, current, and not listing the PCK CA.
        if let rootCRL = collateral.rootCACRL {
            checks.record(
                .rootCACRLSignature, collateral.rootCRLSigned && sameRoot,
                "the Root CA CRL is not signed by the pinned root of the quote's chain" + otherRoot)
            checks.record(
                .rootCACRLTimeValid, crlTimeValid(rootCRL), "the Root CA CRL is not current at \(time.ISO8601Format())")
            checks.record(
                .intermediateNotRevoked, !rootCRL.isRevoked(chain.intermediate),
                "'\(chain.intermediate.subjectCommonName ?? "?")' is revoked by the Root CA CRL")
        } else if options.revocation == .hard {
            checks.record(.rootCACRLSignature, false, "no Root CA CRL (\(IntelPCS.rootCACRLURL)) in the collateral")
        } else {
            warnings.append("no Root CA CRL: the PCK CA's revocation was not checked")
        }
        // PCK CRL: issued by the PCK certificate's issuer, current, and not listing the PCK certificate.
        if let pckCRL = collateral.pckCRL {
            checks.record(
                .pckCRLSignature, collateral.pckCRLSigned(by: chain.intermediate),
                "the PCK CRL is not issued and signed by '\(chain.intermediate.subjectCommonName ?? "?")'")
            checks.record(
                .pckCRLTimeValid, crlTimeValid(pckCRL), "the PCK CRL is not current at \(time.ISO8601Format())")
            checks.record(
                .pckNotRevoked, !pckCRL.isRevoked(chain.leaf), "the PCK certificate is revoked by its CA's CRL")
        } else if options.revocation == .hard {
            let ca = chain.intermediate.subjectCommonName?.contains("Processor") == true ? "processor" : "platform"
            checks.record(.pckCRLSignature, false, "no PCK CRL (\(IntelPCS.pckCRLURL(ca: ca))) in the collateral")
        } else {
            warnings.append("no PCK CRL: the PCK certificate's revocation was not checked")
        }
        // B and C: the signed items, their chains at the evaluation time.
        func signing<Value>(_ item: PreparedTDXCollateral.SignedItem<Value>, _ names: SigningChecks) {
            guard let validity = item.signerValidity, let serialNumber = item.signerSerialNumber else {
                checks.record(names.chain, false, "no \(names.name) issuer chain in the collateral")
                return
            }
            checks.record(
                names.chain, item.chainOK && sameRoot,
                "the \(names.name) signing certificate does not chain to the pinned root of the quote's chain" + otherRoot)
            checks.record(
                names.signature, item.signatureOK, "the \(names.name) signature does not verify under its signing key")
            checks.record(
                names.certificateTimeValid,
                time.isWithin(validity.notBefore, validity.notAfter)
                    && time.isWithin(anchor.certificate.notBefore, anchor.certificate.notAfter),
                "the \(names.name) signing certificate is not valid at \(time.ISO8601Format())")
            if let rootCRL = collateral.rootCACRL {
                checks.record(
                    names.certificateNotRevoked, !rootCRL.lists(serialNumber),
                    "the \(names.name) signing certificate is revoked")
            }
        }
        var tcbInfoItem: PreparedTDXCollateral.SignedItem<TDXTCBInfo>?
        switch collateral.tcbInfo {
        case .usable(let item):
            tcbInfoItem = item
            checks.pass(.tcbInfoIsTDXv3)
            signing(item, .tcbInfo)
            let validity = item.value.checkValidity(at: time)
            checks.record(
                .tcbInfoTimeValid, validity.isValid,
                "the TCB Info is not valid at \(time.ISO8601Format()): \(validity)")
            if let pck {
                checks.record(
                    .tcbInfoFMSPCPCEIDMatch, item.value.fmspc == pck.fmspc.bytes && item.value.pceID == pck.pceID.bytes,
                    "the TCB Info is for FMSPC \(Hex.encode(item.value.fmspc))/PCE-ID \(Hex.encode(item.value.pceID)), "
                        + "the PCK certificate says \(pck.fmspc)/\(pck.pceID)")
            }
        case .unusable(let reason):
            let url = pck.map { IntelPCS.tcbInfoURL(fmspc: $0.fmspc.bytes) } ?? "Intel PCS"
            checks.record(.tcbInfoIsTDXv3, false, "the TCB Info cannot be used: \(reason) (\(url))")
        }
        var qeMatch: TDXQEIdentityMatch?
        switch collateral.qeIdentity {
        case .usable(let item):
            checks.pass(.qeIdentityIsTDQEv2)
            signing(item, .qeIdentity)
            let validity = item.value.checkValidity(at: time)
            checks.record(
                .qeIdentityTimeValid, validity.isValid,
                "the QE Identity is not valid at \(time.ISO8601Format()): \(validity)")
            let match = item.value.match(report: quote.qeReport)
            qeMatch = match
            switch match {
            case .mismatch:
                checks.record(.qeIdentityMatch, false, match.description)
            case .tcbNotSupported:
                checks.pass(.qeIdentityMatch)
                qeStatus = TDXTCBFailure.tcbNotSupported.rawValue
            case .matched(let level):
                checks.pass(.qeIdentityMatch)
                qeStatus = level.tcbStatus.rawValue
            }
        case .unusable(let reason):
            checks.record(.qeIdentityIsTDQEv2, false, "the QE Identity cannot be used: \(reason)")
        }
        // D .4.11 and .4.17: the TDX module identity and the TCB status.
        guard let tcbInfoItem, let qeMatch, let pck else { return }
        let inputs: TDXTCBEvaluation.Inputs
        do {
            inputs = try TDXTCBEvaluation.Inputs(
                pckSGXComponentSVNs: pck.sgxTCBComponents, pckPCESVN: pck.pceSVN, pckFMSPC: pck.fmspc.bytes,
                pckPCEID: pck.pceID.bytes, quoteVersion: quote.version, teeTCBSVN: quote.body.teeTCBSVN,
                teeTCBSVN2: quote.body.teeTCBSVN2, mrSignerSEAM: quote.body.mrSignerSeam,
                seamAttributes: quote.body.seamAttributes,
                qeIdentity: qeMatch)
        } catch {
            throw AttestationError(.malformedEvidence, "the TCB inputs are malformed: \(error.description)")
        }
        let evaluation = TDXTCBEvaluation(tcbInfo: tcbInfoItem.value, inputs: inputs)
        checks.record(.tdxModuleIdentity, evaluation.failure != .tdxModuleMismatch, evaluation.reason)
        tcbStatus = evaluation.outcome.name
        advisories = evaluation.advisoryIDs
        if evaluation.failure != nil { warnings.append("TCB evaluation: \(evaluation.reason)") }
    }
}

extension CertificateRevocationList {
    /// Whether the CRL lists `serialNumber`: ``isRevoked(_:)`` for a serial number read from a certificate once.
    func lists(_ serialNumber: [UInt8]) -> Bool { revokedSerialNumbers.contains(serialNumber) }
}
