import Glibc

/// The user-space ABI of Linux's TDX guest driver, `/dev/tdx_guest` (`include/uapi/linux/tdx-guest.h`, Linux 6.2+).
public enum TDXGuestABI {
    /// `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)` = 0xc4405401.
    public static let getReport0 = IOControl.readWrite(type: "T", number: 1, size: requestSize)
    /// `sizeof(struct tdx_report_req)`: `reportdata[64]` then `tdreport[1024]`.
    public static let requestSize = 1088
    /// `reportdata` (`TDX_REPORTDATA_LEN` = 64 bytes).
    public static let requestReportDataOffset = 0
    /// `tdreport` (`TDX_REPORT_LEN` = 1024 bytes).
    public static let requestTDReportOffset = 64
    /// `TDX_REPORT_LEN`.
    public static let tdReportLength = 1024

    /// The error for a failed TDX_CMD_GET_REPORT0.
    public static func error(errno number: Int32) -> GuestAgentError {
        let hint: String
        switch number {
        case EIO: hint = "TDCALL[TDG.MR.REPORT] failed in the TDX module"
        case EINVAL: hint = "the driver rejected the request"
        case ENOTTY: hint = "this kernel's tdx_guest driver does not know the ioctl"
        case EACCES, EPERM: hint = "the agent needs root to use /dev/tdx_guest"
        default: hint = "the driver failed the request"
        }
        return .system(.device, "TDX_CMD_GET_REPORT0: \(hint)", errno: number)
    }
}

/// A TDX TD report (TDREPORT) from Linux's `/dev/tdx_guest` (TDX_CMD_GET_REPORT0).
///
/// A TD report is MACed with a key only this platform's CPU knows: it is **not** a quote, and nothing outside the
/// platform can verify it. The quote comes from configfs-tsm (Linux 6.7+, preferred on TDX: the kernel asks the
/// host's Quote Generation Service through a GetQuote TDVMCALL) or from the host's QGS directly. This provider
/// reports kind `tdx-report` so no verifier mistakes it for a quote. Cannot run without a TDX guest.
public struct TDXGuestProvider: EvidenceProvider {
    /// Where Linux puts the device.
    public static let defaultPath = "/dev/tdx_guest"
    public var name: String { "tdx-guest" }
    let device: any DeviceControl

    /// A provider over `device` (a `DeviceFile` in the guest).
    public init(device: any DeviceControl) { self.device = device }

    public func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        try requireReportData(reportData)
        var request = [UInt8](repeating: 0, count: TDXGuestABI.requestSize)
        let start = TDXGuestABI.requestReportDataOffset
        request.replaceSubrange(start..<(start + reportDataLength), with: reportData)
        let status = request.withUnsafeMutableBytes { device.control(TDXGuestABI.getReport0, $0.baseAddress!) }
        guard status == 0 else { throw TDXGuestABI.error(errno: status) }
        let reportStart = TDXGuestABI.requestTDReportOffset
        let report = Array(request[reportStart..<(reportStart + TDXGuestABI.tdReportLength)])
        return Evidence(kind: .tdxReport, evidence: report, auxiliary: [])
    }
}
