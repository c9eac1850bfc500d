/// The two parts of an Intel PCS collateral body, `{"<body key>":{…},"signature":"<128 hex digits>"}`
/// (TDX.md §5): the exact bytes of the body object's value as received — which is what Intel signed — and the
/// signature text.
///
/// The whole document is checked to be well-formed JSON (RFC 8259) by ``CollateralJSONScanner``; the outer object
/// must hold exactly the body key and `signature`, once each, and nothing but whitespace may follow it. Nothing is
/// re-serialised: a pretty-printed or re-ordered body is a different byte string and will not verify.
struct SignedCollateralEnvelope: Sendable {
    static let signatureKey = "signature"

    /// The body object's value, byte for byte as received.
    let bodyBytes: [UInt8]
    /// The offset of the body's opening brace in the document.
    let bodyOffset: Int
    /// The decoded content of the `signature` string.
    let signatureText: String
    /// The offset of the `signature` string's opening quote in the document.
    let signatureOffset: Int

    init(json: [UInt8], bodyKey: String) throws(TDXCollateralError) {
        var scanner = CollateralJSONScanner(json)
        scanner.skipWhitespace()
        try scanner.expect(UInt8(ascii: "{"), "the opening brace of the collateral document")
        var seen: Set<String> = []
        var body: (offset: Int, bytes: [UInt8])?
        var signature: (offset: Int, text: String)?
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.advance()
        } else {
            while true {
                scanner.skipWhitespace()
                let keyOffset = scanner.offset
                let key = try scanner.readString(what: "a field name")
                guard seen.insert(key).inserted else {
                    throw TDXCollateralError(
                        .duplicateKey, field: key, offset: keyOffset,
                        "the collateral document holds \"\(key)\" twice; refusing to guess which one was signed")
                }
                scanner.skipWhitespace()
                try scanner.expect(UInt8(ascii: ":"), "':' after \"\(key)\"")
                scanner.skipWhitespace()
                switch key {
                case bodyKey:
                    let start = scanner.offset
                    guard scanner.peek() == UInt8(ascii: "{") else {
                        throw TDXCollateralError(
                            scanner.peek() == nil ? .malformedJSON : .invalidValue, field: bodyKey, offset: start,
                            "\"\(bodyKey)\" must be a JSON object")
                    }
                    scanner.path = [.key(bodyKey)]
                    try scanner.skipValue(depth: 1)
                    scanner.path = []
                    body = (start, scanner.bytes(in: start..<scanner.offset))
                case Self.signatureKey:
                    let start = scanner.offset
                    guard scanner.peek() == UInt8(ascii: "\"") else {
                        throw TDXCollateralError(
                            scanner.peek() == nil ? .malformedJSON : .invalidValue, field: key, offset: start,
                            "\"signature\" must be a string of 128 hex digits (r ‖ s)")
                    }
                    signature = (start, try scanner.readString(what: "the signature"))
                default:
                    throw TDXCollateralError(
                        .unexpectedField, field: key, offset: keyOffset,
                        "the PCS body holds only \"\(bodyKey)\" and \"signature\"; "
                            + "\"\(key)\" would not be covered by the signature"
                    )
                }
                scanner.skipWhitespace()
                let separator = try scanner.next(what: "',' or '}' in the collateral document")
                if separator == UInt8(ascii: "}") { break }
                guard separator == UInt8(ascii: ",") else {
                    throw scanner.malformed("expected ',' or '}' after \"\(key)\"", at: scanner.offset - 1)
                }
            }
        }
        scanner.skipWhitespace()
        guard scanner.isAtEnd else {
            throw TDXCollateralError(
                .trailingBytes, field: "(document)", offset: scanner.offset,
                "\(json.count - scanner.offset) bytes follow the collateral's outer JSON object")
        }
        guard let body else {
            throw TDXCollateralError(
                .missingField, field: bodyKey, "the collateral document has no \"\(bodyKey)\" object")
        }
        guard let signature else {
            throw TDXCollateralError(
                .missingField, field: Self.signatureKey, "the collateral document has no \"signature\"")
        }
        bodyBytes = body.bytes
        bodyOffset = body.offset
        signatureText = signature.text
        signatureOffset = signature.offset
    }
}

/// A validating, non-building JSON scanner (RFC 8259) over a byte buffer: it walks values, checks their grammar,
/// decodes strings (escapes, surrogate pairs, UTF-8) and rejects duplicate keys and nesting deeper than
/// ``maximumDepth``. Every byte is read through ``peek()``, which is bounds-checked; slices are taken only of
/// ranges already scanned.
struct CollateralJSONScanner: Sendable {
    /// The deepest nesting of objects and arrays accepted (PCS bodies nest four levels).
    static let maximumDepth = 32

    private let buffer: [UInt8]
    /// The offset of the next byte to read.
    private(set) var offset = 0
    /// One step of a JSON path.
    enum PathComponent: Sendable {
        case key(String)
        case index(Int)
    }

    /// The JSON path of the value being scanned, for error messages.
    var path: [PathComponent] = []

    init(_ bytes: [UInt8]) { self.buffer = bytes }

    var isAtEnd: Bool { offset >= buffer.count }

    /// The byte at the cursor, nil at the end of the buffer.
    func peek() -> UInt8? { offset < buffer.count ? buffer[offset] : nil }

    /// Moves past the byte at the cursor (no-op at the end).
    mutating func advance() { if offset < buffer.count { offset += 1 } }

    /// The bytes of an already-scanned range (clamped to the buffer).
    func bytes(in range: Range<Int>) -> [UInt8] {
        let lower = max(0, min(range.lowerBound, buffer.count))
        let upper = max(lower, min(range.upperBound, buffer.count))
        return Array(buffer[lower..<upper])
    }

    /// Reads one byte; throws when the input has ended.
    mutating func next(what: @autoclosure () -> String) throws(TDXCollateralError) -> UInt8 {
        guard let byte = peek() else { throw truncated(what()) }
        offset += 1
        return byte
    }

    mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { offset += 1 }
    }

    mutating func expect(_ byte: UInt8, _ what: @autoclosure () -> String) throws(TDXCollateralError) {
        let found = try next(what: what())
        guard found == byte else {
            throw malformed("expected \(what()) but found \(Self.describe(found))", at: offset - 1)
        }
    }

    var renderedPath: String {
        guard !path.isEmpty else { return "(document)" }
        return path.reduce(into: "") { text, component in
            switch component {
            case .key(let key): text += text.isEmpty ? key : "." + key
            case .index(let index): text += "[\(index)]"
            }
        }
    }

    func malformed(_ reason: String, at position: Int? = nil) -> TDXCollateralError {
        TDXCollateralError(.malformedJSON, field: renderedPath, offset: position ?? offset, reason)
    }

    func truncated(_ what: String) -> TDXCollateralError {
        TDXCollateralError(
            .malformedJSON, field: renderedPath, offset: offset,
            "the JSON text ends where \(what) should be (is the file truncated?)")
    }

    static func describe(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
    }

    // MARK: Values

    /// Scans one value of any type; `depth` is the nesting level of the value's container.
    mutating func skipValue(depth: Int) throws(TDXCollateralError) {
        skipWhitespace()
        guard let byte = peek() else { throw truncated("a value") }
        switch byte {
        case UInt8(ascii: "{"): try skipObject(depth: depth + 1)
        case UInt8(ascii: "["): try skipArray(depth: depth + 1)
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
        case UInt8(ascii: "t"): try skipLiteral("true")
        case UInt8(ascii: "f"): try skipLiteral("false")
        case UInt8(ascii: "n"): try skipLiteral("null")
        default: throw malformed("\(Self.describe(byte)) cannot start a JSON value")
        }
    }

    private mutating func checkDepth(_ depth: Int) throws(TDXCollateralError) {
        guard depth <= Self.maximumDepth else {
            throw malformed("objects and arrays nest deeper than \(Self.maximumDepth) levels")
        }
    }

    private mutating func skipObject(depth: Int) throws(TDXCollateralError) {
        try checkDepth(depth)
        try expect(UInt8(ascii: "{"), "'{'")
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            offset += 1
            return
        }
        var keys: Set<String> = []
        while true {
            skipWhitespace()
            let keyOffset = offset
            guard peek() != nil else { throw truncated("a field name") }
            guard peek() == UInt8(ascii: "\"") else { throw malformed("a field name must be a string") }
            let key = try readString(what: "a field name")
            guard keys.insert(key).inserted else {
                path.append(.key(key))
                defer { path.removeLast() }
                throw TDXCollateralError(
                    .duplicateKey, field: renderedPath, offset: keyOffset,
                    "the object holds \"\(key)\" twice; refusing to guess which value was meant")
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after \"\(key)\"")
            path.append(.key(key))
            try skipValue(depth: depth)
            path.removeLast()
            skipWhitespace()
            let separator = try next(what: "',' or '}'")
            if separator == UInt8(ascii: "}") { return }
            guard separator == UInt8(ascii: ",") else {
                throw malformed("expected ',' or '}' but found \(Self.describe(separator))", at: offset - 1)
            }
        }
    }

    private mutating func skipArray(depth: Int) throws(TDXCollateralError) {
        try checkDepth(depth)
        try expect(UInt8(ascii: "["), "'['")
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            offset += 1
            return
        }
        var index = 0
        while true {
            path.append(.index(index))
            try skipValue(depth: depth)
            path.removeLast()
            skipWhitespace()
            let separator = try next(what: "',' or ']'")
            if separator == UInt8(ascii: "]") { return }
            guard separator == UInt8(ascii: ",") else {
                throw malformed("expected ',' or ']' but found \(Self.describe(separator))", at: offset - 1)
            }
            index += 1
        }
    }

    private static func isDigit(_ byte: UInt8?) -> Bool {
        guard let byte else { return false }
        return byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private mutating func skipDigits(_ what: String) throws(TDXCollateralError) {
        guard Self.isDigit(peek()) else {
            if peek() == nil { throw truncated(what) }
            throw malformed("expected \(what)")
        }
        while Self.isDigit(peek()) { offset += 1 }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    private mutating func skipNumber() throws(TDXCollateralError) {
        if peek() == UInt8(ascii: "-") { offset += 1 }
        if peek() == UInt8(ascii: "0") {
            offset += 1
            if Self.isDigit(peek()) { throw malformed("a number may not have a leading zero") }
        } else {
            try skipDigits("a digit")
        }
        if peek() == UInt8(ascii: ".") {
            offset += 1
            try skipDigits("a digit after the decimal point")
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            offset += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { offset += 1 }
            try skipDigits("an exponent digit")
        }
    }

    private mutating func skipLiteral(_ literal: String) throws(TDXCollateralError) {
        let start = offset
        for expected in literal.utf8 {
            guard let byte = peek() else { throw truncated("the literal \(literal)") }
            guard byte == expected else { throw malformed("expected the literal \(literal)", at: start) }
            offset += 1
        }
    }

    // MARK: Strings

    /// Reads a string whose opening quote is at the cursor and returns its decoded content.
    mutating func readString(what: @autoclosure () -> String) throws(TDXCollateralError) -> String {
        let start = offset
        try expect(UInt8(ascii: "\""), what())
        var utf8: [UInt8] = []
        while true {
            let byte = try next(what: "the end of a string that starts at byte \(start)")
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: utf8, as: UTF8.self) else {
                    throw malformed("the string that starts at byte \(start) is not valid UTF-8", at: start)
                }
                return text
            case UInt8(ascii: "\\"):
                try readEscape(into: &utf8)
            case 0x00..<0x20:
                throw malformed(
                    "a control character (0x\(String(byte, radix: 16))) must be escaped inside a string", at: offset - 1
                )
            default:
                utf8.append(byte)
            }
        }
    }

    /// Checks a string whose opening quote is at the cursor without building it: escapes are checked one by one and
    /// the raw bytes must be UTF-8 (escapes are ASCII, so this is the same as checking the decoded text).
    mutating func skipString() throws(TDXCollateralError) {
        let start = offset
        try expect(UInt8(ascii: "\""), "a string")
        var scratch: [UInt8] = []
        var isASCII = true
        while true {
            let byte = try next(what: "the end of a string that starts at byte \(start)")
            switch byte {
            case UInt8(ascii: "\""):
                if !isASCII, String(validating: buffer[(start + 1)..<(offset - 1)], as: UTF8.self) == nil {
                    throw malformed("the string that starts at byte \(start) is not valid UTF-8", at: start)
                }
                return
            case UInt8(ascii: "\\"):
                try readEscape(into: &scratch)
                scratch.removeAll(keepingCapacity: true)
            case 0x00..<0x20:
                throw malformed(
                    "a control character (0x\(String(byte, radix: 16))) must be escaped inside a string", at: offset - 1
                )
            case 0x80...:
                isASCII = false
            default:
                break
            }
        }
    }

    private mutating func readEscape(into utf8: inout [UInt8]) throws(TDXCollateralError) {
        let escapeOffset = offset - 1
        let letter = try next(what: "an escape sequence")
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(letter)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try readHexUnit()
            var scalarValue = UInt32(unit)
            if (0xD800...0xDBFF).contains(unit) {
                guard try next(what: "the low surrogate of a \\u pair") == UInt8(ascii: "\\"),
                    try next(what: "the low surrogate of a \\u pair") == UInt8(ascii: "u")
                else { throw malformed("a high surrogate \\u escape must be followed by a low one", at: escapeOffset) }
                let low = try readHexUnit()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw malformed("a high surrogate \\u escape must be followed by a low one", at: escapeOffset)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(unit) {
                throw malformed("a low surrogate \\u escape without a high one", at: escapeOffset)
            }
            guard let scalar = Unicode.Scalar(scalarValue) else {
                throw malformed("\\u escape names no Unicode scalar", at: escapeOffset)
            }
            utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw malformed("\\\(Self.describe(letter)) is not a JSON escape", at: escapeOffset)
        }
    }

    private mutating func readHexUnit() throws(TDXCollateralError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            let digit = try next(what: "four hex digits of a \\u escape")
            guard let nibble = CollateralText.nibble(digit) else {
                throw malformed("\\u must be followed by four hex digits", at: offset - 1)
            }
            value = value << 4 | UInt16(nibble)
        }
        return value
    }
}
