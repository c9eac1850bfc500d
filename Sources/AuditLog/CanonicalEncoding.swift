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
    ///
    /// Times from 1970 to 9999 are computed arithmetically (proleptic Gregorian, which is what the calendar gives
    /// for them); others go through `Calendar` (which switches to the Julian calendar before 1582).
    static func string(_ date: Date) -> String {
        let ms = milliseconds(date)
        let seconds = ms.floorDivided(by: 1000)
        let fraction = ms - seconds * 1000
        if seconds >= 0 && seconds < 253_402_300_800 {
            let days = seconds / 86_400
            let civil = CivilDate(days: days)
            let inDay = seconds - days * 86_400
            var text = [UInt8]()
            text.reserveCapacity(24)
            func digits(_ value: Int64, _ width: Int) {
                var divisor: Int64 = 1
                for _ in 1..<width { divisor *= 10 }
                var rest = value
                while divisor > 0 {
                    text.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                    rest %= divisor
                    divisor /= 10
                }
            }
            digits(civil.year, 4); text.append(UInt8(ascii: "-")); digits(civil.month, 2); text.append(UInt8(ascii: "-"))
            digits(civil.day, 2); text.append(UInt8(ascii: "T")); digits(inDay / 3600, 2); text.append(UInt8(ascii: ":"))
            digits(inDay % 3600 / 60, 2); text.append(UInt8(ascii: ":")); digits(inDay % 60, 2)
            text.append(UInt8(ascii: ".")); digits(fraction, 3); text.append(UInt8(ascii: "Z"))
            return String(decoding: text, as: UTF8.self)
        }
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
    ///
    /// The form the log writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`, or without the fraction, years 1970 to 9999, every
    /// field in range) is read arithmetically, to the same `Date` the formatter gives; anything else goes to
    /// `ISO8601DateFormatter`, which decides.
    static func date(_ text: String) -> Date? {
        if let milliseconds = fastMilliseconds(text) { return date(milliseconds: milliseconds) }
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = withFraction.date(from: text) { return date }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        return plain.date(from: text)
    }

    /// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.mmmZ`; nil for any other text.
    static func fastMilliseconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { bytes -> Int64? in
            guard bytes.count == 20 || bytes.count == 24 else { return nil }
            func number(_ start: Int, _ count: Int) -> Int64? {
                var value: Int64 = 0
                for index in start..<(start + count) {
                    let byte = bytes[index]
                    guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                    value = value * 10 + Int64(byte - UInt8(ascii: "0"))
                }
                return value
            }
            guard bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
                bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"), bytes[bytes.count - 1] == UInt8(ascii: "Z"),
                let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
                let minute = number(14, 2), let second = number(17, 2)
            else { return nil }
            var fraction: Int64 = 0
            if bytes.count == 24 {
                guard bytes[19] == UInt8(ascii: "."), let value = number(20, 3) else { return nil }
                fraction = value
            }
            guard year >= 1970, (1...12).contains(month), day >= 1, day <= CivilDate.days(inMonth: month, year: year),
                hour < 24, minute < 60, second < 60
            else { return nil }
            let days = CivilDate.days(year: year, month: month, day: day)
            return ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + fraction
        }
    }
}

/// Proleptic Gregorian dates from days since 1970-01-01 and back (Howard Hinnant's civil-from-days algorithm).
struct CivilDate {
    let year: Int64
    let month: Int64
    let day: Int64

    init(days: Int64) {
        let z = days + 719_468
        let era = z.floorDivided(by: 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = y.floorDivided(by: 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func days(inMonth month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> Int64 {
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
