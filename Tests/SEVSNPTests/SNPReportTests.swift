import BinaryFormat
import CMKTesting
import Foundation
import SEVSNP
import Testing

/// The report vectors in ../shared/vectors/snp (every folder with a report.bin).
let reportVectors = [
    "milan-v2-gsg", "milan-v2-virtee", "milan-v2-trustee", "milan-v2-azure-hcl", "milan-v3-azure-hcl",
    "milan-v3-oak-oc", "milan-v3-vlek-aws-trustee", "genoa-v3-azure-hcl", "genoa-v5-oak", "turin-v5-oak",
]

struct ReportVector {
    let name: String
    let report: SNPReport
    let expected: [String: Any]
    let product: AMDProduct

    init(_ name: String) throws {
        self.name = name
        report = try SNPReport(bytes: try SharedVectors.bytes("snp/\(name)/report.bin"))
        let json = try SharedVectors.json("snp/\(name)/expected.json")
        expected = try #require((json["expect"] as? [String: Any])?["report"] as? [String: Any])
        product = try #require(AMDProduct(rawValue: json["product"] as? String ?? ""))
    }

    func string(_ key: String) -> String? { expected[key] as? String }
    func int(_ key: String) -> Int? { expected[key] as? Int }
}

func hex0x(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }

@Suite("SEV-SNP ATTESTATION_REPORT")
struct SNPReportTests {
    @Test("every field of every real report equals the independently decoded expected.json", arguments: reportVectors)
    func fieldsMatchExpected(name: String) throws {
        let v = try ReportVector(name)
        let r = v.report
        #expect(Int(r.version) == v.int("version"))
        #expect(Int(r.guestSVN) == v.int("guest_svn"))
        #expect(hex0x(r.policy.raw) == v.string("policy"))
        let policy = try #require(v.expected["policy_decoded"] as? [String: Any])
        #expect(Int(r.policy.abiMinor) == policy["abi_minor"] as? Int)
        #expect(Int(r.policy.abiMajor) == policy["abi_major"] as? Int)
        #expect(r.policy.flagNames == policy["flags"] as? [String])
        #expect(hex0x(r.policy.unknownBits) == policy["unknown_bits"] as? String)
        #expect(Hex.encode(r.familyID) == v.string("family_id"))
        #expect(Hex.encode(r.imageID) == v.string("image_id"))
        #expect(Int(r.vmpl) == v.int("vmpl"))
        #expect(Int(r.signatureAlgorithm) == v.int("signature_algo"))
        #expect(hex0x(r.platformInfo.raw) == v.string("platform_info"))
        #expect(r.platformInfo.flagNames == v.expected["platform_info_decoded"] as? [String])
        let signer = try #require(v.expected["signer_info"] as? [String: Any])
        #expect(hex0x(r.signerInfo.raw) == signer["raw"] as? String)
        #expect(r.signerInfo.authorKeyEnabled == signer["author_key_en"] as? Bool)
        #expect(r.signerInfo.maskChipKey == signer["mask_chip_key"] as? Bool)
        #expect(r.signerInfo.signingKey.name == signer["signing_key"] as? String)
        #expect(Hex.encode(r.reportData) == v.string("report_data"))
        #expect(Hex.encode(r.measurement) == v.string("measurement"))
        #expect(Hex.encode(r.hostData) == v.string("host_data"))
        #expect(Hex.encode(r.idKeyDigest) == v.string("id_key_digest"))
        #expect(Hex.encode(r.authorKeyDigest) == v.string("author_key_digest"))
        #expect(Hex.encode(r.reportID) == v.string("report_id"))
        #expect(Hex.encode(r.reportIDMA) == v.string("report_id_ma"))
        #expect(Hex.encode(r.chipID) == v.string("chip_id"))
        if let cpuid = v.expected["cpuid"] as? [String: Int] {
            #expect(r.cpuid.map { Int($0.family) } == cpuid["family"])
            #expect(r.cpuid.map { Int($0.model) } == cpuid["model"])
            #expect(r.cpuid.map { Int($0.stepping) } == cpuid["stepping"])
            #expect(r.productFromCPUID == v.product)
        } else {
            #expect(r.cpuid == nil)
            #expect(r.version == 2)
        }
        for (key, tcb) in [("current_tcb", r.currentTCB), ("reported_tcb", r.reportedTCB), ("committed_tcb", r.committedTCB), ("launch_tcb", r.launchTCB)] {
            let reference = try #require(v.expected[key] as? [String: Any])
            #expect(hex0x(tcb.raw) == reference["raw"] as? String, "\(key)")
            let components = tcb.components(v.product.tcbLayout)
            #expect(Int(components.bootloader) == reference["bootloader"] as? Int, "\(key) bootloader")
            #expect(Int(components.tee) == reference["tee"] as? Int, "\(key) tee")
            #expect(Int(components.snp) == reference["snp"] as? Int, "\(key) snp")
            #expect(Int(components.microcode) == reference["microcode"] as? Int, "\(key) microcode")
            #expect(components.fmc.map(Int.init) == reference["fmc"] as? Int, "\(key) fmc")
            #expect(tcb.reservedBytesAreZero(in: v.product.tcbLayout))
            #expect(SNPTCBVersion(components, layout: v.product.tcbLayout) == tcb)
        }
        #expect(r.currentVersion.description == v.string("current_version"))
        #expect(r.committedVersion.description == v.string("committed_version"))
        #expect(r.launchMitigationVector.map(hex0x) == v.string("launch_mit_vector"))
        #expect(r.currentMitigationVector.map(hex0x) == v.string("current_mit_vector"))
        #expect(Hex.encode(r.signatureR) == v.string("signature_r"))
        #expect(Hex.encode(r.signatureS) == v.string("signature_s"))
        #expect((v.expected["mbz_violations"] as? [Any])?.isEmpty == true)
    }

    @Test("the Turin TCB is never read with the Milan layout: doing so gives the wrong components")
    func turinLayout() throws {
        let report = try ReportVector("turin-v5-oak").report
        let turin = report.reportedTCB.components(.turin)
        #expect(turin == .init(fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71))
        let misread = report.reportedTCB.components(.milanGenoa)
        #expect(misread == .init(fmc: nil, bootloader: 0, tee: 1, snp: 0, microcode: 71))
        #expect(!report.reportedTCB.reservedBytesAreZero(in: .milanGenoa))
    }

    @Test("truncation at every offset is rejected without a crash")
    func truncationAtEveryOffset() throws {
        let bytes = try SharedVectors.bytes("snp/genoa-v5-oak/report.bin")
        for length in 0..<bytes.count {
            #expect(throws: BinaryFormatError.self) { try SNPReport(bytes: Array(bytes.prefix(length))) }
        }
        #expect { try SNPReport(bytes: bytes + [0]) } throws: { ($0 as? BinaryFormatError)?.code == .trailingBytes }
    }

    @Test("a non-zero byte in any reserved range is rejected and named", arguments: [
        (0x04C, "reserved 0x04C"), (0x18B, "reserved 0x18B"), (0x19F, "reserved 0x18B"), (0x1EB, "reserved 0x1EB"),
        (0x1EF, "reserved 0x1EF"), (0x208, "reserved 0x208"), (0x29F, "reserved 0x208"),
        (0x2D0, "SIGNATURE.R high bytes"), (0x318, "SIGNATURE.S high bytes"), (0x330, "reserved signature bytes 0x330"),
        (0x49F, "reserved signature bytes 0x330"),
    ])
    func reservedBytes(offset: Int, field: String) throws {
        var bytes = try SharedVectors.bytes("snp/genoa-v5-oak/report.bin")
        bytes[offset] = 0x01
        #expect { try SNPReport(bytes: bytes) } throws: { error in
            guard let error = error as? BinaryFormatError else { return false }
            return error.code == .reservedNonZero && error.field == field && error.offset == offset
        }
    }

    @Test("version 2 reserves the CPUID bytes; version 3 and 4 reserve the mitigation vectors")
    func versionDependentReserved() throws {
        var v2 = try SharedVectors.bytes("snp/milan-v2-gsg/report.bin")
        v2[0x188] = 0x19
        #expect { try SNPReport(bytes: v2) } throws: { ($0 as? BinaryFormatError)?.code == .reservedNonZero }
        var v3 = try SharedVectors.bytes("snp/milan-v3-oak-oc/report.bin")
        v3[0x1F8] = 0x01
        #expect { try SNPReport(bytes: v3) } throws: { ($0 as? BinaryFormatError)?.code == .reservedNonZero }
        // Version 4 shares version 3's layout.
        var v4 = try SharedVectors.bytes("snp/milan-v3-oak-oc/report.bin")
        v4[0] = 4
        #expect(try SNPReport(bytes: v4).cpuid != nil)
    }

    @Test("unknown versions, signature algorithms and signing keys are rejected", arguments: [
        (0x000, UInt8(1), "VERSION"), (0x000, 6, "VERSION"), (0x000, 0, "VERSION"),
        (0x034, 2, "SIGNATURE_ALGO"), (0x034, 0, "SIGNATURE_ALGO"),
        (0x048, 2 << 2, "SIGNER_INFO.SIGNING_KEY"), (0x048, 7 << 2, "SIGNER_INFO.SIGNING_KEY"),
        (0x048, 0x20, "SIGNER_INFO"),
    ])
    func unsupportedValues(offset: Int, value: UInt8, field: String) throws {
        var bytes = try SharedVectors.bytes("snp/turin-v5-oak/report.bin")
        bytes[offset] = value
        #expect { try SNPReport(bytes: bytes) } throws: { ($0 as? BinaryFormatError)?.field == field }
    }

    @Test("a policy without its must-be-one bit, or with must-be-zero bits, is rejected")
    func policyReservedBits() throws {
        var clear = try SharedVectors.bytes("snp/turin-v5-oak/report.bin")
        clear[0x00A] &= ~0x02  // bit 17
        #expect { try SNPReport(bytes: clear) } throws: { ($0 as? BinaryFormatError)?.code == .invalidValue }
        var high = try SharedVectors.bytes("snp/turin-v5-oak/report.bin")
        high[0x00B] |= 0x04  // bit 26
        #expect { try SNPReport(bytes: high) } throws: { ($0 as? BinaryFormatError)?.code == .reservedNonZero }
    }

    @Test("PLATFORM_INFO bit 6 (Turin's IOMMU_WRITE_SAFE) is decoded, not rejected; unknown bits are kept")
    func platformInfoBits() throws {
        let turin = try ReportVector("turin-v5-oak").report
        #expect(turin.platformInfo.iommuWriteSafe)
        #expect(turin.platformInfo.unknownBits == 0)
        var bytes = turin.bytes
        bytes[0x041] = 0x01  // bit 8: unknown today
        let parsed = try SNPReport(bytes: bytes)
        #expect(parsed.platformInfo.unknownBits == 0x100)
    }

    @Test("product identification from CPUID follows AMD's family and model ranges")
    func productIdentification() {
        #expect(AMDProduct.identify(family: 0x19, model: 0x01) == .milan)
        #expect(AMDProduct.identify(family: 0x19, model: 0x11) == .genoa)
        #expect(AMDProduct.identify(family: 0x19, model: 0xA0) == .genoa)
        #expect(AMDProduct.identify(family: 0x1A, model: 0x02) == .turin)
        #expect(AMDProduct.identify(family: 0x1A, model: 0x50) == nil)
        #expect(AMDProduct.identify(family: 0x17, model: 0x31) == nil)
        #expect(AMDProduct.fromCertificateProductName("Milan-B0") == .milan)
        #expect(AMDProduct.fromCertificateProductName("Genoa") == .genoa)
        #expect(AMDProduct.fromCertificateProductName("Venice") == nil)
    }

    @Test("component-wise TCB comparison, never as a u64")
    func tcbComparison() {
        let current = SNPTCBVersion.Components(fmc: nil, bootloader: 4, tee: 0, snp: 24, microcode: 217)
        #expect(current.isAtLeast(.init(fmc: nil, bootloader: 4, tee: 0, snp: 24, microcode: 217)))
        #expect(current.isAtLeast(.init(fmc: nil, bootloader: 3, tee: 0, snp: 20, microcode: 200)))
        // Higher as a u64 (microcode is the top byte) but a lower SNP SPL: not at least.
        #expect(!current.isAtLeast(.init(fmc: nil, bootloader: 0, tee: 0, snp: 25, microcode: 100)))
    }
}

@Suite("SEV-SNP extended-report certificate table")
struct SNPCertificateTableTests {
    @Test("a table round-trips and entries are found by GUID")
    func roundTrip() throws {
        let vcek = try SharedVectors.bytes("snp/genoa-v5-oak/vcek.der")
        let table = SNPCertificateTable(entries: [
            try .init(guid: SNPCertificateTable.GUID.vcek, data: vcek),
            try .init(guid: SNPCertificateTable.GUID.ask, data: [1, 2, 3]),
        ])
        let bytes = table.encoded()
        // Header GUIDs are stored in RFC 4122 byte order.
        #expect(Array(bytes.prefix(4)) == [0x63, 0xDA, 0x75, 0x8D])
        let parsed = try SNPCertificateTable(bytes: bytes + [UInt8](repeating: 0, count: 100))
        #expect(parsed == table)
        #expect(parsed.data(for: SNPCertificateTable.GUID.vcek) == vcek)
    }

    @Test("missing terminators, out-of-range data, overlaps and repeated GUIDs are rejected")
    func rejectsBadTables() throws {
        let good = SNPCertificateTable(entries: [try .init(guid: SNPCertificateTable.GUID.ark, data: [9, 9])]).encoded()
        #expect(throws: BinaryFormatError.self) { try SNPCertificateTable(bytes: Array(good.prefix(30))) }
        var outOfRange = good
        outOfRange[20] = 0xFF  // length
        #expect(throws: BinaryFormatError.self) { try SNPCertificateTable(bytes: outOfRange) }
        var overlap = good
        overlap[16] = 0  // offset 0: inside the table
        #expect(throws: BinaryFormatError.self) { try SNPCertificateTable(bytes: overlap) }
        let repeated = Array(good.prefix(24)) + Array(good.prefix(24)) + [UInt8](repeating: 0, count: 24) + [9, 9]
        #expect(throws: BinaryFormatError.self) { try SNPCertificateTable(bytes: repeated) }
        #expect(throws: BinaryFormatError.self) { try SNPCertificateTable.Entry(guid: "not-a-guid", data: []) }
        for length in 0..<good.count - 2 {
            #expect(throws: BinaryFormatError.self) { try SNPCertificateTable(bytes: Array(good.prefix(length))) }
        }
    }
}
