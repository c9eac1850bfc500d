public import Attestation
public import BinaryFormat
import EventLog
import Foundation

extension Policy {
    /// Rules for the vTPM evidence that accompanies the TEE evidence (a quote with its event log, whose AK the TEE
    /// report vouches for). Event rules (`kernel`, `initrd`, `load-options`, `secure-boot`) name what booted; PCR
    /// rules pin raw SHA-256 PCR values. docs/policy-language.md, "tpm".
    public struct TPMRules: Sendable, Hashable, Codable {
        /// PCR index → allowed SHA-256 values.
        public var pcrs: [Int: [HexBytes]]
        /// Allowed Authenticode SHA-256 digests of the kernel (the last EFI application in PCR 4).
        public var kernel: [HexBytes]
        /// Allowed SHA-256 digests of the initrd (the Linux EFI stub's PCR 9 event).
        public var initrd: [HexBytes]
        /// Allowed SHA-256 digests of the load options (the command line as measured into PCR 9).
        public var loadOptions: [HexBytes]
        /// The required Secure Boot state; nil: not checked.
        public var secureBoot: Bool?
        /// Whether REPORT_DATA must carry SHA-256 of the AK (default true).
        public var akBoundToTEE: Bool
        /// Whether credential activation must bind the AK to the EK (default true).
        public var akBoundToEK: Bool
        /// Whether the EK must come with a certificate that chains to the verifier's pinned vTPM root and certifies
        /// that EK (`ek-certificate`; nil, the default: not required, and left out of the policy's digest).
        public var ekCertificate: Bool?

        public init(
            pcrs: [Int: [HexBytes]] = [:], kernel: [HexBytes] = [], initrd: [HexBytes] = [], loadOptions: [HexBytes] = [],
            secureBoot: Bool? = nil, akBoundToTEE: Bool = true, akBoundToEK: Bool = true, ekCertificate: Bool? = nil
        ) {
            self.pcrs = pcrs
            self.kernel = kernel
            self.initrd = initrd
            self.loadOptions = loadOptions
            self.secureBoot = secureBoot
            self.akBoundToTEE = akBoundToTEE
            self.akBoundToEK = akBoundToEK
            self.ekCertificate = ekCertificate
        }
    }
}

/// The `tpm` rules of a policy, over ``AppraisalInput/tpm``.
struct TPMPolicyRules {
    let rules: Policy.TPMRules

    @RuleBuilder var all: [any AppraisalRule] {
        verified
        binding("tpm.ak-bound-to-tee", required: rules.akBoundToTEE, what: "SHA-256 of the AK in REPORT_DATA") {
            $0.claims.boundToTEEReport
        }
        binding("tpm.ak-bound-to-ek", required: rules.akBoundToEK, what: "credential activation under the EK") {
            $0.claims.boundToEndorsementKey
        }
        binding(
            "tpm.ek-certificate", required: rules.ekCertificate == true,
            what: "an EK certificate chaining to the pinned vTPM root",
            hint: "send the EK certificate with the credential activation; the verifier must pin the vTPM root that issues it"
        ) { $0.endorsementCertificateVerified }
        for (index, values) in rules.pcrs.sorted(by: { $0.key < $1.key }) {
            event("tpm.pcr.\(index)", values, "replay the event log with `cmk measure replay` to see which event changed") {
                $0.claims.bank == "sha256" ? $0.claims.pcrValues[String(index)]?.bytes : nil
            }
        }
        if !rules.kernel.isEmpty {
            event("tpm.kernel", rules.kernel, "the child booted another kernel (Authenticode SHA-256 of the PE image)") {
                $0.claims.boot.kernelAuthenticodeSHA256?.bytes
            }
        }
        if !rules.initrd.isEmpty {
            event("tpm.initrd", rules.initrd, "the child booted another initrd") { $0.claims.boot.initrdSHA256?.bytes }
        }
        if !rules.loadOptions.isEmpty {
            event("tpm.load-options", rules.loadOptions, "the child booted with another command line") {
                $0.claims.boot.commandLineSHA256?.bytes
            }
        }
        if let secureBoot = rules.secureBoot { self.secureBoot(secureBoot) }
    }

    var verified: Rule {
        Rule("tpm.verified", claim: .executables) { input, rule in
            switch input.tpm {
            case nil:
                return rule.fail(
                    "a vTPM quote with its event log", "none presented",
                    hint: "the policy has a tpm section: the instance must send its vTPM quote and event log",
                    value: AR4SI.unexpectedEvidence)
            case .failure(let error)?:
                return rule.fail(
                    "a quote that verifies and replays", "\(error.code): \(error.reason)",
                    hint: CommonRules.hint(for: error), value: AR4SI.cryptoFailed)
            case .success(let result)?:
                return rule.pass(
                    "a quote that verifies and replays",
                    "AK \(result.claims.attestationKeyName.description.prefix(20))…, \(result.claims.bank) PCRs \(result.claims.pcrs)")
            }
        }
    }

    func binding(
        _ id: String, required: Bool, what: String,
        hint: String = "give the verifier the TEE report and the credential activation with the quote",
        _ value: @escaping @Sendable (TPMVerificationResult) -> Bool?
    ) -> Rule {
        Rule(id, claim: .hardware) { input, rule in
            guard required else { return rule.unchecked(what, because: "the policy does not require it") }
            guard case .success(let result)? = input.tpm else { return rule.unchecked(what, because: "the quote did not verify") }
            return value(result) == true
                ? rule.pass(what, "checked")
                : rule.fail(
                    what, "not checked by the verifier", hint: hint, value: AR4SI.unrecognized)
        }
    }

    func event(
        _ id: String, _ acceptable: [HexBytes], _ hint: String,
        _ value: @escaping @Sendable (TPMVerificationResult) -> [UInt8]?
    ) -> Rule {
        Rule(id, claim: .executables) { input, rule in
            let expected = acceptable.count == 1 ? shown(acceptable[0].bytes) : "one of \(acceptable.count) values"
            guard case .success(let result)? = input.tpm else { return rule.unchecked(expected, because: "the quote did not verify") }
            guard let actual = value(result) else {
                return rule.fail(expected, "not in the quoted part of the event log", hint: hint, value: AR4SI.unrecognizedRuntime)
            }
            return matchesAny(acceptable, actual)
                ? rule.pass(expected, shown(actual))
                : rule.fail(expected, shown(actual), hint: hint, value: AR4SI.unrecognizedRuntime)
        }
    }

    func secureBoot(_ required: Bool) -> Rule {
        Rule("tpm.secure-boot", claim: .configuration) { input, rule in
            let expected = required ? "enabled" : "disabled"
            guard case .success(let result)? = input.tpm else { return rule.unchecked(expected, because: "the quote did not verify") }
            let actual = result.claims.boot.secureBoot.map { $0 ? "enabled" : "disabled" } ?? "not measured"
            return actual == expected
                ? rule.pass(expected, actual)
                : rule.fail(expected, actual, hint: "the firmware's SecureBoot variable (PCR 7) says otherwise", value: AR4SI.unrecognizedRuntime)
        }
    }
}

extension PolicyLoader {
    /// Reads the `tpm` section.
    func readTPM(_ node: PolicyNode) throws(PolicyError) -> Policy.TPMRules {
        let map = try node.mapping(allowed: [
            "pcrs", "kernel", "initrd", "load-options", "secure-boot", "ak-bound-to-tee", "ak-bound-to-ek", "ek-certificate",
        ])
        var rules = Policy.TPMRules()
        if let pcrs = map["pcrs"] {
            for (key, value) in try pcrs.anyMapping() {
                guard let index = Int(key), (0...15).contains(index) else {
                    throw value.error(.unknownKey, "PCR indexes are 0 to 15 (what a boot event log accounts for)")
                }
                rules.pcrs[index] = try readDigests(value, length: 32)
            }
        }
        if let kernel = map["kernel"] { rules.kernel = try readDigests(kernel, length: 32) }
        if let initrd = map["initrd"] { rules.initrd = try readDigests(initrd, length: 32) }
        if let options = map["load-options"] { rules.loadOptions = try readDigests(options, length: 32) }
        if let secureBoot = map["secure-boot"] { rules.secureBoot = try secureBoot.bool() }
        if let tee = map["ak-bound-to-tee"] { rules.akBoundToTEE = try tee.bool() }
        if let ek = map["ak-bound-to-ek"] { rules.akBoundToEK = try ek.bool() }
        if let certificate = map["ek-certificate"] { rules.ekCertificate = try certificate.bool() }
        return rules
    }
}
