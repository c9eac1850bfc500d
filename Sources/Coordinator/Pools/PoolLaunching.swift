public import Foundation

/// The real ``PoolInstanceActions``: each member is launched with `cmk launch` (its own detached supervisor, the same
/// reservation, boot, attestation, audit record and handover as a hand-launched instance) and stopped with `cmk stop`.
public struct CommandPoolInstanceActions: PoolInstanceActions {
    public let cmk: URL
    public let state: CMKStateDirectory
    /// The workload address of an admitted member.
    public let address: @Sendable (String) async -> String?

    public init(cmk: URL, state: CMKStateDirectory, address: @escaping @Sendable (String) async -> String?) {
        self.cmk = cmk
        self.state = state
        self.address = address
    }

    /// The `cmk launch` arguments for member `name` of `spec`.
    public func launchArguments(_ name: String, spec: PoolSpec) -> [String] {
        var arguments = ["launch", "--name", name, "--profile", spec.profile, "--policy", spec.policyPath, "--json",
                         "--state-dir", state.url.path, "--boot-timeout", String(spec.bootTimeoutSeconds)]
        if spec.allowSharedCores { arguments.append("--allow-shared-cores") }
        if let vcpus = spec.vcpus { arguments += ["--vcpus", String(vcpus)] }
        if let memory = spec.memoryMiB { arguments += ["--memory", String(memory)] }
        if let agent = spec.agentPath { arguments += ["--agent", agent] }
        return arguments
    }

    public func launch(_ name: String, spec: PoolSpec) async -> PoolLaunchResult {
        let result: CommandResult
        do {
            result = try await CommandRunner.run(
                cmk.path, launchArguments(name, spec: spec), timeout: .seconds(spec.bootTimeoutSeconds + 300))
        } catch {
            return PoolLaunchResult(admitted: false, errorCode: CoordinatorError.Code.launch.name, reason: "\(error)")
        }
        return Self.interpret(result)
    }

    /// Reads what `cmk launch --json` printed: an admitted outcome, a rejection, or an error with its code.
    public static func interpret(_ result: CommandResult) -> PoolLaunchResult {
        let object = (try? JSONSerialization.jsonObject(with: Data(result.standardOutput))) as? [String: Any]
        if let error = (object?["error"] as? [String: Any]) {
            return PoolLaunchResult(
                admitted: false, errorCode: error["code"] as? String ?? CoordinatorError.Code.launch.name,
                reason: error["reason"] as? String ?? "cmk launch failed (exit \(result.exitCode))",
                instanceID: object?["instanceID"] as? String)
        }
        if let object, let verdict = object["verdict"] as? String {
            let sequence = (object["auditSequence"] as? NSNumber)?.int64Value
            let admitted = verdict == "admit" && result.exitCode == 0
            var reason = "verdict \(verdict)"
            if !admitted, let failures = object["failures"] as? [[String: Any]], !failures.isEmpty {
                reason += ": " + failures.compactMap { $0["rule"] as? String }.joined(separator: ", ")
            }
            return PoolLaunchResult(
                admitted: admitted, errorCode: nil, reason: reason, instanceID: object["instanceID"] as? String,
                auditSequence: sequence, measurement: object["measurement"] as? String)
        }
        let text = result.standardErrorText.trimmingCharacters(in: .whitespacesAndNewlines)
        let code = result.exitCode == 3 ? CoordinatorError.Code.insufficientResources.name : CoordinatorError.Code.launch.name
        return PoolLaunchResult(
            admitted: false, errorCode: code,
            reason: text.isEmpty ? "cmk launch exited with status \(result.exitCode)" : String(text.suffix(500)))
    }

    public func stop(_ name: String) async -> String? {
        do {
            let result = try await CommandRunner.run(
                cmk.path, ["stop", name, "--state-dir", state.url.path, "--timeout", "120"], timeout: .seconds(180))
            if result.exitCode == 0 || result.exitCode == 6 { return nil }
            return "cmk stop \(name) exited \(result.exitCode): \(result.standardErrorText.suffix(300))"
        } catch {
            return "\(error)"
        }
    }

    public func backendAddress(of name: String) async -> String? { await address(name) }
}
