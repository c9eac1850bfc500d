import BinaryFormat
import CMKTesting
import Foundation
import TDX
import Testing

@Suite("TDX MRTD from TDVF metadata")
struct TDXMRTDTests {
    static let firmwarePath = "/usr/share/ovmf/OVMF.fd"

    /// The same algorithm written independently in Python (hashlib), run on the same file.
    static func pythonMRTD(_ path: String, perPage: Bool) throws -> String {
        let script = """
            import hashlib, struct, sys
            d = open(sys.argv[1], 'rb').read()
            entry_end = len(d) - 0x20 - 18
            def footer(guid):
                size = struct.unpack_from('<H', d, entry_end)[0]
                start = entry_end + 18 - size
                end = entry_end
                while end > start:
                    s = struct.unpack_from('<H', d, end - 18)[0]
                    g = d[end - 16:end]
                    if g == guid: return d[end - s:end - 18]
                    end -= s
            import uuid
            data = footer(uuid.UUID('e47a6535-984a-4798-865e-4685a7bf8ec2').bytes_le)
            desc = len(d) - struct.unpack_from('<I', data, len(data) - 4)[0]
            n = struct.unpack_from('<I', d, desc + 12)[0]
            h = hashlib.sha384()
            def rec(op, gpa):
                b = bytearray(128); b[0:len(op)] = op; b[16:24] = struct.pack('<Q', gpa); h.update(bytes(b))
            per_page = sys.argv[2] == 'page'
            for i in range(n):
                off, raw, addr, size, typ, attr = struct.unpack_from('<IIQQII', d, desc + 16 + 32 * i)
                if attr & 2: continue
                content = (d[off:off + raw] + bytes(size - raw)) if attr & 1 else b''
                def ext(p):
                    for c in range(16):
                        o = p * 4096 + c * 256
                        rec(b'MR.EXTEND', addr + o); h.update(content[o:o + 256])
                for p in range(size // 4096):
                    rec(b'MEM.PAGE.ADD', addr + p * 4096)
                    if attr & 1 and per_page: ext(p)
                if attr & 1 and not per_page:
                    for p in range(size // 4096): ext(p)
            print(h.hexdigest())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, path, perPage ? "page" : "section"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("Debian's OVMF.fd: both SEAMCALL orders agree with an independent implementation", arguments: TDXMRTD.Order.allCases)
    func debianOVMF(order: TDXMRTD.Order) throws {
        let firmware = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.firmwarePath)))
        let mrtd = try TDXMRTD(firmware: firmware, order: order)
        #expect(mrtd.digest.description == (try Self.pythonMRTD(Self.firmwarePath, perPage: order == .perPage)))
        // BFV 0x1E0000 + CFV 0x20000 + temporary memory and HOB 0x1A000, added; only the BFV is extended.
        #expect(mrtd.pagesAdded == (0x1E0000 + 0x20000 + 0x10000 + 0x2000 + 0x2000 + 0x6000) / 4096)
        #expect(mrtd.chunksExtended == 0x1E0000 / 256)
    }

    @Test("the orders differ; an extended byte changes MRTD, a byte only added does not")
    func sensitivity() throws {
        let firmware = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.firmwarePath)))
        let base = try TDXMRTD(firmware: firmware).digest
        #expect(base != (try TDXMRTD(firmware: firmware, order: .perSection)).digest)
        var code = firmware
        code[0x30000] ^= 1  // inside the boot firmware volume (extended)
        #expect(base != (try TDXMRTD(firmware: code)).digest)
        var variables = firmware
        variables[0x100] ^= 1  // inside the variable store (added, not extended)
        #expect(base == (try TDXMRTD(firmware: variables)).digest)
    }

    @Test("a firmware without TDVF metadata, or with sections outside the file, is an error")
    func refusals() throws {
        #expect(throws: TDXMeasurementError.self) { try TDXMRTD(firmware: [UInt8](repeating: 0, count: 8192)) }
        let code4M = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/usr/share/OVMF/OVMF_CODE_4M.fd")))
        #expect(throws: TDXMeasurementError.self) { try TDXMRTD(firmware: code4M) }
        // The AmdSev tail's TDVF sections point at data outside its 4 KiB.
        #expect(throws: TDXMeasurementError.self) { try TDXMRTD(firmware: SharedVectors.bytes("snp-measure/ovmf_AmdSev_suffix.bin")) }
    }
}
