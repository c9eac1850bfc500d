import CMKTesting
import Foundation
import Testing

@Suite("cmk image build, run as a user runs it", .serialized)
struct ImageCommandTests {
    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-image-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test(
        "--json gives the files with their SHA-256, the command line and both expected measurements",
        .timeLimit(.minutes(3)))
    func jsonOutput() throws {
        let output = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try BuiltCMK.run(["image", "build", "--profile", "realtime", "--output", output.path, "--json"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardError.isEmpty, "progress must not be printed with --json: \(run.standardError)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any])
        let image = try #require(json["image"] as? [String: Any])
        #expect(image["profile"] as? String == "realtime")
        #expect((image["commandLine"] as? String)?.contains("nohz_full=1 isolcpus=nohz,domain,managed_irq,1") == true)
        #expect(image["vcpus"] as? Int == 2)
        #expect(image["agent"] == nil || image["agent"] is NSNull)
        for key in ["kernel", "initrd"] {
            let file = try #require(image[key] as? [String: Any])
            let path = try #require(file["path"] as? String)
            #expect(path.hasPrefix(output.path))
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(file["size"] as? Int == bytes.count)
            let sum = try ExternalTool.run(URL(fileURLWithPath: "/usr/bin/sha256sum"), [path])
            #expect(file["sha256"] as? String == sum.standardOutput.split(separator: " ").first.map(String.init))
        }
        let measurements = try #require(json["measurements"] as? [String: Any])
        let snp = try #require(measurements["sevSnp"] as? [String: Any])
        #expect((snp["launchDigest"] as? String)?.count == 96)
        #expect(snp["vcpus"] as? Int == 2)
        #expect(snp["vcpuType"] as? String == "EPYC-v4")
        #expect(snp["guestFeatures"] as? String == "0x1")
        #expect(snp["kernelHashesPlacement"] as? String == "assumed-amdsev")
        #expect((snp["assumption"] as? String)?.contains("0x810000") == true)
        let tdx = try #require(measurements["tdx"] as? [String: Any])
        #expect((tdx["mrtd"] as? String)?.count == 96 || tdx["error"] is String)
        let firmware = try #require(measurements["firmware"] as? [String: Any])
        #expect(firmware["path"] as? String == "/usr/share/ovmf/OVMF.fd")

        // The same build again gives the same image and digest.
        let again = try BuiltCMK.run(["image", "build", "--profile", "realtime", "--output", output.path, "--json"])
        #expect(again.standardOutput == run.standardOutput)
    }

    @Test("the table names each file, the command line and the measurements", .timeLimit(.minutes(3)))
    func textOutput() throws {
        let output = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try BuiltCMK.run(["image", "build", "--profile", "database", "--output", output.path, "--vcpus", "1"])
        #expect(run.status == 0, "\(run.standardError)")
        for label in [
            "kernel", "initrd", "cmdline", "transparent_hugepage=never", "virtio_blk", "SEV-SNP", "launch digest",
            "assumption", "TDX", "CMK-INIT-READY",
        ] {
            #expect(run.standardOutput.contains(label), "missing \(label)")
        }
        #expect(run.standardOutput.contains("vCPUs       1 (EPYC-v4)"))
    }

    @Test("an unknown profile exits 2 and lists the known ones; so do an unreadable agent and a bad flag")
    func badInput() throws {
        let unknown = try BuiltCMK.run(["image", "build", "--profile", "gaming"])
        #expect(unknown.status == 2)
        #expect(unknown.standardError.contains("database, general, realtime"))
        let unknownJSON = try BuiltCMK.run(["image", "build", "--profile", "gaming", "--json"])
        #expect(unknownJSON.status == 2)
        #expect(unknownJSON.standardOutput.contains("\"unknown-profile\""))
        let output = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: output) }
        let agent = try BuiltCMK.run([
            "image", "build", "--profile", "general", "--agent", "/no/cmk-guest", "--output", output.path,
        ])
        #expect(agent.status == 2)
        #expect(agent.standardError.contains("/no/cmk-guest"))
        #expect(try BuiltCMK.run(["image", "build", "--profile", "general", "--vcpus", "0"]).status == 2)
        #expect(try BuiltCMK.run(["image", "build"]).status == 2)
    }
}
