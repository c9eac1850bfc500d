import GRDB

/// The instance store's layout, versioned with GRDB migrations (docs/coordinator.md, "Store").
enum InstanceSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-instances-and-transitions") { db in
            try db.execute(sql: version1)
        }
        migrator.registerMigration("v2-instance-handover") { db in
            try db.execute(sql: instanceHandover)
        }
        migrator.registerMigration("v3-supervisor") { db in
            try db.execute(sql: version2)
        }
        return migrator
    }

    /// The process that supervises the instance (`cmk launch --foreground`): reconciliation leaves an instance
    /// whose supervisor still runs alone, and cleans up after one whose supervisor died.
    private static let version2 = """
        ALTER TABLE instance ADD COLUMN supervisor_pid INTEGER;
        ALTER TABLE instance ADD COLUMN supervisor_start_time INTEGER;
        """

    private static let states = InstanceState.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")

    /// What an admitted instance was handed (names only, never a secret): one row per instance, written when the
    /// handover completed. Its own table, so the instance rows keep their layout.
    private static let instanceHandover = """
        CREATE TABLE instance_handover (
            instance_id TEXT PRIMARY KEY NOT NULL REFERENCES instance (id),
            secrets_json TEXT NOT NULL,
            volumes_json TEXT NOT NULL,
            channel_peers_json TEXT NOT NULL,
            sealed_secrets_sha256 TEXT,
            time_ms INTEGER NOT NULL
        );
        """

    private static let version1 = """
        CREATE TABLE instance (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN (\(states))),
            reason TEXT NOT NULL,
            cpus TEXT NOT NULL,
            numa_nodes TEXT NOT NULL,
            memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),
            shared INTEGER NOT NULL CHECK (shared IN (0, 1)),
            holds_partition INTEGER NOT NULL CHECK (holds_partition IN (0, 1)),
            policy_id TEXT,
            policy_version INTEGER,
            policy_digest TEXT,
            profile TEXT,
            qemu_pid INTEGER,
            qemu_start_time INTEGER,
            sockets_json TEXT NOT NULL DEFAULT '{}',
            evidence_digest TEXT,
            audit_sequence INTEGER,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            CHECK (state != 'stopped' OR holds_partition = 0),
            CHECK ((qemu_pid IS NULL) = (qemu_start_time IS NULL))
        );
        CREATE UNIQUE INDEX instance_live_name ON instance (name) WHERE state != 'stopped';
        CREATE INDEX instance_by_state ON instance (state);

        CREATE TABLE instance_transition (
            id INTEGER PRIMARY KEY,
            instance_id TEXT NOT NULL REFERENCES instance (id),
            from_state TEXT,
            to_state TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE INDEX instance_transition_by_instance ON instance_transition (instance_id, id);
        """
}
