public import AttestationPolicy
public import Foundation
import GRDB

/// Which records to read, and in which order; unset filters do not filter.
public struct AuditQuery: Sendable, Hashable {
    /// The order of a page.
    public enum Order: String, Sendable, Hashable, Codable, CaseIterable {
        /// Highest sequence number first.
        case newestFirst = "newest-first"
        /// Lowest sequence number first.
        case oldestFirst = "oldest-first"
    }

    /// Records at or after this time.
    public var since: Date?
    /// Records strictly before this time.
    public var until: Date?
    /// Records whose appraisal is for this policy.
    public var policyID: String?
    public var tenant: String?
    /// Records whose appraisal reached this verdict.
    public var verdict: Verdict?
    public var kind: AuditKind?
    public var instance: String?
    public var order: Order
    /// At most this many records per page (1...10000).
    public var limit: Int
    /// Continue after this sequence number (a previous page's ``AuditPage/nextCursor``).
    public var cursor: Int64?

    public init(
        since: Date? = nil, until: Date? = nil, policyID: String? = nil, tenant: String? = nil,
        verdict: Verdict? = nil, kind: AuditKind? = nil, instance: String? = nil, order: Order = .newestFirst,
        limit: Int = 100, cursor: Int64? = nil
    ) {
        self.since = since
        self.until = until
        self.policyID = policyID
        self.tenant = tenant
        self.verdict = verdict
        self.kind = kind
        self.instance = instance
        self.order = order
        self.limit = limit
        self.cursor = cursor
    }
}

/// One page of records.
public struct AuditPage: Sendable, Hashable, Encodable {
    public let records: [AuditRecord]
    /// Pass as ``AuditQuery/cursor`` to read the next page; nil when this page is the last.
    public let nextCursor: Int64?

    public init(records: [AuditRecord], nextCursor: Int64?) {
        self.records = records
        self.nextCursor = nextCursor
    }
}

extension AuditLog {
    /// One page of the records `query` selects.
    public func records(matching query: AuditQuery) throws -> AuditPage {
        guard (1...10_000).contains(query.limit) else {
            throw AuditLogError(.invalidArgument, "a page holds 1 to 10000 records, not \(query.limit)")
        }
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let since = query.since {
            conditions.append("time_ms >= ?")
            arguments += [Timestamp.milliseconds(since)]
        }
        if let until = query.until {
            conditions.append("time_ms < ?")
            arguments += [Timestamp.milliseconds(until)]
        }
        if let policyID = query.policyID {
            conditions.append("policy_id = ?")
            arguments += [policyID]
        }
        if let tenant = query.tenant {
            conditions.append("tenant = ?")
            arguments += [tenant]
        }
        if let verdict = query.verdict {
            conditions.append("verdict = ?")
            arguments += [verdict.rawValue]
        }
        if let kind = query.kind {
            conditions.append("kind = ?")
            arguments += [kind.rawValue]
        }
        if let instance = query.instance {
            conditions.append("instance = ?")
            arguments += [instance]
        }
        let newestFirst = query.order == .newestFirst
        if let cursor = query.cursor {
            conditions.append(newestFirst ? "sequence < ?" : "sequence > ?")
            arguments += [cursor]
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let tail = "\(filter) ORDER BY sequence \(newestFirst ? "DESC" : "ASC") LIMIT \(query.limit + 1)"
        let fetched = try Self.database("query the audit log") {
            try pool.read { db in try StoredRecordRow.records(db, where: tail, arguments: arguments) }
        }
        let page = Array(fetched.prefix(query.limit))
        return AuditPage(records: page, nextCursor: fetched.count > query.limit ? page.last?.sequence : nil)
    }

    /// Every record `query` selects (ignoring its limit and cursor), read page by page, in the query's order.
    public func allRecords(matching query: AuditQuery) throws -> [AuditRecord] {
        var query = query
        query.limit = 1000
        query.cursor = nil
        var records: [AuditRecord] = []
        while true {
            let page = try self.records(matching: query)
            records += page.records
            guard let next = page.nextCursor else { return records }
            query.cursor = next
        }
    }
}
