import BinaryFormat

/// The evidence one side carries in its handshake payload: a report or quote whose REPORT_DATA is the
/// ``ChannelBinding``, what the peer needs to verify it, and the manifest the instance was launched with (whose digest
/// HOST_DATA / MRCONFIGID carries, so the peer learns the instance's name from the hardware-signed report, not from
/// the host).
///
/// Encoding: `u8 version (1) ‖ u8 kind (1 = sev-snp, 2 = tdx) ‖ u32be len ‖ report or quote ‖ u32be len ‖ auxiliary
/// (SEV-SNP certificate table, or empty) ‖ u32be len ‖ manifest`, nothing after it. Lives in the Foundation-free core
/// so cmk-guest can produce it.
public struct ChannelEvidence: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case sevSNP = 1
        case tdx = 2

        public var name: String { self == .sevSNP ? "sev-snp" : "tdx" }
    }

    public static let version: UInt8 = 1
    /// The largest evidence field accepted; a handshake message is at most 65535 bytes anyway.
    public static let maximumFieldLength = 65535

    public let kind: Kind
    /// The SEV-SNP ATTESTATION_REPORT or the TDX quote, exactly as the platform signed it.
    public let report: [UInt8]
    /// The SEV-SNP certificate table of an extended report (VCEK, ASK, ARK), or empty.
    public let auxiliary: [UInt8]
    /// The instance manifest's canonical bytes.
    public let manifest: [UInt8]

    public init(kind: Kind, report: [UInt8], auxiliary: [UInt8] = [], manifest: [UInt8]) {
        self.kind = kind
        self.report = report
        self.auxiliary = auxiliary
        self.manifest = manifest
    }

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.version, kind.rawValue]
        for field in [report, auxiliary, manifest] {
            bytes.appendBigEndian(UInt32(field.count))
            bytes += field
        }
        return bytes
    }

    /// Parses the encoding; anything else (an unknown version or kind, a truncated field, trailing bytes) fails with
    /// ``SealedChannelError/Code/peerEvidenceMalformed``.
    public init(bytes: [UInt8]) throws(SealedChannelError) {
        do {
            var cursor = ByteCursor(bytes)
            let version = try cursor.readUInt8(field: "evidence version")
            guard version == Self.version else {
                throw SealedChannelError(
                    .peerEvidenceMalformed, "channel evidence version \(version); this side reads 1")
            }
            let kindByte = try cursor.readUInt8(field: "evidence kind")
            guard let kind = Kind(rawValue: kindByte) else {
                throw SealedChannelError(.peerEvidenceMalformed, "unknown channel evidence kind \(kindByte)")
            }
            func field(_ name: String) throws -> [UInt8] {
                let length: UInt32 = try cursor.readBigEndian(field: "\(name) length")
                guard length <= Self.maximumFieldLength else {
                    throw SealedChannelError(.peerEvidenceMalformed, "the \(name) claims \(length) bytes")
                }
                return try cursor.readBytes(Int(length), field: name)
            }
            self.kind = kind
            report = try field("report")
            auxiliary = try field("auxiliary")
            manifest = try field("manifest")
            try cursor.expectEnd(field: "channel evidence")
        } catch let error as SealedChannelError {
            throw error
        } catch {
            throw SealedChannelError(.peerEvidenceMalformed, "the peer's channel evidence cannot be read: \(error)")
        }
    }
}
