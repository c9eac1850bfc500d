public import Foundation

/// Locates the test vectors and the project's own folders for tests.
///
/// The vectors live in `../shared/vectors` beside the clone (CI puts them there); `CMK_SHARED_DIR`
/// overrides the location.
public enum SharedVectors {
    /// The repository root (the folder holding Package.swift).
    public static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    /// The `shared/` folder.
    public static var sharedDirectory: URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_SHARED_DIR"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    /// `shared/vectors/<relative>`.
    public static func url(_ relative: String) -> URL {
        sharedDirectory.appendingPathComponent("vectors").appendingPathComponent(relative)
    }

    /// The bytes of `shared/vectors/<relative>`; throws when the file is missing, so a test cannot pass without it.
    public static func bytes(_ relative: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(relative)))
    }

    /// The text of `shared/vectors/<relative>`.
    public static func text(_ relative: String) throws -> String {
        try String(contentsOf: url(relative), encoding: .utf8)
    }

    /// A decoded JSON object from `shared/vectors/<relative>`.
    public static func json(_ relative: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url(relative))) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        return object
    }

    /// The project's `attestation/` folder.
    public static var attestationDirectory: URL { repositoryRoot.appendingPathComponent("attestation") }
}

/// Runs the built `cmk` executable the way a user does.
public enum BuiltCMK {
    /// The `cmk` binary beside the running test bundle (`swift build --build-tests` builds both).
    public static func executable() throws -> URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("cmk")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        let fallback = SharedVectors.repositoryRoot.appendingPathComponent(".build/debug/cmk")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: fallback.path])
        }
        return fallback
    }

    /// What one run of `cmk` printed and returned.
    public struct Output: Sendable {
        public let status: Int32
        public let standardOutput: String
        public let standardError: String
    }

    /// Runs `cmk arguments...` with standard input closed.
    public static func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Output {
        try ExternalTool.run(try executable(), arguments, environment: environment)
    }
}

/// Runs other programs from tests: independent tools that cross-check cmk (Python verifiers, openssl ...).
public enum ExternalTool {
    /// The Python of the venv scripts/setup makes (sev-snp-measure, joserfc, pycose, jsonschema, PyYAML).
    public static var python: URL { SharedVectors.cacheDirectory.appendingPathComponent("venv/bin/python") }

    /// Runs `executable arguments...`, feeding `input` on standard input, and collects both outputs.
    public static func run(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        timeout: TimeInterval = 120, workingDirectory: URL? = nil
    ) throws -> BuiltCMK.Output {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            DispatchQueue.global().async {
                stdin.fileHandleForWriting.write(input)
                try? stdin.fileHandleForWriting.close()
            }
        }
        // Read standard error on another thread so that neither pipe can fill up and block the child.
        let stderrBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let stderr = stderrBox.data
        waitForExit(process, timeout: timeout)
        return BuiltCMK.Output(
            status: process.terminationStatus, standardOutput: String(decoding: stdout, as: UTF8.self),
            standardError: String(decoding: stderr, as: UTF8.self))
    }
}

private final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// Waits for a child process by polling `isRunning` (bounded), instead of `waitUntilExit`, which can stall
/// when called from a Swift concurrency thread. Kills the child if it outlives `timeout` seconds.
public func waitForExit(_ process: Process, timeout: TimeInterval = 120) {
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
    if process.isRunning {
        process.terminate()
        Thread.sleep(forTimeInterval: 1)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        while process.isRunning { Thread.sleep(forTimeInterval: 0.01) }
    }
}

/// SplitMix64: a small, seedable generator, so a failing case can be replayed from its seed.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}


extension SharedVectors {
    /// The project's cache folder, where scripts/setup puts the guest kernel and the sev-snp-measure venv:
    /// `$CMK_CACHE_DIR`, else `.cache` in the repository.
    public static var cacheDirectory: URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_CACHE_DIR"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        return repositoryRoot.appendingPathComponent(".cache")
    }
}
