public import Foundation
import BinaryFormat
public import TDX

/// What one HTTP GET answered: the status, the headers (names as sent; look them up with ``header(_:)``) and the
/// body.
public struct CollateralResponse: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of the header `name`, compared case-insensitively as HTTP requires.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.key.lowercased() == wanted }?.value
    }
}

/// Gets a collateral document over HTTP(S) with its response headers: Intel PCS sends the issuer chain of each
/// signed item in a header, not in the body.
public protocol TDXCollateralTransport: Sendable {
    func get(_ url: String) async throws -> CollateralResponse
}

/// Fetches the collateral one TDX platform needs from Intel PCS v4 (or a PCCS or mirror serving the same paths) into
/// a folder ``TDXCollateral/init(directory:)`` reads: `tcbinfo.json` and `tcb_info_issuer_chain.pem`,
/// `qeidentity.json` and `qe_identity_issuer_chain.pem`, `pck_crl.der` and `pck_crl_issuer_chain.pem`,
/// `root_ca_crl.der`.
///
/// Every answer must be HTTP 200 and readable as what it claims to be (the JSON documents parse, the CRLs are DER
/// CRLs, the issuer chains are PEM certificates) before anything is written; the files are written only when all
/// four answers are in. Whether the signatures and chains hold is verification's business, as for a folder filled
/// by hand.
public struct TDXCollateralFetch: Sendable {
    /// The PCS base URL, `https://api.trustedservices.intel.com` by default.
    public var baseURL: String
    /// Where the Intel SGX Root CA CRL is published (not under the PCS base URL at Intel).
    public var rootCACRLURL: String

    /// The issuer-chain headers, in the order tried: PCS v4 names first, then the names of earlier versions.
    public static let tcbInfoChainHeaders = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"]
    public static let qeIdentityChainHeaders = ["SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain"]
    public static let pckCRLChainHeaders = ["SGX-PCK-CRL-Issuer-Chain"]

    public init(baseURL: String = IntelPCS.baseURL, rootCACRLURL: String = IntelPCS.rootCACRLURL) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.rootCACRLURL = rootCACRLURL
    }

    /// The platform a quote comes from: its FMSPC and whether its PCK certificate was issued by the Platform or the
    /// Processor CA, read from the PCK chain the quote carries.
    public static func platform(of quote: TDXQuote) throws(AttestationError) -> (fmspc: [UInt8], ca: String) {
        let chain = try PEMDocuments.certificates(in: quote.pckCertificateChainPEM)
        guard chain.count >= 2 else {
            throw AttestationError(.malformedEvidence, "the quote's PCK chain has \(chain.count) certificates")
        }
        let leaf = try AttestationCertificate(der: chain[0])
        let intermediate = try AttestationCertificate(der: chain[1])
        let ca = intermediate.subjectCommonName?.contains("Processor") == true ? "processor" : "platform"
        return (try PCKExtensions(certificate: leaf).fmspc.bytes, ca)
    }

    /// Fetches the collateral of the platform with `fmspc` whose PCK certificates `ca` (`platform` or `processor`)
    /// issues, and writes it into `folder` (created if needed). Returns the files written.
    @discardableResult
    public func fetch(
        fmspc: [UInt8], ca: String, using transport: some TDXCollateralTransport, into folder: URL
    ) async throws(AttestationError) -> [URL] {
        guard ca == "platform" || ca == "processor" else {
            throw AttestationError(.missingCollateral, "the PCK CA is 'platform' or 'processor', not '\(ca)'")
        }
        let tcbInfoURL = IntelPCS.tcbInfoURL(fmspc: fmspc, base: baseURL)
        let tcbInfo = try await get(tcbInfoURL, using: transport)
        _ = try readable(tcbInfoURL) { () throws(TDXCollateralError) in try TDXTCBInfo(json: tcbInfo.body) }
        let tcbInfoChain = try issuerChain(tcbInfo, tcbInfoURL, headers: Self.tcbInfoChainHeaders)

        let qeIdentityURL = IntelPCS.qeIdentityURL(base: baseURL)
        let qeIdentity = try await get(qeIdentityURL, using: transport)
        _ = try readable(qeIdentityURL) { () throws(TDXCollateralError) in try TDXQEIdentity(json: qeIdentity.body) }
        let qeIdentityChain = try issuerChain(qeIdentity, qeIdentityURL, headers: Self.qeIdentityChainHeaders)

        let pckCRLURL = IntelPCS.pckCRLURL(ca: ca, base: baseURL)
        let pckCRL = try await get(pckCRLURL, using: transport)
        _ = try readable(pckCRLURL) { () throws(AttestationError) in try CertificateRevocationList(der: pckCRL.body) }
        let pckCRLChain = try issuerChain(pckCRL, pckCRLURL, headers: Self.pckCRLChainHeaders)

        let rootCRL = try await get(rootCACRLURL, using: transport)
        _ = try readable(rootCACRLURL) { () throws(AttestationError) in
            try CertificateRevocationList(der: rootCRL.body)
        }

        let files: [(String, [UInt8])] = [
            ("tcbinfo.json", tcbInfo.body), ("tcb_info_issuer_chain.pem", Array(tcbInfoChain.utf8)),
            ("qeidentity.json", qeIdentity.body), ("qe_identity_issuer_chain.pem", Array(qeIdentityChain.utf8)),
            ("pck_crl.der", pckCRL.body), ("pck_crl_issuer_chain.pem", Array(pckCRLChain.utf8)),
            ("root_ca_crl.der", rootCRL.body),
        ]
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            return try files.map { name, bytes in
                let url = folder.appendingPathComponent(name)
                try Data(bytes).write(to: url, options: .atomic)
                return url
            }
        } catch {
            throw AttestationError(.unreadableInput, "cannot write the collateral into \(folder.path): \(error)")
        }
    }

    /// GETs `url` and requires HTTP 200.
    private func get(_ url: String, using transport: some TDXCollateralTransport) async throws(AttestationError)
        -> CollateralResponse
    {
        let response: CollateralResponse
        do {
            response = try await transport.get(url)
        } catch let error as AttestationError {
            throw error
        } catch {
            throw AttestationError(.missingCollateral, "\(url) could not be fetched: \(error)")
        }
        guard response.status == 200 else {
            throw AttestationError(.missingCollateral, "\(url) answered HTTP \(response.status)")
        }
        return response
    }

    /// Runs `read` on a fetched body and names the URL when the body is not what it should be.
    private func readable<Value, Failure: Error & CustomStringConvertible>(
        _ url: String, _ read: () throws(Failure) -> Value
    ) throws(AttestationError) -> Value {
        do {
            return try read()
        } catch {
            throw AttestationError(
                .missingCollateral, "\(url) did not answer with the collateral: \(error.description)")
        }
    }

    /// The issuer chain a response carries in the first of `headers` present: URL-encoded PEM, decoded, and required
    /// to hold at least one certificate.
    private func issuerChain(_ response: CollateralResponse, _ url: String, headers: [String]) throws(AttestationError)
        -> String
    {
        guard let encoded = headers.lazy.compactMap({ response.header($0) }).first else {
            throw AttestationError(.missingCollateral, "\(url) sent no \(headers[0]) header with the issuer chain")
        }
        guard let pem = encoded.removingPercentEncoding else {
            throw AttestationError(.missingCollateral, "the \(headers[0]) header of \(url) is not URL-encoded PEM")
        }
        let certificates: [[UInt8]]
        do {
            certificates = try PEMDocuments.certificates(in: pem)
            for der in certificates { _ = try AttestationCertificate(der: der) }
        } catch {
            throw AttestationError(
                .missingCollateral, "the \(headers[0]) header of \(url) is not a certificate chain: \(error.reason)")
        }
        guard !certificates.isEmpty else {
            throw AttestationError(.missingCollateral, "the \(headers[0]) header of \(url) holds no certificate")
        }
        return pem
    }
}

/// A ``TDXCollateralTransport`` that runs `curl`, so that fetching needs no HTTP stack linked into cmk (and cmk
/// keeps starting without libcurl's dependencies). The status is curl's `%{http_code}`; redirects are not followed.
public struct CurlCollateralTransport: TDXCollateralTransport {
    /// The curl executable.
    public var executable: String
    /// The most seconds one request may take.
    public var timeout: Int

    public init(executable: String = "/usr/bin/curl", timeout: Int = 60) {
        self.executable = executable
        self.timeout = timeout
    }

    public func get(_ url: String) async throws -> CollateralResponse {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-fetch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let headerFile = scratch.appendingPathComponent("headers")
        let bodyFile = scratch.appendingPathComponent("body")
        // Files, not pipes: a pipe's write end inherited by another child of this process would hold off EOF.
        let statusFile = scratch.appendingPathComponent("status")
        let errorFile = scratch.appendingPathComponent("errors")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--silent", "--show-error", "--proto", "=https,http", "--max-time", String(timeout),
            "--dump-header", headerFile.path, "--output", bodyFile.path, "--stderr", errorFile.path,
            "--write-out", "%{http_code}", url,
        ]
        _ = FileManager.default.createFile(atPath: statusFile.path, contents: nil)
        let status = try FileHandle(forWritingTo: statusFile)
        defer { try? status.close() }
        process.standardOutput = status
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw AttestationError(.missingCollateral, "cannot run \(executable) to fetch \(url): \(error)")
        }
        // Polled rather than `waitUntilExit()`, which can stall on a Swift concurrency thread; curl's own
        // --max-time bounds the wait, the deadline is only a backstop.
        let deadline = Date().addingTimeInterval(TimeInterval(timeout + 10))
        while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            throw AttestationError(.missingCollateral, "\(url) could not be fetched: curl did not finish")
        }
        let code = (try? String(contentsOf: statusFile, encoding: .utf8)).flatMap {
            Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard process.terminationStatus == 0, let code else {
            let message = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
            throw AttestationError(
                .missingCollateral,
                "\(url) could not be fetched (curl exit \(process.terminationStatus)): "
                    + message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let headerText = (try? String(contentsOf: headerFile, encoding: .utf8)) ?? ""
        let body = (try? Data(contentsOf: bodyFile)).map { [UInt8]($0) } ?? []
        return CollateralResponse(status: code, headers: Self.headers(headerText), body: body)
    }

    /// The header fields of the last response block in a curl `--dump-header` file (`Name: value` lines after the
    /// status line).
    public static func headers(_ text: String) -> [String: String] {
        let blocks = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n")
        guard let last = blocks.last(where: { $0.hasPrefix("HTTP/") }) else { return [:] }
        var fields: [String: String] = [:]
        for line in last.split(separator: "\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            fields[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }
}
