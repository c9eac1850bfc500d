public import Foundation
public import BinaryFormat

/// How one rule of a policy came out.
public enum RuleStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// The claim satisfies the rule.
    case pass
    /// The claim violates the rule; the evidence is not admitted.
    case fail
    /// The claim is accepted only because of a waiver, or the rule is advisory; admitted with a warning.
    case warn
    /// The policy does not constrain this (unset means not checked, as in go-sev-guest's `validate`).
    case notChecked = "not-checked"
}

/// The AR4SI trustworthiness claim a rule informs (draft-ietf-rats-ar4si; SERVICES.md §4.2).
public enum TrustClaim: String, Sendable, Hashable, Codable, CaseIterable {
    case instanceIdentity = "instance-identity"
    case configuration
    case executables
    case fileSystem = "file-system"
    case hardware
    case runtimeOpaque = "runtime-opaque"
    case storageOpaque = "storage-opaque"
    case sourcedData = "sourced-data"

    /// The integer key of the claim in the CBOR form (`ar4si.cddl`).
    public var cborKey: Int {
        switch self {
        case .instanceIdentity: 0
        case .configuration: 1
        case .executables: 2
        case .fileSystem: 3
        case .hardware: 4
        case .runtimeOpaque: 5
        case .storageOpaque: 6
        case .sourcedData: 7
        }
    }
}

/// One rule's result: what the policy expected, what the evidence said, and — when it did not pass — a hint a
/// person can act on.
public struct RuleOutcome: Sendable, Hashable, Codable {
    /// Stable rule identifier, e.g. `snp.tcb.reported.minimum` or `tdx.debug`.
    public let rule: String
    public let status: RuleStatus
    /// What the policy asked for, in words or values (`>= bootloader 3, tee 0, snp 8, microcode 115`).
    public let expected: String
    /// What the evidence said.
    public let actual: String
    /// What to do about a failure or warning; nil when the rule passed.
    public let hint: String?
    /// The trustworthiness claim this rule contributes to.
    public let trustClaim: TrustClaim
    /// The AR4SI value this outcome gives its claim (2 approved, 32 known vulnerabilities, 96 contraindicated ...).
    public let trustValue: Int8

    public init(
        rule: String, status: RuleStatus, expected: String, actual: String, hint: String? = nil,
        trustClaim: TrustClaim, trustValue: Int8
    ) {
        self.rule = rule
        self.status = status
        self.expected = expected
        self.actual = actual
        self.hint = hint
        self.trustClaim = trustClaim
        self.trustValue = trustValue
    }
}

/// The AR4SI trustworthiness vector: eight claims, each an integer in -128...127; an absent claim means "no claim".
public struct TrustVector: Sendable, Hashable, Codable {
    public private(set) var claims: [TrustClaim: Int8]

    public init(_ claims: [TrustClaim: Int8] = [:]) { self.claims = claims }

    public subscript(claim: TrustClaim) -> Int8? {
        get { claims[claim] }
        set { claims[claim] = newValue }
    }

    /// The AR4SI tier of one claim value (`trustclaim.go` tiers; SERVICES.md §4.2).
    public static func tier(of value: Int8) -> Tier {
        switch value {
        case -1...1: .none
        case -32 ... -2, 2...31: .affirming
        case -96 ... -33, 32...95: .warning
        default: .contraindicated
        }
    }

    /// The status an EAR must carry: no better than its worst claim's tier; `none` when there are no claims.
    public var status: Tier {
        claims.values.map(TrustVector.tier(of:)).max() ?? .none
    }

    /// EAR appraisal status tiers, ordered from best to worst (with `none` first: "no claim").
    public enum Tier: String, Sendable, Hashable, Codable, Comparable, CaseIterable {
        case none
        case affirming
        case warning
        case contraindicated

        /// The CBOR form of the tier (`ear-appraisal.cddl`).
        public var cborValue: Int {
            switch self {
            case .none: 0
            case .affirming: 2
            case .warning: 32
            case .contraindicated: 96
            }
        }

        private var rank: Int {
            switch self {
            case .none: 0
            case .affirming: 1
            case .warning: 2
            case .contraindicated: 3
            }
        }

        public static func < (a: Tier, b: Tier) -> Bool { a.rank < b.rank }
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: Int8].self)
        var claims: [TrustClaim: Int8] = [:]
        for (key, value) in raw {
            guard let claim = TrustClaim(rawValue: key) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown trust claim '\(key)'"))
            }
            claims[claim] = value
        }
        self.claims = claims
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Dictionary(uniqueKeysWithValues: claims.map { ($0.key.rawValue, $0.value) }))
    }
}

/// The decision a policy reached.
public enum Verdict: String, Sendable, Hashable, Codable {
    /// Every rule passed or was waived: hand over what the policy names.
    case admit
    /// At least one rule failed: hand over nothing.
    case reject
}

/// A dated item the verification relied on that will stop being valid: a certificate, a CRL, TCB Info, a waiver.
public struct Expiry: Sendable, Hashable, Codable {
    /// `certificate`, `crl`, `tcb-info`, `qe-identity`, `waiver`.
    public let kind: String
    /// What it is, e.g. the certificate subject or the waiver's advisory.
    public let name: String
    public let notAfter: Date

    public init(kind: String, name: String, notAfter: Date) {
        self.kind = kind
        self.name = name
        self.notAfter = notAfter
    }
}

/// Everything a policy evaluation decided and why: the input to attestation results (EAR) and to the audit log.
public struct Appraisal: Sendable, Hashable, Codable {
    public struct PolicyReference: Sendable, Hashable, Codable {
        public let id: String
        public let version: Int
        /// SHA-256 of the policy file's canonical content, lower-case hex.
        public let digest: String

        public init(id: String, version: Int, digest: String) {
            self.id = id
            self.version = version
            self.digest = digest
        }
    }

    public let policy: PolicyReference
    /// `sev-snp` or `tdx` (later `tpm`).
    public let evidenceType: String
    /// Whether the evidence came from cmk's simulated platform. Always surfaced, never silent.
    public let simulated: Bool
    /// SHA-256 of the evidence bytes as received (report, quote), lower-case hex.
    public let evidenceDigest: String
    /// SHA-256 of each collateral item used, by name (`vcek`, `ask`, `crl`, `tcb-info` ...).
    public let collateralDigests: [String: String]
    public let verdict: Verdict
    /// One outcome per rule, in the policy's order; every failure is here, not only the first.
    public let outcomes: [RuleOutcome]
    public let trustVector: TrustVector
    /// When the evaluation ran (the instant every time-based rule used).
    public let evaluatedAt: Date
    /// Certificates, collateral and waivers that expire; what the audit report warns about.
    public let expiries: [Expiry]
    /// What a success hands over (empty on reject).
    public let handover: Handover

    public init(
        policy: PolicyReference, evidenceType: String, simulated: Bool, evidenceDigest: String,
        collateralDigests: [String: String], outcomes: [RuleOutcome], evaluatedAt: Date, expiries: [Expiry],
        handover: Handover
    ) {
        self.policy = policy
        self.evidenceType = evidenceType
        self.simulated = simulated
        self.evidenceDigest = evidenceDigest
        self.collateralDigests = collateralDigests
        self.outcomes = outcomes
        let admitted = !outcomes.contains { $0.status == .fail }
        self.verdict = admitted ? .admit : .reject
        var vector = TrustVector()
        for outcome in outcomes where outcome.status != .notChecked {
            // The worst value per claim wins: a claim is only as good as its weakest rule.
            if let current = vector[outcome.trustClaim], TrustVector.tier(of: current) >= TrustVector.tier(of: outcome.trustValue) {
                continue
            }
            vector[outcome.trustClaim] = outcome.trustValue
        }
        self.trustVector = vector
        self.evaluatedAt = evaluatedAt
        self.expiries = expiries
        self.handover = admitted ? handover : Handover()
    }

    /// The outcomes that failed.
    public var failures: [RuleOutcome] { outcomes.filter { $0.status == .fail } }
}

/// What a policy hands over to an admitted instance: references, never the secrets themselves.
public struct Handover: Sendable, Hashable, Codable {
    /// Secret references, e.g. `vault:db/credentials` or `file:secrets/db.key`.
    public var secrets: [String]
    /// Data volumes by name.
    public var volumes: [String]
    /// Instances (by name or policy id) this instance may open sealed channels with.
    public var channelPeers: [String]
    /// Launch measurements (SEV-SNP MEASUREMENT, TDX MRTD) pinned for some of ``channelPeers``: the instance's
    /// manifest carries them, and its child refuses a channel peer with another value. Nil when nothing is pinned
    /// (and then absent from the policy's canonical JSON, so digests of policies without pins do not change).
    public var channelPeerMeasurements: [String: [HexBytes]]?

    public init(
        secrets: [String] = [], volumes: [String] = [], channelPeers: [String] = [],
        channelPeerMeasurements: [String: [HexBytes]]? = nil
    ) {
        self.secrets = secrets
        self.volumes = volumes
        self.channelPeers = channelPeers
        self.channelPeerMeasurements = channelPeerMeasurements
    }

    public var isEmpty: Bool { secrets.isEmpty && volumes.isEmpty && channelPeers.isEmpty }
}
