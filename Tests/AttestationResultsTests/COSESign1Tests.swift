import AttestationResults
import Crypto
import Foundation
import Testing

@Suite("COSE_Sign1 through libcbor")
struct COSESign1Tests {
    /// RFC 9052 Appendix C.2.1 ("Single ECDSA Signature"), ES256 over "This is the content." with key "11".
    static let rfcExample = hex(
        "d28443a10126a10442313154546869732069732074686520636f6e74656e742e5840"
            + "8eb33e4ca31d1c465ab05aac34cc6b23d58fef5c083106c4d25a91aef0b0117e"
            + "2af9a291aa32e14ab834dc56ed2a223444547e01f11d3b0916e5a4c345cacb36")
    /// RFC 9052 Appendix C.7.1, public key "11" (P-256), as an uncompressed point.
    static let rfcKey = hex(
        "04" + "bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff"
            + "20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e")

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    @Test("the RFC 9052 example decodes, re-encodes byte for byte, and its signature verifies")
    func rfcExampleRoundTrip() throws {
        let message = try COSESign1(encoded: Self.rfcExample)
        #expect(message.protectedHeader == [0xA1, 0x01, 0x26])
        #expect(try message.algorithm() == .es256)
        #expect(message.unprotectedHeader == [CBORMapEntry(.int(4), .bytes(Array("11".utf8)))])
        #expect(message.payload == Array("This is the content.".utf8))
        #expect(try message.encoded() == Self.rfcExample)
        let key = try P256.Signing.PublicKey(x963Representation: Self.rfcKey)
        #expect(try message.isValidSignature(publicKey: .p256(key)))
    }

    @Test("a signed ES384 message round-trips byte-exactly and verifies only unmodified")
    func signVerifyRoundTrip() throws {
        let key = P384.Signing.PrivateKey()
        let payload = Array(#"{"eat_profile":"tag:github.com,2023:veraison/ear"}"#.utf8)
        let message = try COSESign1.sign(payload: payload, key: key, keyID: Array("cmk-test".utf8))
        let bytes = try message.encoded()
        #expect(bytes.first == 0xD2)  // tag 18
        let decoded = try COSESign1(encoded: bytes)
        #expect(decoded == message)
        #expect(try decoded.encoded() == bytes)
        #expect(try decoded.isValidSignature(publicKey: .p384(key.publicKey)))
        // Untagged form decodes to the same message.
        #expect(try COSESign1(encoded: message.encoded(tagged: false)) == message)

        // Any change to the payload, the protected header or the external AAD breaks the signature.
        let tamperedPayload = COSESign1(
            protectedHeader: message.protectedHeader, unprotectedHeader: message.unprotectedHeader,
            payload: payload + [0x20], signature: message.signature)
        #expect(try !tamperedPayload.isValidSignature(publicKey: .p384(key.publicKey)))
        #expect(try !message.isValidSignature(publicKey: .p384(key.publicKey), externalAAD: [1]))
        #expect(try !message.isValidSignature(publicKey: .p384(P384.Signing.PrivateKey().publicKey)))
        // A key of another curve than the header names never verifies.
        #expect(try !message.isValidSignature(publicKey: .p256(P256.Signing.PrivateKey().publicKey)))
    }

    @Test("every flipped byte of an encoded message is rejected or fails verification")
    func everyByteFlipDetected() throws {
        let key = P384.Signing.PrivateKey()
        let bytes = try COSESign1.sign(payload: Array("payload".utf8), key: key).encoded()
        for index in bytes.indices {
            var mutated = bytes
            mutated[index] ^= 0x01
            guard let message = try? COSESign1(encoded: mutated) else { continue }
            #expect((try? message.isValidSignature(publicKey: .p384(key.publicKey))) != true, "byte \(index)")
        }
    }

    @Test("malformed CBOR, trailing bytes, wrong tags and wrong shapes are distinct errors")
    func rejectsBadInput() throws {
        func code(_ bytes: [UInt8]) -> CBORError.Code? {
            do {
                _ = try COSESign1(encoded: bytes)
                return nil
            } catch { return error.code }
        }
        #expect(code([]) == .malformed)
        #expect(code([0xD2, 0x84]) == .malformed)
        #expect(code(Self.rfcExample + [0x00]) == .trailingBytes)
        var wrongTag = Self.rfcExample
        wrongTag[0] = 0xD1  // tag 17: COSE_Mac0
        #expect(code(wrongTag) == .invalidStructure)
        #expect(code(try CBORValue.array([.bytes([]), .map([]), .null]).encoded()) == .invalidStructure)
        #expect(code([0xFB, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]) == .unsupported)  // a float
        // Indefinite-length array (0x9F ... 0xFF).
        #expect(code([0x9F, 0x40, 0xA0, 0xF6, 0x40, 0xFF]) == .unsupported)
    }

    @Test("lengths and counts larger than the input are refused before libcbor allocates for them")
    func declaredSizes() throws {
        func error(_ bytes: [UInt8]) -> CBORError? {
            do {
                _ = try CBORValue(encoded: bytes)
                return nil
            } catch { return error }
        }
        let cases: [(bytes: [UInt8], says: String)] = [
            ([0x9B, 0, 0, 0, 1, 0, 0, 0, 0, 0x00], "declares 4294967296 elements; 1 bytes are left"),  // 2^32-element array
            ([0xBA, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00], "declares 4294967295 entries; 2 bytes are left"),
            ([0xBB, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x00], "entries"),  // a count whose double overflows
            ([0x5A, 0x7F, 0xFF, 0xFF, 0xFF, 0x01], "declares 2147483647 bytes; 1 are left"),
            ([0x82, 0x44, 0xA1, 0x01, 0x00], "declares 4 bytes; 3 are left"),  // cut inside a string
            ([0x82, 0x81, 0x01], "where an item should start"),  // an array one element short
            ([0x1B, 0x00], "inside the head"),
        ]
        for test in cases {
            let refused = try #require(error(test.bytes), "\(test.bytes) was accepted")
            #expect(refused.code == .malformed, "\(test.bytes): \(refused)")
            #expect(refused.reason.contains(test.says), "\(refused.reason)")
        }
        #expect(error([0x1C])?.code == .malformed)  // reserved additional information 28
        #expect(error([0x5F, 0x41, 0x00, 0xFF])?.code == .unsupported)  // indefinite byte string
        // Sizes that fit are still read: a 3-element array of empty strings, a 1-entry map.
        #expect(error([0x83, 0x40, 0x40, 0x40]) == nil)
        #expect(error([0xA1, 0x01, 0x02]) == nil)
    }

    @Test("deep nesting is refused instead of exhausting the stack")
    func depthLimit() {
        let deep = [UInt8](repeating: 0x81, count: 10_000) + [0x00]
        #expect { try CBORValue(encoded: deep) } throws: { error in
            guard let error = error as? CBORError else { return false }
            return error.code == .tooDeep || error.code == .malformed
        }
    }

    @Test("integers encode in their shortest form and decode back", arguments: [
        Int64(0), 23, 24, 255, 256, 65535, 65536, 4_294_967_295, 4_294_967_296, -1, -24, -25, -256, -257, Int64.min, Int64.max,
    ])
    func integerEncoding(value: Int64) throws {
        let encoded = try CBORValue.int(value).encoded()
        let magnitude = value >= 0 ? UInt64(value) : UInt64(-(value + 1))
        let expectedLength = magnitude < 24 ? 1 : magnitude <= 0xFF ? 2 : magnitude <= 0xFFFF ? 3 : magnitude <= 0xFFFF_FFFF ? 5 : 9
        #expect(encoded.count == expectedLength)
        #expect(try CBORValue(encoded: encoded).intValue == value)
    }
}
