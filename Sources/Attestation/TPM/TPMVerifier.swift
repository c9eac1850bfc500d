public import BinaryFormat
import Crypto
public import EventLog
import GuestProtocol
public import Foundation
public import TPM2

/// TPM 2.0 evidence as presented: a quote, its signature, the attestation key that made it, and the event log
/// that explains the quoted PCRs (docs/tpm-verification.md).
public struct TPMEvidence: Sendable, Hashable {
    /// The marshalled TPMS_ATTEST the TPM signed (`tpm2_quote -m`), exactly as received.
    public let quote: [UInt8]
    /// The marshalled TPMT_SIGNATURE (`tpm2_quote -s`).
    public let signature: [UInt8]
    /// The AK's TPMT_PUBLIC or TPM2B_PUBLIC (`tpm2_createak -u`).
    public let attestationKey: [UInt8]
    /// The TCG crypto-agile event log (`/sys/kernel/security/tpm0/binary_bios_measurements`).
    public let eventLog: [UInt8]
    /// PCR values reported beside the quote, per bank (optional: the replay is what counts).
    public let pcrValues: [UInt16: [Int: [UInt8]]]?

    public init(
        quote: [UInt8], signature: [UInt8], attestationKey: [UInt8], eventLog: [UInt8],
        pcrValues: [UInt16: [Int: [UInt8]]]? = nil
    ) {
        self.quote = quote
        self.signature = signature
        self.attestationKey = attestationKey
        self.eventLog = eventLog
        self.pcrValues = pcrValues
    }
}

/// The result of credential activation (TPM 2.0 Part 1 §24): the verifier made a credential for one AK Name under
/// the EK and kept the secret; the TPM gave a secret back, which only the TPM holding that EK could do, and only
/// when the AK with that Name is loaded in it.
public struct TPMCredentialActivation: Sendable, Hashable {
    /// The EK's TPMT_PUBLIC (or TPM2B_PUBLIC) the credential was made for.
    public let endorsementKey: [UInt8]
    /// The AK Name the credential was made for.
    public let attestationKeyName: [UInt8]
    /// The secret the verifier put into the credential.
    public let secret: [UInt8]
    /// What the attester's TPM returned from ActivateCredential.
    public let activatedSecret: [UInt8]

    public init(endorsementKey: [UInt8], attestationKeyName: [UInt8], secret: [UInt8], activatedSecret: [UInt8]) {
        self.endorsementKey = endorsementKey
        self.attestationKeyName = attestationKeyName
        self.secret = secret
        self.activatedSecret = activatedSecret
    }
}

/// What to check a TPM quote against. Unset bindings are reported as not checked in the result; a policy decides
/// whether that is acceptable (`tpm.ak-bound-to-tee`, `tpm.ak-bound-to-ek`).
public struct TPMVerificationOptions: Sendable {
    /// The verifier's nonce, which must be the quote's extraData.
    public var nonce: [UInt8]?
    /// The TEE report's verified REPORT_DATA. It binds the AK when it is cmk's binding of the nonce and the bound
    /// key (``teeBoundKey``: cmk-guest's session key followed by SHA-256 of the AK's TPMT_PUBLIC,
    /// `ReportData.withAttestationKey`; or SHA-256 of the AK alone when no bound key is given), or when its first
    /// 32 bytes are SHA-256 of the AK's TPMT_PUBLIC (the convention of Azure's paravisor, where the HCL report
    /// carries it).
    public var teeReportData: [UInt8]?
    /// The key material REPORT_DATA binds after the nonce, as the attester presented it; it must end with SHA-256 of
    /// the AK's TPMT_PUBLIC.
    public var teeBoundKey: [UInt8]?
    /// The credential activation that bound the AK to the EK.
    public var credentialActivation: TPMCredentialActivation?
    /// The vTPM roots the EK certificate must chain to, leaf-ward: the intermediate that issues EK certificates, then
    /// the swtpm local CA's self-signed root; with an EK certificate, the activation's EK must be the key it certifies.
    public var endorsementRoots: [AttestationCertificate]
    /// The EK certificate (DER) presented with the evidence.
    public var endorsementCertificate: [UInt8]?

    public init(
        nonce: [UInt8]? = nil, teeReportData: [UInt8]? = nil, teeBoundKey: [UInt8]? = nil,
        credentialActivation: TPMCredentialActivation? = nil,
        endorsementRoots: [AttestationCertificate] = [], endorsementCertificate: [UInt8]? = nil
    ) {
        self.nonce = nonce
        self.teeReportData = teeReportData
        self.teeBoundKey = teeBoundKey
        self.credentialActivation = credentialActivation
        self.endorsementRoots = endorsementRoots
        self.endorsementCertificate = endorsementCertificate
    }
}

/// What a verified TPM quote and its event log say, as typed values for the policy layer.
public struct TPMClaims: Sendable, Hashable, Codable {
    public let evidenceType: String
    /// The AK's Name (nameAlg ‖ digest of its TPMT_PUBLIC).
    public let attestationKeyName: HexBytes
    /// SHA-256 of the AK's TPMT_PUBLIC: what REPORT_DATA[0..<32] carries.
    public let attestationKeyDigest: HexBytes
    /// The quote's extraData.
    public let nonce: HexBytes
    /// The hash bank of the quoted PCRs and the quoted PCR indices.
    public let bank: String
    public let pcrs: [Int]
    /// The replayed value of every quoted PCR (equal to the TPM's, since the quoted digest matched).
    public let pcrValues: [String: HexBytes]
    /// The quote's TPMS_CLOCK_INFO reset and restart counts (a change means the TPM rebooted).
    public let resetCount: UInt32
    public let restartCount: UInt32
    public let firmwareVersion: UInt64
    /// Whether SHA-256(AK) was found in the TEE report's REPORT_DATA; nil when no report was given.
    public let boundToTEEReport: Bool?
    /// Whether credential activation proved the AK lives beside the EK; nil when none was given.
    public let boundToEndorsementKey: Bool?
    /// SHA-256 of the EK's TPMT_PUBLIC, when an activation bound the AK to it.
    public let endorsementKeyDigest: HexBytes?
    /// The boot, event by event, as far as the quote covers it.
    public let boot: MeasuredBootEvents
}

/// The outcome of TPM quote verification.
public struct TPMVerificationResult: Sendable, Hashable, Codable {
    public let claims: TPMClaims
    /// Each check by name and what it found (`quote_signature`, `nonce`, `pcr_digest_replay`, ...).
    public let checks: [String: String]
    public let warnings: [String]

    /// The check an EK certificate passes: it certifies the activated EK and chains to the pinned vTPM root.
    public static let endorsementCertificateCheck = "ek_certificate"

    /// Whether an EK certificate was presented and verified (absent when none was given).
    public var endorsementCertificateVerified: Bool { checks[Self.endorsementCertificateCheck] != nil }
}

/// Verifies TPM 2.0 quotes with their event logs (docs/tpm-verification.md): TPMS_ATTEST via libtss2-mu, the AK's
/// signature (RSASSA, RSA-PSS, ECDSA P-256/P-384), the nonce in extraData, the quoted PCR digest against the
/// event-log replay, event data against its digests, and the AK's bindings to the TEE report and to the EK.
/// Every failure throws one ``AttestationError`` with its own code.
public struct TPMVerifier: Sendable {
    /// PCRs a firmware event log can account for: 0–15 start at zero (17–22 are dynamic-launch PCRs).
    public static let replayablePCRs = 0...15

    public init() {}

    public func verify(_ evidence: TPMEvidence, options: TPMVerificationOptions) throws(AttestationError) -> TPMVerificationResult {
        var checks: [String: String] = [:]
        var warnings: [String] = []
        let attest: TPMSAttest
        let signature: TPMTSignature
        let ak: TPMTPublic
        let log: TCGEventLog
        do {
            attest = try TPMSAttest(marshalled: evidence.quote)
        } catch {
            throw AttestationError(.malformedEvidence, "the quote is not a TPMS_ATTEST: \(error)")
        }
        do {
            signature = try TPMTSignature(marshalled: evidence.signature)
        } catch {
            throw AttestationError(.malformedEvidence, "the quote signature is not a TPMT_SIGNATURE: \(error)")
        }
        do {
            ak = try TPMTPublic(marshalled: evidence.attestationKey)
        } catch {
            throw AttestationError(.malformedEvidence, "the attestation key is not a TPMT_PUBLIC or TPM2B_PUBLIC: \(error)")
        }
        do {
            log = try TCGEventLog(bytes: evidence.eventLog)
        } catch {
            throw AttestationError(.malformedEvidence, "the event log cannot be parsed: \(error)")
        }
        guard case .quote(let selections, let pcrDigest) = attest.attested else {
            throw AttestationError(.malformedEvidence, "the TPMS_ATTEST is a \(attest.type), not a quote")
        }

        // 1. The AK: a restricted signing key that never leaves its TPM, and its signature over the exact bytes.
        let required: TPMTPublic.Attributes = [.restricted, .sign, .fixedTPM, .fixedParent, .sensitiveDataOrigin]
        guard ak.attributes.isSuperset(of: required), !ak.attributes.contains(.decrypt) else {
            throw AttestationError(
                .tpmAKUnsuitable,
                "the AK's attributes 0x\(String(ak.attributes.rawValue, radix: 16)) are not those of an attestation key "
                    + "(restricted, sign, fixedTPM, fixedParent, sensitiveDataOrigin, no decrypt): a TPM would sign "
                    + "anything with it, so its quotes prove nothing")
        }
        try verifySignature(signature, key: ak, message: evidence.quote)
        checks["quote_signature"] = "\(TPMHash.name(signature.hashAlgorithm)) \(Self.schemeName(signature.scheme)) by the AK"
        let akName: [UInt8]
        do {
            akName = try ak.name()
        } catch {
            throw AttestationError(.tpmAKUnsuitable, "the AK's Name cannot be computed: \(error)")
        }

        // 2. Freshness: extraData is the verifier's nonce.
        if let nonce = options.nonce {
            guard constantTimeEqual(nonce, attest.extraData) else {
                throw AttestationError(
                    .tpmNonceMismatch,
                    "the quote's extraData (\(attest.extraData.count) bytes) is not this request's nonce: a replayed "
                        + "or foreign quote; ask the attester for a new quote with the nonce")
            }
            checks["nonce"] = "extraData equals the nonce"
        } else {
            warnings.append("no nonce given: the quote's freshness was not checked")
        }

        // 3. The quoted PCRs: one bank, PCRs a firmware log can explain, digest = H(replayed values).
        guard selections.count == 1, let selection = selections.first, !selection.pcrs.isEmpty else {
            throw AttestationError(
                .tpmPCRSelectionUnsupported,
                "the quote selects \(selections.count) banks; cmk checks a quote over PCRs of exactly one bank")
        }
        let algorithm = TCGAlgorithm(rawValue: selection.hashAlgorithm)
        guard let bank = log.replay().bank(algorithm) else {
            throw AttestationError(
                .tpmPCRSelectionUnsupported, "the quote's bank \(algorithm) is not one the event log declares and cmk can replay")
        }
        if let outside = selection.pcrs.first(where: { !Self.replayablePCRs.contains($0) }) {
            throw AttestationError(
                .tpmPCRSelectionUnsupported, "the quote selects PCR \(outside), which a boot event log cannot account for")
        }
        let zero = [UInt8](repeating: 0, count: TPMHash.size(selection.hashAlgorithm) ?? 0)
        var values: [Int: [UInt8]] = [:]
        for pcr in selection.pcrs { values[pcr] = bank.value(at: UInt32(pcr))?.bytes ?? zero }
        let concatenated = selection.pcrs.flatMap { values[$0] ?? zero }
        guard let replayDigest = TPMHash.digest(signature.hashAlgorithm, concatenated) else {
            throw AttestationError(
                .unsupportedSignatureAlgorithm, "the signature's hash \(TPMHash.name(signature.hashAlgorithm)) is not one cmk computes")
        }
        if let presented = evidence.pcrValues?[selection.hashAlgorithm] {
            let presentedDigest = TPMHash.digest(signature.hashAlgorithm, selection.pcrs.flatMap { presented[$0] ?? [] }) ?? []
            guard constantTimeEqual(presentedDigest, pcrDigest) else {
                throw AttestationError(
                    .tpmPCRValuesMismatch, "the PCR values that came with the quote do not hash to the quoted PCR digest")
            }
            checks["pcr_values"] = "the presented PCR values hash to the quoted digest"
        }
        guard constantTimeEqual(replayDigest, pcrDigest) else {
            let replayed = selection.pcrs.map { "\($0)=\(Hex.encode(values[$0] ?? zero).prefix(16))…" }.joined(separator: " ")
            throw AttestationError(
                .tpmPCRDigestMismatch,
                "the quoted \(algorithm) digest of PCRs \(selection.pcrs.map(String.init).joined(separator: ",")) is "
                    + "\(Hex.encode(pcrDigest)), the event log replays to \(Hex.encode(replayDigest)) (\(replayed)): "
                    + "something was measured that the log does not show, or the log's digests were changed")
        }
        checks["pcr_digest_replay"] = "the event log replays to the quoted \(algorithm) digest of PCRs \(selection.pcrs)"

        // 4. Events whose digest is the hash of their own data must still match it.
        if let (event, bankAlgorithm) = log.eventDataMismatches.first(where: { selection.pcrs.contains(Int($0.event.pcrIndex)) }) {
            throw AttestationError(
                .tpmEventDataMismatch,
                "event \(event.sequence) (\(event.eventType), PCR \(event.pcrIndex)) holds data whose \(bankAlgorithm) "
                    + "hash is not its logged digest: the event log was edited after the fact")
        }
        checks["event_data"] = "every self-describing event's data matches its digest"

        // 5. Bindings.
        let akDigest = Array(SHA256.hash(data: ak.bytes))
        var boundToReport: Bool?
        if let reportData = options.teeReportData {
            // The bound key must end with this AK's digest; the session key before it is the attester's.
            let boundKey = options.teeBoundKey ?? akDigest
            let boundKeyCarriesAK = boundKey.count >= akDigest.count && constantTimeEqual(boundKey.suffix(akDigest.count), akDigest)
            let cmkBinding = options.nonce.map { ReportData.binding(nonce: $0, publicKey: boundKey) }
            if boundKeyCarriesAK, let cmkBinding, constantTimeEqual(reportData, cmkBinding) {
                checks["ak_bound_to_tee_report"] =
                    boundKey.count == akDigest.count
                    ? "REPORT_DATA = SHA-512(label ‖ nonce ‖ SHA-256(AK TPMT_PUBLIC))"
                    : "REPORT_DATA = SHA-512(label ‖ nonce ‖ session key ‖ SHA-256(AK TPMT_PUBLIC))"
            } else if reportData.count >= 32, constantTimeEqual(reportData.prefix(32), akDigest) {
                checks["ak_bound_to_tee_report"] = "REPORT_DATA[0..<32] = SHA-256(AK TPMT_PUBLIC)"
            } else {
                throw AttestationError(
                    .tpmAKNotBoundToReport,
                    "the TEE report's REPORT_DATA binds neither SHA-256 of this AK's TPMT_PUBLIC "
                        + "(\(Hex.encode(akDigest))) nor the nonce with it: the quote comes from a TPM the TEE did not vouch for")
            }
            boundToReport = true
        } else {
            warnings.append("no TEE report data given: the AK's binding to a TEE report was not checked")
        }
        var boundToEK: Bool?
        var ekDigest: HexBytes?
        if let activation = options.credentialActivation {
            guard constantTimeEqual(activation.attestationKeyName, akName) else {
                throw AttestationError(
                    .tpmAKNotBoundToEK,
                    "the credential was made for AK Name \(Hex.encode(activation.attestationKeyName)), not this AK's "
                        + "\(Hex.encode(akName))")
            }
            guard !activation.secret.isEmpty, constantTimeEqual(activation.secret, activation.activatedSecret) else {
                throw AttestationError(
                    .tpmAKNotBoundToEK,
                    "the attester's TPM did not return the credential's secret: the AK is not in the TPM of that EK")
            }
            let ek: TPMTPublic
            do {
                ek = try TPMTPublic(marshalled: activation.endorsementKey)
            } catch {
                throw AttestationError(.malformedEvidence, "the endorsement key is not a TPMT_PUBLIC: \(error)")
            }
            boundToEK = true
            ekDigest = HexBytes(Array(SHA256.hash(data: ek.bytes)))
            checks["ak_bound_to_ek"] = "credential activation returned the secret made for this AK under the EK"
            if let certificate = options.endorsementCertificate {
                try Self.verifyEndorsementCertificate(certificate, ek: ek, roots: options.endorsementRoots)
                checks[TPMVerificationResult.endorsementCertificateCheck] = "the EK certificate chains to the pinned vTPM root and certifies this EK"
            } else {
                warnings.append("no EK certificate given: the EK was not traced to a vTPM root")
            }
        } else {
            warnings.append("no credential activation given: the AK's binding to an EK was not checked")
        }

        let claims = TPMClaims(
            evidenceType: "tpm", attestationKeyName: HexBytes(akName), attestationKeyDigest: HexBytes(akDigest),
            nonce: HexBytes(attest.extraData), bank: algorithm.description, pcrs: selection.pcrs,
            pcrValues: Dictionary(uniqueKeysWithValues: selection.pcrs.map { (String($0), HexBytes(values[$0] ?? zero)) }),
            resetCount: attest.clockInfo.resetCount, restartCount: attest.clockInfo.restartCount,
            firmwareVersion: attest.firmwareVersion, boundToTEEReport: boundToReport, boundToEndorsementKey: boundToEK,
            endorsementKeyDigest: ekDigest, boot: MeasuredBootEvents(log: log, pcrs: Set(selection.pcrs.map(UInt32.init))))
        return TPMVerificationResult(claims: claims, checks: checks, warnings: warnings)
    }

    /// The EK certificate must certify exactly this EK and chain, signature by signature, to the last of `roots`
    /// (ordered leaf-ward: `[intermediate, root]` or `[root]`), which must sign itself.
    static func verifyEndorsementCertificate(
        _ der: [UInt8], ek: TPMTPublic, roots: [AttestationCertificate]
    ) throws(AttestationError) {
        let certificate: AttestationCertificate
        do {
            certificate = try AttestationCertificate(der: der)
        } catch {
            throw AttestationError(.tpmEKCertificateInvalid, "the EK certificate cannot be read: \(error.reason)")
        }
        guard case .rsa(_, let exponent, let modulus) = ek.key,
            certificate.subjectPublicKeyInfo
                == RSASubjectPublicKeyInfo.der(modulus: modulus, exponent: exponent == 0 ? 65537 : exponent)
        else {
            throw AttestationError(
                .tpmEKCertificateInvalid, "the EK certificate certifies another key than the EK the credential was made for")
        }
        guard let root = roots.last else {
            throw AttestationError(.tpmEKCertificateInvalid, "no vTPM root is pinned to check the EK certificate against")
        }
        do {
            var child = certificate
            for issuer in roots {
                try child.verifySignature(issuedBy: issuer)
                child = issuer
            }
            try root.verifySignature(issuedBy: root)
        } catch {
            throw AttestationError(
                .tpmEKCertificateInvalid, "the EK certificate does not chain to the pinned vTPM root: \(error.reason)")
        }
    }

    static func schemeName(_ scheme: UInt16) -> String {
        switch scheme {
        case TPMTSignature.rsassa: "RSASSA"
        case TPMTSignature.rsapss: "RSA-PSS"
        case TPMTSignature.ecdsa: "ECDSA"
        default: "0x" + String(scheme, radix: 16)
        }
    }

    /// Checks the AK's signature over the exact TPMS_ATTEST bytes.
    func verifySignature(_ signature: TPMTSignature, key: TPMTPublic, message: [UInt8]) throws(AttestationError) {
        let valid: Bool
        switch (signature.value, key.key) {
        case (.rsa(let bytes), .rsa(_, let exponent, let modulus)):
            let hash: DigestAlgorithm
            switch signature.hashAlgorithm {
            case TPMHash.sha256: hash = .sha256
            case TPMHash.sha384: hash = .sha384
            case TPMHash.sha512: hash = .sha512
            default:
                throw AttestationError(
                    .unsupportedSignatureAlgorithm, "RSA quote signatures with \(TPMHash.name(signature.hashAlgorithm)) are not accepted")
            }
            let publicKey = try OpenSSLPublicKey(
                subjectPublicKeyInfo: RSASubjectPublicKeyInfo.der(modulus: modulus, exponent: exponent == 0 ? 65537 : exponent))
            if signature.scheme == TPMTSignature.rsapss {
                // TPMs differ on the PSS salt (the digest size, or the largest that fits): accept what the signature says.
                valid = try publicKey.verifyRSAPSS(
                    signature: bytes, message: message,
                    parameters: RSAPSSParameters(hash: hash, mgf1Hash: hash, saltLength: RSASubjectPublicKeyInfo.saltLengthAuto))
            } else {
                valid = try publicKey.verifyRSAPKCS1(signature: bytes, message: message, hash: hash)
            }
        case (.ecdsa(let r, let s), .ecc(let curve, let x, let y)):
            valid = try Self.verifyECDSA(r: r, s: s, curve: curve, x: x, y: y, hash: signature.hashAlgorithm, message: message)
        default:
            throw AttestationError(
                .tpmAKUnsuitable, "a \(Self.schemeName(signature.scheme)) signature cannot come from this AK's key type")
        }
        guard valid else {
            throw AttestationError(
                .tpmQuoteSignatureInvalid,
                "the quote's \(Self.schemeName(signature.scheme)) signature does not verify under the AK: the quote was "
                    + "changed, or another key signed it")
        }
    }

    static func verifyECDSA(
        r: [UInt8], s: [UInt8], curve: UInt16, x: [UInt8], y: [UInt8], hash: UInt16, message: [UInt8]
    ) throws(AttestationError) -> Bool {
        func pad(_ value: [UInt8], _ size: Int) -> [UInt8]? {
            let trimmed = Array(value.drop { $0 == 0 })
            return trimmed.count <= size ? [UInt8](repeating: 0, count: size - trimmed.count) + trimmed : nil
        }
        guard let digest = TPMHash.digest(hash, message), hash != TPMHash.sha1 else {
            throw AttestationError(.unsupportedSignatureAlgorithm, "ECDSA quote signatures with \(TPMHash.name(hash)) are not accepted")
        }
        do {
            switch curve {
            case TPMTPublic.curveNISTP256:
                guard let r = pad(r, 32), let s = pad(s, 32), let x = pad(x, 32), let y = pad(y, 32) else { return false }
                let key = try P256.Signing.PublicKey(x963Representation: [0x04] + x + y)
                return key.isValidSignature(try P256.Signing.ECDSASignature(rawRepresentation: r + s), for: RawDigest(bytes: digest))
            case TPMTPublic.curveNISTP384:
                guard let r = pad(r, 48), let s = pad(s, 48), let x = pad(x, 48), let y = pad(y, 48) else { return false }
                let key = try P384.Signing.PublicKey(x963Representation: [0x04] + x + y)
                return key.isValidSignature(try P384.Signing.ECDSASignature(rawRepresentation: r + s), for: RawDigest(bytes: digest))
            default:
                throw AttestationError(.unsupportedPublicKey, "the AK's curve 0x\(String(curve, radix: 16)) is not NIST P-256 or P-384")
            }
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.unsupportedPublicKey, "the AK's ECC point is not on its curve: \(error)")
        }
    }
}

/// A digest computed elsewhere, for swift-crypto's `isValidSignature(_:for:)` over a `Digest`.
struct RawDigest: Digest {
    static let byteCount = 64
    let bytes: [UInt8]
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try bytes.withUnsafeBytes(body) }
    func makeIterator() -> Array<UInt8>.Iterator { bytes.makeIterator() }
    var description: String { Hex.encode(bytes) }
    func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// The DER SubjectPublicKeyInfo of an RSA public key (RFC 8017 A.1.1 inside RFC 5280 §4.1.2.7), for OpenSSL.
enum RSASubjectPublicKeyInfo {
    /// RSA_PSS_SALTLEN_AUTO: on verification, take the salt length from the signature.
    static let saltLengthAuto = -2

    static func der(modulus: [UInt8], exponent: UInt32) -> [UInt8] {
        func length(_ n: Int) -> [UInt8] {
            if n < 0x80 { return [UInt8(n)] }
            var bytes: [UInt8] = []
            var v = n
            while v > 0 {
                bytes.insert(UInt8(v & 0xFF), at: 0)
                v >>= 8
            }
            return [0x80 | UInt8(bytes.count)] + bytes
        }
        func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] { [tag] + length(content.count) + content }
        func integer(_ magnitude: [UInt8]) -> [UInt8] {
            var m = Array(magnitude.drop { $0 == 0 })
            if m.isEmpty || m[0] & 0x80 != 0 { m.insert(0, at: 0) }
            return tlv(0x02, m)
        }
        let e = withUnsafeBytes(of: exponent.bigEndian) { Array($0) }
        let rsaPublicKey = tlv(0x30, integer(modulus) + integer(e))
        let algorithm: [UInt8] = [0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00]
        return tlv(0x30, algorithm + tlv(0x03, [0] + rsaPublicKey))
    }
}
