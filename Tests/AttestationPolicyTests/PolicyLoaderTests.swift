import Attestation
import AttestationPolicy
import BinaryFormat
import CMKTesting
import Foundation
import Testing

/// A minimal valid policy, with a placeholder line to vary.
private func policy(_ snp: String, top: String = "") -> String {
    """
    id: test
    version: 1
    evidence: sev-snp
    trust:
      roots: [amd-milan]
    \(top)
    sev-snp:
    \(snp)
    """
}

@Suite("Policy loading")
struct PolicyLoaderTests {
    struct BadPolicy: CustomTestStringConvertible, Sendable {
        let name: String
        let yaml: String
        let code: PolicyError.Code
        let line: Int?
        let key: String?
        let reasonContains: String
        var testDescription: String { name }
    }

    static let bad: [BadPolicy] = [
        .init(name: "unknown key with a suggestion", yaml: policy("  guest-policy:\n    debgu: forbidden"), code: .unknownKey,
              line: 9, key: "sev-snp.guest-policy.debgu", reasonContains: "did you mean 'debug'"),
        .init(name: "unknown top-level key", yaml: policy("  vmpl: 0", top: "owner: me"), code: .unknownKey, line: 6, key: "owner",
              reasonContains: "unknown key 'owner'"),
        .init(name: "wrong type: a list where a number belongs", yaml: policy("  vmpl: [0]"), code: .wrongType, line: 8,
              key: "sev-snp.vmpl", reasonContains: "whole number"),
        .init(name: "impossible VMPL", yaml: policy("  vmpl: 4"), code: .invalidValue, line: 8, key: "sev-snp.vmpl",
              reasonContains: "outside 0...3"),
        .init(name: "an SVN above 255",
              yaml: policy("  tcb:\n    milan:\n      reported: {bootloader: 300, tee: 0, snp: 1, microcode: 1}"),
              code: .invalidValue, line: 10, key: "sev-snp.tcb.milan.reported.bootloader", reasonContains: "outside 0...255"),
        .init(name: "a TCB for the wrong product (FMC on Milan)",
              yaml: policy("  tcb:\n    milan:\n      reported: {fmc: 1, bootloader: 3, tee: 0, snp: 1, microcode: 1}"),
              code: .wrongProduct, line: 10, key: "sev-snp.tcb.milan.reported.fmc", reasonContains: "no FMC component"),
        .init(name: "a Turin TCB without its FMC",
              yaml: policy("  tcb:\n    turin:\n      reported: {bootloader: 3, tee: 0, snp: 1, microcode: 1}"),
              code: .missingKey, line: 10, key: "sev-snp.tcb.turin.reported.fmc", reasonContains: "required"),
        .init(name: "a measurement of the wrong length", yaml: policy("  measurement:\n    allow: [abcd]"), code: .invalidValue,
              line: 9, key: "sev-snp.measurement.allow[0]", reasonContains: "expected 48 bytes"),
        .init(name: "a duplicate key", yaml: policy("  vmpl: 0\n  vmpl: 1"), code: .duplicateKey, line: nil, key: nil,
              reasonContains: "twice"),
        .init(name: "not YAML", yaml: "id: [unclosed\nversion: 1", code: .syntax, line: nil, key: nil, reasonContains: "not valid YAML"),
        .init(name: "missing id", yaml: "version: 1\nevidence: tdx\ntrust:\n  roots: [intel-sgx-root]\ntdx: {}", code: .missingKey,
              line: 1, key: "id", reasonContains: "required"),
        .init(name: "an Intel root in an SNP policy", yaml: policy("  vmpl: 0").replacingOccurrences(of: "[amd-milan]", with: "[intel-sgx-root]"),
              code: .invalidValue, line: 5, key: "trust.roots[0]", reasonContains: "not a root for sev-snp"),
        .init(name: "a TDX section in an SNP policy", yaml: policy("  vmpl: 0", top: "tdx: {}"), code: .unknownKey, line: 6,
              key: "tdx", reasonContains: "no tdx section"),
        .init(name: "a waiver without expiry",
              yaml: "id: t\nversion: 1\nevidence: tdx\ntrust:\n  roots: [intel-sgx-root]\ntdx:\n  tcb:\n    waivers:\n      - status: OutOfDate\n        reason: later\n",
              code: .unsafe, line: 9, key: "tdx.tcb.waivers[0]", reasonContains: "expires"),
        .init(name: "accepting Revoked",
              yaml: "id: t\nversion: 1\nevidence: tdx\ntrust:\n  roots: [intel-sgx-root]\ntdx:\n  tcb:\n    accept: [Revoked]\n",
              code: .unsafe, line: 8, key: "tdx.tcb.accept[0]", reasonContains: "never be accepted"),
        .init(name: "a duration without unit", yaml: policy("  vmpl: 0", top: "freshness:\n  max-evidence-age: 300"), code: .wrongType,
              line: 7, key: "freshness.max-evidence-age", reasonContains: "duration"),
        .init(name: "a reference artifact that does not exist",
              yaml: policy("  measurement:\n    reference:\n      - firmware: /nonexistent/OVMF.fd\n        vcpus: 1\n        vcpu-type: EPYC-v4"),
              code: .referenceArtifact, line: 10, key: "sev-snp.measurement.reference[0].firmware", reasonContains: "cannot read"),
        .init(name: "an unset variable in an artifact path",
              yaml: policy("  measurement:\n    reference:\n      - firmware: ${CMK_NO_SUCH_VARIABLE}/OVMF.fd\n        vcpus: 1\n        vcpu-type: EPYC-v4"),
              code: .referenceArtifact, line: 10, key: "sev-snp.measurement.reference[0].firmware", reasonContains: "CMK_NO_SUCH_VARIABLE"),
    ]

    @Test("rejects a bad policy with the code, line and key named", arguments: bad)
    func rejectsBadPolicies(_ bad: BadPolicy) throws {
        let error = try #require(throws: PolicyError.self) { try PolicyLoader(environment: [:]).load(text: bad.yaml) }
        #expect(error.code == bad.code, "\(error)")
        if let line = bad.line { #expect(error.line == line, "\(error)") }
        if let key = bad.key { #expect(error.keyPath == key, "\(error)") }
        #expect(error.reason.contains(bad.reasonContains), "\(error)")
    }

    @Test("handover.channel-peer-measurements pins listed peers only, 48-byte values, and leaves other digests alone")
    func channelPeerMeasurements() throws {
        let pin = String(repeating: "ab", count: 48)
        let pinned = try PolicyLoader().load(
            text: policy(
                "  vmpl: 0",
                top: "handover:\n  channel-peers: [db-1]\n  channel-peer-measurements:\n    db-1: [\(pin)]"))
        #expect(pinned.handover.channelPeerMeasurements == ["db-1": [HexBytes([UInt8](repeating: 0xAB, count: 48))]])
        // Without pins the field is absent from the canonical JSON: a policy's digest does not change with this feature.
        let plain = try PolicyLoader().load(text: policy("  vmpl: 0", top: "handover:\n  channel-peers: [db-1]"))
        #expect(plain.handover.channelPeerMeasurements == nil)
        #expect(plain.digest != pinned.digest)
        let encoded = String(decoding: try JSONEncoder().encode(plain.handover), as: UTF8.self)
        #expect(!encoded.contains("channelPeerMeasurements"))
        for (top, reason) in [
            ("handover:\n  channel-peers: [db-1]\n  channel-peer-measurements:\n    web-1: [\(pin)]", "not listed"),
            ("handover:\n  channel-peers: [db-1]\n  channel-peer-measurements:\n    db-1: [abcd]", "48"),
            ("handover:\n  channel-peers: [db-1]\n  channel-peer-measurements:\n    db-1: []", "at least one"),
        ] {
            #expect(throws: PolicyError.self, "\(top)") { try PolicyLoader().load(text: policy("  vmpl: 0", top: top)) }
            do {
                _ = try PolicyLoader().load(text: policy("  vmpl: 0", top: top))
            } catch {
                #expect("\(error)".contains(reason), "\(error)")
            }
        }
    }

    @Test("a file's errors name the file")
    func fileErrorsNameTheFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-bad-\(UUID().uuidString).yaml")
        try policy("  vmpl: 9").write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let error = try #require(throws: PolicyError.self) { try PolicyLoader().load(path: url.path) }
        #expect(error.description.hasPrefix("\(url.path):8: 'sev-snp.vmpl'"))
    }

    @Test("the content digest ignores comments and layout, and changes with any value")
    func contentDigest() throws {
        let loader = PolicyLoader(environment: [:])
        let a = try loader.load(text: policy("  vmpl: 0"))
        let b = try loader.load(text: "# a comment\n" + policy("  vmpl:   0   # zero"))
        let c = try loader.load(text: policy("  vmpl: 1"))
        #expect(a.digest == b.digest)
        #expect(a.digest != c.digest)
        #expect(a.digest.count == 64)
    }

    @Test("debug and migration agents are forbidden unless a policy says otherwise")
    func failClosedDefaults() throws {
        let p = try PolicyLoader(environment: [:]).load(text: policy("  vmpl: 0"))
        #expect(p.snp?.debug == .forbidden)
        #expect(p.snp?.migrationAgent == .forbidden)
        #expect(p.trust.crl == .hard)
    }

    @Test("a reference launch is measured by the loader, and the digest equals sev-snp-measure's")
    func referenceMeasurement() throws {
        // sev-snp-measure 0.0.13 --mode snp --vcpus 2 --vcpu-type EPYC-Milan --ovmf /usr/share/ovmf/OVMF.fd
        let reference = try SharedVectors.json("snp-measure/reference.json")
        let runs = try #require(reference["runs"] as? [[String: Any]])
        let run = try #require(runs.first { ($0["args"] as? [String]) == [
            "sev-snp-measure", "--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--ovmf", "/usr/share/ovmf/OVMF.fd",
        ] })
        let expected = try #require(run["output"] as? String)
        let p = try PolicyLoader(environment: ["OVMF_DIR": "/usr/share/ovmf"]).load(text: policy(
            "  measurement:\n    reference:\n      - firmware: ${OVMF_DIR}/OVMF.fd\n        vcpus: 2\n        vcpu-type: EPYC-Milan"))
        let derived = try #require(p.snp?.measurement?.references.first)
        #expect(derived.digest.description == expected)
        #expect(derived.inputs["firmware"]?.hasPrefix("/usr/share/ovmf/OVMF.fd sha256:") == true)
        // The derived value is part of what the digest covers.
        let other = try PolicyLoader(environment: ["OVMF_DIR": "/usr/share/ovmf"]).load(text: policy(
            "  measurement:\n    reference:\n      - firmware: ${OVMF_DIR}/OVMF.fd\n        vcpus: 4\n        vcpu-type: EPYC-Milan"))
        #expect(other.digest != p.digest)
    }

    @Test("Debian's OVMF has no kernel-hashes section, so a kernel reference is refused with the reason")
    func kernelReferenceNeedsHashes() throws {
        let kernel = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-kernel-\(UUID().uuidString)")
        try Data(repeating: 0x90, count: 4096).write(to: kernel)
        defer { try? FileManager.default.removeItem(at: kernel) }
        let error = try #require(throws: PolicyError.self) {
            try PolicyLoader(environment: [:]).load(text: policy(
                "  measurement:\n    reference:\n      - firmware: /usr/share/ovmf/OVMF.fd\n        kernel: \(kernel.path)\n        vcpus: 1\n        vcpu-type: EPYC-v4"))
        }
        #expect(error.code == .referenceArtifact)
        #expect(error.reason.contains("no-kernel-hashes"))
    }

    @Test("every shipped policy loads, or (the workload ones) asks for its reference image by name")
    func shippedPoliciesLoad() throws {
        let folder = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 5)
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-no-images-\(UUID().uuidString)")
        for file in files {
            do {
                _ = try PolicyLoader(environment: ["CMK_IMAGES": empty.path]).load(path: folder.appendingPathComponent(file).path)
            } catch {
                // Loaded with images in PlatformSimulatorTests.WorkloadPolicyTests.
                #expect(error.code == .referenceArtifact && error.reason.contains(empty.path), "\(file): \(error)")
            }
        }
    }
}
