public import AttestationPolicy

/// The JSON claim names of one EAR dialect (SERVICES.md §4.1; docs/attestation-results.md).
public struct EARClaimNames: Sendable, Hashable {
    public let verifierID: String
    public let status: String
    public let trustVector: String
    /// `ear.appraisal-policy-id` (a string) or `ear_appraisal_policy_ids` (an array).
    public let policyIDs: String
    /// cmk's own claim in each appraisal.
    public let cmkAppraisal: String

    /// The names of the deployed dialect (veraison/ear, rust-ear, Trustee).
    public static let deployed = EARClaimNames(
        verifierID: "ear.verifier-id", status: "ear.status", trustVector: "ear.trustworthiness-vector",
        policyIDs: "ear.appraisal-policy-id", cmkAppraisal: "ear.cmk.appraisal")
    /// The names of draft-ietf-rats-ear-03.
    public static let draft03 = EARClaimNames(
        verifierID: "ear_verifier_id", status: "ear_status", trustVector: "ear_trustworthiness_vector",
        policyIDs: "ear_appraisal_policy_ids", cmkAppraisal: "ear_cmk_appraisal")

    /// The names a dialect uses.
    public static func of(_ dialect: EARDialect) -> EARClaimNames { dialect == .draft03 ? .draft03 : .deployed }
}

/// Reads typed members out of a JSON or CBOR-derived object, naming the claim in every error.
struct ClaimReader {
    let members: [String: JSONValue]
    let context: String

    init(_ value: JSONValue?, context: String) throws(AttestationResultsError) {
        guard let members = value?.objectValue else {
            throw AttestationResultsError(.invalidClaims, "\(context) is missing or not an object")
        }
        self.members = members
        self.context = context
    }

    private func wrongType(_ name: String, _ kind: String) -> AttestationResultsError {
        AttestationResultsError(.invalidClaims, "'\(name)' in \(context) is missing or not \(kind)")
    }

    func string(_ name: String) throws(AttestationResultsError) -> String {
        guard let value = members[name]?.stringValue else { throw wrongType(name, "a string") }
        return value
    }

    func optionalString(_ name: String) throws(AttestationResultsError) -> String? {
        guard let value = members[name] else { return nil }
        guard let string = value.stringValue else { throw wrongType(name, "a string") }
        return string
    }

    func int(_ name: String) throws(AttestationResultsError) -> Int64 {
        guard let value = members[name]?.intValue else { throw wrongType(name, "an integer") }
        return value
    }

    func optionalInt(_ name: String) throws(AttestationResultsError) -> Int64? {
        guard let value = members[name] else { return nil }
        guard let n = value.intValue else { throw wrongType(name, "an integer") }
        return n
    }

    func bool(_ name: String) throws(AttestationResultsError) -> Bool {
        guard let value = members[name]?.boolValue else { throw wrongType(name, "a boolean") }
        return value
    }

    func object(_ name: String) throws(AttestationResultsError) -> ClaimReader {
        try ClaimReader(members[name], context: "'\(name)' in \(context)")
    }
}

extension EARCMKAppraisal {
    /// The claim as JSON; CBOR carries the same map with the same text keys.
    var jsonValue: JSONValue {
        .object([
            "policy-id": .string(policyID),
            "policy-version": .int(Int64(policyVersion)),
            "policy-digest": .string(policyDigest),
            "evidence-type": .string(evidenceType),
            "verdict": .string(verdict.rawValue),
            "simulated": .bool(simulated),
            "evidence-digest": .string(evidenceDigest),
            "collateral-digests": .object(collateralDigests.mapValues(JSONValue.string)),
            "evaluated-at": .int(evaluatedAt),
            "outcomes": .array(
                outcomes.map { outcome in
                    var members: [String: JSONValue] = [
                        "rule": .string(outcome.rule), "status": .string(outcome.status.rawValue),
                        "expected": .string(outcome.expected), "actual": .string(outcome.actual),
                        "trust-claim": .string(outcome.trustClaim.rawValue),
                        "trust-value": .int(Int64(outcome.trustValue)),
                    ]
                    if let hint = outcome.hint { members["hint"] = .string(hint) }
                    return .object(members)
                }),
        ])
    }

    init(jsonValue: JSONValue?, context: String) throws(AttestationResultsError) {
        let claim = try ClaimReader(jsonValue, context: context)
        guard let version = Int(exactly: try claim.int("policy-version")) else {
            throw AttestationResultsError(.invalidClaims, "'policy-version' in \(context) is out of range")
        }
        guard let verdict = Verdict(rawValue: try claim.string("verdict")) else {
            throw AttestationResultsError(.invalidClaims, "'verdict' in \(context) is neither 'admit' nor 'reject'")
        }
        var digests: [String: String] = [:]
        let digestReader = try claim.object("collateral-digests")
        for name in digestReader.members.keys { digests[name] = try digestReader.string(name) }
        guard let outcomeValues = claim.members["outcomes"]?.arrayValue else {
            throw AttestationResultsError(.invalidClaims, "'outcomes' in \(context) is missing or not an array")
        }
        var outcomes: [RuleOutcome] = []
        for (index, value) in outcomeValues.enumerated() {
            let outcome = try ClaimReader(value, context: "outcome \(index) in \(context)")
            guard let status = RuleStatus(rawValue: try outcome.string("status")) else {
                throw AttestationResultsError(.invalidClaims, "outcome \(index) in \(context) has an unknown status")
            }
            guard let trustClaim = TrustClaim(rawValue: try outcome.string("trust-claim")) else {
                throw AttestationResultsError(
                    .invalidClaims, "outcome \(index) in \(context) names an unknown trust claim")
            }
            guard let trustValue = Int8(exactly: try outcome.int("trust-value")) else {
                throw AttestationResultsError(
                    .invalidClaims, "outcome \(index) in \(context) has a trust value out of range")
            }
            outcomes.append(
                RuleOutcome(
                    rule: try outcome.string("rule"), status: status, expected: try outcome.string("expected"),
                    actual: try outcome.string("actual"), hint: try outcome.optionalString("hint"),
                    trustClaim: trustClaim, trustValue: trustValue))
        }
        self.init(
            policyID: try claim.string("policy-id"), policyVersion: version,
            policyDigest: try claim.string("policy-digest"),
            evidenceType: try claim.string("evidence-type"), verdict: verdict, simulated: try claim.bool("simulated"),
            evidenceDigest: try claim.string("evidence-digest"), collateralDigests: digests,
            evaluatedAt: try claim.int("evaluated-at"), outcomes: outcomes)
    }
}

extension TrustVector {
    /// The value of a claim, 0 ("no claim") when it is absent.
    public func value(of claim: TrustClaim) -> Int8 { self[claim] ?? 0 }

    /// Reads a vector from claim name (or key) -> integer, rejecting unknown claims and values outside -128...127.
    static func parse(
        _ entries: [(key: TrustClaim?, name: String, value: Int64?)], context: String
    ) throws(AttestationResultsError) -> TrustVector {
        var vector = TrustVector()
        for entry in entries {
            guard let claim = entry.key else {
                throw AttestationResultsError(.invalidClaims, "\(context) names an unknown trust claim \(entry.name)")
            }
            guard let raw = entry.value, let value = Int8(exactly: raw) else {
                throw AttestationResultsError(
                    .invalidClaims, "the trust claim \(entry.name) in \(context) is not in -128...127")
            }
            vector[claim] = value
        }
        return vector
    }
}

extension EARClaims {
    /// The claims as compact JSON with sorted members: the payload of the JWT form.
    public func jsonEncoded() -> [UInt8] { jsonValue.serialized }

    var jsonValue: JSONValue {
        let names = EARClaimNames.of(profile.dialect)
        var top: [String: JSONValue] = [
            "eat_profile": .string(profile.rawValue),
            "iat": .int(issuedAt),
            names.verifierID: .object(["developer": .string(verifierID.developer), "build": .string(verifierID.build)]),
        ]
        if let expiresAt { top["exp"] = .int(expiresAt) }
        if let issuer { top["iss"] = .string(issuer) }
        if let nonce { top["eat_nonce"] = .string(Base64URL.encode(nonce)) }
        if let status { top[names.status] = .string(status.rawValue) }
        var submodValues: [String: JSONValue] = [:]
        for (label, appraisal) in submods {
            var members: [String: JSONValue] = [names.status: .string(appraisal.status.rawValue)]
            if !appraisal.trustVector.claims.isEmpty {
                members[names.trustVector] = .object(
                    Dictionary(
                        uniqueKeysWithValues: appraisal.trustVector.claims.map {
                            ($0.key.rawValue, .int(Int64($0.value)))
                        }))
            }
            if let first = appraisal.policyIDs.first {
                members[names.policyIDs] =
                    profile.dialect == .draft03
                    ? .array(appraisal.policyIDs.map(JSONValue.string)) : .string(first)
            }
            if let cmk = appraisal.cmk { members[names.cmkAppraisal] = cmk.jsonValue }
            submodValues[label] = .object(members)
        }
        top["submods"] = .object(submodValues)
        return .object(top)
    }

    /// Reads EAR claims from JSON in either dialect, chosen by `eat_profile`.
    ///
    /// Unknown claims are ignored; a missing trust claim counts as 0. Throws `unknownProfile` for a profile cmk does
    /// not read and `statusBetterThanTrustVector` when a status is better than its vector allows.
    public init(json: [UInt8]) throws(AttestationResultsError) {
        try self.init(jsonValue: try JSONValue(parsing: json))
    }

    init(jsonValue: JSONValue) throws(AttestationResultsError) {
        let top = try ClaimReader(jsonValue, context: "the EAR")
        let profileName = try top.string("eat_profile")
        guard let profile = EARProfile(rawValue: profileName) else {
            throw AttestationResultsError(
                .unknownProfile, "eat_profile '\(profileName)' is not an EAR profile cmk reads")
        }
        let names = EARClaimNames.of(profile.dialect)
        let verifier = try top.object(names.verifierID)
        var nonce: [UInt8]? = nil
        if let text = try top.optionalString("eat_nonce") {
            guard let bytes = Base64URL.decode(text) else {
                throw AttestationResultsError(.invalidClaims, "eat_nonce is not base64url without padding")
            }
            nonce = bytes
        }
        var status: TrustVector.Tier? = nil
        if profile.dialect == .draft03, let name = try top.optionalString(names.status) {
            status = try Self.tier(named: name, context: "the EAR")
        }
        let submodReader = try top.object("submods")
        var submods: [String: EARAppraisal] = [:]
        for (label, value) in submodReader.members {
            let context = "submodule '\(label)'"
            let appraisal = try ClaimReader(value, context: context)
            let appraisalStatus = try Self.tier(named: try appraisal.string(names.status), context: context)
            var vector = TrustVector()
            if appraisal.members[names.trustVector] != nil {
                let entries = try appraisal.object(names.trustVector).members.map {
                    (key: TrustClaim(rawValue: $0.key), name: "'\($0.key)'", value: $0.value.intValue)
                }
                vector = try TrustVector.parse(entries, context: context)
            }
            var policyIDs: [String] = []
            if let policyValue = appraisal.members[names.policyIDs] {
                switch (profile.dialect, policyValue) {
                case (.deployed, .string(let id)): policyIDs = [id]
                case (.draft03, .array(let ids)) where !ids.isEmpty && ids.allSatisfy({ $0.stringValue != nil }):
                    policyIDs = ids.compactMap(\.stringValue)
                default:
                    throw AttestationResultsError(
                        .invalidClaims,
                        "'\(names.policyIDs)' in \(context) must be "
                            + (profile.dialect == .draft03 ? "a non-empty array of strings" : "a string"))
                }
            }
            var cmk: EARCMKAppraisal? = nil
            if let cmkValue = appraisal.members[names.cmkAppraisal] {
                cmk = try EARCMKAppraisal(jsonValue: cmkValue, context: "'\(names.cmkAppraisal)' in \(context)")
            }
            submods[label] = try EARAppraisal(
                status: appraisalStatus, trustVector: vector, policyIDs: policyIDs, cmk: cmk)
        }
        try self.init(
            profile: profile, issuedAt: try top.int("iat"), expiresAt: try top.optionalInt("exp"),
            issuer: try top.optionalString("iss"),
            verifierID: EARVerifierID(developer: try verifier.string("developer"), build: try verifier.string("build")),
            nonce: nonce, submods: submods, status: status)
    }

    static func tier(named name: String, context: String) throws(AttestationResultsError) -> TrustVector.Tier {
        guard let tier = TrustVector.Tier(rawValue: name) else {
            throw AttestationResultsError(.invalidClaims, "the status '\(name)' in \(context) is not an EAR status")
        }
        return tier
    }
}
