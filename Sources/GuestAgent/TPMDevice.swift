import BinaryFormat
import Glibc

/// A TPM 2.0 reached through a file descriptor: `/dev/tpmrm0` (the kernel's resource manager) or `/dev/tpm0` inside
/// a child, or a swtpm server socket in host-side tests. cmk-guest marshals the few commands it needs itself (TPM 2.0
/// Library, Part 3), since Debian ships no static libtss2: the agent stays one static executable.
///
/// One command at a time: write the whole command, read the whole response (a character device answers in one read;
/// a socket may need several, so the response's own size field decides when it is complete).
public final class TPMDevice {
    /// Where the device was opened (for messages).
    public let path: String
    let descriptor: FileDescriptor

    /// The largest response accepted (TPM 2.0 responses are at most 4096 bytes in every implementation we meet).
    static let maximumResponseSize = 8192

    public init(descriptor: FileDescriptor, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    /// Opens the first of `paths` that exists: the resource manager first (it flushes what a crashed agent left).
    public static func open(_ paths: [String] = ["/dev/tpmrm0", "/dev/tpm0"]) throws(GuestAgentError) -> TPMDevice {
        var last: GuestAgentError?
        for path in paths {
            do throws(GuestAgentError) {
                return TPMDevice(descriptor: try FileDescriptor.openPort(path), path: path)
            } catch {
                last = error
            }
        }
        throw GuestAgentError(
            .unavailable,
            "no TPM device (\(paths.joined(separator: ", "))): launch the child with --vtpm"
                + (last.map { " (\($0.reason))" } ?? ""))
    }

    /// A session in a command's authorization area: the password session, or a policy session that was satisfied
    /// (PolicySecret) without an authValue, whose HMAC is empty (Part 1, §19.6).
    struct Session {
        let handle: UInt32
        let attributes: UInt8
        static let password = Session(handle: TPMConstants.passwordSession, attributes: 0x01)
        static func policy(_ handle: UInt32) -> Session { Session(handle: handle, attributes: 0x00) }
    }

    /// A response's handles and parameter area.
    struct Response {
        var handles: [UInt32]
        var parameters: ByteCursor
    }

    /// The warnings after which a TSS sends the same command again (Part 2, TPM_RC_YIELDED, TPM_RC_TESTING,
    /// TPM_RC_RETRY): the TPM did not start it.
    static let retryCodes: Set<UInt32> = [0x908, 0x90A, 0x922]

    /// Sends one command and returns its response (sent again, up to five times, while the TPM answers that it did not
    /// start it); another non-zero response code is an error naming the command.
    func execute(
        _ name: String, code: UInt32, handles: [UInt32] = [], sessions: [Session] = [], parameters: [UInt8] = [],
        responseHandles: Int = 0
    ) throws(GuestAgentError) -> Response {
        var attempt = 0
        while true {
            do throws(GuestAgentError) {
                return try executeOnce(
                    name, code: code, handles: handles, sessions: sessions, parameters: parameters,
                    responseHandles: responseHandles)
            } catch {
                attempt += 1
                guard attempt < 5, let rc = error.systemError, Self.retryCodes.contains(UInt32(bitPattern: rc)) else {
                    throw error
                }
                usleep(20_000)
            }
        }
    }

    func executeOnce(
        _ name: String, code: UInt32, handles: [UInt32], sessions: [Session], parameters: [UInt8],
        responseHandles: Int
    ) throws(GuestAgentError) -> Response {
        var body = TPMWriter()
        for handle in handles { body.u32(handle) }
        if !sessions.isEmpty {
            var area = TPMWriter()
            for session in sessions {
                area.u32(session.handle)
                area.sized([])
                area.u8(session.attributes)
                area.sized([])
            }
            body.u32(UInt32(area.bytes.count))
            body.bytes += area.bytes
        }
        body.bytes += parameters
        var command = TPMWriter()
        command.u16(sessions.isEmpty ? TPMConstants.noSessions : TPMConstants.withSessions)
        command.u32(UInt32(10 + body.bytes.count))
        command.u32(code)
        command.bytes += body.bytes
        try descriptor.writeAll(command.bytes)

        var response: [UInt8] = []
        var expected = 10
        while true {
            if response.count >= 6 {
                expected = Int(response[2]) << 24 | Int(response[3]) << 16 | Int(response[4]) << 8 | Int(response[5])
                guard expected >= 10, expected <= Self.maximumResponseSize else {
                    throw GuestAgentError(.malformedResponse, "\(path): \(name) answered with a size of \(expected) bytes")
                }
                if response.count >= expected { break }
            }
            let chunk = try descriptor.read(upTo: Self.maximumResponseSize)
            guard !chunk.isEmpty else {
                throw GuestAgentError(.peerClosed, "\(path) closed during \(name)")
            }
            response += chunk
        }
        guard response.count == expected else {
            throw GuestAgentError(.malformedResponse, "\(path): \(name) answered \(response.count) bytes, not \(expected)")
        }
        let rc =
            UInt32(response[6]) << 24 | UInt32(response[7]) << 16 | UInt32(response[8]) << 8 | UInt32(response[9])
        guard rc == 0 else {
            throw GuestAgentError(
                .device, "TPM2_\(name) failed: response code 0x\(String(rc, radix: 16, uppercase: true))",
                systemError: Int32(bitPattern: rc))
        }
        do throws(BinaryFormatError) {
            var cursor = ByteCursor(response)
            let tag = try cursor.readBigEndian(UInt16.self, field: "tag")
            try cursor.skip(8, field: "responseSize and responseCode")
            var result = Response(handles: [], parameters: ByteCursor([]))
            for _ in 0..<responseHandles { result.handles.append(try cursor.readBigEndian(UInt32.self, field: "handle")) }
            if tag == TPMConstants.withSessions {
                let size = Int(try cursor.readBigEndian(UInt32.self, field: "parameterSize"))
                result.parameters = try cursor.readCursor(size, field: "parameters")
            } else {
                result.parameters = try cursor.readCursor(cursor.remaining, field: "parameters")
            }
            return result
        } catch {
            throw GuestAgentError(.malformedResponse, "\(path): the response to TPM2_\(name) is malformed: \(error)")
        }
    }

    /// Reads a TPM2B (u16 size, bytes) from a response.
    static func sized(_ cursor: inout ByteCursor, _ field: String) throws(GuestAgentError) -> [UInt8] {
        do throws(BinaryFormatError) {
            let count = Int(try cursor.readBigEndian(UInt16.self, field: "\(field) size"))
            return try cursor.readBytes(count, field: field)
        } catch {
            throw GuestAgentError(.malformedResponse, "the TPM's \(field) is truncated: \(error)")
        }
    }

    // MARK: Commands (Part 3).

    /// TPM2_ReadPublic: the TPMT_PUBLIC of a loaded or persistent object.
    func readPublic(_ handle: UInt32) throws(GuestAgentError) -> [UInt8] {
        var response = try execute("ReadPublic", code: TPMConstants.readPublic, handles: [handle])
        return try Self.sized(&response.parameters, "outPublic")
    }

    /// TPM2_CreatePrimary in `hierarchy` (empty hierarchy authorization): the transient handle and TPMT_PUBLIC.
    func createPrimary(hierarchy: UInt32, template: [UInt8]) throws(GuestAgentError) -> (handle: UInt32, publicArea: [UInt8]) {
        var parameters = TPMWriter()
        parameters.sized([0, 0, 0, 0])  // TPM2B_SENSITIVE_CREATE: empty userAuth, empty data
        parameters.sized(template)  // TPM2B_PUBLIC
        parameters.sized([])  // outsideInfo
        parameters.u32(0)  // creationPCR: no selection
        var response = try execute(
            "CreatePrimary", code: TPMConstants.createPrimary, handles: [hierarchy], sessions: [.password],
            parameters: parameters.bytes, responseHandles: 1)
        return (response.handles[0], try Self.sized(&response.parameters, "outPublic"))
    }

    /// TPM2_FlushContext (errors ignored: the resource manager flushes on close anyway).
    func flush(_ handle: UInt32) {
        var parameters = TPMWriter()
        parameters.u32(handle)
        _ = try? execute("FlushContext", code: TPMConstants.flushContext, parameters: parameters.bytes)
    }

    /// TPM2_StartAuthSession: an unbound, unsalted SHA-256 policy session.
    func startPolicySession() throws(GuestAgentError) -> UInt32 {
        var nonce = [UInt8](repeating: 0, count: 16)
        for index in nonce.indices { nonce[index] = UInt8.random(in: 0...255) }
        var parameters = TPMWriter()
        parameters.sized(nonce)  // nonceCaller
        parameters.sized([])  // encryptedSalt
        parameters.u8(0x01)  // TPM_SE_POLICY
        parameters.u16(TPMConstants.algorithmNull)  // symmetric
        parameters.u16(TPMConstants.sha256)  // authHash
        let response = try execute(
            "StartAuthSession", code: TPMConstants.startAuthSession, handles: [TPMConstants.rhNull, TPMConstants.rhNull],
            parameters: parameters.bytes, responseHandles: 1)
        return response.handles[0]
    }

    /// TPM2_PolicySecret with the endorsement hierarchy's (empty) authorization: what the EK's authPolicy asks for.
    func policySecretEndorsement(_ session: UInt32) throws(GuestAgentError) {
        var parameters = TPMWriter()
        parameters.sized([])  // nonceTPM
        parameters.sized([])  // cpHashA
        parameters.sized([])  // policyRef
        parameters.u32(0)  // expiration
        _ = try execute(
            "PolicySecret", code: TPMConstants.policySecret, handles: [TPMConstants.rhEndorsement, session],
            sessions: [.password], parameters: parameters.bytes)
    }

    /// TPM2_ActivateCredential: `credentialBlob` (TPM2B_ID_OBJECT) and `encryptedSecret` (TPM2B_ENCRYPTED_SECRET),
    /// both with their size fields, for the object `activate` under `endorsementKey`; returns the credential.
    func activateCredential(
        activate: UInt32, endorsementKey: UInt32, credentialBlob: [UInt8], encryptedSecret: [UInt8]
    ) throws(GuestAgentError) -> [UInt8] {
        let session = try startPolicySession()
        do throws(GuestAgentError) {
            try policySecretEndorsement(session)
            // Without continueSession the TPM flushes the policy session when the command succeeds.
            var response = try execute(
                "ActivateCredential", code: TPMConstants.activateCredential, handles: [activate, endorsementKey],
                sessions: [.password, .policy(session)], parameters: credentialBlob + encryptedSecret)
            return try Self.sized(&response.parameters, "certInfo")
        } catch {
            flush(session)
            throw error
        }
    }

    /// TPM2_Quote over `pcrs` of the SHA-256 bank with the key's own scheme; the TPMS_ATTEST and the TPMT_SIGNATURE.
    func quote(key: UInt32, nonce: [UInt8], pcrs: [Int]) throws(GuestAgentError) -> (attest: [UInt8], signature: [UInt8]) {
        var select: [UInt8] = [0, 0, 0]
        for pcr in pcrs where pcr >= 0 && pcr < 24 { select[pcr / 8] |= 1 << UInt8(pcr % 8) }
        var parameters = TPMWriter()
        parameters.sized(nonce)  // qualifyingData
        parameters.u16(TPMConstants.algorithmNull)  // inScheme: the key's
        parameters.u32(1)  // TPML_PCR_SELECTION: one bank
        parameters.u16(TPMConstants.sha256)
        parameters.u8(3)
        parameters.bytes += select
        var response = try execute(
            "Quote", code: TPMConstants.quote, handles: [key], sessions: [.password], parameters: parameters.bytes)
        let attest = try Self.sized(&response.parameters, "quoted")
        let signature = (try? response.parameters.readBytes(response.parameters.remaining, field: "signature")) ?? []
        guard !attest.isEmpty, !signature.isEmpty else {
            throw GuestAgentError(.malformedResponse, "TPM2_Quote returned no attestation or no signature")
        }
        return (attest, signature)
    }
}

/// The TPM 2.0 constants the agent uses (Part 2).
enum TPMConstants {
    static let noSessions: UInt16 = 0x8001
    static let withSessions: UInt16 = 0x8002
    static let createPrimary: UInt32 = 0x0000_0131
    static let activateCredential: UInt32 = 0x0000_0147
    static let policySecret: UInt32 = 0x0000_0151
    static let quote: UInt32 = 0x0000_0158
    static let flushContext: UInt32 = 0x0000_0165
    static let readPublic: UInt32 = 0x0000_0173
    static let startAuthSession: UInt32 = 0x0000_0176
    static let rhEndorsement: UInt32 = 0x4000_000B
    static let rhNull: UInt32 = 0x4000_0007
    static let passwordSession: UInt32 = 0x4000_0009
    /// Where swtpm_setup (and the TCG's EK credential profile) keeps the RSA EK.
    static let persistentRSAEK: UInt32 = 0x8101_0001
    static let rsa: UInt16 = 0x0001
    static let sha256: UInt16 = 0x000B
    static let aes: UInt16 = 0x0006
    static let cfb: UInt16 = 0x0043
    static let algorithmNull: UInt16 = 0x0010
    static let rsassa: UInt16 = 0x0014

    /// The TCG default RSA EK (EK Credential Profile 2.0, template L-1): RSA-2048, AES-128-CFB, the PolicySecret
    /// (endorsement) authPolicy, unique = 256 zero bytes.
    static var endorsementKeyTemplate: [UInt8] {
        var t = TPMWriter()
        t.u16(rsa)
        t.u16(sha256)
        t.u32(0x0003_00B2)  // fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted, decrypt
        t.sized([
            0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
            0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
        ])
        t.u16(aes)
        t.u16(128)
        t.u16(cfb)
        t.u16(algorithmNull)
        t.u16(2048)
        t.u32(0)
        t.sized([UInt8](repeating: 0, count: 256))
        return t.bytes
    }

    /// The attestation key: RSA-2048, restricted signing with RSASSA-SHA256, fixedTPM/fixedParent,
    /// sensitiveDataOrigin, userWithAuth (empty authorization), no policy.
    static var attestationKeyTemplate: [UInt8] {
        var t = TPMWriter()
        t.u16(rsa)
        t.u16(sha256)
        t.u32(0x0005_0072)  // fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign
        t.sized([])
        t.u16(algorithmNull)  // symmetric
        t.u16(rsassa)
        t.u16(sha256)
        t.u16(2048)
        t.u32(0)
        t.sized([])
        return t.bytes
    }
}

/// Appends TPM fields, big-endian.
struct TPMWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func u32(_ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
    /// A TPM2B: u16 size, then the bytes.
    mutating func sized(_ value: [UInt8]) {
        u16(UInt16(value.count))
        bytes += value
    }
}
