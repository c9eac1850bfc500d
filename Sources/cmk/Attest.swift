import ArgumentParser
import Attestation
import AttestationPolicy
import AttestationResults
import AuditLog
import BinaryFormat
import Coordinator
import Foundation

/// The installation's state folder, named on the command line or by the environment.
struct StateOptions: ParsableArguments {
    @Option(help: "The installation's state folder (keys, audit log). Default: $CMK_STATE_DIR, else ~/.local/state/cmk.")
    var stateDir: String?

    var state: CMKStateDirectory { CMKStateDirectory.resolve(explicit: stateDir) }

    /// Prepares the folder and opens the audit log with the installation's checkpoint key.
    func openAuditLog() throws -> AuditLog {
        try state.prepare()
        return try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
    }

    func earKey() throws -> EARSigningKey {
        try state.prepare()
        return try EARSigningKey.loadOrCreate(directory: state.keysDirectory)
    }
}

/// Prints an error of the state, audit or token layers and maps it to exit status 2 (cannot proceed).
enum StateFailure {
    static func report(_ error: any Error, json: Bool) -> ExitCode {
        let (code, reason): (String, String)
        switch error {
        case let error as AuditLogError: (code, reason) = (error.code.name, error.reason)
        case let error as AttestationResultsError: (code, reason) = (error.code.name, error.reason)
        default: (code, reason) = ("state", "\(error)")
        }
        if json {
            print((try? JSONOutput.encode(ErrorOutput(code: code, reason: reason))) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("error [\(code)]: \(reason)\n".utf8))
        }
        return ExitCode(2)
    }
}

extension CMK {
    /// `cmk attest`: appraise evidence against a policy, issue a signed EAR and record the decision.
    struct Attest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Appraise evidence against a policy, issue a signed attestation result (EAR) and record it in the audit log.",
            discussion: """
                The evidence is verified and every rule of the policy evaluated; the EAR (JWT, ES384, or CWT with \
                --format cwt) is signed with the installation's key (`cmk ear jwks` exports it) and the decision is \
                appended to the audit log, whatever the verdict.
                Live requests must present what the policy binds: --nonce (and --key) for REPORT_DATA, --manifest for \
                HOST_DATA/MRCONFIGID, --collected-at for the evidence age. With --recorded, bindings not given are \
                reported as not checked (the record says so).
                Exit status: 0 admitted, 1 rejected, 2 usage error or unreadable input.
                """)

        @Option(help: "The policy file.")
        var policy: String

        @Argument(help: "Evidence: a report or quote file, or a folder (see `cmk policy test --help`).")
        var evidence: String

        @Option(help: "Evaluation time, ISO 8601 (default: now).")
        var at: String?

        @Option(help: "TDX collateral folder, or the SEV-SNP collateral cache.")
        var collateral: String?

        @Option(help: "The VCEK or VLEK certificate for a report file.")
        var vcek: String?

        @Option(help: "The issued nonce, hex.")
        var nonce: String?

        @Option(help: "The public key the instance presented (a file).")
        var key: String?

        @Option(help: "The instance manifest (a file).")
        var manifest: String?

        @Option(help: "When the evidence was collected (the nonce's issue time), ISO 8601.")
        var collectedAt: String?

        @Flag(help: "The evidence was recorded earlier: bindings that are not given are not checked.")
        var recorded = false

        @Option(help: "Who asks, for the audit record.")
        var actor = "cli:\(ProcessInfo.processInfo.environment["USER"] ?? "unknown")"

        @Option(help: "The instance name, for the audit record.")
        var instance: String?

        @Option(help: "Token format: jwt or cwt (base64url).")
        var format = "jwt"

        @Option(help: "Token lifetime in seconds.")
        var lifetime = 300

        @OptionGroup var state: StateOptions

        @Flag(help: "Print JSON: the appraisal, the token and the audit record's sequence and hash.")
        var json = false

        func validate() throws {
            for (name, value) in [("--at", at), ("--collected-at", collectedAt)] {
                if let value, ISO8601DateFormatter().date(from: value) == nil { throw ValidationError("\(name) '\(value)' is not an ISO 8601 time") }
            }
            if let nonce, Hex.decode(nonce) == nil { throw ValidationError("--nonce '\(nonce)' is not hex") }
            if !["jwt", "cwt"].contains(format) { throw ValidationError("--format must be jwt or cwt") }
            if !(1...86400).contains(lifetime) { throw ValidationError("--lifetime must be 1 to 86400 seconds") }
        }

        func run() async throws {
            let loaded = try PolicyFiles.load(policy, json: json)
            let time = at.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date()
            let appraisal: Appraisal
            do {
                let context = AppraisalContext(
                    evaluationTime: time, nonce: nonce.flatMap(Hex.decode), boundKey: try key.map { try SNPEvidenceFiles.read($0, what: "key") },
                    manifest: try manifest.map { try SNPEvidenceFiles.read($0, what: "manifest") },
                    collectedAt: collectedAt.flatMap { ISO8601DateFormatter().date(from: $0) }, recordedEvidence: recorded)
                let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory())
                let cache = collateral.map { URL(fileURLWithPath: $0) } ?? CMKPaths.resolve().cacheDirectory.appendingPathComponent("collateral")
                let appraiser = EvidenceAppraiser(trustAnchors: anchors, snpCollateral: SNPCollateralStore(directory: cache))
                let presented = try EvidenceBundle.load(evidence, options: .init(collateral: collateral, vcek: vcek, certTable: nil))
                appraisal = appraiser.appraise(presented, policy: loaded, context: context)
            } catch {
                throw EvidenceFailure.report(error, json: json)
            }
            let token: String
            let record: AuditRecord
            do {
                let key = try state.earKey()
                let claims = try EARClaims(
                    appraisal: appraisal, verifierID: .cmk(version: CMKVersion.current), issuedAt: Date(),
                    expiresAt: Date().addingTimeInterval(TimeInterval(lifetime)), issuer: "cmk", nonce: nonce.flatMap(Hex.decode))
                token = format == "jwt" ? try EARJWT.sign(claims, with: key) : Base64URL.encode(try EARCWT.sign(claims, with: key))
                var entry = AuditEntry.appraisal(appraisal, actor: actor, instance: instance, resultToken: token)
                if recorded { entry.details["evidence"] = "recorded" }
                record = try state.openAuditLog().append(entry)
            } catch {
                throw StateFailure.report(error, json: json)
            }
            if json {
                print(try JSONOutput.encode(AttestOutput(
                    verdict: appraisal.verdict, token: token, format: format, auditSequence: record.sequence,
                    auditHash: record.hash, appraisal: appraisal)))
            } else {
                print(AppraisalText.lines(appraisal, evidence: evidence).joined(separator: "\n"))
                print("EAR (\(format), ES384): \(token)")
                print("audit record #\(record.sequence) \(record.hash)")
            }
            if appraisal.verdict == .reject { throw ExitCode(1) }
        }
    }

    struct AttestOutput: Encodable {
        let verdict: Verdict
        let token: String
        let format: String
        let auditSequence: Int64
        let auditHash: String
        let appraisal: Appraisal
    }
}

