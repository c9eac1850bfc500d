public import Foundation
public import SEVSNP
import BinaryFormat
import Crypto

/// The roots cmk trusts, loaded from the `attestation/` folder and checked against its manifest.
///
/// `attestation/anchors.json` lists every file with its role and the SHA-256 of its DER; a file that is
/// missing, unreadable, or whose digest differs is an error, never silently skipped. Roots are trusted by
/// name (`amd-milan`, `amd-genoa`, `amd-turin`, `intel-sgx-root`), the names policies use.
public struct TrustAnchorStore: Sendable {
    /// One line of the manifest.
    public struct Entry: Sendable, Hashable, Codable {
        /// The root name policies refer to, e.g. `amd-milan`.
        public let root: String
        /// The certificate's role under that root: `ark`, `ask`, `asvk` or `root-ca`.
        public let role: String
        /// The PEM file, relative to the folder.
        public let file: String
        /// SHA-256 of the certificate's DER, lower-case hex.
        public let sha256: String
    }

    private struct Manifest: Codable {
        let anchors: [Entry]
    }

    /// The folder the anchors were read from.
    public let directory: URL
    /// The manifest entries, in file order.
    public let entries: [Entry]
    private let certificates: [String: AttestationCertificate]

    /// The manifest's file name inside the folder.
    public static let manifestName = "anchors.json"

    /// Loads and checks every anchor in `directory`.
    public init(directory: URL) throws(AttestationError) {
        self.directory = directory
        let manifestURL = directory.appendingPathComponent(Self.manifestName)
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: manifestURL))
        } catch {
            throw AttestationError(.trustAnchor, "cannot read the trust-anchor manifest \(manifestURL.path): \(error)")
        }
        var certificates: [String: AttestationCertificate] = [:]
        for entry in manifest.anchors {
            let url = directory.appendingPathComponent(entry.file)
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw AttestationError(.trustAnchor, "trust anchor \(entry.root)/\(entry.role) is missing: \(url.path)")
            }
            let ders = try PEMDocuments.certificates(in: text)
            guard ders.count == 1, let der = ders.first else {
                throw AttestationError(.trustAnchor, "\(url.path) must hold exactly one certificate, it holds \(ders.count)")
            }
            let digest = Hex.encode(SHA256.hash(data: der))
            guard digest == entry.sha256.lowercased() else {
                throw AttestationError(
                    .trustAnchor,
                    "\(url.path) has SHA-256 \(digest), the manifest expects \(entry.sha256): the file was changed or replaced")
            }
            certificates[Self.key(entry.root, entry.role)] = try AttestationCertificate(der: der)
        }
        self.entries = manifest.anchors
        self.certificates = certificates
    }

    private static func key(_ root: String, _ role: String) -> String { root + "/" + role }

    /// The certificate for a root name and role, if the store holds it.
    public func certificate(root: String, role: String) -> AttestationCertificate? {
        certificates[Self.key(root, role)]
    }

    /// The distinct root names in the store.
    public var rootNames: [String] {
        var seen: [String] = []
        for entry in entries where !seen.contains(entry.root) { seen.append(entry.root) }
        return seen
    }

    /// The ARK, ASK and (if present) ASVK of an AMD product.
    public func amdRoots(_ product: AMDProduct) throws(AttestationError) -> AMDRootCertificates {
        guard let ark = certificate(root: product.rootName, role: "ark"),
            let ask = certificate(root: product.rootName, role: "ask")
        else {
            throw AttestationError(.trustAnchor, "no ARK/ASK for \(product.rawValue) in \(directory.path)")
        }
        return AMDRootCertificates(product: product, ark: ark, ask: ask, asvk: certificate(root: product.rootName, role: "asvk"))
    }

    /// The Intel SGX Root CA, the root of every DCAP (TDX and SGX) PCK chain.
    public func intelSGXRoot() throws(AttestationError) -> AttestationCertificate {
        guard let root = certificate(root: "intel-sgx-root", role: "root-ca") else {
            throw AttestationError(.trustAnchor, "no Intel SGX Root CA in \(directory.path)")
        }
        return root
    }

    /// The environment variable that names the anchors folder explicitly.
    public static let environmentVariable = "CMK_ATTESTATION_DIR"

    /// Finds the `attestation/` folder: `$CMK_ATTESTATION_DIR`, else `share/cmk/attestation` beside an
    /// installed executable, else the nearest ancestor of the executable (a build tree) holding
    /// `attestation/anchors.json`, else `attestation/` in the current folder.
    public static func locateDefaultDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: URL = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath(),
        currentDirectory: URL? = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    ) throws(AttestationError) -> URL {
        let fileManager = FileManager.default
        if let explicit = environment[environmentVariable], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        var candidates: [URL] = []
        let binDirectory = executable.deletingLastPathComponent()
        candidates.append(binDirectory.deletingLastPathComponent().appendingPathComponent("share/cmk/attestation"))
        var ancestor = binDirectory
        for _ in 0..<8 {
            candidates.append(ancestor.appendingPathComponent("attestation"))
            ancestor = ancestor.deletingLastPathComponent()
        }
        if let currentDirectory { candidates.append(currentDirectory.appendingPathComponent("attestation")) }
        for candidate in candidates where fileManager.fileExists(atPath: candidate.appendingPathComponent(manifestName).path) {
            return candidate
        }
        throw AttestationError(
            .trustAnchor, "cannot find cmk's attestation/ folder; set \(environmentVariable) to the folder holding \(manifestName)")
    }
}
