/// Why the simulated platform could not set itself up, launch a guest or answer it: the PlatformSimulator module's
/// one error.
///
/// The code names the kind of failure and is stable; ``reason`` is a sentence a person can act on (it never contains
/// key material); ``nativeCode`` keeps a C library's or the system's own error code where one was involved.
public struct PlatformSimulatorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; extensible, so new cases never break a caller's `switch`.
    public struct Code: Sendable, Hashable, CustomStringConvertible, Codable {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        public init(from decoder: any Decoder) throws { name = try decoder.singleValueContainer().decode(String.self) }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(name)
        }

        /// The state folder cannot be created or read, or others may change it.
        public static let stateFolder = Code("state-folder")
        /// A private key file is readable or writable by group or others, not a regular file, or not the user's.
        public static let insecureKeyFile = Code("insecure-key-file")
        /// The persisted state does not hang together (a key that is not its certificate's, a file missing ...).
        public static let inconsistentState = Code("inconsistent-state")
        /// OpenSSL failed (key generation, signing, encoding).
        public static let cryptoLibrary = Code("crypto-library")
        /// A certificate could not be encoded.
        public static let certificateEncoding = Code("certificate-encoding")
        /// The launch inputs are not a launch the simulated platform can measure.
        public static let invalidLaunch = Code("invalid-launch")
        /// A guest's request cannot be answered (REPORT_DATA of the wrong size, a VMPL above 3 ...).
        public static let invalidRequest = Code("invalid-request")
        /// The platform service's socket could not be set up.
        public static let socket = Code("socket")
    }

    public let code: Code
    /// A sentence a person can act on.
    public let reason: String
    /// A C library's or the system's native error code, when one was involved.
    public let nativeCode: UInt64?
    /// Where in cmk the error was raised.
    public let location: String

    public init(_ code: Code, _ reason: String, nativeCode: UInt64? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.nativeCode = nativeCode
        self.location = "\(file):\(line)"
    }

    public var description: String { "\(reason) [\(code)]" }
}
