import Attestation
import AttestationPolicy
import AttestationResults
import AuditLog
import BinaryFormat
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import TDX

extension VerificationServer {
    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.post("/v1/challenge") { request, context in try await self.challenge(request, context) }
        router.post("/v1/attest") { request, context in try await self.attest(request, context) }
        router.get("/.well-known/jwks.json") { request, _ in try self.jwks(request) }
        router.get("/v1/verifier") { _, _ in try self.identity() }
        router.get("/v1/tenants/{tenant}/policies") { request, context in try await self.listPolicies(request, context) }
        router.get("/v1/tenants/{tenant}/policies/{id}") { request, context in try await self.getPolicy(request, context) }
        router.put("/v1/tenants/{tenant}/policies/{id}") { request, context in try await self.putPolicy(request, context) }
        router.get("/v1/tenants/{tenant}/audit/records") { request, context in try await self.auditRecords(request, context) }
        router.get("/v1/tenants/{tenant}/audit/report") { request, context in try await self.auditReport(request, context) }
        router.get("/healthz") { _, _ in Self.json(["status": "ok"]) }
        router.get("/readyz") { _, _ in await self.readiness() }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.exposition())))
        }
        router.get("/openapi.yaml") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/yaml"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.text)))
        }
    }

    // MARK: Helpers

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func encoded(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    nonisolated(unsafe) static let iso8601: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter
    }()

    static func time(_ date: Date) -> String { iso8601.string(from: date) }

    /// The body, within the size limit and the request timeout: 413 beyond the limit, 408 when it arrives too slowly.
    func body(_ request: Request) async throws -> [UInt8] {
        let limit = configuration.maximumBodySize
        let timeout = configuration.requestTimeout
        let body = request.body
        return try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                do {
                    var buffer = try await body.collect(upTo: limit)
                    return buffer.readBytes(length: buffer.readableBytes) ?? []
                } catch is NIOTooManyBytesError {
                    throw Problem(
                        .contentTooLarge, "body-too-large", "the request body is larger than \(limit) bytes, this server's limit")
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(timeout))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let bytes = first else {
                throw Problem(.requestTimeout, "timeout", "the request body did not arrive within \(Int(timeout)) s")
            }
            return bytes
        }
    }

    /// The JSON object in the body (an empty body is `{}`), or a 400.
    func jsonObject(_ bytes: [UInt8]) throws(Problem) -> [String: Any] {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) else {
            throw Problem.badRequest("malformed-json", "the body is not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else {
            throw Problem.badRequest("malformed-json", "the body must be a JSON object")
        }
        return dictionary
    }

    // MARK: Challenge and attest

    func challenge(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let object = try jsonObject(try await body(request))
        let tenantName: String
        switch object["tenant"] {
        case nil: tenantName = "default"
        case let name as String: tenantName = name
        default: throw Problem.badRequest("malformed-json", "'tenant' must be a string")
        }
        let tenant = try tenants.resources(tenantName).tenant
        let credential: TPMCredentialChallenge?
        switch object["tpm"] {
        case nil: credential = nil
        case let keys as [String: Any]: credential = try Self.credential(for: keys)
        default:
            throw Problem.badRequest("malformed-json", "'tpm' must be an object with 'endorsement_key' and 'attestation_key'")
        }
        let issued = try await challenges.issue(tenant: tenant.name, credential: credential.map(IssuedCredential.init))
        var answer: [String: Any] = [
            "nonce": issued.nonce, "tenant": tenant.name, "issued_at": Self.time(issued.issuedAt),
            "expires_at": Self.time(issued.expiresAt),
            "report_data": "SHA-512(\"cmk/report-data/v1\\0\" || nonce || public_key)",
        ]
        if let credential {
            answer["tpm_credential"] = [
                "credential_blob": Data(credential.credentialBlob).base64EncodedString(),
                "encrypted_secret": Data(credential.encryptedSecret).base64EncodedString(),
                "tpm2_tools": Data(credential.tpm2ToolsFile).base64EncodedString(),
            ]
        }
        return Self.json(answer, status: .created)
    }

    /// MakeCredential for `POST /v1/challenge`'s `tpm` object: the EK and AK public areas (base64 TPM2B_PUBLIC or
    /// TPMT_PUBLIC), a fresh secret sealed to the EK for the AK's Name. A key that is not a public area, or an EK
    /// that cannot receive a credential, is a 422 naming why.
    static func credential(for keys: [String: Any]) throws(Problem) -> TPMCredentialChallenge {
        guard let ek = keys["endorsement_key"] as? String, let ak = keys["attestation_key"] as? String else {
            throw Problem.badRequest(
                "malformed-json", "'tpm' needs 'endorsement_key' and 'attestation_key', each a base64 TPM public area")
        }
        let endorsementKey = try Field.base64(ek, "tpm.endorsement_key")
        let attestationKey = try Field.base64(ak, "tpm.attestation_key")
        do {
            return try TPMCredentialChallenge.random(endorsementKey: endorsementKey, attestationKey: attestationKey)
        } catch {
            throw Problem.unprocessable("bad-tpm-key", "no credential can be made for these keys: \(error.reason)")
        }
    }

    func attest(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let parsed = try AttestRequest.decode(try await body(request))
        let tenant = try tenants.resources(parsed.tenant ?? "default")
        let nonce = try Field.nonce(parsed.nonce)
        let evidence = try parsed.presentedEvidence()
        let tpm = try parsed.presentedTPM()
        let activatedSecret = try Field.optionalBase64(parsed.tpm?.activatedSecret, "tpm.activated_secret")
        let ekCertificate = try Field.optionalBase64(parsed.tpm?.ekCertificate, "tpm.ek_certificate")
        if ekCertificate != nil, activatedSecret == nil {
            throw Problem.badRequest(
                "ek-certificate-without-activation",
                "'tpm.ek_certificate' certifies the EK of a credential activation; send it with 'tpm.activated_secret'")
        }
        let boundKey = try Field.optionalBase64(parsed.publicKey, "public_key")
        let manifest = try Field.optionalBase64(parsed.manifest, "manifest")
        if let instance = parsed.instance, instance.utf8.count > 128 || TenantRegistry.printable(instance) != instance {
            throw Problem.badRequest("bad-instance", "'instance' must be at most 128 printable characters")
        }
        if let version = parsed.policyVersion, version < 1 {
            throw Problem.badRequest("bad-policy-version", "'policy_version' must be 1 or more")
        }
        guard let row = try await store.policy(tenant: tenant.tenant.name, id: parsed.policy, version: parsed.policyVersion) else {
            let version = parsed.policyVersion.map { " version \($0)" } ?? ""
            throw Problem.notFound(
                "unknown-policy",
                "tenant '\(tenant.tenant.name)' has no policy '\(TenantRegistry.printable(parsed.policy))'\(version)")
        }
        let policy = try self.parsed(row)
        guard policy.evidence.rawValue == evidence.evidenceType else {
            throw Problem.unprocessable(
                "evidence-type-mismatch",
                "policy '\(policy.id)' appraises \(policy.evidence.rawValue) evidence; this request carries \(evidence.evidenceType)")
        }
        let now = configuration.clock()
        // The nonce is spent (a durable commit, shared with other requests') while the evidence is verified: the
        // verification is pure computation whose outcome is used only once the nonce proved fresh, and every error
        // it raises waits for the nonce's answer, so a spent or unknown nonce is reported first, as before.
        let store = self.store
        let spentNonce = parsed.nonce.lowercased()
        let tenantName = tenant.tenant.name
        async let spending = store.consumeNonce(spentNonce, tenant: tenantName, at: now)
        let verified = Result { () throws -> AppraisalInput in
            try verifiedInput(
                evidence, policy: policy,
                context: AppraisalContext(evaluationTime: now, nonce: nonce, boundKey: boundKey, manifest: manifest))
        }
        let issuedAt: Date
        let storedCredential: [UInt8]?
        switch try await spending {
        case .fresh(let time, let credential):
            issuedAt = time
            storedCredential = credential
        case .expired:
            throw Problem.badRequest("nonce-expired", "the nonce has expired; ask POST /v1/challenge for a new one")
        case .reused: throw Problem(.conflict, "nonce-reused", "the nonce was already used; each nonce is good for one attestation")
        case .unknown:
            throw Problem.badRequest("nonce-unknown", "this server did not issue the nonce to tenant '\(tenant.tenant.name)'")
        }
        var input = try verified.get()
        input.context.collectedAt = issuedAt
        if let tpm {
            // The quote is checked once the nonce is spent: the credential made with it (if any) is known only then.
            var activation: TPMCredentialActivation?
            if let activatedSecret {
                guard let issued = storedCredential.flatMap(IssuedCredential.init(encoded:)) else {
                    throw Problem.badRequest(
                        "no-tpm-credential",
                        "'tpm.activated_secret' was sent, but no TPM credential was issued with this nonce; "
                            + "send 'tpm' with the keys to POST /v1/challenge")
                }
                activation = TPMCredentialActivation(
                    endorsementKey: issued.endorsementKey, attestationKeyName: issued.attestationKeyName,
                    secret: issued.secret, activatedSecret: activatedSecret)
            }
            Self.verifyTPM(
                tpm, into: &input, nonce: nonce, activation: activation,
                endorsementChain: configuration.tpmEndorsementChain, endorsementCertificate: ekCertificate)
        }
        let appraisal = policy.evaluate(input)
        let claims = try EARClaims(
            appraisal: appraisal, verifierID: .cmk(version: configuration.verifierBuild), issuedAt: now,
            expiresAt: now.addingTimeInterval(configuration.resultLifetime), issuer: "cmk serve", nonce: nonce)
        let token = try EARJWT.sign(claims, with: tenant.signingKey)
        // Encoded here, in parallel with other requests, once: the audit record stores and hashes these very bytes,
        // and the answer carries them as its `appraisal`.
        let entry = try EncodedAuditEntry(.appraisal(
            appraisal, actor: "api:\(context.client)",
            tenant: tenant.tenant.name, instance: parsed.instance, resultToken: token, time: now))
        let appended = try await tenant.auditLog.append(encoded: entry)
        metrics.verdict(
            tenant: tenant.tenant.name, policy: policy.id, verdict: appraisal.verdict.rawValue,
            reason: appraisal.failures.first?.rule ?? "admitted")
        return Self.attestResponse(
            verdict: appraisal.verdict.rawValue, ear: token, keyID: tenant.signingKey.keyID,
            appraisalJSON: entry.appraisalJSON ?? "null", audit: appended.head)
    }

    /// The answer to an attestation (the schema `AttestResponse`): compact JSON, keys sorted, the `appraisal` being
    /// byte for byte the audit record's `appraisal_json` (so a relying party can recompute the record's hash).
    static func attestResponse(
        verdict: String, ear: String, keyID: String, appraisalJSON: String, audit: AuditHead
    ) -> Response {
        var out: [UInt8] = []
        out.reserveCapacity(appraisalJSON.utf8.count + ear.utf8.count + 256)
        out += Array(#"{"appraisal":"#.utf8)
        out += appraisalJSON.utf8
        out += Array(#","audit":{"hash":"#.utf8)
        appendJSONString(audit.hash, to: &out)
        out += Array(#","sequence":"#.utf8)
        out += String(audit.sequence).utf8
        out += Array(#"},"ear":"#.utf8)
        appendJSONString(ear, to: &out)
        out += Array(#","kid":"#.utf8)
        appendJSONString(keyID, to: &out)
        out += Array(#","media_type":"#.utf8)
        appendJSONString(EARJWT.mediaType, to: &out)
        out += Array(#","verdict":"#.utf8)
        appendJSONString(verdict, to: &out)
        out.append(UInt8(ascii: "}"))
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }

    /// A JSON string literal as JSONEncoder writes it with `.withoutEscapingSlashes`.
    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20:
                let digits = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The verification half of an attestation: the evidence completed from the caches and verified, the vTPM quote
    /// checked; a 422 for collateral missing from both the request and the cache.
    func verifiedInput(
        _ evidence: PresentedEvidence, policy: Policy, context appraisalContext: AppraisalContext
    ) throws -> AppraisalInput {
        let completed = try withCachedCollateral(evidence)
        if case .tdx(_, let collateral, _) = completed {
            // The TDX verifier reports absent collateral as failed checks; the API names it as a 422 instead, since
            // the request (or the cache) is incomplete, not the evidence bad.
            var missing: [String] = []
            if collateral?.tcbInfoJSON == nil { missing.append("tcb_info") }
            if collateral?.qeIdentityJSON == nil { missing.append("qe_identity") }
            if policy.trust.crl == .hard {
                if collateral?.pckCRL == nil { missing.append("pck_crl") }
                if collateral?.rootCACRL == nil { missing.append("root_ca_crl") }
            }
            if !missing.isEmpty {
                throw Problem.unprocessable(
                    "missing-collateral",
                    "TDX collateral missing from the request and the server's cache: \(missing.joined(separator: ", "))",
                    missing: missing)
            }
        }
        let input = appraiser.input(completed, revocation: policy.trust.crl, context: appraisalContext)
        if case .failure(let error) = input.verification, error.code == AttestationError.Code.missingCollateral {
            throw Problem.unprocessable("missing-collateral", error.reason, missing: Self.missingItems(error.reason, evidence: evidence))
        }
        return input
    }

    /// The vTPM quote against this request's nonce, the verified TEE report's REPORT_DATA (which must bind SHA-256
    /// of the AK) and, when the nonce came with a credential and the attester returned its secret, the activation
    /// that binds the AK to the EK; a failure is the `tpm.verified` outcome, so the rejection says why.
    static func verifyTPM(
        _ tpm: TPMEvidence, into input: inout AppraisalInput, nonce: [UInt8]?, activation: TPMCredentialActivation?,
        endorsementChain: [AttestationCertificate] = [], endorsementCertificate: [UInt8]? = nil
    ) {
        let reportData = input.claims?.reportData
        input.tpm = Result { () throws(AttestationError) -> TPMVerificationResult in
            try TPMVerifier().verify(
                tpm,
                options: TPMVerificationOptions(
                    nonce: nonce ?? [], teeReportData: reportData, credentialActivation: activation,
                    endorsementRoots: endorsementChain, endorsementCertificate: endorsementCertificate))
        }
    }

    /// SEV-SNP evidence without a VCEK or certificate table is completed from the offline cache by the verifier; TDX
    /// evidence without collateral is completed here from `<tdx cache>/intel/tdx/<fmspc>/`.
    ///
    /// Nothing unreadable is taken for absent: a quote whose platform (FMSPC) cannot be read is a 422
    /// `malformed-quote` naming why, and a cached collateral file that exists but does not parse is a 500
    /// `collateral-cache-unreadable` naming the FMSPC and the reason (the operator must refresh the cache).
    func withCachedCollateral(_ evidence: PresentedEvidence) throws(Problem) -> PresentedEvidence {
        switch evidence {
        case .snp(_, let table, let endorsement, _):
            if table == nil && endorsement == nil { metrics.cache("snp-collateral", hit: configuration.snpCollateral != nil) }
            return evidence
        case .tdx(let quote, let given, let eventLog):
            guard given == nil else { return evidence }
            guard let cache = configuration.tdxCollateral else {
                metrics.cache("tdx-collateral", hit: false)
                return evidence
            }
            let fmspc: [UInt8]
            do {
                fmspc = try TDXCollateralFetch.platform(of: try TDXQuote(bytes: quote)).fmspc
            } catch {
                throw Problem.unprocessable(
                    "malformed-quote",
                    "the TDX quote does not name its platform (FMSPC), so its collateral cannot be looked up: \(Self.reason(error))")
            }
            let collateral: TDXCollateral
            do {
                collateral = try TDXCollateral(directory: TDXCollateral.cacheFolder(cache, fmspc: fmspc))
            } catch {
                throw Problem(
                    .internalServerError, "collateral-cache-unreadable",
                    "the server's cached TDX collateral for FMSPC \(Hex.encode(fmspc)) cannot be read (\(error.reason)); "
                        + "send the collateral with the request, or ask the operator to refresh the cache")
            }
            metrics.cache("tdx-collateral", hit: collateral.tcbInfoJSON != nil)
            return .tdx(quote: quote, collateral: collateral, eventLog: eventLog)
        }
    }

    /// An error's reason, without the type's decoration.
    static func reason(_ error: any Error) -> String {
        if let error = error as? AttestationError { return error.reason }
        return "\(error)"
    }

    /// The collateral items a missing-collateral error names, for the 422's `missing` list.
    static func missingItems(_ reason: String, evidence: PresentedEvidence) -> [String] {
        let text = reason.lowercased()
        let known: [(String, String)] = [
            ("vcek", "vcek"), ("vlek", "vlek"), ("tcb info", "tcb_info"), ("tcbinfo", "tcb_info"), ("qe identity", "qe_identity"),
            ("qeidentity", "qe_identity"), ("pck crl", "pck_crl"), ("root ca crl", "root_ca_crl"), ("crl", "crl"),
            ("ask", "ask"), ("ark", "ark"),
        ]
        var items: [String] = []
        for (needle, name) in known where text.contains(needle) && !items.contains(name) {
            if name == "crl" && items.contains(where: { $0.hasSuffix("crl") }) { continue }
            items.append(name)
        }
        if items.isEmpty { items.append(evidence.evidenceType == "tdx" ? "collateral" : "vcek") }
        return items
    }

    // MARK: Keys and identity

    func jwks(_ request: Request) throws -> Response {
        let wanted = request.uri.queryParameters.get("tenant")
        if let wanted { _ = try tenants.resources(wanted) }
        let keys = tenants.byName.values.filter { wanted == nil || $0.tenant.name == wanted }
            .sorted { $0.tenant.name < $1.tenant.name }.map(\.signingKey.publicKey)
        return Response(
            status: .ok, headers: [.contentType: "application/jwk-set+json"],
            body: .init(byteBuffer: ByteBuffer(bytes: EARKeySet(keys: keys).jwksJSON())))
    }

    func identity() throws -> Response {
        let id = EARVerifierID.cmk(version: configuration.verifierBuild)
        var keys: [String: String] = [:]
        var algorithms: [String: String] = [:]
        for (name, resources) in tenants.byName {
            keys[name] = resources.signingKey.keyID
            algorithms[name] = resources.signingKey.algorithm.rawValue
        }
        return Self.json([
            "developer": id.developer, "build": id.build, "issuer": "cmk serve",
            "algorithm": configuration.earAlgorithm.rawValue, "tenant_algorithms": algorithms,
            "media_type": EARJWT.mediaType, "jwks_uri": "/.well-known/jwks.json", "tenant_keys": keys,
            "nonce_lifetime_seconds": Int(configuration.nonceLifetime),
            "result_lifetime_seconds": Int(configuration.resultLifetime),
        ])
    }

    func readiness() async -> Response {
        do {
            try await store.ping()
            return Self.json(["status": "ready"])
        } catch {
            return Problem(.serviceUnavailable, "not-ready", "the store cannot be read").response()
        }
    }

    // MARK: Policies (administrator)

    func administered(_ request: Request, _ context: ServiceRequestContext) throws -> TenantRegistry.Resources {
        let name = try context.parameters.require("tenant")
        return try tenants.administered(name, authorization: request.headers[.authorization])
    }

    static func summary(_ row: StoredPolicy) -> [String: Any] {
        ["id": row.id, "version": row.version, "digest": row.digest, "created_at": time(row.createdAt)]
    }

    func listPolicies(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let tenant = try administered(request, context)
        let rows = try await store.policies(tenant: tenant.tenant.name)
        return Self.json(["tenant": tenant.tenant.name, "policies": rows.map(Self.summary)])
    }

    func getPolicy(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let tenant = try administered(request, context)
        let id = try context.parameters.require("id")
        var version: Int?
        if let text = request.uri.queryParameters.get("version") {
            guard let value = Int(text), value >= 1 else {
                throw Problem.badRequest("bad-query", "'version' must be a positive integer")
            }
            version = value
        }
        guard let row = try await store.policy(tenant: tenant.tenant.name, id: id, version: version) else {
            throw Problem.notFound("unknown-policy", "tenant '\(tenant.tenant.name)' has no policy '\(TenantRegistry.printable(id))'")
        }
        var object = Self.summary(row)
        object["yaml"] = row.yaml
        return Self.json(object)
    }

    func putPolicy(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let tenant = try administered(request, context)
        let id = try context.parameters.require("id")
        guard let text = String(validating: try await body(request), as: UTF8.self) else {
            throw Problem.badRequest("malformed-policy", "the policy must be UTF-8 YAML text")
        }
        // Reference artifacts name files the loader would read and measure on this server: a tenant's administrator
        // must not make the service read its files (or learn which exist). Upload derived digests (`allow`) instead.
        if text.split(whereSeparator: \.isNewline).contains(where: { $0.drop { $0 == " " || $0 == "-" }.hasPrefix("reference:") }) {
            throw Problem.unprocessable(
                "reference-artifacts-refused",
                "policies uploaded over the API may not name reference artifacts (files on the server); list the digests under 'allow', or load the policy with cmk serve --policy")
        }
        let policy: Policy
        do {
            // No environment: an uploaded policy cannot read the server's variables.
            policy = try PolicyLoader(environment: [:]).load(text: text)
        } catch {
            throw Problem.unprocessable("invalid-policy", error.description)
        }
        guard policy.id == id else {
            throw Problem.unprocessable("policy-id-mismatch", "the policy's id is '\(policy.id)', but the URL names '\(TenantRegistry.printable(id))'")
        }
        let row = StoredPolicy(
            tenant: tenant.tenant.name, id: id, version: policy.version, digest: policy.digest, yaml: text,
            createdAt: configuration.clock())
        do {
            try await store.putPolicy(row)
        } catch let error as StoreError where error.code == .versionConflict {
            throw Problem(.conflict, "version-conflict", error.reason)
        }
        policyCache.withLock { $0[Self.cacheKey(row)] = policy }
        try await tenant.auditLog.append(AuditEntry(
            actor: "api:administrator", kind: .policyChange, tenant: tenant.tenant.name,
            details: ["policy": id, "version": String(policy.version), "digest": policy.digest, "change": "put"],
            time: configuration.clock()))
        return Self.json(Self.summary(row), status: .created)
    }

    // MARK: Audit (administrator)

    func timeParameter(_ request: Request, _ name: String) throws(Problem) -> Date? {
        guard let text = request.uri.queryParameters.get(name) else { return nil }
        guard let date = Self.iso8601.date(from: text) else {
            throw Problem.badRequest("bad-query", "'\(name)' must be an RFC 3339 time such as 2026-11-28T00:00:00Z")
        }
        return date
    }

    func auditRecords(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let tenant = try administered(request, context)
        let query = request.uri.queryParameters
        var audit = AuditQuery(
            since: try timeParameter(request, "since"), until: try timeParameter(request, "until"),
            policyID: query.get("policy"), tenant: tenant.tenant.name, instance: query.get("instance"))
        if let text = query.get("limit") {
            guard let limit = Int(text), (1...1000).contains(limit) else {
                throw Problem.badRequest("bad-query", "'limit' must be 1 to 1000")
            }
            audit.limit = limit
        } else {
            audit.limit = 100
        }
        if let text = query.get("cursor") {
            guard let cursor = Int64(text), cursor >= 0 else { throw Problem.badRequest("bad-query", "'cursor' must be a record sequence number") }
            audit.cursor = cursor
        }
        if let text = query.get("verdict") {
            guard let verdict = Verdict(rawValue: text) else {
                throw Problem.badRequest("bad-query", "'verdict' must be admit or reject")
            }
            audit.verdict = verdict
        }
        if let text = query.get("kind") { audit.kind = AuditKind(text) }
        if let text = query.get("order") {
            guard let order = AuditQuery.Order(rawValue: text) else {
                throw Problem.badRequest(
                    "bad-query", "'order' must be one of \(AuditQuery.Order.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            audit.order = order
        }
        return try Self.encoded(try await tenant.auditLog.records(matching: audit))
    }

    func auditReport(_ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let tenant = try administered(request, context)
        let formatName = request.uri.queryParameters.get("format") ?? "json"
        guard let format = AuditReport.Format(rawValue: formatName) else {
            throw Problem.badRequest("bad-query", "'format' must be json, md or html")
        }
        let now = configuration.clock()
        let end = try timeParameter(request, "until") ?? now
        let start = try timeParameter(request, "since") ?? end.addingTimeInterval(-30 * 86_400)
        guard start <= end else { throw Problem.badRequest("bad-query", "'since' is after 'until'") }
        var findings: [PolicyFinding] = []
        for row in try await store.policies(tenant: tenant.tenant.name) {
            // A stored version that no longer loads (a reference artifact gone from the server, say) is itself a
            // finding in the report, not silently left out of it.
            do {
                findings += PolicyLinter(now: now).review(try parsed(row))
            } catch {
                findings.append(PolicyFinding(
                    policyID: row.id, severity: .critical, key: "policy",
                    message: "stored version \(row.version) does not load: \(Self.reason(error))",
                    fix: "put a new version that loads (cmk policy lint), or restore what it references"))
            }
        }
        let options = AuditReport.Options(
            window: DateInterval(start: start, end: end), policyID: request.uri.queryParameters.get("policy"),
            findings: findings, generatedAt: now, trustedKey: tenant.auditLog.checkpointKey)
        let records = try await tenant.auditLog.allRecords(
            matching: AuditQuery(since: start, until: end, tenant: tenant.tenant.name, order: .oldestFirst))
        let report = AuditReport(records: records, verification: try await tenant.auditLog.verify(), options: options)
        let contentType = switch format {
        case .json: "application/json"
        case .md: "text/markdown; charset=utf-8"
        case .html: "text/html; charset=utf-8"
        }
        return Response(
            status: .ok, headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(string: try report.rendered(as: format))))
    }
}
