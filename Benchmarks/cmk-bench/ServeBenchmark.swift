// serve: `cmk serve` under load on loopback. The server runs in this process (HTTP/1.1, Hummingbird) and is loaded
// by blocking keep-alive client connections on threads; each request spends a fresh nonce and carries the real Genoa
// report with its VCEK. Measured: attest requests/s, p50 and p99 latency, resident memory (server and load
// generator together), next to the raw ECDSA P-384 verify rate of the same signature measured in the same run.
import Attestation
import AttestationResults
import Crypto
import Foundation
import CoreFoundation
import Hummingbird
import Logging
import SEVSNP
import ServiceLifecycle
import Synchronization
import VerificationService

/// One keep-alive HTTP/1.1 connection over a blocking socket.
final class BlockingHTTPConnection {
    let fd: Int32
    var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw ServiceError("cannot connect to 127.0.0.1:\(port)") }
    }

    deinit { close(fd) }

    /// Sends one request and returns the status and body.
    func send(_ request: [UInt8]) throws -> (Int, [UInt8]) {
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ServiceError("write failed") }
            sent += n
        }
        while true {
            if let end = headerEnd() {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                while buffer.count < end + 4 + length { try fill() }
                let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                buffer.removeFirst(end + 4 + length)
                return (status, body)
            }
            try fill()
        }
    }

    private func headerEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for index in 0...(buffer.count - 4) where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
            return index
        }
        return nil
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw ServiceError("the server closed the connection") }
        buffer += chunk[0..<n]
    }
}

/// CPU seconds (user + system) this process has used so far, every thread.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

/// CPU seconds the calling thread has used so far.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func residentMemoryMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kilobytes / 1024
}

@MainActor func benchmarkServe() async throws {
    let vector = options.vectors.appendingPathComponent("snp/genoa-v5-oak")
    let reportBytes = [UInt8](try Data(contentsOf: vector.appendingPathComponent("report.bin")))
    let vcekBytes = [UInt8](try Data(contentsOf: vector.appendingPathComponent("vcek.der")))
    let vcek = try AttestationCertificate(der: vcekBytes)
    let report = try SNPReport(bytes: reportBytes)
    let key = try P384.Signing.PublicKey(derRepresentation: vcek.subjectPublicKeyInfo)
    let signature = try P384.Signing.ECDSASignature(rawRepresentation: report.rawSignature)
    let signedBytes = Array(report.signedBytes)

    let time = ISO8601DateFormatter().date(from: "2025-08-08T17:21:41Z")!
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-bench-serve-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let configuration = ServiceConfiguration(
        host: "127.0.0.1", port: 0, stateDirectory: directory, tenants: [try Tenant(name: "bench", token: nil)],
        trustAnchors: try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory()),
        nonceLifetime: 3600, rateLimit: .unlimited, verifierBuild: "bench", earAlgorithm: options.earAlgorithm,
        clock: { time })
    var postgres: PostgresServiceStore?
    if let url = options.database { postgres = try await PostgresServiceStore.connect(url: url) }
    let server = try VerificationServer(configuration: configuration, store: postgres)
    let policyFile = directory.appendingPathComponent("vectors.yaml")
    let production = try String(contentsOf: URL(fileURLWithPath: "policies/sev-snp-production.yaml"), encoding: .utf8)
    try production.replacingOccurrences(of: "id: sev-snp-production", with: "id: vectors")
        .replacingOccurrences(of: "crl: hard", with: "crl: soft").replacingOccurrences(of: "  max-evidence-age: 5m\n", with: "")
        .replacingOccurrences(of: "report-data: nonce-and-key", with: "report-data: none")
        .replacingOccurrences(of: "  host-data: manifest\n", with: "")
        .write(to: policyFile, atomically: true, encoding: .utf8)
    try await server.seedPolicy(file: policyFile, tenant: "bench")

    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    var logger = Logger(label: "cmk.bench.serve")
    logger.logLevel = .error
    let group = ServiceGroup(configuration: .init(services: [server.buildApplication { continuation.yield($0) }], logger: logger))
    let serverTask = Task { try await group.run() }
    var portIterator = ports.makeAsyncIterator()
    guard let port = await portIterator.next() else { throw ServiceError("the server did not start") }

    let connections = options.connections
    let requestsPerRound = max(2000, Int(options.seconds * 1500))
    let reportB64 = Data(reportBytes).base64EncodedString()
    let vcekB64 = Data(vcekBytes).base64EncodedString()

    func request(nonce: String) -> [UInt8] {
        let body = "{\"tenant\":\"bench\",\"nonce\":\"\(nonce)\",\"policy\":\"vectors\",\"evidence\":{\"type\":\"sev-snp\",\"report\":\"\(reportB64)\",\"vcek\":\"\(vcekB64)\"}}"
        return Array("POST /v1/attest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    /// One round: issue the nonces first (not timed), then fire every attest request from `connections` threads.
    func loadRound() async throws -> (perSecond: Double, p50: Double, p99: Double, rss: Double, errors: Int, cpu: Double) {
        var issued: [[UInt8]] = []
        // Issued concurrently, so the store group-commits them (as it would for many relying parties at once).
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<requestsPerRound { group.addTask { try await server.issueNonce(tenant: "bench") } }
            for try await nonce in group { issued.append(request(nonce: nonce)) }
        }
        let requests = issued
        let next = Atomic<Int>(0)
        let latencies = Mutex<[Double]>([])
        let errors = Atomic<Int>(0)
        let peakRSS = Mutex<Double>(0)
        let cpuStart = processCPUSeconds()
        let start = ContinuousClock.now
        let done = DispatchGroup()
        for _ in 0..<connections {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                guard let connection = try? BlockingHTTPConnection(port: port) else {
                    errors.add(1, ordering: .relaxed)
                    return
                }
                var mine: [Double] = []
                while true {
                    let index = next.add(1, ordering: .relaxed).oldValue
                    if index >= requests.count { break }
                    let sent = ContinuousClock.now
                    guard let (status, _) = try? connection.send(requests[index]), status == 200 else {
                        errors.add(1, ordering: .relaxed)
                        continue
                    }
                    let elapsed = ContinuousClock.now - sent
                    mine.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
                    if index % 500 == 0 { let rss = residentMemoryMiB(); peakRSS.withLock { $0 = max($0, rss) } }
                }
                latencies.withLock { $0 += mine }
            }
        }
        done.wait()
        let elapsed = ContinuousClock.now - start
        let cpuUsed = processCPUSeconds() - cpuStart
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let sorted = latencies.withLock { $0 }.sorted()
        guard !sorted.isEmpty else { throw ServiceError("no request succeeded") }
        return (Double(sorted.count) / seconds, sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))],
                peakRSS.withLock { $0 }, errors.load(ordering: .relaxed), 1000 * cpuUsed / Double(requests.count))
    }

    // The EAR's signature: the server's algorithm over a token-sized input with a fresh key, as each attestation
    // signs once.
    let p384Key = P384.Signing.PrivateKey()
    let p256Key = P256.Signing.PrivateKey()
    let tokenInput = [UInt8](repeating: 0x41, count: 1500)
    let earAlgorithm = options.earAlgorithm
    func signEAR() throws {
        switch earAlgorithm {
        case .es256: _ = try p256Key.signature(for: tokenInput)
        case .es384: _ = try p384Key.signature(for: tokenInput)
        }
    }
    var raw: [Double] = []
    var rawSign: [Double] = []
    var rounds: [(perSecond: Double, p50: Double, p99: Double, rss: Double, errors: Int, cpu: Double)] = []
    var verifyCPU: [Double] = []
    var signCPU: [Double] = []
    for round in 0..<options.rounds {
        // Alternate which goes first, so drift hits both alike.
        func baselines() throws {
            raw.append(rate(seconds: options.seconds) { _ = key.isValidSignature(signature, for: signedBytes) })
            rawSign.append(try rate(seconds: options.seconds / 2) { try signEAR() })
            verifyCPU.append(cpuRate(seconds: options.seconds / 2) { _ = key.isValidSignature(signature, for: signedBytes) })
            signCPU.append(try cpuRate(seconds: options.seconds / 2) { try signEAR() })
        }
        if round % 2 == 0 {
            try baselines()
            rounds.append(try await loadRound())
        } else {
            rounds.append(try await loadRound())
            try baselines()
        }
        if !options.json {
            let last = rounds.last!
            FileHandle.standardError.write(Data(String(
                format: "serve round %d/%d: %.0f attest/s p50 %.2f ms p99 %.2f ms, %.2f CPU ms/attest; raw P-384 verify %.0f /s, sign %.0f /s (per CPU second: %.0f, %.0f)\n",
                round + 1, options.rounds, last.perSecond, last.p50, last.p99, last.cpu, raw.last!, rawSign.last!,
                verifyCPU.last!, signCPU.last!).utf8))
        }
    }
    await group.triggerGracefulShutdown()
    _ = try? await serverTask.value
    await postgres?.close()

    let byRate = rounds.sorted { $0.perSecond < $1.perSecond }
    let middle = byRate[byRate.count / 2]
    let rawMedian = median(raw)
    let signMedian = median(rawSign)
    // One verify and one sign per attestation, on one core: the cryptographic floor of a request's CPU time.
    let cryptoMilliseconds = 1000 / rawMedian + 1000 / signMedian
    // The same in CPU time (per CPU second of the measuring thread), and the attestations' CPU time (server and load
    // generator, every thread): figures other processes' load does not move, unlike the wall-clock rates.
    let cryptoCPUMilliseconds = 1000 / median(verifyCPU) + 1000 / median(signCPU)
    let cpuPerAttest = median(rounds.map(\.cpu))
    let rss = rounds.map(\.rss).max() ?? 0
    let errors = rounds.map(\.errors).reduce(0, +)
    results.append([
        "benchmark": "serve-attest-loopback", "vector": "genoa-v5-oak", "connections": connections,
        "requests_per_round": requestsPerRound, "baseline": "raw ECDSA P-384 verify (one core)",
        "baseline_per_second": rawMedian, "cmk_per_second": middle.perSecond, "ratio": middle.perSecond / rawMedian,
        "p50_ms": middle.p50, "p99_ms": middle.p99, "peak_rss_mib": rss, "errors": errors,
        "store": options.database == nil ? "sqlite" : "postgresql", "sign_per_second": signMedian,
        "crypto_ms_per_request": cryptoMilliseconds, "ear_algorithm": options.earAlgorithm.rawValue, "crypto_cpu_ms_per_request": cryptoCPUMilliseconds,
        "cpu_ms_per_request": cpuPerAttest,
    ])
    if !options.json {
        print("cmk serve, POST /v1/attest on loopback (genoa-v5-oak + VCEK, fresh nonce each, \(connections) keep-alive connections, \(requestsPerRound) requests a round), median of \(options.rounds) rounds:")
        print(String(format: "  raw ECDSA P-384 verify      %10.0f /s   (baseline, one core, same key and bytes)", rawMedian))
        print(String(format: "  attest requests             %10.0f /s   %.2f of the baseline; p50 %.2f ms, p99 %.2f ms", middle.perSecond, middle.perSecond / rawMedian, middle.p50, middle.p99))
        print(String(format: "  raw EAR signature (\(options.earAlgorithm.rawValue))  %10.0f /s   (one per attestation; verify + sign = %.2f ms of one core per attestation)", signMedian, cryptoMilliseconds))
        print(String(format: "  CPU time per attestation    %10.2f ms   (server and load generator, all threads); crypto floor %.2f CPU ms (verify + sign); 2 cores at that cost: %.0f /s", cpuPerAttest, cryptoCPUMilliseconds, 2000 / cpuPerAttest))
        print(String(format: "  peak resident memory (server and load generator)  %.1f MiB; failed requests %d; store ", rss, errors)
            + (options.database == nil ? "SQLite" : "PostgreSQL"))
    }
}
