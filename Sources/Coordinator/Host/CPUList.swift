/// The kernel's CPU list format ("0-3,8-11", Documentation/admin-guide/cputopology.rst), as used by
/// `/sys/devices/system/cpu/online`, `node*/cpulist`, `thread_siblings_list`, `taskset -c` and QEMU.
public enum CPUList {
    /// The highest CPU number accepted; the kernel's NR_CPUS is at most 8192.
    public static let maximumCPU = 65_535

    /// Parses a CPU list; an empty text (a memory-only NUMA node) is the empty list.
    ///
    /// - Parameter file: the file the text came from, named in the error when the text is malformed.
    /// - Returns: the CPU numbers, ascending, without duplicates.
    public static func parse(_ text: String, file: String) throws(CoordinatorError) -> [Int] {
        let trimmed = text.trimmingWhitespace()
        if trimmed.isEmpty { return [] }
        var cpus = Set<Int>()
        for element in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = element.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = number(bounds[0]), let high = number(bounds.last!) else {
                throw malformed(file, "'\(element)' in '\(trimmed)' is not a CPU number or a range N-M")
            }
            guard low <= high else { throw malformed(file, "the range '\(element)' runs backwards") }
            guard high <= maximumCPU else {
                throw malformed(file, "CPU \(high) is above the largest CPU number cmk accepts (\(maximumCPU))")
            }
            cpus.formUnion(low...high)
        }
        return cpus.sorted()
    }

    /// Formats CPU numbers as the kernel does: ascending, runs of two or more as ranges ("0-3,8").
    public static func format(_ cpus: some Sequence<Int>) -> String {
        let sorted = Set(cpus).sorted()
        var parts: [String] = []
        var index = 0
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }

    private static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 6, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    private static func malformed(_ file: String, _ detail: String) -> CoordinatorError {
        CoordinatorError(.malformedHostFile, "\(file) does not hold a CPU list: \(detail)")
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and newlines (no Foundation needed).
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
