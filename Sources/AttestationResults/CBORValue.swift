/// A CBOR data item (RFC 8949) as a Swift value: what cmk's COSE, CWT and EAR code works with.
///
/// Encoding and decoding go through libcbor (see `LibCBOR.swift`); only definite-length items,
/// integers, byte and text strings, arrays, maps, tags, booleans and null are accepted — floats,
/// undefined and indefinite-length items are rejected, as no structure cmk reads uses them.
public indirect enum CBORValue: Sendable, Hashable {
    /// Major type 0: an unsigned integer.
    case unsigned(UInt64)
    /// Major type 1: the integer `-1 - n`.
    case negative(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBORValue])
    /// Major type 5, in the order the entries appear on the wire.
    case map([CBORMapEntry])
    case tagged(UInt64, CBORValue)
    case bool(Bool)
    case null

    /// An integer of either sign.
    public static func int(_ value: Int64) -> CBORValue {
        value >= 0 ? .unsigned(UInt64(value)) : .negative(UInt64(-(value + 1)))
    }

    /// The value as a signed integer, if it is an integer that fits.
    public var intValue: Int64? {
        switch self {
        case .unsigned(let n) where n <= UInt64(Int64.max): Int64(n)
        case .negative(let n) where n <= UInt64(Int64.max): -1 - Int64(n)
        default: nil
        }
    }

    public var bytesValue: [UInt8]? { if case .bytes(let b) = self { b } else { nil } }
    public var textValue: String? { if case .text(let t) = self { t } else { nil } }
    public var arrayValue: [CBORValue]? { if case .array(let a) = self { a } else { nil } }
    public var mapValue: [CBORMapEntry]? { if case .map(let m) = self { m } else { nil } }

    /// Looks up a map entry by key; nil when this is not a map or the key is absent.
    public subscript(key: CBORValue) -> CBORValue? {
        mapValue?.first(where: { $0.key == key })?.value
    }
}

/// One key/value pair of a CBOR map.
public struct CBORMapEntry: Sendable, Hashable {
    public var key: CBORValue
    public var value: CBORValue
    public init(_ key: CBORValue, _ value: CBORValue) {
        self.key = key
        self.value = value
    }
}

/// The CBOR errors are the module's one error type; the old name stays for callers that use it.
public typealias CBORError = AttestationResultsError
