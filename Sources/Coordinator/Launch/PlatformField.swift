public import Attestation
import BinaryFormat

/// One measurement or binding field of a child's verified evidence, under the name its TEE's specification gives
/// it (SEV-SNP: MEASUREMENT, HOST_DATA, REPORT_DATA; TDX: MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0–3), so
/// `cmk inspect` never calls a TD's MRCONFIGID "host data".
public struct PlatformField: Sendable, Codable, Hashable {
    /// The field's name in the specification (`HOST_DATA`, `MRCONFIGID`, `RTMR2` ...).
    public let name: String
    /// Lower-case hex.
    public let value: String
    /// What cmk puts there or what it measures, in a few words.
    public let meaning: String

    public init(name: String, value: String, meaning: String) {
        self.name = name
        self.value = value
        self.meaning = meaning
    }

    /// An SEV-SNP attestation report's fields (SEV-SNP ABI, Table 23: ATTESTATION_REPORT).
    public static func fields(_ claims: SNPClaims) -> [PlatformField] {
        [
            PlatformField(
                name: "MEASUREMENT", value: claims.measurement.description,
                meaning: "launch digest: firmware, kernel hashes, VMSAs"),
            PlatformField(
                name: "HOST_DATA", value: claims.hostData.description,
                meaning: "SHA-256 of the instance manifest, given by the host at launch"),
            PlatformField(
                name: "REPORT_DATA", value: claims.reportData.description,
                meaning: "binds the coordinator's nonce and the agent's key"),
        ]
    }

    /// A TD quote's TD report fields (Intel TDX DCAP Quote v4, TD Quote Body).
    public static func fields(_ claims: TDXClaims) -> [PlatformField] {
        let rtmrMeanings = [
            "firmware configuration (TDVF)", "the kernel, as the firmware loaded it",
            "the kernel command line and initrd", "runtime measurements",
        ]
        return [
            PlatformField(name: "MRTD", value: claims.mrTD.description, meaning: "the TD's initial contents (TDVF)"),
            PlatformField(
                name: "MRCONFIGID", value: claims.mrConfigID.description,
                meaning: "SHA-384 of the instance manifest, given by the host at launch"),
            PlatformField(
                name: "MROWNER", value: claims.mrOwner.description,
                meaning: "the TD owner's identity (unused by cmk: zero)"),
            PlatformField(
                name: "MROWNERCONFIG", value: claims.mrOwnerConfig.description,
                meaning: "owner-defined configuration (unused by cmk: zero)"),
        ]
            + claims.rtmrs.enumerated().map { index, value in
                PlatformField(
                    name: "RTMR\(index)", value: value.description,
                    meaning: index < rtmrMeanings.count ? rtmrMeanings[index] : "runtime measurement register")
            }
            + [
                PlatformField(
                    name: "REPORTDATA", value: claims.reportData.description,
                    meaning: "binds the coordinator's nonce and the agent's key")
            ]
    }
}
