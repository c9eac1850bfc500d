public import AttestationPolicy
public import Foundation

/// A finding about a policy's security posture: the policy linter's own type, passed into a report as it is.
public typealias PostureFinding = PolicyFinding

/// What happened in a time window, per policy, with the log's integrity proof (docs/audit.md, "Reports").
///
/// Build it with ``init(log:options:)`` and render it with ``rendered(as:)`` as JSON, Markdown or one
/// self-contained HTML file.
public struct AuditReport: Sendable, Hashable, Codable {
    /// The value of ``format`` in this version of the report.
    public static let formatIdentifier = "cmk.audit-report.v1"

    /// The renderings a report has.
    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// Stable JSON (sorted keys), documented in docs/audit.md.
        case json
        /// Markdown, for a ticket or a wiki.
        case md
        /// One self-contained HTML file with inline CSS and SVG charts.
        case html
    }

    /// What to report on.
    public struct Options: Sendable {
        /// The records whose time lies in `[start, end)`.
        public var window: DateInterval
        /// Only this policy, when set.
        public var policyID: String?
        /// Posture findings to show beside each policy.
        public var findings: [PostureFinding]
        /// Certificates and collateral expiring within this long after ``generatedAt`` are listed.
        public var expiryHorizon: TimeInterval
        /// The report's time: expiries are measured from it.
        public var generatedAt: Date
        /// The key checkpoint signatures are checked against; defaults to the log's own key.
        public var trustedKey: CheckpointKey?

        public init(
            window: DateInterval, policyID: String? = nil, findings: [PostureFinding] = [],
            expiryHorizon: TimeInterval = 30 * 86_400, generatedAt: Date = Date(), trustedKey: CheckpointKey? = nil
        ) {
            self.window = window
            self.policyID = policyID
            self.findings = findings
            self.expiryHorizon = expiryHorizon
            self.generatedAt = generatedAt
            self.trustedKey = trustedKey
        }
    }

    /// The reported time span: records with `start <= time < end`.
    public struct Window: Sendable, Hashable, Codable {
        public let start: Date
        public let end: Date
    }

    /// Counts over every policy in the report.
    public struct Totals: Sendable, Hashable, Codable {
        /// Records of any kind in the window (after the policy filter).
        public let records: Int
        public let evaluations: Int
        public let admitted: Int
        public let rejected: Int
        public let simulated: Int
    }

    /// Evaluations per time bucket, for the chart over time.
    public struct Timeline: Sendable, Hashable, Codable {
        /// The evaluations whose time lies in `[start, start + bucketSeconds)`.
        public struct Bucket: Sendable, Hashable, Codable {
            public let start: Date
            public let admitted: Int
            public let rejected: Int
        }

        public let bucketSeconds: Int64
        public let buckets: [Bucket]
    }

    /// How often a rule failed (or warned), with its most recent expected and actual values and hint.
    public struct RuleCount: Sendable, Hashable, Codable {
        public let rule: String
        public let count: Int
        public let lastExpected: String
        public let lastActual: String
        public let lastHint: String?
    }

    /// One distinct (rule, expected, actual, status) of a TCB or measurement rule, and when it was seen.
    public struct Observation: Sendable, Hashable, Codable {
        public let rule: String
        public let expected: String
        public let actual: String
        public let status: RuleStatus
        public let firstSeen: Date
        public let lastSeen: Date
        public let count: Int
    }

    /// A dated item (certificate, CRL, collateral, waiver) and how long it has left at the report time.
    public struct ExpiryItem: Sendable, Hashable, Codable {
        public let kind: String
        public let name: String
        public let notAfter: Date
        /// Whole days from the report time to `notAfter`, rounded down (negative once expired).
        public let daysLeft: Int
        public let expired: Bool
    }

    /// An evaluation of simulated evidence: never silent.
    public struct SimulatedEvaluation: Sendable, Hashable, Codable {
        public let sequence: Int64
        public let time: Date
        public let instance: String?
        public let verdict: Verdict
    }

    /// Everything about one policy in the window.
    public struct PolicySection: Sendable, Hashable, Codable {
        public let id: String
        public let versions: [Int]
        public let digests: [String]
        public let evidenceTypes: [String]
        public let evaluations: Int
        public let admitted: Int
        public let rejected: Int
        public let simulated: Int
        /// Failed rules, most frequent first.
        public let failuresByRule: [RuleCount]
        /// Rules that passed only with a warning (waived or advisory), most frequent first.
        public let warningsByRule: [RuleCount]
        /// TCB versions and measurements seen against those required, over time.
        public let tcbAndMeasurements: [Observation]
        /// Certificates and collateral (not waivers) that expire within the horizon or have expired.
        public let expiringSoon: [ExpiryItem]
        /// Every waiver the evaluations relied on, with its expiry.
        public let waivers: [ExpiryItem]
        public let findings: [PostureFinding]
        /// The simulated evaluations (at most 100, newest last).
        public let simulatedEvaluations: [SimulatedEvaluation]
    }

    /// A checkpoint as the report shows it.
    public struct CheckpointSummary: Sendable, Hashable, Codable {
        public let id: Int64?
        public let sequence: Int64
        public let time: Date
        public let headHash: String
        /// `valid`, `invalid` or `unchecked`.
        public let signature: String
        public let keyFingerprint: String
        public let matchesChain: Bool
    }

    /// The log's integrity proof: the whole log's verification, not only the window.
    public struct Integrity: Sendable, Hashable, Codable {
        public let intact: Bool
        public let recordCount: Int64
        public let headSequence: Int64
        public let headHash: String
        public let problemCount: Int
        public let firstProblem: String?
        public let checkpointCount: Int
        public let lastCheckpoint: CheckpointSummary?
        public let uncheckpointedRecords: Int64
        public let trustedKeyFingerprint: String?
        public let missingTriggers: [String]
    }

    /// Always ``formatIdentifier``.
    public let format: String
    /// The report time that expiries are measured from.
    public let generatedAt: Date
    public let window: Window
    /// The policy the report is limited to, if any.
    public let policyFilter: String?
    /// How far ahead expiries are listed, in days.
    public let expiryHorizonDays: Double
    public let totals: Totals
    /// Records in the window by kind (`appraisal`, `policy-change`, `instance-event` ...).
    public let recordsByKind: [String: Int]
    public let timeline: Timeline
    /// One section per policy, by id.
    public let policies: [PolicySection]
    public let integrity: Integrity
}

extension AuditReport {
    /// Reads the window's records from `log`, verifies the whole log, and builds the report.
    public init(log: AuditLog, options: Options) throws {
        let query = AuditQuery(
            since: options.window.start, until: options.window.end, policyID: nil, order: .oldestFirst)
        let records = try log.allRecords(matching: query)
        let verification = try log.verify(trustedKey: options.trustedKey)
        self.init(records: records, verification: verification, options: options)
    }

    /// Builds the report from records already read and a verification already run.
    public init(records: [AuditRecord], verification: AuditVerification, options: Options) {
        let start = options.window.start
        let end = options.window.end
        let selected = records.filter { record in
            guard record.time >= start, record.time < end else { return false }
            guard let policyID = options.policyID else { return true }
            return record.appraisal?.policy.id == policyID || record.details["policy"] == policyID
        }.sorted { $0.sequence < $1.sequence }
        let appraisals = selected.compactMap { record in record.appraisal.map { (record, $0) } }
        let findings = options.findings.filter { options.policyID == nil || $0.policyID == options.policyID }

        format = Self.formatIdentifier
        generatedAt = options.generatedAt
        window = Window(start: start, end: end)
        policyFilter = options.policyID
        expiryHorizonDays = options.expiryHorizon / 86_400
        totals = Totals(
            records: selected.count, evaluations: appraisals.count,
            admitted: appraisals.count { $0.1.verdict == .admit },
            rejected: appraisals.count { $0.1.verdict == .reject },
            simulated: appraisals.count { $0.1.simulated })
        recordsByKind = Dictionary(grouping: selected, by: { $0.kind.rawValue }).mapValues(\.count)
        timeline = Self.timeline(appraisals.map { ($0.0.time, $0.1.verdict) }, start: start, end: end)

        let byPolicy = Dictionary(grouping: appraisals, by: { $0.1.policy.id })
        let policyIDs = Set(byPolicy.keys).union(findings.map(\.policyID)).sorted()
        policies = policyIDs.map { id in
            Self.section(
                id: id, evaluations: byPolicy[id] ?? [], findings: findings.filter { $0.policyID == id },
                now: options.generatedAt, horizon: options.expiryHorizon)
        }
        integrity = Self.integrity(verification)
    }

    private static func timeline(_ points: [(Date, Verdict)], start: Date, end: Date) -> Timeline {
        let duration = max(1, end.timeIntervalSince(start))
        let candidates: [Int64] = [3_600, 6 * 3_600, 86_400, 7 * 86_400, 30 * 86_400]
        let width = candidates.first { duration / Double($0) <= 60 }
            ?? Int64((duration / 60).rounded(.up))
        let count = Int((duration / Double(width)).rounded(.up))
        var admitted = [Int](repeating: 0, count: count)
        var rejected = [Int](repeating: 0, count: count)
        for (time, verdict) in points {
            let index = min(count - 1, max(0, Int(time.timeIntervalSince(start) / Double(width))))
            if verdict == .admit { admitted[index] += 1 } else { rejected[index] += 1 }
        }
        return Timeline(
            bucketSeconds: width,
            buckets: (0..<count).map {
                Timeline.Bucket(
                    start: start.addingTimeInterval(Double($0) * Double(width)), admitted: admitted[$0],
                    rejected: rejected[$0])
            })
    }

    private static func section(
        id: String, evaluations: [(AuditRecord, Appraisal)], findings: [PostureFinding], now: Date,
        horizon: TimeInterval
    ) -> PolicySection {
        let appraisals = evaluations.map(\.1)
        var expiries: [ExpiryItem] = []
        var waivers: [ExpiryItem] = []
        var seenExpiries = Set<Expiry>()
        for expiry in appraisals.flatMap(\.expiries) where seenExpiries.insert(expiry).inserted {
            let left = expiry.notAfter.timeIntervalSince(now)
            let item = ExpiryItem(
                kind: expiry.kind, name: expiry.name, notAfter: expiry.notAfter,
                daysLeft: Int((left / 86_400).rounded(.down)), expired: left < 0)
            if expiry.kind == "waiver" {
                waivers.append(item)
            } else if left <= horizon {
                expiries.append(item)
            }
        }
        let byExpiry: (ExpiryItem, ExpiryItem) -> Bool = {
            ($0.notAfter, $0.kind, $0.name) < ($1.notAfter, $1.kind, $1.name)
        }
        return PolicySection(
            id: id,
            versions: Set(appraisals.map(\.policy.version)).sorted(),
            digests: Set(appraisals.map(\.policy.digest)).sorted(),
            evidenceTypes: Set(appraisals.map(\.evidenceType)).sorted(),
            evaluations: appraisals.count,
            admitted: appraisals.count { $0.verdict == .admit },
            rejected: appraisals.count { $0.verdict == .reject },
            simulated: appraisals.count { $0.simulated },
            failuresByRule: ruleCounts(appraisals, status: .fail),
            warningsByRule: ruleCounts(appraisals, status: .warn),
            tcbAndMeasurements: observations(evaluations),
            expiringSoon: expiries.sorted(by: byExpiry),
            waivers: waivers.sorted(by: byExpiry),
            findings: findings.sorted { ($1.severity, $0.key, $0.message) < ($0.severity, $1.key, $1.message) },
            simulatedEvaluations: evaluations.filter { $0.1.simulated }.suffix(100).map {
                SimulatedEvaluation(
                    sequence: $0.0.sequence, time: $0.0.time, instance: $0.0.instance, verdict: $0.1.verdict)
            })
    }

    private static func ruleCounts(_ appraisals: [Appraisal], status: RuleStatus) -> [RuleCount] {
        var counts: [String: Int] = [:]
        var last: [String: RuleOutcome] = [:]
        for outcome in appraisals.flatMap(\.outcomes) where outcome.status == status {
            counts[outcome.rule, default: 0] += 1
            last[outcome.rule] = outcome
        }
        return counts.map { rule, count in
            let outcome = last[rule]!
            return RuleCount(
                rule: rule, count: count, lastExpected: outcome.expected, lastActual: outcome.actual,
                lastHint: outcome.hint)
        }.sorted { ($1.count, $0.rule) < ($0.count, $1.rule) }
    }

    /// TCB and measurement rules: those whose identifier contains `tcb` or `measurement`.
    static func isTCBOrMeasurementRule(_ rule: String) -> Bool {
        let lowered = rule.lowercased()
        return lowered.contains("tcb") || lowered.contains("measurement")
    }

    private static func observations(_ evaluations: [(AuditRecord, Appraisal)]) -> [Observation] {
        struct Key: Hashable {
            let rule: String
            let expected: String
            let actual: String
            let status: RuleStatus
        }
        var order: [Key] = []
        var seen: [Key: (first: Date, last: Date, count: Int)] = [:]
        for (record, appraisal) in evaluations {
            for outcome in appraisal.outcomes where isTCBOrMeasurementRule(outcome.rule) {
                let key = Key(
                    rule: outcome.rule, expected: outcome.expected, actual: outcome.actual, status: outcome.status)
                if let current = seen[key] {
                    seen[key] = (min(current.first, record.time), max(current.last, record.time), current.count + 1)
                } else {
                    seen[key] = (record.time, record.time, 1)
                    order.append(key)
                }
            }
        }
        return order.map { key in
            let value = seen[key]!
            return Observation(
                rule: key.rule, expected: key.expected, actual: key.actual, status: key.status,
                firstSeen: value.first, lastSeen: value.last, count: value.count)
        }.sorted { ($0.rule, $0.firstSeen, $0.actual) < ($1.rule, $1.firstSeen, $1.actual) }
    }

    private static func integrity(_ verification: AuditVerification) -> Integrity {
        let last = verification.lastCheckpoint.map { status in
            CheckpointSummary(
                id: status.checkpoint.id, sequence: status.checkpoint.sequence, time: status.checkpoint.time,
                headHash: status.checkpoint.headHash, signature: status.signature.rawValue,
                keyFingerprint: status.checkpoint.keyFingerprint, matchesChain: status.matchesChain)
        }
        return Integrity(
            intact: verification.isIntact, recordCount: verification.recordCount,
            headSequence: verification.head.sequence, headHash: verification.head.hash,
            problemCount: verification.problems.count, firstProblem: verification.firstProblem?.message,
            checkpointCount: verification.checkpointCount, lastCheckpoint: last,
            uncheckpointedRecords: verification.uncheckpointedRecords,
            trustedKeyFingerprint: verification.trustedKeyFingerprint,
            missingTriggers: verification.missingTriggers)
    }
}
