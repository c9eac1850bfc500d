import Attestation
import AttestationResults
import BinaryFormat
import CMKTesting
import Firmware
import Foundation
import SEVSNP
import TPM2
import Testing

/// Mutates `input` the way fuzzers do: bit flips, byte sets, interesting values, truncation, insertion,
/// duplication of a range.
func mutate(_ input: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
    var bytes = input
    for _ in 0..<Int.random(in: 1...4, using: &rng) {
        let choice = Int.random(in: 0..<7, using: &rng)
        if bytes.isEmpty { bytes = [UInt8.random(in: 0...255, using: &rng)]; continue }
        let index = Int.random(in: 0..<bytes.count, using: &rng)
        switch choice {
        case 0: bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
        case 1: bytes[index] = UInt8.random(in: 0...255, using: &rng)
        case 2: bytes[index] = [0x00, 0x01, 0x7F, 0x80, 0xFF][Int.random(in: 0..<5, using: &rng)]
        case 3: bytes = Array(bytes.prefix(index))
        case 4: bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: index)
        case 5:
            let length = min(Int.random(in: 1...64, using: &rng), bytes.count - index)
            bytes.insert(contentsOf: bytes[index..<(index + length)], at: index)
        default: bytes.removeSubrange(index..<min(bytes.count, index + Int.random(in: 1...32, using: &rng)))
        }
    }
    return bytes
}

/// Runs `parse` on `iterations` mutations of `seed`; any trap fails the whole test run, which is the point.
func fuzz(_ seedInput: [UInt8], seed: UInt64, iterations: Int, _ parse: ([UInt8]) -> Bool) -> Int {
    var rng = SeededGenerator(state: seed)
    var accepted = 0
    for _ in 0..<iterations where parse(mutate(seedInput, &rng)) { accepted += 1 }
    return accepted
}

@Suite("Mutation fuzzing of every parser (seeded, replayable)")
struct MutationFuzzTests {
    // Each loop runs off the cooperative pool (see `offPool`): minutes of synchronous parsing must not starve the
    // asynchronous tests running beside it. The expectations are checked back here, on the test's own task.

    @Test("SEV-SNP reports: mutations never trap, and only layout-preserving ones parse")
    func reports() async throws {
        let seed = try SharedVectors.bytes("snp/turin-v5-oak/report.bin")
        let accepted = try await offPool {
            fuzz(seed, seed: 1, iterations: 10_000) { (try? SNPReport(bytes: $0)) != nil }
        }
        #expect(accepted > 0)
        #expect(accepted < 10_000)
    }

    @Test("certificate tables, certificates and CRLs: mutations never trap")
    func certificates() async throws {
        let vcek = try SharedVectors.bytes("snp/genoa-v5-oak/vcek.der")
        let table = SNPCertificateTable(entries: [try .init(guid: SNPCertificateTable.GUID.vcek, data: vcek)]).encoded()
        let crl = try SharedVectors.bytes("tdx/dcapqvl-v4-uptodate/pck_crl.der")
        let accepted = try await offPool {
            [
                fuzz(table, seed: 2, iterations: 5_000) { (try? SNPCertificateTable(bytes: $0)) != nil },
                fuzz(vcek, seed: 3, iterations: 5_000) { bytes in
                    guard let certificate = try? AttestationCertificate(der: bytes) else { return false }
                    _ = try? VCEKExtensions(certificate: certificate)
                    return true
                },
                fuzz(crl, seed: 4, iterations: 5_000) { (try? CertificateRevocationList(der: $0)) != nil },
            ]
        }
        // Mutations must reach past the outer framing: some parse, most do not.
        for count in accepted { #expect(count < 5_000) }
    }

    @Test("CBOR and COSE_Sign1: mutations never trap")
    func cbor() async throws {
        let message = try COSESign1(
            protectedHeader: [0xA1, 0x01, 0x26], unprotectedHeader: [CBORMapEntry(.int(4), .bytes([0x31]))],
            payload: Array("payload".utf8), signature: [UInt8](repeating: 7, count: 64)
        ).encoded()
        let accepted = try await offPool {
            fuzz(message, seed: 5, iterations: 10_000) { (try? COSESign1(encoded: $0)) != nil }
        }
        #expect(accepted < 10_000)
    }

    @Test("OVMF metadata and TPMS_ATTEST: mutations never trap")
    func firmwareAndTPM() async throws {
        let firmware = try SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin")
        let attest = try TPMSAttest(
            qualifiedSigner: [0, 11] + [UInt8](repeating: 1, count: 32), extraData: [1, 2, 3],
            clockInfo: .init(clock: 1, resetCount: 2, restartCount: 3, safe: true), firmwareVersion: 4,
            attested: .quote(pcrSelection: [.init(hashAlgorithm: 11, pcrs: [0, 7])], pcrDigest: [UInt8](repeating: 9, count: 32))
        ).marshalled()
        let accepted = try await offPool {
            [
                fuzz(firmware, seed: 6, iterations: 3_000) { (try? OVMFImage(bytes: $0)) != nil },
                fuzz(attest, seed: 7, iterations: 10_000) { (try? TPMSAttest(marshalled: $0)) != nil },
            ]
        }
        #expect(accepted[0] < 3_000)
        #expect(accepted[1] < 10_000)
    }
}
