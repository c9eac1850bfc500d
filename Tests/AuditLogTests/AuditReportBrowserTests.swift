import CMKTesting
import Foundation
import Testing

@testable import AuditLog

/// Renders the HTML report in Debian's headless Chromium, as a person would open it.
@Suite("AuditReport HTML in headless Chromium")
struct AuditReportBrowserTests {
    static let chromium = URL(fileURLWithPath: "/usr/bin/chromium")

    /// Decodes the PNG (zlib IDAT, un-filtered per scanline) and prints: width, height, distinct colours sampled,
    /// and whether the admitted-green and rejected-red of the bars appear.
    static let pngProbe = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'
        pos, idat, header = 8, b'', None
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind == b'IHDR': header = struct.unpack('>IIBBBBB', body)
            elif kind == b'IDAT': idat += body
            pos += 12 + length
        width, height, depth, color, _, _, interlace = header
        assert depth == 8 and interlace == 0 and color in (2, 6), 'unsupported PNG layout %r' % (header,)
        bpp = 4 if color == 6 else 3
        raw = zlib.decompress(idat)
        stride = width * bpp
        previous = bytearray(stride)
        colors = set()
        offset = 0
        for y in range(height):
            kind = raw[offset]
            line = bytearray(raw[offset + 1:offset + 1 + stride])
            offset += 1 + stride
            if kind == 1:
                for i in range(bpp, stride): line[i] = (line[i] + line[i - bpp]) & 255
            elif kind == 2:
                line = bytearray((a + b) & 255 for a, b in zip(line, previous))
            elif kind == 3:
                for i in range(stride):
                    left = line[i - bpp] if i >= bpp else 0
                    line[i] = (line[i] + ((left + previous[i]) >> 1)) & 255
            elif kind == 4:
                for i in range(stride):
                    a = line[i - bpp] if i >= bpp else 0
                    b = previous[i]
                    c = previous[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            colors.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
            previous = line
        print(width, height, len(colors), int(bytes((46, 125, 50)) in colors), int(bytes((198, 40, 40)) in colors))
        """

    private func runChromium(_ arguments: [String], in folder: TemporaryFolder) throws -> ProcessOutput {
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = folder.url.path
        return try Subprocess.run(
            Self.chromium,
            ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--user-data-dir=\(folder.file("profile").path)"] + arguments,
            environment: environment, timeout: 180)
    }

    @Test("the HTML report renders to a non-blank page with its charts, and its DOM holds the key numbers",
          .timeLimit(.minutes(8)))
    func rendersInChromium() throws {
        let fixture = try ReportFixture()
        let html = try fixture.report().rendered(as: .html)
        let folder = try TemporaryFolder()
        let page = folder.file("report.html")
        try Data(html.utf8).write(to: page)

        let screenshot = folder.file("report.png")
        let shot = try runChromium(
            ["--screenshot=\(screenshot.path)", "--window-size=1200,1600", page.absoluteString], in: folder)
        #expect(shot.status == 0, "\(shot.standardError.suffix(2_000))")
        if let keep = ProcessInfo.processInfo.environment["CMK_AUDIT_KEEP_REPORT"] {
            // For a person to look at: CMK_AUDIT_KEEP_REPORT=/some/folder swift test --filter AuditReportBrowser
            let folder = URL(fileURLWithPath: keep)
            try? FileManager.default.removeItem(at: folder.appendingPathComponent("report.html"))
            try? FileManager.default.removeItem(at: folder.appendingPathComponent("report.png"))
            try FileManager.default.copyItem(at: page, to: folder.appendingPathComponent("report.html"))
            try FileManager.default.copyItem(at: screenshot, to: folder.appendingPathComponent("report.png"))
        }
        let probe = try Python.run(Self.pngProbe, arguments: [screenshot.path])
        #expect(probe.status == 0, "\(probe.standardError)")
        let numbers = probe.standardOutput.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        try #require(numbers.count == 5, "\(probe.standardOutput)")
        #expect(numbers[0] == 1200)
        #expect(numbers[1] == 1600)
        #expect(numbers[2] > 20, "a blank page has one or two colours, text and charts many")
        #expect(numbers[3] == 1, "the admitted bars are drawn")
        #expect(numbers[4] == 1, "the rejected bars are drawn")

        let dump = try runChromium(["--dump-dom", page.absoluteString], in: folder)
        #expect(dump.status == 0, "\(dump.standardError.suffix(2_000))")
        let dom = dump.standardOutput
        let web = try #require(dom.range(of: "data-policy=\"web\""), "the web policy's section is in the DOM")
        let section = String(dom[web.upperBound...]).components(separatedBy: "</section>")[0]
        #expect(section.contains("<td data-metric=\"evaluations\">10</td>"))
        #expect(section.contains("<td data-metric=\"admitted\" class=\"admit\">7</td>"))
        #expect(section.contains("<td data-metric=\"rejected\" class=\"reject\">3</td>"))
        #expect(dom.contains("<td data-metric=\"evaluations\">13</td>"), "the summary total")
        #expect(dom.contains("data-integrity=\"ok\""))
    }
}
