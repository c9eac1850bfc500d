// cmk-bench: throughput of cmk's verifiers, each figure next to a baseline measured in the same run.
//
//   swift run -c release cmk-bench [--vectors ../shared/vectors] [--seconds 2] [--rounds 5] [--json]
//
// SEV-SNP: full verification of a real Genoa report (parse, product, pinned chain from the cache, validity,
// revocation in soft mode, ECDSA P-384 signature, TCB and chip-id checks) against the raw P-384 verify rate
// of the same signature with the same key. Rounds alternate between the two so drift hits both alike.
import Attestation
import Crypto
import Foundation
import SEVSNP

struct Options {
    var vectors = URL(fileURLWithPath: "../shared/vectors")
    var seconds = 2.0
    var json = false
    var rounds = 5

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--vectors": vectors = URL(fileURLWithPath: iterator.next() ?? ".")
            case "--seconds": seconds = Double(iterator.next() ?? "") ?? seconds
            case "--rounds": rounds = Int(iterator.next() ?? "") ?? rounds
            case "--json": json = true
            default:
                FileHandle.standardError.write(Data("usage: cmk-bench [--vectors DIR] [--seconds S] [--rounds N] [--json]\n".utf8))
                exit(2)
            }
        }
    }
}

/// Runs `body` repeatedly for about `seconds` and returns operations per second.
func rate(seconds: Double, _ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    var operations = 0
    let start = clock.now
    let budget = Duration.milliseconds(Int64(seconds * 1000))
    var elapsed = Duration.zero
    while elapsed < budget {
        for _ in 0..<64 { try body() }
        operations += 64
        elapsed = clock.now - start
    }
    let interval = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return Double(operations) / interval
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

let options = Options(CommandLine.arguments)
let vector = options.vectors.appendingPathComponent("snp/genoa-v5-oak")
let reportBytes = [UInt8](try Data(contentsOf: vector.appendingPathComponent("report.bin")))
let vcek = try AttestationCertificate(der: [UInt8](try Data(contentsOf: vector.appendingPathComponent("vcek.der"))))
let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
let verifier = SNPVerifier(trustAnchors: anchors)
let verification = SNPVerificationOptions(validationTime: ISO8601DateFormatter().date(from: "2025-08-08T17:21:41Z")!, revocation: .soft)

// The baseline: one P-384 verification of the same signed bytes with the same key, nothing else.
let report = try SNPReport(bytes: reportBytes)
let key = try P384.Signing.PublicKey(derRepresentation: vcek.subjectPublicKeyInfo)
let signature = try P384.Signing.ECDSASignature(rawRepresentation: report.rawSignature)
let signedBytes = Array(report.signedBytes)
guard key.isValidSignature(signature, for: signedBytes) else { fatalError("the vector's signature must verify") }

// Warm the chain cache once (the RSA-PSS chain is verified once per certificate, as in a running service).
_ = try verifier.verify(SNPEvidence(report: report, endorsementCertificate: vcek), options: verification)

var raw: [Double] = []
var full: [Double] = []
for round in 0..<options.rounds {
    // Alternate which one goes first, so neither always runs in the other's wake.
    let measureRaw = { raw.append(rate(seconds: options.seconds) { _ = key.isValidSignature(signature, for: signedBytes) }) }
    let measureFull = {
        full.append(try rate(seconds: options.seconds) {
            let parsed = try SNPReport(bytes: reportBytes)
            _ = try verifier.verify(SNPEvidence(report: parsed, endorsementCertificate: vcek), options: verification)
        })
    }
    if round % 2 == 0 {
        measureRaw()
        try measureFull()
    } else {
        try measureFull()
        measureRaw()
    }
    if !options.json {
        FileHandle.standardError.write(Data("round \(round + 1)/\(options.rounds): raw \(Int(raw.last!))/s, full \(Int(full.last!))/s\n".utf8))
    }
}
let rawRate = median(raw)
let fullRate = median(full)
let ratio = fullRate / rawRate
if options.json {
    let object: [String: Any] = [
        "benchmark": "sev-snp-full-verification", "vector": "genoa-v5-oak", "rounds": options.rounds,
        "seconds_per_round": options.seconds, "raw_p384_verify_per_second": rawRate,
        "full_verification_per_second": fullRate, "ratio": ratio,
    ]
    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
} else {
    print("SEV-SNP full verification, chain cached (genoa-v5-oak), one core, median of \(options.rounds) rounds:")
    print(String(format: "  raw ECDSA P-384 verify  %10.0f /s   (baseline, same key and bytes)", rawRate))
    print(String(format: "  full report verification %9.0f /s   %.1f %% of the baseline", fullRate, ratio * 100))
}

