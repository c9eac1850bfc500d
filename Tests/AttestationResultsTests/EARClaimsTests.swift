import AttestationPolicy
import AttestationResults
import Foundation
import Testing

/// The error code a throwing expression raised, or nil when it did not throw.
func errorCode<T>(_ body: () throws -> T) -> AttestationResultsError.Code? {
    do {
        _ = try body()
        return nil
    } catch let error as AttestationResultsError {
        return error.code
    } catch {
        return AttestationResultsError.Code("unexpected: \(error)")
    }
}

/// A JSON object from bytes, for checking what was emitted.
func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

@Suite("EAR claims from an appraisal")
struct EARClaimsTests {
    @Test("an admitted appraisal becomes submodule cpu0 with the vector's worst tier as its status")
    func admittedAppraisal() throws {
        let claims = try EARFixtures.claims()
        #expect(claims.profile == .veraison)
        #expect(claims.issuedAt == 1_787_000_000)
        #expect(claims.expiresAt == 1_787_000_300)
        #expect(claims.verifierID == EARVerifierID(developer: "https://cmk.dev/verifier", build: "cmk 0.4.0"))
        let appraisal = try #require(claims.submods["cpu0"])
        #expect(claims.submods.count == 1)
        #expect(appraisal.status == .warning)
        #expect(appraisal.trustVector[.configuration] == 32)
        #expect(appraisal.trustVector[.hardware] == 2)
        #expect(appraisal.trustVector[.instanceIdentity] == nil)  // not checked: no claim
        #expect(appraisal.trustVector.value(of: .instanceIdentity) == 0)
        #expect(appraisal.policyIDs == [EARFixtures.expectedPolicyID])
        let cmk = try #require(appraisal.cmk)
        #expect(cmk.simulated)
        #expect(cmk.verdict == .admit)
        #expect(cmk.policyDigest == EARFixtures.policy.digest)
        #expect(cmk.outcomes == EARFixtures.admittingOutcomes)
        #expect(cmk.collateralDigests.count == 2)
        #expect(claims.status == nil)  // the deployed dialect has no top-level status
    }

    @Test("a rejected appraisal is contraindicated even when its failing rule's value is only a warning")
    func rejectedAppraisalIsContraindicated() throws {
        var outcomes = EARFixtures.admittingOutcomes
        outcomes[0] = RuleOutcome(
            rule: "snp.measurement", status: .fail, expected: "one of 1 approved measurements", actual: "77aa…",
            hint: "rebuild the image or add its measurement", trustClaim: .executables, trustValue: 33)
        let appraisal = try EARAppraisal(appraisal: EARFixtures.appraisal(outcomes: outcomes))
        #expect(appraisal.status == .contraindicated)
        #expect(appraisal.cmk?.verdict == .reject)
        #expect(appraisal.cmk?.outcomes[0].hint == "rebuild the image or add its measurement")
    }

    @Test("an appraisal with nothing checked has status none")
    func nothingCheckedIsNone() throws {
        let appraisal = try EARAppraisal(appraisal: EARFixtures.appraisal(outcomes: [EARFixtures.admittingOutcomes[4]]))
        #expect(appraisal.status == .none)
        #expect(appraisal.trustVector.claims.isEmpty)
    }

    @Test("a status better than the trustworthiness vector allows is refused when built")
    func statusBetterThanVectorRefused() {
        let vector = TrustVector([.hardware: 2, .executables: 33])
        #expect(
            errorCode { try EARAppraisal(status: .affirming, trustVector: vector, policyIDs: []) }
                == .statusBetterThanTrustVector)
        #expect(
            errorCode { try EARAppraisal(status: .none, trustVector: vector, policyIDs: []) }
                == .statusBetterThanTrustVector)
        #expect(errorCode { try EARAppraisal(status: .warning, trustVector: vector, policyIDs: []) } == nil)
        // Worse than the vector is allowed.
        #expect(errorCode { try EARAppraisal(status: .contraindicated, trustVector: vector, policyIDs: []) } == nil)
    }

    @Test("a draft-03 top-level status better than the worst submodule is refused")
    func topLevelStatusRule() throws {
        let warning = try EARAppraisal(
            status: .warning, trustVector: TrustVector([.configuration: 32]), policyIDs: ["p"])
        #expect(
            errorCode {
                try EARClaims(
                    profile: .draft03, issuedAt: 1, verifierID: EARFixtures.verifier, submods: ["cpu0": warning],
                    status: .affirming)
            } == .statusBetterThanTrustVector)
        let claims = try EARClaims(
            profile: .draft03, issuedAt: 1, verifierID: EARFixtures.verifier, submods: ["cpu0": warning])
        #expect(claims.status == .warning)
    }

    @Test("eat_nonce must be 8 to 64 bytes", arguments: [(0, false), (7, false), (8, true), (64, true), (65, false)])
    func nonceLength(length: Int, accepted: Bool) {
        let code = errorCode { try EARFixtures.claims(nonce: [UInt8](repeating: 0x5A, count: length)) }
        #expect(accepted ? code == nil : code == .invalidClaims)
    }

    @Test("an EAR without submodules, or with exp before iat, is refused")
    func structuralRules() throws {
        #expect(
            errorCode { try EARClaims(issuedAt: 1, verifierID: EARFixtures.verifier, submods: [:]) } == .invalidClaims)
        #expect(errorCode { try EARFixtures.claims(lifetime: -1) } == .invalidClaims)
    }

    @Test("the times are checked with leeway")
    func timeChecks() throws {
        let claims = try EARFixtures.claims()
        #expect(errorCode { try claims.checkTimes(at: EARFixtures.now) } == nil)
        #expect(errorCode { try claims.checkTimes(at: EARFixtures.evaluatedAt.addingTimeInterval(-30)) } == nil)
        #expect(
            errorCode { try claims.checkTimes(at: EARFixtures.evaluatedAt.addingTimeInterval(-61)) } == .issuedInFuture)
        #expect(errorCode { try claims.checkTimes(at: EARFixtures.evaluatedAt.addingTimeInterval(330)) } == nil)
        #expect(errorCode { try claims.checkTimes(at: EARFixtures.evaluatedAt.addingTimeInterval(361)) } == .expired)
        #expect(
            errorCode { try claims.checkTimes(at: EARFixtures.evaluatedAt.addingTimeInterval(301), leeway: 0) }
                == .expired)
    }
}

@Suite("EAR claims as JSON")
struct EARJSONTests {
    @Test("claims round-trip through JSON in both dialects", arguments: [EARProfile.veraison, .draft03])
    func roundTrip(profile: EARProfile) throws {
        let claims = try EARFixtures.claims(profile: profile)
        let json = claims.jsonEncoded()
        #expect(try EARClaims(json: json) == claims)
        // The same claims always give the same bytes.
        #expect(try EARClaims(json: json).jsonEncoded() == json)
    }

    @Test("the deployed dialect uses dotted names, one policy id string and no top-level status")
    func deployedNames() throws {
        let object = try jsonObject(EARFixtures.claims(profile: .veraison).jsonEncoded())
        #expect(object["eat_profile"] as? String == "tag:github.com,2023:veraison/ear")
        #expect(object["iat"] as? Int == 1_787_000_000)
        #expect(object["ear.status"] == nil)
        #expect(object["eat_nonce"] as? String == base64url(Array(0..<16)))
        let verifier = try #require(object["ear.verifier-id"] as? [String: String])
        #expect(verifier == ["developer": "https://cmk.dev/verifier", "build": "cmk 0.4.0"])
        let submods = try #require(object["submods"] as? [String: Any])
        let cpu0 = try #require(submods["cpu0"] as? [String: Any])
        #expect(cpu0["ear.status"] as? String == "warning")
        #expect(cpu0["ear.appraisal-policy-id"] as? String == EARFixtures.expectedPolicyID)
        let vector = try #require(cpu0["ear.trustworthiness-vector"] as? [String: Int])
        #expect(vector == ["executables": 2, "configuration": 32, "hardware": 2, "runtime-opaque": 2])
        let cmk = try #require(cpu0["ear.cmk.appraisal"] as? [String: Any])
        #expect(cmk["simulated"] as? Bool == true)
        #expect(cmk["policy-id"] as? String == "payments-api")
        #expect(cmk["verdict"] as? String == "admit")
        let outcomes = try #require(cmk["outcomes"] as? [[String: Any]])
        #expect(outcomes.count == EARFixtures.admittingOutcomes.count)
        #expect(outcomes[1]["hint"] as? String == "waived until 2026-12-31 (advisory AMD-SB-3019)")
        #expect(outcomes[0]["hint"] == nil)
    }

    @Test("draft-03 uses underscore names, an array of policy ids and a top-level status")
    func draft03Names() throws {
        let object = try jsonObject(EARFixtures.claims(profile: .draft03).jsonEncoded())
        #expect(object["eat_profile"] as? String == "tag:ietf.org,2026:rats/ear#03")
        #expect(object["ear_status"] as? String == "warning")
        #expect(object["ear_verifier_id"] != nil)
        let cpu0 = try #require((object["submods"] as? [String: Any])?["cpu0"] as? [String: Any])
        #expect(cpu0["ear_status"] as? String == "warning")
        #expect(cpu0["ear_appraisal_policy_ids"] as? [String] == [EARFixtures.expectedPolicyID])
        #expect(cpu0["ear_trustworthiness_vector"] != nil)
        #expect((cpu0["ear_cmk_appraisal"] as? [String: Any])?["simulated"] as? Bool == true)
    }

    @Test("simulated is present and false for hardware evidence")
    func simulatedFalseIsPresent() throws {
        let object = try jsonObject(EARFixtures.claims(simulated: false).jsonEncoded())
        let cmk =
            (((object["submods"] as? [String: Any])?["cpu0"] as? [String: Any])?["ear.cmk.appraisal"])
            as? [String: Any]
        #expect(cmk?["simulated"] as? Bool == false)
    }

    @Test("reads a deployed-dialect EAR from another verifier, counting a missing or zero trust claim as none")
    func readsDeployedDialect() throws {
        let json = #"""
            {
              "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
              "iat": 1787000000, "exp": 1787000300, "iss": "CoCo-Attestation-Service",
              "ear.verifier-id": { "developer": "https://confidentialcontainers.org",
                                   "build": "attestation-service 0.1" },
              "submods": {
                "cpu0": {
                  "ear.status": "affirming",
                  "ear.trustworthiness-vector": { "instance-identity": 0, "configuration": 2, "executables": 3,
                    "file-system": 0, "hardware": 2, "runtime-opaque": 2, "storage-opaque": 0, "sourced-data": 0 },
                  "ear.appraisal-policy-id": "policy:SEVSNP/3f1c0e2a",
                  "ear.veraison.annotated-evidence": { "snp": { "reported_tcb_snp": 23 } }
                }
              }
            }
            """#
        let claims = try EARClaims(json: [UInt8](utf8: json))
        #expect(claims.profile == .trustee)
        #expect(claims.issuer == "CoCo-Attestation-Service")
        let cpu0 = try #require(claims.submods["cpu0"])
        #expect(cpu0.status == .affirming)
        #expect(cpu0.policyIDs == ["policy:SEVSNP/3f1c0e2a"])
        #expect(cpu0.trustVector.claims.count == 4)
        #expect(cpu0.trustVector.value(of: .fileSystem) == 0)
        #expect(cpu0.cmk == nil)
    }

    @Test("reads a draft-03 EAR")
    func readsDraft03() throws {
        let json = #"""
            {"eat_profile":"tag:ietf.org,2026:rats/ear#03","iat":1787000000,"ear_status":"warning",
             "ear_verifier_id":{"developer":"https://example.org","build":"v1"},
             "eat_nonce":"q2Vh5xwR8n0J7ptoE3k9Lw",
             "submods":{"PSA_IOT":{"ear_status":"warning",
               "ear_trustworthiness_vector":{"hardware":2,"executables":33},
               "ear_appraisal_policy_ids":["policy:a","policy:b"]}}}
            """#
        let claims = try EARClaims(json: [UInt8](utf8: json))
        #expect(claims.profile == .draft03)
        #expect(claims.status == .warning)
        #expect(claims.nonce?.count == 16)
        #expect(claims.submods["PSA_IOT"]?.policyIDs == ["policy:a", "policy:b"])
        #expect(claims.submods["PSA_IOT"]?.trustVector.value(of: .executables) == 33)
    }

    @Test(
        "a token whose status is better than its vector is rejected",
        arguments: [
            #"{"ear.status":"affirming","ear.trustworthiness-vector":{"hardware":97}}"#,
            #"{"ear.status":"none","ear.trustworthiness-vector":{"hardware":2}}"#,
            #"{"ear.status":"warning","ear.trustworthiness-vector":{"executables":96}}"#,
        ])
    func statusBetterThanVectorRejected(submod: String) {
        let json =
            #"{"eat_profile":"tag:github.com,2023:veraison/ear","iat":1,"#
            + #""ear.verifier-id":{"developer":"d","build":"b"},"submods":{"cpu0":"# + submod + "}}"
        #expect(errorCode { try EARClaims(json: [UInt8](utf8: json)) } == .statusBetterThanTrustVector)
    }

    /// A valid deployed-dialect EAR with one member replaced.
    static func deployed(_ replacing: String, with replacement: String) -> [UInt8] {
        let json =
            #"{"eat_profile":"tag:github.com,2023:veraison/ear","iat":1787000000,"#
            + #""ear.verifier-id":{"developer":"d","build":"b"},"eat_nonce":"AAAAAAAAAAA","#
            + #""submods":{"cpu0":{"ear.status":"affirming","ear.trustworthiness-vector":{"hardware":2}}}}"#
        return [UInt8](utf8: json.replacingOccurrences(of: replacing, with: replacement))
    }

    @Test(
        "rejects malformed or ambiguous claims with a precise code",
        arguments: [
            ("", "", nil),
            ("tag:github.com,2023:veraison/ear", "tag:example.com,2025:other", "unknown-profile"),
            // The names must match the profile.
            ("tag:github.com,2023:veraison/ear", "tag:ietf.org,2026:rats/ear#03", "invalid-claims"),
            (#""iat":1787000000"#, #""iat":1787000000.5"#, "invalid-claims"),
            (#""iat":1787000000"#, #""iat":"1787000000""#, "invalid-claims"),
            (#""iat":1787000000,"#, "", "invalid-claims"),
            (#""ear.status":"affirming""#, #""ear.status":"affirming","ear.status":"affirming""#, "malformed-json"),
            (#""ear.status":"affirming""#, #""ear.status":"great""#, "invalid-claims"),
            (#""hardware":2"#, #""hardware":200"#, "invalid-claims"),
            (#""hardware":2"#, #""hardwares":2"#, "invalid-claims"),
            ("AAAAAAAAAAA", "AAAAAAAAAAA=", "invalid-claims"),  // padding
            ("AAAAAAAAAAA", "AAAAAAAAAAB", "invalid-claims"),  // non-zero unused bits
            ("AAAAAAAAAAA", "AAAAAAAAAA", "invalid-claims"),  // 7 bytes
            (#""submods":{"cpu0":{"#, #""submods":{"cpu0":{"ear.appraisal-policy-id":["p"],"#, "invalid-claims"),
            ("}}}}", "}}}} ", nil),
            ("}}}}", "}}}}x", "malformed-json"),
        ] as [(String, String, String?)])
    func rejectsMalformedClaims(replacing: String, replacement: String, code: String?) {
        let bytes = Self.deployed(replacing, with: replacement)
        #expect(errorCode { try EARClaims(json: bytes) } == code.map(AttestationResultsError.Code.init))
    }

    @Test("deep nesting is refused rather than exhausting the stack")
    func depthLimit() {
        let deep = [UInt8](repeating: UInt8(ascii: "["), count: 100_000)
        #expect(errorCode { try EARClaims(json: deep) } == .malformedJSON)
    }

    @Test("JSON strings with escapes and non-ASCII text survive a round trip")
    func escapesRoundTrip() throws {
        let appraisal = try EARAppraisal(
            status: .none, trustVector: TrustVector(), policyIDs: ["policy:\"quoted\"\\slash/ \u{1}\n é 🔐"])
        let claims = try EARClaims(
            issuedAt: 0, verifierID: EARVerifierID(developer: "d", build: "b"), submods: ["x": appraisal])
        #expect(try EARClaims(json: claims.jsonEncoded()) == claims)
        let escaped =
            #"{"eat_profile":"tag:github.com,2023:veraison/ear","iat":0,"#
            + #""ear.verifier-id":{"developer":"\u0064","build":"b"},"#
            + #""submods":{"x":{"ear.status":"none","ear.appraisal-policy-id":"\ud83d\udd10"}}}"#
        let decoded = try EARClaims(json: [UInt8](utf8: escaped))
        #expect(decoded.verifierID.developer == "d")
        #expect(decoded.submods["x"]?.policyIDs == ["🔐"])
    }
}
