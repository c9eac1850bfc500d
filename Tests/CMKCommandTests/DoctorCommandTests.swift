import CMKTesting
import Foundation
import Testing

@Suite("cmk doctor, run as a user runs it", .serialized)
struct DoctorCommandTests {
    @Test("--json reports every probe, and the exit status agrees with the blockers", .timeLimit(.minutes(4)))
    func jsonReport() throws {
        let output = try BuiltCMK.run(["doctor", "--json", "--kvm-timeout", "6"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any])
        let blockers = try #require(json["blockers"] as? [String])
        #expect(output.status == (blockers.isEmpty ? 0 : 1))

        let kvm = try #require(json["kvm"] as? [String: Any])
        let kvmUsable = try #require(kvm["usable"] as? Bool)
        let kvmDetail = try #require(kvm["detail"] as? String)
        // "usable" only ever follows a guest that ran under KVM.
        #expect(kvmUsable == kvmDetail.contains("ran under kvm"))

        let qemu = try #require(json["qemu"] as? [String: Any])
        #expect(qemu["tcgProbePassed"] as? Bool == true)
        #expect(qemu["supportsSEVSNPGuest"] is Bool)
        #expect(qemu["supportsTDXGuest"] is Bool)

        let firmware = try #require(json["firmware"] as? [[String: Any]])
        let ovmf = try #require(firmware.first(where: { $0["path"] as? String == "/usr/share/ovmf/OVMF.fd" }))
        #expect(ovmf["snpMetadata"] as? Bool == true)
        #expect(ovmf["kernelHashes"] as? Bool == false)

        let interfaces = try #require(json["confidentialInterfaces"] as? [String: Bool])
        #expect(interfaces["sevGuest"] == FileManager.default.fileExists(atPath: "/dev/sev-guest"))
        #expect(interfaces["tdxGuest"] == FileManager.default.fileExists(atPath: "/dev/tdx_guest"))
        #expect(json["guestKernel"] is [String: Any])
    }

    @Test("the table names each probe and says whether the embedded default can run", .timeLimit(.minutes(4)))
    func tableReport() throws {
        let output = try BuiltCMK.run(["doctor", "--kvm-timeout", "3"])
        for label in ["/dev/sev-guest", "/dev/tdx_guest", "configfs-tsm", "KVM", "QEMU", "OVMF", "swtpm", "guest kernel"] {
            #expect(output.standardOutput.contains(label), "missing row \(label)")
        }
        #expect(output.standardOutput.contains("embedded default"))
    }

    @Test("a bad flag is a usage error with exit status 2, not a crash")
    func badFlag() throws {
        let output = try BuiltCMK.run(["doctor", "--kvm-timeout", "0"])
        #expect(output.status == 2)
        #expect(output.standardError.contains("--kvm-timeout"))
        let unknown = try BuiltCMK.run(["doctor", "--no-such-flag"])
        #expect(unknown.status == 2)
    }

    @Test("--version and --help work")
    func versionAndHelp() throws {
        let version = try BuiltCMK.run(["--version"])
        #expect(version.status == 0)
        #expect(version.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try BuiltCMK.run(["--help"])
        #expect(help.status == 0)
        #expect(help.standardOutput.contains("doctor"))
    }
}
