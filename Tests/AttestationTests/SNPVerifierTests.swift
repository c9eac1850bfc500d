@testable import Attestation
import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import SEVSNP
import Testing

let snpVectors = [
    "milan-v2-gsg", "milan-v2-virtee", "milan-v2-trustee", "milan-v2-azure-hcl", "milan-v3-azure-hcl",
    "milan-v3-oak-oc", "milan-v3-vlek-aws-trustee", "genoa-v3-azure-hcl", "genoa-v5-oak", "turin-v5-oak",
]

/// One vector folder: report, endorsement certificate, expected verdicts.
struct SNPVector {
    let name: String
    let reportBytes: [UInt8]
    let report: SNPReport
    let certificate: AttestationCertificate
    let json: [String: Any]
    let expect: [String: Any]
    let time: Date

    init(_ name: String) throws {
        self.name = name
        reportBytes = try SharedVectors.bytes("snp/\(name)/report.bin")
        report = try SNPReport(bytes: reportBytes)
        let leaf = FileManager.default.fileExists(atPath: SharedVectors.url("snp/\(name)/vlek.der").path) ? "vlek.der" : "vcek.der"
        certificate = try AttestationCertificate(der: try SharedVectors.bytes("snp/\(name)/\(leaf)"))
        json = try SharedVectors.json("snp/\(name)/expected.json")
        expect = try #require(json["expect"] as? [String: Any])
        time = try #require((json["verify_at_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
    }

    var evidence: SNPEvidence { SNPEvidence(report: report, endorsementCertificate: certificate) }
    var options: SNPVerificationOptions { SNPVerificationOptions(validationTime: time, revocation: .soft) }
}

let shippedAnchors = Result { try TrustAnchorStore(directory: SharedVectors.attestationDirectory) }

func verifier(collateral: SNPCollateralStore? = nil) throws -> SNPVerifier {
    SNPVerifier(trustAnchors: try shippedAnchors.get(), collateral: collateral)
}

func code(_ body: () throws -> Void) -> AttestationError.Code? {
    do {
        try body()
        return nil
    } catch let error as AttestationError {
        return error.code
    } catch {
        return AttestationError.Code("other: \(error)")
    }
}

@Suite("SEV-SNP verification against the real-hardware vectors")
struct SNPVerifierTests {
    @Test("every vector verifies at its verify_at_time with the verdicts of expected.json", arguments: snpVectors)
    func vectorVerifies(name: String) throws {
        let v = try SNPVector(name)
        let result = try verifier().verify(v.evidence, options: v.options)
        #expect(result.claims.product.rawValue == v.expect["product"] as? String)
        #expect(result.signatureValid == v.expect["signature_valid"] as? Bool)
        #expect(result.chainValid == v.expect["chain_valid"] as? Bool)
        #expect(result.reportedTCBMatchesCertificate == v.expect["reported_tcb_matches_cert"] as? Bool)
        #expect(result.chipIDMatchesHardwareID == v.expect["chip_id_matches_hwid"] as? Bool)
        #expect(result.claims.signer == v.json["signer"] as? String)
        #expect(result.claims.simulated == false)
        #expect(result.revocation.notCheckedReason != nil)
        let report = try #require(v.expect["report"] as? [String: Any])
        #expect(result.claims.measurement.description == report["measurement"] as? String)
        #expect(result.claims.reportData.description == report["report_data"] as? String)
        #expect(result.claims.chipID.description == report["chip_id"] as? String)
        #expect(Hex.encode(SHA384.hash(data: v.report.signedBytes)) == report["sha384_of_signed_bytes"] as? String)

        let cert = try #require(v.expect["vek_cert"] as? [String: Any])
        let leaf = result.chain[0]
        #expect(leaf.subject == cert["subject_cn"] as? String)
        #expect(leaf.issuer == cert["issuer_cn"] as? String)
        #expect(leaf.sha256 == cert["sha256_der"] as? String)
        #expect(leaf.notBefore == ISO8601DateFormatter().date(from: cert["not_before"] as? String ?? ""))
        #expect(leaf.notAfter == ISO8601DateFormatter().date(from: cert["not_after"] as? String ?? ""))
        let ext = try #require(cert["extensions"] as? [String: Any])
        let parsed = try VCEKExtensions(certificate: v.certificate)
        #expect(parsed.structVersion == ext["structVersion"] as? Int)
        #expect(parsed.productName == ext["productName"] as? String)
        #expect(Int(parsed.bootloaderSPL) == ext["blSPL"] as? Int)
        #expect(Int(parsed.teeSPL) == ext["teeSPL"] as? Int)
        #expect(Int(parsed.snpSPL) == ext["snpSPL"] as? Int)
        #expect(Int(parsed.microcodeSPL) == ext["ucodeSPL"] as? Int)
        #expect(parsed.fmcSPL.map(Int.init) == ext["fmcSPL"] as? Int)
        #expect(parsed.spl4.map(Int.init) == ext["spl_4"] as? Int)
        #expect(parsed.hardwareID.map(Hex.encode) == ext["hwID"] as? String)
        #expect(parsed.cspID == ext["cspID"] as? String)
    }

    @Test("a time outside the certificate validity fails with a distinct reason", arguments: snpVectors)
    func outsideValidity(name: String) throws {
        let v = try SNPVector(name)
        let early = SNPVerificationOptions(validationTime: v.certificate.notBefore.addingTimeInterval(-60), revocation: .soft)
        #expect(code { _ = try verifier().verify(v.evidence, options: early) } == .certificateNotYetValid)
        let late = SNPVerificationOptions(validationTime: v.certificate.notAfter.addingTimeInterval(60), revocation: .soft)
        #expect(code { _ = try verifier().verify(v.evidence, options: late) } == .certificateExpired)
    }

    @Test("single-bit flips across the signed region, the signature and the certificate are all rejected", arguments: snpVectors)
    func bitFlipsRejected(name: String) throws {
        let v = try SNPVector(name)
        let verifier = try verifier()
        var flips = 0
        // The signed region and the signature: every 37th bit, so each field is hit.
        for bit in stride(from: 0, to: 0x330 * 8, by: 37) {
            var bytes = v.reportBytes
            bytes[bit / 8] ^= 1 << UInt8(bit % 8)
            guard let report = try? SNPReport(bytes: bytes) else { flips += 1; continue }  // rejected by the parser
            let evidence = SNPEvidence(report: report, endorsementCertificate: v.certificate)
            #expect(throws: AttestationError.self, "bit \(bit) of the report") { try verifier.verify(evidence, options: v.options) }
            flips += 1
        }
        for bit in stride(from: 0, to: v.certificate.der.count * 8, by: 53) {
            var der = v.certificate.der
            der[bit / 8] ^= 1 << UInt8(bit % 8)
            guard let certificate = try? AttestationCertificate(der: der) else { flips += 1; continue }
            let evidence = SNPEvidence(report: v.report, endorsementCertificate: certificate)
            #expect(throws: AttestationError.self, "bit \(bit) of the certificate") { try verifier.verify(evidence, options: v.options) }
            flips += 1
        }
        #expect(flips > 200)
    }

    @Test("a flip in the signed bytes is a report-signature error, not a parse error")
    func signedFieldFlip() throws {
        let v = try SNPVector("genoa-v5-oak")
        var bytes = v.reportBytes
        bytes[0x90] ^= 0x01  // MEASUREMENT
        let evidence = SNPEvidence(report: try SNPReport(bytes: bytes), endorsementCertificate: v.certificate)
        #expect(code { _ = try verifier().verify(evidence, options: v.options) } == .reportSignatureInvalid)
    }

    @Test("a report checked against another product is rejected")
    func wrongProduct() throws {
        let v = try SNPVector("genoa-v5-oak")
        var options = v.options
        options.product = .milan
        #expect(code { _ = try verifier().verify(v.evidence, options: options) } == .productMismatch)
        // The Genoa VCEK presented with Milan's ASK: the chain does not end in the pinned Genoa roots.
        let milanASK = try AttestationCertificate(pem: SharedVectors.text("snp/roots/milan_ask.pem"))
        let spliced = SNPEvidence(report: v.report, endorsementCertificate: v.certificate, presentedChain: [milanASK])
        #expect(code { _ = try verifier().verify(spliced, options: v.options) } == .untrustedRoot)
        // A Milan VCEK under Genoa's ASK does not chain.
        let milan = try SNPVector("milan-v3-oak-oc")
        let genoaASK = try shippedAnchors.get().amdRoots(.genoa).ask
        #expect(code { try milan.certificate.verifySignature(issuedBy: genoaASK) } == .issuerMismatch)
    }

    @Test("a v2 report names no product: the certificate decides, and a contradicting caller is refused")
    func v2ProductFromCertificate() throws {
        let v = try SNPVector("milan-v2-gsg")
        #expect(v.report.cpuid == nil)
        #expect(try verifier().verify(v.evidence, options: v.options).claims.product == .milan)
        var options = v.options
        options.product = .genoa
        #expect(code { _ = try verifier().verify(v.evidence, options: options) } == .productMismatch)
        // Without a certificate and without a product, nothing says what the report is.
        let bare = SNPEvidence(report: v.report)
        #expect(code { _ = try verifier().verify(bare, options: v.options) } == .unknownProduct)
    }

    @Test("the VLEK vector passes only through the ASVK")
    func vlekNeedsASVK() throws {
        let v = try SNPVector("milan-v3-vlek-aws-trustee")
        #expect(try verifier().verify(v.evidence, options: v.options).chain[1].subject == "SEV-VLEK-Milan")
        // An anchor folder without the ASVK cannot verify it.
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-anchors-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: folder) }
        try fm.copyItem(at: SharedVectors.attestationDirectory, to: folder)
        let manifest = folder.appendingPathComponent("anchors.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as? [String: Any])
        json["anchors"] = (json["anchors"] as? [[String: Any]])?.filter { $0["role"] as? String != "asvk" }
        try JSONSerialization.data(withJSONObject: json).write(to: manifest)
        let withoutASVK = SNPVerifier(trustAnchors: try TrustAnchorStore(directory: folder))
        #expect(code { _ = try withoutASVK.verify(v.evidence, options: v.options) } == .missingCollateral)
        // The VLEK is not signed by the ASK.
        let ask = try shippedAnchors.get().amdRoots(.milan).ask
        #expect(code { try v.certificate.verifySignature(issuedBy: ask) } == .issuerMismatch)
        // After 2025-12-10 the one-year VLEK has expired.
        let today = SNPVerificationOptions(validationTime: Date(timeIntervalSince1970: 1_795_000_000), revocation: .soft)
        #expect(code { _ = try verifier().verify(v.evidence, options: today) } == .certificateExpired)
    }

    @Test("the hard revocation mode refuses to proceed without a CRL and says where to get one")
    func hardRevocationNeedsCRL() throws {
        let v = try SNPVector("turin-v5-oak")
        let hard = SNPVerificationOptions(validationTime: v.time, revocation: .hard)
        #expect(code { _ = try verifier().verify(v.evidence, options: hard) } == .missingCollateral)
        let empty = SNPCollateralStore(directory: FileManager.default.temporaryDirectory.appendingPathComponent("cmk-none-\(UUID().uuidString)"))
        do {
            _ = try verifier(collateral: empty).verify(v.evidence, options: hard)
            Issue.record("hard mode without a CRL must fail")
        } catch let error as AttestationError {
            #expect(error.code == .missingCollateral)
            #expect(error.reason.contains("https://kdsintf.amd.com/vcek/v1/Turin/crl"))
        }
    }

    @Test("a report with its certificate table verifies with no other input")
    func certificateTable() throws {
        let v = try SNPVector("turin-v5-oak")
        let roots = try shippedAnchors.get().amdRoots(.turin)
        let table = SNPCertificateTable(entries: [
            try .init(guid: SNPCertificateTable.GUID.vcek, data: v.certificate.der),
            try .init(guid: SNPCertificateTable.GUID.ask, data: roots.ask.der),
            try .init(guid: SNPCertificateTable.GUID.ark, data: roots.ark.der),
        ])
        let parsed = try SNPCertificateTable(bytes: table.encoded())
        let evidence = try SNPEvidence(report: v.report, certificateTable: parsed)
        #expect(try verifier().verify(evidence, options: v.options).chipIDMatchesHardwareID == true)
        // A table without the signer's certificate is missing collateral.
        let empty = SNPCertificateTable(entries: [try .init(guid: SNPCertificateTable.GUID.ark, data: roots.ark.der)])
        #expect(code { _ = try SNPEvidence(report: v.report, certificateTable: empty) } == .missingCollateral)
    }

    @Test("the offline cache supplies the VCEK under the KDS-derived path")
    func collateralCache() throws {
        let v = try SNPVector("genoa-v5-oak")
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("cmk-collateral-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: folder) }
        let store = SNPCollateralStore(directory: folder)
        let bare = SNPEvidence(report: v.report)
        #expect(code { _ = try verifier(collateral: store).verify(bare, options: v.options) } == .missingCollateral)
        try store.write(v.certificate.der, to: store.vcekPath(product: .genoa, chipID: v.report.chipID, reportedTCB: v.report.reportedTCB))
        #expect(try verifier(collateral: store).verify(bare, options: v.options).claims.product == .genoa)
    }

    @Test("KDS addresses use REPORTED_TCB, the product's layout, and Turin's 8-byte hwID")
    func kdsAddresses() throws {
        let turin = try SNPVector("turin-v5-oak").report
        let url = AMDKDS.vcekURL(product: .turin, chipID: turin.chipID, reportedTCB: turin.reportedTCB)
        let parts = url.split(separator: "?")
        #expect(parts[0] == "https://kdsintf.amd.com/vcek/v1/Turin/3b42092f69c656d3")
        // The address Oak fetched this VCEK from (expected.json notes), compared as a set of parameters.
        #expect(Set(parts[1].split(separator: "&")) == ["ucodeSPL=71", "snpSPL=2", "teeSPL=0", "blSPL=1", "fmcSPL=0"])
        let genoa = try SNPVector("genoa-v5-oak").report
        let genoaURL = AMDKDS.vcekURL(product: .genoa, chipID: genoa.chipID, reportedTCB: genoa.reportedTCB)
        #expect(genoaURL.hasSuffix("?blSPL=10&teeSPL=0&snpSPL=25&ucodeSPL=84"))
        #expect(genoaURL.contains("/vcek/v1/Genoa/" + Hex.encode(genoa.chipID)))
        #expect(AMDKDS.crlURL(product: .milan, signer: .vlek) == "https://kdsintf.amd.com/vlek/v1/Milan/crl")
    }

    @Test("the VCEK of another TCB or another chip is a distinct error")
    func tcbAndChipMismatch() throws {
        let oak = try SNPVector("milan-v3-oak-oc")
        let trustee = try SNPVector("milan-v2-trustee")
        let verifier = try verifier()
        let otherTCB = try VCEKExtensions(certificate: trustee.certificate)
        #expect(code { try verifier.checkTCB(report: oak.report, extensions: otherTCB, product: .milan) } == .tcbMismatch)
        // The VLEK vector: REPORTED_TCB (ucode 217) is what the VLEK matches; CURRENT_TCB (220) would not.
        let vlek = try SNPVector("milan-v3-vlek-aws-trustee")
        let ext = try VCEKExtensions(certificate: vlek.certificate)
        #expect(ext.tcb == vlek.report.reportedTCB.components(.milanGenoa))
        #expect(ext.tcb != vlek.report.currentTCB.components(.milanGenoa))
        // Same TCB, different chip.
        let virtee = try SNPVector("milan-v2-virtee")
        let azure = try SNPVector("milan-v2-azure-hcl")
        if virtee.report.reportedTCB == azure.report.reportedTCB {
            let other = try VCEKExtensions(certificate: azure.certificate)
            #expect(code { _ = try verifier.checkChipID(report: virtee.report, extensions: other, product: .milan, signer: .vcek) } == .chipIDMismatch)
        }
        // Turin must never be read with the Milan layout.
        let turin = try SNPVector("turin-v5-oak")
        let turinExt = try VCEKExtensions(certificate: turin.certificate)
        #expect(code { try verifier.checkTCB(report: turin.report, extensions: turinExt, product: .milan) } == .tcbMismatch)
    }

    @Test("the Turin VCEK chain vector verifies under the pinned Turin roots")
    func turinChain() throws {
        let json = try SharedVectors.json("snp/turin-vcek-chain-virtee/expected.json")
        let time = try #require((json["verify_at_time"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let vcek = try AttestationCertificate(der: try SharedVectors.bytes("snp/turin-vcek-chain-virtee/vcek.der"))
        let roots = try shippedAnchors.get().amdRoots(.turin)
        try roots.verify(at: time)
        try vcek.verifySignature(issuedBy: roots.ask, requiredAlgorithm: .rsaPSS(.amdSEV))
        try vcek.checkValidity(at: time)
        let ext = try VCEKExtensions(certificate: vcek)
        #expect(ext.structVersion == 1 && ext.fmcSPL == 0 && ext.spl4 == nil)
        #expect(ext.hardwareID.map(Hex.encode) == "1e550a8ee5cf9f4d")
    }
}
