public import AttestationPolicy
import BinaryFormat
import Crypto
import Foundation
public import GuestProtocol

/// What the handover did, for the launch outcome, the audit record and `cmk ps`: names, digests and timings — never
/// a secret.
public struct HandoverReport: Sendable, Hashable, Codable {
    /// One secret delivered: its reference and the receipt check.
    public struct Secret: Sendable, Hashable, Codable {
        public let name: String
        /// Whether the child's receipt proved it read back exactly what was sealed.
        public let confirmed: Bool
    }

    public struct Volume: Sendable, Hashable, Codable {
        public let name: String
        /// The child's block device (`vda`) and the size it sees.
        public let device: String
        public let sizeBytes: UInt64
    }

    public let pins: [VCPUPinning.Pin]
    public let secrets: [Secret]
    /// SHA-256 (hex) of the sealed-secrets message as sent: what the host saw, and all the audit log keeps.
    public let sealedMessageSHA256: String?
    public let volumes: [Volume]
    public let channelPeers: [String]
    /// Seconds spent pinning (QMP and `sched_setaffinity`), sealing, delivering (send to verified receipts),
    /// attaching volumes (hot-plug to the child's confirmation), and in all.
    public let pinningSeconds: Double
    public let sealingSeconds: Double
    public let deliverySeconds: Double
    public let volumeSeconds: Double
    public let totalSeconds: Double
}

/// The handover to an admitted child, step by step (docs/coordinator.md, "Handover"). The supervisor calls it only
/// after the `admit` verdict has been recorded; before that the child has nothing but its boot image.
///
/// 1. **Pin**: QMP `query-cpus-fast` gives each vCPU's host thread; each is pinned to one partition CPU.
/// 2. **Secrets**: the policy's references are read from the ``SecretStore``, sealed with ``HandoverSeal`` to the
///    key the verified REPORT_DATA bound (info: instance, nonce, policy digest), sent as `.sealedSecrets`, and
///    dropped; the child's receipts are checked against the exporter key.
/// 3. **Volumes**: each is hot-plugged (QMP `blockdev-add` of its image, `device_add virtio-blk-pci` into a free
///    PCIe root port, serial `cmkvolN`) and the child confirms it sees it (`.attachVolumes`).
/// 4. **Peers**: the final `.handover` names everything and the channel peers; the child acknowledges.
///
/// Every failure throws `handover`: the supervisor then tears the instance down.
public struct Handover {
    public let instance: String
    public let policy: Policy
    public let handover: AttestationPolicy.Handover
    /// The nonce of the admitted attestation and the X25519 key its REPORT_DATA bound.
    public let nonce: [UInt8]
    public let boundKey: [UInt8]
    public let qemuPID: Int32
    public let partitionCPUs: [Int]
    public let qmpSocket: String
    public let secrets: SecretStore
    public let volumes: VolumeStore
    let progress: @Sendable (String) -> Void

    public init(
        instance: String, policy: Policy, handover: AttestationPolicy.Handover, nonce: [UInt8], boundKey: [UInt8],
        qemuPID: Int32, partitionCPUs: [Int], qmpSocket: String, secrets: SecretStore, volumes: VolumeStore,
        progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.instance = instance
        self.policy = policy
        self.handover = handover
        self.nonce = nonce
        self.boundKey = boundKey
        self.qemuPID = qemuPID
        self.partitionCPUs = partitionCPUs
        self.qmpSocket = qmpSocket
        self.secrets = secrets
        self.volumes = volumes
        self.progress = progress
    }

    /// The PCIe root port of hot-plug slot `index` (the launch creates one per volume the policy names).
    public static func slotID(_ index: Int) -> String { "cmkslot\(index)" }
    /// The virtio-blk serial of volume `index` (at most 20 bytes).
    public static func serial(_ index: Int) -> String { "cmkvol\(index)" }

    /// Runs the four steps over the child's control connection; blocking (QMP and the control port).
    public func run(over control: FramedConnection) throws -> HandoverReport {
        let started = ContinuousClock.now
        let qmp = try QMPClient(path: qmpSocket)

        // 1. Pin the vCPU threads.
        var clock = ContinuousClock.now
        let pins = try VCPUPinning.pin(pid: qemuPID, vcpus: try qmp.vcpus(), cpus: partitionCPUs)
        let pinningSeconds = Self.seconds(since: clock)
        progress(
            "pinned " + pins.map { "vCPU \($0.vcpu) (thread \($0.threadID)) to CPU \($0.cpu)" }.joined(separator: ", "))

        // 2. Secrets, sealed to the attested key.
        var sealingSeconds = 0.0
        var deliverySeconds = 0.0
        var secretReports: [HandoverReport.Secret] = []
        var sealedDigest: String?
        if !handover.secrets.isEmpty {
            clock = ContinuousClock.now
            var plaintexts: [(name: String, value: [UInt8])] = []
            defer {
                // Best effort: overwrite the plaintext copies this function holds before they are freed.
                for index in plaintexts.indices {
                    _ = plaintexts[index].value.withUnsafeMutableBytes {
                        $0.initializeMemory(as: UInt8.self, repeating: 0)
                    }
                }
            }
            for reference in handover.secrets { plaintexts.append((reference, try secrets.resolve(reference))) }
            let sealed: HandoverSeal.Sealed
            do {
                sealed = try HandoverSeal.seal(
                    plaintexts, to: boundKey,
                    binding: .init(instance: instance, nonce: nonce, policyDigest: policy.digest))
            } catch {
                throw CoordinatorError(.handover, "cannot seal the secrets: \(error)")
            }
            let message = GuestMessage.sealedSecrets(sealed.message)
            sealedDigest = Hex.encode(SHA256.hash(data: message.encoded()))
            sealingSeconds = Self.seconds(since: clock)

            clock = ContinuousClock.now
            try control.send(message)
            let answer = try control.receive(timeout: .seconds(60))
            guard case .secretsDelivered(let receipts) = answer else {
                if case .failure(let reason) = answer {
                    throw CoordinatorError(.handover, "the child refused the secrets: \(reason)")
                }
                throw CoordinatorError(.handover, "the child answered \(answer.kind) to the sealed secrets")
            }
            guard receipts.map(\.name) == plaintexts.map(\.name) else {
                throw CoordinatorError(
                    .handover, "the child's receipts name \(receipts.map(\.name)), not \(plaintexts.map(\.name))")
            }
            for (receipt, secret) in zip(receipts, plaintexts) {
                guard
                    HandoverSeal.verifyReceipt(
                        receipt.proof, name: secret.name, contents: secret.value, key: sealed.receiptKey)
                else {
                    throw CoordinatorError(
                        .handover, "the child's receipt for \(secret.name) does not prove it holds what was sealed")
                }
                secretReports.append(.init(name: secret.name, confirmed: true))
            }
            deliverySeconds = Self.seconds(since: clock)
            progress(
                "sealed \(plaintexts.count) secret(s) to the attested key (\(String(format: "%.1f", sealingSeconds * 1000)) ms); "
                    + "the child confirmed each (\(String(format: "%.1f", deliverySeconds * 1000)) ms)")
        }

        // 3. Volumes, hot-plugged only now.
        var volumeSeconds = 0.0
        var volumeReports: [HandoverReport.Volume] = []
        if !handover.volumes.isEmpty {
            clock = ContinuousClock.now
            var attachments: [VolumeAttachment] = []
            for (index, name) in handover.volumes.enumerated() {
                let image = try volumes.resolve(name)
                try qmp.execute(
                    "blockdev-add",
                    arguments: [
                        "driver": "raw", "node-name": "cmkvol\(index)",
                        "file": ["driver": "file", "filename": image.path] as [String: Any],
                    ])
                try qmp.execute(
                    "device_add",
                    arguments: [
                        "driver": "virtio-blk-pci", "id": "cmkvoldev\(index)", "drive": "cmkvol\(index)",
                        "bus": Self.slotID(index), "serial": Self.serial(index),
                    ])
                attachments.append(VolumeAttachment(name: name, serial: Self.serial(index)))
            }
            try control.send(.attachVolumes(attachments))
            let answer = try control.receive(timeout: .seconds(90))
            guard case .volumesAttached(let attached) = answer else {
                if case .failure(let reason) = answer {
                    throw CoordinatorError(.handover, "the child did not see its volumes: \(reason)")
                }
                throw CoordinatorError(.handover, "the child answered \(answer.kind) to the volumes")
            }
            guard attached.map(\.name) == handover.volumes else {
                throw CoordinatorError(
                    .handover, "the child confirmed volumes \(attached.map(\.name)), not \(handover.volumes)")
            }
            volumeReports = attached.map { .init(name: $0.name, device: $0.device, sizeBytes: $0.sizeBytes) }
            volumeSeconds = Self.seconds(since: clock)
            progress(
                "attached "
                    + attached.map { "\($0.name) as /dev/\($0.device) (\($0.sizeBytes >> 20) MiB)" }.joined(
                        separator: ", ")
                    + String(format: " in %.2f s", volumeSeconds))
        }

        // 4. The names, and the channel peers.
        try control.send(
            .handover(secrets: handover.secrets, volumes: handover.volumes, channelPeers: handover.channelPeers))
        let ack = try control.receive(timeout: .seconds(60))
        guard ack == .handoverAck else {
            throw CoordinatorError(.handover, "the child did not acknowledge the handover: \(ack.kind)")
        }
        return HandoverReport(
            pins: pins, secrets: secretReports, sealedMessageSHA256: sealedDigest, volumes: volumeReports,
            channelPeers: handover.channelPeers, pinningSeconds: pinningSeconds, sealingSeconds: sealingSeconds,
            deliverySeconds: deliverySeconds, volumeSeconds: volumeSeconds, totalSeconds: Self.seconds(since: started))
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let duration = ContinuousClock.now - start
        return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The audit details of a handover: names, the sealed message's digest, pins, volumes, peers.
    public static func auditDetails(_ report: HandoverReport) -> [String: String] {
        var details = [
            "event": "handover",
            "secrets": report.secrets.map(\.name).joined(separator: ","),
            "volumes": report.volumes.map { "\($0.name)=\($0.device)" }.joined(separator: ","),
            "channel-peers": report.channelPeers.joined(separator: ","),
            "vcpu-pins": report.pins.map { "\($0.vcpu):\($0.cpu)" }.joined(separator: ","),
        ]
        if let digest = report.sealedMessageSHA256 { details["sealed-secrets-sha256"] = digest }
        return details
    }
}
