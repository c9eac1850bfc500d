import Glibc

/// The file operations the configfs-tsm flow needs. `SystemFiles` calls the kernel; tests substitute a directory
/// that behaves like configfs (attribute files appear on `mkdir`, a write to `inblob` bumps `generation`).
public protocol ConfigfsFiles {
    /// `mkdir(2)`.
    func makeDirectory(_ path: String) throws(GuestAgentError)
    /// `rmdir(2)`.
    func removeDirectory(_ path: String) throws(GuestAgentError)
    /// Reads the whole attribute.
    func read(_ path: String) throws(GuestAgentError) -> [UInt8]
    /// Writes the attribute in one `write(2)` (configfs takes an attribute's value in one write).
    func write(_ path: String, _ bytes: [UInt8]) throws(GuestAgentError)
    /// Whether the path exists (attributes a provider hides are absent).
    func exists(_ path: String) -> Bool
}

/// The real file system.
public struct SystemFiles: ConfigfsFiles {
    public init() {}

    public func makeDirectory(_ path: String) throws(GuestAgentError) {
        guard mkdir(path, 0o700) == 0 else {
            let number = errno
            switch number {
            case ENXIO:
                throw .system(
                    .unavailable, "configfs-tsm has no provider (no SEV-SNP or TDX guest driver bound): mkdir \(path)",
                    errno: number)
            case ENOENT:
                throw .system(.unavailable, "configfs-tsm is not mounted or not built in: mkdir \(path)", errno: number)
            default:
                throw .system(.io, "mkdir \(path)", errno: number)
            }
        }
    }

    public func removeDirectory(_ path: String) throws(GuestAgentError) {
        guard rmdir(path) == 0 else { throw .system(.io, "rmdir \(path)", errno: errno) }
    }

    public func read(_ path: String) throws(GuestAgentError) -> [UInt8] {
        try FileDescriptor.open(path, flags: O_RDONLY).readToEnd(limit: 16 << 20)
    }

    /// configfs hands a binary attribute (`inblob`) to the kernel when the file is closed, so a refusal can come
    /// from `close(2)`: the descriptor is closed here, and that result checked too.
    public func write(_ path: String, _ bytes: [UInt8]) throws(GuestAgentError) {
        let fd = retryingOnInterrupt { Glibc.open(path, O_WRONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw .system(errno == ENOENT ? .unavailable : .io, "open \(path)", errno: errno) }
        let written = bytes.withUnsafeBytes { raw in
            retryingOnInterrupt { Glibc.write(fd, raw.baseAddress!, raw.count) }
        }
        let writeError = errno
        let closed = Glibc.close(fd)
        let closeError = errno
        guard written == bytes.count else {
            throw written < 0
                ? .system(.device, "write \(path)", errno: writeError)
                : GuestAgentError(.io, "write \(path): \(written) of \(bytes.count) bytes taken")
        }
        guard closed == 0 else { throw .system(.device, "write \(path) (on close)", errno: closeError) }
    }

    public func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}

/// Reports and quotes from Linux's configfs-tsm (`/sys/kernel/config/tsm/report`, Linux 6.7 and later), the
/// vendor-neutral interface: an SEV-SNP report with the host's certificate table, or a TDX quote (the kernel asks
/// the host's Quote Generation Service).
///
/// One request: make an entry (`mkdir`), read `generation`, write `privlevel` (when a VMPL is asked for) and
/// `inblob` (REPORT_DATA), read `outblob`, `auxblob` (when the provider shows it) and `provider`, read `generation`
/// again, remove the entry. Every write bumps `generation` by one; a different count means another process wrote to
/// the same entry meanwhile, so the outblob may answer someone else's inblob: the agent retries with a fresh entry
/// a bounded number of times, then fails.
public struct ConfigfsTSMProvider: EvidenceProvider {
    /// Where configfs-tsm keeps report entries.
    public static let defaultRoot = "/sys/kernel/config/tsm/report"
    /// Where Linux exposes the CCEL event log of a TDX guest (the ACPI table's data region).
    public static let defaultEventLogPath = "/sys/firmware/acpi/tables/data/CCEL"
    /// configfs-tsm's `provider` values and the evidence each produces.
    static let kinds: [String: EvidenceKind] = ["sev_guest": .sevSNP, "tdx_guest": .tdx]

    public var name: String { "configfs-tsm" }
    /// The report directory.
    public let root: String
    /// The privilege level (SEV-SNP VMPL) to write to `privlevel`; nil leaves the provider's default.
    public let privilegeLevel: UInt32?
    /// How many entries to try before giving up on a concurrent writer.
    public let attempts: Int
    /// The TDX event log sent as the auxiliary blob of a TDX quote; nil sends none.
    public let eventLogPath: String?
    let files: any ConfigfsFiles

    public init(
        root: String = defaultRoot, privilegeLevel: UInt32? = nil, attempts: Int = 3,
        eventLogPath: String? = defaultEventLogPath, files: any ConfigfsFiles = SystemFiles()
    ) {
        self.root = root
        self.privilegeLevel = privilegeLevel
        self.attempts = max(1, attempts)
        self.eventLogPath = eventLogPath
        self.files = files
    }

    /// Whether configfs-tsm can make reports here: an entry can be created (configfs answers ENXIO when no
    /// provider is bound, although the directory exists). Creates and removes one entry; generates no report.
    public func probe() -> Bool {
        guard files.exists(root) else { return false }
        let entry = "\(root)/\(Self.entryName())"
        guard (try? files.makeDirectory(entry)) != nil else { return false }
        try? files.removeDirectory(entry)
        return true
    }

    public func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        try requireReportData(reportData)
        var race: GuestAgentError?
        for _ in 0..<attempts {
            do throws(GuestAgentError) {
                return try generate(reportData, entry: "\(root)/\(Self.entryName())")
            } catch where error.code == .concurrentWriter {
                race = error
            }
        }
        throw GuestAgentError(
            .concurrentWriter,
            "another process kept writing to configfs-tsm report entries: \(attempts) attempts failed, the last with: "
                + (race?.reason ?? "a generation mismatch"))
    }

    /// One report in one entry.
    func generate(_ reportData: [UInt8], entry: String) throws(GuestAgentError) -> Evidence {
        try files.makeDirectory(entry)
        defer { try? files.removeDirectory(entry) }
        let before = try generation(entry)
        var expected = before
        if let privilegeLevel {
            try files.write("\(entry)/privlevel", Array("\(privilegeLevel)\n".utf8))
            expected += 1
        }
        try files.write("\(entry)/inblob", reportData)
        expected += 1
        let outblob = try files.read("\(entry)/outblob")
        let auxblob = files.exists("\(entry)/auxblob") ? try files.read("\(entry)/auxblob") : []
        let provider = String(decoding: try files.read("\(entry)/provider"), as: UTF8.self)
            .trimmingSuffix(while: { $0 == "\n" || $0 == " " })
        let after = try generation(entry)
        guard after == expected else {
            throw GuestAgentError(
                .concurrentWriter,
                "generation of \(entry) went from \(before) to \(after) while this agent wrote \(expected - before) "
                    + "time(s): another writer changed the request")
        }
        guard let kind = Self.kinds[provider] else {
            throw GuestAgentError(.unavailable, "configfs-tsm provider '\(provider)' is not one this agent knows")
        }
        var auxiliary = auxblob
        if kind == .tdx {
            auxiliary = []
            if let eventLogPath, files.exists(eventLogPath) { auxiliary = try files.read(eventLogPath) }
        }
        return Evidence(kind: kind, evidence: outblob, auxiliary: auxiliary)
    }

    /// The entry's `generation` (decimal, newline-terminated).
    func generation(_ entry: String) throws(GuestAgentError) -> UInt64 {
        let text = String(decoding: try files.read("\(entry)/generation"), as: UTF8.self)
        guard let value = UInt64(text.trimmingSuffix(while: { $0 == "\n" || $0 == " " })) else {
            throw GuestAgentError(.malformedResponse, "\(entry)/generation holds '\(text)', not a number")
        }
        return value
    }

    /// A name no other process uses: the agent's pid and 64 random bits.
    static func entryName() -> String {
        "cmk-guest-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
    }
}

extension String {
    /// The string without the trailing characters that match.
    func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var result = self
        while let last = result.last, predicate(last) { result.removeLast() }
        return result
    }
}
