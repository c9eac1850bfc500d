public import Foundation
import GRDB

/// What an admitted instance was handed, by name (table `instance_handover`): the secret references delivered, the
/// volumes attached, the channel peers it may open sealed channels with (the allow-list the channel layer
/// enforces), and the digest of the sealed message. Never a secret.
public struct InstanceHandoverRecord: Sendable, Hashable, Codable {
    public let instanceID: String
    public let secrets: [String]
    public let volumes: [String]
    public let channelPeers: [String]
    public let sealedSecretsSHA256: String?
    public let time: Date

    public init(
        instanceID: String, secrets: [String], volumes: [String], channelPeers: [String], sealedSecretsSHA256: String?,
        time: Date
    ) {
        self.instanceID = instanceID
        self.secrets = secrets
        self.volumes = volumes
        self.channelPeers = channelPeers
        self.sealedSecretsSHA256 = sealedSecretsSHA256
        self.time = time
    }
}

extension InstanceStore {
    /// Records the handover of the instance `idOrName` (replacing an earlier record of it).
    @discardableResult
    public func recordHandover(
        _ idOrName: String, secrets: [String], volumes: [String], channelPeers: [String], sealedSecretsSHA256: String?
    ) throws(CoordinatorError) -> InstanceHandoverRecord {
        try requireWritable()
        let now = options.clock()
        return try write("record the handover of \(idOrName)") { db in
            guard let instance = try self.instanceID(db, idOrName) else {
                throw CoordinatorError(.unknownInstance, "no instance has the id or name '\(idOrName)'")
            }
            let record = InstanceHandoverRecord(
                instanceID: instance, secrets: secrets, volumes: volumes, channelPeers: channelPeers,
                sealedSecretsSHA256: sealedSecretsSHA256, time: now)
            func json(_ list: [String]) throws -> String {
                String(decoding: try JSONEncoder().encode(list), as: UTF8.self)
            }
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO instance_handover
                        (instance_id, secrets_json, volumes_json, channel_peers_json, sealed_secrets_sha256, time_ms)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    instance, try json(secrets), try json(volumes), try json(channelPeers), sealedSecretsSHA256,
                    Timestamp.milliseconds(now),
                ])
            return record
        }
    }

    /// The handover recorded for the instance `idOrName`; nil when it was never handed anything.
    public func handover(of idOrName: String) throws(CoordinatorError) -> InstanceHandoverRecord? {
        try Self.database("read the handover of \(idOrName)") {
            try pool.read { db -> InstanceHandoverRecord? in
                guard let instance = try self.instanceID(db, idOrName),
                    let row = try Row.fetchOne(
                        db, sql: "SELECT * FROM instance_handover WHERE instance_id = ?", arguments: [instance])
                else { return nil }
                func list(_ column: String) throws -> [String] {
                    let text: String = row[column]
                    guard let list = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
                        throw CoordinatorError(
                            .database, "instance_handover.\(column) of \(instance) is not a JSON list of names")
                    }
                    return list
                }
                let milliseconds: Int64 = row["time_ms"]
                return InstanceHandoverRecord(
                    instanceID: instance, secrets: try list("secrets_json"), volumes: try list("volumes_json"),
                    channelPeers: try list("channel_peers_json"), sealedSecretsSHA256: row["sealed_secrets_sha256"],
                    time: Timestamp.date(milliseconds))
            }
        }
    }

    /// The id of the instance with this id, else the live one with this name, else the newest with it.
    private func instanceID(_ db: Database, _ idOrName: String) throws -> String? {
        try String.fetchOne(
            db,
            sql: """
                SELECT id FROM instance WHERE id = ? OR name = ?
                ORDER BY (id = ?) DESC, (state != 'stopped') DESC, created_ms DESC LIMIT 1
                """,
            arguments: [idOrName, idOrName, idOrName])
    }
}
