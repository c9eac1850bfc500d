import BinaryFormat
import Crypto

/// The demo workload every cmk-guest serves (docs/updates.md, "The demo workload"): a key-value store with counters,
/// reached from the host only through `.workloadRequest` on the control port (the child has no network), and whose
/// whole state moves to a successor over a sealed channel during `cmk update`.
///
/// Requests and responses are one line of text each, without the newline:
///
/// ```
/// PING                 → OK PONG
/// WHO                  → OK <instance>            which instance answered
/// GET <key>            → OK <value>  | ERR not-found ...
/// SET <key> <value>    → OK                       the value is the rest of the line (spaces allowed)
/// INCR <key> [<delta>] → OK <new value>           a missing key counts from 0; delta is a signed 64-bit integer
/// DEL <key>            → OK 1 | OK 0
/// COUNT                → OK <number of keys>
/// ```
///
/// A key is 1 to 128 of `A-Z a-z 0-9 . _ : / -`; a value is at most 4096 bytes of UTF-8 without control characters.
/// Anything else is answered `ERR <code> <reason>` (codes: `bad-request`, `not-found`, `not-integer`, `overflow`,
/// `full`); a request never stops the agent.
public final class KeyValueWorkload {
    /// The most keys the store holds.
    public static let maximumKeys = 65536
    /// The most bytes of keys and values together.
    public static let maximumBytes = 16 << 20
    public static let maximumKey = 128
    public static let maximumValue = 4096

    let instance: String
    private(set) var entries: [String: String] = [:]
    private(set) var byteCount = 0
    /// Requests answered (for the log and tests).
    public private(set) var served: UInt64 = 0

    public init(instance: String) { self.instance = instance }

    /// The answer to one request line.
    public func handle(_ request: [UInt8]) -> [UInt8] {
        served += 1
        return Array(answer(request).utf8)
    }

    /// A value by key (tests and status).
    public func value(_ key: String) -> String? { entries[key] }
    public var count: Int { entries.count }

    private func answer(_ raw: [UInt8]) -> String {
        guard let line = String(validating: raw, as: UTF8.self) else { return "ERR bad-request the request is not UTF-8" }
        guard !line.isEmpty else { return "ERR bad-request an empty request" }
        guard !line.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            return "ERR bad-request control characters in the request"
        }
        let command: Substring
        let rest: Substring
        if let space = line.firstIndex(of: " ") {
            command = line[..<space]
            rest = line[line.index(after: space)...]
        } else {
            command = line[...]
            rest = ""
        }
        switch command.uppercased() {
        case "PING":
            return rest.isEmpty ? "OK PONG" : "ERR bad-request PING takes no argument"
        case "WHO":
            return rest.isEmpty ? "OK \(instance)" : "ERR bad-request WHO takes no argument"
        case "COUNT":
            return rest.isEmpty ? "OK \(entries.count)" : "ERR bad-request COUNT takes no argument"
        case "GET":
            guard let key = Self.key(rest) else { return Self.badKey("GET") }
            guard let value = entries[key] else { return "ERR not-found no key \(key)" }
            return "OK \(value)"
        case "DEL":
            guard let key = Self.key(rest) else { return Self.badKey("DEL") }
            guard let old = entries.removeValue(forKey: key) else { return "OK 0" }
            byteCount -= key.utf8.count + old.utf8.count
            return "OK 1"
        case "SET":
            let parts = rest.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let key = Self.key(parts[0]) else {
                return "ERR bad-request usage: SET <key> <value>; a key is 1 to \(Self.maximumKey) of A-Z a-z 0-9 . _ : / -"
            }
            let value = String(parts[1])
            guard value.utf8.count <= Self.maximumValue else {
                return "ERR bad-request a value has at most \(Self.maximumValue) bytes (this one \(value.utf8.count))"
            }
            if let problem = store(key, value) { return problem }
            return "OK"
        case "INCR":
            let parts = rest.split(separator: " ", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), let key = Self.key(parts[0]) else {
                return "ERR bad-request usage: INCR <key> [<delta>]"
            }
            var delta: Int64 = 1
            if parts.count == 2 {
                guard let parsed = Int64(parts[1]) else {
                    return "ERR bad-request the delta '\(parts[1].prefix(32))' is not a 64-bit integer"
                }
                delta = parsed
            }
            let current: Int64
            if let text = entries[key] {
                guard let number = Int64(text) else { return "ERR not-integer the value of \(key) is not an integer" }
                current = number
            } else {
                current = 0
            }
            let (sum, overflow) = current.addingReportingOverflow(delta)
            guard !overflow else { return "ERR overflow \(key) + \(delta) does not fit in 64 bits" }
            if let problem = store(key, String(sum)) { return problem }
            return "OK \(sum)"
        default:
            return "ERR bad-request unknown command '\(command.prefix(16))' (PING, WHO, GET, SET, INCR, DEL, COUNT)"
        }
    }

    private func store(_ key: String, _ value: String) -> String? {
        let old = entries[key]
        let grown = byteCount - (old.map { key.utf8.count + $0.utf8.count } ?? 0) + key.utf8.count + value.utf8.count
        guard old != nil || entries.count < Self.maximumKeys else { return "ERR full the store holds \(Self.maximumKeys) keys" }
        guard grown <= Self.maximumBytes else { return "ERR full the store holds at most \(Self.maximumBytes) bytes" }
        entries[key] = value
        byteCount = grown
        return nil
    }

    static func badKey(_ command: String) -> String {
        "ERR bad-request usage: \(command) <key>; a key is 1 to \(maximumKey) of A-Z a-z 0-9 . _ : / -"
    }

    static func key(_ text: Substring) -> String? {
        isValidKey(text.utf8) ? String(text) : nil
    }

    static func isValidKey(_ bytes: some Collection<UInt8>) -> Bool {
        guard (1...maximumKey).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || [0x2E, 0x5F, 0x3A, 0x2F, 0x2D].contains(byte)
        }
    }

    static func isValidValue(_ bytes: [UInt8]) -> Bool {
        guard bytes.count <= maximumValue, let text = String(validating: bytes, as: UTF8.self) else { return false }
        return !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    }

    // MARK: State transfer (sealed records, docs/updates.md "State transfer")

    /// The whole state as record bodies: chunks of entries, then the summary that closes the transfer.
    public func exportState(maximumChunk: Int = 60 << 10) -> WorkloadStateExport {
        var chunks: [[UInt8]] = []
        var chunk: [UInt8] = []
        var inChunk: UInt32 = 0
        var digest = SHA256()
        var bytes: UInt64 = 0
        func flush() {
            guard inChunk > 0 else { return }
            let body = WorkloadState.u32(inChunk) + chunk
            digest.update(data: body)
            bytes += UInt64(body.count)
            chunks.append(body)
            chunk = []
            inChunk = 0
        }
        for key in entries.keys.sorted() {
            let value = Array(entries[key]!.utf8)
            let keyBytes = Array(key.utf8)
            let entry = [UInt8(keyBytes.count >> 8), UInt8(keyBytes.count & 0xFF)] + keyBytes + WorkloadState.u32(UInt32(value.count)) + value
            if chunk.count + entry.count + 4 > maximumChunk { flush() }
            chunk += entry
            inChunk += 1
        }
        flush()
        let summary = WorkloadState.Summary(
            entries: UInt64(entries.count), bytes: bytes, digest: Array(digest.finalize()))
        return WorkloadStateExport(chunks: chunks, summary: summary)
    }

    /// Replaces the whole state (after a complete, checked import).
    func replace(with imported: [String: String]) {
        entries = imported
        byteCount = imported.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
    }
}

/// What ``KeyValueWorkload/exportState(maximumChunk:)`` gives: the chunk bodies and the summary.
public struct WorkloadStateExport: Sendable {
    public let chunks: [[UInt8]]
    public let summary: WorkloadState.Summary
}

/// The state-transfer encoding inside sealed records, and its checked reassembly on the receiving side.
public enum WorkloadState {
    /// The last record of a transfer: `u64be entries ‖ u64be bytes (of all chunk bodies) ‖ SHA-256 of them`.
    public struct Summary: Sendable, Hashable {
        public let entries: UInt64
        public let bytes: UInt64
        public let digest: [UInt8]

        public var encoded: [UInt8] { u64(entries) + u64(bytes) + digest }

        public init(entries: UInt64, bytes: UInt64, digest: [UInt8]) {
            self.entries = entries
            self.bytes = bytes
            self.digest = digest
        }

        public init(bytes body: [UInt8]) throws(WorkloadStateError) {
            var c = ByteCursor(body)
            do throws(BinaryFormatError) {
                entries = try c.readBigEndian(UInt64.self, field: "entries")
                bytes = try c.readBigEndian(UInt64.self, field: "bytes")
                digest = try c.readBytes(32, field: "digest")
                try c.expectEnd(field: "state summary")
            } catch {
                throw WorkloadStateError("a malformed state summary: \(error)")
            }
        }
    }

    static func u32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    static func u64(_ value: UInt64) -> [UInt8] { u32(UInt32(value >> 32)) + u32(UInt32(value & 0xFFFF_FFFF)) }

    /// Reassembles a transfer chunk by chunk; nothing replaces the live state until ``finish(_:)`` checked it all.
    public struct Import: Sendable {
        private(set) var entries: [String: String] = [:]
        private var digest = SHA256()
        private(set) var bytes: UInt64 = 0
        private var totalBytes = 0

        public init() {}

        public mutating func add(chunk body: [UInt8]) throws(WorkloadStateError) {
            var c = ByteCursor(body)
            func read<T>(_ step: (inout ByteCursor) throws(BinaryFormatError) -> T) throws(WorkloadStateError) -> T {
                do throws(BinaryFormatError) { return try step(&c) } catch {
                    throw WorkloadStateError("a malformed state chunk: \(error)")
                }
            }
            let count = try read { (c: inout ByteCursor) throws(BinaryFormatError) in try c.readBigEndian(UInt32.self, field: "entry count") }
            var added: [String: String] = [:]
            var addedBytes = 0
            for _ in 0..<count {
                let keyLength = Int(try read { (c: inout ByteCursor) throws(BinaryFormatError) in try c.readBigEndian(UInt16.self, field: "key length") })
                let key = try read { (c: inout ByteCursor) throws(BinaryFormatError) in try c.readBytes(keyLength, field: "key") }
                let valueLength = Int(try read { (c: inout ByteCursor) throws(BinaryFormatError) in try c.readBigEndian(UInt32.self, field: "value length") })
                guard valueLength <= KeyValueWorkload.maximumValue else {
                    throw WorkloadStateError("a value of \(valueLength) bytes (at most \(KeyValueWorkload.maximumValue))")
                }
                let value = try read { (c: inout ByteCursor) throws(BinaryFormatError) in try c.readBytes(valueLength, field: "value") }
                guard KeyValueWorkload.isValidKey(key), KeyValueWorkload.isValidValue(value) else {
                    throw WorkloadStateError("an entry whose key or value the workload would not accept")
                }
                let keyText = String(decoding: key, as: UTF8.self)
                guard entries[keyText] == nil, added[keyText] == nil else { throw WorkloadStateError("the key \(keyText) came twice") }
                guard entries.count + added.count < KeyValueWorkload.maximumKeys else {
                    throw WorkloadStateError("more than \(KeyValueWorkload.maximumKeys) keys")
                }
                addedBytes += key.count + value.count
                guard totalBytes + addedBytes <= KeyValueWorkload.maximumBytes else {
                    throw WorkloadStateError("more than \(KeyValueWorkload.maximumBytes) bytes of state")
                }
                added[keyText] = String(decoding: value, as: UTF8.self)
            }
            guard c.remaining == 0 else { throw WorkloadStateError("a malformed state chunk: \(c.remaining) bytes after its entries") }
            // Only a whole chunk counts: a refused one leaves what arrived before it unchanged.
            entries.merge(added) { old, _ in old }
            totalBytes += addedBytes
            digest.update(data: body)
            bytes += UInt64(body.count)
        }

        /// The complete state, when the summary agrees with what arrived (count, bytes, digest in constant time).
        public func finish(_ summary: Summary) throws(WorkloadStateError) -> [String: String] {
            guard summary.entries == UInt64(entries.count), summary.bytes == bytes else {
                throw WorkloadStateError(
                    "the sender announced \(summary.entries) entries in \(summary.bytes) bytes; \(entries.count) in "
                        + "\(bytes) arrived")
            }
            guard constantTimeEqual(Array(digest.finalize()), summary.digest) else {
                throw WorkloadStateError("the state's digest does not match the sender's")
            }
            return entries
        }
    }
}

/// A state transfer that cannot be accepted.
public struct WorkloadStateError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
