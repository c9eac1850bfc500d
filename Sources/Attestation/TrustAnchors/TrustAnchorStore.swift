public import Foundation
public import SEVSNP
import BinaryFormat
import Crypto

/// The roots cmk trusts, loaded from the `attestation/` folder and checked against its manifest, optionally
/// combined with one installation's simulated roots.
///
/// `attestation/anchors.json` lists every file with its role and the SHA-256 of its DER; a file that is
/// missing, unreadable, or whose digest differs is an error, never silently skipped. Roots are trusted by
/// name (`amd-milan`, `amd-genoa`, `amd-turin`, `intel-sgx-root`), the names policies use.
///
/// Simulated roots never come from the pinned folder: a pinned manifest that names a `simulated-*` root or marks an
/// entry simulated is refused. They come only from an installation's simulated folder (the one cmk's simulated
/// platform writes, `<state-dir>/simulated/amd` and `<state-dir>/simulated/intel`), given explicitly with
/// ``init(directory:simulated:)`` or ``adding(simulatedDirectory:)``; every entry there must say `"simulated": true`
/// and use a `simulated-*` name.
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
        /// True for roots cmk's simulated platform generated; such roots are never AMD's or Intel's.
        public let simulated: Bool?

        public init(root: String, role: String, file: String, sha256: String, simulated: Bool? = nil) {
            self.root = root
            self.role = role
            self.file = file
            self.sha256 = sha256
            self.simulated = simulated
        }
    }

    /// The manifest file's structure: `{"anchors": [Entry, ...]}`.
    public struct Manifest: Sendable, Hashable, Codable {
        public let anchors: [Entry]

        public init(anchors: [Entry]) { self.anchors = anchors }
    }

    /// The folder the pinned anchors were read from.
    public let directory: URL
    /// The first simulated folder added, when one was (``simulatedDirectories`` lists them all).
    public var simulatedDirectory: URL? { simulatedDirectories.first }
    /// The installation's simulated folders, in the order they were added (at most one per simulated root name).
    public let simulatedDirectories: [URL]
    /// The manifest entries, in file order: the pinned folder's, then the simulated folder's.
    public let entries: [Entry]
    private let certificates: [String: AttestationCertificate]

    /// The manifest's file name inside the folder.
    public static let manifestName = "anchors.json"
    /// The prefix every simulated root name has, and no other root name may have.
    public static let simulatedRootPrefix = "simulated-"

    /// Loads and checks every anchor in `directory`, the pinned folder; refuses simulated entries.
    public init(directory: URL) throws(AttestationError) {
        let pinned = try Self.load(directory, simulated: false)
        self.directory = directory
        self.simulatedDirectories = []
        self.entries = pinned.entries
        self.certificates = pinned.certificates
    }

    /// Loads the pinned folder and, when given, an installation's simulated folder
    /// (see ``adding(simulatedDirectory:)``).
    public init(directory: URL, simulated: URL?) throws(AttestationError) {
        let pinned = try TrustAnchorStore(directory: directory)
        if let simulated {
            self = try pinned.adding(simulatedDirectory: simulated)
        } else {
            self = pinned
        }
    }

    private init(
        directory: URL, simulatedDirectories: [URL], entries: [Entry], certificates: [String: AttestationCertificate]
    ) {
        self.directory = directory
        self.simulatedDirectories = simulatedDirectories
        self.entries = entries
        self.certificates = certificates
    }

    /// This store plus the simulated roots in `simulatedDirectory`: every entry there must be marked simulated and
    /// named `simulated-*`, no certificate there may be one of the pinned ones, and the folder and its manifest must
    /// not be writable by group or others. A store holds one folder per simulated root (an installation's
    /// `simulated-amd` and `simulated-intel`): a folder naming a simulated root the store already holds is refused.
    public func adding(simulatedDirectory: URL) throws(AttestationError) -> TrustAnchorStore {
        try Self.checkNotWritableByOthers(simulatedDirectory)
        try Self.checkNotWritableByOthers(simulatedDirectory.appendingPathComponent(Self.manifestName))
        let simulated = try Self.load(simulatedDirectory, simulated: true)
        let held = Set(entries.filter { $0.simulated == true }.map(\.root))
        if let repeated = simulated.entries.first(where: { held.contains($0.root) }),
            let existing = simulatedDirectories.last
        {
            throw AttestationError(
                .trustAnchor,
                "the store already holds the simulated root '\(repeated.root)' (from \(existing.path)); it takes one "
                    + "installation's")
        }
        let pinnedFingerprints = Set(certificates.values.map(\.fingerprint))
        var merged = certificates
        for (key, certificate) in simulated.certificates {
            guard !pinnedFingerprints.contains(certificate.fingerprint) else {
                throw AttestationError(
                    .trustAnchor,
                    "\(simulatedDirectory.path) lists '\(certificate.subjectCommonName ?? "?")', a pinned root, "
                        + "as simulated")
            }
            merged[key] = certificate
        }
        return TrustAnchorStore(
            directory: directory, simulatedDirectories: simulatedDirectories + [simulatedDirectory],
            entries: entries + simulated.entries, certificates: merged)
    }

    /// Reads one folder's manifest and certificates; `simulated` says which kind of folder it must be.
    private static func load(
        _ directory: URL, simulated: Bool
    ) throws(AttestationError) -> (entries: [Entry], certificates: [String: AttestationCertificate]) {
        let manifestURL = directory.appendingPathComponent(Self.manifestName)
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: manifestURL))
        } catch {
            throw AttestationError(.trustAnchor, "cannot read the trust-anchor manifest \(manifestURL.path): \(error)")
        }
        var certificates: [String: AttestationCertificate] = [:]
        for entry in manifest.anchors {
            let namedSimulated = entry.root.hasPrefix(Self.simulatedRootPrefix)
            if simulated {
                guard namedSimulated, entry.simulated == true else {
                    throw AttestationError(
                        .trustAnchor,
                        "\(manifestURL.path) lists '\(entry.root)/\(entry.role)'; a simulated folder may only hold "
                            + "entries named \(Self.simulatedRootPrefix)* and marked \"simulated\": true")
                }
            } else if namedSimulated || entry.simulated == true {
                throw AttestationError(
                    .trustAnchor,
                    "\(manifestURL.path) lists the simulated root '\(entry.root)'; simulated roots live in an "
                        + "installation's simulated folder, never among the pinned anchors")
            }
            guard !entry.file.isEmpty, !entry.file.hasPrefix("/"),
                !entry.file.split(separator: "/").contains(where: { $0 == ".." })
            else {
                throw AttestationError(
                    .trustAnchor, "\(manifestURL.path): '\(entry.file)' is not a path inside the folder")
            }
            guard certificates[Self.key(entry.root, entry.role)] == nil else {
                throw AttestationError(.trustAnchor, "\(manifestURL.path) lists \(entry.root)/\(entry.role) twice")
            }
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
        return (manifest.anchors, certificates)
    }

    /// Refuses a path that group or others may write: whoever can write a simulated folder chooses what it trusts.
    private static func checkNotWritableByOthers(_ url: URL) throws(AttestationError) {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        } catch {
            throw AttestationError(
                .trustAnchor, "cannot read the simulated trust anchors at \(url.path): \(error.localizedDescription)")
        }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value ?? 0o777
        guard mode & 0o022 == 0 else {
            throw AttestationError(
                .trustAnchor,
                "\(url.path) is writable by group or others (mode \(String(mode, radix: 8))); simulated roots are "
                    + "accepted only from a folder only its owner can change")
        }
    }

    private static func key(_ root: String, _ role: String) -> String { root + "/" + role }

    /// The certificate for a root name and role, if the store holds it.
    public func certificate(root: String, role: String) -> AttestationCertificate? {
        certificates[Self.key(root, role)]
    }

    /// Whether the named root was generated by cmk's simulated platform.
    public func isSimulated(root: String) -> Bool {
        entries.contains { $0.root == root && $0.simulated == true }
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

    /// The installation's simulated ARK and ASK (root `simulated-amd`), when a simulated folder was added and its
    /// ARK is the simulated ARK of `product`; nil otherwise. They are never returned by ``amdRoots(_:)``.
    public func simulatedAMDRoots(_ product: AMDProduct) -> AMDRootCertificates? {
        let name = AMDProduct.simulatedRootName
        guard isSimulated(root: name), let ark = certificate(root: name, role: "ark"),
            let ask = certificate(root: name, role: "ask"), ark.subjectCommonName == product.simulatedARKCommonName
        else { return nil }
        return AMDRootCertificates(product: product, ark: ark, ask: ask, asvk: nil, simulated: true)
    }

    /// The installation's simulated SGX Root CA (root `simulated-intel`, role `root-ca`), when a simulated folder
    /// holding it was added; nil otherwise. It is never returned by ``intelSGXRoot()``.
    public func simulatedIntelRoot() -> AttestationCertificate? {
        let name = SimulatedIntel.rootName
        guard isSimulated(root: name), let root = certificate(root: name, role: "root-ca"),
            root.subjectCommonName == SimulatedIntel.rootCACommonName
        else { return nil }
        return root
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
    /// `attestation/anchors.json`. Never the current folder: running cmk somewhere must not change whom it trusts.
    public static func locateDefaultDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: URL = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath()
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
        for candidate in candidates where fileManager.fileExists(atPath: candidate.appendingPathComponent(manifestName).path) {
            return candidate
        }
        throw AttestationError(
            .trustAnchor, "cannot find cmk's attestation/ folder; set \(environmentVariable) to the folder holding \(manifestName)")
    }
}
