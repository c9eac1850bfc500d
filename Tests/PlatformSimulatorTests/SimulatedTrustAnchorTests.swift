import Attestation
import CMKTesting
import Foundation
import PlatformSimulator
import SEVSNP
import Testing

@Suite("Trust anchors from an installation's simulated folder")
struct SimulatedTrustAnchorTests {
    static func manifest(_ folder: URL) throws -> TrustAnchorStore.Manifest {
        try JSONDecoder().decode(
            TrustAnchorStore.Manifest.self, from: Data(contentsOf: folder.appendingPathComponent("anchors.json")))
    }

    static func write(_ manifest: TrustAnchorStore.Manifest, to folder: URL) throws {
        try JSONEncoder().encode(manifest).write(to: folder.appendingPathComponent("anchors.json"))
    }

    @Test("the platform's anchors.json names simulated-amd, marks it simulated, and a combined store serves it apart")
    func combinedStore() throws {
        let folder = try SimulatedPlatformFixture.platform().directory
        let manifest = try Self.manifest(folder)
        #expect(manifest.anchors.map(\.root) == ["simulated-amd", "simulated-amd"])
        #expect(manifest.anchors.map(\.role) == ["ark", "ask"])
        #expect(manifest.anchors.allSatisfy { $0.simulated == true })

        let store = try SimulatedPlatformFixture.storeWithSimulatedRoots()
        #expect(store.rootNames == ["amd-milan", "amd-genoa", "amd-turin", "intel-sgx-root", "simulated-amd"])
        #expect(store.isSimulated(root: "simulated-amd"))
        #expect(!store.isSimulated(root: "amd-genoa"))
        #expect(store.simulatedDirectory == folder)
        // AMD's roots are unchanged; the simulated ones are served only under their own name.
        let amd = try store.amdRoots(.genoa)
        #expect(!amd.simulated && amd.ark.subjectCommonName == "ARK-Genoa")
        let simulated = try #require(store.simulatedAMDRoots(.genoa))
        #expect(simulated.simulated && simulated.rootName == "simulated-amd")
        #expect(simulated.ark.subjectCommonName == "ARK-Genoa (cmk simulated)")
        #expect(store.simulatedAMDRoots(.milan) == nil)
        try simulated.verify(at: Date())
        #expect { try store.adding(simulatedDirectory: folder) } throws: {
            ($0 as? AttestationError)?.code == .trustAnchor
        }
    }

    @Test("a simulated folder may hold only simulated-* entries marked simulated, and never a pinned root")
    func simulatedFolderRules() throws {
        let pinned = SharedVectors.attestationDirectory
        let original = try Self.manifest(try SimulatedPlatformFixture.platform().directory)
        let genoaARK = try #require(
            try JSONDecoder().decode(
                TrustAnchorStore.Manifest.self, from: Data(contentsOf: pinned.appendingPathComponent("anchors.json"))
            )
            .anchors.first { $0.root == "amd-genoa" && $0.role == "ark" })
        func entry(_ e: TrustAnchorStore.Entry, root: String? = nil, simulated: Bool?) -> TrustAnchorStore.Entry {
            .init(root: root ?? e.root, role: e.role, file: e.file, sha256: e.sha256, simulated: simulated)
        }
        let cases: [(String, [TrustAnchorStore.Entry], [String: URL])] = [
            ("an AMD name", original.anchors.map { entry($0, root: "amd-genoa", simulated: true) }, [:]),
            ("no simulated mark", original.anchors.map { entry($0, simulated: nil) }, [:]),
            ("simulated: false", original.anchors.map { entry($0, simulated: false) }, [:]),
            (
                "a file outside the folder",
                [.init(root: "simulated-amd", role: "ark", file: "../../etc/ark.pem", sha256: "00", simulated: true)],
                [:]
            ),
            (
                "AMD's Genoa ARK marked simulated",
                [
                    .init(
                        root: "simulated-amd", role: "ark", file: "genoa_ark.pem", sha256: genoaARK.sha256,
                        simulated: true)
                ],
                ["genoa_ark.pem": pinned.appendingPathComponent(genoaARK.file)]
            ),
        ]
        for (name, anchors, files) in cases {
            let copy = try SimulatedPlatformFixture.copyOfPlatform()
            for (file, source) in files {
                try FileManager.default.copyItem(at: source, to: copy.appendingPathComponent(file))
            }
            try Self.write(TrustAnchorStore.Manifest(anchors: anchors), to: copy)
            let error = try #require(throws: AttestationError.self, "\(name)") {
                try TrustAnchorStore(directory: pinned, simulated: copy)
            }
            #expect(error.code == .trustAnchor, "\(name): \(error)")
        }
    }

    @Test("a simulated folder others may write is refused")
    func writableFolderRefused() throws {
        let copy = try SimulatedPlatformFixture.copyOfPlatform()
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: copy.path)
        #expect { try TrustAnchorStore(directory: SharedVectors.attestationDirectory, simulated: copy) } throws: {
            ($0 as? AttestationError)?.code == .trustAnchor
        }
    }
}
