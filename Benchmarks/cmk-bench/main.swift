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
//          `openssl speed -evp chacha20-poly1305` and `-evp aes-256-gcm`, run in the same process run, beside raw
//          swift-crypto ChaChaPoly sealing alone (`records` runs only this part). Records are timed in this thread's
//          CPU time, as `openssl speed` times itself (`-elapsed`, the wall clock, is printed beside it). Then the
//          attested handshake (also alone as `handshake`; HandshakeBenchmark.swift), then the relay round trip.
// relay:   round trip of a 64-byte message between two real agents through the coordinator's relay (ChannelRelay,
//          RelayLink, the supervisor's watch loop, real UNIX sockets), p50/p99/mean, against a plain 64-byte socket
//          ping-pong, the same ping-pong carrying sealed records, and the two agents joined without the relay, all in
//          the same run (RelayBenchmark.swift).
// serve:   `cmk serve` POST /v1/attest on loopback, requests/s and p50/p99 latency, against the raw P-384 verify rate
//          and the raw P-384 sign rate (the EAR's signature) (ServeBenchmark.swift); SQLite in a temporary folder, or
//          PostgreSQL with --database URL (a fresh database). Not in "all".
// Rounds alternate which side goes first, so drift hits both alike; figures are medians.
import Attestation
import AttestationResults
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
    /// relay: also two children under QEMU (RelayBenchmark.swift).
    var qemu = false
    /// `serve` only: a PostgreSQL URL; the server then keeps its nonces, policies and audit log there.
    var database: String?
    /// `serve` only: the EAR signing key's algorithm (ES256 by default, as `cmk serve`'s).
    var earAlgorithm = EARAlgorithm.es256
    /// `serve` only: how many keep-alive client connections send requests at once.
    var connections = 16
    /// `records` only: the body sizes measured (64, 1024 and 16384 unless `--record-size` names one).
    var recordSizes = [64, 1024, 16384]

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "verify", "tdx", "measure", "channel", "records", "handshake", "relay", "launch", "serve", "all": suite = argument
            case "--vectors": vectors = URL(fileURLWithPath: iterator.next() ?? ".")
            case "--seconds": seconds = Double(iterator.next() ?? "") ?? seconds
            case "--rounds": rounds = Int(iterator.next() ?? "") ?? rounds
            case "--json": json = true
            case "--qemu": qemu = true
            case "--database": database = iterator.next()
            case "--record-size":
                guard let size = Int(iterator.next() ?? ""), (1...65_000).contains(size) else {
                    FileHandle.standardError.write(Data("--record-size takes a body size from 1 to 65000 bytes\n".utf8))
                    exit(2)
                }
                recordSizes = [size]
            case "--connections":
                guard let count = Int(iterator.next() ?? ""), (1...256).contains(count) else {
                    FileHandle.standardError.write(Data("--connections takes a number from 1 to 256\n".utf8))
                    exit(2)
                }
                connections = count
            case "--ear-algorithm":
                guard let name = iterator.next(), let algorithm = EARAlgorithm(rawValue: name.uppercased()) else {
                    FileHandle.standardError.write(Data("--ear-algorithm takes es256 or es384\n".utf8))
                    exit(2)
                }
                earAlgorithm = algorithm
            default:
                FileHandle.standardError.write(Data(
                    "usage: cmk-bench [verify|tdx|measure|channel|records|handshake|relay|launch|serve|all] [--vectors DIR] [--seconds S] [--rounds N] [--json] [--qemu] [--database postgres://...] [--ear-algorithm es256|es384] [--connections N] [--record-size N]\n".utf8))
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

/// Like ``rate(seconds:_:)``, but in operations per second of this thread's CPU time: the unit `openssl speed`
/// reports in (it times its own CPU use unless given `-elapsed`), so a host busy with other work lowers neither
/// figure. Stops after `seconds` of CPU time or four times that of wall time (the clocks read every 16 operations).
func cpuRate(seconds: Double, _ body: () throws -> Void) rethrows -> Double {
    func cpuSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
    let wallLimit = ContinuousClock.now + .milliseconds(Int64(seconds * 4000))
    let start = cpuSeconds()
    var operations = 0
    var used = 0.0
    // The thread CPU clock is a system call, not a vDSO read: looked at every 16 operations so it does not weigh on
    // small ones (a 64-byte record seals in well under a microsecond).
    while used < seconds, ContinuousClock.now < wallLimit {
        for _ in 0..<16 { try body() }
        operations += 16
        used = cpuSeconds() - start
    }
    return Double(operations) / used
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

/// Records are timed in this thread's CPU time (``cpuRate``), the unit `openssl speed` uses: on the shared 2-core host
/// the wall clock measured other engineers' builds as much as the record layer.
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
    for size in options.recordSizes {
        let body = [UInt8](repeating: 0x5A, count: size)
        let (a, b) = try pair()
        let (raw, records) = try alternate(rounds: options.rounds, label: "channel \(size)", quiet: options.json, {
            try cpuRate(seconds: options.seconds) {
                let box = try ChaChaPoly.seal(body, using: key, nonce: nonce, authenticating: [0, 1, 2])
                _ = try ChaChaPoly.open(box, using: key, authenticating: [0, 1, 2])
            } * Double(size) / 1e6
        }, {
            try cpuRate(seconds: options.seconds) {
                _ = try b.open(frame: try a.seal(body))
            } * Double(size) / 1e6
        })
        // One direction only, as `openssl speed` measures: seal (the sender's cost) against OpenSSL's encryption.
        // Raw swift-crypto sealing alone beside it: what the AEAD library itself reaches against OpenSSL. Both timed
        // in this thread's CPU time, as `openssl speed` times itself.
        let (sender, _) = try pair()
        let (rawSeal, sealOnly) = try alternate(rounds: options.rounds, label: "seal \(size)", quiet: options.json, {
            try cpuRate(seconds: options.seconds) {
                _ = try ChaChaPoly.seal(body, using: key, nonce: nonce, authenticating: [0, 1, 2])
            } * Double(size) / 1e6
        }, {
            try cpuRate(seconds: options.seconds) { _ = try sender.seal(body) } * Double(size) / 1e6
        })
        // Channel sealing against `openssl speed -evp chacha20-poly1305`, alternated round by round like the pairs
        // above (a single openssl run beside a median measured minutes apart caught whatever the other hyperthread
        // was doing at that moment). NaN: openssl did not run.
        let (chachaMedian, sealPaired) = try alternate(
            rounds: options.rounds, label: "openssl \(size)", quiet: options.json,
            {
                OpenSSLSpeed.megabytesPerSecond(cipher: "chacha20-poly1305", bytes: size, seconds: options.seconds)
                    ?? .nan
            },
            { try cpuRate(seconds: options.seconds) { _ = try sender.seal(body) } * Double(size) / 1e6 })
        let chacha: Double? = chachaMedian.isNaN ? nil : chachaMedian
        // OpenSSL doing one AEAD message per record (nonce, associated data, update, final, tag) in this process,
        // alternated with channel sealing: the per-message floor `openssl speed` leaves out (see
        // OpenSSLMessageBaseline). NaN: OpenSSL offered no context.
        let messageBaseline = OpenSSLMessageBaseline(bodySize: size)
        let (messageMedian, sealPairedMessage) = try alternate(
            rounds: options.rounds, label: "evp message \(size)", quiet: options.json,
            {
                guard let messageBaseline else { return .nan }
                return cpuRate(seconds: options.seconds) { precondition(messageBaseline.sealOne()) } * Double(size) / 1e6
            },
            { try cpuRate(seconds: options.seconds) { _ = try sender.seal(body) } * Double(size) / 1e6 })
        let message: Double? = messageMedian.isNaN ? nil : messageMedian
        // `openssl speed -aead`, for reference: in OpenSSL 3.0 its ChaCha20-Poly1305 loop is the same single stream of
        // updates (no nonce, final or tag per message), so it gives the plain figure again.
        let chachaAEAD = OpenSSLSpeed.megabytesPerSecond(
            cipher: "chacha20-poly1305", bytes: size, seconds: options.seconds, aead: true)
        let gcm = OpenSSLSpeed.megabytesPerSecond(cipher: "aes-256-gcm", bytes: size, seconds: options.seconds)
        let chachaElapsed = OpenSSLSpeed.megabytesPerSecond(
            cipher: "chacha20-poly1305", bytes: size, seconds: options.seconds, elapsed: true)
        results.append([
            "benchmark": "channel-records-\(size)", "baseline": "raw ChaChaPoly seal + open", "baseline_mb_per_second": raw,
            "cmk_mb_per_second": records, "ratio": records / raw, "cmk_seal_mb_per_second": sealOnly,
            "raw_seal_mb_per_second": rawSeal, "seal_timing": "thread CPU time",
            "openssl_chacha20_poly1305_elapsed_mb_per_second": chachaElapsed ?? -1, "seal_ratio_to_raw_seal": sealOnly / rawSeal,
            "seal_ratio_to_openssl_chacha20_poly1305": chacha.map { sealPaired / $0 } ?? -1,
            "cmk_seal_paired_with_openssl_mb_per_second": sealPaired,
            "openssl_chacha20_poly1305_aead_mb_per_second": chachaAEAD ?? -1,
            "seal_ratio_to_openssl_chacha20_poly1305_aead": chachaAEAD.map { sealPaired / $0 } ?? -1,
            "raw_seal_ratio_to_openssl_chacha20_poly1305": chacha.map { rawSeal / $0 } ?? -1,
            "openssl_chacha20_poly1305_mb_per_second": chacha ?? -1, "openssl_aes_256_gcm_mb_per_second": gcm ?? -1,
            "raw_us_per_record": Double(size) / raw, "channel_us_per_record": Double(size) / records,
            "openssl_evp_message_mb_per_second": message ?? -1,
            "seal_ratio_to_openssl_evp_message": message.map { sealPairedMessage / $0 } ?? -1,
            "openssl_evp_message_ratio_to_openssl_chacha20_poly1305": message.flatMap { m in chacha.map { m / $0 } } ?? -1,
        ])
        if !options.json {
            print("Sealed-channel records of \(size) bytes, one core, median of \(options.rounds) rounds:")
            print(String(format: "  raw ChaChaPoly seal + open   %8.1f MB/s   (baseline, same bodies)", raw))
            print(String(format: "  channel seal + open          %8.1f MB/s   %.1f %% of the baseline", records, records / raw * 100))
            print(String(format: "  raw ChaChaPoly seal only     %8.1f MB/s   (CPU time, as openssl speed)", rawSeal))
            print(String(format: "  channel seal only            %8.1f MB/s   %.1f %% of raw seal only", sealOnly, sealOnly / rawSeal * 100))
            print(String(format: "  per record: raw %.2f µs, channel %.2f µs", Double(size) / raw, Double(size) / records))
            if let chacha {
                print(
                    String(
                        format: "  openssl chacha20-poly1305    %8.1f MB/s   channel seal %.1f MB/s alternated with it: %.1f %%",
                        chacha, sealPaired, sealPaired / chacha * 100))
            } else {
                print("  openssl chacha20-poly1305: openssl speed did not run")
            }
            if let message {
                print(
                    String(
                        format: "  OpenSSL EVP, a message/record %8.1f MB/s   channel seal %.1f MB/s alternated with it: %.1f %%",
                        message, sealPairedMessage, sealPairedMessage / message * 100))
                if let chacha {
                    print(
                        String(
                            format: "    (that per-message floor is %.1f %% of openssl speed's single stream)",
                            message / chacha * 100))
                }
            }
            for (name, value) in [("openssl chacha20-poly1305 -aead", chachaAEAD), ("openssl aes-256-gcm", gcm)] {
                if let value {
                    print(
                        "  " + name.padding(toLength: 28, withPad: " ", startingAt: 0)
                            + String(format: " %8.1f MB/s   channel seal is %.1f %% of it", value, sealPaired / value * 100))
                } else {
                    print("  \(name): openssl speed did not run")
                }
            }
            if let chachaElapsed {
                print(String(format: "  (openssl chacha20-poly1305 timed by the wall clock, -elapsed: %.1f MB/s)", chachaElapsed))
            }
        }
    }
}

/// `openssl speed -evp CIPHER -bytes N -seconds S`, run now (the same run as the figures it is set beside): encryption
/// only, in MB/s of openssl's own CPU time (or of the wall clock with `elapsed`); nil when openssl is missing or its
/// output cannot be read.
enum OpenSSLSpeed {
    /// `elapsed`: time by the wall clock (`-elapsed`) instead of openssl's own CPU time (its default).
    /// `aead`: openssl's TLS-like AEAD sequence per message (`-aead`) instead of one long encryption stream.
    static func megabytesPerSecond(
        cipher: String, bytes: Int, seconds: Double, elapsed: Bool = false, aead: Bool = false
    ) -> Double? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "speed"] + (elapsed ? ["-elapsed"] : []) + (aead ? ["-aead"] : []) + [
            "-evp", cipher, "-bytes", "\(bytes)", "-seconds", "\(max(1, Int(seconds)))",
        ]
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

// A benchmark that cannot run (a missing tool, a refused socket) ends with its reason and exit status 1, not a trap.
do {
    if options.suite == "verify" || options.suite == "all" { try benchmarkVerification() }
    if options.suite == "channel" || options.suite == "records" || options.suite == "all" { try benchmarkChannel() }
    if options.suite == "channel" || options.suite == "handshake" || options.suite == "all" { try benchmarkHandshake() }
    if options.suite == "channel" || options.suite == "relay" || options.suite == "all" { try benchmarkRelay() }
    if options.suite == "tdx" || options.suite == "all" { try benchmarkTDX() }
    if options.suite == "measure" || options.suite == "all" { try benchmarkMeasurement() }
    // Not part of "all": it boots QEMU twice per run (about 20 s a run under TCG).
    if options.suite == "launch" { try await benchmarkLaunch() }
    // Not part of "all": it loads a live server for --rounds rounds (ServeBenchmark.swift).
    if options.suite == "serve" { try await benchmarkServe() }
} catch {
    FileHandle.standardError.write(Data("cmk-bench: \(error)\n".utf8))
    exit(1)
}
if options.json {
    print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
}
