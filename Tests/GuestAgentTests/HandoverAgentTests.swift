import Crypto
import Foundation
import Glibc
import GuestAgent
import GuestProtocol
import Testing

/// The agent's side of the handover over real sockets: sealed secrets opened with the attested key and written
/// 0400 into the secrets folder, receipts, refusals, volumes found by serial in a sysfs-like folder, status.
@Suite("Handover in the agent", .serialized)
struct HandoverAgentTests {
    struct Session {
        let agent: GuestAgent
        let run: Background<Result<GuestAgent.Outcome, GuestAgentError>>
        let control: MessagePort
        let platform: MessagePort
        let root: String
        let folders: HandoverFolders

        func stop() {
            try? control.send(.shutdown)
            _ = run.join()
            removeTree(root)
        }
    }

    func start(volumeWaitMilliseconds: Int = 3000) throws -> Session {
        let root = try temporaryDirectory("handover")
        let folders = HandoverFolders(
            secrets: "\(root)/run/cmk/secrets", volumes: "\(root)/run/cmk/volumes", sysBlock: "\(root)/sys/block",
            devices: "/dev", mountTmpfs: false, volumeWaitMilliseconds: volumeWaitMilliseconds)
        let (agentControl, coordinatorEnd) = try socketPair()
        let (agentPlatform, platformEnd) = try socketPair()
        let provider = SimulatedPlatformProvider(
            port: MessagePort(agentPlatform, name: "platform"), platform: .sevSNP, timeoutMilliseconds: 5000,
            log: .silent)
        let agent = GuestAgent(instance: "child-1", provider: provider, folders: folders, log: .silent)
        let controlPort = MessagePort(agentControl, name: "control")
        nonisolated(unsafe) let unsafeAgent = agent
        let run = Background { () -> Result<GuestAgent.Outcome, GuestAgentError> in
            do throws(GuestAgentError) { return .success(try unsafeAgent.serve(controlPort)) } catch {
                return .failure(error)
            }
        }
        let control = MessagePort(coordinatorEnd, name: "coordinator")
        _ = try control.receive(milliseconds: 5000)  // ready
        return Session(
            agent: agent, run: run, control: control, platform: MessagePort(platformEnd, name: "sim"), root: root,
            folders: folders)
    }

    /// One attestation; returns the public key the evidence bound.
    func attest(_ session: Session, nonce: [UInt8]) throws -> [UInt8] {
        try session.control.send(.attestRequest(nonce: nonce))
        _ = try answerSNPRequest(on: session.platform)
        guard case .attestResponse(_, let publicKey, _, _)? = try session.control.receive(milliseconds: 5000) else {
            throw GuestAgentError(.protocolViolation, "no attestResponse")
        }
        return publicKey
    }

    func status(_ session: Session) throws -> AgentStatus? {
        try session.control.send(.statusRequest)
        guard case .status(let status)? = try session.control.receive(milliseconds: 5000) else { return nil }
        return status
    }

    let nonce: [UInt8] = (0..<32).map { UInt8(255 - $0) }
    let secrets: [(name: String, value: [UInt8])] = [
        ("vault:db/credentials", Array("pw=hunter2".utf8)), ("tls.key", [0, 1, 2, 255]),
    ]

    @Test(
        "opens the delivery sealed to its attested key, writes each secret 0400, proves it read them back; a replay is refused"
    )
    func deliversSecrets() throws {
        let session = try start()
        defer { session.stop() }
        #expect(
            try status(session)
                == AgentStatus(attested: false, secretFiles: [], volumes: [], channelPeers: [], handoverReceived: false)
        )
        let key = try attest(session, nonce: nonce)
        let sealed = try HandoverSeal.seal(
            secrets, to: key, binding: .init(instance: "child-1", nonce: nonce, policyDigest: "sha256:p"))
        try session.control.send(.sealedSecrets(sealed.message))
        guard case .secretsDelivered(let receipts)? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("no receipts")
            return
        }
        #expect(receipts.map(\.name) == secrets.map(\.name))
        for (receipt, secret) in zip(receipts, secrets) {
            #expect(
                HandoverSeal.verifyReceipt(
                    receipt.proof, name: secret.name, contents: secret.value, key: sealed.receiptKey))
            let path = "\(session.folders.secrets)/\(SecretName.fileName(secret.name)!)"
            #expect(try readFile(path) == secret.value)
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o400)
        }
        var folder = stat()
        #expect(stat(session.folders.secrets, &folder) == 0 && folder.st_mode & 0o777 == 0o700)
        #expect(try status(session)?.secretFiles == ["tls.key", "vault%3Adb%2Fcredentials"])

        // The same delivery again: refused, nothing rewritten.
        try session.control.send(.sealedSecrets(sealed.message))
        guard case .failure(let reason)? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("a replay was not refused")
            return
        }
        #expect(reason.contains("already opened"))
    }

    @Test("refuses secrets before any attestation, and sealed for another nonce, instance or key; writes nothing")
    func refusesWhatItCannotOpen() throws {
        let session = try start()
        defer { session.stop() }
        let stranger = Curve25519.KeyAgreement.PrivateKey()
        let early = try HandoverSeal.seal(
            secrets, to: Array(stranger.publicKey.rawRepresentation),
            binding: .init(instance: "child-1", nonce: nonce, policyDigest: "p"))
        try session.control.send(.sealedSecrets(early.message))
        guard case .failure(let before)? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("accepted secrets before attesting")
            return
        }
        #expect(before.contains("has not attested"))

        let key = try attest(session, nonce: nonce)
        let cases: [(String, [UInt8], HandoverSeal.Binding)] = [
            (
                "another key", Array(stranger.publicKey.rawRepresentation),
                .init(instance: "child-1", nonce: nonce, policyDigest: "p")
            ),
            ("another nonce", key, .init(instance: "child-1", nonce: Array(nonce.reversed()), policyDigest: "p")),
        ]
        for (what, recipient, binding) in cases {
            let sealed = try HandoverSeal.seal(secrets, to: recipient, binding: binding)
            try session.control.send(.sealedSecrets(sealed.message))
            guard case .failure(let reason)? = try session.control.receive(milliseconds: 5000) else {
                Issue.record("\(what): opened")
                continue
            }
            #expect(reason.contains("does not open"), "\(what): \(reason)")
        }
        var flipped = try HandoverSeal.seal(
            secrets, to: key, binding: .init(instance: "child-1", nonce: nonce, policyDigest: "p")
        ).message
        flipped.secrets[1].ciphertext[0] ^= 1
        try session.control.send(.sealedSecrets(flipped))
        guard case .failure(let reason)? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("a flipped byte opened")
            return
        }
        #expect(reason.contains("secret 2 of 2"))
        // The first secret opened before the second failed, yet nothing was written: all open before any write.
        #expect(try status(session)?.secretFiles == [])
        #expect(!FileManager.default.fileExists(atPath: session.folders.secrets))
    }

    @Test("finds hot-plugged volumes by serial, links them, reports device and size; a missing one times out")
    func volumes() throws {
        let session = try start(volumeWaitMilliseconds: 1500)
        defer { session.stop() }
        _ = try attest(session, nonce: nonce)
        let block = "\(session.root)/sys/block"
        try FileManager.default.createDirectory(atPath: "\(block)/vda", withIntermediateDirectories: true)
        try writeFile("\(block)/vda/serial", Array("cmkvol0\n".utf8))
        try writeFile("\(block)/vda/size", Array("32768\n".utf8))
        // The second disk appears a moment later, as a hot-plugged one does.
        let later = Background { () -> Bool in
            Thread.sleep(forTimeInterval: 0.3)
            try? FileManager.default.createDirectory(atPath: "\(block)/vdb", withIntermediateDirectories: true)
            try? writeFile("\(block)/vdb/size", Array("2048\n".utf8))
            try? writeFile("\(block)/vdb/serial", Array("cmkvol1".utf8))
            return true
        }
        try session.control.send(
            .attachVolumes([
                VolumeAttachment(name: "data", serial: "cmkvol0"), VolumeAttachment(name: "logs", serial: "cmkvol1"),
            ]))
        #expect(
            try session.control.receive(milliseconds: 5000)
                == .volumesAttached([
                    AttachedVolume(name: "data", device: "vda", sizeBytes: 16 << 20),
                    AttachedVolume(name: "logs", device: "vdb", sizeBytes: 1 << 20),
                ]))
        _ = later.join()
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: "\(session.folders.volumes)/data") == "/dev/vda")
        #expect(try status(session)?.volumes == ["data", "logs"])

        try session.control.send(.attachVolumes([VolumeAttachment(name: "missing", serial: "cmkvol9")]))
        guard case .failure(let reason)? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("a missing volume was confirmed")
            return
        }
        #expect(reason.contains("missing") && reason.contains("virtio_blk"))
        try session.control.send(.attachVolumes([VolumeAttachment(name: "../x", serial: "cmkvol0")]))
        guard case .failure? = try session.control.receive(milliseconds: 5000) else {
            Issue.record("a volume name with a path was accepted")
            return
        }
    }

    @Test("--secrets-dir and --volumes-dir move the folders; the defaults are under /run/cmk")
    func folderFlags() throws {
        let defaults = try AgentCommandLine.parse(["--control", "c"])
        #expect(defaults.secretsDirectory == "/run/cmk/secrets" && defaults.volumesDirectory == "/run/cmk/volumes")
        let moved = try AgentCommandLine.parse(["--control", "c", "--secrets-dir", "/tmp/s", "--volumes-dir=/tmp/v"])
        #expect(moved.secretsDirectory == "/tmp/s" && moved.volumesDirectory == "/tmp/v")
        #expect(throws: GuestAgentError.self) { try AgentCommandLine.parse(["--control", "c", "--secrets-dir"]) }
    }
}
