public import Foundation
import BinaryFormat

/// A shared library an executable needs, at the absolute path the dynamic loader will look for it in the guest.
public struct SharedLibrary: Sendable, Hashable {
    /// The path as `ldd` names it (the dynamic loader's own path for the interpreter).
    public let path: String
    /// The library's contents (symbolic links on the host followed).
    public let bytes: [UInt8]
}

/// The agent (`cmk-guest`) as it goes into an image: the executable and, when it is dynamically linked, every shared
/// library `ldd` resolves for it plus the interpreter its `PT_INTERP` names.
public struct AgentBinary: Sendable, Hashable {
    public let source: URL
    public let bytes: [UInt8]
    /// The dynamic loader the executable asks for; nil when it is statically linked.
    public let interpreter: String?
    /// Sorted by path.
    public let libraries: [SharedLibrary]

    /// Reads the executable and resolves its libraries with `ldd` (only when it is dynamically linked).
    ///
    /// Throws ``GuestImageError/Code/missingInput`` when the file cannot be read,
    /// ``GuestImageError/Code/badExecutable`` when it is not a 64-bit ELF file or a library is not found.
    public static func load(_ url: URL) async throws(GuestImageError) -> AgentBinary {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw GuestImageError(.missingInput, "cannot read the agent \(url.path)")
        }
        let bytes = [UInt8](data)
        let elf: ELFFile
        do {
            elf = try ELFFile(bytes: bytes)
        } catch {
            throw GuestImageError(
                .badExecutable, "the agent \(url.path) is not a 64-bit ELF executable: \(error.description)")
        }
        guard let interpreter = elf.interpreter else {
            return AgentBinary(source: url, bytes: bytes, interpreter: nil, libraries: [])
        }
        let outcome = try await HostTool.run("ldd", [url.path])
        let listing = String(decoding: outcome.output, as: UTF8.self)
        guard outcome.status == 0, !outcome.timedOut else {
            throw GuestImageError(
                .toolFailed,
                "ldd \(url.path) failed (exit \(outcome.status)): "
                    + outcome.errorText.trimmingCharacters(in: .whitespacesAndNewlines)
            )
        }
        let parsed = try parseLDD(listing, executable: url.path)
        var paths = Set(parsed)
        paths.insert(interpreter)
        var libraries: [SharedLibrary] = []
        for path in paths.sorted() {
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw GuestImageError(.missingInput, "cannot read \(path), which the agent \(url.path) needs")
            }
            libraries.append(SharedLibrary(path: path, bytes: [UInt8](contents)))
        }
        return AgentBinary(source: url, bytes: bytes, interpreter: interpreter, libraries: libraries)
    }

    /// The library paths in `ldd` output. Lines are `name => /path (0x...)`, `/path/to/ld.so (0x...)` for the
    /// loader, and `linux-vdso.so.1 (0x...)` for the kernel's vDSO, which has no file and is skipped.
    static func parseLDD(_ listing: String, executable: String) throws(GuestImageError) -> [String] {
        var paths: [String] = []
        var missing: [String] = []
        for rawLine in listing.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            var target = line
            if let arrow = line.range(of: " => ") {
                target = String(line[arrow.upperBound...])
                if target.hasPrefix("not found") {
                    missing.append(String(line[..<arrow.lowerBound]))
                    continue
                }
            }
            guard target.hasPrefix("/") else { continue }
            if let address = target.range(of: " (0x") { target = String(target[..<address.lowerBound]) }
            paths.append(lexicallyNormalized(target))
        }
        guard missing.isEmpty else {
            throw GuestImageError(
                .badExecutable,
                "the agent \(executable) needs \(missing.joined(separator: ", ")), which ldd cannot find on this host")
        }
        return paths
    }

    /// `/a/./b/../c` → `/a/c`, by text alone: the loader in the guest looks for the path ldd printed, so symbolic
    /// links on the host must not be resolved (Foundation's `standardizingPath` does resolve them).
    static func lexicallyNormalized(_ path: String) -> String {
        var components: [Substring] = []
        for component in path.split(separator: "/") {
            switch component {
            case ".": continue
            case "..": _ = components.popLast()
            default: components.append(component)
            }
        }
        return "/" + components.joined(separator: "/")
    }
}
