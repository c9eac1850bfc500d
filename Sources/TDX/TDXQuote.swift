public import BinaryFormat

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

    /// TD report body (TDX 1.0 and 1.5), field by field.
    public struct TDReport: Sendable, Hashable {
        public let teeTCBSVN: [UInt8]
        public let mrSeam: [UInt8]
        public let mrSignerSeam: [UInt8]
        public let seamAttributes: [UInt8]
        public let tdAttributes: [UInt8]
        public let xfam: [UInt8]
        public let mrTD: [UInt8]
        public let mrConfigID: [UInt8]
        public let mrOwner: [UInt8]
        public let mrOwnerConfig: [UInt8]
        public let rtmrs: [[UInt8]]
        public let reportData: [UInt8]
        /// TDX 1.5 only.
        public let teeTCBSVN2: [UInt8]?
        public let mrServiceTD: [UInt8]?

        /// TDATTRIBUTES as a little-endian u64.
        public var tdAttributesValue: UInt64 { tdAttributes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
        /// XFAM as a little-endian u64.
        public var xfamValue: UInt64 { xfam.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
        /// TDATTRIBUTES.DEBUG (bit 0): the host can read and change the TD's state. Always surfaced.
        public var isDebug: Bool { tdAttributesValue & 1 != 0 }

        /// Names of the set TD attribute bits (Linux `TDX_ATTR_*`); unnamed set bits appear as `BIT<n>`.
        public var tdAttributeFlags: [String] {
            let names: [Int: String] = [
                0: "DEBUG", 4: "HGS_PLUS_PROF", 5: "PERF_PROF", 6: "PMT_PROF", 16: "ICSSD", 27: "LASS",
                28: "SEPT_VE_DISABLE", 29: "MIGRATABLE", 30: "PKS", 31: "KL", 62: "TPA", 63: "PERFMON",
            ]
            return (0..<64).filter { tdAttributesValue & (1 << UInt64($0)) != 0 }.map { names[$0] ?? "BIT\($0)" }
        }

        init(_ c: inout ByteCursor, type: BodyType) throws(BinaryFormatError) {
            teeTCBSVN = try c.readBytes(16, field: "TEE_TCB_SVN")
            mrSeam = try c.readBytes(48, field: "MRSEAM")
            mrSignerSeam = try c.readBytes(48, field: "MRSIGNERSEAM")
            seamAttributes = try c.readBytes(8, field: "SEAMATTRIBUTES")
            tdAttributes = try c.readBytes(8, field: "TDATTRIBUTES")
            xfam = try c.readBytes(8, field: "XFAM")
            mrTD = try c.readBytes(48, field: "MRTD")
            mrConfigID = try c.readBytes(48, field: "MRCONFIGID")
            mrOwner = try c.readBytes(48, field: "MROWNER")
            mrOwnerConfig = try c.readBytes(48, field: "MROWNERCONFIG")
            var rtmrs: [[UInt8]] = []
            for index in 0..<4 { rtmrs.append(try c.readBytes(48, field: "RTMR\(index)")) }
            self.rtmrs = rtmrs
            reportData = try c.readBytes(64, field: "REPORTDATA")
            if type == .td15 {
                teeTCBSVN2 = try c.readBytes(16, field: "TEE_TCB_SVN2")
                mrServiceTD = try c.readBytes(48, field: "MRSERVICETD")
            } else {
                teeTCBSVN2 = nil
                mrServiceTD = nil
            }
        }
    }

    /// The TD Quoting Enclave's SGX report body (SGX REPORT, 384 bytes) as the QE report certification data carries it.
    public struct QEReport: Sendable, Hashable {
        public let bytes: [UInt8]
        public let cpuSVN: [UInt8]
        public let miscSelect: UInt32
        public let attributes: [UInt8]
        public let mrEnclave: [UInt8]
        public let mrSigner: [UInt8]
        public let isvProdID: UInt16
        public let isvSVN: UInt16
        public let reportData: [UInt8]

        init(_ c: inout ByteCursor) throws(BinaryFormatError) {
            var r = try c.readCursor(Layout.qeReportSize, field: "QE report")
            bytes = Array(r.bytes[r.offset..<(r.offset + Layout.qeReportSize)])
            cpuSVN = try r.readBytes(16, field: "QE report CPUSVN")
            miscSelect = try r.readLittleEndian(field: "QE report MISCSELECT")
            try r.skip(28, field: "QE report RESERVED1 and ISVEXTPRODID")
            attributes = try r.readBytes(16, field: "QE report ATTRIBUTES")
            mrEnclave = try r.readBytes(32, field: "QE report MRENCLAVE")
            try r.skip(32, field: "QE report RESERVED2")
            mrSigner = try r.readBytes(32, field: "QE report MRSIGNER")
            try r.skip(96, field: "QE report RESERVED3 and CONFIGID")
            isvProdID = try r.readLittleEndian(field: "QE report ISVPRODID")
            isvSVN = try r.readLittleEndian(field: "QE report ISVSVN")
            try r.skip(60, field: "QE report CONFIGSVN, RESERVED4 and ISVFAMILYID")
            reportData = try r.readBytes(64, field: "QE report REPORTDATA")
        }
    }

    /// The whole quote as received.
    public let bytes: [UInt8]
    public let version: UInt16
    public let attestationKeyType: UInt16
    public let teeType: UInt32
    public let qeVendorID: [UInt8]
    public let userData: [UInt8]
    public let bodyType: BodyType
    public let body: TDReport
    /// The length of the signed region [0, signedLength): header ‖ (v5 body descriptor) ‖ body.
    public let signedLength: Int
    /// The quote signature, raw r ‖ s (P-256, big-endian).
    public let signature: [UInt8]
    /// The attestation public key, raw x ‖ y.
    public let attestationKey: [UInt8]
    public let qeReport: QEReport
    /// The QE report signature by the PCK key, raw r ‖ s.
    public let qeReportSignature: [UInt8]
    public let qeAuthData: [UInt8]
    /// The PCK certificate chain (leaf, intermediate, root) as PEM text, its trailing NUL removed.
    public let pckCertificateChainPEM: String
    /// How many bytes follow the signature data (outside every signature).
    public let trailingBytes: Int
    /// Whether those bytes are all zero (buffer padding) rather than content.
    public let trailingBytesAreZero: Bool

    /// The signed bytes of the quote.
    public var signedBytes: ArraySlice<UInt8> { bytes[0..<signedLength] }

    public init(bytes: [UInt8]) throws(BinaryFormatError) {
        var c = ByteCursor(bytes)
        version = try c.readLittleEndian(field: "version")
        guard version == 4 || version == 5 else {
            throw BinaryFormatError(.unsupported, field: "version", offset: Layout.version, "quote version \(version) is not 4 or 5")
        }
        attestationKeyType = try c.readLittleEndian(field: "attestation key type")
        guard attestationKeyType == Self.ecdsaP256KeyType else {
            throw BinaryFormatError(
                .unsupported, field: "attestation key type", offset: Layout.attestationKeyType,
                "attestation key type \(attestationKeyType) is not ECDSA P-256 (2)")
        }
        teeType = try c.readLittleEndian(field: "TEE type")
        guard teeType == Self.tdxTEEType else {
            throw BinaryFormatError(.unsupported, field: "TEE type", offset: Layout.teeType, "TEE type 0x\(String(teeType, radix: 16)) is not TDX (0x81)")
        }
        try c.readReserved(4, field: "header reserved")
        qeVendorID = try c.readBytes(Layout.qeVendorIDSize, field: "QE vendor ID")
        userData = try c.readBytes(Layout.userDataSize, field: "user data")
        if version == 5 {
            let typeOffset = c.offset
            let rawType: UInt16 = try c.readLittleEndian(field: "body type")
            guard let type = BodyType(rawValue: rawType) else {
                throw BinaryFormatError(
                    .unsupported, field: "body type", offset: typeOffset, "body type \(rawType) is not a TD report (2 = TDX 1.0, 3 = TDX 1.5)")
            }
            let size: UInt32 = try c.readLittleEndian(field: "body size")
            let expected = type == .td10 ? Layout.td10BodySize : Layout.td15BodySize
            guard size == expected else {
                throw BinaryFormatError(.invalidValue, field: "body size", offset: typeOffset + 2, "a type \(rawType) body is \(expected) bytes, not \(size)")
            }
            bodyType = type
        } else {
            bodyType = .td10
        }
        body = try TDReport(&c, type: bodyType)
        signedLength = c.offset
        let signatureLength = Int(try c.readLittleEndian(UInt32.self, field: "signature data length"))
        var s = try c.readCursor(signatureLength, field: "signature data")
        signature = try s.readBytes(Layout.ecdsaSignatureSize, field: "quote signature")
        attestationKey = try s.readBytes(Layout.attestationKeySize, field: "attestation key")
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
        qeReportSignature = try q.readBytes(Layout.ecdsaSignatureSize, field: "QE report signature")
        let authSize = Int(try q.readLittleEndian(UInt16.self, field: "QE auth data size"))
        qeAuthData = try q.readBytes(authSize, field: "QE auth data")
        let innerTypeOffset = q.offset
        let innerType: UInt16 = try q.readLittleEndian(field: "PCK certification data type")
        guard innerType == 5 else {
            throw BinaryFormatError(
                .unsupported, field: "PCK certification data type", offset: innerTypeOffset,
                "inner certification data type \(innerType) is not 5 (PCK certificate chain)")
        }
        let chainSize = Int(try q.readLittleEndian(UInt32.self, field: "PCK certificate chain size"))
        var chain = try q.readBytes(chainSize, field: "PCK certificate chain")
        try q.expectEnd(field: "QE report certification data")
        if chain.last == 0 { chain.removeLast() }
        guard !chain.contains(0), let text = String(validating: chain, as: UTF8.self) else {
            throw BinaryFormatError(.invalidValue, field: "PCK certificate chain", offset: innerTypeOffset + 6, "the PCK chain is not PEM text")
        }
        pckCertificateChainPEM = text
        let trailing = try c.readBytes(c.remaining, field: "trailing bytes")
        trailingBytes = trailing.count
        trailingBytesAreZero = trailing.allSatisfy { $0 == 0 }
        self.bytes = bytes
    }
}
