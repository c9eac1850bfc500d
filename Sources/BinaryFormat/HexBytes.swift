/// Bytes that print, compare and serialise as lower-case hex: how digests, report data and ids appear in
/// claims, JSON output and policies.
public struct HexBytes: Sendable, Hashable, Codable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(arrayLiteral elements: UInt8...) { self.bytes = elements }

    /// Parses hex text; nil when it is not hex.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex) else { return nil }
        self.bytes = bytes
    }

    public var description: String { Hex.encode(bytes) }
    public var count: Int { bytes.count }
    /// Whether every byte is zero.
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let bytes = Hex.decode(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not hex"))
        }
        self.bytes = bytes
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where they differ:
/// for MACs, digests and anything an attacker could probe byte by byte.
@inlinable
public func constantTimeEqual(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
