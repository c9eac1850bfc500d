import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import GuestProtocol
import Testing

/// HPKE sealing of handed-over secrets: what opens, what must not, and an independent implementation's view.
@Suite("Sealed secrets (HPKE)")
struct HandoverSealTests {
    let recipient = Curve25519.KeyAgreement.PrivateKey()
    let nonce: [UInt8] = (0..<32).map { UInt8($0 * 3) }
    let secrets: [(name: String, value: [UInt8])] = [
        ("vault:db/credentials", Array("user=app password=correct horse".utf8)),
        ("api-token", Array(repeating: 0x5A, count: 100)),
        ("empty", []),
    ]
    var binding: HandoverSeal.Binding { .init(instance: "db-1", nonce: nonce, policyDigest: "sha256:abcd") }

    func seal() throws -> HandoverSeal.Sealed {
        try HandoverSeal.seal(secrets, to: Array(recipient.publicKey.rawRepresentation), binding: binding)
    }

    func opens(_ message: SealedSecrets, key: Curve25519.KeyAgreement.PrivateKey? = nil, nonce: [UInt8]? = nil) -> Bool
    {
        (try? HandoverSeal.open(message, with: key ?? recipient, nonce: nonce ?? self.nonce)) != nil
    }

    @Test("the attested key opens every secret in order, and the receipts verify only for what was sealed")
    func roundTrip() throws {
        let sealed = try seal()
        #expect(sealed.message.secrets.map(\.name) == secrets.map(\.name))
        #expect(sealed.message.encapsulatedKey.count == 32)
        for (item, secret) in zip(sealed.message.secrets, secrets) {
            #expect(item.ciphertext.count == secret.value.count + 16)
            #expect(
                !item.ciphertext.isEmpty
                    && (secret.value.isEmpty || item.ciphertext.prefix(secret.value.count) != secret.value[...]))
        }
        let opened = try HandoverSeal.open(sealed.message, with: recipient, nonce: nonce)
        #expect(opened.secrets.map(\.name) == secrets.map(\.name))
        #expect(opened.secrets.map(\.value) == secrets.map(\.value))
        #expect(opened.receiptKey == sealed.receiptKey)
        let proof = HandoverSeal.receipt(name: "api-token", contents: secrets[1].value, key: opened.receiptKey)
        #expect(
            HandoverSeal.verifyReceipt(proof, name: "api-token", contents: secrets[1].value, key: sealed.receiptKey))
        #expect(
            !HandoverSeal.verifyReceipt(proof, name: "api-token", contents: secrets[0].value, key: sealed.receiptKey))
        #expect(!HandoverSeal.verifyReceipt(proof, name: "empty", contents: secrets[1].value, key: sealed.receiptKey))
        #expect(
            !HandoverSeal.verifyReceipt(
                proof, name: "api-token", contents: secrets[1].value, key: SymmetricKey(size: .bits256)))
        // Two sealings of the same secrets share nothing (fresh encapsulation each time).
        #expect(try seal().message.encapsulatedKey != sealed.message.encapsulatedKey)
    }

    @Test("another key, instance, nonce or policy does not open")
    func wrongBinding() throws {
        let message = try seal().message
        #expect(opens(message))
        #expect(!opens(message, key: Curve25519.KeyAgreement.PrivateKey()))
        var otherNonce = nonce
        otherNonce[0] ^= 1
        #expect(!opens(message, nonce: otherNonce))
        #expect(!opens(message, nonce: []))
        var otherInstance = message
        otherInstance.instance = "db-2"
        #expect(!opens(otherInstance))
        var otherPolicy = message
        otherPolicy.policyDigest = "sha256:abce"
        #expect(!opens(otherPolicy))
        do {
            _ = try HandoverSeal.open(otherInstance, with: recipient, nonce: nonce)
        } catch {
            #expect(error.code == .openFailed)
            #expect(error.reason.contains("secret 1 of 3 (vault:db/credentials)"))
        }
    }

    @Test("a flipped bit anywhere in a ciphertext or the encapsulated key does not open")
    func flippedBytes() throws {
        let message = try seal().message
        for secret in message.secrets.indices {
            for offset in message.secrets[secret].ciphertext.indices {
                var altered = message
                altered.secrets[secret].ciphertext[offset] ^= 0x01
                #expect(!opens(altered), "secret \(secret), byte \(offset)")
            }
        }
        for offset in message.encapsulatedKey.indices {
            var altered = message
            altered.encapsulatedKey[offset] ^= 0x80
            #expect(!opens(altered), "enc byte \(offset)")
        }
    }

    @Test("renamed, reordered or dropped secrets do not open")
    func structure() throws {
        let message = try seal().message
        var renamed = message
        renamed.secrets[1].name = "api-token2"
        #expect(!opens(renamed))
        var reordered = message
        reordered.secrets.swapAt(0, 1)
        #expect(!opens(reordered))
        var droppedLast = message
        droppedLast.secrets.removeLast()
        #expect(!opens(droppedLast))
        var droppedFirst = message
        droppedFirst.secrets.removeFirst()
        #expect(!opens(droppedFirst))
    }

    @Test("unknown versions and suites are refused before any key is used; bad input is a typed error")
    func refusals() throws {
        var message = try seal().message
        message.version = 2
        #expect(throws: HandoverSealError.self) { try HandoverSeal.open(message, with: recipient, nonce: nonce) }
        message.version = 1
        message.suite = HandoverSuite(kem: 0x0010, kdf: 1, aead: 1)
        #expect { try HandoverSeal.open(message, with: recipient, nonce: nonce) } throws: {
            ($0 as? HandoverSealError)?.code == .unsupported
        }
        #expect { try HandoverSeal.seal(secrets, to: [1, 2, 3], binding: binding) } throws: {
            ($0 as? HandoverSealError)?.code == .invalidKey
        }
        let key = Array(recipient.publicKey.rawRepresentation)
        #expect { try HandoverSeal.seal([("etc passwd", [1])], to: key, binding: binding) } throws: {
            ($0 as? HandoverSealError)?.code == .invalidInput
        }
        let tooMany = (0...HandoverLimits.maximumSecrets).map { (name: "s\($0)", value: [UInt8]()) }
        #expect { try HandoverSeal.seal(tooMany, to: key, binding: binding) } throws: {
            ($0 as? HandoverSealError)?.code == .invalidInput
        }
        #expect {
            try HandoverSeal.seal(
                [("big", [UInt8](repeating: 0, count: HandoverLimits.maximumSecretBytes + 1))], to: key,
                binding: binding)
        } throws: {
            ($0 as? HandoverSealError)?.code == .invalidInput
        }
    }

    @Test("secret references become file names that never collide and are never paths")
    func fileNames() {
        #expect(SecretName.fileName("vault:db/credentials") == "vault%3Adb%2Fcredentials")
        #expect(SecretName.fileName("api-token") == "api-token")
        #expect(SecretName.fileName("a:b") != SecretName.fileName("a/b"))
        for invalid in ["", ".", "..", "a b", "a%3Ab", "ü", String(repeating: "x", count: 129), "a\u{0}b"] {
            #expect(SecretName.fileName(invalid) == nil, "\(invalid)")
        }
        #expect(SecretName.fileName("../x")?.contains("/") == false)
    }

    @Test("the handover messages survive encode and decode, and a truncation at any offset is an error")
    func messages() throws {
        let sealed = try seal().message
        let samples: [GuestMessage] = [
            .sealedSecrets(sealed),
            .secretsDelivered([SecretReceipt(name: "api-token", proof: Array(repeating: 7, count: 32))]),
            .attachVolumes([VolumeAttachment(name: "data", serial: "cmkvol0")]),
            .volumesAttached([AttachedVolume(name: "data", device: "vda", sizeBytes: 16 << 20)]),
            .statusRequest,
            .status(
                AgentStatus(
                    attested: true, secretFiles: ["api-token"], volumes: ["data"], channelPeers: ["p"],
                    handoverReceived: true)),
        ]
        for message in samples {
            let frame = message.encoded()
            #expect(try GuestMessage(body: Array(frame.dropFirst(4))) == message)
            for cut in 5..<frame.count {
                #expect(throws: BinaryFormatError.self, "\(message.kind) cut at \(cut)") {
                    try GuestMessage(body: Array(frame[4..<cut]))
                }
            }
            #expect(throws: BinaryFormatError.self) { try GuestMessage(body: Array(frame.dropFirst(4)) + [0]) }
        }
    }

    @Test("decoding refuses an unknown version, too many items, oversized fields and invalid names")
    func boundedDecoding() throws {
        let sealed = try seal().message
        var body = Array(GuestMessage.sealedSecrets(sealed).encoded().dropFirst(4))
        body[1] = 2  // the version byte, right after the type
        #expect { try GuestMessage(body: body) } throws: { "\($0)".contains("version") }

        func frame(_ build: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes: [UInt8] = []
            build(&bytes)
            return bytes
        }
        func u32(_ value: Int) -> [UInt8] {
            [UInt8(value >> 24 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        }
        // 65 receipts: over the bound, refused from the count alone.
        #expect(throws: BinaryFormatError.self) { try GuestMessage(body: frame { $0 = [0x95] + u32(65) }) }
        // A receipt whose name is no secret reference.
        #expect(throws: BinaryFormatError.self) {
            try GuestMessage(body: frame { $0 = [0x95] + u32(1) + u32(5) + Array("a\u{0}b c".utf8) + u32(0) })
        }
        #expect(throws: BinaryFormatError.self) {
            try GuestMessage(body: frame { $0 = [0x95] + u32(1) + u32(2) + Array("..".utf8) + u32(0) })
        }
        // A volume serial over 20 bytes.
        #expect(throws: BinaryFormatError.self) {
            try GuestMessage(
                body: frame { $0 = [0x16] + u32(1) + u32(1) + [0x61] + u32(21) + Array(repeating: 0x61, count: 21) })
        }
        // An encapsulated key longer than any KEM's.
        #expect(throws: BinaryFormatError.self) {
            try GuestMessage(
                body: frame {
                    $0 =
                        [0x15, 1, 0, 0x20, 0, 1, 0, 3] + u32(1) + [0x61] + u32(1) + [0x62] + u32(200)
                        + Array(repeating: 0, count: 200) + u32(0)
                })
        }
        // A status flag that is neither 0 nor 1.
        #expect(throws: BinaryFormatError.self) {
            try GuestMessage(body: [0x97, 2] + u32(0) + u32(0) + u32(0) + [0])
        }
    }

    @Test("random bytes never crash the decoder", .timeLimit(.minutes(3)))
    func fuzz() {
        var random = SeededGenerator(state: 0x6870_6b65)
        let seeds = [try? seal().message].compactMap { $0 }.map {
            Array(GuestMessage.sealedSecrets($0).encoded().dropFirst(4))
        }
        for round in 0..<20_000 {
            var body: [UInt8]
            if round % 2 == 0, let seed = seeds.first {
                body = seed
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    body[Int.random(in: 0..<body.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            } else {
                let kinds: [UInt8] = [0x15, 0x95, 0x16, 0x96, 0x17, 0x97]
                body =
                    [kinds[round % kinds.count]]
                    + (0..<Int.random(in: 0..<64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random)
                    }
            }
            _ = try? GuestMessage(body: body)
        }
    }
}

/// The same suite in pyhpke (an independent Python implementation of RFC 9180): it opens what cmk seals, and cmk
/// opens what it seals, with the same info and associated data.
@Suite("Sealed secrets cross-checked with pyhpke")
struct HandoverSealCrossCheckTests {
    static let script = """
        import sys, json
        from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey
        suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)
        job = json.load(sys.stdin)
        h = bytes.fromhex
        if job["mode"] == "open":
            sk = suite.kem.deserialize_private_key(h(job["private"]))
            ctx = suite.create_recipient_context(h(job["enc"]), sk, info=h(job["info"]))
            out = [ctx.open(h(c), aad=h(a)).hex() for c, a in zip(job["ciphertexts"], job["aads"])]
            print(json.dumps({"plaintexts": out, "export": ctx.export(job["exportContext"].encode(), 32).hex()}))
        else:
            pk = suite.kem.deserialize_public_key(h(job["public"]))
            enc, ctx = suite.create_sender_context(pk, info=h(job["info"]))
            cts = [ctx.seal(h(p), aad=h(a)).hex() for p, a in zip(job["plaintexts"], job["aads"])]
            print(json.dumps({"enc": enc.hex(), "ciphertexts": cts}))
        """

    func python(_ job: [String: Any]) throws -> [String: Any] {
        let output = try ExternalTool.run(
            ExternalTool.python, ["-c", Self.script], input: try JSONSerialization.data(withJSONObject: job))
        try #require(
            output.status == 0, "pyhpke failed (scripts/setup installs it into the venv): \(output.standardError)")
        return try #require(try JSONSerialization.jsonObject(with: Data(output.standardOutput.utf8)) as? [String: Any])
    }

    let secrets: [(name: String, value: [UInt8])] = [
        ("vault:db/credentials", Array("s3cr3t".utf8)), ("blob", (0..<200).map { UInt8($0) }),
    ]
    let binding = HandoverSeal.Binding(
        instance: "web-7", nonce: Array(repeating: 0xA5, count: 32), policyDigest: "sha256:00ff")

    @Test("pyhpke opens cmk's sealed secrets and derives the same receipt key", .timeLimit(.minutes(3)))
    func pythonOpensSwift() throws {
        let key = Curve25519.KeyAgreement.PrivateKey()
        let sealed = try HandoverSeal.seal(secrets, to: Array(key.publicKey.rawRepresentation), binding: binding)
        let aads = secrets.indices.map {
            Hex.encode(HandoverSeal.associatedData(name: secrets[$0].name, index: $0, count: secrets.count))
        }
        let answer = try python([
            "mode": "open", "private": Hex.encode(Array(key.rawRepresentation)),
            "enc": Hex.encode(sealed.message.encapsulatedKey),
            "info": Hex.encode(binding.info), "ciphertexts": sealed.message.secrets.map { Hex.encode($0.ciphertext) },
            "aads": aads,
            "exportContext": "cmk/handover/v1/receipt",
        ])
        #expect(answer["plaintexts"] as? [String] == secrets.map { Hex.encode($0.value) })
        #expect(answer["export"] as? String == sealed.receiptKey.withUnsafeBytes { Hex.encode(Array($0)) })
    }

    @Test(
        "cmk opens what pyhpke seals with the same info and associated data; pyhpke's info for another nonce does not open",
        .timeLimit(.minutes(3)))
    func swiftOpensPython() throws {
        let key = Curve25519.KeyAgreement.PrivateKey()
        let aads = secrets.indices.map {
            Hex.encode(HandoverSeal.associatedData(name: secrets[$0].name, index: $0, count: secrets.count))
        }
        let answer = try python([
            "mode": "seal", "public": Hex.encode(Array(key.publicKey.rawRepresentation)),
            "info": Hex.encode(binding.info),
            "plaintexts": secrets.map { Hex.encode($0.value) }, "aads": aads,
        ])
        let encText = try #require(answer["enc"] as? String)
        let enc = try #require(Hex.decode(encText))
        let texts = try #require(answer["ciphertexts"] as? [String])
        let ciphertexts = texts.compactMap { Hex.decode($0) }
        try #require(ciphertexts.count == texts.count)
        let message = SealedSecrets(
            instance: binding.instance, policyDigest: binding.policyDigest, encapsulatedKey: enc,
            secrets: zip(secrets, ciphertexts).map { SealedSecret(name: $0.0.name, ciphertext: $0.1) })
        let opened = try HandoverSeal.open(message, with: key, nonce: binding.nonce)
        #expect(opened.secrets.map(\.value) == secrets.map(\.value))
        #expect(throws: HandoverSealError.self) {
            try HandoverSeal.open(message, with: key, nonce: Array(repeating: 0, count: 32))
        }
    }
}
