import Foundation
internal import Crypto
internal import BinaryFormat

/// The length-prefixed byte encoding that record hashes and checkpoint signatures are computed over
/// (docs/audit.md, "Canonical encoding").
///
/// Every field is a 4-byte big-endian length followed by that many bytes; an absent optional field is the
/// length `0xFFFFFFFF` with no bytes, so "absent" and "empty" differ. Text is its UTF-8 bytes; an integer is
/// its 8-byte big-endian two's complement form, itself written as a field of length 8.
struct CanonicalEncoder {
    static let absentLength: UInt32 = 0xFFFF_FFFF

    private(set) var bytes: [UInt8] = []

    init(domain: String) { append(domain) }

    mutating func append(_ field: [UInt8]) {
        precondition(field.count < Int(Self.absentLength), "a field of 4 GiB cannot be encoded")
        appendLength(UInt32(field.count))
        bytes.append(contentsOf: field)
    }

    mutating func append(_ text: String) { append(Array(text.utf8)) }

    mutating func append(_ text: String?) {
        if let text { append(text) } else { appendLength(Self.absentLength) }
    }

    mutating func append(_ value: Int64) {
        let bits = UInt64(bitPattern: value)
        append((0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * $0)) })
    }

    private mutating func appendLength(_ length: UInt32) {
        bytes.append(contentsOf: (0..<4).map { UInt8(truncatingIfNeeded: length >> (24 - 8 * $0)) })
    }
}

/// The fixed JSON form of stored values and reports: sorted keys, unescaped slashes, dates as RFC 3339 UTC
/// with exactly three fractional digits (`2026-04-01T12:00:00.000Z`).
enum CanonicalJSON {
    static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty
            ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.string(date))
        }
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Timestamp.date(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not an RFC 3339 UTC timestamp")
            }
            return date
        }
        return decoder
    }

    static func string(_ value: some Encodable) throws -> String {
        do {
            return String(decoding: try encoder().encode(value), as: UTF8.self)
        } catch {
            throw AuditLogError(.encoding, "could not encode \(type(of: value)) as JSON: \(error)")
        }
    }
}

/// Times as the log stores them: whole milliseconds since the Unix epoch, and RFC 3339 text in UTC.
enum Timestamp {
    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    /// `2026-04-01T12:00:00.000Z`, computed from whole milliseconds so that it never depends on a formatter.
    static func string(_ date: Date) -> String {
        let ms = milliseconds(date)
        let seconds = ms.floorDivided(by: 1000)
        let fraction = ms - seconds * 1000
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(seconds)))
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.year, 4))-\(pad(parts.month, 2))-\(pad(parts.day, 2))T"
            + "\(pad(parts.hour, 2)):\(pad(parts.minute, 2)):\(pad(parts.second, 2)).\(pad(Int(fraction), 3))Z"
    }

    /// Parses RFC 3339 UTC text, with or without fractional seconds.
    static func date(_ text: String) -> Date? {
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = withFraction.date(from: text) { return date }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        return plain.date(from: text)
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor < 0) ? quotient - 1 : quotient
    }
}

/// SHA-256 as lower-case hex.
enum Digest {
    static func sha256Hex(_ bytes: some DataProtocol) -> String { Hex.encode(SHA256.hash(data: bytes)) }

    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
