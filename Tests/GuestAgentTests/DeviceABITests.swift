import CMKTesting
import Foundation
import GuestAgent
import Glibc
import Testing

/// The ioctl numbers and structure layouts against the Linux UAPI headers. The expected values were read from
/// `include/uapi/linux/sev-guest.h` and `tdx-guest.h` (and, for SEV, compiled with the installed headers).
@Suite("Linux guest-driver ABI")
struct DeviceABITests {
    @Test("ioctl numbers are the ones <linux/sev-guest.h> and <linux/tdx-guest.h> define")
    func ioctlNumbers() {
        #expect(SNPGuestABI.getReport == 0xC020_5300)
        #expect(SNPGuestABI.getDerivedKey == 0xC020_5301)
        #expect(SNPGuestABI.getExtendedReport == 0xC020_5302)
        #expect(TDXGuestABI.getReport0 == 0xC440_5401)
    }

    @Test("_IOC packs direction, size, type and number as asm-generic/ioctl.h does")
    func ioctlEncoding() {
        let (s, t) = (UInt8(ascii: "S"), UInt8(ascii: "T"))
        #expect(IOControl.request(direction: IOControl.none, type: t, number: 0x01, size: 0) == 0x0000_5401)
        #expect(IOControl.request(direction: IOControl.write, type: s, number: 2, size: 8) == 0x4008_5302)
        #expect(IOControl.request(direction: IOControl.read, type: t, number: 4, size: 16) == 0x8010_5404)
        #expect(IOControl.readWrite(type: "S", number: 0, size: IOControl.maximumSize) == 0xFFFF_5300)
    }

    @Test("structure sizes and offsets match the headers (x86_64)")
    func structureLayouts() {
        #expect(SNPGuestABI.requestSize == 32)
        #expect(SNPGuestABI.requestMessageVersionOffset == 0)
        #expect(SNPGuestABI.requestRequestDataOffset == 8)
        #expect(SNPGuestABI.requestResponseDataOffset == 16)
        #expect(SNPGuestABI.requestExitInfo2Offset == 24)
        #expect(SNPGuestABI.reportRequestSize == 96)
        #expect(SNPGuestABI.reportRequestVMPLOffset == 64)
        #expect(SNPGuestABI.reportRequestReservedOffset == 68)
        #expect(SNPGuestABI.reportResponseSize == 4000)
        #expect(SNPGuestABI.extendedRequestSize == 112)
        #expect(SNPGuestABI.extendedRequestCertsAddressOffset == 96)
        #expect(SNPGuestABI.extendedRequestCertsLengthOffset == 104)
        #expect(TDXGuestABI.requestSize == 1088)
        #expect(TDXGuestABI.requestTDReportOffset == 64)
        #expect(TDXGuestABI.tdReportLength == 1024)
    }

    @Test("the installed C headers agree: compile a probe against <linux/sev-guest.h> (and tdx-guest.h when present)")
    func installedHeadersAgree() throws {
        let directory = try temporaryDirectory("abi")
        defer { removeTree(directory) }
        let source = """
            #include <stdio.h>
            #include <stddef.h>
            #include <sys/ioctl.h>
            #include <linux/sev-guest.h>
            #if __has_include(<linux/tdx-guest.h>)
            #include <linux/tdx-guest.h>
            #define HAVE_TDX 1
            #endif
            int main(void) {
                printf("SNP_GET_REPORT %lu\\n", (unsigned long)SNP_GET_REPORT);
                printf("SNP_GET_EXT_REPORT %lu\\n", (unsigned long)SNP_GET_EXT_REPORT);
                printf("ioctl_size %zu\\n", sizeof(struct snp_guest_request_ioctl));
                printf("req_data %zu\\n", offsetof(struct snp_guest_request_ioctl, req_data));
                printf("resp_data %zu\\n", offsetof(struct snp_guest_request_ioctl, resp_data));
                printf("exitinfo2 %zu\\n", offsetof(struct snp_guest_request_ioctl, exitinfo2));
                printf("report_req %zu\\n", sizeof(struct snp_report_req));
                printf("vmpl %zu\\n", offsetof(struct snp_report_req, vmpl));
                printf("report_resp %zu\\n", sizeof(struct snp_report_resp));
                printf("ext_req %zu\\n", sizeof(struct snp_ext_report_req));
                printf("certs_address %zu\\n", offsetof(struct snp_ext_report_req, certs_address));
                printf("certs_len %zu\\n", offsetof(struct snp_ext_report_req, certs_len));
            #ifdef HAVE_TDX
                printf("TDX_CMD_GET_REPORT0 %lu\\n", (unsigned long)TDX_CMD_GET_REPORT0);
                printf("tdx_req %zu\\n", sizeof(struct tdx_report_req));
            #endif
                return 0;
            }
            """
        try writeFile("\(directory)/probe.c", Array(source.utf8))
        let compile = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/cc"), ["-o", "\(directory)/probe", "\(directory)/probe.c"])
        #expect(compile.status == 0, "cc failed: \(compile.standardError)")
        let run = try ExternalTool.run(URL(fileURLWithPath: "\(directory)/probe"), [])
        var values: [String: UInt] = [:]
        for line in run.standardOutput.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = UInt(parts[1]) { values[String(parts[0])] = value }
        }
        #expect(values["SNP_GET_REPORT"] == SNPGuestABI.getReport)
        #expect(values["SNP_GET_EXT_REPORT"] == SNPGuestABI.getExtendedReport)
        #expect(values["ioctl_size"] == UInt(SNPGuestABI.requestSize))
        #expect(values["req_data"] == UInt(SNPGuestABI.requestRequestDataOffset))
        #expect(values["resp_data"] == UInt(SNPGuestABI.requestResponseDataOffset))
        #expect(values["exitinfo2"] == UInt(SNPGuestABI.requestExitInfo2Offset))
        #expect(values["report_req"] == UInt(SNPGuestABI.reportRequestSize))
        #expect(values["vmpl"] == UInt(SNPGuestABI.reportRequestVMPLOffset))
        #expect(values["report_resp"] == UInt(SNPGuestABI.reportResponseSize))
        #expect(values["ext_req"] == UInt(SNPGuestABI.extendedRequestSize))
        #expect(values["certs_address"] == UInt(SNPGuestABI.extendedRequestCertsAddressOffset))
        #expect(values["certs_len"] == UInt(SNPGuestABI.extendedRequestCertsLengthOffset))
        if let tdx = values["TDX_CMD_GET_REPORT0"] {
            #expect(tdx == TDXGuestABI.getReport0)
            #expect(values["tdx_req"] == UInt(TDXGuestABI.requestSize))
        }
    }
}

@Suite("SEV-SNP guest device")
struct SEVGuestDeviceTests {
    let reportData = (0..<64).map { UInt8($0) }

    @Test("SNP_MSG_REPORT_RSP: the report after the 32-byte header")
    func parsesResponse() throws {
        let report = fakeSNPReport(reportData: reportData)
        var payload: [UInt8] = [0, 0, 0, 0, 0xA0, 0x04, 0, 0] + [UInt8](repeating: 0, count: 24) + report
        payload += [UInt8](repeating: 0, count: SNPGuestABI.reportResponseSize - payload.count)
        #expect(try SNPGuestABI.report(fromResponse: payload) == report)
    }

    @Test("a non-zero STATUS is the firmware's refusal, named")
    func rejectsStatus() {
        var payload: [UInt8] = [0x16, 0, 0, 0, 0xA0, 0x04, 0, 0] + [UInt8](repeating: 0, count: 24)
        payload += fakeSNPReport(reportData: reportData)
        let error = #expect(throws: GuestAgentError.self) { try SNPGuestABI.report(fromResponse: payload) }
        #expect(error?.code == .firmware)
        #expect(error?.reason.contains("INVALID_PARAMETERS") == true)
    }

    @Test("a truncated response or a short REPORT_SIZE is malformed", arguments: [0, 7, 31, 32, 100, 1215])
    func rejectsTruncation(length: Int) {
        let payload = Array(([0, 0, 0, 0, 0xA0, 0x04, 0, 0] + [UInt8](repeating: 0, count: 24)
            + fakeSNPReport(reportData: reportData)).prefix(length))
        let error = #expect(throws: GuestAgentError.self) { try SNPGuestABI.report(fromResponse: payload) }
        #expect(error?.code == .malformedResponse)
        let short: [UInt8] = [0, 0, 0, 0, 0x10, 0, 0, 0] + [UInt8](repeating: 0, count: 40)  // REPORT_SIZE 16
        #expect(throws: GuestAgentError.self) { try SNPGuestABI.report(fromResponse: short) }
    }

    @Test("EXITINFO2 and errno map to errors that say who failed")
    func mapsErrors() {
        let busy = SNPGuestABI.error(operation: "SNP_GET_REPORT", errno: EIO, exitInfo2: 2 << 32)
        #expect(busy.code == .device)
        #expect(busy.reason.contains("busy"))
        #expect(busy.systemError == EIO)
        let firmware = SNPGuestABI.error(operation: "SNP_GET_REPORT", errno: EIO, exitInfo2: 0x16)
        #expect(firmware.code == .firmware)
        #expect(firmware.reason.contains("INVALID_PARAM"))
        let noCall = SNPGuestABI.error(operation: "SNP_GET_REPORT", errno: ENOTTY, exitInfo2: 0xFFFF_FFFF)
        #expect(noCall.code == .device)
        #expect(noCall.systemError == ENOTTY)
        #expect(noCall.reason.contains("ENOTTY"))
        let permission = SNPGuestABI.error(operation: "SNP_GET_REPORT", errno: EACCES, exitInfo2: 0)
        #expect(permission.reason.contains("root"))
    }

    @Test("SNP_GET_EXT_REPORT grows the certificate buffer to the size the driver reports, then returns the table")
    func retriesWithLargerCertificateBuffer() throws {
        let table = fakeCertificateTable(padTo: 5 * 4096 + 100)  // needs 6 pages; the first buffer has 4
        let device = FakeSEVGuestDevice(hostCertificates: table)
        let provider = SEVGuestProvider(device: device, vmpl: 2)
        let evidence = try provider.evidence(reportData: reportData)
        #expect(evidence.kind == .sevSNP)
        #expect(Array(evidence.evidence[0x50..<0x90]) == reportData)
        #expect(device.calls.map(\.certificateLength) == [16384, 24576])
        #expect(device.calls.allSatisfy { $0.request == SNPGuestABI.getExtendedReport })
        #expect(device.seenVMPL == 2)
        #expect(evidence.auxiliary == Array(table.prefix(48 + 1300)))  // the used part of the table
    }

    @Test("a host without certificates: an all-zero buffer becomes an empty auxiliary blob")
    func noCertificates() throws {
        let device = FakeSEVGuestDevice(hostCertificates: [])
        let evidence = try SEVGuestProvider(device: device).evidence(reportData: reportData)
        #expect(evidence.auxiliary.isEmpty)
        #expect(device.calls.count == 1)
    }

    @Test("a driver without extended requests (ENOTTY): falls back to SNP_GET_REPORT")
    func fallsBackToPlainReport() throws {
        let device = FakeSEVGuestDevice(hostCertificates: [])
        device.extendedFailure = ENOTTY
        let evidence = try SEVGuestProvider(device: device).evidence(reportData: reportData)
        #expect(device.calls.map(\.request) == [SNPGuestABI.getExtendedReport, SNPGuestABI.getReport])
        #expect(Array(evidence.evidence[0x50..<0x90]) == reportData)
        #expect(evidence.auxiliary.isEmpty)
    }

    @Test("a firmware error reaches the caller with EXITINFO2 decoded")
    func firmwareErrorPropagates() {
        let device = FakeSEVGuestDevice(hostCertificates: [])
        device.failure = (EIO, 0x16)
        let error = #expect(throws: GuestAgentError.self) {
            try SEVGuestProvider(device: device).evidence(reportData: reportData)
        }
        #expect(error?.code == .firmware)
        #expect(device.calls.count == 1)  // EIO is not a reason to fall back
    }

    @Test("a refusal in MSG_REPORT_RSP STATUS is a firmware error")
    func statusPropagates() {
        let device = FakeSEVGuestDevice(hostCertificates: [])
        device.status = 0x27
        let error = #expect(throws: GuestAgentError.self) {
            try SEVGuestProvider(device: device).evidence(reportData: reportData)
        }
        #expect(error?.reason.contains("INVALID_KEY_SELECTION") == true)
    }

    @Test("REPORT_DATA must have 64 bytes")
    func rejectsShortReportData() {
        let device = FakeSEVGuestDevice(hostCertificates: [])
        let error = #expect(throws: GuestAgentError.self) {
            try SEVGuestProvider(device: device).evidence(reportData: [1, 2, 3])
        }
        #expect(error?.code == .usage)
        #expect(device.calls.isEmpty)
    }

    @Test("the used part of a certificate table: up to the furthest entry, or all of a malformed one")
    func trimsCertificateTable() {
        #expect(SNPGuestABI.usedCertificateTable([UInt8](repeating: 0, count: 4096)).isEmpty)
        let table = fakeCertificateTable(padTo: 8192)
        #expect(SNPGuestABI.usedCertificateTable(table).count == 48 + 1300)
        var broken = table
        broken[23] = 0x7F  // the entry's length reaches far past the buffer
        #expect(SNPGuestABI.usedCertificateTable(broken).count == broken.count)
    }
}

/// A stand-in for `/dev/tdx_guest`: writes a TDREPORT whose REPORTMACSTRUCT carries the request's REPORTDATA.
final class FakeTDXGuestDevice: DeviceControl, @unchecked Sendable {
    var failure: Int32?
    private(set) var requests: [UInt] = []

    func control(_ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32 {
        requests.append(request)
        if let failure { return failure }
        let bytes = UnsafeMutableRawBufferPointer(start: argument, count: TDXGuestABI.requestSize)
        let reportData = Array(bytes[0..<64])
        var report = [UInt8](repeating: 0, count: 1024)
        report[0] = 0x81  // REPORTTYPE.TYPE: TDX
        report.replaceSubrange(128..<192, with: reportData)
        UnsafeMutableRawBufferPointer(rebasing: bytes[64..<1088]).copyBytes(from: report)
        return 0
    }
}

@Suite("TDX guest device")
struct TDXGuestDeviceTests {
    @Test("TDX_CMD_GET_REPORT0 gives a TD report, labelled tdx-report (not a quote)")
    func tdReport() throws {
        let device = FakeTDXGuestDevice()
        let reportData = [UInt8](repeating: 0xAB, count: 64)
        let evidence = try TDXGuestProvider(device: device).evidence(reportData: reportData)
        #expect(device.requests == [0xC440_5401])
        #expect(evidence.kind == .tdxReport)
        #expect(evidence.evidence.count == 1024)
        #expect(EvidenceLayout.reportData(in: evidence) == reportData)
    }

    @Test("a failed TDCALL is a device error with the errno kept")
    func tdcallFailure() {
        let device = FakeTDXGuestDevice()
        device.failure = EIO
        let error = #expect(throws: GuestAgentError.self) {
            try TDXGuestProvider(device: device).evidence(reportData: [UInt8](repeating: 0, count: 64))
        }
        #expect(error?.code == .device)
        #expect(error?.systemError == EIO)
        #expect(error?.reason.contains("TDG.MR.REPORT") == true)
    }

    @Test("REPORTDATA is found in v4 and v5 quotes")
    func quoteReportData() {
        let reportData = [UInt8](repeating: 0x5A, count: 64)
        var v4 = [UInt8](repeating: 0, count: 0x278 + 4)
        v4[0] = 4
        v4.replaceSubrange(0x238..<0x278, with: reportData)
        #expect(EvidenceLayout.reportData(in: Evidence(kind: .tdx, evidence: v4, auxiliary: [])) == reportData)
        var v5 = [UInt8](repeating: 0, count: 0x27E + 4)
        v5[0] = 5
        v5.replaceSubrange(0x23E..<0x27E, with: reportData)
        #expect(EvidenceLayout.reportData(in: Evidence(kind: .tdx, evidence: v5, auxiliary: [])) == reportData)
        #expect(EvidenceLayout.reportData(in: Evidence(kind: .tdx, evidence: [3, 0], auxiliary: [])) == nil)
    }
}
