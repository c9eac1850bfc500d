import CMKTesting
import Foundation
import Testing

/// deploy/ holds valid Kubernetes objects (kubernetes-validate, strict, against the schemas of a current release),
/// and its probes point at the service's real probe paths.
@Suite("cmk serve: Kubernetes manifests", .timeLimit(.minutes(3)))
struct DeployManifestTests {
    static let manifest = SharedVectors.repositoryRoot.appendingPathComponent("deploy/kubernetes.yaml")

    @Test("deploy/kubernetes.yaml passes kubernetes-validate --strict")
    func validates() async throws {
        let tool = SharedVectors.cacheDirectory.appendingPathComponent("venv/bin/kubernetes-validate")
        try #require(FileManager.default.isExecutableFile(atPath: tool.path), "kubernetes-validate is missing; run scripts/setup")
        let output = try await offPool { try ExternalTool.run(tool, ["-k", "1.30.0", "--strict", Self.manifest.path]) }
        #expect(output.status == 0, "\(output.standardOutput)\n\(output.standardError)")
        for kind in ["deployment/cmk-serve", "service/cmk-serve", "secret/cmk-serve-signing-keys"] {
            #expect(output.standardOutput.contains("passed for resource \(kind)"), "\(output.standardOutput)")
        }
    }

    @Test("a manifest with a misspelt field fails validation (the check can fail)")
    func rejectsBadManifest() async throws {
        let tool = SharedVectors.cacheDirectory.appendingPathComponent("venv/bin/kubernetes-validate")
        try #require(FileManager.default.isExecutableFile(atPath: tool.path), "kubernetes-validate is missing; run scripts/setup")
        let text = try String(contentsOf: Self.manifest, encoding: .utf8).replacingOccurrences(of: "readinessProbe:", with: "readynessProbe:")
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-bad-\(UUID().uuidString).yaml")
        try text.write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        let output = try await offPool { try ExternalTool.run(tool, ["-k", "1.30.0", "--strict", bad.path]) }
        #expect(output.status != 0)
    }

    @Test("the probes name /readyz and /healthz, which the service answers")
    func probes() throws {
        let text = try String(contentsOf: Self.manifest, encoding: .utf8)
        #expect(text.contains("path: /readyz") && text.contains("path: /healthz"))
    }
}
