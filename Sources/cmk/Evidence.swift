import ArgumentParser
import Attestation
import Coordinator
import Foundation
import SEVSNP
import TDX
import BinaryFormat

extension CMK {
    /// `cmk evidence`: look at and verify attestation evidence.
    struct Evidence: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode and verify attestation evidence (SEV-SNP reports, TDX quotes).",
            subcommands: [Show.self, Verify.self, FetchCollateral.self])
    }
}

extension CMK.Evidence {
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every field of an SEV-SNP report or a TDX quote, decoded.",
            discussion: """
                The kind is recognised from the bytes: a 1184-byte file is an SEV-SNP report, a file that starts with \
                a version 4 or 5 TDX quote header is a TDX quote.
                Exit status: 0 decoded, 1 --product contradicts the report's CPUID, 2 the file is unreadable or neither.
                """)

        @Argument(help: "The raw 1184-byte ATTESTATION_REPORT, or a TDX quote.")
        var evidence: String

        @Option(help: "The product (milan, genoa, turin), to decode TCBs of version 2 SEV-SNP reports.")
        var product: ProductArgument?

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let bytes: [UInt8]
            do {
                bytes = try SNPEvidenceFiles.read(evidence, what: "evidence")
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            if bytes.count != SNPReport.Layout.size, bytes.count > 8, bytes[4] == 0x81, bytes[0] == 4 || bytes[0] == 5 {
                let quote: TDXQuote
                do {
                    quote = try TDXQuote(bytes: bytes)
                } catch {
                    throw EvidenceFailure.report(
                        AttestationError(.malformedEvidence, "'\(evidence)' is not a TDX quote: \(error.description)"), json: json)
                }
                let document = TDXQuoteDocument(quote: quote)
                print(json ? try JSONOutput.encode(document) : document.lines.joined(separator: "\n"))
                return
            }
            let parsed: SNPReport
            do {
                parsed = try SNPEvidenceFiles.report(evidence)
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
            abstract: "Verify SEV-SNP evidence against cmk's pinned AMD roots, a TDX quote, or a TPM 2.0 quote with its event log.",
            discussion: """
                Checks the product, the chain ARK -> ASK/ASVK -> VCEK/VLEK (RSA-PSS), revocation, the report \
                signature (ECDSA P-384), and that the certificate's TCB and hwID match the report. It does not \
                judge the claims: that is what policies do.
                Exit status: 0 valid, 1 invalid (the reason code and a sentence on standard error, or in the \
                JSON), 2 usage error or unreadable input.
                """)

        @Option(name: .customLong("snp"), help: "An SEV-SNP report: the raw 1184-byte ATTESTATION_REPORT.")
        var report: String?

        @Option(name: .customLong("tdx"), help: "A TDX DCAP quote (v4 or v5).")
        var tdxQuote: String?

        @Option(name: .customLong("tpm"), help: "A TPM 2.0 quote: the marshalled TPMS_ATTEST (tpm2_quote -m).")
        var tpmQuote: String?

        @Option(name: .customLong("sig"), help: "With --tpm: the quote's TPMT_SIGNATURE (tpm2_quote -s).")
        var tpmSignature: String?

        @Option(help: "With --tpm: the TCG event log (binary_bios_measurements) that explains the quoted PCRs.")
        var eventlog: String?

        @Option(help: "With --tpm: the attestation key's TPMT_PUBLIC or TPM2B_PUBLIC (tpm2_createak -u).")
        var ak: String?

        @Option(help: "With --tpm: the nonce (hex) the quote's extraData must carry.")
        var nonce: String?

        @Option(help: "With --tpm: the verified TEE report's REPORT_DATA (hex); it must bind the nonce and the bound key (or SHA-256 of the AK alone), or its first 32 bytes must be SHA-256 of the AK.")
        var reportData: String?

        @Option(help: "With --tpm and --report-data: the key REPORT_DATA binds after the nonce, hex (cmk-guest's session key followed by SHA-256 of the AK; a launch writes it to vtpm/bound-key.hex).")
        var boundKey: String?

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

        @Option(help: "The collateral: for SEV-SNP the offline cache (VCEKs, CRLs); for TDX a folder with tcbinfo.json, qeidentity.json, their issuer chains and the CRLs, or the cache holding intel/tdx/<fmspc>/. Default: the cmk cache folder.")
        var collateral: String?

        @Option(help: "An installation's simulated-platform folder (<state-dir>/simulated/amd or <state-dir>/simulated/intel) whose root to trust besides the pinned ones; evidence under it is reported as SIMULATED.")
        var simulated: String?

        @Flag(help: "Print JSON.")
        var json = false

        /// The pinned anchors, plus the simulated folder when one was named.
        func trustAnchors() throws(AttestationError) -> TrustAnchorStore {
            try TrustAnchorStore(
                directory: TrustAnchorStore.locateDefaultDirectory(), simulated: simulated.map { URL(fileURLWithPath: $0) })
        }

        func validate() throws {
            if [report, tdxQuote, tpmQuote].compactMap({ $0 }).count != 1 {
                throw ValidationError("give exactly one of --snp REPORT, --tdx QUOTE or --tpm QUOTE")
            }
            try validateTPM()
            if tdxQuote != nil && (certTable != nil || vcek != nil || chain != nil || product != nil) {
                throw ValidationError("--cert-table, --vcek, --chain and --product are for SEV-SNP reports")
            }
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
            if let tdxQuote {
                try verifyTDX(tdxQuote, time: time)
                return
            }
            if let tpmQuote {
                try verifyTPM(tpmQuote)
                return
            }
            guard let report else { throw ExitCode(2) }
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
                let anchors = try trustAnchors()
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
                    print("VALID: SEV-SNP report v\(c.reportVersion) from \(c.product.rawValue), signed by \(c.signer), chain \(result.chain.map(\.subject).joined(separator: " <- "))"
                        + (c.simulated ? " — SIMULATED platform (\(c.trustAnchor)): no hardware isolation" : ""))
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

extension CMK.Evidence.Verify {
    func verifyTDX(_ path: String, time: Date) throws {
        let quote: TDXQuote
        let verifier: TDXVerifier
        let collateralSet: TDXCollateral?
        do {
            let bytes = try SNPEvidenceFiles.read(path, what: "quote")
            do {
                quote = try TDXQuote(bytes: bytes)
            } catch {
                throw AttestationError(.malformedEvidence, "'\(path)' is not a TDX quote: \(error.description)")
            }
            verifier = TDXVerifier(trustAnchors: try trustAnchors())
            let base = collateral.map { URL(fileURLWithPath: $0) } ?? CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral")
            let direct = FileManager.default.fileExists(atPath: base.appendingPathComponent("tcbinfo.json").path)
            let fmspc = try? PCKExtensions(certificate: AttestationCertificate(pem: quote.pckCertificateChainPEM)).fmspc.bytes
            let folder = direct ? base : TDXCollateral.cacheFolder(base, fmspc: fmspc ?? [])
            if FileManager.default.fileExists(atPath: folder.path) {
                collateralSet = try TDXCollateral(directory: folder)
            } else if collateral != nil {
                // A folder the user named must exist; only the default cache may be absent.
                throw AttestationError(
                    .unreadableInput, "'\(base.path)' holds neither tcbinfo.json nor the cache folder \(folder.path)")
            } else {
                collateralSet = nil
            }
        } catch {
            throw EvidenceFailure.report(error, json: json)
        }
        let result: TDXVerificationResult
        do {
            result = try verifier.verify(
                quote, collateral: collateralSet, options: TDXVerificationOptions(evaluationTime: time, revocation: crl.value))
        } catch {
            throw EvidenceFailure.report(error, json: json)
        }
        if json {
            print(try JSONOutput.encode(TDXVerifyOutput(valid: result.valid, result: result)))
        } else {
            let c = result.claims
            print("\(result.valid ? "VALID" : "INVALID"): TDX quote v\(c.quoteVersion), TCB status \(result.tcbStatus ?? "not evaluated")"
                + (result.advisoryIDs.isEmpty ? "" : " (advisories \(result.advisoryIDs.joined(separator: ", ")))")
                + (c.simulated ? " — SIMULATED platform (\(c.trustAnchor)): no hardware isolation" : ""))
            print("  root         \(c.trustAnchor)\(c.simulated ? " (SIMULATED, not Intel)" : "")")
            print("  MRTD         \(c.mrTD)")
            print("  REPORTDATA   \(c.reportData)")
            print("  attributes   0x\(String(c.tdAttributes, radix: 16)) [\(c.tdAttributeFlags.joined(separator: " "))]\(c.debug ? " DEBUG" : "")")
            print("  checked at   \(time.ISO8601Format())")
            for (name, reason) in result.failures.sorted(by: { $0.key < $1.key }) { print("  FAILED \(name): \(reason)") }
            for warning in result.warnings { print("  note: \(warning)") }
        }
        if !result.valid { throw ExitCode(1) }
    }
}

struct TDXVerifyOutput: Encodable {
    let valid: Bool
    let result: TDXVerificationResult
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
