public import Foundation

/// A signed statement "the chain had `sequence` records and its head hash was `headHash` at `time`".
///
/// Keep a copy outside the log (print it, send it to another host): against such a copy, verify() detects a
/// log that was truncated or rewritten after the copy was taken.
public struct AuditCheckpoint: Sendable, Hashable, Codable {
    /// The domain-separation string that starts every checkpoint's signed encoding.
    public static let encodingDomain = "cmk.audit.checkpoint.v1"

    /// The checkpoint's row number in the log (1, 2, 3 ...); nil for a checkpoint not read from a log.
    public let id: Int64?
    /// The number of records the checkpoint covers (the sequence number of the head record; 0 for none).
    public let sequence: Int64
    /// The hash of record `sequence` (``AuditRecord/genesisHash`` when `sequence` is 0).
    public let headHash: String
    /// When the checkpoint was signed, in whole milliseconds.
    public let time: Date
    /// The ``CheckpointKey/fingerprint`` of the key that signed it.
    public let keyFingerprint: String
    /// The ES384 signature (ECDSA P-384 over SHA-384), DER-encoded, lower-case hex.
    public let signature: String

    public init(
        id: Int64? = nil, sequence: Int64, headHash: String, time: Date, keyFingerprint: String, signature: String
    ) {
        self.id = id
        self.sequence = sequence
        self.headHash = headHash
        self.time = time
        self.keyFingerprint = keyFingerprint
        self.signature = signature
    }

    /// The exact bytes the signature covers (docs/audit.md, "Checkpoint signature").
    public var signedBytes: [UInt8] {
        Self.signedBytes(
            sequence: sequence, headHash: headHash, timeMilliseconds: Timestamp.milliseconds(time),
            keyFingerprint: keyFingerprint)
    }

    static func signedBytes(
        sequence: Int64, headHash: String, timeMilliseconds: Int64, keyFingerprint: String
    ) -> [UInt8] {
        var encoder = CanonicalEncoder(domain: encodingDomain)
        encoder.append(sequence)
        encoder.append(headHash)
        encoder.append(timeMilliseconds)
        encoder.append(keyFingerprint)
        return encoder.bytes
    }

    /// Whether the checkpoint names `key` and its signature verifies under it.
    public func isValid(under key: CheckpointKey) -> Bool {
        keyFingerprint == key.fingerprint && key.isValidSignature(hex: signature, for: signedBytes)
    }

    /// Signs a new checkpoint.
    static func sign(
        sequence: Int64, headHash: String, time: Date, with signingKey: CheckpointSigningKey
    ) throws -> AuditCheckpoint {
        let milliseconds = Timestamp.milliseconds(time)
        let fingerprint = signingKey.publicKey.fingerprint
        let bytes = signedBytes(
            sequence: sequence, headHash: headHash, timeMilliseconds: milliseconds, keyFingerprint: fingerprint)
        return AuditCheckpoint(
            sequence: sequence, headHash: headHash, time: Timestamp.date(milliseconds: milliseconds),
            keyFingerprint: fingerprint, signature: try signingKey.signatureHex(for: bytes))
    }

    /// The checkpoint as one line of JSON, to keep outside the log.
    public func jsonString() throws -> String { try CanonicalJSON.string(self) }

    /// Reads a checkpoint from the JSON ``jsonString()`` wrote.
    public init(jsonString: String) throws {
        do {
            self = try CanonicalJSON.decoder().decode(AuditCheckpoint.self, from: Data(jsonString.utf8))
        } catch {
            throw AuditLogError(.invalidArgument, "the text is not an audit checkpoint in JSON: \(error)")
        }
    }
}
