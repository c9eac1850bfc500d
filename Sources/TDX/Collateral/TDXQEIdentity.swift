public import Crypto
public import Foundation

/// Intel TD Quoting Enclave Identity, version 2 (Intel PCS API v4 `GET /tdx/certification/v4/qe/identity`;
/// TDX.md §5 "Collateral" and §6 step .4.15; QVL `EnclaveIdentityV2.cpp`, `EnclaveReportVerifier.cpp`): what the
/// TD Quoting Enclave that signs quotes must look like, and the status of each of its ISVSVNs.
///
/// The PCS body is `{"enclaveIdentity":{…},"signature":"<128 hex digits: r ‖ s>"}`; the `enclaveIdentity` value
/// is kept byte for byte in ``signedBytes`` and the typed fields are decoded from those same bytes. Parsing
/// rejects an id other than "TD_QE", a version other than 2, hex of the wrong length, unknown statuses, an empty
/// level list and anything after the outer object.
public struct TDXQEIdentity: Sendable, Hashable {
    /// The constants of the format.
    public enum Format {
        /// The key of the signed body in the PCS document.
        public static let bodyKey = "enclaveIdentity"
        public static let id = "TD_QE"
        public static let version = 2
        public static let miscselectSize = 4
        public static let attributesSize = 16
        public static let mrsignerSize = 32
        public static let signatureSize = 64
    }

    /// One level: a QE whose ISVSVN reaches ``isvsvn`` has ``tcbStatus``.
    public struct TCBLevel: Sendable, Hashable {
        public let isvsvn: UInt16
        public let tcbDate: Date
        public let tcbStatus: TDXTCBLevelStatus
        /// Intel security advisories listed for the level (PCS may omit them).
        public let advisoryIDs: [String]
    }

    public let id: String
    public let version: Int
    public let issueDate: Date
    public let nextUpdate: Date
    public let tcbEvaluationDataNumber: UInt32
    /// Expected MISCSELECT under ``miscselectMask``, as 4 bytes in report order.
    public let miscselect: [UInt8]
    public let miscselectMask: [UInt8]
    /// Expected ATTRIBUTES under ``attributesMask`` (16 bytes in report order).
    public let attributes: [UInt8]
    public let attributesMask: [UInt8]
    /// The QE signer's MRSIGNER (32 bytes).
    public let mrsigner: [UInt8]
    public let isvprodid: UInt16
    /// The levels as listed (Intel lists them newest first); see ``tcbLevelsDescending``.
    public let tcbLevels: [TCBLevel]

    /// The exact bytes of the `enclaveIdentity` value as received: what the signature covers.
    public let signedBytes: [UInt8]
    /// The raw ECDSA P-256 signature r ‖ s (64 bytes) by the Intel SGX TCB Signing key.
    public let signature: [UInt8]

    /// The levels in evaluation order: descending ISVSVN (stable for equal values), sorted once when read.
    public let tcbLevelsDescending: [TCBLevel]

    /// Parses a PCS QE Identity document (the HTTP response body, or the same bytes from a cache).
    public init(json: [UInt8]) throws(TDXCollateralError) {
        let envelope = try SignedCollateralEnvelope(json: json, bodyKey: Format.bodyKey)
        let root = Format.bodyKey
        let header = try CollateralText.decode(Header.self, from: envelope.bodyBytes, root: root)
        guard header.version == Format.version else {
            throw TDXCollateralError(
                .unsupported, field: "\(root).version",
                "QE Identity version \(header.version) is not version 2 (version 1 cannot describe the TD QE)")
        }
        guard header.id == Format.id else {
            throw TDXCollateralError(
                .unsupported, field: "\(root).id",
                "enclave identity \"\(header.id)\" is not \"TD_QE\", the quoting enclave of TDX quotes")
        }
        let wire = try CollateralText.decode(Wire.self, from: envelope.bodyBytes, root: root)
        id = wire.id
        version = wire.version
        issueDate = try CollateralText.date(wire.issueDate, field: "\(root).issueDate")
        nextUpdate = try CollateralText.date(wire.nextUpdate, field: "\(root).nextUpdate")
        tcbEvaluationDataNumber = try CollateralText.unsigned(
            wire.tcbEvaluationDataNumber, field: "\(root).tcbEvaluationDataNumber")
        miscselect = try CollateralText.hex(wire.miscselect, bytes: Format.miscselectSize, field: "\(root).miscselect")
        miscselectMask = try CollateralText.hex(
            wire.miscselectMask, bytes: Format.miscselectSize, field: "\(root).miscselectMask")
        attributes = try CollateralText.hex(wire.attributes, bytes: Format.attributesSize, field: "\(root).attributes")
        attributesMask = try CollateralText.hex(
            wire.attributesMask, bytes: Format.attributesSize, field: "\(root).attributesMask")
        mrsigner = try CollateralText.hex(wire.mrsigner, bytes: Format.mrsignerSize, field: "\(root).mrsigner")
        isvprodid = try CollateralText.unsigned(wire.isvprodid, field: "\(root).isvprodid")
        guard !wire.tcbLevels.isEmpty else {
            throw TDXCollateralError(.invalidValue, field: "\(root).tcbLevels", "the QE Identity lists no TCB levels")
        }
        var levels: [TCBLevel] = []
        for (index, level) in wire.tcbLevels.enumerated() {
            let path = "\(root).tcbLevels[\(index)]"
            levels.append(
                TCBLevel(
                    isvsvn: try CollateralText.unsigned(level.tcb.isvsvn, field: "\(path).tcb.isvsvn"),
                    tcbDate: try CollateralText.date(level.tcbDate, field: "\(path).tcbDate"),
                    tcbStatus: try CollateralText.status(level.tcbStatus, field: "\(path).tcbStatus"),
                    advisoryIDs: try CollateralText.advisoryIDs(level.advisoryIDs, field: "\(path).advisoryIDs")))
        }
        tcbLevels = levels
        tcbLevelsDescending = levels.enumerated()
            .sorted { ($0.element.isvsvn, -$0.offset) > ($1.element.isvsvn, -$1.offset) }.map(\.element)
        signedBytes = envelope.bodyBytes
        signature = try CollateralText.signature(envelope.signatureText)
    }

    /// Whether ``signature`` is a valid ECDSA P-256 / SHA-256 signature over ``signedBytes`` by `publicKey`
    /// (the Intel SGX TCB Signing certificate's key; checking that certificate's chain is the caller's job).
    public func isSignatureValid(publicKey: P256.Signing.PublicKey) -> Bool {
        CollateralText.isValidSignature(signature, over: signedBytes, publicKey: publicKey)
    }

    /// Whether the QE Identity may be used at `time` (TDX.md §6 C: T ≤ nextUpdate; also issueDate ≤ T).
    public func checkValidity(at time: Date) -> TDXCollateralValidity {
        .check(at: time, issueDate: issueDate, nextUpdate: nextUpdate)
    }

    /// Matches the QE report of a quote against this identity (TDX.md §6 step .4.15; QVL
    /// `EnclaveReportVerifier::verify`), in QVL's order: MISCSELECT under its mask, ATTRIBUTES under its mask
    /// (byte-wise), MRSIGNER, ISVPRODID, then the QE's TCB level — the first level in descending ISVSVN order whose
    /// ISVSVN is at most the QE's.
    ///
    /// - Parameters:
    ///   - miscselect: the QE report's MISCSELECT, 4 bytes as they appear in the report (bytes 16..<20).
    ///   - attributes: the QE report's ATTRIBUTES, 16 bytes (bytes 48..<64).
    ///   - mrsigner: the QE report's MRSIGNER, 32 bytes (bytes 128..<160).
    ///   - isvprodid: ISVPRODID (bytes 256..<258, little-endian).
    ///   - isvsvn: ISVSVN (bytes 258..<260, little-endian).
    public func match(
        miscselect: [UInt8], attributes: [UInt8], mrsigner: [UInt8], isvprodid: UInt16, isvsvn: UInt16
    ) -> TDXQEIdentityMatch {
        match(
            miscselect: miscselect[...], attributes: attributes[...], mrsigner: mrsigner[...], isvprodid: isvprodid,
            isvsvn: isvsvn)
    }

    /// As ``match(miscselect:attributes:mrsigner:isvprodid:isvsvn:)`` with MISCSELECT as the little-endian u32 the
    /// report holds.
    public func match(
        miscselect: UInt32, attributes: [UInt8], mrsigner: [UInt8], isvprodid: UInt16, isvsvn: UInt16
    ) -> TDXQEIdentityMatch {
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: miscselect >> (8 * UInt32($0))) }
        return match(
            miscselect: bytes, attributes: attributes, mrsigner: mrsigner, isvprodid: isvprodid, isvsvn: isvsvn)
    }

    /// As ``match(miscselect:attributes:mrsigner:isvprodid:isvsvn:)`` with the fields read in place from a quote's
    /// QE report.
    public func match(report: TDXQuote.QEReport) -> TDXQEIdentityMatch {
        typealias Layout = TDXQuote.QEReport.Layout
        return match(
            miscselect: report.slice(Layout.miscSelect, Format.miscselectSize),
            attributes: report.slice(Layout.attributes, Layout.attributesSize),
            mrsigner: report.slice(Layout.mrSigner, Layout.mrSignerSize), isvprodid: report.isvProdID,
            isvsvn: report.isvSVN)
    }

    private func match(
        miscselect: ArraySlice<UInt8>, attributes: ArraySlice<UInt8>, mrsigner: ArraySlice<UInt8>, isvprodid: UInt16,
        isvsvn: UInt16
    ) -> TDXQEIdentityMatch {
        guard miscselect.count == Format.miscselectSize,
            Self.masked(miscselect, miscselectMask, equals: self.miscselect)
        else {
            return .mismatch(
                .miscselect,
                "QE report MISCSELECT \(Self.hex(miscselect)) under mask \(Self.hex(miscselectMask)) "
                    + "is not \(Self.hex(self.miscselect))"
            )
        }
        guard attributes.count == Format.attributesSize,
            Self.masked(attributes, attributesMask, equals: self.attributes)
        else {
            return .mismatch(
                .attributes,
                "QE report ATTRIBUTES \(Self.hex(attributes)) under mask \(Self.hex(attributesMask)) "
                    + "is not \(Self.hex(self.attributes))"
            )
        }
        guard mrsigner.elementsEqual(self.mrsigner) else {
            return .mismatch(
                .mrsigner,
                "QE report MRSIGNER \(Self.hex(mrsigner)) is not Intel's TD QE signer \(Self.hex(self.mrsigner))")
        }
        guard isvprodid == self.isvprodid else {
            return .mismatch(.isvprodid, "QE report ISVPRODID \(isvprodid) is not \(self.isvprodid)")
        }
        guard let level = tcbLevelsDescending.first(where: { $0.isvsvn <= isvsvn }) else {
            return .tcbNotSupported(isvsvn: isvsvn)
        }
        return .matched(level)
    }

    /// Whether `value` under `mask`, byte by byte over their common length, equals `expected`.
    private static func masked(_ value: ArraySlice<UInt8>, _ mask: [UInt8], equals expected: [UInt8]) -> Bool {
        let count = min(value.count, mask.count)
        guard count == expected.count else { return false }
        for (offset, byte) in value.prefix(count).enumerated() where byte & mask[offset] != expected[offset] {
            return false
        }
        return true
    }

    private static func hex(_ bytes: some Collection<UInt8>) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    // MARK: Decoding

    private struct Header: Decodable {
        let id: String
        let version: Int
    }

    private struct Wire: Decodable {
        struct TCB: Decodable {
            let isvsvn: Int
        }
        struct Level: Decodable {
            let tcb: TCB
            let tcbDate: String
            let tcbStatus: String
            let advisoryIDs: [String]?
        }
        let id: String
        let version: Int
        let issueDate: String
        let nextUpdate: String
        let tcbEvaluationDataNumber: Int
        let miscselect: String
        let miscselectMask: String
        let attributes: String
        let attributesMask: String
        let mrsigner: String
        let isvprodid: Int
        let tcbLevels: [Level]
    }
}

/// The result of matching a QE report against a ``TDXQEIdentity`` (TDX.md §6 step .4.15).
public enum TDXQEIdentityMatch: Sendable, Hashable, CustomStringConvertible {
    /// The field of the QE report that did not match.
    public enum Field: String, Sendable, Hashable, Codable, CaseIterable {
        case miscselect = "MISCSELECT"
        case attributes = "ATTRIBUTES"
        case mrsigner = "MRSIGNER"
        case isvprodid = "ISVPRODID"
    }

    /// The QE is Intel's TD QE; its TCB level (whose status may still be OutOfDate or Revoked).
    case matched(TDXQEIdentity.TCBLevel)
    /// The QE is Intel's TD QE, but its ISVSVN is below every listed level.
    case tcbNotSupported(isvsvn: UInt16)
    /// The QE is not the one the identity describes (QVL: QE_IDENTITY_MISMATCH).
    case mismatch(Field, String)

    /// The QE's TCB level status, nil unless matched.
    public var tcbStatus: TDXTCBLevelStatus? {
        if case .matched(let level) = self { return level.tcbStatus }
        return nil
    }

    public var description: String {
        switch self {
        case .matched(let level): "QE TCB level isvsvn \(level.isvsvn): \(level.tcbStatus)"
        case .tcbNotSupported(let isvsvn): "QE ISVSVN \(isvsvn) is below every level of the QE Identity"
        case .mismatch(let field, let reason): "QE \(field.rawValue) mismatch: \(reason)"
        }
    }
}
