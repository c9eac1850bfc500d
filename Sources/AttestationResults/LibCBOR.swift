internal import CCBOR
#if canImport(Glibc)
import Glibc
#endif

// The bridge to libcbor. One owner per cbor_item_t reference (`LibCBORItem`, released in deinit);
// nothing outside this file sees a C pointer.

/// Owns one reference to a libcbor item.
private final class LibCBORItem {
    let pointer: UnsafeMutablePointer<cbor_item_t>

    init(_ pointer: UnsafeMutablePointer<cbor_item_t>?) throws(CBORError) {
        guard let pointer else { throw CBORError(.allocation, "libcbor could not allocate an item") }
        self.pointer = pointer
    }

    deinit {
        var reference: UnsafeMutablePointer<cbor_item_t>? = pointer
        cbor_decref(&reference)
    }
}

extension CBORValue {
    /// The deepest nesting cmk decodes; attestation structures need far less.
    public static let maximumDepth = 32

    /// Encodes the value with libcbor, integers and lengths in their shortest form (RFC 8949 §4.2.1).
    public func encoded() throws(CBORError) -> [UInt8] {
        let item = try makeItem()
        var buffer: UnsafeMutablePointer<UInt8>?
        var capacity = 0
        let length = cbor_serialize_alloc(item.pointer, &buffer, &capacity)
        defer { free(buffer) }
        guard length > 0, let buffer else { throw CBORError(.allocation, "libcbor could not serialize the item") }
        return Array(UnsafeBufferPointer(start: buffer, count: length))
    }

    /// Decodes exactly one CBOR item from `bytes` with libcbor; trailing bytes are an error.
    ///
    /// libcbor before 0.11 rejects the one-byte tag heads 0xC6–0xD4 (tags 6–20) as "unassigned"
    /// (PJK/libcbor#307), which includes COSE_Sign1 (18), COSE_Mac0 (17) and COSE_Encrypt0 (16). A tag in
    /// that range at the top level — where COSE puts it — is therefore read here and its content handed to
    /// libcbor; such a tag nested deeper is still refused by libcbor as malformed.
    public init(encoded bytes: [UInt8]) throws(CBORError) {
        guard let head = bytes.first else { throw CBORError(.malformed, "no CBOR data") }
        if (0xC6...0xD4).contains(head) {
            self = .tagged(UInt64(head - 0xC0), try CBORValue(libcborEncoded: Array(bytes.dropFirst())))
        } else {
            self = try CBORValue(libcborEncoded: bytes)
        }
    }

    private init(libcborEncoded bytes: [UInt8]) throws(CBORError) {
        guard !bytes.isEmpty else { throw CBORError(.malformed, "the CBOR data ends after a tag") }
        try Self.checkDeclaredSizes(bytes)
        var result = cbor_load_result()
        let loaded = bytes.withUnsafeBufferPointer { buffer in
            cbor_load(buffer.baseAddress, buffer.count, &result)
        }
        guard result.error.code == CBOR_ERR_NONE, let loaded else {
            if let loaded {
                var reference: UnsafeMutablePointer<cbor_item_t>? = loaded
                cbor_decref(&reference)
            }
            throw CBORError(
                .malformed, "not well-formed CBOR near byte \(result.error.position)",
                nativeCode: Int(result.error.code.rawValue))
        }
        let item = try LibCBORItem(loaded)
        guard result.read == bytes.count else {
            throw CBORError(.trailingBytes, "\(bytes.count - result.read) bytes follow the CBOR item")
        }
        self = try Self.value(of: item.pointer, depth: 0)
    }

    /// Walks the item heads of `bytes` without building anything and refuses, before libcbor sees them, lengths and
    /// counts the input cannot hold.
    ///
    /// libcbor allocates a definite array's or map's element table, and a string's buffer, from the count in its
    /// head before reading any element: a ten-byte input declaring 2³² elements would make it reserve gigabytes
    /// (measured: a seeded fuzz run spent minutes in the kernel handing out pages). Every element takes at least one
    /// byte and every map entry two, so a count larger than the bytes left is malformed whatever follows; a string
    /// longer than the bytes left likewise. Indefinite lengths, reserved additional-information values and nesting
    /// deeper than ``maximumDepth`` are refused here too. Only the first complete item is checked: trailing bytes are
    /// left to the caller's check.
    static func checkDeclaredSizes(_ bytes: [UInt8]) throws(CBORError) {
        var offset = 0
        // Items still to read at each open level; the top level expects one.
        var pending: [UInt64] = [1]
        while let last = pending.last {
            if last == 0 {
                pending.removeLast()
                continue
            }
            pending[pending.count - 1] = last - 1
            guard offset < bytes.count else {
                throw CBORError(.malformed, "the CBOR data ends at byte \(offset) where an item should start")
            }
            let head = bytes[offset]
            offset += 1
            let major = head >> 5
            let info = head & 0x1F
            var argument = UInt64(info)
            switch info {
            case 0..<24: break
            case 24...27:
                let width = 1 << Int(info - 24)
                guard bytes.count - offset >= width else {
                    throw CBORError(.malformed, "the CBOR data ends inside the head at byte \(offset - 1)")
                }
                argument = bytes[offset..<(offset + width)].reduce(0) { $0 << 8 | UInt64($1) }
                offset += width
            case 31:
                throw CBORError(.unsupported, "indefinite-length item at byte \(offset - 1)")
            default:
                throw CBORError(.malformed, "reserved additional information \(info) at byte \(offset - 1)")
            }
            let left = UInt64(bytes.count - offset)
            switch major {
            case 2, 3:  // byte and text strings: their bytes follow
                guard argument <= left else {
                    throw CBORError(
                        .malformed, "a string at byte \(offset) declares \(argument) bytes; \(left) are left")
                }
                offset += Int(argument)
            case 4, 5:  // arrays and maps: that many items (twice for maps), at least a byte each
                let items = major == 4 ? argument : argument.multipliedReportingOverflow(by: 2).partialValue
                guard argument <= left, items <= left else {
                    throw CBORError(
                        .malformed,
                        "a\(major == 4 ? "n array" : " map") at byte \(offset) declares \(argument) "
                            + "\(major == 4 ? "elements" : "entries"); \(left) bytes are left")
                }
                guard pending.count <= maximumDepth else {
                    throw CBORError(.tooDeep, "CBOR nests deeper than \(maximumDepth) levels")
                }
                pending.append(items)
            case 6:  // a tag: one item follows
                guard pending.count <= maximumDepth else {
                    throw CBORError(.tooDeep, "CBOR nests deeper than \(maximumDepth) levels")
                }
                pending.append(1)
            default: break  // integers, simple values and floats carry no content beyond the head
            }
        }
    }

    private static func value(of item: UnsafeMutablePointer<cbor_item_t>, depth: Int) throws(CBORError) -> CBORValue {
        guard depth < maximumDepth else { throw CBORError(.tooDeep, "CBOR nests deeper than \(maximumDepth) levels") }
        switch cbor_typeof(item) {
        case CBOR_TYPE_UINT:
            return .unsigned(cbor_get_int(item))
        case CBOR_TYPE_NEGINT:
            return .negative(cbor_get_int(item))
        case CBOR_TYPE_BYTESTRING:
            guard cbor_bytestring_is_definite(item) else { throw CBORError(.unsupported, "indefinite-length byte string") }
            return .bytes(Array(UnsafeBufferPointer(start: cbor_bytestring_handle(item), count: cbor_bytestring_length(item))))
        case CBOR_TYPE_STRING:
            guard cbor_string_is_definite(item) else { throw CBORError(.unsupported, "indefinite-length text string") }
            let utf8 = Array(UnsafeBufferPointer(start: cbor_string_handle(item), count: cbor_string_length(item)))
            guard let text = String(validating: utf8, as: UTF8.self) else {
                throw CBORError(.malformed, "text string is not valid UTF-8")
            }
            return .text(text)
        case CBOR_TYPE_ARRAY:
            guard cbor_array_is_definite(item) else { throw CBORError(.unsupported, "indefinite-length array") }
            let handle = cbor_array_handle(item)
            var elements: [CBORValue] = []
            for index in 0..<cbor_array_size(item) {
                guard let element = handle?[index] else { throw CBORError(.malformed, "array element \(index) is missing") }
                elements.append(try value(of: element, depth: depth + 1))
            }
            return .array(elements)
        case CBOR_TYPE_MAP:
            guard cbor_map_is_definite(item) else { throw CBORError(.unsupported, "indefinite-length map") }
            let handle = cbor_map_handle(item)
            var entries: [CBORMapEntry] = []
            for index in 0..<cbor_map_size(item) {
                guard let pair = handle?[index], let key = pair.key, let value = pair.value else {
                    throw CBORError(.malformed, "map entry \(index) is incomplete")
                }
                entries.append(CBORMapEntry(try self.value(of: key, depth: depth + 1), try self.value(of: value, depth: depth + 1)))
            }
            return .map(entries)
        case CBOR_TYPE_TAG:
            let tag = cbor_tag_value(item)
            let tagged = try LibCBORItem(cbor_tag_item(item))  // cbor_tag_item takes a reference
            return .tagged(tag, try value(of: tagged.pointer, depth: depth + 1))
        case CBOR_TYPE_FLOAT_CTRL:
            guard cbor_float_ctrl_is_ctrl(item) else { throw CBORError(.unsupported, "floating-point values are not accepted") }
            switch cbor_ctrl_value(item) {
            case 20: return .bool(false)
            case 21: return .bool(true)
            case 22: return .null
            default: throw CBORError(.unsupported, "simple value \(cbor_ctrl_value(item)) is not accepted")
            }
        default:
            throw CBORError(.unsupported, "unknown CBOR major type")
        }
    }

    private static func integer(_ value: UInt64, negative: Bool) throws(CBORError) -> LibCBORItem {
        let item: UnsafeMutablePointer<cbor_item_t>?
        switch value {
        case 0...UInt64(UInt8.max): item = negative ? cbor_build_negint8(UInt8(value)) : cbor_build_uint8(UInt8(value))
        case 0...UInt64(UInt16.max): item = negative ? cbor_build_negint16(UInt16(value)) : cbor_build_uint16(UInt16(value))
        case 0...UInt64(UInt32.max): item = negative ? cbor_build_negint32(UInt32(value)) : cbor_build_uint32(UInt32(value))
        default: item = negative ? cbor_build_negint64(value) : cbor_build_uint64(value)
        }
        return try LibCBORItem(item)
    }

    private func makeItem() throws(CBORError) -> LibCBORItem {
        switch self {
        case .unsigned(let n):
            return try Self.integer(n, negative: false)
        case .negative(let n):
            return try Self.integer(n, negative: true)
        case .bytes(let bytes):
            // libcbor copies the data; an empty string still needs a valid pointer.
            let storage = bytes.isEmpty ? [0] : bytes
            return try storage.withUnsafeBufferPointer { buffer throws(CBORError) in
                try LibCBORItem(cbor_build_bytestring(buffer.baseAddress, bytes.count))
            }
        case .text(let text):
            var utf8 = Array(text.utf8)
            utf8.append(0)
            return try utf8.withUnsafeBufferPointer { buffer throws(CBORError) in
                try buffer.withMemoryRebound(to: CChar.self) { chars throws(CBORError) in
                    try LibCBORItem(cbor_build_stringn(chars.baseAddress, chars.count - 1))
                }
            }
        case .array(let elements):
            let array = try LibCBORItem(cbor_new_definite_array(elements.count))
            for element in elements {
                let child = try element.makeItem()
                guard cbor_array_push(array.pointer, child.pointer) else { throw CBORError(.allocation, "cannot grow an array") }
            }
            return array
        case .map(let entries):
            let map = try LibCBORItem(cbor_new_definite_map(entries.count))
            for entry in entries {
                let key = try entry.key.makeItem()
                let value = try entry.value.makeItem()
                guard cbor_map_add(map.pointer, cbor_pair(key: key.pointer, value: value.pointer)) else {
                    throw CBORError(.allocation, "cannot grow a map")
                }
            }
            return map
        case .tagged(let tag, let value):
            let inner = try value.makeItem()
            return try LibCBORItem(cbor_build_tag(tag, inner.pointer))
        case .bool(let flag):
            return try LibCBORItem(cbor_build_bool(flag))
        case .null:
            return try LibCBORItem(cbor_new_null())
        }
    }
}
