import BinaryFormat
import Foundation
import Yams

/// A YAML node with its key path, read strictly: every accessor checks the type and throws a ``PolicyError``
/// that names the line and key. Mappings reject unknown and duplicate keys, so a typo never passes silently.
struct PolicyNode {
    let node: Node
    let path: String

    /// 1-based line of the node in the file.
    var line: Int? { node.mark.map { $0.line } }

    func error(_ code: PolicyError.Code, _ reason: String) -> PolicyError {
        PolicyError(code, reason, line: line, keyPath: path.isEmpty ? nil : path)
    }

    /// The child path for `key`.
    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Reads a mapping whose keys must all be in `allowed`.
    func mapping(allowed: [String]) throws(PolicyError) -> PolicyMapping {
        guard let mapping = node.mapping else {
            throw error(.wrongType, "expected a mapping with keys \(allowed.joined(separator: ", ")), found \(kind)")
        }
        var entries: [String: PolicyNode] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                throw PolicyNode(node: key, path: path).error(.wrongType, "mapping keys must be plain strings")
            }
            let keyPath = child(name)
            guard allowed.contains(name) else {
                let suggestion = allowed.min { Self.distance($0, name) < Self.distance($1, name) }
                    .flatMap { Self.distance($0, name) <= 2 ? " (did you mean '\($0)'?)" : nil } ?? ""
                throw PolicyError(
                    .unknownKey, "unknown key '\(name)'\(suggestion); allowed here: \(allowed.joined(separator: ", "))",
                    line: key.mark?.line, keyPath: keyPath)
            }
            guard entries[name] == nil else {
                throw PolicyError(.duplicateKey, "'\(name)' appears twice", line: key.mark?.line, keyPath: keyPath)
            }
            entries[name] = PolicyNode(node: value, path: keyPath)
        }
        return PolicyMapping(owner: self, entries: entries)
    }

    /// Reads a mapping with arbitrary string keys (e.g. RTMR index → values).
    func anyMapping() throws(PolicyError) -> [(key: String, value: PolicyNode)] {
        guard let mapping = node.mapping else { throw error(.wrongType, "expected a mapping, found \(kind)") }
        var seen: Set<String> = []
        var result: [(key: String, value: PolicyNode)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                throw PolicyNode(node: key, path: path).error(.wrongType, "mapping keys must be plain strings")
            }
            guard seen.insert(name).inserted else {
                throw PolicyError(.duplicateKey, "'\(name)' appears twice", line: key.mark?.line, keyPath: child(name))
            }
            result.append((name, PolicyNode(node: value, path: child(name))))
        }
        return result
    }

    var kind: String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let scalar): "'\(scalar.string)'"
        case .alias: "an alias"
        }
    }

    func string() throws(PolicyError) -> String {
        guard let scalar = node.scalar else { throw error(.wrongType, "expected a text value, found \(kind)") }
        return scalar.string
    }

    /// A non-empty identifier-like string.
    func name(pattern: String = "identifier") throws(PolicyError) -> String {
        let value = try string()
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@")
        guard !value.isEmpty, value.count <= 128, value.allSatisfy({ allowed.contains($0) }) else {
            throw error(.invalidValue, "'\(value)' is not a valid \(pattern): use letters, digits and - _ . : / @ (at most 128)")
        }
        return value
    }

    /// An integer in `range`, decimal or 0x-hexadecimal.
    func integer(in range: ClosedRange<Int>) throws(PolicyError) -> Int {
        guard node.scalar != nil else { throw error(.wrongType, "expected a whole number, found \(kind)") }
        let text = try string().replacingOccurrences(of: "_", with: "")
        let value: Int? = text.hasPrefix("0x") || text.hasPrefix("0X") ? Int(text.dropFirst(2), radix: 16) : Int(text)
        guard let value else { throw error(.wrongType, "expected a whole number, found '\(text)'") }
        guard range.contains(value) else {
            throw error(.invalidValue, "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func bool() throws(PolicyError) -> Bool {
        switch try string() {
        case "true": return true
        case "false": return false
        case let other: throw error(.wrongType, "expected true or false, found '\(other)'")
        }
    }

    /// One of the given words.
    func choice(_ choices: [String]) throws(PolicyError) -> String {
        let value = try string()
        guard choices.contains(value) else {
            throw error(.invalidValue, "'\(value)' is not one of \(choices.joined(separator: ", "))")
        }
        return value
    }

    /// Hex of exactly `length` bytes (an optional `0x` prefix is allowed).
    func hex(length: Int) throws(PolicyError) -> [UInt8] {
        var text = try string().lowercased()
        if text.hasPrefix("0x") { text.removeFirst(2) }
        guard let bytes = Hex.decode(text) else { throw error(.wrongType, "'\(text)' is not hexadecimal") }
        guard bytes.count == length else {
            throw error(.invalidValue, "expected \(length) bytes (\(length * 2) hex digits), found \(bytes.count)")
        }
        return bytes
    }

    func list() throws(PolicyError) -> [PolicyNode] {
        guard case .sequence(let sequence) = node else { throw error(.wrongType, "expected a list, found \(kind)") }
        return sequence.enumerated().map { PolicyNode(node: $0.element, path: "\(path)[\($0.offset)]") }
    }

    /// A date `YYYY-MM-DD` (midnight UTC) or an ISO 8601 instant.
    func date() throws(PolicyError) -> Date {
        let text = try string()
        if let instant = ISO8601DateFormatter().date(from: text) { return instant }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if let date = day.date(from: text) { return date }
        throw error(.wrongType, "'\(text)' is not a date (2027-01-31) or an ISO 8601 time (2027-01-31T00:00:00Z)")
    }

    /// A duration such as `300s`, `5m`, `2h`, `7d`; returns seconds.
    func duration() throws(PolicyError) -> Int {
        let text = try string()
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count > 0 else {
            throw error(.wrongType, "'\(text)' is not a duration: write a positive number with s, m, h or d, e.g. 5m")
        }
        let (seconds, overflow) = count.multipliedReportingOverflow(by: unit)
        guard !overflow, seconds <= 366 * 86400 else { throw error(.invalidValue, "'\(text)' is longer than a year") }
        return seconds
    }

    /// Edit distance, for "did you mean" suggestions.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}

/// The keys of one mapping, read once each.
struct PolicyMapping {
    let owner: PolicyNode
    let entries: [String: PolicyNode]

    subscript(key: String) -> PolicyNode? { entries[key] }

    func require(_ key: String) throws(PolicyError) -> PolicyNode {
        guard let node = entries[key] else {
            throw PolicyError(.missingKey, "'\(key)' is required here", line: owner.line, keyPath: owner.child(key))
        }
        return node
    }
}

/// Parses YAML text into the root node, mapping libyaml's errors to ``PolicyError``.
enum PolicyYAML {
    static func root(_ text: String) throws(PolicyError) -> PolicyNode {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw PolicyError(.missingKey, "the file is empty")
            }
            return PolicyNode(node: node, path: "")
        } catch let error as PolicyError {
            throw error
        } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
            throw PolicyError(
                .duplicateKey, "\(duplicates.map { "'\($0)'" }.joined(separator: ", ")) appear(s) twice in one mapping",
                line: context.mark.line)
        } catch let error as YamlError {
            let text = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            throw PolicyError(.syntax, "not valid YAML: \(text)", line: Self.line(of: error))
        } catch {
            throw PolicyError(.syntax, "not valid YAML: \(error)")
        }
    }

    static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
        default: nil
        }
    }
}
