import CMKTesting
import Foundation
import Testing

/// What the suites that run the real `cmk` share: a state folder of their own and, for suites that build images, an
/// images folder of their own too (the shared cache's images are rebuilt by other checkouts with other agents);
/// `cmk` run on a dedicated thread, never on a concurrency thread; its JSON output read; policies written beside
/// the state.
protocol CommandSuite {
    var state: URL { get }
    var environment: [String: String] { get }
    /// How long one `cmk` may run before it counts as hung (a hang detector, not a speed check).
    static var commandTimeout: TimeInterval { get }
}

extension CommandSuite {
    static var commandTimeout: TimeInterval { 600 }

    /// A fresh state folder `/tmp/<prefix>-XXXXXXXX` and this process's environment pointing `cmk` at it.
    static func sandbox(_ prefix: String, ownImages: Bool = true) -> (state: URL, environment: [String: String]) {
        let state = URL(fileURLWithPath: "/tmp/\(prefix)-\(UUID().uuidString.prefix(8))")
        var environment = ProcessInfo.processInfo.environment
        environment["CMK_STATE_DIR"] = state.path
        if ownImages { environment["CMK_IMAGES"] = state.appendingPathComponent("images").path }
        return (state, environment)
    }

    /// Runs `cmk arguments...` on its own thread.
    func cmk(_ arguments: [String], timeout: TimeInterval? = nil) async throws -> BuiltCMK.Output {
        let environment = environment
        let timeout = timeout ?? Self.commandTimeout
        let executable = try BuiltCMK.executable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try ExternalTool.run(executable, arguments, environment: environment, timeout: timeout)
                })
            }
        }
    }

    /// The JSON object `cmk --json` printed; the test fails (showing both streams) when it is not one.
    func object(_ output: BuiltCMK.Output) throws -> [String: Any] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any],
            "\(output.standardOutput)\n\(output.standardError)")
    }

    /// policies/development.yaml plus `extra` (appended: indented lines continue its last section), written to
    /// `<state>/<name>.yaml`; its path.
    func developmentPolicy(_ name: String, _ extra: String) throws -> String {
        let development = try String(
            contentsOf: SharedVectors.repositoryRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8)
        let url = state.appendingPathComponent("\(name).yaml")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try (development + extra).write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}
