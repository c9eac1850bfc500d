import CMKTesting
import Foundation
import Glibc
import Testing

/// `cmk pool` refuses bad input with a clear message and the documented exit status, before anything starts.
@Suite("cmk pool: bad input")
struct PoolInputTests {
    let state: URL
    let environment: [String: String]
    let policy: String

    init() throws {
        state = URL(fileURLWithPath: "/tmp/cmk-pool-input-\(UUID().uuidString.prefix(8))")
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.path
        self.environment = environment
        policy = SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml").path
    }

    func cmk(_ arguments: [String]) async throws -> BuiltCMK.Output {
        let environment = environment
        let executable = try BuiltCMK.executable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try ExternalTool.run(executable, arguments, environment: environment, timeout: 60)
                })
            }
        }
    }

    @Test(
        "create refuses a bad rule, name or file with exit 2 and says what is wrong",
        .timeLimit(.minutes(3)),
        arguments: [
            (["web", "--min", "3", "--max", "2"], "--min 3 is above --max 2"),
            (["web", "--min", "1", "--max", "0"], "--max must be 1 or more"),
            (["web", "--min", "1", "--max", "2", "--target", "0"], "--target must be a positive number"),
            (["web", "--min", "1", "--max", "2", "--target=-5"], "--target must be a positive number"),
            (["web", "--min", "1", "--max", "2", "--scale-on", "memory"], "scale-on"),
            (["Web!", "--min", "1", "--max", "2"], "is not valid"),
            (["web", "--min", "1", "--max", "2", "--scale-in-below", "1.5"], "scale-in fraction"),
            (["web", "--min", "1", "--max", "2", "--interval", "0"], "--interval must be 0.1 to 60"),
            (["web", "--min", "1", "--max", "2", "--port", "70000"], "--port must be 0 to 65535"),
            (["web", "--max", "2"], "--min"),
        ])
    func createRefusesBadInput(arguments: [String], message: String) async throws {
        let output = try await cmk(["pool", "create"] + arguments + ["--policy", policy])
        #expect(output.status == 2, "\(output.standardError)")
        #expect(output.standardError.contains(message), "\(output.standardError)")
        #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("pools").path))
    }

    @Test("create refuses a policy that does not exist, or one that does not load, before starting anything", .timeLimit(.minutes(3)))
    func createRefusesBadPolicy() async throws {
        let missing = try await cmk(["pool", "create", "web", "--min", "1", "--max", "2", "--policy", "/nonexistent.yaml"])
        #expect(missing.status == 2)
        #expect(missing.standardError.contains("--policy '/nonexistent.yaml' is not a readable file"), "\(missing.standardError)")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        let broken = state.appendingPathComponent("broken.yaml")
        try "this: is: not a policy\n".write(to: broken, atomically: true, encoding: .utf8)
        let output = try await cmk(["pool", "create", "web", "--min", "1", "--max", "2", "--policy", broken.path, "--json"])
        #expect(output.status == 2, "\(output.standardOutput)\(output.standardError)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any])
        let error = try #require(object["error"] as? [String: Any])
        #expect(error["code"] as? String == "invalid-argument")
        #expect(PoolFilesCheck.noPools(state))
    }

    @Test("inspect and delete of a pool that does not exist exit 6; ls with none says so", .timeLimit(.minutes(3)))
    func unknownPool() async throws {
        let inspect = try await cmk(["pool", "inspect", "nothing"])
        #expect(inspect.status == 6)
        #expect(inspect.standardError.contains("no pool named nothing"), "\(inspect.standardError)")
        let inspectJSON = try await cmk(["pool", "inspect", "nothing", "--json"])
        #expect(inspectJSON.status == 6)
        #expect(inspectJSON.standardOutput.contains("\"unknown-pool\""), "\(inspectJSON.standardOutput)")
        let delete = try await cmk(["pool", "delete", "nothing"])
        #expect(delete.status == 6)
        #expect(delete.standardError.contains("no pool named nothing"))
        let list = try await cmk(["pool", "ls"])
        #expect(list.status == 0)
        #expect(list.standardOutput.contains("no pools"))
        let listJSON = try await cmk(["pool", "ls", "--json"])
        #expect(listJSON.status == 0)
        #expect(listJSON.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]"
                || listJSON.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    @Test(
        "a pool whose members the host's partitions cannot hold says host-full (exit 3, inspect --json, audit record) without launching anything",
        .timeLimit(.minutes(3)))
    func hostTooSmall() async throws {
        defer {
            // A failed run leaves the controller running: stop it.
            let pidFile = state.appendingPathComponent("pools/big/controller.pid")
            if let text = try? String(contentsOfFile: pidFile.path, encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                kill(pid, SIGTERM)
            }
        }
        // More CPUs and memory per member than this host (and any CI host) has: not one member fits.
        let created = try await cmk([
            "pool", "create", "big", "--min", "1", "--max", "3", "--vcpus", "64", "--memory", "1048576",
            "--scale-out-cooldown", "2", "--policy", policy, "--json",
        ])
        #expect(created.status == 3, "\(created.standardOutput)\(created.standardError)")
        let status = try #require(try JSONSerialization.jsonObject(with: Data(created.standardOutput.utf8)) as? [String: Any])
        #expect(status["condition"] as? String == "host-full", "\(status)")
        #expect((status["reason"] as? String ?? "").contains("asked for 64 CPUs and 1048576 MiB"), "\(status)")

        let inspect = try await cmk(["pool", "inspect", "big", "--json"])
        #expect(inspect.status == 0)
        let listing = try #require(try JSONSerialization.jsonObject(with: Data(inspect.standardOutput.utf8)) as? [String: Any])
        #expect(listing["controllerRunning"] as? Bool == true)
        #expect((listing["status"] as? [String: Any])?["condition"] as? String == "host-full", "\(listing)")
        let text = try await cmk(["pool", "inspect", "big"])
        #expect(text.standardOutput.contains("condition    host-full"), "\(text.standardOutput)")

        let audit = try await cmk(["audit", "log", "--json"])
        #expect(audit.standardOutput.contains("\"why\" : \"host-full\"") || audit.standardOutput.contains("\"why\":\"host-full\""),
                "\(audit.standardOutput.prefix(2000))")
        let ps = try await cmk(["ps", "--all", "--json"])
        #expect(!ps.standardOutput.contains("big-"), "nothing was launched: \(ps.standardOutput)")

        let deleted = try await cmk(["pool", "delete", "big"])
        #expect(deleted.status == 0, "\(deleted.standardError)")
        #expect(PoolFilesCheck.noPools(state))
    }
}

enum PoolFilesCheck {
    static func noPools(_ state: URL) -> Bool {
        let folder = state.appendingPathComponent("pools")
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).isEmpty
    }
}
