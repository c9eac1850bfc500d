public import AttestationPolicy
public import Foundation

/// The EAR profile a token declares in `eat_profile`; it fixes the claim names (SERVICES.md §4.1).
public enum EARProfile: String, Sendable, Hashable, CaseIterable {
    /// The deployed dialect (veraison/ear, rust-ear, Veraison): dotted names, one policy id string. cmk's default.
    case veraison = "tag:github.com,2023:veraison/ear"
    /// Trustee's profile: the deployed dialect's names under Trustee's tag. Read; cmk does not emit it by default.
    case trustee = "tag:github.com,2024:confidential-containers/Trustee"
    /// draft-ietf-rats-ear-03: underscore names, an array of policy ids, an optional top-level status.
    case draft03 = "tag:ietf.org,2026:rats/ear#03"

    /// Which set of claim names the profile uses.
    public var dialect: EARDialect { self == .draft03 ? .draft03 : .deployed }
}

/// The two sets of EAR claim names in use.
public enum EARDialect: Sendable, Hashable {
    /// `ear.status`, `ear.trustworthiness-vector`, `ear.appraisal-policy-id` (a string), `ear.verifier-id`.
    case deployed
    /// `ear_status`, `ear_trustworthiness_vector`, `ear_appraisal_policy_ids` (an array), `ear_verifier_id`.
    case draft03
}

/// Who produced an attestation result: `ear.verifier-id` / `ear_verifier_id`.
public struct EARVerifierID: Sendable, Hashable {
    /// The verifier's developer, as a URI.
    public let developer: String
    /// The verifier's build, e.g. `cmk 0.4.0`.
    public let build: String

    public init(developer: String, build: String) {
        self.developer = developer
        self.build = build
    }

    /// The developer URI cmk puts in its verifier id.
    public static let cmkDeveloper = "https://cmk.dev/verifier"

    /// cmk's verifier id for the given cmk version: developer `https://cmk.dev/verifier`, build `cmk <version>`.
    public static func cmk(version: String) -> EARVerifierID {
        EARVerifierID(developer: cmkDeveloper, build: "cmk \(version)")
    }
}

/// Submodule labels cmk uses (docs/attestation-results.md "Submodule labels").
public enum EARSubmodLabel {
    /// The confidential VM's CPU TEE (SEV-SNP report or TDX quote), as Trustee labels it.
    public static let cpu = "cpu0"
}

/// cmk's own claim in each appraisal (`ear.cmk.appraisal`, `ear_cmk_appraisal`, CBOR key -71000): what the policy
/// decided and why, so a relying party can audit the result without cmk's audit log.
public struct EARCMKAppraisal: Sendable, Hashable {
    public let policyID: String
    public let policyVersion: Int
    /// SHA-256 of the policy's canonical content, lower-case hex.
    public let policyDigest: String
    /// `sev-snp` or `tdx`.
    public let evidenceType: String
    public let verdict: Verdict
    /// Whether the evidence came from cmk's simulated platform; always present, true for simulated evidence.
    public let simulated: Bool
    /// SHA-256 of the evidence as received, lower-case hex.
    public let evidenceDigest: String
    /// SHA-256 of each collateral item used, by name.
    public let collateralDigests: [String: String]
    /// When the policy was evaluated, in seconds since 1970.
    public let evaluatedAt: Int64
    /// Every rule's outcome, in the policy's order.
    public let outcomes: [RuleOutcome]

    public init(
        policyID: String, policyVersion: Int, policyDigest: String, evidenceType: String, verdict: Verdict,
        simulated: Bool, evidenceDigest: String, collateralDigests: [String: String], evaluatedAt: Int64,
        outcomes: [RuleOutcome]
    ) {
        self.policyID = policyID
        self.policyVersion = policyVersion
        self.policyDigest = policyDigest
        self.evidenceType = evidenceType
        self.verdict = verdict
        self.simulated = simulated
        self.evidenceDigest = evidenceDigest
        self.collateralDigests = collateralDigests
        self.evaluatedAt = evaluatedAt
        self.outcomes = outcomes
    }

    /// The claim for one policy evaluation.
    public init(appraisal: Appraisal) {
        self.init(
            policyID: appraisal.policy.id, policyVersion: appraisal.policy.version,
            policyDigest: appraisal.policy.digest,
            evidenceType: appraisal.evidenceType, verdict: appraisal.verdict, simulated: appraisal.simulated,
            evidenceDigest: appraisal.evidenceDigest, collateralDigests: appraisal.collateralDigests,
            evaluatedAt: EARClaims.seconds(appraisal.evaluatedAt), outcomes: appraisal.outcomes)
    }
}

/// One submodule's appraisal in an EAR: its status, trustworthiness vector, policy ids and cmk's claim.
///
/// The status is never better than the worst tier of the vector (AR4SI; SERVICES.md §4.2): the initializer throws
/// `statusBetterThanTrustVector` otherwise, for values built here and for values read from a token.
public struct EARAppraisal: Sendable, Hashable {
    /// `ear.status` / `ear_status`.
    public let status: TrustVector.Tier
    /// `ear.trustworthiness-vector`; claims with value 0 ("no claim") are dropped, as an absent claim means 0.
    public let trustVector: TrustVector
    /// The policies applied, in order. The deployed dialect carries only the first (`ear.appraisal-policy-id`).
    public let policyIDs: [String]
    /// cmk's claim; nil in results from other verifiers.
    public let cmk: EARCMKAppraisal?

    public init(
        status: TrustVector.Tier, trustVector: TrustVector, policyIDs: [String], cmk: EARCMKAppraisal? = nil
    ) throws(AttestationResultsError) {
        let vector = TrustVector(trustVector.claims.filter { $0.value != 0 })
        guard status >= vector.status else {
            throw AttestationResultsError(
                .statusBetterThanTrustVector,
                "the status '\(status.rawValue)' is better than the trustworthiness vector allows "
                    + "('\(vector.status.rawValue)' or worse)")
        }
        if let cmk, cmk.verdict == .reject, status != .contraindicated {
            throw AttestationResultsError(
                .invalidClaims, "cmk's verdict is reject but the status is '\(status.rawValue)', not 'contraindicated'")
        }
        self.status = status
        self.trustVector = vector
        self.policyIDs = policyIDs
        self.cmk = cmk
    }

    /// The appraisal for one policy evaluation.
    ///
    /// The status is the worst tier of the appraisal's trust vector; a rejected appraisal is `contraindicated`
    /// whatever its vector says, so no relying party can read a rejection as acceptable.
    public init(appraisal: Appraisal) throws(AttestationResultsError) {
        let status: TrustVector.Tier = appraisal.verdict == .reject ? .contraindicated : appraisal.trustVector.status
        try self.init(
            status: status, trustVector: appraisal.trustVector, policyIDs: [Self.policyID(for: appraisal.policy)],
            cmk: EARCMKAppraisal(appraisal: appraisal))
    }

    /// The number of hex digits of the policy digest that go into a policy id.
    public static let policyDigestPrefixLength = 16

    /// cmk's appraisal policy id: `policy:cmk/<id>@<version>#<first 16 hex digits of the policy digest>`.
    public static func policyID(for policy: Appraisal.PolicyReference) -> String {
        "policy:cmk/\(policy.id)@\(policy.version)#\(policy.digest.prefix(policyDigestPrefixLength))"
    }
}

/// The claims of an EAR (EAT Attestation Result, draft-ietf-rats-ear): what cmk signs as a JWT or a CWT.
///
/// The initializer enforces what every token must satisfy: at least one submodule, a nonce of 8 to 64 bytes,
/// `exp` not before `iat`, each appraisal's status no worse than allowed by its vector, and in the draft-03
/// dialect a top-level status no better than the worst submodule's.
public struct EARClaims: Sendable, Hashable {
    /// `eat_profile`, which also selects the claim names of the serialized forms.
    public let profile: EARProfile
    /// `iat`, seconds since 1970.
    public let issuedAt: Int64
    /// `exp`, seconds since 1970.
    public let expiresAt: Int64?
    /// `iss`.
    public let issuer: String?
    /// `ear.verifier-id` / `ear_verifier_id`.
    public let verifierID: EARVerifierID
    /// `eat_nonce`: the relying party's challenge, 8 to 64 bytes.
    public let nonce: [UInt8]?
    /// `submods`: appraisals by label (cmk uses `cpu0`, see ``EARSubmodLabel``).
    public let submods: [String: EARAppraisal]
    /// The draft-03 top-level `ear_status`; nil in the deployed dialect, which has none.
    public let status: TrustVector.Tier?

    /// The shortest and longest `eat_nonce` accepted, in bytes (RFC 9711 §4.1).
    public static let nonceLengths = 8...64

    /// Claims from their parts, checked against the rules above.
    ///
    /// - Parameter status: the draft-03 top-level status; nil means the worst submodule status. Ignored (stored as
    ///   nil) for the deployed dialect, which has no top-level status.
    public init(
        profile: EARProfile = .veraison, issuedAt: Int64, expiresAt: Int64? = nil, issuer: String? = nil,
        verifierID: EARVerifierID, nonce: [UInt8]? = nil, submods: [String: EARAppraisal],
        status: TrustVector.Tier? = nil
    ) throws(AttestationResultsError) {
        guard !submods.isEmpty else {
            throw AttestationResultsError(.invalidClaims, "an EAR needs at least one submodule")
        }
        guard !submods.keys.contains("") else {
            throw AttestationResultsError(.invalidClaims, "a submodule label is empty")
        }
        if let nonce, !Self.nonceLengths.contains(nonce.count) {
            throw AttestationResultsError(.invalidClaims, "eat_nonce is \(nonce.count) bytes; 8 to 64 are allowed")
        }
        if let expiresAt, expiresAt < issuedAt {
            throw AttestationResultsError(.invalidClaims, "exp (\(expiresAt)) lies before iat (\(issuedAt))")
        }
        let worst = submods.values.map(\.status).max() ?? .none
        var overall: TrustVector.Tier? = nil
        if profile.dialect == .draft03 {
            overall = status ?? worst
            if let overall, overall < worst {
                throw AttestationResultsError(
                    .statusBetterThanTrustVector,
                    "the top-level status '\(overall.rawValue)' is better than the worst submodule's "
                        + "'\(worst.rawValue)'"
                )
            }
        }
        self.profile = profile
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.issuer = issuer
        self.verifierID = verifierID
        self.nonce = nonce
        self.submods = submods
        self.status = overall
    }

    /// The claims for one policy evaluation, as submodule `label` (default `cpu0`).
    ///
    /// - Parameters:
    ///   - issuedAt: the signing time (`iat`); `expiresAt` the end of the result's validity (`exp`).
    ///   - nonce: the relying party's challenge, echoed as `eat_nonce`.
    ///   - profile: `.veraison` (the deployed dialect, the default) or `.draft03`.
    public init(
        appraisal: Appraisal, verifierID: EARVerifierID, issuedAt: Date, expiresAt: Date? = nil,
        issuer: String? = nil, nonce: [UInt8]? = nil, profile: EARProfile = .veraison,
        label: String = EARSubmodLabel.cpu
    ) throws(AttestationResultsError) {
        try self.init(
            profile: profile, issuedAt: Self.seconds(issuedAt), expiresAt: expiresAt.map(Self.seconds), issuer: issuer,
            verifierID: verifierID, nonce: nonce, submods: [label: try EARAppraisal(appraisal: appraisal)])
    }

    /// The worst status of any submodule.
    public var worstStatus: TrustVector.Tier { submods.values.map(\.status).max() ?? .none }

    /// Checks `iat` and `exp` against the validation time, allowing `leeway` seconds of clock skew.
    public func checkTimes(at now: Date, leeway: TimeInterval = 60) throws(AttestationResultsError) {
        let current = now.timeIntervalSince1970
        if Double(issuedAt) > current + leeway {
            throw AttestationResultsError(
                .issuedInFuture, "the result was issued at \(issuedAt), after \(Int64(current))")
        }
        if let expiresAt, Double(expiresAt) + leeway <= current {
            throw AttestationResultsError(.expired, "the result expired at \(expiresAt), before \(Int64(current))")
        }
    }

    /// Whole seconds since 1970, rounded down (EAR times are integers).
    static func seconds(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }
}
