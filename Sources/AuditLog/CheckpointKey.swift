public import Foundation
import Crypto
import BinaryFormat
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The public half of a checkpoint signing key: what a third party needs to verify checkpoints.
public struct CheckpointKey: Sendable, Hashable {
    let key: P384.Signing.PublicKey

    init(_ key: P384.Signing.PublicKey) { self.key = key }

    /// Reads a P-384 public key from PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
    public init(pemRepresentation: String) throws {
        do {
            key = try P384.Signing.PublicKey(pemRepresentation: pemRepresentation)
        } catch {
            throw AuditLogError(.signingKey, "the checkpoint public key is not a P-384 public key in PEM: \(error)")
        }
    }

    /// The key as PEM (SubjectPublicKeyInfo), as written beside the private key.
    public var pemRepresentation: String { key.pemRepresentation }

    /// SHA-256 (lower-case hex) of the DER SubjectPublicKeyInfo:
    /// `openssl pkey -pubin -in key.pub.pem -outform DER | sha256sum`.
    public var fingerprint: String { Digest.sha256Hex(key.derRepresentation) }

    /// Whether `signature` (DER ECDSA, hex) is a valid ES384 signature over `message` under this key.
    func isValidSignature(hex signature: String, for message: [UInt8]) -> Bool {
        guard let der = Hex.decode(signature),
            let parsed = try? P384.Signing.ECDSASignature(derRepresentation: der)
        else { return false }
        return key.isValidSignature(parsed, for: message)
    }

    public static func == (a: CheckpointKey, b: CheckpointKey) -> Bool {
        a.key.derRepresentation == b.key.derRepresentation
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(key.derRepresentation) }
}

/// The installation's P-384 key that signs checkpoints (ES384: ECDSA over SHA-384).
public struct CheckpointSigningKey: Sendable {
    /// The private key's file name inside the key folder (PEM, PKCS#8, mode 0600).
    public static let privateKeyFileName = "audit-checkpoint-key.pem"
    /// The public key's file name inside the key folder (PEM, SubjectPublicKeyInfo, mode 0644).
    public static let publicKeyFileName = "audit-checkpoint-key.pub.pem"

    let key: P384.Signing.PrivateKey

    /// A new random key, kept in memory only.
    public init() { key = P384.Signing.PrivateKey() }

    /// Reads a P-384 private key from PEM.
    public init(pemRepresentation: String) throws {
        do {
            key = try P384.Signing.PrivateKey(pemRepresentation: pemRepresentation)
        } catch {
            throw AuditLogError(.signingKey, "the checkpoint signing key is not a P-384 private key in PEM: \(error)")
        }
    }

    /// The public key, to export for third parties.
    public var publicKey: CheckpointKey { CheckpointKey(key.publicKey) }

    /// The DER ECDSA signature over `message`, hex.
    func signatureHex(for message: [UInt8]) throws -> String {
        do {
            return Hex.encode(try key.signature(for: message).derRepresentation)
        } catch {
            throw AuditLogError(.signingKey, "signing a checkpoint failed: \(error)")
        }
    }

    /// Loads the key from `directory`, or generates and stores it there on first use.
    ///
    /// The folder is created with mode 0700 when missing and refused when others may write to it; the key file
    /// is created with mode 0600 and refused when group or others have any access to it. The public key is
    /// (re)written beside it as ``publicKeyFileName``.
    public static func loadOrCreate(in directory: URL) throws -> CheckpointSigningKey {
        try prepareDirectory(directory)
        let keyURL = directory.appendingPathComponent(privateKeyFileName)
        let signingKey: CheckpointSigningKey
        if FileManager.default.fileExists(atPath: keyURL.path) {
            signingKey = try load(from: keyURL)
        } else {
            let fresh = CheckpointSigningKey()
            if try createExclusively(keyURL, contents: fresh.key.pemRepresentation, in: directory) {
                signingKey = fresh
            } else {
                // Another process created the key first: use theirs.
                signingKey = try load(from: keyURL)
            }
        }
        let publicURL = directory.appendingPathComponent(publicKeyFileName)
        let publicPEM = signingKey.publicKey.pemRepresentation
        if (try? String(contentsOf: publicURL, encoding: .utf8)) != publicPEM {
            do {
                try Data(publicPEM.utf8).write(to: publicURL, options: .atomic)
                try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: publicURL.path)
            } catch {
                throw AuditLogError(
                    .fileSystem, "could not write the checkpoint public key to \(publicURL.path): \(error)")
            }
        }
        return signingKey
    }

    /// Reads the key from a PEM file, refusing a file that group or others can access.
    public static func load(from url: URL) throws -> CheckpointSigningKey {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        } catch {
            throw AuditLogError(.signingKey, "cannot read the checkpoint signing key at \(url.path): \(error)")
        }
        guard (attributes[.type] as? FileAttributeType) == .typeRegular else {
            throw AuditLogError(.signingKey, "the checkpoint signing key at \(url.path) is not a regular file")
        }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        guard mode & 0o077 == 0 else {
            throw AuditLogError(
                .insecurePermissions,
                "the checkpoint signing key at \(url.path) has mode \(String(mode, radix: 8)); "
                    + "group and others must have no access: chmod 600 \(url.path)")
        }
        let pem: String
        do {
            pem = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw AuditLogError(.signingKey, "cannot read the checkpoint signing key at \(url.path): \(error)")
        }
        return try CheckpointSigningKey(pemRepresentation: pem)
    }

    private static func prepareDirectory(_ directory: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw AuditLogError(.signingKey, "the key folder \(directory.path) is not a folder")
            }
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory.path)
            let mode = (attributes?[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
            guard mode & 0o022 == 0 else {
                throw AuditLogError(
                    .insecurePermissions,
                    "the key folder \(directory.path) has mode \(String(mode, radix: 8)); others could replace the "
                        + "key: chmod 700 \(directory.path)")
            }
        } else {
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                // Set explicitly: createDirectory's attributes are subject to the umask.
                try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
            } catch {
                throw AuditLogError(.fileSystem, "could not create the key folder \(directory.path): \(error)")
            }
        }
    }

    /// Writes `contents` to a temporary file created with mode 0600, then links it to `url`, which fails if
    /// `url` exists: the key file appears complete or not at all. Returns false when another process won.
    private static func createExclusively(_ url: URL, contents: String, in directory: URL) throws -> Bool {
        let temporary = directory.appendingPathComponent(".\(privateKeyFileName).\(UUID().uuidString)")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw AuditLogError(
                .fileSystem, "could not create \(temporary.path): errno \(errno)", nativeCode: errno)
        }
        defer { unlink(temporary.path) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        let writeErrno = errno
        close(descriptor)
        guard written == bytes.count, synced == 0 else {
            throw AuditLogError(
                .fileSystem, "could not write the checkpoint signing key: errno \(writeErrno)", nativeCode: writeErrno)
        }
        if link(temporary.path, url.path) == 0 { return true }
        if errno == EEXIST { return false }
        let linkErrno = errno
        throw AuditLogError(
            .fileSystem, "could not create \(url.path): errno \(linkErrno)", nativeCode: linkErrno)
    }
}
