import ArgumentParser
import Attestation
import BinaryFormat
import Coordinator
import Foundation
import TDX

extension CMK.Evidence {
    /// `cmk evidence fetch-collateral`: the Intel collateral of a TDX quote's platform, fetched for offline use.
    struct FetchCollateral: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fetch-collateral",
            abstract: "Fetch the Intel PCS collateral a TDX quote needs, so that verification can run offline.",
            discussion: """
                Reads the platform (FMSPC) and the PCK CA from the quote's PCK certificate, then fetches the TCB \
                Info, the QE Identity and the PCK CRL from Intel PCS v4 (or a PCCS or mirror at --base-url), with \
                the issuer chains PCS sends in its response headers, and the Intel SGX Root CA CRL. Every answer \
                must be HTTP 200 and readable before anything is written. Nothing is trusted here: `cmk evidence \
                verify --tdx` checks every signature against the pinned Intel root. Uses curl(1).
                Exit status: 0 fetched, 1 a server did not answer with the collateral, 2 usage error or unreadable \
                input.
                """)

        @Argument(help: "A TDX DCAP quote (v4 or v5).")
        var quote: String

        @Option(
            help: ArgumentHelp(
                "Write the files into this folder. Default: intel/tdx/<fmspc>/ under the cmk cache's collateral "
                    + "folder, where `cmk evidence verify --tdx` looks."))
        var collateral: String?

        @Option(help: "The PCS base URL: Intel PCS, a PCCS or a mirror serving the PCS v4 paths.")
        var baseURL = IntelPCS.baseURL

        @Option(name: .customLong("root-crl-url"), help: "Where to fetch the Intel SGX Root CA CRL.")
        var rootCRLURL = IntelPCS.rootCACRLURL

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            for (name, value) in [("--base-url", baseURL), ("--root-crl-url", rootCRLURL)] {
                guard let url = URL(string: value), url.scheme == "https" || url.scheme == "http", url.host != nil
                else {
                    throw ValidationError("\(name) '\(value)' is not an http(s) URL")
                }
            }
        }

        func run() async throws {
            let platform: (fmspc: [UInt8], ca: String)
            do {
                let bytes = try SNPEvidenceFiles.read(quote, what: "quote")
                let parsed: TDXQuote
                do {
                    parsed = try TDXQuote(bytes: bytes)
                } catch {
                    throw AttestationError(.malformedEvidence, "'\(quote)' is not a TDX quote: \(error.description)")
                }
                platform = try TDXCollateralFetch.platform(of: parsed)
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            let folder = collateral.map { URL(fileURLWithPath: $0) }
                ?? TDXCollateral.cacheFolder(
                    CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral"), fmspc: platform.fmspc)
            let files: [URL]
            do {
                files = try await TDXCollateralFetch(baseURL: baseURL, rootCACRLURL: rootCRLURL)
                    .fetch(fmspc: platform.fmspc, ca: platform.ca, using: CurlCollateralTransport(), into: folder)
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            if json {
                print(
                    try JSONOutput.encode(
                        FetchOutput(
                            fmspc: Hex.encode(platform.fmspc), ca: platform.ca, folder: folder.path,
                            files: files.map(\.lastPathComponent))))
            } else {
                print("FETCHED: TDX collateral for FMSPC \(Hex.encode(platform.fmspc)) (PCK \(platform.ca) CA)")
                print("  into   \(folder.path)")
                for file in files { print("  \(file.lastPathComponent)") }
            }
        }
    }
}

/// The JSON shape of `cmk evidence fetch-collateral --json`.
struct FetchOutput: Encodable {
    let fmspc: String
    let ca: String
    let folder: String
    let files: [String]
}
