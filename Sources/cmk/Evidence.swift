import ArgumentParser
import Attestation
import Coordinator
import Foundation
import SEVSNP

extension CMK {
    /// `cmk evidence`: look at and verify attestation evidence.
    struct Evidence: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode and verify attestation evidence (SEV-SNP reports).",
            subcommands: [Show.self, Verify.self])
    }
}

extension CMK.Evidence {
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every field of an SEV-SNP report, decoded.",
            discussion: "Exit status: 0 decoded, 1 --product contradicts the report's CPUID, 2 the file is unreadable or not a report.")

        @Argument(help: "The raw 1184-byte ATTESTATION_REPORT.")
        var report: String

        @Option(help: "The product (milan, genoa, turin), to decode TCBs of version 2 reports.")
        var product: ProductArgument?

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let parsed: SNPReport
            do {
                parsed = try SNPEvidenceFiles.report(report)
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            if let cpuidProduct = parsed.productFromCPUID, let product, cpuidProduct != product.value {
                throw EvidenceFailure.report(
                    AttestationError(.productMismatch, "the report's CPUID says \(cpuidProduct.rawValue), --product says \(product.value.rawValue)"),
                    json: json)
            }
            let document = SNPReportDocument(report: parsed, product: product?.value)
            if json {
                print(try JSONOutput.encode(document))
            } else {
                print(document.lines.joined(separator: "\n"))
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify SEV-SNP evidence against cmk's pinned AMD roots.",
            discussion: """
                Checks the product, the chain ARK -> ASK/ASVK -> VCEK/VLEK (RSA-PSS), revocation, the report \
                signature (ECDSA P-384), and that the certificate's TCB and hwID match the report. It does not \
                judge the claims: that is what policies do.
                Exit status: 0 valid, 1 invalid (the reason code and a sentence on standard error, or in the \
                JSON), 2 usage error or unreadable input.
                """)

        @Option(name: .customLong("snp"), help: "The raw 1184-byte ATTESTATION_REPORT.")
        var report: String

        @Option(help: "The extended-report certificate table (configfs-tsm auxblob).")
        var certTable: String?

        @Option(help: "The VCEK or VLEK certificate, DER or PEM.")
        var vcek: String?

        @Option(help: "A folder with the chain that came with the evidence (ask.pem/asvk.pem, ark.pem or cert_chain.pem); it must equal the pinned roots.")
        var chain: String?

        @Option(help: "Validation time, ISO 8601 (default: now).")
        var at: String?

        @Option(help: "Revocation mode: hard (a current CRL is required) or soft.")
        var crl = RevocationArgument(argument: "hard")!

        @Option(help: "The product (milan, genoa, turin); it must agree with the evidence.")
        var product: ProductArgument?

        @Option(help: "The offline collateral cache (VCEKs, CRLs). Default: the cmk cache folder.")
        var collateral: String?

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if certTable != nil && (vcek != nil || chain != nil) {
                throw ValidationError("give either --cert-table or --vcek/--chain, not both")
            }
            if chain != nil && vcek == nil {
                throw ValidationError("--chain goes with --vcek")
            }
            if let at, ISO8601DateFormatter().date(from: at) == nil {
                throw ValidationError("--at '\(at)' is not an ISO 8601 time such as 2025-07-18T17:04:46Z")
            }
        }

        func run() async throws {
            let time = at.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date()
            let evidence: SNPEvidence
            let verifier: SNPVerifier
            do {
                let parsed = try SNPEvidenceFiles.report(report)
                if let certTable {
                    evidence = try SNPEvidence(report: parsed, certificateTable: SNPEvidenceFiles.certificateTable(certTable))
                } else {
                    evidence = SNPEvidence(
                        report: parsed, endorsementCertificate: try vcek.map(SNPEvidenceFiles.certificate),
                        presentedChain: try chain.map { try SNPEvidenceFiles.chain(directory: $0) } ?? [])
                }
                let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
                let folder = collateral.map { URL(fileURLWithPath: $0) }
                    ?? CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral")
                verifier = SNPVerifier(trustAnchors: anchors, collateral: SNPCollateralStore(directory: folder))
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            do {
                let result = try verifier.verify(
                    evidence, options: SNPVerificationOptions(validationTime: time, revocation: crl.value, product: product?.value))
                if json {
                    print(try JSONOutput.encode(VerifyOutput(valid: true, result: result, error: nil)))
                } else {
                    let c = result.claims
                    print("VALID: SEV-SNP report v\(c.reportVersion) from \(c.product.rawValue), signed by \(c.signer), chain \(result.chain.map(\.subject).joined(separator: " <- "))")
                    print("  measurement  \(c.measurement)")
                    print("  report data  \(c.reportData)")
                    print("  host data    \(c.hostData)")
                    print("  policy       0x\(String(c.policy.raw, radix: 16))\(c.policy.debugAllowed ? " (DEBUG allowed)" : "")")
                    print("  checked at   \(time.ISO8601Format()); revocation \(result.revocation)")
                    for warning in result.warnings { print("  note: \(warning)") }
                }
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
        }
    }
}

/// The JSON shape of `cmk evidence verify --json`.
struct VerifyOutput: Encodable {
    let valid: Bool
    let result: SNPVerificationResult?
    let error: ErrorOutput?
}

struct ErrorOutput: Encodable {
    let code: String
    let reason: String
}

/// Prints a failure in the requested form and maps it to the exit status.
enum EvidenceFailure {
    static func report(_ error: any Error, json: Bool) -> ExitCode {
        let (code, reason, status): (String, String, Int32)
        if let error = error as? AttestationError {
            (code, reason, status) = (error.code.name, error.reason, error.isInputError ? 2 : 1)
        } else {
            (code, reason, status) = ("unreadable-input", "\(error)", 2)
        }
        if json {
            print((try? JSONOutput.encode(VerifyOutput(valid: false, result: nil, error: ErrorOutput(code: code, reason: reason)))) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("\(status == 1 ? "INVALID" : "error") [\(code)]: \(reason)\n".utf8))
        }
        return ExitCode(status)
    }
}

/// A product named on the command line.
struct ProductArgument: ExpressibleByArgument {
    let value: AMDProduct
    init?(argument: String) {
        guard let product = AMDProduct.allCases.first(where: { $0.rawValue.lowercased() == argument.lowercased() }) else { return nil }
        value = product
    }
    static var allValueStrings: [String] { AMDProduct.allCases.map { $0.rawValue.lowercased() } }
}

/// A revocation mode named on the command line.
struct RevocationArgument: ExpressibleByArgument {
    let value: RevocationMode
    init?(argument: String) {
        guard let mode = RevocationMode(rawValue: argument) else { return nil }
        value = mode
    }
    static var allValueStrings: [String] { RevocationMode.allCases.map(\.rawValue) }
    var defaultValueDescription: String { value.rawValue }
}
