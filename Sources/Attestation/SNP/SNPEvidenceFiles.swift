public import Foundation
public import SEVSNP
public import BinaryFormat

/// Reading SEV-SNP evidence from files, as the CLI and tests receive it, with an error that says which
/// file is wrong and how.
public enum SNPEvidenceFiles {
    /// Reads a whole file; an empty or unreadable file is an `unreadable-input` error.
    public static func read(_ path: String, what: String) throws(AttestationError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AttestationError(.unreadableInput, "cannot read the \(what) '\(path)'")
        }
        guard !data.isEmpty else { throw AttestationError(.unreadableInput, "the \(what) '\(path)' is empty") }
        return [UInt8](data)
    }

    /// Reads and parses a raw 1184-byte ATTESTATION_REPORT.
    public static func report(_ path: String) throws(AttestationError) -> SNPReport {
        let bytes = try read(path, what: "report")
        if bytes.starts(with: Array("-----BEGIN".utf8)) || bytes.allSatisfy({ $0 < 0x80 && $0 != 0 }) {
            throw AttestationError(.malformedEvidence, "'\(path)' is text; an SEV-SNP report is the raw 1184-byte binary")
        }
        do {
            return try SNPReport(bytes: bytes)
        } catch {
            throw AttestationError(.malformedEvidence, "'\(path)' is not an SEV-SNP report: \(error.description)")
        }
    }

    /// Reads a certificate in DER or PEM.
    public static func certificate(_ path: String) throws(AttestationError) -> AttestationCertificate {
        let bytes = try read(path, what: "certificate")
        do {
            if bytes.starts(with: Array("-----BEGIN".utf8)) {
                return try AttestationCertificate(pem: String(decoding: bytes, as: UTF8.self))
            }
            return try AttestationCertificate(der: bytes)
        } catch {
            throw AttestationError(error.code, "'\(path)': \(error.reason)")
        }
    }

    /// Reads an extended-report certificate table (configfs-tsm `auxblob`).
    public static func certificateTable(_ path: String) throws(AttestationError) -> SNPCertificateTable {
        let bytes = try read(path, what: "certificate table")
        do {
            return try SNPCertificateTable(bytes: bytes)
        } catch {
            throw AttestationError(.malformedEvidence, "'\(path)' is not a certificate table: \(error.description)")
        }
    }

    /// Reads the chain certificates a folder holds (`ark.pem`, `ask.pem`, `asvk.pem`, or `cert_chain.pem`).
    public static func chain(directory: String) throws(AttestationError) -> [AttestationCertificate] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw AttestationError(.unreadableInput, "'\(directory)' is not a folder")
        }
        var result: [AttestationCertificate] = []
        for name in ["ask.pem", "asvk.pem", "ark.pem"] where fm.fileExists(atPath: directory + "/" + name) {
            result.append(try certificate(directory + "/" + name))
        }
        let bundle = directory + "/cert_chain.pem"
        if fm.fileExists(atPath: bundle) {
            let text = String(decoding: try read(bundle, what: "certificate chain"), as: UTF8.self)
            for der in try PEMDocuments.certificates(in: text) { result.append(try AttestationCertificate(der: der)) }
        }
        guard !result.isEmpty else {
            throw AttestationError(.unreadableInput, "'\(directory)' holds none of ark.pem, ask.pem, asvk.pem, cert_chain.pem")
        }
        return result
    }
}

/// Every field of a report, decoded, for `cmk evidence show` (JSON and text).
public struct SNPReportDocument: Sendable, Codable {
    public struct TCB: Sendable, Codable {
        public let raw: String
        public let components: SNPTCBVersion.Components?
    }

    public let evidenceType: String
    public let version: UInt32
    /// The product, when the CPUID bytes or the caller name it.
    public let product: AMDProduct?
    public let guestSVN: UInt32
    public let policy: String
    public let policyFlags: [String]
    public let abiMajor: UInt8
    public let abiMinor: UInt8
    public let familyID: HexBytes
    public let imageID: HexBytes
    public let vmpl: UInt32
    public let signatureAlgorithm: UInt32
    public let currentTCB: TCB
    public let reportedTCB: TCB
    public let committedTCB: TCB
    public let launchTCB: TCB
    public let platformInfo: String
    public let platformInfoFlags: [String]
    public let signingKey: String
    public let authorKeyEnabled: Bool
    public let maskChipKey: Bool
    public let reportData: HexBytes
    public let measurement: HexBytes
    public let hostData: HexBytes
    public let idKeyDigest: HexBytes
    public let authorKeyDigest: HexBytes
    public let reportID: HexBytes
    public let reportIDMA: HexBytes
    public let cpuid: SNPReport.CPUID?
    public let chipID: HexBytes
    public let currentFirmware: String
    public let committedFirmware: String
    public let launchMitigationVector: UInt64?
    public let currentMitigationVector: UInt64?
    public let signatureR: HexBytes
    public let signatureS: HexBytes

    public init(report r: SNPReport, product requested: AMDProduct? = nil) {
        let product = r.productFromCPUID ?? requested
        func tcb(_ value: SNPTCBVersion) -> TCB {
            TCB(raw: value.description, components: product.map { value.components($0.tcbLayout) })
        }
        evidenceType = "sev-snp"
        version = r.version
        self.product = product
        guestSVN = r.guestSVN
        policy = r.policy.description
        policyFlags = r.policy.flagNames
        abiMajor = r.policy.abiMajor
        abiMinor = r.policy.abiMinor
        familyID = HexBytes(r.familyID)
        imageID = HexBytes(r.imageID)
        vmpl = r.vmpl
        signatureAlgorithm = r.signatureAlgorithm
        currentTCB = tcb(r.currentTCB)
        reportedTCB = tcb(r.reportedTCB)
        committedTCB = tcb(r.committedTCB)
        launchTCB = tcb(r.launchTCB)
        platformInfo = r.platformInfo.description
        platformInfoFlags = r.platformInfo.flagNames
        signingKey = r.signerInfo.signingKey.name
        authorKeyEnabled = r.signerInfo.authorKeyEnabled
        maskChipKey = r.signerInfo.maskChipKey
        reportData = HexBytes(r.reportData)
        measurement = HexBytes(r.measurement)
        hostData = HexBytes(r.hostData)
        idKeyDigest = HexBytes(r.idKeyDigest)
        authorKeyDigest = HexBytes(r.authorKeyDigest)
        reportID = HexBytes(r.reportID)
        reportIDMA = HexBytes(r.reportIDMA)
        cpuid = r.cpuid
        chipID = HexBytes(r.chipID)
        currentFirmware = r.currentVersion.description
        committedFirmware = r.committedVersion.description
        launchMitigationVector = r.launchMitigationVector
        currentMitigationVector = r.currentMitigationVector
        signatureR = HexBytes(r.signatureR)
        signatureS = HexBytes(r.signatureS)
    }

    /// The fields as aligned `name: value` lines.
    public var lines: [String] {
        func tcb(_ t: TCB) -> String {
            guard let c = t.components else { return "\(t.raw) (product unknown: components not decoded)" }
            return "\(t.raw) (" + (c.fmc.map { "fmc \($0), " } ?? "") + "bl \(c.bootloader), tee \(c.tee), snp \(c.snp), ucode \(c.microcode))"
        }
        var rows: [(String, String)] = [
            ("VERSION", "\(version)"), ("PRODUCT", product?.rawValue ?? "unknown (v2 report: give --product or verify with the VCEK)"),
            ("GUEST_SVN", "\(guestSVN)"), ("POLICY", "\(policy) ABI \(abiMajor).\(abiMinor) [\(policyFlags.joined(separator: " "))]"),
            ("FAMILY_ID", familyID.description), ("IMAGE_ID", imageID.description), ("VMPL", "\(vmpl)"),
            ("SIGNATURE_ALGO", signatureAlgorithm == 1 ? "1 (ECDSA P-384 with SHA-384)" : "\(signatureAlgorithm)"),
            ("CURRENT_TCB", tcb(currentTCB)), ("PLATFORM_INFO", "\(platformInfo) [\(platformInfoFlags.joined(separator: " "))]"),
            ("SIGNER_INFO", "\(signingKey)" + (authorKeyEnabled ? " AUTHOR_KEY_EN" : "") + (maskChipKey ? " MASK_CHIP_KEY" : "")),
            ("REPORT_DATA", reportData.description), ("MEASUREMENT", measurement.description), ("HOST_DATA", hostData.description),
            ("ID_KEY_DIGEST", idKeyDigest.description), ("AUTHOR_KEY_DIGEST", authorKeyDigest.description),
            ("REPORT_ID", reportID.description), ("REPORT_ID_MA", reportIDMA.description), ("REPORTED_TCB", tcb(reportedTCB)),
        ]
        if let cpuid {
            rows.append(("CPUID", "family 0x\(String(cpuid.family, radix: 16)) model 0x\(String(cpuid.model, radix: 16)) stepping \(cpuid.stepping)"))
        }
        rows += [
            ("CHIP_ID", chipID.isZero ? "masked (all zero)" : chipID.description), ("COMMITTED_TCB", tcb(committedTCB)),
            ("CURRENT_VERSION", currentFirmware), ("COMMITTED_VERSION", committedFirmware), ("LAUNCH_TCB", tcb(launchTCB)),
        ]
        if let launchMitigationVector, let currentMitigationVector {
            rows.append(("LAUNCH_MIT_VECTOR", "0x" + String(launchMitigationVector, radix: 16)))
            rows.append(("CURRENT_MIT_VECTOR", "0x" + String(currentMitigationVector, radix: 16)))
        }
        rows += [("SIGNATURE.R", signatureR.description), ("SIGNATURE.S", signatureS.description)]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 }
    }
}
