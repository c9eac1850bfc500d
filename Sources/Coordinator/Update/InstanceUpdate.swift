public import Foundation
import AttestationPolicy
import AuditLog
import BinaryFormat

/// `cmk update`: replaces an admitted instance by a successor on a fresh partition without losing its workload's
/// state or failing a client request (docs/updates.md).
///
/// Steps, each audited (`update-*` instance events) and timed:
/// 1. `check` — the predecessor is admitted; the successor's policy declares an update path from it (``UpdatePath``).
/// 2. `launch` — the successor (`NAME.uN`, ``UpdateNaming``) is launched, attested and admitted like any instance; its
///    manifest names the predecessor in `updatePeers`. Then its manifest must match the path's `to`.
/// 3. `channel` — a sealed channel predecessor → successor, which both children check against their own manifests.
/// 4. `transfer` — the successor is told to import; every endpoint backed by the predecessor is held (requests wait,
///    the ones in flight finish); the predecessor seals its whole state onto the channel; the successor checks count,
///    size and digest before it replaces its own state.
/// 5. `switch` — each held endpoint's backends become the successor, atomically, and the hold is released.
/// 6. `retire` — the predecessor (no longer anyone's backend) is stopped and its partition reclaimed.
///
/// A failure in steps 1–5 rolls back: holds are released with the old backends, the successor is stopped; the
/// predecessor, whose state an export never changes, goes on serving. A failure in step 6 leaves the update done and
/// says what to stop by hand.
public final class InstanceUpdate: @unchecked Sendable {
    public enum Phase: String, Codable, Sendable, CaseIterable {
        case check, launch, channel, transfer, `switch`, retire
    }

    public enum Event: Sendable {
        case started(Phase)
        case finished(Phase, seconds: Double, detail: String)
        case note(String)
    }

    public struct PhaseTiming: Codable, Sendable, Hashable {
        public let phase: Phase
        public let seconds: Double
        public let detail: String
    }

    /// What an update did.
    public struct Outcome: Codable, Sendable {
        public var predecessor: String
        public var successor: String
        /// `updated` or `rolled-back`.
        public var result: String
        public var failedPhase: Phase?
        public var error: String?
        public var phases: [PhaseTiming] = []
        public var endpoints: [String] = []
        /// How long the endpoints were held (the longest a client request could wait), in ms.
        public var holdMs: Double?
        public var stateEntries: UInt64?
        public var stateBytes: UInt64?
        /// The sealed transfer as the receiving child measured it (first record to checked summary), in µs.
        public var transferMicros: UInt64?
        public var channel: String?
        /// The successor's profile and kernel (SHA-256 of the image it booted, from its manifest).
        public var successorProfile: String?
        public var successorKernelSHA256: String?
    }

    /// Launches the successor (name, profile, policy path, predecessor) and says whether it was admitted (and why not).
    public typealias Launcher = @Sendable (String, String, String, String) async -> (admitted: Bool, detail: String)
    /// Stops an instance by name; a failure's reason, nil when stopped.
    public typealias Stopper = @Sendable (String) async -> String?

    let state: CMKStateDirectory
    let predecessor: String
    /// The successor's profile; nil: the predecessor's (read from its manifest).
    let profile: String?
    /// Another kernel image for the successor (`--kernel`), or nil; only recorded here, the launcher passes it on.
    let kernel: String?
    let policyPath: String
    let timeout: Duration
    let launcher: Launcher
    let stopper: Stopper
    let progress: @Sendable (Event) -> Void

    public init(
        state: CMKStateDirectory, predecessor: String, profile: String?, kernel: String? = nil, policyPath: String,
        timeout: Duration,
        launcher: @escaping Launcher, stopper: @escaping Stopper, progress: @escaping @Sendable (Event) -> Void
    ) {
        self.state = state
        self.predecessor = predecessor
        self.profile = profile
        self.kernel = kernel
        self.policyPath = policyPath
        self.timeout = timeout
        self.launcher = launcher
        self.stopper = stopper
        self.progress = progress
    }

    private struct Failure: Error {
        let phase: Phase
        let reason: String
    }

    private func audit(_ event: String, _ details: [String: String]) {
        do {
            let log = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
            var all = details
            all["event"] = event
            _ = try log.append(AuditEntry(actor: "coordinator", kind: .instanceEvent, instance: predecessor, details: all))
        } catch {
            progress(.note("cannot append \(event) to the audit log: \(error)"))
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func manifest(of name: String) throws(CoordinatorError) -> InstanceManifest {
        let url = InstanceSupervisor.folder(state, name: name).appendingPathComponent("manifest.json")
        do {
            return try JSONDecoder().decode(InstanceManifest.self, from: Data(contentsOf: url))
        } catch {
            throw CoordinatorError(.updateRefused, "cannot read \(name)'s manifest (\(url.path)): \(error.localizedDescription)")
        }
    }

    /// Waits for an event of this instance on the channel; the event, or a failure with the agent's reason.
    private func waitFor(
        _ wanted: String, channel: String, instance: String, phase: Phase, deadline: ContinuousClock.Instant
    ) async throws(Failure) -> ChannelFiles.Event {
        while ContinuousClock.now < deadline {
            let events = ChannelFiles.events(state, channel: channel, instance: instance)
            if let hit = events.last(where: { $0.event == wanted }) { return hit }
            if let bad = events.last(where: { ["failed", "state-failed", "closed"].contains($0.event) }) {
                throw Failure(phase: phase, reason: "\(instance) reported \(bad.event): \(bad.detail)")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        throw Failure(phase: phase, reason: "no \(wanted) from \(instance) within \(timeout)")
    }

    private func relay(_ instance: String, _ message: RelayMessage, phase: Phase) throws(Failure) {
        do {
            let link = try RelayLink.connect(path: ChannelFiles.relaySocket(state, instance: instance))
            defer { link.close() }
            let answer = try link.request(message, timeout: .seconds(60))
            guard answer.op == .accepted else {
                throw Failure(phase: phase, reason: "\(instance)'s supervisor refused: \(answer.reason ?? "no reason")")
            }
        } catch let failure as Failure {
            throw failure
        } catch let error as CoordinatorError {
            throw Failure(phase: phase, reason: error.reason)
        } catch {
            throw Failure(phase: phase, reason: "\(error)")
        }
    }

    /// Runs the update; never throws: a failure is an outcome with `rolled-back`.
    public func run() async -> Outcome {
        let successor = UpdateNaming.successor(of: predecessor)
        var outcome = Outcome(predecessor: predecessor, successor: successor, result: "updated")
        var launched = false
        var holds: [(name: String, link: RelayLink)] = []
        var current: Phase = .check
        var phaseStart = ContinuousClock.now
        func begin(_ phase: Phase) {
            current = phase
            phaseStart = .now
            progress(.started(phase))
        }
        func end(_ detail: String) {
            let seconds = Self.seconds(ContinuousClock.now - phaseStart)
            outcome.phases.append(PhaseTiming(phase: current, seconds: seconds, detail: detail))
            progress(.finished(current, seconds: seconds, detail: detail))
            audit("update-\(current.rawValue)", [
                "predecessor": predecessor, "successor": successor, "seconds": String(format: "%.3f", seconds),
                "detail": detail,
            ])
        }
        do throws(Failure) {
            // 1. check
            begin(.check)
            let old: InstanceManifest
            do throws(CoordinatorError) {
                guard successor.count <= 63 else {
                    throw CoordinatorError(.updateRefused, "the successor's name \(successor) is longer than 63 characters")
                }
                guard let store = try InstanceStore.openForReading(state), let record = try store.instance(predecessor),
                    record.state == .admitted
                else {
                    throw CoordinatorError(.updateRefused, "\(predecessor) is not an admitted instance (cmk ps)")
                }
                if let other = try store.instance(successor), other.state != .stopped {
                    throw CoordinatorError(.updateRefused, "\(successor) already exists (\(other.state)); stop it first")
                }
                store.close()
                old = try manifest(of: predecessor)
                guard old.updatePeers?.contains(successor) == true else {
                    throw CoordinatorError(
                        .updateRefused,
                        "\(predecessor)'s manifest names no update peer \(successor) (launched before updates existed)")
                }
                let newPolicy = try PolicyLoaderShim.identity(policyPath)
                if let path = try UpdatePath.load(policyPath: policyPath) {
                    if let reason = path.allows(predecessor: old) { throw CoordinatorError(.updateRefused, reason) }
                } else if newPolicy.id != old.policyID || newPolicy.digest != old.policyDigest {
                    throw CoordinatorError(
                        .updateRefused,
                        "policy \(newPolicy.id) declares no update path and is not \(predecessor)'s own policy "
                            + "(\(old.policyID)); add an update section (docs/policy-language.md)")
                }
            } catch {
                throw Failure(phase: .check, reason: "\(error.code): \(error.reason)")
            }
            let endpoints = EndpointFiles.serving(state, instance: predecessor)
            outcome.endpoints = endpoints.map(\.name)
            let profile = profile ?? old.image.profile
            var started = [
                "predecessor": predecessor, "successor": successor, "profile": profile, "policy": policyPath,
                "endpoints": outcome.endpoints.joined(separator: ","),
            ]
            if let kernel { started["kernel"] = kernel }
            audit("update-started", started)
            let kernelText = kernel.map { ", kernel \($0)" } ?? ""
            end("\(predecessor) (profile \(old.image.profile)) → \(successor) (profile \(profile)\(kernelText)); endpoints: "
                + (endpoints.isEmpty ? "none" : outcome.endpoints.joined(separator: ", ")))

            // 2. launch
            begin(.launch)
            launched = true
            let launch = await launcher(successor, profile, policyPath, predecessor)
            guard launch.admitted else { throw Failure(phase: .launch, reason: "the successor was not admitted: \(launch.detail)") }
            do throws(CoordinatorError) {
                let new = try manifest(of: successor)
                outcome.successorProfile = new.image.profile
                outcome.successorKernelSHA256 = new.image.kernelSHA256
                if let path = try UpdatePath.load(policyPath: policyPath), let reason = path.allows(successor: new) {
                    throw CoordinatorError(.updateRefused, reason)
                }
            } catch {
                throw Failure(phase: .launch, reason: error.reason)
            }
            end(launch.detail)

            // 3. channel (the successor's supervisor starts its relay just after it reports admission)
            begin(.channel)
            let channel = "update-\(Hex.random(4))"
            outcome.channel = channel
            let deadline = ContinuousClock.now + timeout
            let relayPath = ChannelFiles.relaySocket(state, instance: successor)
            while !FileManager.default.fileExists(atPath: relayPath), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            try relay(predecessor, RelayMessage(.open, channel: channel, responder: successor, update: true), phase: .channel)
            let established = try await waitFor("established", channel: channel, instance: successor, phase: .channel, deadline: deadline)
            _ = try await waitFor("established", channel: channel, instance: predecessor, phase: .channel, deadline: deadline)
            end("sealed channel \(channel); \(successor): \(established.detail)")

            // 4. transfer (the endpoints held for the export and import only)
            begin(.transfer)
            try relay(successor, RelayMessage(.stateImport, channel: channel), phase: .transfer)
            _ = try await waitFor("state-armed", channel: channel, instance: successor, phase: .transfer, deadline: deadline)
            let holdStart = ContinuousClock.now
            for endpoint in endpoints {
                do {
                    let link = try RelayLink.connect(path: EndpointFiles.controlSocket(state, name: endpoint.name))
                    holds.append((endpoint.name, link))
                    let answer = try link.request(RelayMessage(.hold), timeout: .seconds(60))
                    guard answer.op == .accepted else {
                        throw Failure(phase: .transfer, reason: "endpoint \(endpoint.name) would not hold: \(answer.reason ?? "")")
                    }
                } catch let failure as Failure {
                    throw failure
                } catch {
                    throw Failure(phase: .transfer, reason: "endpoint \(endpoint.name): \(error)")
                }
            }
            try relay(predecessor, RelayMessage(.stateExport, channel: channel), phase: .transfer)
            let sent = try await waitFor("state-sent", channel: channel, instance: predecessor, phase: .transfer, deadline: deadline)
            let imported = try await waitFor("state-imported", channel: channel, instance: successor, phase: .transfer, deadline: deadline)
            let numbers = imported.detail.split(separator: " ").compactMap { UInt64($0) }
            outcome.stateEntries = numbers.first
            outcome.stateBytes = numbers.dropFirst().first
            outcome.transferMicros = imported.micros
            end("\(predecessor): \(sent.detail); \(successor): \(imported.detail) in \(imported.micros) µs")

            // 5. switch
            begin(.switch)
            for hold in holds {
                do {
                    let answer = try hold.link.request(RelayMessage(.setBackends, backends: [successor]), timeout: .seconds(30))
                    guard answer.op == .accepted else {
                        throw Failure(phase: .switch, reason: "endpoint \(hold.name) refused the switch: \(answer.reason ?? "")")
                    }
                    _ = try hold.link.request(RelayMessage(.release), timeout: .seconds(30))
                } catch let failure as Failure {
                    throw failure
                } catch {
                    throw Failure(phase: .switch, reason: "endpoint \(hold.name): \(error)")
                }
                hold.link.close()
            }
            holds.removeAll()
            outcome.holdMs = Self.seconds(ContinuousClock.now - holdStart) * 1000
            end("endpoints → \(successor); held \(String(format: "%.1f", outcome.holdMs ?? 0)) ms")
        } catch {
            // Roll back: the old backends keep (or get back) the endpoints; the successor goes.
            outcome.result = "rolled-back"
            outcome.failedPhase = error.phase
            outcome.error = error.reason
            progress(.note("FAILED in \(error.phase.rawValue): \(error.reason); rolling back"))
            for hold in holds {
                _ = try? hold.link.request(RelayMessage(.setBackends, backends: [predecessor]), timeout: .seconds(10))
                _ = try? hold.link.request(RelayMessage(.release), timeout: .seconds(10))
                hold.link.close()  // closing releases a hold even if the requests above failed
            }
            var stopped = "not launched"
            if launched {
                // A successor its policy rejected was torn down by its own launch already.
                let live = ((try? InstanceStore.openForReading(state)?.instance(successor)) ?? nil).map { $0.state != .stopped } ?? false
                if live {
                    stopped = await stopper(successor).map { "could not stop \(successor): \($0)" } ?? "\(successor) stopped"
                } else {
                    stopped = "\(successor) already stopped by its launch"
                }
            }
            progress(.note("rolled back: \(predecessor) serves; \(stopped)"))
            audit("update-rolled-back", [
                "predecessor": predecessor, "successor": successor, "phase": error.phase.rawValue, "reason": error.reason,
                "successorStopped": stopped,
            ])
            return outcome
        }

        // 6. retire
        begin(.retire)
        let problem = await stopper(predecessor)
        var reclaimed = "unknown"
        if let store = try? InstanceStore.openForReading(state), let record = try? store.instance(predecessor) {
            reclaimed = record.state == .stopped ? "partition \(CPUList.format(record.partition.cpus)) reclaimed" : "still \(record.state)"
            store.close()
        }
        if let problem {
            outcome.error = "the update is done, but \(predecessor) could not be stopped: \(problem); run cmk stop \(predecessor)"
            progress(.note(outcome.error!))
        }
        end("\(predecessor) stopped; \(reclaimed)")
        audit("update-completed", [
            "predecessor": predecessor, "successor": successor,
            "phases": outcome.phases.map { "\($0.phase.rawValue)=\(String(format: "%.3f", $0.seconds))" }.joined(separator: ","),
            "holdMs": String(format: "%.1f", outcome.holdMs ?? 0),
        ])
        return outcome
    }
}

/// The id and digest of a policy file, as the launch records them.
enum PolicyLoaderShim {
    static func identity(_ path: String) throws(CoordinatorError) -> (id: String, digest: String) {
        do {
            let policy = try PolicyLoader(environment: InstanceSupervisor.policyEnvironment(CMKPaths.resolve())).load(path: path)
            return (policy.id, policy.digest)
        } catch {
            throw CoordinatorError(.updateRefused, "the policy \(path) cannot be loaded: \(error)")
        }
    }
}

extension Hex {
    static func random(_ count: Int) -> String {
        encode((0..<count).map { _ in UInt8.random(in: 0...255) })
    }
}
