import Crypto
import Foundation

/// The strict readers every collateral field goes through: fixed-length hex, ISO 8601 UTC dates, bounded
/// integers, known statuses, the typed decoding of a body, and the ECDSA P-256 signature check.
enum CollateralText {
    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Exactly `count` bytes written as `2 × count` hex digits, either case, no prefix.
    static func hex(_ text: String, bytes count: Int, field: String) throws(TDXCollateralError) -> [UInt8] {
        let utf8 = Array(text.utf8)
        guard utf8.count == 2 * count else {
            throw TDXCollateralError(
                .invalidValue, field: field,
                "expected \(count) bytes as \(2 * count) hex digits, found \(utf8.count) characters")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for pair in stride(from: 0, to: utf8.count, by: 2) {
            guard let high = nibble(utf8[pair]), let low = nibble(utf8[pair + 1]) else {
                throw TDXCollateralError(.invalidValue, field: field, "'\(text)' is not hex")
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    /// An unsigned integer of type `T`, rejecting negative and oversized values.
    static func unsigned<T: FixedWidthInteger & UnsignedInteger>(
        _ value: Int, _: T.Type = T.self, field: String
    ) throws(TDXCollateralError) -> T {
        guard let narrowed = T(exactly: value) else {
            throw TDXCollateralError(.invalidValue, field: field, "\(value) is not in 0...\(T.max)")
        }
        return narrowed
    }

    /// A known TCB status, optionally restricted to `allowed`.
    static func status(
        _ text: String, field: String, allowed: Set<TDXTCBLevelStatus> = Set(TDXTCBLevelStatus.allCases)
    ) throws(TDXCollateralError) -> TDXTCBLevelStatus {
        guard let status = TDXTCBLevelStatus(rawValue: text), allowed.contains(status) else {
            let names = TDXTCBLevelStatus.allCases.filter(allowed.contains).map(\.rawValue).joined(separator: ", ")
            throw TDXCollateralError(.unknownTCBStatus, field: field, "\"\(text)\" is not one of \(names)")
        }
        return status
    }

    /// Advisory ids as listed, each non-empty.
    static func advisoryIDs(_ ids: [String]?, field: String) throws(TDXCollateralError) -> [String] {
        let ids = ids ?? []
        if let index = ids.firstIndex(where: \.isEmpty) {
            throw TDXCollateralError(.invalidValue, field: "\(field)[\(index)]", "an advisory id is empty")
        }
        return ids
    }

    /// An ISO 8601 UTC timestamp as PCS writes it: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    static func date(_ text: String, field: String) throws(TDXCollateralError) -> Date {
        let invalid = TDXCollateralError(
            .invalidValue, field: field, "'\(text)' is not an ISO 8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)")
        let u = Array(text.utf8)
        guard u.count >= 20, u.last == UInt8(ascii: "Z"), u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
            u[10] == UInt8(ascii: "T"), u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":")
        else { throw invalid }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard let digit = nibble(u[index]), digit < 10 else { return nil }
                value = value * 10 + Int(digit)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day),
            (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second)
        else { throw invalid }
        var fraction = 0.0
        if u.count > 20 {
            // ".d…dZ": between one and nine digits.
            guard u[19] == UInt8(ascii: "."), (22...30).contains(u.count), let digits = number(20..<(u.count - 1))
            else {
                throw invalid
            }
            fraction = Double(digits) / pow(10, Double(u.count - 21))
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Double(days * 86_400 + hour * 3_600 + minute * 60 + second) + fraction
        return Date(timeIntervalSince1970: seconds)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar.
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Decodes the body bytes into `T`, naming the failing field by its JSON path under `root`.
    static func decode<T: Decodable>(_: T.Type, from bytes: [UInt8], root: String) throws(TDXCollateralError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw map(error, root: root)
        } catch {
            throw TDXCollateralError(.malformedJSON, field: root, "the body cannot be decoded: \(error)")
        }
    }

    static func path(_ keys: [any CodingKey], root: String) -> String {
        keys.reduce(root) { path, key in
            if let index = key.intValue { return "\(path)[\(index)]" }
            return "\(path).\(key.stringValue)"
        }
    }

    private static func map(_ error: DecodingError, root: String) -> TDXCollateralError {
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key], root: root)
            return TDXCollateralError(
                .missingField, field: field, "the required field \"\(key.stringValue)\" is absent")
        case .typeMismatch(let type, let context):
            return TDXCollateralError(
                .invalidValue, field: path(context.codingPath, root: root), "expected \(Self.jsonType(type))")
        case .valueNotFound(let type, let context):
            return TDXCollateralError(
                .invalidValue, field: path(context.codingPath, root: root),
                "expected \(Self.jsonType(type)), found null")
        case .dataCorrupted(let context):
            return TDXCollateralError(
                .invalidValue, field: path(context.codingPath, root: root), context.debugDescription)
        @unknown default:
            return TDXCollateralError(.invalidValue, field: root, "\(error)")
        }
    }

    private static func jsonType(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type: "an integer"
        case is Bool.Type: "a boolean"
        default: type is any Collection.Type ? "an array" : "an object"
        }
    }

    /// The 64-byte raw signature r ‖ s from the `signature` string.
    static func signature(_ text: String) throws(TDXCollateralError) -> [UInt8] {
        try hex(text, bytes: 64, field: SignedCollateralEnvelope.signatureKey)
    }

    /// ECDSA P-256 with SHA-256 over `message`, signature raw r ‖ s.
    static func isValidSignature(_ signature: [UInt8], over message: [UInt8], publicKey: P256.Signing.PublicKey) -> Bool
    {
        guard let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
        return publicKey.isValidSignature(ecdsa, for: message)
    }
}
