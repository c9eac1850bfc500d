/// One named check of TDX quote verification, in Intel's order (QuoteVerificationLibrary; TDX.md §6). ``name`` is
/// the name results, policies and the test vectors use.
public enum TDXCheck: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case headerFormat
    case qeVendorIsIntel
    case pckChainSignatures
    case pckChainAnchoredToTrustedRoot
    case pckChainTimeValid
    case qeReportSignature
    case qeReportDataBinding
    case quoteSignature
    case rootCACRLSignature
    case rootCACRLTimeValid
    case intermediateNotRevoked
    case pckCRLSignature
    case pckCRLTimeValid
    case pckNotRevoked
    case tcbInfoIsTDXv3
    case tcbInfoSigningChain
    case tcbInfoSignature
    case tcbInfoSigningCertTimeValid
    case tcbInfoSigningCertNotRevoked
    case tcbInfoTimeValid
    case tcbInfoFMSPCPCEIDMatch
    case qeIdentityIsTDQEv2
    case qeIdentitySigningChain
    case qeIdentitySignature
    case qeIdentitySigningCertTimeValid
    case qeIdentitySigningCertNotRevoked
    case qeIdentityTimeValid
    case qeIdentityMatch
    case tdxModuleIdentity
    case signatureChainValid

    /// The check's name in results: `quote_signature`, `pck_crl_time_valid`, …
    public var name: String {
        switch self {
        case .headerFormat: "header_format"
        case .qeVendorIsIntel: "qe_vendor_is_intel"
        case .pckChainSignatures: "pck_chain_signatures"
        case .pckChainAnchoredToTrustedRoot: "pck_chain_anchored_to_trusted_root"
        case .pckChainTimeValid: "pck_chain_time_valid"
        case .qeReportSignature: "qe_report_signature"
        case .qeReportDataBinding: "qe_report_data_binding"
        case .quoteSignature: "quote_signature"
        case .rootCACRLSignature: "root_ca_crl_signature"
        case .rootCACRLTimeValid: "root_ca_crl_time_valid"
        case .intermediateNotRevoked: "intermediate_not_revoked"
        case .pckCRLSignature: "pck_crl_signature"
        case .pckCRLTimeValid: "pck_crl_time_valid"
        case .pckNotRevoked: "pck_not_revoked"
        case .tcbInfoIsTDXv3: "tcb_info_is_tdx_v3"
        case .tcbInfoSigningChain: "tcb_info_signing_chain"
        case .tcbInfoSignature: "tcb_info_signature"
        case .tcbInfoSigningCertTimeValid: "tcb_info_signing_cert_time_valid"
        case .tcbInfoSigningCertNotRevoked: "tcb_info_signing_cert_not_revoked"
        case .tcbInfoTimeValid: "tcb_info_time_valid"
        case .tcbInfoFMSPCPCEIDMatch: "tcb_info_fmspc_pceid_match"
        case .qeIdentityIsTDQEv2: "qe_identity_is_td_qe_v2"
        case .qeIdentitySigningChain: "qe_identity_signing_chain"
        case .qeIdentitySignature: "qe_identity_signature"
        case .qeIdentitySigningCertTimeValid: "qe_identity_signing_cert_time_valid"
        case .qeIdentitySigningCertNotRevoked: "qe_identity_signing_cert_not_revoked"
        case .qeIdentityTimeValid: "qe_identity_time_valid"
        case .qeIdentityMatch: "qe_identity_match"
        case .tdxModuleIdentity: "tdx_module_identity"
        case .signatureChainValid: "signature_chain_valid"
        }
    }

    /// The check with `name`; nil for a name cmk does not define.
    public init?(name: String) {
        guard let check = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = check
    }

    public var description: String { name }

    /// The check's bit in a ``TDXCheckSet``.
    var bit: UInt64 { 1 << UInt64(rawValue) }
}

/// The outcomes of the checks of one verification: which ran, which failed, and why each failure failed — two bit
/// sets and a list that stays empty while everything passes, so recording a passed check costs two bit operations.
struct TDXCheckSet: Sendable, Hashable {
    /// One bit per ``TDXCheck`` that was evaluated.
    private(set) var recorded: UInt64 = 0
    /// One bit per ``TDXCheck`` that failed at least once.
    private(set) var failed: UInt64 = 0
    /// The first reason each failed check gave, in the order the failures happened.
    private(set) var reasons: [Failure] = []

    /// A failed check and its reason.
    struct Failure: Sendable, Hashable {
        let check: TDXCheck
        let reason: String
    }

    /// Records one evaluation of `check`; a check fails when any of its evaluations fails. `reason` is built only
    /// for the first failure of a check.
    mutating func record(_ check: TDXCheck, _ passed: Bool, _ reason: @autoclosure () -> String) {
        recorded |= check.bit
        guard !passed else { return }
        if failed & check.bit == 0 { reasons.append(Failure(check: check, reason: reason())) }
        failed |= check.bit
    }

    /// Records a check that passed.
    mutating func pass(_ check: TDXCheck) {
        recorded |= check.bit
    }

    /// Records every outcome of `other` after those already here.
    mutating func merge(_ other: TDXCheckSet) {
        recorded |= other.recorded
        for failure in other.reasons where failed & failure.check.bit == 0 { reasons.append(failure) }
        failed |= other.failed
    }

    /// Whether `check` was evaluated.
    func contains(_ check: TDXCheck) -> Bool { recorded & check.bit != 0 }

    /// Whether `check` was evaluated and every evaluation passed; nil when it was not evaluated.
    func outcome(_ check: TDXCheck) -> Bool? { contains(check) ? failed & check.bit == 0 : nil }

    /// Whether every one of `checks` was evaluated and passed.
    func allPassed(_ checks: [TDXCheck]) -> Bool {
        let mask = checks.reduce(0) { $0 | $1.bit }
        return recorded & mask == mask && failed & mask == 0
    }

    /// Whether no evaluated check failed.
    var noneFailed: Bool { failed == 0 }

    /// The first failure reason of `check`, nil when it did not fail.
    func reason(_ check: TDXCheck) -> String? { reasons.first { $0.check == check }?.reason }

    /// Check name → passed, for every evaluated check.
    var byName: [String: Bool] {
        var names: [String: Bool] = [:]
        names.reserveCapacity(recorded.nonzeroBitCount)
        for check in TDXCheck.allCases where contains(check) { names[check.name] = failed & check.bit == 0 }
        return names
    }

    /// Check name → the first failure reason, for every failed check.
    var failuresByName: [String: String] {
        Dictionary(reasons.map { ($0.check.name, $0.reason) }, uniquingKeysWith: { first, _ in first })
    }

    /// The set whose outcomes are `checks` and whose reasons are `failures` (as a result's JSON carries them).
    init(checks: [String: Bool], failures: [String: String]) throws(TDXCheckSetError) {
        for (name, passed) in checks {
            guard let check = TDXCheck(name: name) else { throw TDXCheckSetError(name: name) }
            record(check, passed, failures[name] ?? "failed")
        }
        for name in failures.keys where TDXCheck(name: name) == nil { throw TDXCheckSetError(name: name) }
        reasons.sort { $0.check.rawValue < $1.check.rawValue }
    }

    init() {}
}

/// A result named a check cmk does not define.
struct TDXCheckSetError: Error {
    let name: String
}
