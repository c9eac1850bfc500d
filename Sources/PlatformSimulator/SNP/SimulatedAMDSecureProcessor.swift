public import Attestation
public import BinaryFormat
import Crypto
public import Foundation
public import SEVSNP
import SwiftASN1
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// cmk's simulated AMD secure processor: one per installation, generated once and kept in the folder it is given
/// (the coordinator passes `<state-dir>/simulated/amd`).
///
/// It holds what a real secure processor holds: an ARK (RSA-4096, self-signed), an ASK (RSA-4096, signed by the
/// ARK) and a VCEK (ECDSA P-384, signed by the ASK), every signature RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 as
/// AMD's are; a CHIP_ID of 64 random bytes; and fixed TCB security patch levels of the Genoa layout. The VCEK
/// carries AMD's extensions (structVersion, productName, the SPLs, hwID = CHIP_ID), so the same verifier code reads
/// it. Every name says "simulated" (``AMDProduct/simulatedARKCommonName``, productName `Genoa-cmk-simulated`), and the
/// folder's `anchors.json` names the root `simulated-amd` and marks it simulated.
///
/// Files (folder 0700; keys 0600, refused when group or others may read them):
/// ```
/// platform.json                      product, CHIP_ID, TCB, firmware version, installation id (written last)
/// ark.pem  ask.pem  vcek.pem         the certificates
/// ark.key  ask.key  vcek.key         PKCS#8 private keys, PEM
/// anchors.json                       the trust-anchor manifest for TrustAnchorStore.adding(simulatedDirectory:)
/// ```
public struct SimulatedAMDSecureProcessor: Sendable {
    /// The persisted configuration (`platform.json`).
    public struct Configuration: Sendable, Hashable, Codable {
        /// A firmware version MAJOR.MINOR.BUILD, as the report's CURRENT and COMMITTED version fields carry it.
        public struct FirmwareVersion: Sendable, Hashable, Codable, CustomStringConvertible {
            public var major: UInt8
            public var minor: UInt8
            public var build: UInt8
            public init(major: UInt8, minor: UInt8, build: UInt8) {
                self.major = major
                self.minor = minor
                self.build = build
            }
            public var description: String { "\(major).\(minor).\(build)" }
        }

        /// The layout version of this file.
        public var format: Int
        /// The product whose formats the platform follows (Genoa).
        public var product: AMDProduct
        /// CHIP_ID: 64 random bytes, the VCEK's hwID.
        public var chipID: HexBytes
        /// The security patch levels of every TCB field of every report (and of the VCEK).
        public var tcb: SNPTCBVersion.Components
        public var firmware: FirmwareVersion
        /// A random id naming this installation's platform in the certificates' organizational unit.
        public var installation: String
        public var createdAt: Date
    }

    /// The product layout the simulation follows.
    public static let product = AMDProduct.genoa
    /// The TCB the platform reports: Genoa's layout, at the levels of a current real Genoa (firmware 1.55.43).
    public static let defaultTCB = SNPTCBVersion.Components(fmc: nil, bootloader: 10, tee: 0, snp: 25, microcode: 84)
    public static let defaultFirmware = Configuration.FirmwareVersion(major: 1, minor: 55, build: 43)
    /// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP of a Genoa part (family 0x19, model 0x11, stepping 1).
    public static let cpuid = (family: UInt8(0x19), model: UInt8(0x11), stepping: UInt8(0x01))

    /// File names inside the folder.
    public enum FileName {
        public static let configuration = "platform.json"
        public static let ark = "ark.pem", ask = "ask.pem", vcek = "vcek.pem"
        public static let arkKey = "ark.key", askKey = "ask.key", vcekKey = "vcek.key"
        public static let manifest = TrustAnchorStore.manifestName
        static let lock = ".lock"
    }

    /// The folder the platform lives in.
    public let directory: URL
    public let configuration: Configuration
    public let ark: AttestationCertificate
    public let ask: AttestationCertificate
    public let vcek: AttestationCertificate
    /// Whether this call generated the platform (false: it was loaded).
    public let wasGenerated: Bool
    let vcekKey: P384.Signing.PrivateKey

    public var product: AMDProduct { configuration.product }
    public var chipID: [UInt8] { configuration.chipID.bytes }
    /// The TCB every report carries, in the product's layout.
    public var tcb: SNPTCBVersion { SNPTCBVersion(configuration.tcb, layout: product.tcbLayout) }

    /// The extended-report certificate table: VCEK, ASK, ARK under their GHCB GUIDs.
    public var certificateTable: SNPCertificateTable {
        // The GUIDs are well-formed constants, so the entries cannot fail to build.
        SNPCertificateTable(
            entries: [
                (SNPCertificateTable.GUID.vcek, vcek.der), (SNPCertificateTable.GUID.ask, ask.der),
                (SNPCertificateTable.GUID.ark, ark.der),
            ].compactMap { try? SNPCertificateTable.Entry(guid: $0.0, data: $0.1) })
    }

    /// Opens the platform in `directory`, generating it (keys, certificates, CHIP_ID, configuration) when the folder
    /// holds none. Loading checks every file: key permissions, each key against its certificate, the chain under the
    /// same checks the verifier makes, the VCEK's extensions against the configuration, and the manifest's digests.
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
        ark = state.ark
        ask = state.ask
        vcek = state.vcek
        vcekKey = state.vcekKey
    }

    /// Starts a launch: measures it from its inputs (never from a digest someone supplies) and gives it a REPORT_ID.
    public func launch(_ inputs: SimulatedSNPLaunch.Inputs) throws(PlatformSimulatorError) -> SimulatedSNPLaunch {
        try SimulatedSNPLaunch(inputs, processor: self)
    }

    /// Signs the first 0x2A0 bytes of `report` with the VCEK (ECDSA P-384 over SHA-384) and writes r and s as AMD
    /// does: 72-byte little-endian fields at 0x2A0 and 0x2E8, 48 significant bytes each.
    func sign(_ report: inout [UInt8]) throws(PlatformSimulatorError) {
        typealias L = SNPReport.Layout
        let signature: P384.Signing.ECDSASignature
        do {
            signature = try vcekKey.signature(for: report[0..<L.signedSize])
        } catch {
            throw PlatformSimulatorError(.cryptoLibrary, "the VCEK could not sign the report: \(error)")
        }
        let raw = Array(signature.rawRepresentation)
        let size = L.signatureSignificantSize
        report.replaceSubrange(L.signatureR..<(L.signatureR + size), with: raw[0..<size].reversed())
        report.replaceSubrange(L.signatureS..<(L.signatureS + size), with: raw[size..<(2 * size)].reversed())
    }

    // MARK: Generation and loading.

    struct LoadedState {
        var configuration: Configuration
        var ark: AttestationCertificate
        var ask: AttestationCertificate
        var vcek: AttestationCertificate
        var vcekKey: P384.Signing.PrivateKey
    }

    /// The certificates' names: the organization and unit say simulated and name the installation; the common names
    /// are AMD's with " (cmk simulated)".
    static func names(
        _ configuration: Configuration
    ) -> (ark: SimulatedCertificate.Name, ask: SimulatedCertificate.Name, vcek: SimulatedCertificate.Name) {
        let product = configuration.product
        func name(_ commonName: String) -> SimulatedCertificate.Name {
            .init(
                organization: "cmk simulated platform (not AMD hardware)",
                organizationalUnit: "simulated SEV-SNP secure processor, installation \(configuration.installation)",
                commonName: commonName)
        }
        return (
            name(product.simulatedARKCommonName), name(product.simulatedASKCommonName),
            name(AMDProduct.simulatedVCEKCommonName)
        )
    }

    static func generate(_ directory: URL, now: Date) throws(PlatformSimulatorError) -> LoadedState {
        var random = SystemRandomNumberGenerator()
        let configuration = Configuration(
            format: 1, product: product,
            chipID: HexBytes((0..<64).map { _ in UInt8.random(in: 0...255, using: &random) }),
            tcb: defaultTCB, firmware: defaultFirmware,
            installation: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255, using: &random) }),
            createdAt: Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down)))
        let names = names(configuration)
        let arkKey = try OpenSSLRSAPrivateKey.generate(bits: 4096)
        let askKey = try OpenSSLRSAPrivateKey.generate(bits: 4096)
        let vcekKey = P384.Signing.PrivateKey()
        let arkSPKI = try arkKey.subjectPublicKeyInfo()
        let askSPKI = try askKey.subjectPublicKeyInfo()
        let day: TimeInterval = 86_400
        let notBefore = now.addingTimeInterval(-day)
        let arkID = try keyIdentifier(arkSPKI)
        let askID = try keyIdentifier(askSPKI)

        let arkDER = try SimulatedCertificate(
            serialNumber: SimulatedCertificate.randomSerialNumber(), issuer: names.ark, subject: names.ark,
            notBefore: notBefore, notAfter: now.addingTimeInterval(25 * 365.25 * day), subjectPublicKeyInfo: arkSPKI,
            extensions: [
                .init(
                    oid: SimulatedCertificate.OID.keyUsage, critical: true,
                    value: StandardExtensions.keyUsageCertificateAndCRLSign),
                .init(
                    oid: SimulatedCertificate.OID.subjectKeyIdentifier, critical: false,
                    value: StandardExtensions.subjectKeyIdentifier(arkID)),
                .init(
                    oid: SimulatedCertificate.OID.basicConstraints, critical: true,
                    value: StandardExtensions.basicConstraints(pathLength: nil)),
            ]
        ).signed(by: arkKey)
        let askDER = try SimulatedCertificate(
            serialNumber: SimulatedCertificate.randomSerialNumber(), issuer: names.ark, subject: names.ask,
            notBefore: notBefore, notAfter: now.addingTimeInterval(25 * 365.25 * day), subjectPublicKeyInfo: askSPKI,
            extensions: [
                .init(
                    oid: SimulatedCertificate.OID.keyUsage, critical: true,
                    value: StandardExtensions.keyUsageCertificateSign),
                .init(
                    oid: SimulatedCertificate.OID.subjectKeyIdentifier, critical: false,
                    value: StandardExtensions.subjectKeyIdentifier(askID)),
                .init(
                    oid: SimulatedCertificate.OID.authorityKeyIdentifier, critical: false,
                    value: StandardExtensions.authorityKeyIdentifier(arkID)),
                .init(
                    oid: SimulatedCertificate.OID.basicConstraints, critical: true,
                    value: StandardExtensions.basicConstraints(pathLength: 0)),
            ]
        ).signed(by: arkKey)
        let vcekDER = try SimulatedCertificate(
            serialNumber: SimulatedCertificate.randomSerialNumber(), issuer: names.ask, subject: names.vcek,
            notBefore: notBefore, notAfter: now.addingTimeInterval(7 * 365.25 * day),
            subjectPublicKeyInfo: Array(vcekKey.publicKey.derRepresentation),
            extensions: VCEKExtensionEncoding.extensions(configuration)
        ).signed(by: askKey)

        let ark = try certificate(arkDER, "ARK")
        let ask = try certificate(askDER, "ASK")
        let vcek = try certificate(vcekDER, "VCEK")
        // What was issued must pass the checks the verifier makes, or it is not written at all.
        try checkChain(ark: ark, ask: ask, vcek: vcek, configuration: configuration)

        func path(_ name: String) -> URL { directory.appendingPathComponent(name) }
        try StateFiles.write(
            Array(PEM.encode(try arkKey.pkcs8(), label: "PRIVATE KEY").utf8), to: path(FileName.arkKey),
            mode: StateFiles.keyMode)
        try StateFiles.write(
            Array(PEM.encode(try askKey.pkcs8(), label: "PRIVATE KEY").utf8), to: path(FileName.askKey),
            mode: StateFiles.keyMode)
        try StateFiles.write(
            Array(vcekKey.pemRepresentation.utf8), to: path(FileName.vcekKey), mode: StateFiles.keyMode)
        for (der, name) in [(arkDER, FileName.ark), (askDER, FileName.ask), (vcekDER, FileName.vcek)] {
            try StateFiles.write(
                Array(PEM.encode(der, label: "CERTIFICATE").utf8), to: path(name), mode: StateFiles.publicMode)
        }
        let manifest = TrustAnchorStore.Manifest(anchors: [
            .init(
                root: AMDProduct.simulatedRootName, role: "ark", file: FileName.ark,
                sha256: Hex.encode(SHA256.hash(data: arkDER)), simulated: true),
            .init(
                root: AMDProduct.simulatedRootName, role: "ask", file: FileName.ask,
                sha256: Hex.encode(SHA256.hash(data: askDER)), simulated: true),
        ])
        try StateFiles.write(try json(manifest), to: path(FileName.manifest), mode: StateFiles.publicMode)
        // The configuration last: its presence says the platform is complete.
        try StateFiles.write(try json(configuration), to: path(FileName.configuration), mode: StateFiles.publicMode)
        return LoadedState(configuration: configuration, ark: ark, ask: ask, vcek: vcek, vcekKey: vcekKey)
    }

    static func load(_ directory: URL) throws(PlatformSimulatorError) -> LoadedState {
        func path(_ name: String) -> URL { directory.appendingPathComponent(name) }
        // Every key file's permissions first: a disclosed key is refused whichever one it is.
        let keyTexts = try [FileName.arkKey, FileName.askKey, FileName.vcekKey].map {
            name throws(PlatformSimulatorError) in
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
        guard configuration.format == 1, configuration.product == product, configuration.chipID.count == 64,
            configuration.tcb.fmc == nil
        else {
            throw PlatformSimulatorError(
                .inconsistentState,
                "\(path(FileName.configuration).path) is not a format-1 Genoa configuration with a 64-byte CHIP_ID")
        }
        func certificateFile(_ name: String, _ role: String) throws(PlatformSimulatorError) -> AttestationCertificate {
            let text = String(decoding: try StateFiles.read(path(name), privateKey: false), as: UTF8.self)
            return try certificate(try PEM.decode(text, label: "CERTIFICATE"), role)
        }
        let ark = try certificateFile(FileName.ark, "ARK")
        let ask = try certificateFile(FileName.ask, "ASK")
        let vcek = try certificateFile(FileName.vcek, "VCEK")
        try checkChain(ark: ark, ask: ask, vcek: vcek, configuration: configuration)

        for (text, certificate, name) in [(keyTexts[0], ark, FileName.arkKey), (keyTexts[1], ask, FileName.askKey)] {
            let key = try OpenSSLRSAPrivateKey(pkcs8: try PEM.decode(text, label: "PRIVATE KEY"))
            guard try key.subjectPublicKeyInfo() == certificate.subjectPublicKeyInfo else {
                throw PlatformSimulatorError(.inconsistentState, "\(path(name).path) is not the key of its certificate")
            }
        }
        let vcekKey: P384.Signing.PrivateKey
        do {
            vcekKey = try P384.Signing.PrivateKey(pemRepresentation: keyTexts[2])
        } catch {
            throw PlatformSimulatorError(
                .inconsistentState, "\(path(FileName.vcekKey).path) is not a P-384 private key")
        }
        guard Array(vcekKey.publicKey.derRepresentation) == vcek.subjectPublicKeyInfo else {
            throw PlatformSimulatorError(.inconsistentState, "\(path(FileName.vcekKey).path) is not the VCEK's key")
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
        let expected = [("ark", FileName.ark, ark), ("ask", FileName.ask, ask)].map { role, file, certificate in
            TrustAnchorStore.Entry(
                root: AMDProduct.simulatedRootName, role: role, file: file,
                sha256: Hex.encode(SHA256.hash(data: certificate.der)), simulated: true)
        }
        guard manifest.anchors == expected else {
            throw PlatformSimulatorError(
                .inconsistentState, "\(path(FileName.manifest).path) does not list exactly this platform's ARK and ASK")
        }
        return LoadedState(configuration: configuration, ark: ark, ask: ask, vcek: vcek, vcekKey: vcekKey)
    }

    /// The checks the verifier makes, applied to what the platform issued or loaded: the roots' structure and names
    /// (as simulated roots), the VCEK's signature and name, its extensions against the configuration.
    static func checkChain(
        ark: AttestationCertificate, ask: AttestationCertificate, vcek: AttestationCertificate,
        configuration: Configuration
    ) throws(PlatformSimulatorError) {
        let product = configuration.product
        do {
            try AMDRootCertificates(product: product, ark: ark, ask: ask, asvk: nil, simulated: true).verify(at: nil)
            try vcek.verifySignature(issuedBy: ask, requiredAlgorithm: .rsaPSS(.amdSEV))
            try vcek.checkCriticalExtensions()
            let extensions = try VCEKExtensions(certificate: vcek)
            guard vcek.subjectCommonName == AMDProduct.simulatedVCEKCommonName,
                extensions.productName == product.simulatedProductName, extensions.structVersion == 0,
                extensions.tcb == configuration.tcb, extensions.hardwareID == configuration.chipID.bytes
            else {
                throw PlatformSimulatorError(
                    .inconsistentState,
                    "the VCEK's name, productName, TCB or hwID differ from the platform's configuration")
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

    /// RFC 7093 §2 method 1: the leftmost 160 bits of SHA-256 over the subjectPublicKey BIT STRING's value.
    private static func keyIdentifier(_ spki: [UInt8]) throws(PlatformSimulatorError) -> [UInt8] {
        do {
            let bits = try DER.sequence(try DER.parse(spki), identifier: .sequence) { nodes in
                _ = nodes.next()
                guard let key = nodes.next() else {
                    throw PlatformSimulatorError(.certificateEncoding, "SPKI has no key")
                }
                return try ASN1BitString(derEncoded: key)
            }
            return Array(SHA256.hash(data: Array(bits.bytes)).prefix(20))
        } catch let error as PlatformSimulatorError {
            throw error
        } catch {
            throw PlatformSimulatorError(.certificateEncoding, "cannot read a SubjectPublicKeyInfo: \(error)")
        }
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

/// AMD's VCEK extensions (KDS interface spec #57230, Table 8) as the simulated VCEK carries them, in the encodings
/// cmk's ``VCEKExtensions`` parser accepts: SPLs as DER INTEGERs, productName as an IA5String, hwID as raw bytes.
enum VCEKExtensionEncoding {
    static let structVersion: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 1]
    static let productName: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 2]
    /// blSPL, teeSPL, snpSPL, spl_4 ... spl_7, ucodeSPL: 1.3.6.1.4.1.3704.1.3.1 to .3.8.
    static func spl(_ n: UInt) -> ASN1ObjectIdentifier {
        switch n {
        case 1: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 1]
        case 2: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 2]
        case 3: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 3]
        case 4: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 4]
        case 5: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 5]
        case 6: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 6]
        case 7: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 7]
        default: [1, 3, 6, 1, 4, 1, 3704, 1, 3, 8]
        }
    }
    static let hardwareID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 3704, 1, 4]

    /// A DER INTEGER from 0 to 255: `02 01 xx` or `02 02 00 xx`.
    static func integer(_ value: UInt8) -> [UInt8] { value < 0x80 ? [0x02, 0x01, value] : [0x02, 0x02, 0x00, value] }

    /// A DER IA5String of fewer than 128 ASCII characters.
    static func ia5(_ text: String) -> [UInt8] { [0x16, UInt8(text.utf8.count)] + Array(text.utf8) }

    /// The extensions of a Genoa-layout (structVersion 0) VCEK for `configuration`.
    static func extensions(
        _ configuration: SimulatedAMDSecureProcessor.Configuration
    ) -> [SimulatedCertificate.Extension] {
        let tcb = configuration.tcb
        let values: [(ASN1ObjectIdentifier, [UInt8])] = [
            (structVersion, integer(0)),
            (productName, ia5(configuration.product.simulatedProductName)),
            (spl(1), integer(tcb.bootloader)),
            (spl(2), integer(tcb.tee)),
            (spl(3), integer(tcb.snp)),
            (spl(4), integer(0)),
            (spl(5), integer(0)),
            (spl(6), integer(0)),
            (spl(7), integer(0)),
            (spl(8), integer(tcb.microcode)),
            (hardwareID, configuration.chipID.bytes),
        ]
        return values.map { SimulatedCertificate.Extension(oid: $0.0, critical: false, value: $0.1) }
    }
}

/// An exclusive lock on the platform folder (flock), so two processes never generate two platforms at once.
final class FolderLock {
    private var fd: Int32

    init(_ url: URL) throws(PlatformSimulatorError) {
        fd = open(url.path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, StateFiles.keyMode)
        guard fd >= 0 else {
            throw PlatformSimulatorError(
                .stateFolder, "cannot open the lock file \(url.path)", nativeCode: UInt64(errno))
        }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let code = errno
                close(fd)
                fd = -1
                throw PlatformSimulatorError(.stateFolder, "cannot lock \(url.path)", nativeCode: UInt64(code))
            }
        }
    }

    func release() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// Printing or dumping a platform never shows its VCEK private key.
extension SimulatedAMDSecureProcessor: CustomStringConvertible, CustomReflectable {
    public var description: String {
        "simulated AMD secure processor (\(product.rawValue), installation \(configuration.installation), "
            + "\(directory.path))"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "directory": directory, "configuration": configuration, "ark": ark.subjectCommonName ?? "?",
                "ask": ask.subjectCommonName ?? "?", "vcek": vcek.subjectCommonName ?? "?",
                "wasGenerated": wasGenerated,
            ])
    }
}
