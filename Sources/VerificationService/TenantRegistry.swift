import AttestationResults
import AuditLog
import Foundation

/// Each tenant's own resources, opened once at start: its EAR signing key (in `<state>/tenants/<name>/keys/`, mode
/// 0700) and its hash-chained audit log (in the store: a file beside the keys, or the shared PostgreSQL database).
/// Nothing of one tenant is reachable through another's name.
final class TenantRegistry: Sendable {
    struct Resources: Sendable {
        let tenant: Tenant
        let signingKey: EARSigningKey
        let auditLog: any TenantAuditLog
    }

    let byName: [String: Resources]

    init(
        tenants: [Tenant], stateDirectory: URL, store: any ServiceStore, earAlgorithm: EARAlgorithm = .es256,
        clock: @escaping @Sendable () -> Date
    ) throws {
        var byName: [String: Resources] = [:]
        for tenant in tenants {
            guard byName[tenant.name] == nil else { throw ServiceError("tenant '\(tenant.name)' is configured twice") }
            let folder = stateDirectory.appendingPathComponent("tenants/\(tenant.name)")
            let keys = folder.appendingPathComponent("keys")
            try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let key = try EARSigningKey.loadOrCreate(directory: keys, algorithm: earAlgorithm)
            let log = try store.auditLog(
                tenant: tenant.name, folder: folder, signingKey: try CheckpointSigningKey.loadOrCreate(in: keys), clock: clock)
            byName[tenant.name] = Resources(tenant: tenant, signingKey: key, auditLog: log)
        }
        self.byName = byName
    }

    /// The tenant's resources, or a 404 problem naming the unknown tenant.
    func resources(_ name: String) throws(Problem) -> Resources {
        guard let resources = byName[name] else {
            throw Problem.notFound("unknown-tenant", "no tenant named '\(Self.printable(name))' is configured on this server")
        }
        return resources
    }

    /// The tenant's resources, when `authorization` carries its administrator's bearer token: 401 without a token or
    /// with one no tenant has, 403 with another tenant's token.
    func administered(_ name: String, authorization: String?) throws(Problem) -> Resources {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { throw Problem.unauthorized }
        let token = String(authorization.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        // Every tenant's digest is compared (in constant time each), so the answer's timing does not say which matched.
        var matched: String?
        for resources in byName.values where resources.tenant.accepts(token: token) { matched = resources.tenant.name }
        guard let matched else { throw Problem.unauthorized }
        guard matched == name, let resources = byName[name] else { throw Problem.forbidden }
        return resources
    }

    /// A name from a request, shortened and stripped of control characters before it goes into a message.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(64).map(Character.init))
    }
}
