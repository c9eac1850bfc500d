import CMKTesting
import Foundation
import Testing

let commandVectors = [
    "milan-v2-gsg", "milan-v2-virtee", "milan-v2-trustee", "milan-v2-azure-hcl", "milan-v3-azure-hcl",
    "milan-v3-oak-oc", "milan-v3-vlek-aws-trustee", "genoa-v3-azure-hcl", "genoa-v5-oak", "turin-v5-oak",
]

func vectorFile(_ name: String, _ file: String) -> String { SharedVectors.url("snp/\(name)/\(file)").path }

func leafFile(_ name: String) -> String {
    FileManager.default.fileExists(atPath: vectorFile(name, "vlek.der")) ? vectorFile(name, "vlek.der") : vectorFile(name, "vcek.der")
}

func verifyAt(_ name: String) throws -> String {
    try #require(try SharedVectors.json("snp/\(name)/expected.json")["verify_at_time"] as? String)
}

func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

@Suite("cmk evidence, run as a user runs it")
struct EvidenceCommandTests {
    @Test("verify --json accepts every vector at its time and exits 0", arguments: commandVectors)
    func verifiesVector(name: String) throws {
        let output = try BuiltCMK.run([
            "evidence", "verify", "--snp", vectorFile(name, "report.bin"), "--vcek", leafFile(name),
            "--chain", SharedVectors.url("snp/\(name)").path, "--at", try verifyAt(name), "--crl", "soft", "--json",
        ])
        #expect(output.status == 0, "\(output.standardOutput)\(output.standardError)")
        let json = try jsonObject(output.standardOutput)
        #expect(json["valid"] as? Bool == true)
        let claims = try #require((json["result"] as? [String: Any])?["claims"] as? [String: Any])
        let expected = try SharedVectors.json("snp/\(name)/expected.json")
        #expect(claims["product"] as? String == expected["product"] as? String)
        let report = try #require((expected["expect"] as? [String: Any])?["report"] as? [String: Any])
        #expect(claims["measurement"] as? String == report["measurement"] as? String)
    }

    @Test("an expired certificate is exit 1 with the reason code in JSON")
    func expiredIsInvalid() throws {
        let name = "milan-v3-vlek-aws-trustee"
        let output = try BuiltCMK.run([
            "evidence", "verify", "--snp", vectorFile(name, "report.bin"), "--vcek", leafFile(name),
            "--at", "2026-01-01T00:00:00Z", "--crl", "soft", "--json",
        ])
        #expect(output.status == 1)
        let json = try jsonObject(output.standardOutput)
        #expect(json["valid"] as? Bool == false)
        #expect((json["error"] as? [String: Any])?["code"] as? String == "certificate-expired")
    }

    @Test("the hard revocation default without a CRL is exit 1 naming what is missing")
    func hardModeWithoutCRL() throws {
        let name = "genoa-v5-oak"
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-empty-\(UUID().uuidString)").path
        let output = try BuiltCMK.run([
            "evidence", "verify", "--snp", vectorFile(name, "report.bin"), "--vcek", leafFile(name),
            "--at", try verifyAt(name), "--collateral", cache,
        ])
        #expect(output.status == 1)
        #expect(output.standardError.contains("missing-collateral"))
        #expect(output.standardError.contains("/vcek/v1/Genoa/crl"))
    }

    @Test("bad input is exit 2 with a clear message, never a crash", arguments: [
        ["--snp", "/nonexistent/report.bin"],
        ["--snp", "EMPTY"],
        ["--snp", "GARBAGE"],
        ["--snp", "PEM"],
        ["--snp", "TRUNCATED"],
        ["--snp", "REPORT", "--vcek", "REPORT"],
        ["--snp", "REPORT", "--vcek", "GARBAGE"],
        ["--snp", "REPORT", "--cert-table", "GARBAGE"],
        ["--snp", "REPORT", "--at", "not-a-time"],
        ["--snp", "REPORT", "--crl", "sometimes"],
        ["--snp", "REPORT", "--cert-table", "REPORT", "--vcek", "REPORT"],
        ["--snp", "REPORT", "--product", "venice"],
    ])
    func badInput(arguments: [String]) throws {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-bad-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: folder) }
        let report = try SharedVectors.bytes("snp/genoa-v5-oak/report.bin")
        let files: [String: [UInt8]] = [
            "EMPTY": [], "GARBAGE": (0..<1184).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) },
            "PEM": Array(try SharedVectors.text("snp/genoa-v5-oak/ark.pem").utf8), "TRUNCATED": Array(report.prefix(700)),
            "REPORT": report,
        ]
        var resolved: [String] = []
        for argument in arguments {
            if let bytes = files[argument] {
                let path = folder.appendingPathComponent(argument).path
                #expect(fm.createFile(atPath: path, contents: Data(bytes)))
                resolved.append(path)
            } else {
                resolved.append(argument)
            }
        }
        let output = try BuiltCMK.run(["evidence", "verify"] + resolved + ["--crl", "soft"])
        #expect(output.status == 2, "\(arguments): \(output.standardError)")
        #expect(!output.standardError.isEmpty)
    }

    @Test("show prints every field, in text and JSON", arguments: ["genoa-v5-oak", "turin-v5-oak", "milan-v2-gsg"])
    func show(name: String) throws {
        let text = try BuiltCMK.run(["evidence", "show", vectorFile(name, "report.bin")])
        #expect(text.status == 0)
        for field in ["VERSION", "POLICY", "MEASUREMENT", "REPORTED_TCB", "CHIP_ID", "SIGNATURE.R"] {
            #expect(text.standardOutput.contains(field))
        }
        let json = try jsonObject(try BuiltCMK.run(["evidence", "show", vectorFile(name, "report.bin"), "--json"]).standardOutput)
        let expected = try #require((try SharedVectors.json("snp/\(name)/expected.json")["expect"] as? [String: Any])?["report"] as? [String: Any])
        #expect(json["measurement"] as? String == expected["measurement"] as? String)
        #expect(json["chipID"] as? String == expected["chip_id"] as? String)
        let reported = try #require(json["reportedTCB"] as? [String: Any])
        #expect(reported["raw"] as? String == (expected["reported_tcb"] as? [String: Any])?["raw"] as? String)
        if name == "milan-v2-gsg" {
            // Version 2: no CPUID, so TCB components are only decoded when the product is given.
            #expect(reported["components"] == nil)
            let withProduct = try jsonObject(try BuiltCMK.run(["evidence", "show", vectorFile(name, "report.bin"), "--product", "milan", "--json"]).standardOutput)
            #expect((withProduct["reportedTCB"] as? [String: Any])?["components"] != nil)
        }
    }

    @Test("show refuses a --product that contradicts the report's CPUID")
    func showProductMismatch() throws {
        let output = try BuiltCMK.run(["evidence", "show", vectorFile("turin-v5-oak", "report.bin"), "--product", "milan"])
        #expect(output.status == 1)
        #expect(output.standardError.contains("product-mismatch"))
    }
}

@Suite("cmk measure, run as a user runs it")
struct MeasureCommandTests {
    @Test("replay of the CCEL vector prints the quote's RTMRs; a broken log is exit 2")
    func replayCCEL() throws {
        let folder = SharedVectors.url("tdx/gotdxguest-gcp-cos113-ccel")
        let output = try BuiltCMK.run([
            "measure", "replay", folder.appendingPathComponent("ccel_data.bin").path,
            "--ccel-table", folder.appendingPathComponent("ccel_table.bin").path, "--json",
        ])
        #expect(output.status == 0, "\(output.standardError)")
        let expected = try SharedVectors.json("tdx/gotdxguest-gcp-cos113-ccel/expected.json")
        let expect = try #require(expected["expect"] as? [String: Any])
        for rtmr in ["rtmr0", "rtmr1", "rtmr2"] {
            let value = try #require(expect[rtmr] as? String)
            #expect(output.standardOutput.contains(value.lowercased()), "\(rtmr)")
        }
        let quote = try BuiltCMK.run(["measure", "replay", folder.appendingPathComponent("quote.bin").path])
        #expect(quote.status == 2)
        #expect(quote.standardError.contains("error"))
    }

    @Test("measure snp reproduces a recorded sev-snp-measure digest and refuses a kernel the firmware cannot measure")
    func snp() throws {
        let output = try BuiltCMK.run(["measure", "snp", "--firmware", "/usr/share/ovmf/OVMF.fd", "--vcpus", "4", "--vcpu-type", "EPYC-Genoa"])
        #expect(output.status == 0)
        #expect(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            == "a509186122f6e4e095ebab39abf4aea568d9949b9e929d0759f45a3983dfc2df71404de97367aba26c08ddeebc3d7ba0")
        let kernel = try BuiltCMK.run([
            "measure", "snp", "--firmware", "/usr/share/ovmf/OVMF.fd", "--vcpus", "1", "--vcpu-type", "EPYC-v4",
            "--kernel", "/usr/share/ovmf/OVMF.fd", "--json",
        ])
        #expect(kernel.status == 1)
        #expect(kernel.standardOutput.contains("no-kernel-hashes"))
        let usage = try BuiltCMK.run(["measure", "snp", "--firmware", "/usr/share/ovmf/OVMF.fd", "--vcpu-type", "Pentium"])
        #expect(usage.status == 2)
        let missing = try BuiltCMK.run(["measure", "snp", "--firmware", "/nonexistent", "--vcpu-type", "EPYC"])
        #expect(missing.status == 2)
    }

    @Test("measure tdx prints MRTD for Debian's OVMF and refuses a firmware without TDVF metadata")
    func tdx() throws {
        let output = try BuiltCMK.run(["measure", "tdx", "--firmware", "/usr/share/ovmf/OVMF.fd"])
        #expect(output.status == 0)
        #expect(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).count == 96)
        let refused = try BuiltCMK.run(["measure", "tdx", "--firmware", "/usr/share/OVMF/OVMF_CODE_4M.fd"])
        #expect(refused.status == 1)
    }
}

@Suite("cmk evidence with TDX quotes, run as a user runs it")
struct TDXEvidenceCommandTests {
    static let vectors = ["gotdxguest-spr-e4-v4", "dcapqvl-v4-uptodate", "dcapqvl-v5-td15-no-matching-tcb", "gotdxguest-v5-td15"]

    @Test("verify --tdx with the vector's collateral folder: exit 0 only for UpToDate, the status in JSON", arguments: vectors)
    func verify(name: String) throws {
        let folder = SharedVectors.url("tdx/\(name)")
        let expected = try SharedVectors.json("tdx/\(name)/expected.json")
        let time = try #require(expected["eval_time"] as? String)
        let status = try #require((expected["expect"] as? [String: Any])?["tcb_status"] as? String)
        let output = try BuiltCMK.run([
            "evidence", "verify", "--tdx", folder.appendingPathComponent("quote.bin").path, "--collateral", folder.path,
            "--at", time, "--json",
        ])
        #expect(output.status == (status == "UpToDate" ? 0 : 1), "\(output.standardError)")
        let json = try jsonObject(output.standardOutput)
        #expect((json["result"] as? [String: Any])?["tcbStatus"] as? String == status)
    }

    @Test("show decodes a TDX quote; a truncated quote is exit 2")
    func show() throws {
        let path = SharedVectors.url("tdx/gotdxguest-v5-td15/quote.bin").path
        let output = try BuiltCMK.run(["evidence", "show", path])
        #expect(output.status == 0)
        for field in ["MRTD", "RTMR3", "TDATTRIBUTES", "TEE_TCB_SVN2", "MRSERVICETD", "REPORTDATA"] {
            #expect(output.standardOutput.contains(field))
        }
        let fm = FileManager.default
        let truncated = fm.temporaryDirectory.appendingPathComponent("cmk-tdx-\(UUID().uuidString).bin")
        defer { try? fm.removeItem(at: truncated) }
        #expect(fm.createFile(atPath: truncated.path, contents: Data(try SharedVectors.bytes("tdx/gotdxguest-v5-td15/quote.bin").prefix(900))))
        #expect(try BuiltCMK.run(["evidence", "show", truncated.path]).status == 2)
        #expect(try BuiltCMK.run(["evidence", "verify", "--tdx", truncated.path]).status == 2)
        #expect(try BuiltCMK.run(["evidence", "verify", "--tdx", path, "--snp", path]).status == 2)
    }
}
