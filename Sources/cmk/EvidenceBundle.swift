import Attestation
import AttestationPolicy
import Foundation
import SEVSNP

/// Reads evidence named on the command line: a report or quote file, or a folder that holds one with what came
/// with it (report.bin + vcek.der/vcek.pem + ask.pem/ark.pem + certs.bin; quote.bin + the TDX collateral files).
enum EvidenceBundle {
    struct Options {
        var collateral: String?
        var vcek: String?
        var certTable: String?
        /// A TD's CCEL event log, replayed against the quote's RTMRs (`tdx.event-log`).
        var eventLog: String? = nil
    }

    static func load(_ path: String, options: Options) throws(AttestationError) -> PresentedEvidence {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw AttestationError(.unreadableInput, "'\(path)' does not exist")
        }
        let fm = FileManager.default
        if isDirectory.boolValue {
            let folder = URL(fileURLWithPath: path)
            func file(_ names: [String]) -> String? {
                names.map { folder.appendingPathComponent($0).path }.first { fm.fileExists(atPath: $0) }
            }
            if let quote = file(["quote.bin", "quote.dat"]) {
                let collateralFolder = options.collateral ?? (file(["tcbinfo.json"]) != nil ? path : nil)
                let log = try (options.eventLog ?? file(["ccel.bin", "CCEL", "ccel_data.bin", "eventlog.bin"])).map { p throws(AttestationError) in
                    try SNPEvidenceFiles.read(p, what: "event log")
                }
                return .tdx(
                    quote: try SNPEvidenceFiles.read(quote, what: "quote"), collateral: try tdxCollateral(collateralFolder),
                    eventLog: log)
            }
            guard let report = file(["report.bin", "attestation-report.bin"]) else {
                throw AttestationError(.unreadableInput, "'\(path)' holds neither report.bin (SEV-SNP) nor quote.bin (TDX)")
            }
            let table = try (options.certTable ?? file(["certs.bin", "auxblob.bin"])).map { p throws(AttestationError) in
                try SNPEvidenceFiles.read(p, what: "certificate table")
            }
            let endorsement = try (options.vcek ?? file(["vcek.der", "vcek.pem", "vlek.der", "vlek.pem"])).map(SNPEvidenceFiles.certificate)
            let chain = table == nil && (file(["ask.pem", "asvk.pem", "ark.pem", "cert_chain.pem"]) != nil)
                ? try SNPEvidenceFiles.chain(directory: path) : []
            return .snp(
                report: try SNPEvidenceFiles.read(report, what: "report"), certificateTable: table,
                endorsement: table == nil ? endorsement : nil, chain: chain)
        }
        let bytes = try SNPEvidenceFiles.read(path, what: "evidence")
        if bytes.count != SNPReport.Layout.size, bytes.count > 8, bytes[4] == 0x81, bytes[0] == 4 || bytes[0] == 5 {
            let log = try options.eventLog.map { p throws(AttestationError) in try SNPEvidenceFiles.read(p, what: "event log") }
            return .tdx(quote: bytes, collateral: try tdxCollateral(options.collateral), eventLog: log)
        }
        if options.eventLog != nil {
            throw AttestationError(.unreadableInput, "--event-log is for TDX quotes (a TD's CCEL); '\(path)' is not a TDX quote")
        }
        let table = try options.certTable.map { p throws(AttestationError) in try SNPEvidenceFiles.read(p, what: "certificate table") }
        return .snp(
            report: bytes, certificateTable: table, endorsement: try options.vcek.map(SNPEvidenceFiles.certificate), chain: [])
    }

    static func tdxCollateral(_ folder: String?) throws(AttestationError) -> TDXCollateral? {
        guard let folder else { return nil }
        return try TDXCollateral(directory: URL(fileURLWithPath: folder))
    }
}
