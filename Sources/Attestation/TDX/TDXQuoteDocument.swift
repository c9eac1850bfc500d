public import BinaryFormat
public import TDX

/// Every field of a TDX quote, decoded, for `cmk evidence show` (JSON and text).
public struct TDXQuoteDocument: Sendable, Codable {
    public let evidenceType: String
    public let version: UInt16
    public let attestationKeyType: UInt16
    public let teeType: String
    public let qeVendorID: HexBytes
    public let userData: HexBytes
    public let body: String
    public let teeTCBSVN: HexBytes
    public let teeTCBSVN2: HexBytes?
    public let mrSeam: HexBytes
    public let mrSignerSeam: HexBytes
    public let seamAttributes: HexBytes
    public let tdAttributes: String
    public let tdAttributeFlags: [String]
    public let debug: Bool
    public let xfam: String
    public let mrTD: HexBytes
    public let mrConfigID: HexBytes
    public let mrOwner: HexBytes
    public let mrOwnerConfig: HexBytes
    public let rtmr0: HexBytes
    public let rtmr1: HexBytes
    public let rtmr2: HexBytes
    public let rtmr3: HexBytes
    public let reportData: HexBytes
    public let mrServiceTD: HexBytes?
    public let qeMRSigner: HexBytes
    public let qeISVProdID: UInt16
    public let qeISVSVN: UInt16
    public let trailingBytes: Int

    public init(quote q: TDXQuote) {
        let b = q.body
        evidenceType = "tdx"
        version = q.version
        attestationKeyType = q.attestationKeyType
        teeType = "0x" + String(q.teeType, radix: 16)
        qeVendorID = HexBytes(q.qeVendorID)
        userData = HexBytes(q.userData)
        body = q.bodyType == .td15 ? "TD report 1.5" : "TD report 1.0"
        teeTCBSVN = HexBytes(b.teeTCBSVN)
        teeTCBSVN2 = b.teeTCBSVN2.map(HexBytes.init)
        mrSeam = HexBytes(b.mrSeam)
        mrSignerSeam = HexBytes(b.mrSignerSeam)
        seamAttributes = HexBytes(b.seamAttributes)
        tdAttributes = "0x" + String(b.tdAttributesValue, radix: 16)
        tdAttributeFlags = b.tdAttributeFlags
        debug = b.isDebug
        xfam = "0x" + String(b.xfamValue, radix: 16)
        mrTD = HexBytes(b.mrTD)
        mrConfigID = HexBytes(b.mrConfigID)
        mrOwner = HexBytes(b.mrOwner)
        mrOwnerConfig = HexBytes(b.mrOwnerConfig)
        rtmr0 = HexBytes(b.rtmrs[0])
        rtmr1 = HexBytes(b.rtmrs[1])
        rtmr2 = HexBytes(b.rtmrs[2])
        rtmr3 = HexBytes(b.rtmrs[3])
        reportData = HexBytes(b.reportData)
        mrServiceTD = b.mrServiceTD.map(HexBytes.init)
        qeMRSigner = HexBytes(q.qeReport.mrSigner)
        qeISVProdID = q.qeReport.isvProdID
        qeISVSVN = q.qeReport.isvSVN
        trailingBytes = q.trailingBytes
    }

    /// The fields as aligned `name: value` lines.
    public var lines: [String] {
        var rows: [(String, String)] = [
            ("VERSION", "\(version) (\(body))"), ("ATT_KEY_TYPE", attestationKeyType == 2 ? "2 (ECDSA P-256)" : "\(attestationKeyType)"),
            ("TEE_TYPE", teeType == "0x81" ? "0x81 (TDX)" : teeType), ("QE_VENDOR_ID", qeVendorID.description),
            ("USER_DATA", userData.description), ("TEE_TCB_SVN", teeTCBSVN.description),
        ]
        if let teeTCBSVN2 { rows.append(("TEE_TCB_SVN2", teeTCBSVN2.description)) }
        rows += [
            ("MRSEAM", mrSeam.description), ("MRSIGNERSEAM", mrSignerSeam.description), ("SEAMATTRIBUTES", seamAttributes.description),
            ("TDATTRIBUTES", "\(tdAttributes) [\(tdAttributeFlags.joined(separator: " "))]" + (debug ? "  DEBUG: the host can read this TD" : "")),
            ("XFAM", xfam), ("MRTD", mrTD.description), ("MRCONFIGID", mrConfigID.description), ("MROWNER", mrOwner.description),
            ("MROWNERCONFIG", mrOwnerConfig.description), ("RTMR0", rtmr0.description), ("RTMR1", rtmr1.description),
            ("RTMR2", rtmr2.description), ("RTMR3", rtmr3.description), ("REPORTDATA", reportData.description),
        ]
        if let mrServiceTD { rows.append(("MRSERVICETD", mrServiceTD.description)) }
        rows += [
            ("QE MRSIGNER", qeMRSigner.description), ("QE ISVPRODID", "\(qeISVProdID)"), ("QE ISVSVN", "\(qeISVSVN)"),
            ("TRAILING", "\(trailingBytes) bytes after the signature data"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 }
    }
}
