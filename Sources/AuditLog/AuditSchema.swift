import GRDB

/// The database layout, versioned with GRDB migrations (docs/audit.md, "Schema").
enum AuditSchema {
    /// Every trigger the schema installs; verify() reports the ones that are missing (an attacker dropped them).
    static let triggers = [
        "audit_record_no_update", "audit_record_no_delete", "audit_record_extends_chain",
        "audit_checkpoint_no_update", "audit_checkpoint_no_delete", "audit_checkpoint_names_record",
    ]

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-records-and-checkpoints") { db in
            try db.execute(sql: version1)
        }
        return migrator
    }

    private static let genesis = AuditRecord.genesisHash

    private static let version1 = """
        CREATE TABLE audit_record (
            sequence INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            tenant TEXT NOT NULL,
            instance TEXT,
            kind TEXT NOT NULL,
            appraisal_json TEXT,
            result_token_digest TEXT,
            details_json TEXT,
            previous_hash TEXT NOT NULL,
            record_hash TEXT NOT NULL,
            policy_id TEXT,
            policy_version INTEGER,
            policy_digest TEXT,
            verdict TEXT,
            evidence_type TEXT,
            simulated INTEGER
        );
        CREATE INDEX audit_record_by_time ON audit_record (time_ms);
        CREATE INDEX audit_record_by_policy ON audit_record (policy_id, sequence);
        CREATE INDEX audit_record_by_tenant ON audit_record (tenant, sequence);
        CREATE INDEX audit_record_by_kind ON audit_record (kind, sequence);

        CREATE TABLE audit_checkpoint (
            id INTEGER PRIMARY KEY,
            sequence INTEGER NOT NULL,
            head_hash TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            key_fingerprint TEXT NOT NULL,
            signature TEXT NOT NULL
        );

        CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
        BEGIN SELECT RAISE(ABORT, 'audit_record is append-only: records cannot be updated'); END;
        CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record
        BEGIN SELECT RAISE(ABORT, 'audit_record is append-only: records cannot be deleted'); END;
        CREATE TRIGGER audit_record_extends_chain BEFORE INSERT ON audit_record
        WHEN NEW.sequence IS NOT (SELECT COALESCE(MAX(sequence), 0) + 1 FROM audit_record)
            OR NEW.previous_hash IS NOT COALESCE(
                (SELECT record_hash FROM audit_record ORDER BY sequence DESC LIMIT 1), '\(genesis)')
        BEGIN SELECT RAISE(ABORT, 'audit_record: a new record must extend the chain at its head'); END;

        CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
        BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: checkpoints cannot be updated'); END;
        CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
        BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: checkpoints cannot be deleted'); END;
        CREATE TRIGGER audit_checkpoint_names_record BEFORE INSERT ON audit_checkpoint
        WHEN NEW.head_hash IS NOT COALESCE(
            (SELECT record_hash FROM audit_record WHERE sequence = NEW.sequence),
            CASE WHEN NEW.sequence = 0 THEN '\(genesis)' END)
        BEGIN SELECT RAISE(ABORT, 'audit_checkpoint: the head hash must be the hash of the record it names'); END;
        """
}
