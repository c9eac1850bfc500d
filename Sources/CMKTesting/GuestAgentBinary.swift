public import Foundation

/// The `cmk-guest` tests put into the images they boot.
public enum GuestAgentBinary {
    /// `$CMK_GUEST_AGENT` when set — scripts/test sets it to the statically linked release binary that
    /// scripts/build-guest-agent makes, the one that ships — else the debug build beside the test bundle.
    public static func url() throws -> URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_GUEST_AGENT"], !explicit.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: explicit) else {
                throw GuestAgentBinaryMissing(path: explicit)
            }
            return URL(fileURLWithPath: explicit)
        }
        return try debugBuild()
    }

    /// The debug `cmk-guest` that `swift build --build-tests` put beside the test bundle.
    public static func debugBuild() throws -> URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("cmk-guest")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        let fallback = SharedVectors.repositoryRoot.appendingPathComponent(".build/debug/cmk-guest")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else { throw GuestAgentBinaryMissing(path: fallback.path) }
        return fallback
    }
}

public struct GuestAgentBinaryMissing: Error, CustomStringConvertible {
    public let path: String
    public var description: String {
        "no cmk-guest executable at \(path): run swift build (debug) or scripts/build-guest-agent (static release)"
    }
}
