import BinaryFormat

/// The part of an instance manifest (the coordinator's canonical JSON, docs/coordinator.md) a channel needs: the
/// instance's name, its policy id, the peers it may open channels with, and the launch measurements it pins for some
/// of them. Read with a small strict JSON reader, because the agent links no Foundation.
struct ManifestIdentity: Sendable, Hashable {
    let name: String
    let policyID: String?
    let channelPeers: [String]
    /// `peerMeasurements`: for a peer (by instance name or policy id, as `channelPeers` names it), the launch
    /// measurements (SEV-SNP MEASUREMENT, TDX MRTD; 48 bytes each) it must have. Absent: no pin.
    let peerMeasurements: [String: [[UInt8]]]

    /// The measurements pinned for `peer`: those under its instance name and those under its policy id, or nil when
    /// neither is pinned.
    func pinnedMeasurements(for peer: ManifestIdentity) -> [[UInt8]]? {
        let byName = peerMeasurements[peer.name]
        let byPolicy = peer.policyID.flatMap { peerMeasurements[$0] }
        if byName == nil && byPolicy == nil { return nil }
        return (byName ?? []) + (byPolicy ?? [])
    }

    /// The instances this one may hand its workload state to or take it from (`cmk update`, docs/updates.md): its
    /// designated successor and, for a successor, its predecessor. Absent in manifests from before updates: none.
    let updatePeers: [String]

    /// Whether a channel with `peer` is allowed at all (as a channel peer or as an update peer).
    func permits(_ peer: String) -> Bool { channelPeers.contains(peer) || updatePeers.contains(peer) }

    init(json bytes: [UInt8]) throws(ManifestJSONError) {
        var reader = ManifestJSONReader(bytes)
        let value = try reader.document()
        guard case .object(let fields) = value else { throw ManifestJSONError("the manifest is not a JSON object") }
        guard case .string(let name)? = fields["name"] else { throw ManifestJSONError("the manifest names no instance") }
        guard case .array(let peers)? = fields["channelPeers"] else {
            throw ManifestJSONError("the manifest has no channelPeers list")
        }
        var names: [String] = []
        for peer in peers {
            guard case .string(let peerName) = peer else { throw ManifestJSONError("a channel peer is not a string") }
            names.append(peerName)
        }
        var pins: [String: [[UInt8]]] = [:]
        switch fields["peerMeasurements"] {
        case nil, .null?: break
        case .object(let entries)?:
            for (peer, value) in entries {
                guard case .array(let items) = value, !items.isEmpty else {
                    throw ManifestJSONError("peerMeasurements.\(peer) is not a non-empty list")
                }
                var digests: [[UInt8]] = []
                for item in items {
                    guard case .string(let text) = item, let digest = Hex.decode(text), digest.count == 48 else {
                        throw ManifestJSONError("peerMeasurements.\(peer) holds a value that is not 48 bytes of hex")
                    }
                    digests.append(digest)
                }
                pins[peer] = digests
            }
        case _?:
            throw ManifestJSONError("peerMeasurements is not an object")
        }
        if case .string(let policy)? = fields["policyID"] { policyID = policy } else { policyID = nil }
        var updates: [String] = []
        switch fields["updatePeers"] {
        case nil: break
        case .array(let peers)?:
            for peer in peers {
                guard case .string(let peerName) = peer else { throw ManifestJSONError("an update peer is not a string") }
                updates.append(peerName)
            }
        default: throw ManifestJSONError("updatePeers is not a list")
        }
        self.name = name
        channelPeers = names
        peerMeasurements = pins
        updatePeers = updates
    }
}

struct ManifestJSONError: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A JSON value, as far as a manifest needs one.
enum ManifestJSONValue: Sendable, Hashable {
    case object([String: ManifestJSONValue])
    case array([ManifestJSONValue])
    case string(String)
    case number(String)
    case bool(Bool)
    case null
}

/// RFC 8259 JSON, strictly: one value, nesting at most 16 deep, no trailing bytes, no duplicate keys.
struct ManifestJSONReader {
    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() throws(ManifestJSONError) -> ManifestJSONValue {
        let value = try self.value()
        skipSpace()
        guard index == bytes.count else { throw ManifestJSONError("bytes after the JSON value at offset \(index)") }
        return value
    }

    private mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws(ManifestJSONError) {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else {
            throw ManifestJSONError("expected '\(Character(Unicode.Scalar(byte)))' at offset \(index)")
        }
        index += 1
    }

    private mutating func peek() throws(ManifestJSONError) -> UInt8 {
        skipSpace()
        guard index < bytes.count else { throw ManifestJSONError("the JSON ends early") }
        return bytes[index]
    }

    private mutating func literal(_ text: String) throws(ManifestJSONError) {
        let expected = Array(text.utf8)
        guard bytes.count - index >= expected.count, Array(bytes[index..<(index + expected.count)]) == expected else {
            throw ManifestJSONError("unexpected bytes at offset \(index)")
        }
        index += expected.count
    }

    private mutating func value() throws(ManifestJSONError) -> ManifestJSONValue {
        depth += 1
        defer { depth -= 1 }
        guard depth <= 16 else { throw ManifestJSONError("the JSON nests deeper than 16") }
        switch try peek() {
        case UInt8(ascii: "{"):
            index += 1
            var fields: [String: ManifestJSONValue] = [:]
            if try peek() == UInt8(ascii: "}") {
                index += 1
                return .object(fields)
            }
            while true {
                guard try peek() == UInt8(ascii: "\"") else { throw ManifestJSONError("a key must be a string") }
                let key = try string()
                try expect(UInt8(ascii: ":"))
                guard fields[key] == nil else { throw ManifestJSONError("the key \(key) appears twice") }
                fields[key] = try value()
                let next = try peek()
                index += 1
                if next == UInt8(ascii: "}") { return .object(fields) }
                guard next == UInt8(ascii: ",") else { throw ManifestJSONError("expected ',' or '}' at \(index - 1)") }
            }
        case UInt8(ascii: "["):
            index += 1
            var items: [ManifestJSONValue] = []
            if try peek() == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            while true {
                items.append(try value())
                let next = try peek()
                index += 1
                if next == UInt8(ascii: "]") { return .array(items) }
                guard next == UInt8(ascii: ",") else { throw ManifestJSONError("expected ',' or ']' at \(index - 1)") }
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            let start = index
            while index < bytes.count, Array("+-0123456789.eE".utf8).contains(bytes[index]) { index += 1 }
            guard index > start else { throw ManifestJSONError("unexpected byte at offset \(start)") }
            return .number(String(decoding: bytes[start..<index], as: UTF8.self))
        }
    }

    private mutating func string() throws(ManifestJSONError) -> String {
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() throws(ManifestJSONError) {
            guard let text = String(validating: raw, as: UTF8.self) else { throw ManifestJSONError("a string is not UTF-8") }
            scalars.append(contentsOf: text.unicodeScalars)
            raw.removeAll()
        }
        while true {
            guard index < bytes.count else { throw ManifestJSONError("a string is not closed") }
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                try flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                try flush()
                guard index < bytes.count else { throw ManifestJSONError("a string ends in an escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    guard bytes.count - index >= 4,
                        let code = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16),
                        let scalar = Unicode.Scalar(code)
                    else { throw ManifestJSONError("a \\u escape is malformed (surrogates are not accepted)") }
                    index += 4
                    scalars.append(scalar)
                default:
                    throw ManifestJSONError("an unknown escape in a string")
                }
            case 0x00..<0x20:
                throw ManifestJSONError("a control character in a string")
            default:
                raw.append(byte)
            }
        }
    }
}
