public import Attestation
public import BinaryFormat
import Crypto
public import Foundation
import SwiftASN1
import TDX

/// cmk's simulated Intel TDX platform: the TDX module's identity, the TD quoting enclave and the provisioning
/// certificates Intel's PCS would hand out, one per installation, generated once and kept in the folder it is given
/// (the coordinator passes `<state-dir>/simulated/intel`).
///
/// It holds what a real platform and Intel's services hold between them: a root CA (ECDSA P-256, self-signed, the
/// stand-in for the Intel SGX Root CA), a PCK Platform CA signed by it, a PCK certificate signed by that CA with
/// Intel's SGX extension (PPID, the 16 SGX TCB component SVNs, PCESVN, CPUSVN, PCE-ID, FMSPC, SGX type,
/// PlatformInstanceID, configuration), a TCB Signing certificate signed by the root, and the quoting enclave's
/// attestation key. From them it issues, on request and signed at that moment, TCB Info (TDX, version 3) and QE
/// Identity (TD_QE, version 2) in PCS's exact JSON format and CRLs of the root and the PCK CA — so the unmodified
/// ``TDXVerifier`` checks simulated quotes end to end. Every name says "cmk simulated" (``SimulatedIntel``), the
/// organization says "not Intel hardware", and `anchors.json` names the root `simulated-intel` and marks it simulated.
///
/// Files (folder 0700; keys 0600, refused when group or others may read them):
/// ```
/// platform.json                          installation id, PPID, PlatformInstanceID, QE_ID (written last)
/// root.pem  pck-ca.pem  pck.pem  tcb-signing.pem     the certificates
/// root.key  pck-ca.key  pck.key  tcb-signing.key  attestation.key    PKCS#8 P-256 private keys, PEM
/// anchors.json                           the trust-anchor manifest for TrustAnchorStore.adding(simulatedDirectory:)
/// ```
public struct SimulatedTDXModule: Sendable {
    /// The persisted configuration (`platform.json`): what differs between installations.
    public struct Configuration: Sendable, Hashable, Codable {
        /// The layout version of this file.
        public var format: Int
        /// A random id naming this installation in the certificates' organizational unit.
        public var installation: String
        /// The PCK certificate's PPID (16 random bytes).
        public var ppid: HexBytes
        /// The PCK certificate's PlatformInstanceID (16 random bytes).
        public var platformInstanceID: HexBytes
        /// QE_ID: the 16 bytes a TD quoting enclave puts at the start of the quote header's user data.
        public var qeID: HexBytes
        public var createdAt: Date
    }

    /// The TCB and identities every installation reports: fixed, at the levels of a current 4th/5th generation Xeon
    /// with TDX module 1.5, and matched by the TCB Info the platform signs, so a quote's TCB status is UpToDate.
    public enum Identity {
        /// FMSPC: family 6 model 0x8F (Sapphire Rapids) as Intel's encoding starts, then a byte Intel does not use
        /// (0xC5) so no real platform's TCB Info can apply to it.
        public static let fmspc: [UInt8] = [0x00, 0x80, 0x6F, 0xC5, 0x00, 0x00]
        public static let pceID: [UInt8] = [0x00, 0x00]
        /// The PCK certificate's SGX TCB component SVNs (comp01 … comp16) and PCESVN.
        public static let sgxTCBComponents: [UInt8] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]
        public static let pceSVN: UInt16 = 13
        /// CPUSVN as the PCK certificate carries it (the component SVNs, as bytes).
        public static var cpuSVN: [UInt8] { sgxTCBComponents }
        /// SGX type 1: Scalable.
        public static let sgxType = 1
        /// TEE_TCB_SVN: TDX module SVN 5, major version 1 (module identity `TDX_01`), late microcode SVN 3.
        public static let teeTCBSVN: [UInt8] = [5, 1, 3] + [UInt8](repeating: 0, count: 13)
        /// MRSEAM: a digest standing for the simulated module ("cmk simulated TDX module 1.5"), not any Intel module.
        public static var mrSeam: [UInt8] { Array(SHA384.hash(data: Array("cmk simulated TDX module 1.5".utf8))) }
        /// MRSIGNERSEAM: zero, as for Intel-signed modules; SEAMATTRIBUTES: zero, as TDX 1.x requires.
        public static let mrSignerSeam = [UInt8](repeating: 0, count: 48)
        /// The TD quoting enclave: MRSIGNER and MRENCLAVE are digests of cmk's own names, not Intel's TD QE signer.
        public static var qeMRSigner: [UInt8] {
            Array(SHA256.hash(data: Array("cmk simulated TD quoting enclave signer".utf8)))
        }
        public static var qeMREnclave: [UInt8] {
            Array(SHA256.hash(data: Array("cmk simulated TD quoting enclave".utf8)))
        }
        public static let qeISVProdID: UInt16 = 2
        public static let qeISVSVN: UInt16 = 4
        /// The QE's ATTRIBUTES (INIT, MODE64BIT, PROVISIONKEY; XFRM 0xE7) and MISCSELECT.
        public static let qeAttributes: [UInt8] = [0x15, 0, 0, 0, 0, 0, 0, 0, 0xE7, 0, 0, 0, 0, 0, 0, 0]
        public static let qeMiscSelect: UInt32 = 0
        /// The TCB recovery counter the collateral carries.
        public static let tcbEvaluationDataNumber = 17
        /// The date of the newest TCB level.
        public static let tcbDate = "2025-05-14T00:00:00Z"
    }

    /// File names inside the folder.
    public enum FileName {
        public static let configuration = "platform.json"
        public static let root = "root.pem", pckCA = "pck-ca.pem", pck = "pck.pem", tcbSigning = "tcb-signing.pem"
        public static let rootKey = "root.key", pckCAKey = "pck-ca.key", pckKey = "pck.key"
        public static let tcbSigningKey = "tcb-signing.key", attestationKey = "attestation.key"
        public static let manifest = TrustAnchorStore.manifestName
        static let lock = ".lock"
    }

    /// How long issued collateral (TCB Info, QE Identity, CRLs) stays current: Intel's 30 days.
    public static let collateralLifetime: TimeInterval = 30 * 86_400

    /// The folder the platform lives in.
    public let directory: URL
    public let configuration: Configuration
    public let root: AttestationCertificate
    public let pckCA: AttestationCertificate
    public let pck: AttestationCertificate
    public let tcbSigning: AttestationCertificate
    /// Whether this call generated the platform (false: it was loaded).
    public let wasGenerated: Bool
    let keys: Keys

    /// The private keys; never printed (``customMirror`` leaves them out).
    struct Keys: Sendable {
        var root: P256.Signing.PrivateKey
        var pckCA: P256.Signing.PrivateKey
        var pck: P256.Signing.PrivateKey
        var tcbSigning: P256.Signing.PrivateKey
        var attestation: P256.Signing.PrivateKey
    }

    /// The PCK chain a quote carries: PCK certificate, PCK Platform CA, root, as PEM.
    public var pckChainPEM: String {
        [pck, pckCA, root].map { PEM.encode($0.der, label: "CERTIFICATE") }.joined()
    }

    /// The quoting enclave's attestation public key, raw x ‖ y (64 bytes), as the quote carries it.
    public var attestationPublicKey: [UInt8] { Array(keys.attestation.publicKey.rawRepresentation) }

    /// Opens the platform in `directory`, generating it (keys, certificates, configuration) when the folder holds
    /// none. Loading checks every file: key permissions, each key against its certificate, the chain under the checks
    /// the verifier makes, the PCK certificate's SGX extension against the fixed identity, and the manifest's digest.
    ///
    /// - Parameter now: the generation time (certificates are valid from a day before it). Unused when loading.
    public init(directory: URL, now: Date = Date()) throws(PlatformSimulatorError) {
        try StateFiles.prepareFolder(directory)
        let lock = try FolderLock(directory.appendingPathComponent(FileName.lock))
        defer { lock.release() }
        let state: LoadedState
        if StateFiles.exists(directory.appendingPathComponent(FileName.configuration)) {
            state = try Self.load(directory)
            wasGenerated = false
        } else {
            state = try Self.generate(directory, now: now)
            wasGenerated = true
        }
        self.directory = directory
        configuration = state.configuration
        root = state.root
        pckCA = state.pckCA
        pck = state.pck
        tcbSigning = state.tcbSigning
        keys = state.keys
    }

    /// Starts a launch: measures it from its inputs (never from a digest someone supplies).
    public func launch(_ inputs: SimulatedTDXLaunch.Inputs) throws(PlatformSimulatorError) -> SimulatedTDXLaunch {
        try SimulatedTDXLaunch(inputs, module: self)
    }

    // MARK: Signing.

    /// ECDSA P-256 / SHA-256 by the attestation key over `message`, raw r ‖ s.
    func signWithAttestationKey(_ message: [UInt8]) throws(PlatformSimulatorError) -> [UInt8] {
        try Self.rawSignature(message, keys.attestation, "the attestation key")
    }

    /// ECDSA P-256 / SHA-256 by the PCK key over `message`, raw r ‖ s.
    func signWithPCKKey(_ message: [UInt8]) throws(PlatformSimulatorError) -> [UInt8] {
        try Self.rawSignature(message, keys.pck, "the PCK key")
    }

    static func rawSignature(
        _ message: [UInt8], _ key: P256.Signing.PrivateKey, _ what: String
    ) throws(PlatformSimulatorError) -> [UInt8] {
        do {
            return Array(try key.signature(for: message).rawRepresentation)
        } catch {
            throw PlatformSimulatorError(.cryptoLibrary, "\(what) could not sign: \(error)")
        }
    }

    // MARK: Collateral, issued on request.

    /// The collateral a verifier needs for this platform's quotes, issued and signed now: TCB Info and QE Identity
    /// current from an hour before `now` for ``collateralLifetime``, their issuer chains (TCB Signing, root), the PCK
    /// CRL (issued by the PCK Platform CA) and the root CA CRL, neither listing anything.
    public func collateral(at now: Date = Date()) throws(PlatformSimulatorError) -> TDXCollateral {
        let files = try collateralFiles(at: now)
        do {
            let signingChain = [tcbSigning, root]
            return TDXCollateral(
                tcbInfoJSON: files.tcbInfo, tcbInfoIssuerChain: signingChain, qeIdentityJSON: files.qeIdentity,
                qeIdentityIssuerChain: signingChain, pckCRL: try CertificateRevocationList(der: files.pckCRL),
                rootCACRL: try CertificateRevocationList(der: files.rootCRL))
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "a simulated CRL does not parse: \(error.reason)")
        }
    }

    /// Writes ``collateral(at:)`` into `folder` in the layout ``TDXCollateral/init(directory:)`` (and `cmk evidence
    /// verify --collateral`) reads: the PCS bodies and headers as files.
    public func writeCollateral(to folder: URL, at now: Date = Date()) throws(PlatformSimulatorError) {
        let files = try collateralFiles(at: now)
        let signingChain = Array(
            (PEM.encode(tcbSigning.der, label: "CERTIFICATE") + PEM.encode(root.der, label: "CERTIFICATE")).utf8)
        let crlChain = Array(
            (PEM.encode(pckCA.der, label: "CERTIFICATE") + PEM.encode(root.der, label: "CERTIFICATE")).utf8)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw PlatformSimulatorError(.stateFolder, "cannot create \(folder.path): \(error.localizedDescription)")
        }
        for (name, bytes) in [
            ("tcbinfo.json", files.tcbInfo), ("tcb_info_issuer_chain.pem", signingChain),
            ("qeidentity.json", files.qeIdentity), ("qe_identity_issuer_chain.pem", signingChain),
            ("pck_crl.der", files.pckCRL), ("pck_crl_issuer_chain.pem", crlChain), ("root_ca_crl.der", files.rootCRL),
        ] {
            try StateFiles.write(bytes, to: folder.appendingPathComponent(name), mode: StateFiles.publicMode)
        }
    }

    struct CollateralFiles {
        var tcbInfo: [UInt8]
        var qeIdentity: [UInt8]
        var pckCRL: [UInt8]
        var rootCRL: [UInt8]
    }

    func collateralFiles(at now: Date) throws(PlatformSimulatorError) -> CollateralFiles {
        let issued = Date(timeIntervalSince1970: (now.timeIntervalSince1970 - 3600).rounded(.down))
        let next = issued.addingTimeInterval(Self.collateralLifetime)
        let names = Self.names(configuration)
        let crlNumber = Int(issued.timeIntervalSince1970) / 60
        return CollateralFiles(
            tcbInfo: try signedBody(key: "tcbInfo", body: CollateralJSON.tcbInfo(issueDate: issued, nextUpdate: next)),
            qeIdentity: try signedBody(
                key: "enclaveIdentity", body: CollateralJSON.qeIdentity(issueDate: issued, nextUpdate: next)),
            pckCRL: try SimulatedCRL(issuer: names.pckCA, thisUpdate: issued, nextUpdate: next, number: crlNumber)
                .signed(by: keys.pckCA),
            rootCRL: try SimulatedCRL(issuer: names.root, thisUpdate: issued, nextUpdate: next, number: crlNumber)
                .signed(by: keys.root))
    }

    /// `{"<key>":<body>,"signature":"<r ‖ s hex>"}`, the TCB Signing key's signature over the exact body bytes.
    private func signedBody(key: String, body: String) throws(PlatformSimulatorError) -> [UInt8] {
        let bytes = Array(body.utf8)
        let signature = try Self.rawSignature(bytes, keys.tcbSigning, "the TCB Signing key")
        return Array("{\"\(key)\":".utf8) + bytes + Array(",\"signature\":\"\(Hex.encode(signature))\"}".utf8)
    }

    // MARK: Generation and loading.

    struct LoadedState {
        var configuration: Configuration
        var root: AttestationCertificate
        var pckCA: AttestationCertificate
        var pck: AttestationCertificate
        var tcbSigning: AttestationCertificate
        var keys: Keys
    }

    /// The certificates' names: organization "not Intel hardware", a unit naming the installation, common names
    /// from ``SimulatedIntel``.
    static func names(
        _ configuration: Configuration
    ) -> (
        root: SimulatedCertificate.Name, pckCA: SimulatedCertificate.Name, pck: SimulatedCertificate.Name,
        tcbSigning: SimulatedCertificate.Name
    ) {
        func name(_ commonName: String) -> SimulatedCertificate.Name {
            .init(
                organization: SimulatedIntel.organization,
                organizationalUnit:
                    "simulated TDX module and quoting enclave, installation \(configuration.installation)",
                commonName: commonName)
        }
        return (
            name(SimulatedIntel.rootCACommonName), name(SimulatedIntel.platformCACommonName),
            name(SimulatedIntel.pckCommonName), name(SimulatedIntel.tcbSigningCommonName)
        )
    }

    static func generate(_ directory: URL, now: Date) throws(PlatformSimulatorError) -> LoadedState {
        var random = SystemRandomNumberGenerator()
        func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }
        let configuration = Configuration(
            format: 1, installation: Hex.encode(bytes(8)), ppid: HexBytes(bytes(16)),
            platformInstanceID: HexBytes(bytes(16)), qeID: HexBytes(bytes(16)),
            createdAt: Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down)))
        let keys = Keys(
            root: P256.Signing.PrivateKey(), pckCA: P256.Signing.PrivateKey(), pck: P256.Signing.PrivateKey(),
            tcbSigning: P256.Signing.PrivateKey(), attestation: P256.Signing.PrivateKey())
        let names = names(configuration)
        let day: TimeInterval = 86_400
        let notBefore = now.addingTimeInterval(-day)
        func spki(_ key: P256.Signing.PrivateKey) -> [UInt8] { Array(key.publicKey.derRepresentation) }
        let rootID = keyIdentifier(spki(keys.root))
        let caID = keyIdentifier(spki(keys.pckCA))
        func ext(_ oid: ASN1ObjectIdentifier, critical: Bool, _ value: [UInt8]) -> SimulatedCertificate.Extension {
            .init(oid: oid, critical: critical, value: value)
        }
        typealias OID = SimulatedCertificate.OID
        func issue(
            issuer: SimulatedCertificate.Name, subject: SimulatedCertificate.Name, years: Double,
            key: P256.Signing.PrivateKey, signer: P256.Signing.PrivateKey, extensions: [SimulatedCertificate.Extension]
        ) throws(PlatformSimulatorError) -> [UInt8] {
            try SimulatedCertificate(
                serialNumber: SimulatedCertificate.randomSerialNumber(), issuer: issuer, subject: subject,
                notBefore: notBefore, notAfter: now.addingTimeInterval(years * 365.25 * day),
                subjectPublicKeyInfo: spki(key), extensions: extensions, algorithm: .ecdsaSHA256
            ).signed(by: signer)
        }
        let rootDER = try issue(
            issuer: names.root, subject: names.root, years: 25, key: keys.root, signer: keys.root,
            extensions: [
                ext(OID.subjectKeyIdentifier, critical: false, StandardExtensions.subjectKeyIdentifier(rootID)),
                ext(OID.keyUsage, critical: true, StandardExtensions.keyUsageCertificateAndCRLSign),
                ext(OID.basicConstraints, critical: true, StandardExtensions.basicConstraints(pathLength: 1)),
            ])
        let caDER = try issue(
            issuer: names.root, subject: names.pckCA, years: 25, key: keys.pckCA, signer: keys.root,
            extensions: [
                ext(OID.authorityKeyIdentifier, critical: false, StandardExtensions.authorityKeyIdentifier(rootID)),
                ext(OID.subjectKeyIdentifier, critical: false, StandardExtensions.subjectKeyIdentifier(caID)),
                ext(OID.keyUsage, critical: true, StandardExtensions.keyUsageCertificateAndCRLSign),
                ext(OID.basicConstraints, critical: true, StandardExtensions.basicConstraints(pathLength: 0)),
            ])
        let pckDER = try issue(
            issuer: names.pckCA, subject: names.pck, years: 7, key: keys.pck, signer: keys.pckCA,
            extensions: [
                ext(OID.authorityKeyIdentifier, critical: false, StandardExtensions.authorityKeyIdentifier(caID)),
                ext(
                    OID.subjectKeyIdentifier, critical: false,
                    StandardExtensions.subjectKeyIdentifier(keyIdentifier(spki(keys.pck)))),
                ext(OID.keyUsage, critical: true, StandardExtensions.keyUsageDigitalSignature),
                ext(OID.basicConstraints, critical: true, StandardExtensions.basicConstraintsEndEntity),
                ext(SGXExtensionEncoding.oid, critical: false, try SGXExtensionEncoding.value(configuration)),
            ])
        let signingDER = try issue(
            issuer: names.root, subject: names.tcbSigning, years: 7, key: keys.tcbSigning, signer: keys.root,
            extensions: [
                ext(OID.authorityKeyIdentifier, critical: false, StandardExtensions.authorityKeyIdentifier(rootID)),
                ext(
                    OID.subjectKeyIdentifier, critical: false,
                    StandardExtensions.subjectKeyIdentifier(keyIdentifier(spki(keys.tcbSigning)))),
                ext(OID.keyUsage, critical: true, StandardExtensions.keyUsageDigitalSignature),
                ext(OID.basicConstraints, critical: true, StandardExtensions.basicConstraintsEndEntity),
            ])
        let state = LoadedState(
            configuration: configuration, root: try certificate(rootDER, "root CA"),
            pckCA: try certificate(caDER, "PCK CA"),
            pck: try certificate(pckDER, "PCK"), tcbSigning: try certificate(signingDER, "TCB Signing"), keys: keys)
        // What was issued must pass the checks the verifier makes, or it is not written at all.
        try checkChain(state)

        func path(_ name: String) -> URL { directory.appendingPathComponent(name) }
        for (key, name) in [
            (keys.root, FileName.rootKey), (keys.pckCA, FileName.pckCAKey), (keys.pck, FileName.pckKey),
            (keys.tcbSigning, FileName.tcbSigningKey), (keys.attestation, FileName.attestationKey),
        ] {
            try StateFiles.write(Array(key.pemRepresentation.utf8), to: path(name), mode: StateFiles.keyMode)
        }
        for (der, name) in [
            (rootDER, FileName.root), (caDER, FileName.pckCA), (pckDER, FileName.pck),
            (signingDER, FileName.tcbSigning),
        ] {
            try StateFiles.write(
                Array(PEM.encode(der, label: "CERTIFICATE").utf8), to: path(name), mode: StateFiles.publicMode)
        }
        try StateFiles.write(
            try json(manifest(root: state.root)), to: path(FileName.manifest), mode: StateFiles.publicMode)
        // The configuration last: its presence says the platform is complete.
        try StateFiles.write(try json(configuration), to: path(FileName.configuration), mode: StateFiles.publicMode)
        return state
    }

    static func manifest(root: AttestationCertificate) -> TrustAnchorStore.Manifest {
        TrustAnchorStore.Manifest(anchors: [
            .init(
                root: SimulatedIntel.rootName, role: "root-ca", file: FileName.root,
                sha256: Hex.encode(SHA256.hash(data: root.der)), simulated: true)
        ])
    }

    static func load(_ directory: URL) throws(PlatformSimulatorError) -> LoadedState {
        func path(_ name: String) -> URL { directory.appendingPathComponent(name) }
        // Every key file's permissions first: a disclosed key is refused whichever one it is.
        let keyNames = [
            FileName.rootKey, FileName.pckCAKey, FileName.pckKey, FileName.tcbSigningKey, FileName.attestationKey,
        ]
        let keyTexts = try keyNames.map { name throws(PlatformSimulatorError) in
            String(decoding: try StateFiles.read(path(name), privateKey: true), as: UTF8.self)
        }
        let configuration: Configuration
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            configuration = try decoder.decode(
                Configuration.self, from: Data(try StateFiles.read(path(FileName.configuration), privateKey: false)))
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(
                .inconsistentState, "\(path(FileName.configuration).path) cannot be read: \(error)")
        }
        guard configuration.format == 1, configuration.ppid.count == 16, configuration.platformInstanceID.count == 16,
            configuration.qeID.count == 16
        else {
            throw PlatformSimulatorError(
                .inconsistentState,
                "\(path(FileName.configuration).path) is not a format-1 configuration with 16-byte PPID, "
                    + "PlatformInstanceID and QE_ID")
        }
        func certificateFile(_ name: String, _ role: String) throws(PlatformSimulatorError) -> AttestationCertificate {
            let text = String(decoding: try StateFiles.read(path(name), privateKey: false), as: UTF8.self)
            return try certificate(try PEM.decode(text, label: "CERTIFICATE"), role)
        }
        var parsedKeys: [P256.Signing.PrivateKey] = []
        for (text, name) in zip(keyTexts, keyNames) {
            do {
                parsedKeys.append(try P256.Signing.PrivateKey(pemRepresentation: text))
            } catch {
                throw PlatformSimulatorError(.inconsistentState, "\(path(name).path) is not a P-256 private key")
            }
        }
        let state = LoadedState(
            configuration: configuration, root: try certificateFile(FileName.root, "root CA"),
            pckCA: try certificateFile(FileName.pckCA, "PCK CA"), pck: try certificateFile(FileName.pck, "PCK"),
            tcbSigning: try certificateFile(FileName.tcbSigning, "TCB Signing"),
            keys: Keys(
                root: parsedKeys[0], pckCA: parsedKeys[1], pck: parsedKeys[2], tcbSigning: parsedKeys[3],
                attestation: parsedKeys[4]))
        try checkChain(state)
        for (key, certificate, name) in [
            (state.keys.root, state.root, FileName.rootKey), (state.keys.pckCA, state.pckCA, FileName.pckCAKey),
            (state.keys.pck, state.pck, FileName.pckKey),
            (state.keys.tcbSigning, state.tcbSigning, FileName.tcbSigningKey),
        ] where Array(key.publicKey.derRepresentation) != certificate.subjectPublicKeyInfo {
            throw PlatformSimulatorError(.inconsistentState, "\(path(name).path) is not the key of its certificate")
        }
        let manifest: TrustAnchorStore.Manifest
        do {
            manifest = try JSONDecoder().decode(
                TrustAnchorStore.Manifest.self,
                from: Data(try StateFiles.read(path(FileName.manifest), privateKey: false)))
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "\(path(FileName.manifest).path) cannot be read: \(error)")
        }
        guard manifest == Self.manifest(root: state.root) else {
            throw PlatformSimulatorError(
                .inconsistentState, "\(path(FileName.manifest).path) does not list exactly this platform's root CA")
        }
        return state
    }

    /// The checks the verifier makes, applied to what the platform issued or loaded: names, ECDSA P-256 signatures
    /// along root ← PCK CA ← PCK and root ← TCB Signing, critical extensions, and the PCK certificate's SGX extension
    /// against the fixed identity and the configuration.
    static func checkChain(_ state: LoadedState) throws(PlatformSimulatorError) {
        do {
            guard state.root.subjectCommonName == SimulatedIntel.rootCACommonName,
                state.pckCA.subjectCommonName == SimulatedIntel.platformCACommonName,
                state.pck.subjectCommonName == SimulatedIntel.pckCommonName,
                state.tcbSigning.subjectCommonName == SimulatedIntel.tcbSigningCommonName
            else {
                throw PlatformSimulatorError(
                    .inconsistentState, "a simulated certificate does not carry its simulated name")
            }
            for (certificate, issuer) in [
                (state.root, state.root), (state.pckCA, state.root), (state.pck, state.pckCA),
                (state.tcbSigning, state.root),
            ] {
                try certificate.verifySignature(issuedBy: issuer, requiredAlgorithm: .ecdsaWithSHA256)
                try certificate.checkCriticalExtensions()
            }
            let sgx = try PCKExtensions(certificate: state.pck)
            guard sgx.fmspc.bytes == Identity.fmspc, sgx.pceID.bytes == Identity.pceID,
                sgx.sgxTCBComponents == Identity.sgxTCBComponents, sgx.pceSVN == Identity.pceSVN,
                sgx.cpuSVN.bytes == Identity.cpuSVN, sgx.sgxType == Identity.sgxType,
                sgx.ppid == state.configuration.ppid, sgx.platformInstanceID == state.configuration.platformInstanceID
            else {
                throw PlatformSimulatorError(
                    .inconsistentState, "the PCK certificate's SGX extension differs from the platform's identity")
            }
        } catch let error as AttestationError {
            throw PlatformSimulatorError(
                .inconsistentState, "the simulated certificate chain does not verify: \(error)")
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "\(error)")
        }
    }

    private static func certificate(
        _ der: [UInt8], _ role: String
    ) throws(PlatformSimulatorError) -> AttestationCertificate {
        do {
            return try AttestationCertificate(der: der)
        } catch {
            throw PlatformSimulatorError(
                .inconsistentState, "the simulated \(role) certificate cannot be read: \(error)")
        }
    }

    /// RFC 7093 §2 method 1 over an uncompressed P-256 point: the leftmost 160 bits of SHA-256 of the public key
    /// bits, which are the SPKI's last 65 bytes.
    private static func keyIdentifier(_ spki: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: spki.suffix(65)).prefix(20))
    }

    private static func json(_ value: some Encodable) throws(PlatformSimulatorError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        do {
            return Array(try encoder.encode(value)) + [0x0A]
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "cannot encode JSON: \(error)")
        }
    }
}

/// Intel's SGX extension (OID 1.2.840.113741.1.13.1; "SGX PCK Certificate and CRL Profile" §1.3.5) as the simulated
/// PCK certificate carries it: a SEQUENCE of {OID, value} pairs, in Intel's order.
enum SGXExtensionEncoding {
    static let oid: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1]

    static func arc(_ suffix: [UInt]) throws -> ASN1ObjectIdentifier {
        try ASN1ObjectIdentifier(elements: [1, 2, 840, 113741, 1, 13, 1] + suffix)
    }

    static func value(_ configuration: SimulatedTDXModule.Configuration) throws(PlatformSimulatorError) -> [UInt8] {
        typealias I = SimulatedTDXModule.Identity
        do {
            var serializer = DER.Serializer()
            try serializer.appendConstructedNode(identifier: .sequence) { list in
                func pair(_ suffix: [UInt], _ value: (inout DER.Serializer) throws -> Void) throws {
                    try list.appendConstructedNode(identifier: .sequence) { item in
                        try item.serialize(try arc(suffix))
                        try value(&item)
                    }
                }
                try pair([1]) { try $0.serialize(ASN1OctetString(contentBytes: configuration.ppid.bytes[...])) }
                try pair([2]) { tcb in
                    try tcb.appendConstructedNode(identifier: .sequence) { components in
                        for (index, svn) in I.sgxTCBComponents.enumerated() {
                            try components.appendConstructedNode(identifier: .sequence) { item in
                                try item.serialize(try arc([2, UInt(index + 1)]))
                                try item.serialize(Int(svn))
                            }
                        }
                        try components.appendConstructedNode(identifier: .sequence) { item in
                            try item.serialize(try arc([2, 17]))
                            try item.serialize(Int(I.pceSVN))
                        }
                        try components.appendConstructedNode(identifier: .sequence) { item in
                            try item.serialize(try arc([2, 18]))
                            try item.serialize(ASN1OctetString(contentBytes: I.cpuSVN[...]))
                        }
                    }
                }
                try pair([3]) { try $0.serialize(ASN1OctetString(contentBytes: I.pceID[...])) }
                try pair([4]) { try $0.serialize(ASN1OctetString(contentBytes: I.fmspc[...])) }
                try pair([5]) { $0.appendPrimitiveNode(identifier: .enumerated) { $0.append(UInt8(I.sgxType)) } }
                try pair([6]) {
                    try $0.serialize(ASN1OctetString(contentBytes: configuration.platformInstanceID.bytes[...]))
                }
                try pair([7]) { configurationNode in
                    try configurationNode.appendConstructedNode(identifier: .sequence) { flags in
                        // dynamicPlatform, cachedKeys, SMTEnabled: a single-package platform with cached keys, no SMT.
                        for (suffix, value) in [([UInt(7), 1], false), ([7, 2], true), ([7, 3], false)] {
                            try flags.appendConstructedNode(identifier: .sequence) { item in
                                try item.serialize(try arc(suffix))
                                try item.serialize(value)
                            }
                        }
                    }
                }
            }
            return serializer.serializedBytes
        } catch {
            throw PlatformSimulatorError(.certificateEncoding, "cannot encode the SGX extension: \(error)")
        }
    }
}

/// The PCS JSON bodies the simulated platform signs, compact and in Intel's key order, with values matching
/// ``SimulatedTDXModule/Identity`` so the platform's quotes evaluate to UpToDate.
enum CollateralJSON {
    typealias I = SimulatedTDXModule.Identity

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    static func date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return
            "\(String(format: "%04d", c.year ?? 1970))-\(two(c.month))-\(two(c.day))T\(two(c.hour)):\(two(c.minute)):\(two(c.second))Z"
    }

    static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes).uppercased() }

    static func components(_ svns: [UInt8]) -> String {
        "[" + svns.map { "{\"svn\":\($0)}" }.joined(separator: ",") + "]"
    }

    /// TCB Info v3 for the platform's FMSPC: module identity TDX_01 (SVN 5 UpToDate, 3 OutOfDate) and two TCB
    /// levels, the platform's (UpToDate) and one below it (OutOfDate).
    static func tcbInfo(issueDate: Date, nextUpdate: Date) -> String {
        let zeroSigner = hex(I.mrSignerSeam)
        let module =
            "\"mrsigner\":\"\(zeroSigner)\",\"attributes\":\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\""
        let older = "2024-03-13T00:00:00Z"
        var olderSGX = I.sgxTCBComponents
        olderSGX[0] -= 1
        var olderTDX = I.teeTCBSVN
        olderTDX[2] -= 1
        func level(_ sgx: [UInt8], _ pce: UInt16, _ tdx: [UInt8], _ date: String, _ status: String) -> String {
            "{\"tcb\":{\"sgxtcbcomponents\":\(components(sgx)),\"pcesvn\":\(pce),\"tdxtcbcomponents\":\(components(tdx))},"
                + "\"tcbDate\":\"\(date)\",\"tcbStatus\":\"\(status)\"}"
        }
        return "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"\(self.date(issueDate))\","
            + "\"nextUpdate\":\"\(self.date(nextUpdate))\",\"fmspc\":\"\(hex(I.fmspc))\",\"pceId\":\"\(hex(I.pceID))\","
            + "\"tcbType\":0,\"tcbEvaluationDataNumber\":\(I.tcbEvaluationDataNumber),\"tdxModule\":{\(module)},"
            + "\"tdxModuleIdentities\":[{\"id\":\"TDX_01\",\(module),\"tcbLevels\":["
            + "{\"tcb\":{\"isvsvn\":\(I.teeTCBSVN[0])},\"tcbDate\":\"\(I.tcbDate)\",\"tcbStatus\":\"UpToDate\"},"
            + "{\"tcb\":{\"isvsvn\":\(I.teeTCBSVN[0] - 2)},\"tcbDate\":\"\(older)\",\"tcbStatus\":\"OutOfDate\"}]}],"
            + "\"tcbLevels\":["
            + level(I.sgxTCBComponents, I.pceSVN, I.teeTCBSVN, I.tcbDate, "UpToDate") + ","
            + level(olderSGX, I.pceSVN, olderTDX, older, "OutOfDate") + "]}"
    }

    /// QE Identity v2 of the simulated TD quoting enclave (its MRSIGNER, ISVPRODID; ISVSVN 4 UpToDate).
    static func qeIdentity(issueDate: Date, nextUpdate: Date) -> String {
        "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"\(date(issueDate))\",\"nextUpdate\":\"\(date(nextUpdate))\","
            + "\"tcbEvaluationDataNumber\":\(I.tcbEvaluationDataNumber),\"miscselect\":\"00000000\","
            + "\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"11000000000000000000000000000000\","
            + "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"\(hex(I.qeMRSigner))\","
            + "\"isvprodid\":\(I.qeISVProdID),\"tcbLevels\":[{\"tcb\":{\"isvsvn\":\(I.qeISVSVN)},"
            + "\"tcbDate\":\"\(I.tcbDate)\",\"tcbStatus\":\"UpToDate\"}]}"
    }
}

/// Printing or dumping the platform never shows a private key.
extension SimulatedTDXModule: CustomStringConvertible, CustomReflectable {
    public var description: String {
        "simulated TDX module and quoting enclave (installation \(configuration.installation), \(directory.path))"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "directory": directory, "configuration": configuration, "root": root.subjectCommonName ?? "?",
                "pckCA": pckCA.subjectCommonName ?? "?", "pck": pck.subjectCommonName ?? "?",
                "tcbSigning": tcbSigning.subjectCommonName ?? "?", "wasGenerated": wasGenerated,
            ])
    }
}
