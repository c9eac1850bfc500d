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
