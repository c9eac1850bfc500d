public import Attestation
public import BinaryFormat
public import Foundation
import Crypto
public import SEVSNP

/// An attestation policy: what evidence must say before an instance is admitted, and what it then receives.
///
/// Written in YAML (docs/policy-language.md, docs/policy.schema.json) and loaded strictly by
/// ``PolicyLoader``. A policy is a value: its ``digest`` covers everything it enforces, including values the
/// loader derived from reference artifacts, so an audit record's digest says exactly what was applied.
public struct Policy: Sendable, Hashable, Codable {
    /// The evidence a policy appraises.
    public enum EvidenceKind: String, Sendable, Hashable, Codable, CaseIterable {
        case sevSNP = "sev-snp"
        case tdx
    }

    /// Which roots the evidence's chain may end in, and how revocation is handled.
    public struct Trust: Sendable, Hashable, Codable {
        /// Root names: amd-milan, amd-genoa, amd-turin, intel-sgx-root; simulated roots only when named.
        public var roots: [String]
        public var crl: RevocationMode
    }

    /// How REPORT_DATA must be bound to the request.
    public enum ReportDataBinding: String, Sendable, Hashable, Codable, CaseIterable {
        /// REPORT_DATA = SHA-512(label ‖ nonce) (GuestProtocol's `ReportData.binding`).
        case nonce
        /// REPORT_DATA = SHA-512(label ‖ nonce ‖ public key): the evidence vouches for a key the instance holds.
        case nonceAndKey = "nonce-and-key"
        /// Not bound (lint flags it: replayable evidence).
        case none
    }

    /// Freshness requirements.
    public struct Freshness: Sendable, Hashable, Codable {
        /// Maximum seconds between the evidence's collection (nonce issue) and the evaluation.
        public var maxEvidenceAge: Int?
        public var reportData: ReportDataBinding
    }

    /// A value that must equal the digest of the instance manifest, or a fixed value.
    public enum Binding: Sendable, Hashable, Codable {
        /// HOST_DATA = SHA-256(manifest), MRCONFIGID = SHA-384(manifest): the coordinator sets it at launch.
        case manifest
        case value(HexBytes)
    }

    /// The minimum TCB components for one product; nil components are not constrained.
    public struct ProductTCB: Sendable, Hashable, Codable {
        public var product: AMDProduct
        public var reported: SNPTCBVersion.Components?
        public var committed: SNPTCBVersion.Components?
        public var launch: SNPTCBVersion.Components?
    }

    /// Where a measurement may come from: a list of digests, reference artifacts the loader measures, or both.
    public struct MeasurementRule: Sendable, Hashable, Codable {
        /// Digests written in the policy.
        public var allow: [HexBytes]
        /// Reference artifacts the loader measured, and what each gave.
        public var references: [DerivedReference]

        /// Every acceptable value.
        public var acceptable: [HexBytes] { allow + references.map(\.digest) }
    }

    /// A measurement the loader computed from reference artifacts.
    public struct DerivedReference: Sendable, Hashable, Codable {
        /// What was measured: the artifacts' paths and SHA-256 digests, and the launch parameters.
        public var inputs: [String: String]
        public var digest: HexBytes
    }

    public enum Permission: String, Sendable, Hashable, Codable {
        case allowed
        case forbidden
    }

    /// Rules for SEV-SNP evidence.
    public struct SNPRules: Sendable, Hashable, Codable {
        public var measurement: MeasurementRule?
        /// Minimum TCBs, one entry per product (in the order Milan, Genoa, Turin).
        public var tcb: [ProductTCB]
        public var debug: Permission
        public var migrationAgent: Permission
        /// nil: not checked.
        public var smt: Permission?
        public var minimumABI: String?
        public var platformRequire: [String]
        public var platformForbid: [String]
        /// The required VMPL; nil: not checked.
        public var vmpl: Int?
        public var hostData: Binding?
        /// VCEK and/or VLEK; empty: either.
        public var signers: [String]
        /// CHIP_IDs allowed (pins hardware); empty: any.
        public var chipIDs: [HexBytes]
        public var minimumGuestSVN: Int?
    }

    /// A time-limited acceptance of a TDX TCB status with named advisories.
    public struct Waiver: Sendable, Hashable, Codable {
        public var status: String
        public var advisories: [String]
        public var expires: Date
        public var reason: String
    }

    /// Rules for TDX evidence.
    public struct TDXRules: Sendable, Hashable, Codable {
        public var mrTD: MeasurementRule?
        /// RTMR index → allowed values.
        public var rtmrs: [Int: [HexBytes]]
        public var mrConfigID: Binding?
        public var mrSeam: [HexBytes]
        public var debug: Permission
        /// Intel TCB statuses accepted outright.
        public var acceptedStatuses: [String]
        public var waivers: [Waiver]
        /// Whether the TD's event log (CCEL) must come with the quote; when it does, it must replay to RTMR0–3.
        public var eventLog: EventLogRequirement
    }

    /// `tdx.event-log`: `required` (no log, no admission) or `if-present` (a log that comes is replayed and must
    /// match; its absence is reported as not checked).
    public enum EventLogRequirement: String, Sendable, Hashable, Codable {
        case required
        case ifPresent = "if-present"
    }

    public let id: String
    public let version: Int
    public let description: String
    public let evidence: EvidenceKind
    public let trust: Trust
    public let freshness: Freshness
    public let snp: SNPRules?
    public let tdx: TDXRules?
    /// Rules for the vTPM quote and event log that accompany the TEE evidence; nil: no vTPM evidence required.
    public let tpm: TPMRules?
    public let handover: Handover
    /// SHA-256 of the canonical JSON of everything above, lower-case hex.
    public private(set) var digest: String

    init(
        id: String, version: Int, description: String, evidence: EvidenceKind, trust: Trust, freshness: Freshness,
        snp: SNPRules?, tdx: TDXRules?, tpm: TPMRules? = nil, handover: Handover
    ) {
        self.id = id
        self.version = version
        self.description = description
        self.evidence = evidence
        self.trust = trust
        self.freshness = freshness
        self.snp = snp
        self.tdx = tdx
        self.tpm = tpm
        self.handover = handover
        self.digest = ""
        self.digest = Self.contentDigest(self)
    }

    /// The reference to this policy an appraisal, an EAR and an audit record carry.
    public var reference: Appraisal.PolicyReference { .init(id: id, version: version, digest: digest) }

    /// The simulated roots cmk's platform simulator signs with; trusted only when a policy names them.
    public static let simulatedRoots: Set<String> = ["simulated-amd", "simulated-intel"]
    /// Hardware vendors' roots by name.
    public static let hardwareRoots: [EvidenceKind: Set<String>] = [
        .sevSNP: ["amd-milan", "amd-genoa", "amd-turin"], .tdx: ["intel-sgx-root"],
    ]

    /// The canonical form: JSON with sorted keys, dates as seconds since 1970, digest field blank.
    static func contentDigest(_ policy: Policy) -> String {
        var copy = policy
        copy.digest = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .secondsSince1970
        let data = (try? encoder.encode(copy)) ?? Data()
        return Hex.encode(Array(SHA256.hash(data: data)))
    }
}
