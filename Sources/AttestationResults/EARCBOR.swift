import AttestationPolicy

/// The integer keys of EAR claims in CBOR (RFC 8392, RFC 9711, draft-ietf-rats-ear-03; SERVICES.md §4.4).
public enum EARCBORKey {
    public static let issuer: Int64 = 1
    public static let expiresAt: Int64 = 4
    public static let issuedAt: Int64 = 6
    public static let nonce: Int64 = 10
    public static let profile: Int64 = 265
    public static let submods: Int64 = 266
    public static let status: Int64 = 1000
    public static let trustVector: Int64 = 1001
    public static let policyIDs: Int64 = 1003
    public static let verifierID: Int64 = 1004
    /// `developer` inside the verifier id.
    public static let developer: Int64 = 0
    /// `build` inside the verifier id.
    public static let build: Int64 = 1
    /// cmk's own claim: private use (below -65536, as the EAR draft asks of unregistered claims), clear of
    /// Veraison's -70000...-70002 and Trustee's -18.
    public static let cmkAppraisal: Int64 = -71000
}

extension CBORValue {
    /// A map with its entries in the deterministic order of RFC 8949 §4.2.1 (bytewise order of the encoded keys).
    static func deterministicMap(_ entries: [CBORMapEntry]) throws(AttestationResultsError) -> CBORValue {
        var keyed: [(key: [UInt8], entry: CBORMapEntry)] = []
        for entry in entries { keyed.append((try entry.key.encoded(), entry)) }
        keyed.sort { $0.key.lexicographicallyPrecedes($1.key) }
        return .map(keyed.map(\.entry))
    }

    /// The entries of a map whose keys are all distinct; nil when this is not a map.
    func uniqueMap(context: String) throws(AttestationResultsError) -> [CBORMapEntry] {
        guard let entries = mapValue else { throw AttestationResultsError(.invalidClaims, "\(context) is not a map") }
        guard Set(entries.map(\.key)).count == entries.count else {
            throw AttestationResultsError(.invalidClaims, "\(context) repeats a key")
        }
        return entries
    }
}

extension JSONValue {
    /// The same structure in CBOR, text keys kept (cmk's claim is carried this way in both forms).
    func cborValue() throws(AttestationResultsError) -> CBORValue {
        switch self {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .int(let n): return .int(n)
        case .number: throw AttestationResultsError(.unsupported, "cmk writes no floating-point claims")
        case .string(let s): return .text(s)
        case .array(let elements):
            var values: [CBORValue] = []
            for element in elements { values.append(try element.cborValue()) }
            return .array(values)
        case .object(let members):
            var entries: [CBORMapEntry] = []
            for (key, value) in members { entries.append(CBORMapEntry(.text(key), try value.cborValue())) }
            return try .deterministicMap(entries)
        }
    }

    /// Reads CBOR made of text-keyed maps, arrays, integers, strings, booleans and null.
    init(cbor: CBORValue, context: String) throws(AttestationResultsError) {
        switch cbor {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .unsigned, .negative:
            guard let n = cbor.intValue else {
                throw AttestationResultsError(.invalidClaims, "an integer in \(context) is too large")
            }
            self = .int(n)
        case .text(let s): self = .string(s)
        case .array(let elements):
            var values: [JSONValue] = []
            for element in elements { values.append(try JSONValue(cbor: element, context: context)) }
            self = .array(values)
        case .map:
            var members: [String: JSONValue] = [:]
            for entry in try cbor.uniqueMap(context: context) {
                guard let key = entry.key.textValue else {
                    throw AttestationResultsError(.invalidClaims, "\(context) has a map key that is not text")
                }
                members[key] = try JSONValue(cbor: entry.value, context: context)
            }
            self = .object(members)
        case .bytes, .tagged:
            throw AttestationResultsError(.invalidClaims, "\(context) holds a byte string or tag where none belongs")
        }
    }
}

extension EARClaims {
    /// The claims as a CBOR map with integer keys: the payload of the CWT form.
    public func cborEncoded() throws(AttestationResultsError) -> [UInt8] { try cborValue().encoded() }

    func cborValue() throws(AttestationResultsError) -> CBORValue {
        typealias Key = EARCBORKey
        var top: [CBORMapEntry] = [
            CBORMapEntry(.int(Key.profile), .text(profile.rawValue)),
            CBORMapEntry(.int(Key.issuedAt), .int(issuedAt)),
            CBORMapEntry(
                .int(Key.verifierID),
                try .deterministicMap([
                    CBORMapEntry(.int(Key.developer), .text(verifierID.developer)),
                    CBORMapEntry(.int(Key.build), .text(verifierID.build)),
                ])),
        ]
        if let expiresAt { top.append(CBORMapEntry(.int(Key.expiresAt), .int(expiresAt))) }
        if let issuer { top.append(CBORMapEntry(.int(Key.issuer), .text(issuer))) }
        if let nonce { top.append(CBORMapEntry(.int(Key.nonce), .bytes(nonce))) }
        if let status { top.append(CBORMapEntry(.int(Key.status), .int(Int64(status.cborValue)))) }
        var submodEntries: [CBORMapEntry] = []
        for (label, appraisal) in submods {
            var entries = [CBORMapEntry(.int(Key.status), .int(Int64(appraisal.status.cborValue)))]
            if !appraisal.trustVector.claims.isEmpty {
                let claims = appraisal.trustVector.claims.map {
                    CBORMapEntry(.int(Int64($0.key.cborKey)), .int(Int64($0.value)))
                }
                entries.append(CBORMapEntry(.int(Key.trustVector), try .deterministicMap(claims)))
            }
            if let first = appraisal.policyIDs.first {
                let ids: CBORValue =
                    profile.dialect == .draft03 ? .array(appraisal.policyIDs.map(CBORValue.text)) : .text(first)
                entries.append(CBORMapEntry(.int(Key.policyIDs), ids))
            }
            if let cmk = appraisal.cmk {
                entries.append(CBORMapEntry(.int(Key.cmkAppraisal), try cmk.jsonValue.cborValue()))
            }
            submodEntries.append(CBORMapEntry(.text(label), try .deterministicMap(entries)))
        }
        top.append(CBORMapEntry(.int(Key.submods), try .deterministicMap(submodEntries)))
        return try .deterministicMap(top)
    }

    /// Reads EAR claims from the CBOR form (integer keys) in either dialect, chosen by `eat_profile` (265).
    public init(cbor bytes: [UInt8]) throws(AttestationResultsError) {
        try self.init(cborValue: try CBORValue(encoded: bytes))
    }

    init(cborValue: CBORValue) throws(AttestationResultsError) {
        typealias Key = EARCBORKey
        let top = try cborValue.uniqueMap(context: "the EAR")
        func member(_ entries: [CBORMapEntry], _ key: Int64) -> CBORValue? {
            entries.first(where: { $0.key == .int(key) })?.value
        }
        func invalid(_ reason: String) -> AttestationResultsError { AttestationResultsError(.invalidClaims, reason) }

        guard let profileName = member(top, Key.profile)?.textValue else {
            throw invalid("eat_profile (265) is missing or not text")
        }
        guard let profile = EARProfile(rawValue: profileName) else {
            throw AttestationResultsError(
                .unknownProfile, "eat_profile '\(profileName)' is not an EAR profile cmk reads")
        }
        guard let issuedAt = member(top, Key.issuedAt)?.intValue else {
            throw invalid("iat (6) is missing or not an integer")
        }
        var expiresAt: Int64? = nil
        if let value = member(top, Key.expiresAt) {
            guard let n = value.intValue else { throw invalid("exp (4) is not an integer") }
            expiresAt = n
        }
        var issuer: String? = nil
        if let value = member(top, Key.issuer) {
            guard let text = value.textValue else { throw invalid("iss (1) is not text") }
            issuer = text
        }
        var nonce: [UInt8]? = nil
        if let value = member(top, Key.nonce) {
            guard let bytes = value.bytesValue else { throw invalid("eat_nonce (10) is not a byte string") }
            nonce = bytes
        }
        guard let verifierValue = member(top, Key.verifierID) else {
            throw invalid("the verifier id (1004) is missing")
        }
        let verifier = try verifierValue.uniqueMap(context: "the verifier id (1004)")
        guard let developer = member(verifier, Key.developer)?.textValue,
            let build = member(verifier, Key.build)?.textValue
        else { throw invalid("the verifier id (1004) needs text 'developer' (0) and 'build' (1)") }
        var status: TrustVector.Tier? = nil
        if profile.dialect == .draft03, let value = member(top, Key.status) {
            status = try Self.tier(cbor: value, context: "the EAR")
        }
        guard let submodValue = member(top, Key.submods) else { throw invalid("submods (266) is missing") }
        var submods: [String: EARAppraisal] = [:]
        for entry in try submodValue.uniqueMap(context: "submods (266)") {
            guard let label = entry.key.textValue else { throw invalid("a submodule label is not text") }
            let context = "submodule '\(label)'"
            let appraisal = try entry.value.uniqueMap(context: context)
            guard let statusValue = member(appraisal, Key.status) else {
                throw invalid("\(context) has no status (1000)")
            }
            let appraisalStatus = try Self.tier(cbor: statusValue, context: context)
            var vector = TrustVector()
            if let vectorValue = member(appraisal, Key.trustVector) {
                let entries = try vectorValue.uniqueMap(context: "the trust vector of \(context)").map { claim in
                    let key = claim.key.intValue.flatMap { key in TrustClaim.allCases.first { Int64($0.cborKey) == key }
                    }
                    return (key: key, name: "\(claim.key)", value: claim.value.intValue)
                }
                vector = try TrustVector.parse(entries, context: context)
            }
            var policyIDs: [String] = []
            if let value = member(appraisal, Key.policyIDs) {
                switch (profile.dialect, value) {
                case (.deployed, .text(let id)): policyIDs = [id]
                case (.draft03, .array(let ids)) where !ids.isEmpty && ids.allSatisfy({ $0.textValue != nil }):
                    policyIDs = ids.compactMap(\.textValue)
                default:
                    throw invalid(
                        "the policy ids (1003) of \(context) must be "
                            + (profile.dialect == .draft03 ? "a non-empty array of text" : "text"))
                }
            }
            var cmk: EARCMKAppraisal? = nil
            if let value = member(appraisal, Key.cmkAppraisal) {
                let claimContext = "cmk's claim (\(Key.cmkAppraisal)) in \(context)"
                cmk = try EARCMKAppraisal(
                    jsonValue: try JSONValue(cbor: value, context: claimContext), context: claimContext)
            }
            submods[label] = try EARAppraisal(
                status: appraisalStatus, trustVector: vector, policyIDs: policyIDs, cmk: cmk)
        }
        try self.init(
            profile: profile, issuedAt: issuedAt, expiresAt: expiresAt, issuer: issuer,
            verifierID: EARVerifierID(developer: developer, build: build), nonce: nonce, submods: submods,
            status: status)
    }

    static func tier(cbor: CBORValue, context: String) throws(AttestationResultsError) -> TrustVector.Tier {
        guard let value = cbor.intValue,
            let tier = TrustVector.Tier.allCases.first(where: { Int64($0.cborValue) == value })
        else { throw AttestationResultsError(.invalidClaims, "the status \(cbor) in \(context) is not 0, 2, 32 or 96") }
        return tier
    }
}
