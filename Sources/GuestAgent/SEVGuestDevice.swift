import BinaryFormat
import Glibc

/// The user-space ABI of Linux's SEV-SNP guest driver, `/dev/sev-guest` (`include/uapi/linux/sev-guest.h`), and the
/// SNP_MSG_REPORT_RSP message it passes through (SEV-SNP ABI, "MSG_REPORT_RSP Message Structure").
///
/// Every offset and size is a named constant; the tests compare them with the C header.
public enum SNPGuestABI {
    /// `SNP_GUEST_REQ_IOC_TYPE`.
    public static let ioctlType: Character = "S"
    /// `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)` = 0xc0205300.
    public static let getReport = IOControl.readWrite(type: ioctlType, number: 0x0, size: requestSize)
    /// `SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, ...)` = 0xc0205301 (not used by the agent).
    public static let getDerivedKey = IOControl.readWrite(type: ioctlType, number: 0x1, size: requestSize)
    /// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)` = 0xc0205302.
    public static let getExtendedReport = IOControl.readWrite(type: ioctlType, number: 0x2, size: requestSize)

    // struct snp_guest_request_ioctl (32 bytes on x86_64: u8, 7 bytes of padding, three u64).
    /// `sizeof(struct snp_guest_request_ioctl)`.
    public static let requestSize = 32
    /// `msg_version` (u8, must be non-zero).
    public static let requestMessageVersionOffset = 0
    /// `req_data` (u64, the address of the request structure).
    public static let requestRequestDataOffset = 8
    /// `resp_data` (u64, the address of the response structure).
    public static let requestResponseDataOffset = 16
    /// `exitinfo2` (u64): bits 31:0 `fw_error`, bits 63:32 `vmm_error`.
    public static let requestExitInfo2Offset = 24
    /// The message version the agent asks for.
    public static let messageVersion: UInt8 = 1

    // struct snp_report_req (96 bytes).
    /// `sizeof(struct snp_report_req)`.
    public static let reportRequestSize = 96
    /// `user_data[64]`: REPORT_DATA.
    public static let reportRequestUserDataOffset = 0
    /// `vmpl` (u32).
    public static let reportRequestVMPLOffset = 64
    /// `rsvd[28]`, zero.
    public static let reportRequestReservedOffset = 68

    // struct snp_report_resp.
    /// `sizeof(struct snp_report_resp)`: `data[4000]`.
    public static let reportResponseSize = 4000

    // struct snp_ext_report_req (112 bytes: the report request, u64, u32, 4 bytes of padding).
    /// `sizeof(struct snp_ext_report_req)`.
    public static let extendedRequestSize = 112
    /// `certs_address` (u64).
    public static let extendedRequestCertsAddressOffset = 96
    /// `certs_len` (u32): in, the buffer's size; out, on "too small", the size the host needs.
    public static let extendedRequestCertsLengthOffset = 104

    // SNP_MSG_REPORT_RSP, the payload of snp_report_resp.data.
    /// `STATUS` (u32): 0 success.
    public static let responseStatusOffset = 0
    /// `REPORT_SIZE` (u32).
    public static let responseReportSizeOffset = 4
    /// 24 reserved bytes.
    public static let responseReservedOffset = 8
    /// The report.
    public static let responseReportOffset = 32

    /// The certificate buffer must be whole pages.
    public static let pageSize = 4096
    /// The first certificate buffer: 4 pages (`SEV_FW_BLOB_MAX_SIZE` of the drivers that cap it).
    public static let initialCertificateBufferSize = 4 * pageSize
    /// The largest certificate buffer the agent will allocate on the host's request.
    public static let maximumCertificateBufferSize = 256 * pageSize

    /// `vmm_error` `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer is too small; the driver wrote the size
    /// needed into `certs_len`.
    public static let vmmErrorInvalidLength: UInt32 = 1
    /// `vmm_error` `SNP_GUEST_VMM_ERR_BUSY`: the host throttled the request (the driver retries it for a while).
    public static let vmmErrorBusy: UInt32 = 2
    /// `fw_error` `SEV_RET_NO_FW_CALL` (-1): the driver failed before the firmware was asked.
    public static let firmwareErrorNoCall: UInt32 = 0xFFFF_FFFF

    /// `sev_ret_code` names (`include/uapi/linux/psp-sev.h`) for the firmware errors a report request can meet.
    static let firmwareErrorNames: [UInt32: String] = [
        0x01: "INVALID_PLATFORM_STATE", 0x02: "INVALID_GUEST_STATE", 0x03: "INVALID_CONFIG", 0x04: "INVALID_LEN",
        0x07: "POLICY_FAILURE", 0x08: "INACTIVE", 0x09: "INVALID_ADDRESS", 0x10: "INVALID_GUEST",
        0x11: "INVALID_COMMAND", 0x15: "UNSUPPORTED", 0x16: "INVALID_PARAM", 0x17: "RESOURCE_LIMIT",
        0x18: "SECURE_DATA_INVALID",
    ]
    /// MSG_REPORT_RSP `STATUS` values.
    static let reportStatusNames: [UInt32: String] = [0x16: "INVALID_PARAMETERS", 0x27: "INVALID_KEY_SELECTION"]

    /// The report inside an SNP_MSG_REPORT_RSP payload; throws on a non-zero status or an impossible size.
    public static func report(fromResponse payload: [UInt8]) throws(GuestAgentError) -> [UInt8] {
        var cursor = ByteCursor(payload)
        do {
            let status = try cursor.readLittleEndian(UInt32.self, field: "STATUS")
            let size = Int(try cursor.readLittleEndian(UInt32.self, field: "REPORT_SIZE"))
            guard status == 0 else {
                let name = reportStatusNames[status] ?? "unknown"
                throw GuestAgentError(
                    .firmware, "the firmware refused the report: STATUS 0x\(String(status, radix: 16)) (\(name))")
            }
            try cursor.skip(responseReportOffset - responseReservedOffset, field: "reserved")
            guard size >= EvidenceLayout.snpReportSize else {
                throw GuestAgentError(
                    .malformedResponse,
                    "REPORT_SIZE is \(size); an ATTESTATION_REPORT has \(EvidenceLayout.snpReportSize)")
            }
            return try cursor.readBytes(size, field: "REPORT")
        } catch let error as BinaryFormatError {
            throw GuestAgentError(.malformedResponse, "SNP_MSG_REPORT_RSP: \(error)")
        } catch let error as GuestAgentError {
            throw error
        } catch {
            throw GuestAgentError(.malformedResponse, "SNP_MSG_REPORT_RSP: \(error)")
        }
    }

    /// The error for a failed SEV guest ioctl: the errno, and what EXITINFO2 says about the firmware and the host.
    public static func error(operation: String, errno number: Int32, exitInfo2: UInt64) -> GuestAgentError {
        let firmware = UInt32(truncatingIfNeeded: exitInfo2)
        let host = UInt32(truncatingIfNeeded: exitInfo2 >> 32)
        let exit = "EXITINFO2 0x\(String(exitInfo2, radix: 16))"
        if host == vmmErrorBusy {
            return GuestAgentError(
                .device, "\(operation): the host kept the request busy (throttled); try again later (\(exit))",
                systemError: number)
        }
        if host != 0 {
            return GuestAgentError(.device, "\(operation): the host failed the request: vmm_error \(host) (\(exit))",
                systemError: number)
        }
        if firmware != 0 && firmware != firmwareErrorNoCall {
            let name = firmwareErrorNames[firmware] ?? "unknown"
            return GuestAgentError(
                .firmware, "\(operation): the firmware returned 0x\(String(firmware, radix: 16)) (\(name)); \(exit)",
                systemError: number)
        }
        let hint: String
        switch number {
        case ENOTTY: hint = "this kernel's sev-guest driver does not know the ioctl"
        case EINVAL: hint = "the driver rejected the request (message version, VMPL, or certificate buffer)"
        case EACCES, EPERM: hint = "the agent needs root to use /dev/sev-guest"
        case EIO: hint = "the request failed in the firmware or the host"
        default: hint = "the driver failed the request"
        }
        return .system(.device, "\(operation): \(hint); \(exit)", errno: number)
    }

    /// The used part of a certificate table (GUID table: 24-byte entries {GUID, offset u32, length u32} up to an
    /// all-zero entry; offsets from the table's start): empty when the host supplied none (the buffer is all
    /// zero), the whole buffer when the table is not well formed (the verifier judges it).
    public static func usedCertificateTable(_ buffer: [UInt8]) -> [UInt8] {
        let entrySize = 24
        var end = 0
        var index = 0
        while index + entrySize <= buffer.count {
            let entry = buffer[index..<(index + entrySize)]
            if entry.allSatisfy({ $0 == 0 }) {
                if index == 0 { return [] }
                end = max(end, index + entrySize)
                return Array(buffer.prefix(end))
            }
            var cursor = ByteCursor(Array(entry))
            guard (try? cursor.skip(16, field: "GUID")) != nil,
                let offset = try? cursor.readLittleEndian(UInt32.self, field: "offset"),
                let length = try? cursor.readLittleEndian(UInt32.self, field: "length"),
                Int(offset) + Int(length) <= buffer.count
            else { return buffer }
            end = max(end, Int(offset) + Int(length))
            index += entrySize
        }
        return buffer
    }
}

/// An open `/dev/sev-guest` or `/dev/tdx_guest`: ioctls go to the kernel.
public final class DeviceFile: DeviceControl {
    /// The path it was opened from.
    public let path: String
    let descriptor: FileDescriptor

    /// Opens the device read-write.
    public init(path: String) throws(GuestAgentError) {
        self.path = path
        descriptor = try FileDescriptor.open(path, flags: O_RDWR)
    }

    public func control(_ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32 {
        let result = retryingOnInterrupt { ioctl(descriptor.rawValue, request, argument) }
        return result == 0 ? 0 : errno
    }
}

/// SEV-SNP reports from Linux's `/dev/sev-guest` (Linux 5.19 and later): SNP_GET_EXT_REPORT for the report and the
/// host's certificate table, falling back to SNP_GET_REPORT when the driver or host has no extended requests.
///
/// Needs an SEV-SNP guest: the ioctls cannot run on a machine without one; tests drive the same code through a
/// `DeviceControl` stand-in.
public struct SEVGuestProvider: EvidenceProvider {
    /// Where Linux puts the device.
    public static let defaultPath = "/dev/sev-guest"
    public var name: String { "sev-guest" }
    /// The VMPL the report is requested at (0 for a guest without an SVSM).
    public let vmpl: UInt32
    /// Whether to ask for the certificate table (SNP_GET_EXT_REPORT) first.
    public let requestCertificates: Bool
    let device: any DeviceControl

    /// A provider over `device` (a `DeviceFile` in the guest).
    public init(device: any DeviceControl, vmpl: UInt32 = 0, requestCertificates: Bool = true) {
        self.device = device
        self.vmpl = vmpl
        self.requestCertificates = requestCertificates
    }

    public func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        try requireReportData(reportData)
        if requestCertificates {
            do throws(GuestAgentError) {
                let (report, table) = try extendedReport(reportData)
                return Evidence(kind: .sevSNP, evidence: report, auxiliary: table)
            } catch let error where error.code == .device && [ENOTTY, EINVAL].contains(error.systemError ?? 0) {
                // A driver or host without extended guest requests: the report alone; the verifier fetches the VCEK.
            }
        }
        return Evidence(kind: .sevSNP, evidence: try report(reportData), auxiliary: [])
    }

    /// The report request (`struct snp_report_req`) for this REPORT_DATA.
    func reportRequest(_ reportData: [UInt8], into raw: UnsafeMutableRawBufferPointer) {
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        for (index, byte) in reportData.enumerated() { raw[SNPGuestABI.reportRequestUserDataOffset + index] = byte }
        raw.storeLittleEndian(vmpl, at: SNPGuestABI.reportRequestVMPLOffset)
    }

    /// SNP_GET_REPORT: the report only.
    func report(_ reportData: [UInt8]) throws(GuestAgentError) -> [UInt8] {
        var request = [UInt8](repeating: 0, count: SNPGuestABI.reportRequestSize)
        var response = [UInt8](repeating: 0, count: SNPGuestABI.reportResponseSize)
        var header = [UInt8](repeating: 0, count: SNPGuestABI.requestSize)
        let (status, exitInfo2) = request.withUnsafeMutableBytes { requestBytes in
            reportRequest(reportData, into: requestBytes)
            return response.withUnsafeMutableBytes { responseBytes in
                header.withUnsafeMutableBytes { headerBytes in
                    issue(SNPGuestABI.getReport, headerBytes, request: requestBytes, response: responseBytes)
                }
            }
        }
        guard status == 0 else {
            throw SNPGuestABI.error(operation: "SNP_GET_REPORT", errno: status, exitInfo2: exitInfo2)
        }
        return try SNPGuestABI.report(fromResponse: response)
    }

    /// SNP_GET_EXT_REPORT: the report and the certificate table, growing the certificate buffer when the host says
    /// it is too small (EXITINFO2's `vmm_error` = INVALID_LEN; the driver writes the size needed into `certs_len`).
    func extendedReport(_ reportData: [UInt8]) throws(GuestAgentError) -> (report: [UInt8], table: [UInt8]) {
        var certificateBufferSize = SNPGuestABI.initialCertificateBufferSize
        for _ in 0..<3 {
            var request = [UInt8](repeating: 0, count: SNPGuestABI.extendedRequestSize)
            var response = [UInt8](repeating: 0, count: SNPGuestABI.reportResponseSize)
            var header = [UInt8](repeating: 0, count: SNPGuestABI.requestSize)
            var certificates = [UInt8](repeating: 0, count: certificateBufferSize)
            let (status, exitInfo2, neededSize) = request.withUnsafeMutableBytes { requestBytes in
                let reportPart = requestBytes[0..<SNPGuestABI.reportRequestSize]
                reportRequest(reportData, into: UnsafeMutableRawBufferPointer(rebasing: reportPart))
                return certificates.withUnsafeMutableBytes { certificateBytes in
                    requestBytes.storeLittleEndian(
                        UInt64(UInt(bitPattern: certificateBytes.baseAddress)),
                        at: SNPGuestABI.extendedRequestCertsAddressOffset)
                    requestBytes.storeLittleEndian(
                        UInt32(certificateBytes.count), at: SNPGuestABI.extendedRequestCertsLengthOffset)
                    let (status, exitInfo2) = response.withUnsafeMutableBytes { responseBytes in
                        header.withUnsafeMutableBytes { headerBytes in
                            issue(
                                SNPGuestABI.getExtendedReport, headerBytes, request: requestBytes,
                                response: responseBytes)
                        }
                    }
                    let needed = requestBytes.loadLittleEndian(
                        UInt32.self, at: SNPGuestABI.extendedRequestCertsLengthOffset)
                    return (status, exitInfo2, Int(needed))
                }
            }
            if status == 0 {
                return (try SNPGuestABI.report(fromResponse: response), SNPGuestABI.usedCertificateTable(certificates))
            }
            guard UInt32(truncatingIfNeeded: exitInfo2 >> 32) == SNPGuestABI.vmmErrorInvalidLength else {
                throw SNPGuestABI.error(operation: "SNP_GET_EXT_REPORT", errno: status, exitInfo2: exitInfo2)
            }
            let pages = (neededSize + SNPGuestABI.pageSize - 1) / SNPGuestABI.pageSize
            let next = pages * SNPGuestABI.pageSize
            guard next > certificateBufferSize, next <= SNPGuestABI.maximumCertificateBufferSize else {
                throw GuestAgentError(
                    .device,
                    "SNP_GET_EXT_REPORT: the host asks for a \(neededSize)-byte certificate buffer after "
                        + "\(certificateBufferSize) bytes were too small (at most "
                        + "\(SNPGuestABI.maximumCertificateBufferSize) bytes are allowed)",
                    systemError: status)
            }
            certificateBufferSize = next
        }
        throw GuestAgentError(.device, "SNP_GET_EXT_REPORT: the host kept asking for a larger certificate buffer")
    }

    /// Fills `struct snp_guest_request_ioctl` and issues the ioctl; returns the errno (0 on success) and EXITINFO2.
    private func issue(
        _ request: UInt, _ header: UnsafeMutableRawBufferPointer, request requestBytes: UnsafeMutableRawBufferPointer,
        response responseBytes: UnsafeMutableRawBufferPointer
    ) -> (Int32, UInt64) {
        header.initializeMemory(as: UInt8.self, repeating: 0)
        header[SNPGuestABI.requestMessageVersionOffset] = SNPGuestABI.messageVersion
        header.storeLittleEndian(
            UInt64(UInt(bitPattern: requestBytes.baseAddress)), at: SNPGuestABI.requestRequestDataOffset)
        header.storeLittleEndian(
            UInt64(UInt(bitPattern: responseBytes.baseAddress)), at: SNPGuestABI.requestResponseDataOffset)
        let status = device.control(request, header.baseAddress!)
        return (status, header.loadLittleEndian(UInt64.self, at: SNPGuestABI.requestExitInfo2Offset))
    }
}
