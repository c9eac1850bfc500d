import Coordinator
import Foundation
import GuestProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Every refusal of the secret and volume stores, each on its own: a missing entry, a symbolic link, something other
/// than a regular file, a file others may read or write, a file owned by another user, a secret that is too large,
/// and a store folder that is a link, open to others or another user's.
@Suite("the secret and volume stores refuse what is not private to the coordinator")
struct HandoverStoreRefusalTests {
    let root: URL
    let state: CMKStateDirectory
    let secrets: SecretStore
    let volumes: VolumeStore

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-stores-\(UUID().uuidString.prefix(8))")
        state = CMKStateDirectory(root.appendingPathComponent("state"))
        try FileManager.default.createDirectory(at: state.url, withIntermediateDirectories: true)
        secrets = SecretStore(state)
        volumes = VolumeStore(state)
        try secrets.put("vault:app/token", contents: Array("s3cret".utf8))
        try volumes.create("data", sizeMiB: 1)
    }

    /// The reason of the handover error `body` throws.
    func refusal(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "accepted"
        } catch let error as CoordinatorError {
            return error.code == .handover ? error.reason : "wrong code \(error.code): \(error.reason)"
        } catch {
            return "\(error)"
        }
    }

    @Test("a well-kept secret and volume resolve")
    func wellKeptEntriesResolve() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(try secrets.resolve("vault:app/token") == Array("s3cret".utf8))
        #expect(try volumes.resolve("data").lastPathComponent == "data.img")
    }

    @Test("missing entries are refused with the command that makes them")
    func missing() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(refusal { _ = try secrets.resolve("vault:other") }.contains("cmk secret put vault:other"))
        #expect(refusal { _ = try volumes.resolve("other") }.contains("cmk volume create other"))
    }

    @Test("a symbolic link is refused, even to a private file of this user")
    func symbolicLinks() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let elsewhere = root.appendingPathComponent("elsewhere")
        _ = FileManager.default.createFile(atPath: elsewhere.path, contents: Data("x".utf8), attributes: [.posixPermissions: 0o600])
        let secret = try secrets.file(for: "vault:app/token")
        try FileManager.default.removeItem(at: secret)
        try FileManager.default.createSymbolicLink(at: secret, withDestinationURL: elsewhere)
        #expect(refusal { _ = try secrets.resolve("vault:app/token") }.contains("is a symbolic link"))
        let image = try volumes.image(for: "data")
        try FileManager.default.removeItem(at: image)
        try FileManager.default.createSymbolicLink(at: image, withDestinationURL: elsewhere)
        #expect(refusal { _ = try volumes.resolve("data") }.contains("is a symbolic link"))
    }

    @Test("something other than a regular file is refused: a folder, a FIFO")
    func notRegularFiles() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let secret = try secrets.file(for: "vault:app/token")
        try FileManager.default.removeItem(at: secret)
        try FileManager.default.createDirectory(at: secret, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect(refusal { _ = try secrets.resolve("vault:app/token") }.contains("is a folder, not a regular file"))
        let image = try volumes.image(for: "data")
        try FileManager.default.removeItem(at: image)
        #expect(mkfifo(image.path, 0o600) == 0)
        #expect(refusal { _ = try volumes.resolve("data") }.contains("not a regular file"))
    }

    @Test("a file others may read or write is refused, naming its mode", arguments: [0o640, 0o604, 0o620, 0o602])
    func openToOthers(mode: Int) throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let secret = try secrets.file(for: "vault:app/token")
        #expect(chmod(secret.path, mode_t(mode)) == 0)
        let reason = refusal { _ = try secrets.resolve("vault:app/token") }
        #expect(reason.contains("may be read or written by others") && reason.contains(String(mode, radix: 8)), "\(reason)")
        let image = try volumes.image(for: "data")
        #expect(chmod(image.path, mode_t(mode)) == 0)
        #expect(refusal { _ = try volumes.resolve("data") }.contains("may be read or written by others"))
    }

    @Test("a file owned by another user is refused (the tests run as root, which may give files away)")
    func ownedByAnotherUser() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        try #require(geteuid() == 0, "giving a file to another user needs root")
        let secret = try secrets.file(for: "vault:app/token")
        #expect(chown(secret.path, 65534, 65534) == 0)
        #expect(refusal { _ = try secrets.resolve("vault:app/token") }.contains("belongs to user 65534"))
        let image = try volumes.image(for: "data")
        #expect(chown(image.path, 65534, 65534) == 0)
        #expect(refusal { _ = try volumes.resolve("data") }.contains("belongs to user 65534"))
    }

    @Test("a secret larger than the handover limit is refused, however it got there")
    func tooLarge() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(throws: CoordinatorError.self) {
            try secrets.put("vault:big", contents: [UInt8](repeating: 1, count: HandoverLimits.maximumSecretBytes + 1))
        }
        let big = try secrets.file(for: "vault:big")
        _ = FileManager.default.createFile(
            atPath: big.path, contents: Data(count: HandoverLimits.maximumSecretBytes + 1),
            attributes: [.posixPermissions: 0o600])
        #expect(refusal { _ = try secrets.resolve("vault:big") }.contains("has more than"))
    }

    @Test("a store folder that is a link, open to others or another user's is refused")
    func storeFolders() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(chmod(secrets.directory.path, 0o755) == 0)
        #expect(refusal { _ = try secrets.resolve("vault:app/token") }.contains("secret store"))
        #expect(chmod(secrets.directory.path, 0o700) == 0)
        #expect(try secrets.resolve("vault:app/token").count == 6)
        let moved = root.appendingPathComponent("moved-volumes")
        try FileManager.default.moveItem(at: volumes.directory, to: moved)
        try FileManager.default.createSymbolicLink(at: volumes.directory, withDestinationURL: moved)
        #expect(refusal { _ = try volumes.resolve("data") }.contains("volume store"))
        if geteuid() == 0 {
            try FileManager.default.removeItem(at: volumes.directory)
            try FileManager.default.moveItem(at: moved, to: volumes.directory)
            #expect(chown(volumes.directory.path, 65534, 65534) == 0)
            #expect(refusal { _ = try volumes.resolve("data") }.contains("belongs to user 65534"))
        }
    }
}
