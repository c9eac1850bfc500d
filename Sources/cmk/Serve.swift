import ArgumentParser
import Attestation
import AttestationResults
import Coordinator
import Foundation
import VerificationService

extension CMK {
    /// `cmk serve`: the remote-attestation verification service (docs/api.md).
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the remote-attestation verification service: challenges, appraisal into signed EARs, policies and audit per tenant.",
            discussion: """
                HTTP/1.1 on --host:--port. POST /v1/challenge, POST /v1/attest, GET /.well-known/jwks.json, the policy and \
                audit endpoints under /v1/tenants/<tenant>/ (bearer token), /healthz, /readyz, /metrics, /openapi.yaml; \
                see docs/api.md. SIGTERM or SIGINT stops it gracefully: open requests finish, then it exits 0.
                Each --tenant NAME=TOKEN_FILE names a tenant and the file holding its administrator's bearer token (at \
                least 16 characters; only its SHA-256 is kept). Without --tenant there is one tenant, 'default', whose \
                token comes from $CMK_SERVE_TOKEN (without it, the administration endpoints refuse every request).
                --database postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or $CMK_SERVE_DATABASE_URL, which keeps the \
                password out of the process list) keeps nonces, policies and the audit logs in PostgreSQL, shared by \
                every replica; without it they live in SQLite under --data-dir (one host). Signing keys stay in \
                --data-dir: replicas must share them (docs/deploy.md).
                Exit status: 0 after a graceful stop, 2 a usage error or a state that cannot be opened.
                """)

        @Option(help: "The address to listen on.")
        var host = "127.0.0.1"

        @Option(help: "The port to listen on (0: any free port).")
        var port = 8080

        @Option(help: "The service's state folder (store, tenants' keys and audit logs). Default: <state-dir>/serve.")
        var dataDir: String?

        @Option(name: .customLong("tenant"), help: "A tenant and its administrator token file: NAME=TOKEN_FILE (repeatable).")
        var tenantSpecs: [String] = []

        @Option(name: .customLong("policy"), help: "A policy file to load at start, as a new version when newer: [TENANT=]FILE (repeatable; default tenant: the first).")
        var policySpecs: [String] = []

        @Option(help: "A simulated-platform folder (<state-dir>/simulated/amd or .../intel) whose root to trust besides the pinned ones (repeatable); results say SIMULATED.")
        var simulated: [String] = []

        @Option(help: "The offline SEV-SNP collateral cache (VCEKs, CRLs). Default: the cmk cache's collateral folder.")
        var snpCollateral: String?

        @Option(help: "The offline TDX collateral cache (intel/tdx/<fmspc>/). Default: the cmk cache's collateral folder.")
        var tdxCollateral: String?

        @Option(help: "Seconds a nonce stays valid.")
        var nonceLifetime = 120

        @Option(help: "Seconds an issued EAR stays valid.")
        var resultLifetime = 300

        @Option(help: "The largest request body, in bytes.")
        var maxBody = 256 * 1024

        @Option(help: "Requests per second each client (IP address) may send, sustained; 0 for no limit.")
        var rateLimit = 100.0

        @Option(help: "Requests each client may send at once.")
        var rateBurst = 200.0

        @Option(help: "Seconds before an idle connection is closed and a slow request body is answered 408.")
        var requestTimeout = 30

        @Option(help: "The shared PostgreSQL store: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: $CMK_SERVE_DATABASE_URL, else SQLite in --data-dir).")
        var database: String?

        @Option(help: "The algorithm of the EAR signing keys this server creates: es256 (P-256, the default: the JOSE and EAR ecosystems' common algorithm, a signature ~25× cheaper than P-384's) or es384 (P-384). A tenant's stored key keeps its own.")
        var earAlgorithm: EARAlgorithmOption = .es256

        @Option(help: "A PEM file holding the vTPM EK certificate chain to pin, leaf-ward: the CA that issues EK certificates, then its self-signed root (or the root alone). An EK certificate sent with a credential activation must chain to it.")
        var tpmEkChain: String?

        @OptionGroup var state: StateOptions

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
            guard (1...86400).contains(nonceLifetime) else { throw ValidationError("--nonce-lifetime must be 1 to 86400 seconds") }
            guard (1...86400).contains(resultLifetime) else { throw ValidationError("--result-lifetime must be 1 to 86400 seconds") }
            guard (1024...(64 << 20)).contains(maxBody) else { throw ValidationError("--max-body must be 1024 bytes to 64 MiB") }
            guard rateLimit >= 0, rateBurst >= 1 else { throw ValidationError("--rate-limit must be 0 or more and --rate-burst 1 or more") }
            guard (1...3600).contains(requestTimeout) else { throw ValidationError("--request-timeout must be 1 to 3600 seconds") }
            for spec in tenantSpecs where !spec.contains("=") { throw ValidationError("--tenant '\(spec)' must be NAME=TOKEN_FILE") }
        }

        func tenants() throws -> [Tenant] {
            if tenantSpecs.isEmpty {
                return [try Tenant(name: "default", token: ProcessInfo.processInfo.environment["CMK_SERVE_TOKEN"])]
            }
            return try tenantSpecs.map { spec in
                let name = String(spec.prefix { $0 != "=" })
                let file = String(spec.drop { $0 != "=" }.dropFirst())
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw ServiceError("cannot read the token file '\(file)' of tenant '\(name)'")
                }
                let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                return try Tenant(name: name, token: token)
            }
        }

        /// The certificates of `--tpm-ek-chain`, leaf-ward: each must be signed by the next, and the last by itself,
        /// so a chain that cannot work is refused at start rather than failing every attestation.
        static func endorsementChain(_ path: String) throws -> [AttestationCertificate] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ServiceError("cannot read the vTPM EK chain '\(path)'")
            }
            let chain = try PEMDocuments.certificates(in: String(decoding: data, as: UTF8.self)).map {
                try AttestationCertificate(der: $0)
            }
            guard let root = chain.last else { throw ServiceError("'\(path)' holds no PEM certificate") }
            for (index, (certificate, issuer)) in zip(chain, chain.dropFirst() + [root]).enumerated() {
                do {
                    try certificate.verifySignature(issuedBy: issuer)
                } catch {
                    let which = index == chain.count - 1
                        ? "the last certificate must be a self-signed root"
                        : "certificate \(index + 1) is not signed by certificate \(index + 2)"
                    throw ServiceError("'\(path)': \(which) (\(error))")
                }
            }
            return chain
        }

        func run() async throws {
            let server: VerificationServer
            var store: (any ServiceStore)?
            do {
                if let url = database ?? ProcessInfo.processInfo.environment["CMK_SERVE_DATABASE_URL"], !url.isEmpty {
                    let shared = try await PostgresServiceStore.connect(url: url)
                    FileHandle.standardError.write(Data("cmk serve: store \(shared.location)\n".utf8))
                    store = shared
                }
                let tenants = try tenants()
                var anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
                for folder in simulated { anchors = try anchors.adding(simulatedDirectory: URL(fileURLWithPath: folder)) }
                let cache = CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral")
                let endorsementChain = try tpmEkChain.map(Self.endorsementChain) ?? []
                let configuration = ServiceConfiguration(
                    host: host, port: port,
                    stateDirectory: dataDir.map { URL(fileURLWithPath: $0) } ?? state.state.url.appendingPathComponent("serve"),
                    tenants: tenants, trustAnchors: anchors,
                    snpCollateral: URL(fileURLWithPath: snpCollateral ?? cache.path),
                    tdxCollateral: URL(fileURLWithPath: tdxCollateral ?? cache.path),
                    nonceLifetime: TimeInterval(nonceLifetime), resultLifetime: TimeInterval(resultLifetime),
                    maximumBodySize: maxBody,
                    rateLimit: rateLimit == 0 ? .unlimited : .init(requestsPerSecond: rateLimit, burst: rateBurst),
                    requestTimeout: TimeInterval(requestTimeout), verifierBuild: CMKVersion.current,
                    earAlgorithm: earAlgorithm.algorithm, tpmEndorsementChain: endorsementChain)
                server = try VerificationServer(configuration: configuration, store: store)
                for spec in policySpecs {
                    let (tenant, file) = spec.contains("=")
                        ? (String(spec.prefix { $0 != "=" }), String(spec.drop { $0 != "=" }.dropFirst()))
                        : (tenants[0].name, spec)
                    let loaded = try await server.seedPolicy(file: URL(fileURLWithPath: file), tenant: tenant)
                    FileHandle.standardError.write(Data("cmk serve: policy \(file) \(loaded ? "loaded" : "already stored") for tenant \(tenant)\n".utf8))
                }
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                await store?.close()
                throw ExitCode(2)
            }
            let host = self.host
            do {
                try await server.run { port in
                    FileHandle.standardError.write(Data("cmk serve: listening on http://\(host):\(port)\n".utf8))
                }
            } catch {
                await store?.close()
                throw error
            }
            await store?.close()
        }
    }
}

/// `--ear-algorithm es256|es384`.
enum EARAlgorithmOption: String, ExpressibleByArgument, CaseIterable {
    case es256
    case es384

    var algorithm: EARAlgorithm {
        switch self {
        case .es256: .es256
        case .es384: .es384
        }
    }
}
