import Attestation
import CMKTesting
import Foundation
import SEVSNP
import Testing

@Suite("Trust anchors shipped in attestation/")
struct TrustAnchorStoreTests {
    static let now = Date(timeIntervalSince1970: 1_790_000_000)

    @Test("every shipped anchor loads, matches its manifest digest, and each AMD root verifies")
    func shippedAnchorsLoad() throws {
        let store = try TrustAnchorStore(directory: SharedVectors.attestationDirectory)
        #expect(store.rootNames == ["amd-milan", "amd-genoa", "amd-turin", "intel-sgx-root"])
        for product in AMDProduct.allCases {
            try store.amdRoots(product).verify(at: Self.now)
        }
    }

    @Test("the shipped AMD anchors are byte-identical to the vectors' roots")
    func anchorsMatchVectors() throws {
        let store = try TrustAnchorStore(directory: SharedVectors.attestationDirectory)
        for product in AMDProduct.allCases {
            let roots = try store.amdRoots(product)
            let prefix = product.rawValue.lowercased()
            #expect(roots.ark.der == (try AttestationCertificate(pem: SharedVectors.text("snp/roots/\(prefix)_ark.pem"))).der)
            #expect(roots.ask.der == (try AttestationCertificate(pem: SharedVectors.text("snp/roots/\(prefix)_ask.pem"))).der)
        }
    }

    @Test("the Intel SGX Root CA is self-signed with ECDSA P-256 and matches the TDX vectors' root")
    func intelRoot() throws {
        let store = try TrustAnchorStore(directory: SharedVectors.attestationDirectory)
        let root = try store.intelSGXRoot()
        #expect(root.subjectCommonName == "Intel SGX Root CA")
        #expect(root.signatureAlgorithm == .ecdsaWithSHA256)
        try root.verifySignature(issuedBy: root)
        try root.checkValidity(at: Self.now)
        #expect(try root.isCertificateAuthority())
        let vector = try AttestationCertificate(pem: SharedVectors.text("tdx/dcapqvl-v4-uptodate/root_ca.pem"))
        #expect(vector.der == root.der)
    }

    @Test("a replaced anchor file is refused with a trust-anchor error")
    func tamperedAnchorRefused() throws {
        let fm = FileManager.default
        let copy = fm.temporaryDirectory.appendingPathComponent("cmk-anchors-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: copy) }
        try fm.copyItem(at: SharedVectors.attestationDirectory, to: copy)
        // Put Genoa's ARK where Milan's belongs.
        let milan = copy.appendingPathComponent("amd/milan_ark.pem")
        try fm.removeItem(at: milan)
        try fm.copyItem(at: copy.appendingPathComponent("amd/genoa_ark.pem"), to: milan)
        #expect { try TrustAnchorStore(directory: copy) } throws: {
            ($0 as? AttestationError)?.code == .trustAnchor
        }
    }

    @Test("the pinned folder refuses simulated roots, by name or by mark")
    func pinnedFolderRefusesSimulatedRoots() throws {
        let fm = FileManager.default
        let manifest = try JSONDecoder().decode(
            TrustAnchorStore.Manifest.self,
            from: Data(contentsOf: SharedVectors.attestationDirectory.appendingPathComponent("anchors.json")))
        let genoa = try #require(manifest.anchors.first { $0.root == "amd-genoa" && $0.role == "ark" })
        for extra in [
            TrustAnchorStore.Entry(root: "simulated-amd", role: "ark", file: genoa.file, sha256: genoa.sha256),
            TrustAnchorStore.Entry(
                root: "amd-extra", role: "ark", file: genoa.file, sha256: genoa.sha256, simulated: true),
        ] {
            let copy = fm.temporaryDirectory.appendingPathComponent("cmk-anchors-\(UUID().uuidString)")
            defer { try? fm.removeItem(at: copy) }
            try fm.copyItem(at: SharedVectors.attestationDirectory, to: copy)
            try JSONEncoder().encode(TrustAnchorStore.Manifest(anchors: manifest.anchors + [extra]))
                .write(to: copy.appendingPathComponent("anchors.json"))
            let error = try #require(throws: AttestationError.self) { try TrustAnchorStore(directory: copy) }
            #expect(error.code == .trustAnchor)
            #expect(error.reason.contains("simulated"), "\(error)")
        }
        let store = try TrustAnchorStore(directory: SharedVectors.attestationDirectory, simulated: nil)
        #expect(store.simulatedDirectory == nil)
        #expect(store.simulatedAMDRoots(.genoa) == nil)
        #expect(!store.rootNames.contains { $0.hasPrefix("simulated-") })
    }

    @Test("a missing anchor folder says how to point cmk at one")
    func missingFolder() {
        #expect {
            try TrustAnchorStore.locateDefaultDirectory(
                environment: [:], executable: URL(fileURLWithPath: "/nonexistent/bin/cmk"))
        } throws: { error in
            guard let error = error as? AttestationError else { return false }
            return error.code == .trustAnchor && error.reason.contains(TrustAnchorStore.environmentVariable)
        }
    }
}
