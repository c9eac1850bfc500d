import Foundation
import GuestAgent
import Glibc
import Testing

/// configfs-tsm against a temporary directory laid out like `/sys/kernel/config/tsm/report`.
@Suite("configfs-tsm")
struct ConfigfsTSMTests {
    let reportData = (0..<64).map { UInt8(255 - $0) }

    @Test("one request: entry made, inblob written, outblob and auxblob read, entry removed")
    func generatesReport() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let configfs = KernelLikeConfigfs(root: root)
        let provider = ConfigfsTSMProvider(root: root, eventLogPath: nil, files: configfs)
        let evidence = try provider.evidence(reportData: reportData)
        #expect(evidence.kind == .sevSNP)
        #expect(evidence.evidence == fakeSNPReport(reportData: reportData))
        #expect(evidence.auxiliary == fakeCertificateTable(padTo: 0))
        #expect(configfs.writes.map(\.0) == ["inblob"])
        #expect(configfs.writes.first?.1 == reportData)
        #expect(configfs.createdEntries.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty)  // the entry is gone
    }

    @Test("a VMPL is written to privlevel before inblob, and counted in the generation")
    func writesPrivilegeLevel() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let configfs = KernelLikeConfigfs(root: root)
        let provider = ConfigfsTSMProvider(root: root, privilegeLevel: 2, eventLogPath: nil, files: configfs)
        _ = try provider.evidence(reportData: reportData)
        #expect(configfs.writes.map(\.0) == ["privlevel", "inblob"])
        #expect(configfs.writes.first?.1 == Array("2\n".utf8))
    }

    @Test("generation changes mid-read in every attempt: the race is detected, retried, then reported")
    func detectsConcurrentWriter() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let configfs = KernelLikeConfigfs(root: root, racingReads: .max)
        let provider = ConfigfsTSMProvider(root: root, attempts: 3, eventLogPath: nil, files: configfs)
        let error = #expect(throws: GuestAgentError.self) { try provider.evidence(reportData: reportData) }
        #expect(error?.code == .concurrentWriter)
        #expect(error?.reason.contains("3 attempts") == true)
        #expect(configfs.createdEntries.count == 3)
        #expect(Set(configfs.createdEntries).count == 3)  // a fresh entry each time
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty)
    }

    @Test("generation changes once: the second attempt succeeds")
    func recoversFromOneRace() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let configfs = KernelLikeConfigfs(root: root, racingReads: 1)
        let provider = ConfigfsTSMProvider(root: root, eventLogPath: nil, files: configfs)
        let evidence = try provider.evidence(reportData: reportData)
        #expect(Array(evidence.evidence[0x50..<0x90]) == reportData)
        #expect(configfs.createdEntries.count == 2)
    }

    @Test("on TDX the quote comes with the CCEL event log, not an auxblob")
    func tdxQuoteWithEventLog() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let log = "\(root)-CCEL"
        try writeFile(log, [1, 2, 3, 4])
        defer { unlink(log) }
        let configfs = KernelLikeConfigfs(root: root, provider: "tdx_guest")
        let provider = ConfigfsTSMProvider(root: root, eventLogPath: log, files: configfs)
        let evidence = try provider.evidence(reportData: reportData)
        #expect(evidence.kind == .tdx)
        #expect(evidence.evidence == [4, 0, 2, 0] + reportData)
        #expect(evidence.auxiliary == [1, 2, 3, 4])
    }

    @Test("an unknown provider name is refused")
    func unknownProvider() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let provider = ConfigfsTSMProvider(
            root: root, eventLogPath: nil, files: KernelLikeConfigfs(root: root, provider: "arm_cca_guest"))
        let error = #expect(throws: GuestAgentError.self) { try provider.evidence(reportData: reportData) }
        #expect(error?.code == .unavailable)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty)
    }

    @Test("probe: no directory, or mkdir refused (no provider bound), means configfs-tsm is not usable")
    func probe() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let configfs = KernelLikeConfigfs(root: root)
        #expect(ConfigfsTSMProvider(root: root, files: configfs).probe())
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty)
        configfs.noProvider = true
        #expect(!ConfigfsTSMProvider(root: root, files: configfs).probe())
        #expect(!ConfigfsTSMProvider(root: "\(root)/absent").probe())
    }

    @Test("the real file operations: a plain directory without the kernel's attributes fails clearly")
    func systemFilesOnPlainDirectory() throws {
        let root = try temporaryDirectory("tsm")
        defer { removeTree(root) }
        let provider = ConfigfsTSMProvider(root: root, eventLogPath: nil)
        let error = #expect(throws: GuestAgentError.self) { try provider.evidence(reportData: reportData) }
        #expect(error?.code == .unavailable)  // generation is missing: ENOENT
        #expect(error?.systemError == ENOENT)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty)
    }
}
