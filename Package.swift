// swift-tools-version: 6.2
// cmk — the confidential multikernel.
//
// Modules follow the data flow and depend one way (docs/architecture.md):
//   BinaryFormat -> Firmware, SEVSNP, TPM2 (formats, pure values) -> Attestation (chains, verifiers, claims)
//   -> Coordinator -> cmk (thin executable); AttestationResults (COSE/EAR) beside Attestation.
//   C libraries stay in their boxes: COpenSSL (Attestation, SealedChannel's records), CTSS2 (TPM2), CCBOR
//   (AttestationResults).
import PackageDescription

let package = Package(
    name: "cmk",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cmk", targets: ["cmk"]),
        .library(name: "Attestation", targets: ["Attestation"]),
        .library(name: "AttestationResults", targets: ["AttestationResults"]),
        .library(name: "AttestationPolicy", targets: ["AttestationPolicy"]),
        .library(name: "AuditLog", targets: ["AuditLog"]),
        .library(name: "Coordinator", targets: ["Coordinator"]),
        .library(name: "SealedChannel", targets: ["SealedChannel"]),
        .library(name: "SealedChannelAttestation", targets: ["SealedChannelAttestation"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        // The verification service (cmk serve): HTTP, service life cycle, Prometheus metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The shared store of `cmk serve` replicas (PostgreSQL).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
    ],
    targets: [
        // MARK: C libraries, each in its box: a module map and a shim header, nothing else.
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CTSS2", path: "Sources/CTSS2", pkgConfig: "tss2-mu",
            providers: [.apt(["libtss2-dev"])]),
        .systemLibrary(
            name: "CCBOR", path: "Sources/CCBOR", pkgConfig: "libcbor",
            providers: [.apt(["libcbor-dev"])]),
        .systemLibrary(name: "CGuestLinux", path: "Sources/CGuestLinux"),
        .systemLibrary(name: "CLinuxHost", path: "Sources/CLinuxHost"),

        // MARK: Formats: pure values, no I/O.
        .target(name: "BinaryFormat"),
        .target(name: "Firmware", dependencies: ["BinaryFormat"]),
        .target(name: "TPM2", dependencies: ["BinaryFormat", "CTSS2", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "SEVSNP",
            dependencies: ["BinaryFormat", "Firmware", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "TDX", dependencies: ["BinaryFormat", "Firmware", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "EventLog", dependencies: ["BinaryFormat", .product(name: "Crypto", package: "swift-crypto")]),

        // MARK: Verification.
        .target(
            name: "Attestation",
            dependencies: [
                "BinaryFormat", "COpenSSL", "SEVSNP", "TDX", "TPM2", "EventLog", "GuestProtocol",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(name: "CollateralHTTP", dependencies: ["Attestation"]),
        .target(
            name: "AttestationResults",
            dependencies: [
                "CCBOR", "AttestationPolicy",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),

        // MARK: What the host and a child's agent say to each other (used by both sides; no Foundation).
        .target(name: "GuestProtocol", dependencies: ["BinaryFormat", .product(name: "Crypto", package: "swift-crypto")]),
        // The agent inside each child (configfs-tsm, /dev/sev-guest, /dev/tdx_guest, the simulated platform port).
        .target(
            name: "GuestAgent",
            dependencies: [
                "CGuestLinux", "GuestProtocol", "BinaryFormat", "SealedChannel", "SEVSNP",
                .product(name: "Crypto", package: "swift-crypto"),
                // RSASSA-PSS for the ARK → ASK → VCEK chain the child checks (BoringSSL, no Foundation).
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]),

        // MARK: Appraisal: policies over typed claims, and the tamper-evident record of every decision.
        .target(
            name: "AttestationPolicy",
            dependencies: [
                "Attestation", "SEVSNP", "TDX", "Firmware", "BinaryFormat", "GuestProtocol", "EventLog", "Yams",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "AuditLog",
            dependencies: [
                "AttestationPolicy", "BinaryFormat",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),

        // MARK: Sealed channels: Noise XX with attestation evidence as payload, and the record layer (no Foundation, so
        // cmk-guest can link it; records go through OpenSSL's EVP AEAD, libcrypto linked statically into cmk-guest);
        // the peer verifier over the appraisal pipeline lives apart.
        .target(
            name: "SealedChannel",
            dependencies: ["BinaryFormat", "GuestProtocol", "COpenSSL", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "SealedChannelAttestation",
            dependencies: [
                "SealedChannel", "AttestationPolicy", "Attestation", "GuestProtocol", "BinaryFormat",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),

        // MARK: The simulated platform (no SEV-SNP/TDX hardware): its own per-installation roots, labelled simulated.
        .target(
            name: "PlatformSimulator",
            dependencies: [
                "SEVSNP", "TDX", "Attestation", "BinaryFormat", "GuestProtocol", "COpenSSL",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]),

        // MARK: Child images: profiles, the initramfs (newc cpio), expected launch measurements.
        .target(
            name: "GuestImage",
            dependencies: [
                "BinaryFormat", "SEVSNP", "TDX", "Yams", .product(name: "Crypto", package: "swift-crypto"),
            ]),

        // MARK: The host side.
        .target(
            name: "Coordinator",
            dependencies: [
                "BinaryFormat", "Firmware", "EventLog", "GuestProtocol", "GuestImage", "PlatformSimulator", "Attestation",
                "AttestationPolicy", "AttestationResults", "AuditLog", "CLinuxHost", "Yams",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "GRDB", package: "GRDB.swift"),
            ]),

        // MARK: The remote-attestation verification service behind `cmk serve` (docs/api.md).
        .target(
            name: "VerificationService",
            dependencies: [
                "Attestation", "AttestationPolicy", "AttestationResults", "AuditLog", "SEVSNP", "TDX", "BinaryFormat",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("openapi.yaml")]),

        // MARK: Executables (thin).
        .executableTarget(
            name: "cmk",
            dependencies: [
                "Coordinator", "GuestImage", "Attestation", "AttestationPolicy", "AttestationResults", "AuditLog",
                "VerificationService", "SEVSNP", "TDX", "EventLog", "Firmware", "BinaryFormat", "GuestProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .executableTarget(name: "cmk-guest", dependencies: ["GuestAgent"]),

        // MARK: Benchmarks (run with `swift run -c release cmk-bench`).
        .executableTarget(
            name: "cmk-bench",
            dependencies: [
                "Attestation", "SEVSNP", "TDX", "BinaryFormat", "SealedChannel", "Coordinator", "GuestImage", "GuestProtocol",
                "GuestAgent", "PlatformSimulator", "COpenSSL",
                "AttestationPolicy", "AttestationResults", "VerificationService", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/cmk-bench"),

        // MARK: Test support shared by every test target (vector locations, running the built cmk).
        .target(name: "CMKTesting", dependencies: []),

        // MARK: Tests.
        .testTarget(name: "BinaryFormatTests", dependencies: ["BinaryFormat", "CMKTesting"]),
        .testTarget(name: "FirmwareTests", dependencies: ["Firmware", "CMKTesting"]),
        .testTarget(name: "TPM2Tests", dependencies: ["TPM2", "CMKTesting"]),
        .testTarget(
            name: "SEVSNPTests",
            dependencies: ["SEVSNP", "BinaryFormat", "Firmware", "CMKTesting", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "TDXTests", dependencies: ["TDX", "Firmware", "BinaryFormat", "CMKTesting", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "EventLogTests", dependencies: ["EventLog", "BinaryFormat", "CMKTesting"]),
        .testTarget(
            name: "AttestationTests",
            dependencies: [
                "Attestation", "AttestationPolicy", "BinaryFormat", "SEVSNP", "CollateralHTTP", "CMKTesting", "EventLog",
                "GuestAgent", "TPM2", .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "AttestationResultsTests",
            dependencies: [
                "AttestationResults", "AttestationPolicy", "CMKTesting",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(
            name: "GuestProtocolTests",
            dependencies: ["GuestProtocol", "BinaryFormat", "CMKTesting", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "GuestAgentTests",
            dependencies: [
                "GuestAgent", "GuestProtocol", "BinaryFormat", "CMKTesting", "PlatformSimulator", "SealedChannel", "SEVSNP",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(
            name: "AttestationPolicyTests",
            dependencies: ["AttestationPolicy", "Attestation", "SEVSNP", "TDX", "BinaryFormat", "CMKTesting"]),
        .testTarget(
            name: "AuditLogTests",
            dependencies: ["AuditLog", "AttestationPolicy", "CMKTesting", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "PlatformSimulatorTests",
            dependencies: [
                "PlatformSimulator", "Attestation", "AttestationPolicy", "SEVSNP", "TDX", "EventLog", "GuestProtocol",
                "GuestImage", "BinaryFormat", "CMKTesting", .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(
            name: "SealedChannelTests",
            dependencies: [
                "SealedChannel", "SealedChannelAttestation", "PlatformSimulator", "AttestationPolicy", "Attestation",
                "GuestProtocol", "BinaryFormat", "CMKTesting", .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["noise_interop.py"]),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: [
                "Coordinator", "GuestImage", "GuestProtocol", "CMKTesting", "PlatformSimulator", "Attestation", "TDX",
                "BinaryFormat", "AttestationPolicy", "AuditLog",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(name: "GuestImageTests", dependencies: ["GuestImage", "BinaryFormat", "CMKTesting"]),
        .testTarget(
            name: "CMKCommandTests", dependencies: ["CMKTesting", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "VerificationServiceTests",
            dependencies: [
                "VerificationService", "Attestation", "AttestationPolicy", "AttestationResults", "AuditLog",
                "PlatformSimulator", "SEVSNP", "BinaryFormat", "GuestProtocol", "CMKTesting",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["Attestation", "AttestationResults", "BinaryFormat", "Firmware", "SEVSNP", "TPM2", "CMKTesting"]),
    ]
)

// One place for the language settings of every target.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(contentsOf: [
        .swiftLanguageMode(.v6),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ])
    target.swiftSettings = settings
}
