public import AttestationPolicy
public import Foundation
import Crypto

/// What a record is about; extensible, so new kinds never break a caller's `switch`.
public struct AuditKind: RawRepresentable, Sendable, Hashable, Codable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// A policy evaluated evidence (the record carries the ``Appraisal``).
    public static let appraisal = AuditKind("appraisal")
    /// A policy was added, replaced or removed.
    public static let policyChange = AuditKind("policy-change")
    /// An instance was started, stopped, admitted or torn down.
    public static let instanceEvent = AuditKind("instance-event")
}

/// What a caller asks the log to record; the log adds the sequence number, the time and the hashes.
public struct AuditEntry: Sendable, Hashable {
    /// Who or what asked: `cli:root`, `coordinator`, `service:tenant-a`.
    public var actor: String
    /// The tenant the record belongs to.
    public var tenant: String
    /// The instance the record is about, by name.
    public var instance: String?
    public var kind: AuditKind
    /// The policy evaluation, for ``AuditKind/appraisal`` records.
    public var appraisal: Appraisal?
    /// SHA-256 (lower-case hex) of the attestation result token (the EAR JWT) issued for this evaluation.
    public var resultTokenDigest: String?
    /// Free-form facts for kinds without an appraisal (`{"policy": "web", "change": "replaced"}`).
    public var details: [String: String]
    /// When it happened; nil means "now" by the log's clock.
    public var time: Date?

    public init(
        actor: String, kind: AuditKind, tenant: String = "default", instance: String? = nil,
        appraisal: Appraisal? = nil, resultTokenDigest: String? = nil, details: [String: String] = [:],
        time: Date? = nil
    ) {
        self.actor = actor
        self.kind = kind
        self.tenant = tenant
        self.instance = instance
        self.appraisal = appraisal
        self.resultTokenDigest = resultTokenDigest
        self.details = details
        self.time = time
    }

    /// An appraisal record; `resultToken` is the EAR JWT issued for it, of which only the digest is kept.
    public static func appraisal(
        _ appraisal: Appraisal, actor: String, tenant: String = "default", instance: String? = nil,
        resultToken: String? = nil, time: Date? = nil
    ) -> AuditEntry {
        AuditEntry(
            actor: actor, kind: .appraisal, tenant: tenant, instance: instance, appraisal: appraisal,
            resultTokenDigest: resultToken.map(AuditRecord.resultTokenDigest(of:)), time: time)
    }
}

/// One stored record of the audit log, with the hash that chains it to its predecessor.
///
/// ``appraisalJSON`` and ``detailsJSON`` are the exact stored texts the hash covers; ``appraisal`` and
/// ``details`` are decoded from them.
public struct AuditRecord: Sendable, Hashable, Encodable {
    /// The hash a first record names as its predecessor: 64 zeros.
    public static let genesisHash = String(repeating: "0", count: 64)
    /// The domain-separation string that starts every record's canonical encoding.
    public static let encodingDomain = "cmk.audit.record.v1"

    /// 1, 2, 3 ... without gaps.
    public let sequence: Int64
    /// When it was recorded, in whole milliseconds.
    public let time: Date
    /// Who or what asked: `cli:root`, `coordinator`, `service:tenant-a`.
    public let actor: String
    public let tenant: String
    public let instance: String?
    public let kind: AuditKind
    /// The policy evaluation, decoded from ``appraisalJSON``.
    public let appraisal: Appraisal?
    /// The appraisal's canonical JSON exactly as stored and hashed.
    public let appraisalJSON: String?
    /// SHA-256 (lower-case hex) of the result token issued for the evaluation.
    public let resultTokenDigest: String?
    /// Free-form facts, decoded from ``detailsJSON``.
    public let details: [String: String]
    /// The details' canonical JSON exactly as stored and hashed; nil when there are none.
    public let detailsJSON: String?
    /// The ``hash`` of the record before this one (``genesisHash`` for the first).
    public let previousHash: String
    /// SHA-256 (lower-case hex) of ``canonicalEncoding``.
    public let hash: String

    init(
        sequence: Int64, time: Date, actor: String, tenant: String, instance: String?, kind: AuditKind,
        appraisalJSON: String?, resultTokenDigest: String?, detailsJSON: String?, previousHash: String,
        hash: String
    ) throws {
        self.init(
            sequence: sequence, time: time, actor: actor, tenant: tenant, instance: instance, kind: kind,
            appraisalJSON: appraisalJSON, resultTokenDigest: resultTokenDigest, detailsJSON: detailsJSON,
            previousHash: previousHash, hash: hash,
            decoded: try Self.decode(appraisalJSON: appraisalJSON, detailsJSON: detailsJSON, sequence: sequence))
    }

    /// The record an encoded entry became, its texts decoded back (an appraisal or details that do not decode is a
    /// `malformed-record` error).
    public init(_ encoded: EncodedAuditEntry, appended: AuditAppend) throws {
        let entry = encoded.entry
        try self.init(
            sequence: appended.head.sequence, time: appended.time,
            actor: entry.actor, tenant: entry.tenant, instance: entry.instance, kind: entry.kind,
            appraisalJSON: encoded.appraisalJSON, resultTokenDigest: entry.resultTokenDigest,
            detailsJSON: encoded.detailsJSON, previousHash: appended.previousHash, hash: appended.head.hash)
    }

    /// The appraisal and details as decoded from their stored texts.
    struct Decoded {
        let appraisal: Appraisal?
        let details: [String: String]
    }

    /// Decodes the stored texts; `sequence` names the record in the error (nil before it is stored).
    static func decode(appraisalJSON: String?, detailsJSON: String?, sequence: Int64?) throws -> Decoded {
        do {
            return Decoded(
                appraisal: try appraisalJSON.map { try CanonicalJSON.decoder().decode(Appraisal.self, from: Data($0.utf8)) },
                details: try detailsJSON.map { try CanonicalJSON.decoder().decode([String: String].self, from: Data($0.utf8)) }
                    ?? [:])
        } catch {
            throw AuditLogError(
                .malformedRecord,
                "\(sequence.map { "record \($0)" } ?? "the new record") has a stored appraisal or details that do not decode: \(error)")
        }
    }

    /// A record whose texts were decoded already (by ``decode(appraisalJSON:detailsJSON:sequence:)``).
    init(
        sequence: Int64, time: Date, actor: String, tenant: String, instance: String?, kind: AuditKind,
        appraisalJSON: String?, resultTokenDigest: String?, detailsJSON: String?, previousHash: String,
        hash: String, decoded: Decoded
    ) {
        self.sequence = sequence
        self.time = time
        self.actor = actor
        self.tenant = tenant
        self.instance = instance
        self.kind = kind
        self.appraisalJSON = appraisalJSON
        self.resultTokenDigest = resultTokenDigest
        self.detailsJSON = detailsJSON
        self.previousHash = previousHash
        self.hash = hash
        self.appraisal = decoded.appraisal
        self.details = decoded.details
    }

    /// The bytes ``hash`` is the SHA-256 of (docs/audit.md, "Record hash").
    public var canonicalEncoding: [UInt8] {
        Self.canonicalEncoding(
            sequence: sequence, timeMilliseconds: Timestamp.milliseconds(time), actor: actor, tenant: tenant,
            instance: instance, kind: kind.rawValue, appraisalJSON: appraisalJSON,
            resultTokenDigest: resultTokenDigest, detailsJSON: detailsJSON, previousHash: previousHash)
    }

    /// The hash the record's content gives; differs from ``hash`` when the record was modified.
    public var computedHash: String { Digest.sha256Hex(canonicalEncoding) }

    static func canonicalEncoding(
        sequence: Int64, timeMilliseconds: Int64, actor: String, tenant: String, instance: String?, kind: String,
        appraisalJSON: String?, resultTokenDigest: String?, detailsJSON: String?, previousHash: String
    ) -> [UInt8] {
        var encoder = CanonicalEncoder(domain: encodingDomain)
        encoder.append(sequence)
        encoder.append(timeMilliseconds)
        encoder.append(actor)
        encoder.append(tenant)
        encoder.append(instance)
        encoder.append(kind)
        encoder.append(appraisalJSON)
        encoder.append(resultTokenDigest)
        encoder.append(detailsJSON)
        encoder.append(previousHash)
        return encoder.bytes
    }

    /// SHA-256 (lower-case hex) of a result token as issued (the JWT's compact serialization, UTF-8).
    public static func resultTokenDigest(of token: String) -> String { Digest.sha256Hex(Array(token.utf8)) }

    private enum CodingKeys: String, CodingKey {
        case sequence, time, actor, tenant, instance, kind, appraisal, resultTokenDigest, details, previousHash, hash
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(time, forKey: .time)
        try container.encode(actor, forKey: .actor)
        try container.encode(tenant, forKey: .tenant)
        try container.encodeIfPresent(instance, forKey: .instance)
        try container.encode(kind, forKey: .kind)
        try container.encodeIfPresent(appraisal, forKey: .appraisal)
        try container.encodeIfPresent(resultTokenDigest, forKey: .resultTokenDigest)
        try container.encode(details, forKey: .details)
        try container.encode(previousHash, forKey: .previousHash)
        try container.encode(hash, forKey: .hash)
    }
}

/// The columns kept beside a record's appraisal so queries need not decode JSON; verify() checks they agree.
struct IndexedAppraisalColumns: Sendable, Hashable {
    var policyID: String?
    var policyVersion: Int64?
    var policyDigest: String?
    var verdict: String?
    var evidenceType: String?
    var simulated: Int64?

    init(_ appraisal: Appraisal?) {
        policyID = appraisal?.policy.id
        policyVersion = appraisal.map { Int64($0.policy.version) }
        policyDigest = appraisal?.policy.digest
        verdict = appraisal?.verdict.rawValue
        evidenceType = appraisal?.evidenceType
        simulated = appraisal.map { $0.simulated ? 1 : 0 }
    }

    init(
        policyID: String?, policyVersion: Int64?, policyDigest: String?, verdict: String?, evidenceType: String?,
        simulated: Int64?
    ) {
        self.policyID = policyID
        self.policyVersion = policyVersion
        self.policyDigest = policyDigest
        self.verdict = verdict
        self.evidenceType = evidenceType
        self.simulated = simulated
    }

    /// The first column that differs from `other`, by name.
    func firstDifference(from other: IndexedAppraisalColumns) -> String? {
        if policyID != other.policyID { return "policy_id" }
        if policyVersion != other.policyVersion { return "policy_version" }
        if policyDigest != other.policyDigest { return "policy_digest" }
        if verdict != other.verdict { return "verdict" }
        if evidenceType != other.evidenceType { return "evidence_type" }
        if simulated != other.simulated { return "simulated" }
        return nil
    }
}
