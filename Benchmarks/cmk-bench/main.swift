// cmk-bench: throughput of cmk's hot paths, each figure next to a baseline measured in the same run.
//
//   swift build -c release --static-swift-stdlib && .build/release/cmk-bench [verify|measure|all] \
//       [--vectors ../shared/vectors] [--seconds 2] [--rounds 5] [--json]
//
// (The whole-process comparison runs the `cmk` beside this binary: build both the same way. A statically linked
// Swift runtime, as cmk is shipped, starts in about 8 ms here instead of 13.)
//
// verify:  full SEV-SNP verification of a real Genoa report (parse, product, pinned chain from the cache,
//          validity, revocation in soft mode, ECDSA P-384 signature, TCB and chip-id checks) against the raw
//          P-384 verify rate of the same signature with the same key.
// tdx:     full TDX quote verification (parse, PCK chain from the cache, CRLs, prepared TCB Info and QE Identity,
//          QE report and quote signatures, TCB status) against two raw P-256 verifies of the same signatures.
// launch:  `cmk launch` to admitted, by phase, against a plain QEMU boot of the same image to the agent's ready
//          frame in the same run (LaunchBenchmark.swift); --rounds is the number of launches. Not in "all".
// measure: the SNP launch digest of Debian's OVMF.fd with 4 EPYC-Genoa vCPUs, in-process digests/s against plain
//          SHA-384 over the same firmware bytes; and whole-process `cmk measure snp` against sev-snp-measure
//          0.0.13 (.cache/venv, installed by scripts/setup) on the same inputs, wall time per run.
// channel: sealed-channel records (seal on one end, open on the other; 64 B, 1 KiB and 16 KiB bodies) against raw
//          swift-crypto ChaChaPoly seal + open of the same bodies, in MB/s of body; and seal alone against
//          `openssl speed -evp chacha20-poly1305` and `-evp aes-256-gcm`, run in the same process run. Then the
//          attested handshake (also alone as `handshake`; HandshakeBenchmark.swift).
// serve:   `cmk serve` POST /v1/attest on loopback, requests/s and p50/p99 latency, against the raw P-384 verify rate
//          and the raw P-384 sign rate (the EAR's signature) (ServeBenchmark.swift); SQLite in a temporary folder, or
//          PostgreSQL with --database URL (a fresh database). Not in "all".
// Rounds alternate which side goes first, so drift hits both alike; figures are medians.
import Attestation
import BinaryFormat
import Crypto
import Foundation
import SEVSNP
import SealedChannel
import TDX

struct Options {
    var suite = "all"
    var vectors = URL(fileURLWithPath: "../shared/vectors")
    var seconds = 2.0
    var json = false
    var rounds = 5
    /// `serve` only: a PostgreSQL URL; the server then keeps its nonces, policies and audit log there.
    var database: String?

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "verify", "tdx", "measure", "channel", "handshake", "launch", "serve", "all": suite = argument
            case "--vectors": vectors = URL(fileURLWithPath: iterator.next() ?? ".")
            case "--seconds": seconds = Double(iterator.next() ?? "") ?? seconds
            case "--rounds": rounds = Int(iterator.next() ?? "") ?? rounds
            case "--json": json = true
            case "--database": database = iterator.next()
            default:
                FileHandle.standardError.write(Data(
                    "usage: cmk-bench [verify|tdx|measure|channel|handshake|launch|serve|all] [--vectors DIR] [--seconds S] [--rounds N] [--json] [--database postgres://...]\n".utf8))
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
        try body()
        operations += 1
        elapsed = clock.now - start
    }
    return Double(operations) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Measures `a` and `b` in alternating order for `rounds` rounds; returns the medians.
func alternate(rounds: Int, label: String, quiet: Bool, _ a: () throws -> Double, _ b: () throws -> Double) rethrows -> (Double, Double) {
    var first: [Double] = []
    var second: [Double] = []
    for round in 0..<rounds {
        if round % 2 == 0 {
            first.append(try a())
            second.append(try b())
        } else {
            second.append(try b())
            first.append(try a())
        }
        if !quiet {
            FileHandle.standardError.write(Data("\(label) round \(round + 1)/\(rounds): \(first.last!) vs \(second.last!)\n".utf8))
        }
    }
    return (median(first), median(second))
}

var results: [[String: Any]] = []
let options = Options(CommandLine.arguments)

@MainActor func benchmarkVerification() throws {
    let vector = options.vectors.appendingPathComponent("snp/genoa-v5-oak")
    let reportBytes = [UInt8](try Data(contentsOf: vector.appendingPathComponent("report.bin")))
    let vcek = try AttestationCertificate(der: [UInt8](try Data(contentsOf: vector.appendingPathComponent("vcek.der"))))
    let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
    let verifier = SNPVerifier(trustAnchors: anchors)
    let verification = SNPVerificationOptions(
        validationTime: ISO8601DateFormatter().date(from: "2025-08-08T17:21:41Z")!, revocation: .soft)
    let report = try SNPReport(bytes: reportBytes)
    let key = try P384.Signing.PublicKey(derRepresentation: vcek.subjectPublicKeyInfo)
    let signature = try P384.Signing.ECDSASignature(rawRepresentation: report.rawSignature)
    let signedBytes = Array(report.signedBytes)
    guard key.isValidSignature(signature, for: signedBytes) else { fatalError("the vector's signature must verify") }
    // Warm the chain cache once: the RSA-PSS chain is verified once per certificate, as in a running service.
    _ = try verifier.verify(SNPEvidence(report: report, endorsementCertificate: vcek), options: verification)

    let (raw, full) = try alternate(rounds: options.rounds, label: "verify", quiet: options.json, {
        rate(seconds: options.seconds) { _ = key.isValidSignature(signature, for: signedBytes) }
    }, {
        try rate(seconds: options.seconds) {
            let parsed = try SNPReport(bytes: reportBytes)
            _ = try verifier.verify(SNPEvidence(report: parsed, endorsementCertificate: vcek), options: verification)
        }
    })
    results.append([
        "benchmark": "sev-snp-full-verification", "vector": "genoa-v5-oak", "baseline": "raw ECDSA P-384 verify",
        "baseline_per_second": raw, "cmk_per_second": full, "ratio": full / raw,
    ])
    if !options.json {
        print("SEV-SNP full verification, chain cached (genoa-v5-oak), one core, median of \(options.rounds) rounds:")
        print(String(format: "  raw ECDSA P-384 verify      %10.0f /s   (baseline, same key and bytes)", raw))
        print(String(format: "  full report verification    %10.0f /s   %.1f %% of the baseline", full, full / raw * 100))
    }
}

/// Wall time of one run of a command, in seconds.
func wallTime(_ executable: String, _ arguments: [String]) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    let start = ContinuousClock.now
    try process.run()
    while process.isRunning { usleep(200) }
    let elapsed = ContinuousClock.now - start
    guard process.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

@MainActor func benchmarkMeasurement() throws {
    let firmwarePath = "/usr/share/ovmf/OVMF.fd"
    let firmware = [UInt8](try Data(contentsOf: URL(fileURLWithPath: firmwarePath)))
    let inputs = SNPLaunchMeasurement.Inputs(firmware: firmware, vcpus: 4, vcpuSignature: 0xA10F10)
    let (sha, digests) = try alternate(rounds: options.rounds, label: "measure", quiet: options.json, {
        rate(seconds: options.seconds) { _ = SHA384.hash(data: firmware) }
    }, {
        try rate(seconds: options.seconds) { _ = try SNPLaunchMeasurement(inputs) }
    })
    results.append([
        "benchmark": "snp-launch-digest", "inputs": "Debian OVMF.fd, 4 EPYC-Genoa vCPUs", "baseline": "SHA-384 of the firmware",
        "baseline_per_second": sha, "cmk_per_second": digests, "ratio": digests / sha,
    ])
    if !options.json {
        print("SNP launch digest (Debian OVMF.fd, 2 MiB, 4 EPYC-Genoa vCPUs), in process, median of \(options.rounds) rounds:")
        print(String(format: "  plain SHA-384 of the firmware  %8.1f /s   (baseline, same bytes)", sha))
        print(String(format: "  cmk launch digest              %8.1f /s   %.1f %% of the baseline", digests, digests / sha * 100))
    }

    // Whole process: cmk beside this benchmark's binary, sev-snp-measure from the project's venv.
    let cmk = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cmk").path
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let tool = (ProcessInfo.processInfo.environment["CMK_CACHE_DIR"].map { URL(fileURLWithPath: $0) }
        ?? root.appendingPathComponent(".cache")).appendingPathComponent("venv/bin/sev-snp-measure").path
    guard FileManager.default.isExecutableFile(atPath: cmk), FileManager.default.isExecutableFile(atPath: tool) else {
        FileHandle.standardError.write(Data("whole-process comparison skipped: needs \(cmk) (swift build -c release) and \(tool) (scripts/setup)\n".utf8))
        return
    }
    let common = ["--vcpus", "4", "--vcpu-type", "EPYC-Genoa"]
    let (theirs, ours) = try alternate(rounds: options.rounds * 2, label: "process", quiet: options.json, {
        try wallTime(tool, ["--mode", "snp", "--ovmf", firmwarePath] + common)
    }, {
        try wallTime(cmk, ["measure", "snp", "--firmware", firmwarePath] + common)
    })
    results.append([
        "benchmark": "measure-snp-process", "baseline": "sev-snp-measure 0.0.13", "baseline_seconds": theirs,
        "cmk_seconds": ours, "ratio": ours / theirs,
    ])
    if !options.json {
        print("Whole process, same inputs, median wall time of \(options.rounds * 2) runs:")
        print(String(format: "  sev-snp-measure 0.0.13   %6.3f s   (baseline)", theirs))
        print(String(format: "  cmk measure snp          %6.3f s   %.2f of the baseline's time", ours, ours / theirs))
    }
}

@MainActor func benchmarkTDX() throws {
    let folder = options.vectors.appendingPathComponent("tdx/gotdxguest-v5-td15")
    let quoteBytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent("quote.bin")))
    let quote = try TDXQuote(bytes: quoteBytes)
    let verifier = TDXVerifier(trustAnchors: try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory()))
    let prepared = try verifier.prepare(try TDXCollateral(directory: folder))
    let evaluation = TDXVerificationOptions(evaluationTime: ISO8601DateFormatter().date(from: "2026-02-20T00:00:00Z")!)
    guard try verifier.verify(quote, prepared: prepared, options: evaluation).valid else { fatalError("the vector must verify") }
    // The baseline: the two P-256 verifications a quote needs (QE report by the PCK key, quote by the attestation key).
    let leaf = try AttestationCertificate(pem: quote.pckCertificateChainPEM)
    let pckKey = try P256.Signing.PublicKey(derRepresentation: leaf.subjectPublicKeyInfo)
    let attestationKey = try P256.Signing.PublicKey(rawRepresentation: quote.attestationKey)
    let qeSignature = try P256.Signing.ECDSASignature(rawRepresentation: quote.qeReportSignature)
    let quoteSignature = try P256.Signing.ECDSASignature(rawRepresentation: quote.signature)
    let qeReport = quote.qeReport.bytes
    let signed = Array(quote.signedBytes)
    let (raw, full) = try alternate(rounds: options.rounds, label: "tdx", quiet: options.json, {
        rate(seconds: options.seconds) {
            _ = pckKey.isValidSignature(qeSignature, for: qeReport)
            _ = attestationKey.isValidSignature(quoteSignature, for: signed)
        }
    }, {
        try rate(seconds: options.seconds) {
            _ = try verifier.verify(try TDXQuote(bytes: quoteBytes), prepared: prepared, options: evaluation)
        }
    })
    results.append([
        "benchmark": "tdx-full-verification", "vector": "gotdxguest-v5-td15", "baseline": "two raw ECDSA P-256 verifies",
        "baseline_per_second": raw, "cmk_per_second": full, "ratio": full / raw,
    ])
    if !options.json {
        print("TDX quote verification, collateral prepared (gotdxguest-v5-td15), one core, median of \(options.rounds) rounds:")
        print(String(format: "  two raw ECDSA P-256 verifies  %8.0f /s   (baseline, same keys and bytes)", raw))
        print(String(format: "  full quote verification       %8.0f /s   %.1f %% of the baseline", full, full / raw * 100))
    }
}

/// The benchmark's stand-in for attestation: evidence is the binding's REPORT_DATA itself, checked for equality. It
/// measures the record layer only and proves nothing about a peer.
struct SelfAssertedBinding: ChannelAttester, PeerEvidenceVerifier {
    func evidence(for binding: ChannelBinding) throws(SealedChannelError) -> [UInt8] { binding.reportData }
    func verify(evidence: [UInt8], binding: ChannelBinding) throws(SealedChannelError) -> VerifiedPeer {
        guard binding.matches(reportData: evidence) else { throw SealedChannelError(.peerBindingMismatch, "benchmark") }
        return VerifiedPeer(
            instance: binding.attesterName, evidenceType: "none", measurement: "", reportData: evidence,
            evidenceDigest: "", simulated: true)
    }
}

@MainActor func benchmarkChannel() throws {
    // A fresh pair of endpoints for each measurement: sealing alone moves the sender's counter past what its peer has
    // opened, so the seal-only figure must not share endpoints with the seal + open one.
    func pair() throws -> (ChannelEndpoint, ChannelEndpoint) {
        let descriptor = try ChannelDescriptor(channelID: "bench", initiator: "a", responder: "b")
        var initiator = try ChannelInitiator(
            descriptor: descriptor, staticKey: NoiseKeyPair(), attester: SelfAssertedBinding(),
            verifier: SelfAssertedBinding())
        var responder = try ChannelResponder(
            descriptor: descriptor, staticKey: NoiseKeyPair(), attester: SelfAssertedBinding(),
            verifier: SelfAssertedBinding())
        let (message3, a) = try initiator.finish(try responder.respond(to: try initiator.start()))
        return (a, try responder.finish(message3))
    }
    let key = SymmetricKey(size: .bits256)
    let nonce = ChaChaPoly.Nonce()
    for size in [64, 1024, 16384] {
        let body = [UInt8](repeating: 0x5A, count: size)
        let (a, b) = try pair()
        let (raw, records) = try alternate(rounds: options.rounds, label: "channel \(size)", quiet: options.json, {
            try rate(seconds: options.seconds) {
                let box = try ChaChaPoly.seal(body, using: key, nonce: nonce, authenticating: [0, 1, 2])
                _ = try ChaChaPoly.open(box, using: key, authenticating: [0, 1, 2])
            } * Double(size) / 1e6
        }, {
            try rate(seconds: options.seconds) {
                _ = try b.open(frame: try a.seal(body))
            } * Double(size) / 1e6
        })
        // The record layer's per-record work beyond the AEAD, each piece alone on the same body (µs per record): where
        // the difference between the two figures above goes.
        let profile = try recordProfile(body: body, key: key)
        // One direction only, as `openssl speed` measures: seal (the sender's cost) against OpenSSL's encryption.
        let (sender, _) = try pair()
        let sealOnly = try median((0..<options.rounds).map { _ in
            try rate(seconds: options.seconds) { _ = try sender.seal(body) } * Double(size) / 1e6
        })
        let chacha = OpenSSLSpeed.megabytesPerSecond(cipher: "chacha20-poly1305", bytes: size, seconds: options.seconds)
        let gcm = OpenSSLSpeed.megabytesPerSecond(cipher: "aes-256-gcm", bytes: size, seconds: options.seconds)
        results.append([
            "benchmark": "channel-records-\(size)", "baseline": "raw ChaChaPoly seal + open", "baseline_mb_per_second": raw,
            "cmk_mb_per_second": records, "ratio": records / raw, "cmk_seal_mb_per_second": sealOnly,
            "openssl_chacha20_poly1305_mb_per_second": chacha ?? -1, "openssl_aes_256_gcm_mb_per_second": gcm ?? -1,
            "raw_us_per_record": Double(size) / raw, "channel_us_per_record": Double(size) / records,
            "profile_us": Dictionary(uniqueKeysWithValues: profile.map { ($0.name, $0.microseconds) }),
        ])
        if !options.json {
            print("Sealed-channel records of \(size) bytes, one core, median of \(options.rounds) rounds:")
            print(String(format: "  raw ChaChaPoly seal + open   %8.1f MB/s   (baseline, same bodies)", raw))
            print(String(format: "  channel seal + open          %8.1f MB/s   %.1f %% of the baseline", records, records / raw * 100))
            print(String(format: "  channel seal only            %8.1f MB/s", sealOnly))
            print(String(format: "  per record: raw %.2f µs, channel %.2f µs; pieces of the difference:", Double(size) / raw, Double(size) / records))
            for piece in profile { print(String(format: "    %-44@ %6.2f µs", piece.name as NSString, piece.microseconds)) }
            for (name, value) in [("openssl chacha20-poly1305", chacha), ("openssl aes-256-gcm", gcm)] {
                if let value {
                    print(
                        "  " + name.padding(toLength: 28, withPad: " ", startingAt: 0)
                            + String(format: " %8.1f MB/s   channel seal is %.1f %% of it", value, sealOnly / value * 100))
                } else {
                    print("  \(name): openssl speed did not run")
                }
            }
        }
    }
}

/// The record layer's per-record steps outside the AEAD itself, each timed alone in a loop (median of the rounds), in
/// µs per record: what a seal + open costs beyond `ChaChaPoly.seal` + `open` of the same body.
@MainActor func recordProfile(body: [UInt8], key: SymmetricKey) throws -> [(name: String, microseconds: Double)] {
    let descriptor = try ChannelDescriptor(channelID: "bench", initiator: "a", responder: "b")
    let sealed = try ChaChaPoly.seal([1] + body, using: key, nonce: ChaChaPoly.Nonce(), authenticating: [0])
    let frame = [0, 0, 0, 0] + Array(sealed.ciphertext) + Array(sealed.tag)
    let opened = Data([1] + body)
    var scratch = Data(count: 1 + body.count)
    func micro(_ name: String, _ work: () throws -> Void) rethrows -> (name: String, microseconds: Double) {
        let perSecond = try median((0..<options.rounds).map { _ in try rate(seconds: options.seconds / 2, work) })
        return (name, 1e6 / perSecond)
    }
    return try [
        micro("associated data (label, id, role, counter, length)") {
            _ = ChannelEndpoint.associatedData(descriptor: descriptor, sender: .initiator, counter: 7, length: frame.count - 4)
        },
        micro("seal: type ‖ body into a new buffer, then wipe it") {
            var plaintext = [UInt8](unsafeUninitializedCapacity: 1 + body.count) { buffer, initialized in
                buffer[0] = 1
                body.withUnsafeBytes {
                    UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[1...])).copyMemory(from: $0)
                }
                initialized = 1 + body.count
            }
            plaintext.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        },
        micro("seal: frame = length ‖ ciphertext ‖ tag from the box") {
            let combined = sealed.combined
            _ = [UInt8](unsafeUninitializedCapacity: 4 + combined.count - 12) { buffer, initialized in
                combined.withUnsafeBytes { raw in
                    UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[4...])).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: raw[12...]))
                }
                initialized = 4 + combined.count - 12
            }
        },
        micro("open: SealedBox(nonce:ciphertext:tag:) (the old way)") {
            let slice = frame[4...]
            _ = try ChaChaPoly.SealedBox(
                nonce: ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12)), ciphertext: slice[..<(slice.endIndex - 16)],
                tag: slice[(slice.endIndex - 16)...])
        },
        micro("open: SealedBox(combined:) of nonce ‖ frame body (now)") {
            let slice = frame[4...]
            let nonceBytes = [UInt8](repeating: 0, count: 12)
            let combined = [UInt8](unsafeUninitializedCapacity: 12 + slice.count) { buffer, initialized in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                nonceBytes.withUnsafeBytes { raw.copyMemory(from: $0) }
                slice.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: raw[12...]).copyMemory(from: $0) }
                initialized = 12 + slice.count
            }
            _ = try ChaChaPoly.SealedBox(combined: combined)
        },
        micro("open: body out of the plaintext (copy)") { _ = opened.withUnsafeBytes { Array($0[1...]) } },
        micro("open: wipe the plaintext (memset)") { scratch.resetBytes(in: scratch.startIndex..<scratch.endIndex) },
    ]
}

/// `openssl speed -evp CIPHER -bytes N -seconds S`, run now (the same run as the figures it is set beside): encryption
/// only, in MB/s; nil when openssl is missing or its output cannot be read.
enum OpenSSLSpeed {
    static func megabytesPerSecond(cipher: String, bytes: Int, seconds: Double) -> Double? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "speed", "-evp", cipher, "-bytes", "\(bytes)", "-seconds", "\(max(1, Int(seconds)))"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // The last line: "<name> <1000s of bytes per second>k".
        guard process.terminationStatus == 0, let last = output.split(separator: "\n").last,
            let field = last.split(separator: " ").last, field.hasSuffix("k"),
            let thousands = Double(field.dropLast())
        else { return nil }
        return thousands * 1000 / 1e6
    }
}

if options.suite == "verify" || options.suite == "all" { try benchmarkVerification() }
if options.suite == "channel" || options.suite == "all" { try benchmarkChannel() }
if options.suite == "channel" || options.suite == "handshake" || options.suite == "all" { try benchmarkHandshake() }
if options.suite == "tdx" || options.suite == "all" { try benchmarkTDX() }
if options.suite == "measure" || options.suite == "all" { try benchmarkMeasurement() }
// Not part of "all": it boots QEMU twice per run (about 20 s a run under TCG).
if options.suite == "launch" { try await benchmarkLaunch() }
// Not part of "all": it loads a live server for --rounds rounds (ServeBenchmark.swift).
if options.suite == "serve" { try await benchmarkServe() }
if options.json {
    print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
}
