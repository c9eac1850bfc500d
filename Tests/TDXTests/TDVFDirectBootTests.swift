import BinaryFormat
import CMKTesting
import Crypto
import Foundation
import TDX
import Testing

@Suite("TDVF direct boot: Authenticode, QEMU's kernel patch, the RTMR1/RTMR2 log")
struct TDVFDirectBootTests {
    static func kernel() throws -> (path: String, bytes: [UInt8]) {
        let boot = SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel/boot")
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: boot.path).first { $0.hasPrefix("vmlinuz") },
            "the guest kernel is missing from \(boot.path); run scripts/setup")
        let path = boot.appendingPathComponent(name).path
        return (path, [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    @Test("the Authenticode SHA-256 of Debian's signed kernel is the digest Debian's Secure Boot signature covers")
    func authenticodeMatchesDebiansSignature() throws {
        let kernel = try Self.kernel()
        // osslsigncode (independent code) prints the digest inside the signature and the one it recomputes.
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/osslsigncode"), ["verify", "-in", kernel.path])
        let text = output.standardOutput + output.standardError
        func digest(_ label: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix(label) }?.split(separator: ":").last?
                .trimmingCharacters(in: .whitespaces).lowercased()
        }
        let signed = try #require(digest("Current message digest"), "osslsigncode printed no digest: \(text)")
        #expect(text.contains("Message digest algorithm  : SHA256"))
        #expect(Hex.encode(try PEAuthenticode.sha256(kernel.bytes)) == signed)
        #expect(digest("Calculated message digest") == signed)
        #expect(try PEAuthenticode.sha384(kernel.bytes).count == 48)
    }

    @Test("truncated or foreign images are refused with an error, at every length of the headers")
    func truncations() throws {
        let kernel = try Self.kernel().bytes
        for length in stride(from: 0, through: 4096, by: 7) + [kernel.count / 2, kernel.count - 1] {
            #expect(throws: TDXMeasurementError.self) { try PEAuthenticode.sha384(Array(kernel.prefix(length))) }
        }
        var random = SeededGenerator(state: 7)
        for _ in 0..<50 {
            var bytes = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) }
            bytes[0x3C] = 0x40
            bytes[0x3D] = 0
            bytes[0x3E] = 0
            bytes[0x3F] = 0
            bytes.replaceSubrange(0x40..<0x44, with: [0x50, 0x45, 0, 0])  // "PE\0\0" with random headers after it
            _ = try? PEAuthenticode.sha384(bytes)  // an error or a digest, never a crash
        }
    }

    @Test("QEMU's patch changes only the setup header: loader, heap, command line, and the initrd below the ACPI area")
    func kernelPatch() throws {
        let kernel = try Self.kernel().bytes
        let patched = try TDVFDirectBoot.patchedKernel(kernel, initrdSize: 0x123456, memoryMiB: 1024)
        #expect(patched.count == kernel.count)
        #expect(patched[..<0x210] == kernel[..<0x210] && patched[0x22C...] == kernel[0x22C...])
        func read32(_ offset: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 | UInt32(patched[offset + $1]) << (8 * UInt32($1)) }
        }
        #expect(patched[0x210] == 0xB0)
        #expect(read32(0x21C) == 0x123456)
        let address = read32(0x218)
        #expect(address % 4096 == 0 && address + 0x123456 < (1 << 30) - 0x28000)
        #expect(read32(0x228) == 0x20000)
        // More memory moves the initrd, so the measured kernel differs.
        let more = try TDVFDirectBoot.patchedKernel(kernel, initrdSize: 0x123456, memoryMiB: 2048)
        #expect(more[0x218..<0x21C] != patched[0x218..<0x21C])
        #expect(throws: TDXMeasurementError.self) {
            try TDVFDirectBoot.patchedKernel(Array(kernel.prefix(100)), initrdSize: 0, memoryMiB: 512)
        }
        #expect(throws: TDXMeasurementError.self) {
            try TDVFDirectBoot.patchedKernel(kernel, initrdSize: 600 << 20, memoryMiB: 512)
        }
    }

    @Test("RTMR1 and RTMR2 are the extends of the documented events, recomputed here step by step")
    func registers() throws {
        let kernel = try Self.kernel().bytes
        let initrd = Array("an initrd".utf8)
        let boot = try TDVFDirectBoot(
            .init(kernel: kernel, initrd: initrd, commandLine: "console=ttyS0", memoryMiB: 1024))
        func sha(_ bytes: [UInt8]) -> [UInt8] { Array(SHA384.hash(data: bytes)) }
        func extend(_ register: [UInt8], _ digest: [UInt8]) -> [UInt8] { sha(register + digest) }
        let zero = [UInt8](repeating: 0, count: 48)
        let kernelDigest = try PEAuthenticode.sha384(
            try TDVFDirectBoot.patchedKernel(kernel, initrdSize: UInt32(initrd.count), memoryMiB: 1024))
        var rtmr1 = extend(zero, kernelDigest)
        for event in ["Calling EFI Application from Boot Option"] { rtmr1 = extend(rtmr1, sha(Array(event.utf8))) }
        rtmr1 = extend(rtmr1, sha([0, 0, 0, 0]))
        for event in ["Exit Boot Services Invocation", "Exit Boot Services Returned with Success"] {
            rtmr1 = extend(rtmr1, sha(Array(event.utf8)))
        }
        let options = "console=ttyS0 initrd=initrd\0".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let rtmr2 = extend(extend(zero, sha(options)), sha(initrd))
        #expect(boot.kernelDigest == kernelDigest)
        #expect(boot.rtmrs == [zero, rtmr1, rtmr2, zero])
        #expect(boot.events.map(\.mrIndex) == [2, 2, 2, 3, 3, 2, 2])
        // Without an initrd, the load options carry no initrd= and there is no initrd event.
        let bare = try TDVFDirectBoot(.init(kernel: kernel, initrd: nil, commandLine: "console=ttyS0", memoryMiB: 1024))
        #expect(bare.events.count == 6)
        let bareOptions = "console=ttyS0\0".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(bare.rtmrs[2] == extend(zero, sha(bareOptions)))
    }
}
