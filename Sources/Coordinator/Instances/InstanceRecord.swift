public import Foundation

/// The policy an instance is appraised against, as the audit log names it.
public struct PolicyReference: Sendable, Codable, Hashable, CustomStringConvertible {
    public let id: String
    public let version: Int
    /// SHA-256 of the policy document, hex.
    public let digest: String

    public init(id: String, version: Int, digest: String) {
        self.id = id
        self.version = version
        self.digest = digest
    }

    /// "web-snp@3".
    public var description: String { "\(id)@\(version)" }
}

/// What an operator asks for when launching an instance.
public struct InstanceRequest: Sendable, Codable, Hashable {
    /// Unique among live instances: 1 to 63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit.
    public var name: String
    public var resources: PartitionRequest
    /// The guest-kernels/ profile it boots.
    public var profile: String?
    public var policy: PolicyReference?
    /// The process that will run the instance's life cycle (its `cmk launch --foreground`), if any.
    public var supervisor: ProcessIdentity?

    public init(
        name: String, resources: PartitionRequest, profile: String? = nil, policy: PolicyReference? = nil,
        supervisor: ProcessIdentity? = nil
    ) {
        self.name = name
        self.resources = resources
        self.profile = profile
        self.policy = policy
        self.supervisor = supervisor
    }
}

/// One instance as the store keeps it.
public struct InstanceRecord: Sendable, Codable, Hashable {
    /// A UUID, lower case; stable for the instance's whole life.
    public let id: String
    public let name: String
    public internal(set) var state: InstanceState
    /// The reason of the newest transition.
    public internal(set) var reason: String
    /// The CPUs and memory it was given (kept after it is stopped, for the record).
    public let partition: Partition
    /// Whether it still holds the partition: from `reserved` until `stopped`, or until it is marked rejected or
    /// failed with its QEMU known to be gone. Only held partitions count against the host.
    public internal(set) var holdsPartition: Bool
    public internal(set) var policy: PolicyReference?
    public internal(set) var profile: String?
    /// Its QEMU, from `booting` on.
    public internal(set) var process: ProcessIdentity?
    /// Its sockets by role ("qmp", "control", "platform" ...), as paths.
    public internal(set) var sockets: [String: String]
    /// SHA-256 (hex) of the evidence it was appraised on.
    public internal(set) var evidenceDigest: String?
    /// The audit log record of its appraisal.
    public internal(set) var auditSequence: Int64?
    public let createdAt: Date
    public internal(set) var updatedAt: Date
    /// The process supervising it (`cmk launch --foreground`): it watches the QEMU and the agent. Reconciliation
    /// leaves an instance alone while this process runs.
    public internal(set) var supervisor: ProcessIdentity?

    public init(
        id: String, name: String, state: InstanceState, reason: String, partition: Partition, holdsPartition: Bool,
        policy: PolicyReference?, profile: String?, process: ProcessIdentity?, sockets: [String: String],
        evidenceDigest: String?, auditSequence: Int64?, createdAt: Date, updatedAt: Date,
        supervisor: ProcessIdentity? = nil
    ) {
        self.supervisor = supervisor
        self.id = id
        self.name = name
        self.state = state
        self.reason = reason
        self.partition = partition
        self.holdsPartition = holdsPartition
        self.policy = policy
        self.profile = profile
        self.process = process
        self.sockets = sockets
        self.evidenceDigest = evidenceDigest
        self.auditSequence = auditSequence
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Fields a transition (or ``InstanceStore/update(_:_:)``) sets along the way; nil leaves a field as it is.
public struct InstanceChanges: Sendable, Hashable {
    /// The QEMU started for the instance (required on the way into `booting`).
    public var process: ProcessIdentity?
    /// Sockets to add or replace, by role.
    public var sockets: [String: String]
    public var evidenceDigest: String?
    public var auditSequence: Int64?
    public var policy: PolicyReference?
    /// A new supervisor took the instance over.
    public var supervisor: ProcessIdentity?
    /// The caller knows the instance's QEMU is gone (it never started, or was reaped): on the way into
    /// `rejected` or `failed` the partition is released at once instead of at `stopped`.
    public var processGone: Bool

    public init(
        process: ProcessIdentity? = nil, sockets: [String: String] = [:], evidenceDigest: String? = nil,
        auditSequence: Int64? = nil, policy: PolicyReference? = nil, supervisor: ProcessIdentity? = nil,
        processGone: Bool = false
    ) {
        self.supervisor = supervisor
        self.process = process
        self.sockets = sockets
        self.evidenceDigest = evidenceDigest
        self.auditSequence = auditSequence
        self.policy = policy
        self.processGone = processGone
    }
}
