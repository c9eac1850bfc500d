public import Crypto
public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The installation's key for signing attestation results: ECDSA P-384 (ES384, the default) or P-256 (ES256), kept
/// as a PKCS#8 PEM file with mode 0600. The key's curve decides the algorithm: a stored key keeps its own.
///
/// The private key never leaves this value except into a signature: `description`, `debugDescription` and `dump`
/// show only the key id.
public struct EARSigningKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    enum PrivateKey: Sendable {
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
    }

    let privateKey: PrivateKey
    /// The public half, with its key id.
    public let publicKey: EARPublicKey

    /// The key id tokens signed with this key carry (the RFC 7638 thumbprint of the public key).
    public var keyID: String { publicKey.keyID }

    /// The default file name of the key inside its folder.
    public static let defaultFileName = "ear-signing-key.pem"
    /// The largest key file read; a P-384 PKCS#8 PEM is about 300 bytes.
    static let maximumFileSize = 16 * 1024

    /// Wraps an existing P-384 private key (ES384).
    public init(privateKey: P384.Signing.PrivateKey) {
        self.privateKey = .p384(privateKey)
        self.publicKey = EARPublicKey(privateKey.publicKey)
    }

    /// Wraps an existing P-256 private key (ES256).
    public init(privateKey: P256.Signing.PrivateKey) {
        self.privateKey = .p256(privateKey)
        self.publicKey = EARPublicKey(privateKey.publicKey)
    }

    /// The algorithm this key signs with.
    public var algorithm: EARAlgorithm { publicKey.algorithm }

    /// A fresh random key, not stored anywhere (for tests and ephemeral verifiers).
    public static func generate(_ algorithm: EARAlgorithm = .es384) -> EARSigningKey {
        switch algorithm {
        case .es256: EARSigningKey(privateKey: P256.Signing.PrivateKey())
        case .es384: EARSigningKey(privateKey: P384.Signing.PrivateKey())
        }
    }

    /// The signature (r ‖ s) of `message` under the key's algorithm.
    func signature(for message: [UInt8]) throws -> [UInt8] {
        switch privateKey {
        case .p256(let key): Array(try key.signature(for: message).rawRepresentation)
        case .p384(let key): Array(try key.signature(for: message).rawRepresentation)
        }
    }

    var pemRepresentation: String {
        switch privateKey {
        case .p256(let key): key.pemRepresentation
        case .p384(let key): key.pemRepresentation
        }
    }

    public var description: String { "EARSigningKey(kid: \(keyID))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["keyID": keyID], displayStyle: .struct) }

    /// Loads the key from `directory/fileName`, or generates one of `algorithm` and stores it there when the file does
    /// not exist (a stored key keeps its own algorithm, whatever `algorithm` says).
    ///
    /// A folder that does not exist is created with mode 0700; the file is written with mode 0600, in full, before it
    /// appears under its name (written to a temporary file, then hard-linked, so a concurrent caller either sees no
    /// file or the whole key, and never overwrites one). An existing file readable or writable by group or others is
    /// refused with `insecureKeyFile`.
    public static func loadOrCreate(
        directory: URL, fileName: String = defaultFileName, algorithm: EARAlgorithm = .es384
    ) throws(AttestationResultsError) -> EARSigningKey {
        let file = directory.appendingPathComponent(fileName)
        if FileManager.default.fileExists(atPath: file.path) { return try load(file: file) }
        try createDirectory(directory)
        let key = generate(algorithm)
        if try store(key, at: file) { return key }
        // Another process stored a key first: use that one.
        return try load(file: file)
    }

    /// Loads the key from a PEM file (PKCS#8 `PRIVATE KEY` or SEC 1 `EC PRIVATE KEY`) that only its owner can read.
    public static func load(file: URL) throws(AttestationResultsError) -> EARSigningKey {
        let descriptor = open(file.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            throw AttestationResultsError(
                .keyFile, "cannot open the key file \(file.path): \(String(cString: strerror(code)))",
                nativeCode: Int(code))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            throw AttestationResultsError(.keyFile, "cannot stat the key file \(file.path)", nativeCode: Int(code))
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw AttestationResultsError(.keyFile, "the key file \(file.path) is not a regular file")
        }
        let permissions = status.st_mode & 0o777
        guard permissions & 0o077 == 0 else {
            throw AttestationResultsError(
                .insecureKeyFile,
                "the key file \(file.path) has mode \(String(permissions, radix: 8)), "
                    + "so group or others can access it; "
                    + "restrict it with 'chmod 600 \(file.path)' (and replace the key if others may have read it)")
        }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw AttestationResultsError(.keyFile, "cannot read the key file \(file.path)", nativeCode: Int(code))
            }
            if count == 0 { break }
            contents += buffer[0..<count]
            guard contents.count <= maximumFileSize else {
                throw AttestationResultsError(.keyFile, "the key file \(file.path) is larger than a signing key")
            }
        }
        guard let pem = String(validating: contents, as: UTF8.self) else {
            throw AttestationResultsError(.keyFile, "the key file \(file.path) is not PEM text")
        }
        if let privateKey = try? P384.Signing.PrivateKey(pemRepresentation: pem) {
            return EARSigningKey(privateKey: privateKey)
        }
        if let privateKey = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            return EARSigningKey(privateKey: privateKey)
        }
        // The reason names the file only: its contents are secret.
        throw AttestationResultsError(
            .keyFile, "the key file \(file.path) does not hold a P-384 or P-256 private key in PEM")
    }

    private static func createDirectory(_ directory: URL) throws(AttestationResultsError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw AttestationResultsError(.keyFile, "\(directory.path) exists and is not a folder")
            }
            return
        }
        let parent = directory.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw AttestationResultsError(.keyFile, "cannot create the folder \(parent.path): \(error)")
        }
        guard mkdir(directory.path, 0o700) == 0 || errno == EEXIST else {
            let code = errno
            throw AttestationResultsError(
                .keyFile, "cannot create the key folder \(directory.path): \(String(cString: strerror(code)))",
                nativeCode: Int(code))
        }
        // mkdir applies the umask; make the mode exactly 0700.
        _ = chmod(directory.path, 0o700)
    }

    /// Writes the key to `file` unless a file of that name exists; returns false when one does.
    private static func store(_ key: EARSigningKey, at file: URL) throws(AttestationResultsError) -> Bool {
        let temporary = file.deletingLastPathComponent()
            .appendingPathComponent(".\(file.lastPathComponent).\(UInt64.random(in: 0...UInt64.max)).tmp")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let code = errno
            throw AttestationResultsError(
                .keyFile,
                "cannot create a key file in \(file.deletingLastPathComponent().path): "
                    + String(cString: strerror(code)), nativeCode: Int(code))
        }
        defer { unlink(temporary.path) }
        let pem = Array(key.pemRepresentation.utf8)
        var written = 0
        var failure: Int32? = fchmod(descriptor, 0o600) == 0 ? nil : errno
        while failure == nil, written < pem.count {
            let count = pem[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno != EINTR { failure = errno }
            } else {
                written += count
            }
        }
        if failure == nil, fsync(descriptor) != 0 { failure = errno }
        close(descriptor)
        if let failure {
            throw AttestationResultsError(
                .keyFile, "cannot write the key file \(file.path): \(String(cString: strerror(failure)))",
                nativeCode: Int(failure))
        }
        guard link(temporary.path, file.path) == 0 else {
            let code = errno
            if code == EEXIST { return false }
            throw AttestationResultsError(
                .keyFile, "cannot store the key file \(file.path): \(String(cString: strerror(code)))",
                nativeCode: Int(code))
        }
        return true
    }
}
