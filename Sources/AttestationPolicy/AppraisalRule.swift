public import Attestation
public import BinaryFormat
public import Foundation

/// Verified claims of one piece of evidence: what the rules read.
public enum EvidenceClaims: Sendable {
    case snp(SNPVerificationResult)
    case tdx(TDXVerificationResult)

    public var evidenceType: String {
        switch self {
        case .snp: "sev-snp"
        case .tdx: "tdx"
        }
    }

    public var simulated: Bool {
        switch self {
        case .snp(let result): result.claims.simulated
        case .tdx(let result): result.claims.simulated
        }
    }

    /// The name of the root the chain ended in.
    public var trustAnchor: String {
        switch self {
        case .snp(let result): result.claims.trustAnchor
        case .tdx(let result): result.claims.trustAnchor
        }
    }

    /// The 64 bytes of REPORT_DATA / REPORTDATA.
    public var reportData: [UInt8] {
        switch self {
        case .snp(let result): result.claims.reportData.bytes
        case .tdx(let result): result.claims.reportData.bytes
        }
    }
}

/// What the requester asserts about the request, for the rules that bind evidence to it.
public struct AppraisalContext: Sendable {
    /// The instant every time-based rule uses.
    public var evaluationTime: Date
    /// The nonce the verifier issued for this evidence.
    public var nonce: [UInt8]?
    /// The public key the instance says it holds (bound with `report-data: nonce-and-key`).
    public var boundKey: [UInt8]?
    /// The instance manifest whose digest HOST_DATA (SHA-256) or MRCONFIGID (SHA-384) must carry.
    public var manifest: [UInt8]?
    /// When the evidence was collected (the nonce's issue time); needed for `max-evidence-age`.
    public var collectedAt: Date?
    /// A dry run over recorded evidence (`cmk policy test`): request bindings (nonce, key, manifest, age) that were
    /// not given are reported as not checked instead of failed, since recorded evidence has no live request.
    public var recordedEvidence: Bool

    public init(
        evaluationTime: Date, nonce: [UInt8]? = nil, boundKey: [UInt8]? = nil, manifest: [UInt8]? = nil,
        collectedAt: Date? = nil, recordedEvidence: Bool = false
    ) {
        self.recordedEvidence = recordedEvidence
        self.evaluationTime = evaluationTime
        self.nonce = nonce
        self.boundKey = boundKey
        self.manifest = manifest
        self.collectedAt = collectedAt
    }
}

/// Everything one evaluation reads.
public struct AppraisalInput: Sendable {
    /// The evidence type the requester presented.
    public var evidenceType: String
    /// The verifier's result, or why verification failed (then most rules cannot be checked).
    public var verification: Result<EvidenceClaims, AttestationError>
    /// SHA-256 of the evidence bytes as received.
    public var evidenceDigest: String
    /// SHA-256 of each collateral item used.
    public var collateralDigests: [String: String]
    public var context: AppraisalContext
    /// The event log presented with the evidence (a TD's CCEL), as replayed; nil when none came.
    public var eventLog: ReplayedEventLog?
    /// The vTPM quote's verification, when vTPM evidence came with the TEE evidence (see `EvidenceAppraiser`).
    public var tpm: Result<TPMVerificationResult, AttestationError>?

    public init(
        evidenceType: String, verification: Result<EvidenceClaims, AttestationError>, evidenceDigest: String,
        collateralDigests: [String: String] = [:], context: AppraisalContext, eventLog: ReplayedEventLog? = nil,
        tpm: Result<TPMVerificationResult, AttestationError>? = nil
    ) {
        self.tpm = tpm
        self.evidenceType = evidenceType
        self.verification = verification
        self.evidenceDigest = evidenceDigest
        self.collateralDigests = collateralDigests
        self.context = context
        self.eventLog = eventLog
    }

    /// The claims when verification succeeded.
    public var claims: EvidenceClaims? { try? verification.get() }
}

/// An event log that came with the evidence, replayed by the appraiser: the registers it extends to, or why it
/// could not be read. The rules compare the registers with the verified evidence's.
public enum ReplayedEventLog: Sendable {
    /// The log's SHA-384 bank replayed to RTMR0–3 from `events` measured events in `size` bytes.
    case tdx(rtmrs: [HexBytes], events: Int, size: Int)
    /// The log cannot be parsed or replayed (the reason names the record and field).
    case unreadable(reason: String, size: Int)
}

/// One check of a policy: a small `Sendable` value that looks at the input and returns an outcome — never throws
/// (in the style of swift-certificates' `VerifierPolicy`: a failure is a returned value with a reason).
public protocol AppraisalRule: Sendable {
    /// Stable identifier, e.g. `snp.guest-policy.debug`.
    var id: String { get }
    func evaluate(_ input: AppraisalInput) -> RuleOutcome
}

/// A rule written as a closure.
public struct Rule: AppraisalRule {
    public let id: String
    let claim: TrustClaim
    let body: @Sendable (AppraisalInput, Rule) -> RuleOutcome

    public init(_ id: String, claim: TrustClaim, _ body: @escaping @Sendable (AppraisalInput, Rule) -> RuleOutcome) {
        self.id = id
        self.claim = claim
        self.body = body
    }

    public func evaluate(_ input: AppraisalInput) -> RuleOutcome { body(input, self) }

    /// A passing outcome (AR4SI value 2 unless told).
    public func pass(_ expected: String, _ actual: String, value: Int8 = 2) -> RuleOutcome {
        RuleOutcome(rule: id, status: .pass, expected: expected, actual: actual, trustClaim: claim, trustValue: value)
    }

    /// A failing outcome with a hint.
    public func fail(_ expected: String, _ actual: String, hint: String, value: Int8) -> RuleOutcome {
        RuleOutcome(rule: id, status: .fail, expected: expected, actual: actual, hint: hint, trustClaim: claim, trustValue: value)
    }

    /// A passing-with-warning outcome (a waiver applied, a simulated platform ...).
    public func warn(_ expected: String, _ actual: String, hint: String, value: Int8) -> RuleOutcome {
        RuleOutcome(rule: id, status: .warn, expected: expected, actual: actual, hint: hint, trustClaim: claim, trustValue: value)
    }

    /// The rule could not be checked because verification failed first.
    public func unchecked(_ expected: String, because: String = "the evidence did not verify") -> RuleOutcome {
        RuleOutcome(rule: id, status: .notChecked, expected: expected, actual: because, trustClaim: claim, trustValue: 0)
    }
}

/// Composes rules: `if`, `for` and optional rules read as plain Swift.
@resultBuilder
public enum RuleBuilder {
    public static func buildExpression(_ rule: any AppraisalRule) -> [any AppraisalRule] { [rule] }
    public static func buildExpression(_ rules: [any AppraisalRule]) -> [any AppraisalRule] { rules }
    public static func buildBlock(_ parts: [any AppraisalRule]...) -> [any AppraisalRule] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [any AppraisalRule]?) -> [any AppraisalRule] { part ?? [] }
    public static func buildEither(first part: [any AppraisalRule]) -> [any AppraisalRule] { part }
    public static func buildEither(second part: [any AppraisalRule]) -> [any AppraisalRule] { part }
    public static func buildArray(_ parts: [[any AppraisalRule]]) -> [any AppraisalRule] { parts.flatMap { $0 } }
}

/// A group of rules evaluated together: every rule runs, so every failure is reported at once.
public struct AllOfRules: Sendable {
    public let rules: [any AppraisalRule]

    public init(@RuleBuilder _ rules: () -> [any AppraisalRule]) { self.rules = rules() }

    public func evaluate(_ input: AppraisalInput) -> [RuleOutcome] { rules.map { $0.evaluate(input) } }
}
