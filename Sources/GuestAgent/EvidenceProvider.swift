/// The kind of evidence in an attestation response: the `kind` field of `.attestResponse`.
public struct EvidenceKind: Sendable, Hashable, CustomStringConvertible {
    /// The name on the wire.
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// An SEV-SNP attestation report (1184 bytes); auxiliary: the certificate table, when the host supplied one.
    public static let sevSNP = EvidenceKind("sev-snp")
    /// A TDX DCAP quote (v4 or v5); auxiliary: the CCEL event log.
    public static let tdx = EvidenceKind("tdx")
    /// A TDX TD report (TDREPORT, 1024 bytes) from `/dev/tdx_guest`: MACed for this platform only, not a quote. A
    /// verifier elsewhere cannot check it; it must first be turned into a quote (configfs-tsm or the host's QGS).
    public static let tdxReport = EvidenceKind("tdx-report")
}

/// What a provider produced for one REPORT_DATA.
public struct Evidence: Sendable, Hashable {
    /// What the evidence is.
    public var kind: EvidenceKind
    /// The report or quote, exactly as the hardware (or the simulated platform) produced it.
    public var evidence: [UInt8]
    /// What came with it: the SEV-SNP certificate table or the TDX event log; empty when there is none.
    public var auxiliary: [UInt8]

    public init(kind: EvidenceKind, evidence: [UInt8], auxiliary: [UInt8]) {
        self.kind = kind
        self.evidence = evidence
        self.auxiliary = auxiliary
    }
}

/// A source of attestation evidence inside a child: configfs-tsm, `/dev/sev-guest`, `/dev/tdx_guest`, or the
/// simulated platform's port (docs/guest-agent.md says which is chosen when).
public protocol EvidenceProvider {
    /// The provider's name, as `.ready` reports it: `configfs-tsm`, `sev-guest`, `tdx-guest`, `simulated-snp`,
    /// `simulated-tdx`.
    var name: String { get }

    /// Evidence whose REPORT_DATA (REPORTDATA on TDX) is exactly these 64 bytes.
    func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence
}

/// The length of REPORT_DATA (SEV-SNP) and REPORTDATA (TDX).
public let reportDataLength = 64

/// Throws unless `reportData` has the 64 bytes every interface takes.
func requireReportData(_ reportData: [UInt8]) throws(GuestAgentError) {
    guard reportData.count == reportDataLength else {
        throw GuestAgentError(.usage, "REPORT_DATA has \(reportData.count) bytes; it must have \(reportDataLength)")
    }
}

/// Where each kind of evidence carries its REPORT_DATA, so the agent can check that what a provider returned is
/// bound to what it asked for.
public enum EvidenceLayout {
    /// SEV-SNP ATTESTATION_REPORT: REPORT_DATA at 0x50 (SEV-SNP ABI, table "ATTESTATION_REPORT Structure").
    public static let snpReportDataOffset = 0x50
    /// The size of an SEV-SNP ATTESTATION_REPORT (versions 2 to 5).
    public static let snpReportSize = 1184
    /// TDX quote v4: header (48 bytes) then the TD report body, REPORTDATA at body offset 520.
    public static let tdxQuoteV4ReportDataOffset = 0x238
    /// TDX quote v5: header, body type (u16) and size (u32), then the body: REPORTDATA 6 bytes later than in v4.
    public static let tdxQuoteV5ReportDataOffset = 0x23E
    /// TDREPORT: REPORTMACSTRUCT first, REPORTDATA at offset 128 inside it.
    public static let tdReportReportDataOffset = 128
    /// The size of a TDREPORT.
    public static let tdReportSize = 1024

    /// The REPORT_DATA the evidence carries, or nil when its layout is not one this agent knows.
    public static func reportData(in evidence: Evidence) -> [UInt8]? {
        let bytes = evidence.evidence
        let offset: Int
        switch evidence.kind {
        case .sevSNP:
            guard bytes.count >= snpReportSize else { return nil }
            offset = snpReportDataOffset
        case .tdx:
            guard bytes.count >= 2 else { return nil }
            switch UInt16(bytes[0]) | UInt16(bytes[1]) << 8 {
            case 4: offset = tdxQuoteV4ReportDataOffset
            case 5: offset = tdxQuoteV5ReportDataOffset
            default: return nil
            }
        case .tdxReport:
            guard bytes.count == tdReportSize else { return nil }
            offset = tdReportReportDataOffset
        default:
            return nil
        }
        guard bytes.count >= offset + reportDataLength else { return nil }
        return Array(bytes[offset..<(offset + reportDataLength)])
    }

    /// Throws unless the evidence carries exactly `reportData` (evidence of an unknown layout passes unchecked: the
    /// verifier checks REPORT_DATA in any case).
    public static func check(_ evidence: Evidence, carries reportData: [UInt8]) throws(GuestAgentError) {
        guard let found = self.reportData(in: evidence) else {
            if evidence.kind == .sevSNP || evidence.kind == .tdxReport {
                throw GuestAgentError(
                    .malformedResponse, "\(evidence.kind) evidence of \(evidence.evidence.count) bytes is too short")
            }
            return
        }
        guard found == reportData else {
            throw GuestAgentError(.malformedResponse, "the \(evidence.kind) evidence carries another REPORT_DATA")
        }
    }
}
