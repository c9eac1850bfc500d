public import BinaryFormat
import Foundation

/// An Intel TDX DCAP quote, versions 4 and 5 (Intel SGX/TDX DCAP `sgx_quote_4.h`, `sgx_quote_5.h`; TDX.md §1–3):
/// header, TD report body (TDX 1.0, or 1.5 with TEE_TCB_SVN2 and MRSERVICETD), and the ECDSA signature data with
/// its QE report certification data and PCK certificate chain.
///
/// Parsing rejects what a verifier could not vouch for: versions other than 4 and 5, attestation keys other than
/// ECDSA P-256, TEE types other than TDX, a non-zero reserved header field, a v5 body that is not a TD report or
/// whose size does not match its type, certification data other than type 6 wrapping type 5, sizes that do not
/// add up, and bytes left over inside the signature data. Bytes after the signature data are outside every
/// signature and outside every length the quote declares: real quotes carry them (zero padding from the quote
/// buffer; one vector appends text), so they are tolerated, as Intel's current QVL does, and reported in
/// ``trailingBytes`` and ``trailingBytesAreZero`` so a caller can see them.
public struct TDXQuote: Sendable, Hashable {
    public enum Layout {
        public static let headerSize = 0x30
        public static let version = 0x00, attestationKeyType = 0x02, teeType = 0x04, reserved = 0x08
        public static let qeVendorID = 0x0C, qeVendorIDSize = 16, userData = 0x1C, userDataSize = 20
        /// v5: u16 body type and u32 body size precede the body.
        public static let v5BodyDescriptorSize = 6
        public static let td10BodySize = 584
        public static let td15BodySize = 648
        public static let ecdsaSignatureSize = 64
        public static let attestationKeySize = 64
        public static let qeReportSize = 384
    }

    public static let ecdsaP256KeyType: UInt16 = 2
    public static let tdxTEEType: UInt32 = 0x81
    /// Intel's QE vendor ID.
    public static let intelQEVendorID: [UInt8] = Hex.decode("939a7233f79c4ca9940a0db3957f0607")!

    /// The body kinds (v5 body type field).
    public enum BodyType: UInt16, Sendable, Hashable, Codable {
        case td10 = 2
        case td15 = 3
    }

    /// TD report body (TDX 1.0 and 1.5), field by field (TDX.md §2, `td_report_body`). The report is kept as a
    /// slice of the quote — no copy — and each byte-string field is cut from it when read.
    public struct TDReport: Sendable, Hashable {
        /// Offsets and sizes inside the report body.
        public enum Layout {
            public static let teeTCBSVN = 0, teeTCBSVNSize = 16
            public static let mrSeam = 16, mrSignerSeam = 64, measurementSize = 48
            public static let seamAttributes = 112, tdAttributes = 120, xfam = 128, attributesSize = 8
            public static let mrTD = 136, mrConfigID = 184, mrOwner = 232, mrOwnerConfig = 280
            public static let rtmr0 = 328, rtmrCount = 4
            public static let reportData = 520, reportDataSize = 64
            /// TDX 1.5 only.
            public static let teeTCBSVN2 = 584, mrServiceTD = 600
        }

        /// The report's bytes, exactly as signed: a slice sharing the quote's storage (indices are quote offsets).
        public let bytes: ArraySlice<UInt8>
        /// TDX 1.0 or 1.5: whether TEE_TCB_SVN2 and MRSERVICETD follow REPORTDATA.
        public let type: BodyType

        public var teeTCBSVN: [UInt8] { field(Layout.teeTCBSVN, Layout.teeTCBSVNSize) }
        public var mrSeam: [UInt8] { field(Layout.mrSeam, Layout.measurementSize) }
        public var mrSignerSeam: [UInt8] { field(Layout.mrSignerSeam, Layout.measurementSize) }
        public var seamAttributes: [UInt8] { field(Layout.seamAttributes, Layout.attributesSize) }
        public var tdAttributes: [UInt8] { field(Layout.tdAttributes, Layout.attributesSize) }
        public var xfam: [UInt8] { field(Layout.xfam, Layout.attributesSize) }
        public var mrTD: [UInt8] { field(Layout.mrTD, Layout.measurementSize) }
        public var mrConfigID: [UInt8] { field(Layout.mrConfigID, Layout.measurementSize) }
        public var mrOwner: [UInt8] { field(Layout.mrOwner, Layout.measurementSize) }
        public var mrOwnerConfig: [UInt8] { field(Layout.mrOwnerConfig, Layout.measurementSize) }
        public var rtmrs: [[UInt8]] {
            (0..<Layout.rtmrCount).map { field(Layout.rtmr0 + $0 * Layout.measurementSize, Layout.measurementSize) }
        }
        public var reportData: [UInt8] { field(Layout.reportData, Layout.reportDataSize) }
        /// TDX 1.5 only.
        public var teeTCBSVN2: [UInt8]? { type == .td15 ? field(Layout.teeTCBSVN2, Layout.teeTCBSVNSize) : nil }
        public var mrServiceTD: [UInt8]? { type == .td15 ? field(Layout.mrServiceTD, Layout.measurementSize) : nil }

        /// TDATTRIBUTES as a little-endian u64.
        public var tdAttributesValue: UInt64 { littleEndianValue(Layout.tdAttributes) }
        /// XFAM as a little-endian u64.
        public var xfamValue: UInt64 { littleEndianValue(Layout.xfam) }
        /// TDATTRIBUTES.DEBUG (bit 0): the host can read and change the TD's state. Always surfaced.
        public var isDebug: Bool { tdAttributesValue & 1 != 0 }

        /// Names of the set TD attribute bits (Linux `TDX_ATTR_*`); unnamed set bits appear as `BIT<n>`.
        public var tdAttributeFlags: [String] {
            var remaining = tdAttributesValue
            var flags: [String] = []
            while remaining != 0 {
                let bit = remaining.trailingZeroBitCount
                remaining &= remaining - 1
                flags.append(Self.attributeNames.first { $0.bit == bit }?.name ?? "BIT\(bit)")
            }
            return flags
        }

        /// `count` bytes of the report at `offset` (relative to the report), without a copy.
        public func slice(_ offset: Int, _ count: Int) -> ArraySlice<UInt8> {
            let start = bytes.startIndex + offset
            return bytes[start..<(start + count)]
        }

        private func field(_ offset: Int, _ count: Int) -> [UInt8] { Array(slice(offset, count)) }

        private func littleEndianValue(_ offset: Int) -> UInt64 {
            var value: UInt64 = 0
            for (index, byte) in slice(offset, 8).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
            return value
        }

        /// The TD attribute bits Linux names (`TDX_ATTR_*`), in bit order.
        static let attributeNames: [(bit: Int, name: String)] = [
            (0, "DEBUG"), (4, "HGS_PLUS_PROF"), (5, "PERF_PROF"), (6, "PMT_PROF"), (16, "ICSSD"), (27, "LASS"),
            (28, "SEPT_VE_DISABLE"), (29, "MIGRATABLE"), (30, "PKS"), (31, "KL"), (62, "TPA"), (63, "PERFMON"),
        ]

        /// The fields in order, named as errors name them.
        static let fields: [(name: String, size: Int)] = [
            ("TEE_TCB_SVN", 16), ("MRSEAM", 48), ("MRSIGNERSEAM", 48), ("SEAMATTRIBUTES", 8), ("TDATTRIBUTES", 8),
            ("XFAM", 8), ("MRTD", 48), ("MRCONFIGID", 48), ("MROWNER", 48), ("MROWNERCONFIG", 48), ("RTMR0", 48),
            ("RTMR1", 48), ("RTMR2", 48), ("RTMR3", 48), ("REPORTDATA", 64), ("TEE_TCB_SVN2", 16), ("MRSERVICETD", 48),
        ]

        /// A report from its bytes alone (as a claims document carries it back); throws unless `bytes` has the size
        /// of a `type` report.
        public init(bytes: [UInt8], type: BodyType) throws(BinaryFormatError) {
            var c = ByteCursor(bytes)
            try self.init(&c, type: type)
            try c.expectEnd(field: "TD report")
        }

        init(_ c: inout ByteCursor, type: BodyType) throws(BinaryFormatError) {
            let start = c.offset
            for field in Self.fields.prefix(type == .td15 ? Self.fields.count : Self.fields.count - 2) {
                try c.skip(field.size, field: field.name)
            }
            bytes = c.bytes[start..<c.offset]
            self.type = type
        }
    }

    /// The TD Quoting Enclave's SGX report body (SGX REPORT, 384 bytes) as the QE report certification data carries it.
    /// The report is kept as a slice of the quote, the exact bytes the PCK key signs; its fields are read from it.
    public struct QEReport: Sendable, Hashable {
        /// Offsets and sizes inside the 384-byte report (SGX `sgx_report_body_t`).
        public enum Layout {
            public static let cpuSVN = 0, cpuSVNSize = 16
            public static let miscSelect = 16
            public static let attributes = 48, attributesSize = 16
            public static let mrEnclave = 64, mrEnclaveSize = 32
            public static let mrSigner = 128, mrSignerSize = 32
            public static let isvProdID = 256, isvSVN = 258
            public static let reportData = 320, reportDataSize = 64
        }

        /// The whole report, exactly as signed: a slice sharing the quote's storage (indices are quote offsets).
        public let signedBytes: ArraySlice<UInt8>
        public let miscSelect: UInt32
        public let isvProdID: UInt16
        public let isvSVN: UInt16

        /// The whole report as a new array.
        public var bytes: [UInt8] { Array(signedBytes) }
        public var cpuSVN: [UInt8] { field(Layout.cpuSVN, Layout.cpuSVNSize) }
        public var attributes: [UInt8] { field(Layout.attributes, Layout.attributesSize) }
        public var mrEnclave: [UInt8] { field(Layout.mrEnclave, Layout.mrEnclaveSize) }
        public var mrSigner: [UInt8] { field(Layout.mrSigner, Layout.mrSignerSize) }
        public var reportData: [UInt8] { field(Layout.reportData, Layout.reportDataSize) }

        /// `count` bytes of the report at `offset` (relative to the report), without a copy.
        public func slice(_ offset: Int, _ count: Int) -> ArraySlice<UInt8> {
            let start = signedBytes.startIndex + offset
            return signedBytes[start..<(start + count)]
        }

        private func field(_ offset: Int, _ count: Int) -> [UInt8] { Array(slice(offset, count)) }

        init(_ c: inout ByteCursor) throws(BinaryFormatError) {
            var r = try c.readCursor(TDXQuote.Layout.qeReportSize, field: "QE report")
            signedBytes = r.bytes[r.offset..<(r.offset + TDXQuote.Layout.qeReportSize)]
            try r.skip(Layout.cpuSVNSize, field: "QE report CPUSVN")
            miscSelect = try r.readLittleEndian(field: "QE report MISCSELECT")
            try r.skip(Layout.isvProdID - Layout.miscSelect - 4, field: "QE report ATTRIBUTES to CONFIGID")
            isvProdID = try r.readLittleEndian(field: "QE report ISVPRODID")
            isvSVN = try r.readLittleEndian(field: "QE report ISVSVN")
            try r.skip(TDXQuote.Layout.qeReportSize - Layout.isvSVN - 2, field: "QE report CONFIGSVN to REPORTDATA")
        }
    }

    /// The whole quote as received.
    public let bytes: [UInt8]
    public let version: UInt16
    public let attestationKeyType: UInt16
    public let teeType: UInt32
    public let bodyType: BodyType
    public let body: TDReport
    /// The length of the signed region [0, signedLength): header ‖ (v5 body descriptor) ‖ body.
    public let signedLength: Int
    public let qeReport: QEReport
    /// How many bytes follow the signature data (outside every signature).
    public let trailingBytes: Int
    /// Whether those bytes are all zero (buffer padding) rather than content.
    public let trailingBytesAreZero: Bool
    /// Where the variable-length parts lie in ``bytes``: the signature data starts with the quote signature.
    let signatureOffset: Int
    let qeReportSignatureOffset: Int
    let qeAuthDataRange: Range<Int>
    /// The PEM text of the PCK chain, its trailing NUL excluded.
    let pckChainRange: Range<Int>

    public var qeVendorID: [UInt8] { Array(qeVendorIDBytes) }
    public var userData: [UInt8] { Array(bytes[Layout.userData..<(Layout.userData + Layout.userDataSize)]) }
    /// The quote signature, raw r ‖ s (P-256, big-endian).
    public var signature: [UInt8] { Array(signatureBytes) }
    /// The attestation public key, raw x ‖ y.
    public var attestationKey: [UInt8] { Array(attestationKeyBytes) }
    /// The QE report signature by the PCK key, raw r ‖ s.
    public var qeReportSignature: [UInt8] { Array(qeReportSignatureBytes) }
    public var qeAuthData: [UInt8] { Array(qeAuthDataBytes) }
    /// The PCK certificate chain (leaf, intermediate, root) as PEM text, its trailing NUL removed.
    public var pckCertificateChainPEM: String { String(decoding: pckCertificateChainBytes, as: UTF8.self) }

    /// The signed bytes of the quote.
    public var signedBytes: ArraySlice<UInt8> { bytes[0..<signedLength] }
    /// ``qeVendorID`` without a copy.
    public var qeVendorIDBytes: ArraySlice<UInt8> {
        bytes[Layout.qeVendorID..<(Layout.qeVendorID + Layout.qeVendorIDSize)]
    }
    /// ``signature`` without a copy.
    public var signatureBytes: ArraySlice<UInt8> {
        bytes[signatureOffset..<(signatureOffset + Layout.ecdsaSignatureSize)]
    }
    /// ``attestationKey`` without a copy.
    public var attestationKeyBytes: ArraySlice<UInt8> {
        let start = signatureOffset + Layout.ecdsaSignatureSize
        return bytes[start..<(start + Layout.attestationKeySize)]
    }
    /// ``qeReportSignature`` without a copy.
    public var qeReportSignatureBytes: ArraySlice<UInt8> {
        bytes[qeReportSignatureOffset..<(qeReportSignatureOffset + Layout.ecdsaSignatureSize)]
    }
    /// ``qeAuthData`` without a copy.
    public var qeAuthDataBytes: ArraySlice<UInt8> { bytes[qeAuthDataRange] }
    /// The UTF-8 of ``pckCertificateChainPEM`` without a copy: what PCK chain caches are keyed on.
    public var pckCertificateChainBytes: ArraySlice<UInt8> { bytes[pckChainRange] }

    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        var c = ByteCursor(bytes)
        version = try c.readLittleEndian(field: "version")
        guard version == 4 || version == 5 else {
            throw BinaryFormatError(
                .unsupported, field: "version", offset: Layout.version, "quote version \(version) is not 4 or 5")
        }
        attestationKeyType = try c.readLittleEndian(field: "attestation key type")
        guard attestationKeyType == Self.ecdsaP256KeyType else {
            throw BinaryFormatError(
                .unsupported, field: "attestation key type", offset: Layout.attestationKeyType,
                "attestation key type \(attestationKeyType) is not ECDSA P-256 (2)")
        }
        teeType = try c.readLittleEndian(field: "TEE type")
        guard teeType == Self.tdxTEEType else {
            throw BinaryFormatError(
                .unsupported, field: "TEE type", offset: Layout.teeType,
                "TEE type 0x\(String(teeType, radix: 16)) is not TDX (0x81)")
        }
        try c.readReserved(4, field: "header reserved")
        try c.skip(Layout.qeVendorIDSize, field: "QE vendor ID")
        try c.skip(Layout.userDataSize, field: "user data")
        if version == 5 {
            let typeOffset = c.offset
            let rawType: UInt16 = try c.readLittleEndian(field: "body type")
            guard let type = BodyType(rawValue: rawType) else {
                throw BinaryFormatError(
                    .unsupported, field: "body type", offset: typeOffset,
                    "body type \(rawType) is not a TD report (2 = TDX 1.0, 3 = TDX 1.5)")
            }
            let size: UInt32 = try c.readLittleEndian(field: "body size")
            let expected = type == .td10 ? Layout.td10BodySize : Layout.td15BodySize
            guard size == expected else {
                throw BinaryFormatError(
                    .invalidValue, field: "body size", offset: typeOffset + 2,
                    "a type \(rawType) body is \(expected) bytes, not \(size)")
            }
            bodyType = type
        } else {
            bodyType = .td10
        }
        body = try TDReport(&c, type: bodyType)
        signedLength = c.offset
        let signatureLength = Int(try c.readLittleEndian(UInt32.self, field: "signature data length"))
        var s = try c.readCursor(signatureLength, field: "signature data")
        signatureOffset = s.offset
        try s.skip(Layout.ecdsaSignatureSize, field: "quote signature")
        try s.skip(Layout.attestationKeySize, field: "attestation key")
        let certificationTypeOffset = s.offset
        let certificationType: UInt16 = try s.readLittleEndian(field: "certification data type")
        guard certificationType == 6 else {
            throw BinaryFormatError(
                .unsupported, field: "certification data type", offset: certificationTypeOffset,
                "certification data type \(certificationType) is not 6 (QE report certification data)")
        }
        let certificationSize = Int(try s.readLittleEndian(UInt32.self, field: "certification data size"))
        var q = try s.readCursor(certificationSize, field: "QE report certification data")
        try s.expectEnd(field: "signature data")
        qeReport = try QEReport(&q)
        qeReportSignatureOffset = q.offset
        try q.skip(Layout.ecdsaSignatureSize, field: "QE report signature")
        let authSize = Int(try q.readLittleEndian(UInt16.self, field: "QE auth data size"))
        let authStart = q.offset
        try q.skip(authSize, field: "QE auth data")
        qeAuthDataRange = authStart..<(authStart + authSize)
        let innerTypeOffset = q.offset
        let innerType: UInt16 = try q.readLittleEndian(field: "PCK certification data type")
        guard innerType == 5 else {
            throw BinaryFormatError(
                .unsupported, field: "PCK certification data type", offset: innerTypeOffset,
                "inner certification data type \(innerType) is not 5 (PCK certificate chain)")
        }
        let chainSize = Int(try q.readLittleEndian(UInt32.self, field: "PCK certificate chain size"))
        let chainStart = q.offset
        try q.skip(chainSize, field: "PCK certificate chain")
        try q.expectEnd(field: "QE report certification data")
        var chainEnd = chainStart + chainSize
        if chainEnd > chainStart, bytes[chainEnd - 1] == 0 { chainEnd -= 1 }
        guard Self.isText(bytes[chainStart..<chainEnd]) else {
            throw BinaryFormatError(
                .invalidValue, field: "PCK certificate chain", offset: innerTypeOffset + 6,
                "the PCK chain is not PEM text")
        }
        pckChainRange = chainStart..<chainEnd
        trailingBytes = c.remaining
        trailingBytesAreZero = Self.isZero(bytes[c.offset..<c.endOffset])
        try c.skip(trailingBytes, field: "trailing bytes")
        self.bytes = bytes
    }

    /// Whether `bytes` are UTF-8 text without a NUL. PEM is ASCII: the bytes are OR-ed eight at a time (a loop
    /// the compiler vectorises) to see that no high bit is set, and searched for a NUL with `memchr`; anything
    /// else goes through the full UTF-8 validation.
    static func isText(_ bytes: ArraySlice<UInt8>) -> Bool {
        let ascii = bytes.withUnsafeBytes { raw -> Bool in
            guard let base = raw.baseAddress else { return true }
            var bits: UInt64 = 0
            let words = raw.count / 8
            for index in 0..<words { bits |= raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) }
            for byte in raw[(words * 8)...] { bits |= UInt64(byte) }
            return bits & 0x8080_8080_8080_8080 == 0 && memchr(base, 0, raw.count) == nil
        }
        if ascii { return true }
        return !bytes.contains(0) && String(validating: bytes, as: UTF8.self) != nil
    }

    /// Whether every byte is zero, eight at a time.
    static func isZero(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { raw in
            var index = 0
            var bits: UInt64 = 0
            while index + 8 <= raw.count {
                bits |= raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                index += 8
            }
            for byte in raw[index...] { bits |= UInt64(byte) }
            return bits == 0
        }
    }
}
