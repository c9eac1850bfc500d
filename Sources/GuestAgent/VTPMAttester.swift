import Crypto
import Glibc

/// The child's side of vTPM attestation (docs/tpm-verification.md, "In the child"): an attestation key (AK) in the
/// endorsement hierarchy beside the EK, credential activation to prove the two share a TPM, and quotes over the
/// PCRs the firmware measured the boot into, with the firmware's event log.
///
/// The AK is a primary key (CreatePrimary in the endorsement hierarchy with a restricted-signing template), so it
/// needs no parent and no policy session to load; only ActivateCredential needs the EK's policy
/// (PolicySecret with the endorsement hierarchy). Both handles stay loaded for the agent's lifetime.
public final class VTPMAttester {
    /// The PCRs every quote covers: the firmware's (0–7), the boot loader's (8) and the EFI stub's (9: initrd,
    /// command line). PCR 10 (IMA) and above are left out: nothing the event log explains.
    public static let quotedPCRs = Array(0...9)
    /// Where the kernel publishes the firmware's TCG event log once securityfs is mounted.
    public static let defaultEventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
    /// The largest event log read (OVMF's is about 5.5 KB).
    static let maximumEventLogSize = 4 << 20

    let device: TPMDevice
    let eventLogPath: String
    /// Whether to mount securityfs when the event log is not there (inside a child).
    let mountSecurityFS: Bool
    /// The EK's TPMT_PUBLIC.
    public let endorsementKey: [UInt8]
    /// The AK's TPMT_PUBLIC.
    public let attestationKey: [UInt8]
    let endorsementHandle: UInt32
    let attestationHandle: UInt32

    /// Finds the EK (swtpm_setup's persistent RSA EK, else the TCG default template recreated) and creates the AK.
    public init(
        device: TPMDevice, eventLogPath: String = VTPMAttester.defaultEventLogPath, mountSecurityFS: Bool = true
    ) throws(GuestAgentError) {
        self.device = device
        self.eventLogPath = eventLogPath
        self.mountSecurityFS = mountSecurityFS
        if let persistent = try? device.readPublic(TPMConstants.persistentRSAEK) {
            endorsementHandle = TPMConstants.persistentRSAEK
            endorsementKey = persistent
        } else {
            let ek = try device.createPrimary(
                hierarchy: TPMConstants.rhEndorsement, template: TPMConstants.endorsementKeyTemplate)
            endorsementHandle = ek.handle
            endorsementKey = ek.publicArea
        }
        let ak = try device.createPrimary(
            hierarchy: TPMConstants.rhEndorsement, template: TPMConstants.attestationKeyTemplate)
        attestationHandle = ak.handle
        attestationKey = ak.publicArea
    }

    deinit {
        device.flush(attestationHandle)
        if endorsementHandle != TPMConstants.persistentRSAEK { device.flush(endorsementHandle) }
    }

    /// SHA-256 of the AK's TPMT_PUBLIC: what REPORT_DATA binds after the session key (``ReportData``).
    public var attestationKeyDigest: [UInt8] { Array(SHA256.hash(data: attestationKey)) }

    /// ActivateCredential with the coordinator's credential (TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET, sizes
    /// included): the secret, which only this TPM can recover, and only while this AK is loaded in it.
    public func activate(credentialBlob: [UInt8], encryptedSecret: [UInt8]) throws(GuestAgentError) -> [UInt8] {
        try device.activateCredential(
            activate: attestationHandle, endorsementKey: endorsementHandle, credentialBlob: credentialBlob,
            encryptedSecret: encryptedSecret)
    }

    /// A quote over ``quotedPCRs`` (SHA-256 bank) with `nonce` as extraData, and the event log that explains it.
    /// The log is read after the quote: an event added in between shows as a replay that no longer matches.
    public func quote(nonce: [UInt8]) throws(GuestAgentError) -> (quote: [UInt8], signature: [UInt8], eventLog: [UInt8]) {
        let (attest, signature) = try device.quote(key: attestationHandle, nonce: nonce, pcrs: Self.quotedPCRs)
        return (attest, signature, try eventLog())
    }

    /// The firmware's event log; securityfs is mounted first when it is not (a child's init does not mount it).
    public func eventLog() throws(GuestAgentError) -> [UInt8] {
        if access(eventLogPath, R_OK) != 0 && mountSecurityFS {
            let mountPoint = "/sys/kernel/security"
            if mount("securityfs", mountPoint, "securityfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) != 0,
                errno != EBUSY
            {
                throw .system(.unavailable, "cannot mount securityfs on \(mountPoint)", errno: errno)
            }
        }
        let log = try FileDescriptor.open(eventLogPath, flags: O_RDONLY).readToEnd(limit: Self.maximumEventLogSize)
        guard !log.isEmpty else {
            throw GuestAgentError(.unavailable, "the firmware's event log \(eventLogPath) is empty")
        }
        return log
    }
}
