public import Foundation
import Crypto

/// What the coordinator launches an instance with, and what the instance's evidence must carry a digest of:
/// HOST_DATA = SHA-256 of the canonical bytes (SEV-SNP), MRCONFIGID = SHA-384 of them (TDX).
///
/// The canonical form is JSON with sorted keys and no whitespace; every launch has its own `launchID`, so no two
/// launches share a manifest digest and evidence from one cannot stand in for another.
public struct InstanceManifest: Sendable, Hashable, Codable {
    public struct Image: Sendable, Hashable, Codable {
        public var profile: String
        public var kernelSHA256: String
        public var initrdSHA256: String
        public var firmwareSHA256: String
        public var cmdline: String

        public init(profile: String, kernelSHA256: String, initrdSHA256: String, firmwareSHA256: String, cmdline: String) {
            self.profile = profile
            self.kernelSHA256 = kernelSHA256
            self.initrdSHA256 = initrdSHA256
            self.firmwareSHA256 = firmwareSHA256
            self.cmdline = cmdline
        }
    }

    public var formatVersion = 1
    public var name: String
    /// A random identifier of this launch (UUID text).
    public var launchID: String
    public var platform: String
    public var image: Image
    public var vcpus: Int
    public var memoryMiB: Int
    /// The policy the instance is appraised with: id, version and content digest.
    public var policyID: String
    public var policyVersion: Int
    public var policyDigest: String
    /// The instances this one may open sealed channels with (from the policy's handover).
    public var channelPeers: [String]
    /// Launch measurements (lower-case hex; SEV-SNP MEASUREMENT, TDX MRTD) the instance's child requires of some of
    /// its channel peers (the policy's `handover.channel-peer-measurements`). Nil, and absent from the canonical
    /// JSON, when nothing is pinned.
    public var peerMeasurements: [String: [String]]?
    /// The instances this one may move its workload state to or from (`cmk update`, docs/updates.md): its designated
    /// successor (``UpdateNaming/successor(of:)``) and, for a successor, its predecessor. Nil (omitted from the
    /// canonical bytes) in manifests from before updates.
    public var updatePeers: [String]?

    public init(
        name: String, launchID: String = UUID().uuidString.lowercased(), platform: String, image: Image, vcpus: Int,
        memoryMiB: Int, policyID: String, policyVersion: Int, policyDigest: String, channelPeers: [String],
        peerMeasurements: [String: [String]]? = nil, updatePeers: [String]? = nil
    ) {
        self.peerMeasurements = peerMeasurements
        self.updatePeers = updatePeers
        self.name = name
        self.launchID = launchID
        self.platform = platform
        self.image = image
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.policyID = policyID
        self.policyVersion = policyVersion
        self.policyDigest = policyDigest
        self.channelPeers = channelPeers
    }

    /// The bytes the digests cover.
    public var canonicalBytes: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    /// SHA-256 of the canonical bytes: what SEV-SNP HOST_DATA carries.
    public var hostData: [UInt8] { Array(SHA256.hash(data: canonicalBytes)) }
    /// SHA-384 of the canonical bytes: what TDX MRCONFIGID carries.
    public var mrConfigID: [UInt8] { Array(SHA384.hash(data: canonicalBytes)) }
}
