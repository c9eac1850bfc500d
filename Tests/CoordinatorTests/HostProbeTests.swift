import CMKTesting
import Coordinator
import Foundation
import Testing

@Suite("cmk doctor's host probes", .serialized)
struct HostProbeTests {
    @Test("the probe guest boots to completion under TCG", .timeLimit(.minutes(3)))
    func probeGuestRunsUnderTCG() async throws {
        let qemu = try #require(CommandRunner.which("qemu-system-x86_64"), "QEMU must be installed (scripts/setup)")
        let outcome = await ProbeGuest.boot(qemu: qemu, accelerator: "tcg", timeout: .seconds(30))
        #expect(outcome.passed, "\(outcome.detail)")
    }

    @Test("the probe boot sector is 512 bytes, ends in the boot signature, and points at its marker")
    func bootSectorLayout() {
        let sector = ProbeGuest.bootSector
        #expect(sector.count == 512)
        #expect(sector[510] == 0x55 && sector[511] == 0xAA)
        // mov si, imm16 must point at the marker inside the sector loaded at 0x7C00.
        let markerAddress = Int(sector[7]) | Int(sector[8]) << 8
        let markerBytes = Array(sector[(markerAddress - 0x7C00)...].prefix(ProbeGuest.marker.utf8.count))
        #expect(markerBytes == Array(ProbeGuest.marker.utf8))
    }

    @Test("KVM counts as usable only after a probe guest ran under it", .timeLimit(.minutes(3)))
    func kvmReportedAsNotUsable() async throws {
        let probe = HostProbe(probeTimeout: .seconds(6))
        let status = await probe.probeKVM(qemuAvailable: true)
        // The outcome depends on the host; what must hold is that "usable" is only claimed after a guest ran.
        if status.usable {
            #expect(status.detail.contains("ran under kvm"))
        } else {
            #expect(!status.detail.isEmpty)
        }
    }

    @Test("QEMU's version and confidential-guest object support are read from QEMU itself", .timeLimit(.minutes(3)))
    func qemuStatus() async throws {
        let status = try #require(await HostProbe().probeQEMU())
        #expect(status.tcgProbePassed, "\(status.tcgProbeDetail)")
        let components = status.version.split(separator: ".").compactMap { Int($0) }
        #expect(components.count >= 2)
        // sev-snp-guest needs QEMU >= 9.1, tdx-guest >= 10.1: the object list must agree with the version.
        let version = (components[0], components[1])
        if version < (9, 1) { #expect(!status.supportsSEVSNPGuest) }
        if version < (10, 1) { #expect(!status.supportsTDXGuest) }
    }

    @Test("Debian's OVMF is found with SNP metadata, without kernel hashes; VARS files are skipped")
    func firmwareScan() {
        let firmware = HostProbe().scanFirmware()
        let ovmf = firmware.first(where: { $0.path == "/usr/share/ovmf/OVMF.fd" })
        #expect(ovmf?.snpMetadata == true)
        #expect(ovmf?.kernelHashes == false)
        #expect(ovmf?.tdxMetadata == true)
        #expect(!firmware.contains(where: { $0.path.contains("VARS") }))
        // OVMF_CODE_4M.fd carries no SNP metadata (sev-snp-measure's description agrees).
        if let code4M = firmware.first(where: { $0.path == "/usr/share/OVMF/OVMF_CODE_4M.fd" }) {
            #expect(!code4M.snpMetadata)
        }
    }

    @Test("guest TEE interfaces are detected under a prepared root")
    func confidentialInterfacesUnderRoot() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("cmk-root-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: root) }
        try fm.createDirectory(at: root.appendingPathComponent("dev"), withIntermediateDirectories: true)
        let empty = HostProbe(root: root).confidentialInterfaces()
        #expect(!empty.sevGuest && !empty.tdxGuest && !empty.configfsTSM)
        fm.createFile(atPath: root.appendingPathComponent("dev/sev-guest").path, contents: nil)
        try fm.createDirectory(at: root.appendingPathComponent("sys/kernel/config/tsm/report"), withIntermediateDirectories: true)
        let present = HostProbe(root: root).confidentialInterfaces()
        #expect(present.sevGuest && !present.tdxGuest && present.configfsTSM)
    }

    @Test("QEMU version text is parsed to its number")
    func qemuVersionParsing() {
        #expect(QEMUVersion.parse("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright") == "7.2.22")
        #expect(QEMUVersion.parse("QEMU emulator version 10.1.0\n") == "10.1.0")
        #expect(QEMUVersion.parse("something else") == nil)
    }

    @Test("a command that outlives its limit is stopped and reported as timed out", .timeLimit(.minutes(3)))
    func commandTimeout() async throws {
        let started = ContinuousClock.now
        let result = try await CommandRunner.run("sleep", ["30"], timeout: .milliseconds(300))
        #expect(result.timedOut)
        #expect(ContinuousClock.now - started < .seconds(10))
        let ok = try await CommandRunner.run("sh", ["-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(10))
        #expect(ok.exitCode == 3 && !ok.timedOut)
        #expect(ok.standardOutputText == "out\n" && ok.standardErrorText == "err\n")
    }
}
