public import Foundation
import Yams

extension CoordinatorError.Code {
    /// `cmk update` cannot proceed: no update path in the policy, a successor name that does not fit, an instance
    /// not admitted.
    public static let updateRefused = CoordinatorError.Code("update-refused")
    /// A step of an update failed (the successor, the channel, the state transfer, the switch); rolled back.
    public static let updateFailed = CoordinatorError.Code("update-failed")
}

/// How an instance's successor is named: `NAME` → `NAME.u1` → `NAME.u2` … Every manifest names its designated
/// successor in `updatePeers`, so the two children accept an update channel with each other and no one else.
public enum UpdateNaming {
    /// The successor's name (at most 63 characters, as every instance name).
    public static func successor(of name: String) -> String {
        if let dot = name.lastIndex(of: "."), name[name.index(after: dot)...].hasPrefix("u"),
           let generation = Int(name[name.index(dot, offsetBy: 2)...]), generation >= 1
        {
            return "\(name[..<dot]).u\(generation + 1)"
        }
        return "\(name).u1"
    }

    /// The `updatePeers` of an instance's manifest: its successor and, for a successor, its predecessor.
    public static func updatePeers(of name: String, predecessor: String?) -> [String] {
        [successor(of: name)] + (predecessor.map { [$0] } ?? [])
    }
}

/// The host's check before it relays an update channel: both admitted, the responder the initiator's designated
/// successor. The children check each other again from their own manifests (`updatePeers`).
public enum UpdateAccess {
    public static func check(_ state: CMKStateDirectory, predecessor: String, successor: String) throws(CoordinatorError) {
        guard successor == UpdateNaming.successor(of: predecessor) else {
            throw CoordinatorError(
                .channelRefused,
                "\(successor) is not \(predecessor)'s designated successor (\(UpdateNaming.successor(of: predecessor)))")
        }
        guard let store = try InstanceStore.openForReading(state) else {
            throw CoordinatorError(.unknownInstance, "no instances in \(state.url.path)")
        }
        defer { store.close() }
        for name in [predecessor, successor] {
            guard let record = try store.instance(name) else {
                throw CoordinatorError(.unknownInstance, "no instance named \(name)")
            }
            guard record.state == .admitted else {
                throw CoordinatorError(.channelRefused, "\(name) is \(record.state), not admitted")
            }
        }
    }
}

/// The update path a policy declares (docs/policy-language.md, "`update`"):
///
/// ```yaml
/// update:
///   from:                        # the predecessor must match one entry (every key given must match)
///     - profile: general
///       policy: development      # the predecessor's policy id
///       kernel-sha256: <64 hex>
///   to:                          # optional: the successor must match one entry
///     - profile: database
/// ```
///
/// Without an `update` section a policy allows an update only between instances it admitted itself (the
/// predecessor's policy has the same id and digest).
public struct UpdatePath: Sendable, Hashable {
    public struct Artifacts: Sendable, Hashable {
        public var profile: String?
        public var policy: String?
        public var kernelSHA256: String?

        func matches(_ manifest: InstanceManifest) -> Bool {
            (profile == nil || profile == manifest.image.profile) && (policy == nil || policy == manifest.policyID)
                && (kernelSHA256 == nil || kernelSHA256?.lowercased() == manifest.image.kernelSHA256.lowercased())
        }

        var text: String {
            [profile.map { "profile \($0)" }, policy.map { "policy \($0)" }, kernelSHA256.map { "kernel \($0.prefix(12))…" }]
                .compactMap { $0 }.joined(separator: ", ")
        }
    }

    public var from: [Artifacts]
    public var to: [Artifacts]

    /// The policy file's `update` section; nil when it has none. Unknown keys and malformed values are refused.
    public static func load(policyPath: String) throws(CoordinatorError) -> UpdatePath? {
        let text: String
        do { text = try String(contentsOfFile: policyPath, encoding: .utf8) } catch {
            throw CoordinatorError(.invalidArgument, "cannot read the policy \(policyPath): \(error.localizedDescription)")
        }
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw CoordinatorError(.invalidArgument, "the policy \(policyPath) is not YAML: \(error)")
        }
        guard let top = root as? [String: Any], let section = top["update"] else { return nil }
        guard let map = section as? [String: Any] else {
            throw CoordinatorError(.invalidArgument, "\(policyPath): update must be a mapping with from (and to)")
        }
        for key in map.keys where !["from", "to"].contains(key) {
            throw CoordinatorError(.invalidArgument, "\(policyPath): unknown key '\(key)' in update (allowed: from, to)")
        }
        func entries(_ key: String) throws(CoordinatorError) -> [Artifacts] {
            guard let value = map[key] else { return [] }
            guard let list = value as? [Any] else {
                throw CoordinatorError(.invalidArgument, "\(policyPath): update.\(key) must be a list")
            }
            var result: [Artifacts] = []
            for item in list {
                guard let fields = item as? [String: Any], !fields.isEmpty else {
                    throw CoordinatorError(.invalidArgument, "\(policyPath): each update.\(key) entry is a non-empty mapping")
                }
                var artifacts = Artifacts()
                for (name, value) in fields {
                    guard let string = value as? String, !string.isEmpty else {
                        throw CoordinatorError(.invalidArgument, "\(policyPath): update.\(key).\(name) must be text")
                    }
                    switch name {
                    case "profile": artifacts.profile = string
                    case "policy": artifacts.policy = string
                    case "kernel-sha256":
                        guard string.count == 64, string.allSatisfy(\.isHexDigit) else {
                            throw CoordinatorError(
                                .invalidArgument, "\(policyPath): update.\(key).kernel-sha256 must be 64 hex digits")
                        }
                        artifacts.kernelSHA256 = string
                    default:
                        throw CoordinatorError(
                            .invalidArgument,
                            "\(policyPath): unknown key '\(name)' in update.\(key) (allowed: profile, policy, kernel-sha256)")
                    }
                }
                result.append(artifacts)
            }
            return result
        }
        let path = UpdatePath(from: try entries("from"), to: try entries("to"))
        guard !path.from.isEmpty else {
            throw CoordinatorError(.invalidArgument, "\(policyPath): update.from must list at least one predecessor")
        }
        return path
    }

    /// Whether the predecessor may be replaced under this path; the reason when not.
    public func allows(predecessor: InstanceManifest) -> String? {
        guard from.contains(where: { $0.matches(predecessor) }) else {
            return "the predecessor (profile \(predecessor.image.profile), policy \(predecessor.policyID)) matches no "
                + "update.from entry (\(from.map(\.text).joined(separator: "; ")))"
        }
        return nil
    }

    /// Whether the successor is an allowed target; the reason when not.
    public func allows(successor: InstanceManifest) -> String? {
        guard to.isEmpty || to.contains(where: { $0.matches(successor) }) else {
            return "the successor (profile \(successor.image.profile)) matches no update.to entry "
                + "(\(to.map(\.text).joined(separator: "; ")))"
        }
        return nil
    }
}
