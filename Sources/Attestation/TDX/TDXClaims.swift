public import BinaryFormat
import TDX

/// What a verified TDX quote says, as typed values for the policy layer. The DEBUG attribute is always surfaced.
///
/// The claims are a view of the verified TD report: making them costs a reference to the report's bytes (a slice of
/// the quote), and each field is cut from those bytes when it is read. Two claims are equal when every field they
/// expose is.
public struct TDXClaims: Sendable, Hashable, Codable {
    public let evidenceType: String
    public let quoteVersion: UInt16
    /// The TD report the claims read.
    let report: TDXQuote.TDReport
    public let fmspc: HexBytes?
    public let pceID: HexBytes?
    /// The trust-anchor name the PCK chain ended in: `intel-sgx-root`, or `simulated-intel` for cmk's simulation.
    public let trustAnchor: String
    /// Whether the evidence comes from cmk's simulated platform (its root is not Intel's). Always surfaced.
    public let simulated: Bool

    public var teeTCBSVN: HexBytes { HexBytes(report.teeTCBSVN) }
    public var teeTCBSVN2: HexBytes? { report.teeTCBSVN2.map(HexBytes.init) }
    public var mrSeam: HexBytes { HexBytes(report.mrSeam) }
    public var mrSignerSeam: HexBytes { HexBytes(report.mrSignerSeam) }
    public var mrTD: HexBytes { HexBytes(report.mrTD) }
    public var rtmrs: [HexBytes] { report.rtmrs.map(HexBytes.init) }
    public var reportData: HexBytes { HexBytes(report.reportData) }
    public var mrConfigID: HexBytes { HexBytes(report.mrConfigID) }
    public var mrOwner: HexBytes { HexBytes(report.mrOwner) }
    public var mrOwnerConfig: HexBytes { HexBytes(report.mrOwnerConfig) }
    public var mrServiceTD: HexBytes? { report.mrServiceTD.map(HexBytes.init) }
    public var tdAttributes: UInt64 { report.tdAttributesValue }
    public var tdAttributeFlags: [String] { report.tdAttributeFlags }
    public var debug: Bool { report.isDebug }
    public var xfam: UInt64 { report.xfamValue }

    init(quote q: TDXQuote, pck: PCKExtensions?, trustAnchor: String, simulated: Bool) {
        evidenceType = "tdx"
        quoteVersion = q.version
        report = q.body
        fmspc = pck?.fmspc
        pceID = pck?.pceID
        self.trustAnchor = trustAnchor
        self.simulated = simulated
    }

    // MARK: Equality: every exposed field, which is every report byte but SEAMATTRIBUTES.

    public static func == (a: TDXClaims, b: TDXClaims) -> Bool {
        a.evidenceType == b.evidenceType && a.quoteVersion == b.quoteVersion && a.fmspc == b.fmspc
            && a.pceID == b.pceID && a.trustAnchor == b.trustAnchor && a.simulated == b.simulated
            && a.report.type == b.report.type
            && a.exposedBytes.0.elementsEqual(b.exposedBytes.0) && a.exposedBytes.1.elementsEqual(b.exposedBytes.1)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(evidenceType)
        hasher.combine(quoteVersion)
        hasher.combine(fmspc)
        hasher.combine(pceID)
        hasher.combine(trustAnchor)
        hasher.combine(simulated)
        hasher.combine(report.type)
        exposedBytes.0.withUnsafeBytes { hasher.combine(bytes: $0) }
        exposedBytes.1.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// The report's bytes before and after SEAMATTRIBUTES, the one report field the claims do not expose.
    private var exposedBytes: (ArraySlice<UInt8>, ArraySlice<UInt8>) {
        typealias Layout = TDXQuote.TDReport.Layout
        let afterSEAM = Layout.seamAttributes + Layout.attributesSize
        return (
            report.slice(0, Layout.seamAttributes), report.slice(afterSEAM, report.bytes.count - afterSEAM)
        )
    }

    // MARK: Coding: the fields by name, as they read.

    private enum CodingKeys: String, CodingKey {
        case evidenceType, quoteVersion, teeTCBSVN, teeTCBSVN2, mrSeam, mrSignerSeam, mrTD, rtmrs, reportData
        case mrConfigID, mrOwner, mrOwnerConfig, mrServiceTD, tdAttributes, tdAttributeFlags, debug, xfam, fmspc
        case pceID, trustAnchor, simulated
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(evidenceType, forKey: .evidenceType)
        try container.encode(quoteVersion, forKey: .quoteVersion)
        try container.encode(teeTCBSVN, forKey: .teeTCBSVN)
        try container.encodeIfPresent(teeTCBSVN2, forKey: .teeTCBSVN2)
        try container.encode(mrSeam, forKey: .mrSeam)
        try container.encode(mrSignerSeam, forKey: .mrSignerSeam)
        try container.encode(mrTD, forKey: .mrTD)
        try container.encode(rtmrs, forKey: .rtmrs)
        try container.encode(reportData, forKey: .reportData)
        try container.encode(mrConfigID, forKey: .mrConfigID)
        try container.encode(mrOwner, forKey: .mrOwner)
        try container.encode(mrOwnerConfig, forKey: .mrOwnerConfig)
        try container.encodeIfPresent(mrServiceTD, forKey: .mrServiceTD)
        try container.encode(tdAttributes, forKey: .tdAttributes)
        try container.encode(tdAttributeFlags, forKey: .tdAttributeFlags)
        try container.encode(debug, forKey: .debug)
        try container.encode(xfam, forKey: .xfam)
        try container.encodeIfPresent(fmspc, forKey: .fmspc)
        try container.encodeIfPresent(pceID, forKey: .pceID)
        try container.encode(trustAnchor, forKey: .trustAnchor)
        try container.encode(simulated, forKey: .simulated)
    }

    /// Reads claims back: the report is reassembled from the fields (SEAMATTRIBUTES, which claims do not carry, as
    /// zeros); sizes that do not fit a TD report, and DEBUG or flags that contradict TDATTRIBUTES, are rejected.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        typealias Layout = TDXQuote.TDReport.Layout
        func bytes(_ key: CodingKeys, _ size: Int) throws -> [UInt8] {
            let decoded: HexBytes = try container.decode(HexBytes.self, forKey: key)
            let value = decoded.bytes
            guard value.count == size else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container,
                    debugDescription: "\(key.stringValue) has \(value.count) bytes, not \(size)")
            }
            return value
        }
        func littleEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        evidenceType = try container.decode(String.self, forKey: .evidenceType)
        quoteVersion = try container.decode(UInt16.self, forKey: .quoteVersion)
        fmspc = try container.decodeIfPresent(HexBytes.self, forKey: .fmspc)
        pceID = try container.decodeIfPresent(HexBytes.self, forKey: .pceID)
        // Claims written before cmk had a simulated TDX platform came from Intel's root only.
        trustAnchor = try container.decodeIfPresent(String.self, forKey: .trustAnchor) ?? "intel-sgx-root"
        simulated = try container.decodeIfPresent(Bool.self, forKey: .simulated) ?? false
        guard simulated == (trustAnchor == SimulatedIntel.rootName) else {
            throw DecodingError.dataCorruptedError(
                forKey: .simulated, in: container,
                debugDescription: "simulated is true exactly when the trust anchor is \(SimulatedIntel.rootName)")
        }
        let rtmrs = try container.decode([HexBytes].self, forKey: .rtmrs).map(\.bytes)
        guard rtmrs.count == Layout.rtmrCount, rtmrs.allSatisfy({ $0.count == Layout.measurementSize }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .rtmrs, in: container, debugDescription: "rtmrs must be four 48-byte registers")
        }
        let tdAttributes = try container.decode(UInt64.self, forKey: .tdAttributes)
        var body = try bytes(.teeTCBSVN, Layout.teeTCBSVNSize)
        body += try bytes(.mrSeam, Layout.measurementSize)
        body += try bytes(.mrSignerSeam, Layout.measurementSize)
        body += [UInt8](repeating: 0, count: Layout.attributesSize)
        body += littleEndian(tdAttributes)
        body += littleEndian(try container.decode(UInt64.self, forKey: .xfam))
        body += try bytes(.mrTD, Layout.measurementSize)
        body += try bytes(.mrConfigID, Layout.measurementSize)
        body += try bytes(.mrOwner, Layout.measurementSize)
        body += try bytes(.mrOwnerConfig, Layout.measurementSize)
        body += rtmrs.joined()
        body += try bytes(.reportData, Layout.reportDataSize)
        var type = TDXQuote.BodyType.td10
        if container.contains(.teeTCBSVN2) || container.contains(.mrServiceTD) {
            type = .td15
            body += try bytes(.teeTCBSVN2, Layout.teeTCBSVNSize)
            body += try bytes(.mrServiceTD, Layout.measurementSize)
        }
        report = try TDXQuote.TDReport(bytes: body, type: type)
        guard try container.decode(Bool.self, forKey: .debug) == report.isDebug,
            try container.decode([String].self, forKey: .tdAttributeFlags) == report.tdAttributeFlags
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .tdAttributes, in: container,
                debugDescription: "debug and tdAttributeFlags contradict tdAttributes")
        }
    }
}
