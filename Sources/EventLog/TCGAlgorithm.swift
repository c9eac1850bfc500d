import Crypto

/// A TPM 2.0 hash algorithm identifier (TPM_ALG_ID, TCG Algorithm Registry, Table 3 "TPM_ALG_ID Constants"),
/// as it appears in the `digestSizes` list of the Spec ID event and in every TCG_PCR_EVENT2 digest.
///
/// Any 16-bit value can be carried, so that a log declaring an algorithm cmk does not know still parses;
/// ``digestSize`` and ``hash(_:)`` are known only for the algorithms listed here.
public struct TCGAlgorithm: RawRepresentable, Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// TPM_ALG_SHA1.
    public static let sha1 = TCGAlgorithm(rawValue: 0x0004)
    /// TPM_ALG_SHA256.
    public static let sha256 = TCGAlgorithm(rawValue: 0x000B)
    /// TPM_ALG_SHA384.
    public static let sha384 = TCGAlgorithm(rawValue: 0x000C)
    /// TPM_ALG_SHA512.
    public static let sha512 = TCGAlgorithm(rawValue: 0x000D)
    /// TPM_ALG_SM3_256 (parsed, not replayed).
    public static let sm3_256 = TCGAlgorithm(rawValue: 0x0012)
    /// TPM_ALG_SHA3_256 (parsed, not replayed).
    public static let sha3_256 = TCGAlgorithm(rawValue: 0x0027)
    /// TPM_ALG_SHA3_384 (parsed, not replayed).
    public static let sha3_384 = TCGAlgorithm(rawValue: 0x0028)
    /// TPM_ALG_SHA3_512 (parsed, not replayed).
    public static let sha3_512 = TCGAlgorithm(rawValue: 0x0029)

    private static let known: [UInt16: (name: String, size: Int)] = [
        0x0004: ("sha1", 20), 0x000B: ("sha256", 32), 0x000C: ("sha384", 48), 0x000D: ("sha512", 64),
        0x0012: ("sm3_256", 32), 0x0027: ("sha3_256", 32), 0x0028: ("sha3_384", 48), 0x0029: ("sha3_512", 64),
    ]

    /// The registry name in lower case (`sha256`), as tpm2-tools prints it; nil for an unknown id.
    public var name: String? { Self.known[rawValue]?.name }

    /// The digest size the registry defines for this algorithm; nil for an unknown id.
    public var digestSize: Int? { Self.known[rawValue]?.size }

    /// Whether cmk can compute this hash, and so replay its bank.
    public var isReplayable: Bool { [Self.sha1, .sha256, .sha384, .sha512].contains(self) }

    /// The hash of `data` with this algorithm; nil when cmk cannot compute it (see ``isReplayable``).
    public func hash(_ data: [UInt8]) -> [UInt8]? {
        switch self {
        case .sha1: Array(Insecure.SHA1.hash(data: data))
        case .sha256: Array(SHA256.hash(data: data))
        case .sha384: Array(SHA384.hash(data: data))
        case .sha512: Array(SHA512.hash(data: data))
        default: nil
        }
    }

    /// The name, or `alg-0x001c` for an id cmk does not know.
    public var description: String { name ?? "alg-0x" + hex4(rawValue) }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// Encodes as the name (or `alg-0x....`), so JSON reads like tpm2-tools output.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        if let entry = Self.known.first(where: { $0.value.name == text }) {
            self.init(rawValue: entry.key)
        } else if text.hasPrefix("alg-0x"), let value = UInt16(text.dropFirst(6), radix: 16) {
            self.init(rawValue: value)
        } else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not a TPM hash algorithm name"))
        }
    }
}

/// Four lower-case hex digits.
func hex4(_ value: UInt16) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 4 - digits.count) + digits
}
