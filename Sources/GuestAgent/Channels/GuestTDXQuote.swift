import BinaryFormat
import Crypto

/// A TDX DCAP quote (version 4, or 5 with a TD report body), read as far as the child's own checks need: the signed
/// region, the TD report fields MRTD, MRCONFIGID, TDATTRIBUTES and REPORTDATA, and the ECDSA signature data with its
/// QE report certification data (type 6) and PCK chain (type 5). The agent links no Foundation, so it cannot use the
/// `TDX` module's full parser; this one accepts the same layout and refuses what that one refuses in the parts it
/// reads (versions, key type, TEE type, body type and size, certification types, sizes that do not add up).
struct GuestTDXQuote {
    static let headerSize = 48
    static let td10BodySize = 584, td15BodySize = 648
    static let qeReportSize = 384
    /// Offsets inside the TD report body.
    static let tdAttributes = 120, mrTD = 136, mrConfigID = 184, reportData = 520

    let bytes: [UInt8]
    let bodyStart: Int
    /// [0, signedLength) is what the attestation key signs.
    let signedLength: Int
    let signature: Range<Int>
    let attestationKey: Range<Int>
    let qeReport: Range<Int>
    let qeReportSignature: Range<Int>
    let qeAuthData: Range<Int>
    let pckChain: Range<Int>

    /// The PCK chain's PEM text exactly as carried (trailing NUL included).
    var pckChainBytes: [UInt8] { Array(bytes[pckChain]) }

    var mrTD: ArraySlice<UInt8> { field(Self.mrTD, 48) }
    var mrConfigID: ArraySlice<UInt8> { field(Self.mrConfigID, 48) }
    var reportData: ArraySlice<UInt8> { field(Self.reportData, 64) }
    /// TDATTRIBUTES.DEBUG (bit 0 of the little-endian u64).
    var isDebug: Bool { bytes[bodyStart + Self.tdAttributes] & 1 != 0 }

    private func field(_ offset: Int, _ count: Int) -> ArraySlice<UInt8> {
        bytes[(bodyStart + offset)..<(bodyStart + offset + count)]
    }

    init(bytes: [UInt8]) throws(GuestEvidenceError) {
        var index = 0
        func need(_ count: Int, _ what: String) throws(GuestEvidenceError) -> Range<Int> {
            guard count >= 0, bytes.count - index >= count else { throw GuestEvidenceError("the quote ends inside \(what)") }
            defer { index += count }
            return index..<(index + count)
        }
        func le(_ range: Range<Int>) -> Int { range.reversed().reduce(0) { $0 << 8 | Int(bytes[$1]) } }

        let header = try need(Self.headerSize, "the header")
        let version = le(header.lowerBound..<(header.lowerBound + 2))
        guard version == 4 || version == 5 else { throw GuestEvidenceError("quote version \(version) is not 4 or 5") }
        guard le(2..<4) == 2 else { throw GuestEvidenceError("the attestation key type is not ECDSA P-256 (2)") }
        guard le(4..<8) == 0x81 else { throw GuestEvidenceError("the TEE type is not TDX (0x81)") }
        var bodySize = Self.td10BodySize
        if version == 5 {
            let type = le(try need(2, "the body type"))
            let size = le(try need(4, "the body size"))
            guard type == 2 || type == 3 else { throw GuestEvidenceError("body type \(type) is not a TD report") }
            bodySize = type == 2 ? Self.td10BodySize : Self.td15BodySize
            guard size == bodySize else { throw GuestEvidenceError("a type \(type) body is \(bodySize) bytes, not \(size)") }
        }
        bodyStart = try need(bodySize, "the TD report").lowerBound
        signedLength = index
        let signatureDataLength = le(try need(4, "the signature data length"))
        guard bytes.count - index >= signatureDataLength else { throw GuestEvidenceError("the signature data is cut short") }
        let signatureDataEnd = index + signatureDataLength
        signature = try need(64, "the quote signature")
        attestationKey = try need(64, "the attestation key")
        guard le(try need(2, "the certification data type")) == 6 else {
            throw GuestEvidenceError("the certification data is not type 6 (QE report certification data)")
        }
        let certificationSize = le(try need(4, "the certification data size"))
        guard index + certificationSize == signatureDataEnd else {
            throw GuestEvidenceError("the certification data does not fill the signature data exactly")
        }
        qeReport = try need(Self.qeReportSize, "the QE report")
        qeReportSignature = try need(64, "the QE report signature")
        let authSize = le(try need(2, "the QE auth data size"))
        qeAuthData = try need(authSize, "the QE auth data")
        guard le(try need(2, "the PCK certification data type")) == 5 else {
            throw GuestEvidenceError("the inner certification data is not type 5 (PCK certificate chain)")
        }
        let chainSize = le(try need(4, "the PCK chain size"))
        pckChain = try need(chainSize, "the PCK chain")
        guard index == signatureDataEnd else { throw GuestEvidenceError("bytes are left inside the signature data") }
        self.bytes = bytes
    }

    /// What a TDX quote's signatures prove, checked in full: the attestation key signs header and body; the QE report
    /// binds that key (REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes); the PCK key signs the
    /// QE report; the PCK chain (PCK ← PCK Platform CA ← root) holds and its root is self-signed.
    /// Returns the PCK certificate's key and the root certificate.
    ///
    /// `known` is a chain already checked (this child's own, by PEM text): a quote carrying the same text skips the
    /// three certificate signatures, which cannot change the outcome, and everything else is checked as always.
    func verifySignatures(
        known: (pem: [UInt8], pckKeyInfo: [UInt8], root: [UInt8])? = nil
    ) throws(GuestEvidenceError) -> (pckKeyInfo: [UInt8], root: [UInt8]) {
        guard let key = try? P256.Signing.PublicKey(rawRepresentation: bytes[attestationKey]),
            let quoteSignature = try? P256.Signing.ECDSASignature(rawRepresentation: bytes[signature]),
            key.isValidSignature(quoteSignature, for: bytes[0..<signedLength])
        else { throw GuestEvidenceError("the quote is not signed by the attestation key it carries") }
        let binding = Array(SHA256.hash(data: Array(bytes[attestationKey]) + Array(bytes[qeAuthData])))
        let qeReportData = bytes[(qeReport.lowerBound + 320)..<(qeReport.lowerBound + 384)]
        guard constantTimeEqual(Array(qeReportData.prefix(32)), binding), qeReportData.suffix(32).allSatisfy({ $0 == 0 })
        else {
            throw GuestEvidenceError(
                "the QE report does not bind the attestation key (REPORTDATA is not SHA-256(key ‖ QE auth data) ‖ 0)")
        }
        let pckKeyInfo: [UInt8]
        let root: [UInt8]
        if let known, bytes[pckChain].elementsEqual(known.pem) {
            pckKeyInfo = known.pckKeyInfo
            root = known.root
        } else {
            var chainText = bytes[pckChain]
            if chainText.last == 0 { chainText = chainText.dropLast() }
            let chain = try GuestPEM.certificates(chainText)
            pckKeyInfo = try GuestCertificate.verifyChain(chain, names: ["PCK", "PCK Platform CA", "root CA"])
            root = chain[chain.count - 1]
        }
        guard let pckKey = try? P256.Signing.PublicKey(derRepresentation: pckKeyInfo),
            let qeSignature = try? P256.Signing.ECDSASignature(rawRepresentation: bytes[qeReportSignature]),
            pckKey.isValidSignature(qeSignature, for: bytes[qeReport])
        else { throw GuestEvidenceError("the QE report is not signed by the PCK certificate's key") }
        return (pckKeyInfo, root)
    }
}
