import Foundation
import Testing

@testable import AuditLog

/// The arithmetic timestamp paths (written and read on every append and query) against the formatter and calendar
/// paths they replace: the same text and the same `Date` for every millisecond tried.
@Suite struct TimestampTests {
    static func calendarString(_ milliseconds: Int64) -> String {
        let seconds = milliseconds.floorDivided(by: 1000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(seconds)))
        return String(
            format: "%04ld-%02ld-%02ldT%02ld:%02ld:%02ld.%03ldZ", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!,
            parts.second!, Int(milliseconds - seconds * 1000))
    }

    static func formatterDate(_ text: String) -> Date? {
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = withFraction.date(from: text) { return date }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        return plain.date(from: text)
    }

    @Test("writes and reads the same text and Date as the calendar and ISO8601DateFormatter")
    func agreesWithFormatter() {
        var generator = SystemRandomNumberGenerator()
        let edges: [Int64] = [
            0, 999, 1000, 86_399_999, 951_782_400_000, 951_868_799_999, 4_107_542_399_999, 1_795_000_000_123,
            253_402_300_799_999,
        ]
        let random = (0..<3000).map { _ in Int64.random(in: 0..<253_402_300_800_000, using: &generator) }
        for milliseconds in edges + random {
            let date = Timestamp.date(milliseconds: milliseconds)
            let text = Timestamp.string(date)
            #expect(text == Self.calendarString(milliseconds))
            #expect(Timestamp.fastMilliseconds(text) == milliseconds)
            #expect(Timestamp.date(text) == Self.formatterDate(text))
            let whole = String(text.prefix(19)) + "Z"
            #expect(Timestamp.date(whole) == Self.formatterDate(whole))
        }
    }

    @Test("leaves every other form to the formatter")
    func otherForms() {
        for text in [
            "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:00+01:00", "2026-01-01T00:00:00.1Z", "2026-01-01 00:00:00Z", "1969-12-31T23:59:59.000Z",
            "２026-01-01T00:00:00Z", "",
        ] {
            #expect(Timestamp.fastMilliseconds(text) == nil, "\(text)")
            #expect(Timestamp.date(text) == Self.formatterDate(text), "\(text)")
        }
        #expect(Timestamp.fastMilliseconds("2024-02-29T12:00:00.500Z") == 1_709_208_000_500)
    }
}
