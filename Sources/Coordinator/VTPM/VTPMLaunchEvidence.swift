public import Attestation
public import Foundation
import BinaryFormat
import GuestProtocol

/// What a child with a vTPM presents at launch beside its TEE evidence: the quote, its signature, the AK and the event
/// log (``TPMEvidence``), and the credential activation that bound the AK to the EK.
public struct VTPMLaunchEvidence: Sendable {
    public let evidence: TPMEvidence
    public let activation: TPMCredentialActivation

    public init(evidence: TPMEvidence, activation: TPMCredentialActivation) {
        self.evidence = evidence
        self.activation = activation
    }

    /// The AK's TPMT_PUBLIC (without a TPM2B size), the bytes whose SHA-256 REPORT_DATA binds.
    public var attestationKeyPublicArea: [UInt8] { evidence.attestationKey }

    /// The files under `<instance folder>/vtpm/`, each as tpm2-tools reads it, so the launch's evidence can be checked
    /// again by anyone (`tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -q <nonce.hex>`,
    /// `tpm2_eventlog eventlog.bin`, `cmk evidence verify --tpm quote.msg ...`).
    public static let fileNames = (
        quote: "quote.msg", signature: "quote.sig", attestationKey: "ak.pub", eventLog: "eventlog.bin", nonce: "nonce.hex"
    )

    /// Writes the evidence files into `<folder>/vtpm/`: the TPMS_ATTEST, the TPMT_SIGNATURE, the AK as TPM2B_PUBLIC,
    /// the event log and the nonce (hex).
    public func write(to folder: URL, nonce: [UInt8]) throws {
        let directory = folder.appendingPathComponent("vtpm")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = Self.fileNames
        let ak = evidence.attestationKey
        let sized = [UInt8(ak.count >> 8 & 0xFF), UInt8(ak.count & 0xFF)] + ak
        for (name, bytes) in [
            (names.quote, evidence.quote), (names.signature, evidence.signature), (names.attestationKey, sized),
            (names.eventLog, evidence.eventLog), (names.nonce, Array(Hex.encode(nonce).utf8)),
        ] {
            try Data(bytes).write(to: directory.appendingPathComponent(name))
        }
    }

    /// Writes what the TEE report binds beside the evidence files: `bound-key.hex` (the session key followed by
    /// SHA-256 of the AK) and, once the TEE evidence verified, `report-data.hex` (its REPORT_DATA).
    public func writeBinding(to folder: URL, boundKey: [UInt8], reportData: [UInt8]?) throws {
        let directory = folder.appendingPathComponent("vtpm")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(Hex.encode(boundKey).utf8).write(to: directory.appendingPathComponent("bound-key.hex"))
        if let reportData {
            try Data(Hex.encode(reportData).utf8).write(to: directory.appendingPathComponent("report-data.hex"))
        }
    }

    /// The vTPM roots leaf-ward (the intermediate that issues EK certificates, then the local CA's root) and the child's EK
    /// certificate (DER) as swtpm_setup wrote it.
    public static func endorsement(
        localCA: VTPMLocalCA, tpm: SoftwareTPM?
    ) throws -> (roots: [AttestationCertificate], certificate: [UInt8])? {
        guard let tpm else { return nil }
        let root = try AttestationCertificate(pem: String(contentsOf: localCA.rootCertificate, encoding: .utf8))
        let issuer = try AttestationCertificate(pem: String(contentsOf: localCA.issuerCertificate, encoding: .utf8))
        return ([issuer, root], Array(try Data(contentsOf: tpm.ekCertificate)))
    }
}

extension InstanceSupervisor {
    /// A child's answer as a launch error shows it: a `.failure` with its reason (at most 300 characters of
    /// untrusted text), anything else by kind.
    static func describe(_ message: GuestMessage) -> String {
        if case .failure(let reason) = message { return "failure: \(reason.prefix(300))" }
        return "\(message.kind)"
    }
}
