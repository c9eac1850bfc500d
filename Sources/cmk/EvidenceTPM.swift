import ArgumentParser
import Attestation
import BinaryFormat
import EventLog
import Foundation

extension CMK.Evidence.Verify {
    /// The flags that belong to `--tpm` and only to it.
    func validateTPM() throws {
        let tpmOnly = [tpmSignature, eventlog, ak, nonce, reportData, boundKey]
        guard tpmQuote != nil else {
            if tpmOnly.contains(where: { $0 != nil }) {
                throw ValidationError("--sig, --eventlog, --ak, --nonce, --report-data and --bound-key go with --tpm")
            }
            return
        }
        if tpmSignature == nil || eventlog == nil || ak == nil {
            throw ValidationError("--tpm needs --sig SIG, --eventlog LOG and --ak AKPUB")
        }
        if certTable != nil || vcek != nil || chain != nil || product != nil || collateral != nil || simulated != nil || at != nil {
            throw ValidationError("--cert-table, --vcek, --chain, --product, --collateral, --simulated and --at are not for TPM quotes")
        }
        if let nonce, Hex.decode(nonce) == nil { throw ValidationError("--nonce '\(nonce)' is not hex") }
        if let boundKey {
            guard reportData != nil else { throw ValidationError("--bound-key goes with --report-data") }
            guard let bytes = Hex.decode(boundKey), bytes.count >= 32 else {
                throw ValidationError("--bound-key must be hex of at least 32 bytes (it ends with SHA-256 of the AK)")
            }
        }
        if let reportData {
            guard let bytes = Hex.decode(reportData), bytes.count >= 32 else {
                throw ValidationError("--report-data must be hex of at least 32 bytes (REPORT_DATA is 64)")
            }
        }
    }

    func verifyTPM(_ quotePath: String) throws {
        let evidence: TPMEvidence
        do {
            evidence = TPMEvidence(
                quote: try SNPEvidenceFiles.read(quotePath, what: "quote"),
                signature: try SNPEvidenceFiles.read(tpmSignature ?? "", what: "quote signature"),
                attestationKey: try SNPEvidenceFiles.read(ak ?? "", what: "attestation key"),
                eventLog: try SNPEvidenceFiles.read(eventlog ?? "", what: "event log"))
        } catch {
            throw EvidenceFailure.report(error, json: json)
        }
        let options = TPMVerificationOptions(
            nonce: nonce.flatMap(Hex.decode), teeReportData: reportData.flatMap(Hex.decode),
            teeBoundKey: boundKey.flatMap(Hex.decode))
        let result: TPMVerificationResult
        do {
            result = try TPMVerifier().verify(evidence, options: options)
        } catch {
            throw EvidenceFailure.report(error, json: json)
        }
        if json {
            print(try JSONOutput.encode(TPMVerifyOutput(valid: true, result: result)))
            return
        }
        let c = result.claims
        print("VALID: TPM 2.0 quote by AK \(c.attestationKeyName), \(c.bank) PCRs \(c.pcrs.map(String.init).joined(separator: ",")); the event log replays to the quoted digest")
        for pcr in c.pcrs { print("  PCR \(pcr < 10 ? " " : "")\(pcr)       \(c.pcrValues[String(pcr)]?.description ?? "")") }
        print("  nonce        \(c.nonce)")
        print("  AK SHA-256   \(c.attestationKeyDigest)")
        if let kernel = c.boot.kernelAuthenticodeSHA256 { print("  kernel       \(kernel) (Authenticode, last PCR 4 application)") }
        if let initrd = c.boot.initrdSHA256 { print("  initrd       \(initrd)") }
        if let options = c.boot.commandLineSHA256 { print("  load options \(options) (SHA-256 of the command line as measured)") }
        if let secureBoot = c.boot.secureBoot { print("  secure boot  \(secureBoot ? "enabled" : "disabled")") }
        for (name, what) in result.checks.sorted(by: { $0.key < $1.key }) { print("  ok \(name): \(what)") }
        for warning in result.warnings { print("  note: \(warning)") }
    }
}

struct TPMVerifyOutput: Encodable {
    let valid: Bool
    let result: TPMVerificationResult
}
