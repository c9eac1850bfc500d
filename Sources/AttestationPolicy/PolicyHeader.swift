public import Foundation

/// What a policy says before its rules: its id, version, the evidence it appraises and the roots it trusts. Read
/// without measuring reference artifacts, so a launch can refuse a policy for the wrong platform before it
/// reserves anything or builds an image.
public struct PolicyHeader: Sendable, Hashable {
    public let id: String
    public let version: Int
    public let evidence: Policy.EvidenceKind
    public let trust: Policy.Trust
    /// Whether the policy has a `tpm` section, so only a child with a vTPM (`cmk launch --vtpm`) can satisfy it.
    public let requiresVTPM: Bool

    public init(
        id: String, version: Int, evidence: Policy.EvidenceKind, trust: Policy.Trust, requiresVTPM: Bool = false
    ) {
        self.id = id
        self.version = version
        self.evidence = evidence
        self.trust = trust
        self.requiresVTPM = requiresVTPM
    }

    /// A loaded policy's header.
    public init(_ policy: Policy) {
        self.init(
            id: policy.id, version: policy.version, evidence: policy.evidence, trust: policy.trust,
            requiresVTPM: policy.tpm != nil)
    }

    /// Whether the policy trusts a simulated root (`simulated-amd`, `simulated-intel`).
    public var trustsSimulatedRoots: Bool { trust.roots.contains { Policy.simulatedRoots.contains($0) } }
}

extension PolicyLoader {
    /// The header of the policy in `path` (id, version, evidence kind, trusted roots), checked as strictly as
    /// ``load(path:)`` checks those keys; the rules and their reference artifacts are not read.
    public func header(path: String) throws(PolicyError) -> PolicyHeader {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(.unreadable, "cannot read the policy: \(error.localizedDescription)", file: path)
        }
        do throws(PolicyError) {
            let top = try PolicyYAML.root(text).mapping(allowed: [
                "id", "version", "description", "evidence", "trust", "freshness", "sev-snp", "tdx", "tpm", "handover",
                "update",
            ])
            let evidenceNode = try top.require("evidence")
            guard let evidence = Policy.EvidenceKind(rawValue: try evidenceNode.string()) else {
                throw evidenceNode.error(.invalidValue, "evidence must be sev-snp or tdx")
            }
            return PolicyHeader(
                id: try top.require("id").name(pattern: "policy id"),
                version: try top.require("version").integer(in: 1...1_000_000), evidence: evidence,
                trust: try readTrust(top.require("trust"), evidence: evidence), requiresVTPM: top["tpm"] != nil)
        } catch {
            throw error.in(file: path)
        }
    }
}
