import Foundation
import GuestAgent
import GuestProtocol
import Glibc

/// A connected pair of UNIX stream sockets: real bytes between the agent and the test.
func socketPair() throws -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw GuestAgentError(.io, "socketpair failed: errno \(errno)")
    }
    return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
}

/// A fresh temporary directory, removed by the caller with `removeTree`.
func temporaryDirectory(_ label: String) throws -> String {
    var template = Array("\(NSTemporaryDirectory())/cmk-guest-\(label)-XXXXXX".utf8CString)
    guard let path = mkdtemp(&template) else { throw GuestAgentError(.io, "mkdtemp failed: errno \(errno)") }
    return String(cString: path)
}

func removeTree(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// Writes a whole file (created or truncated).
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

/// An SEV-SNP ATTESTATION_REPORT-shaped buffer: version 5, REPORT_DATA at 0x50, a recognisable pattern elsewhere.
func fakeSNPReport(reportData: [UInt8]) -> [UInt8] {
    var report = (0..<EvidenceLayout.snpReportSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    report.replaceSubrange(0..<4, with: [5, 0, 0, 0])
    report.replaceSubrange(0x50..<0x90, with: reportData)
    return report
}

/// A certificate table with one VCEK-like entry, padded as the host hands it over.
func fakeCertificateTable(padTo size: Int) -> [UInt8] {
    let vcekGUID: [UInt8] = [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
    ]
    let certificate = [UInt8](repeating: 0xC3, count: 1300)
    var table = vcekGUID + [48, 0, 0, 0] + [0x14, 0x05, 0, 0]  // offset 48, length 1300
    table += [UInt8](repeating: 0, count: 24)  // terminator
    table += certificate
    return table + [UInt8](repeating: 0, count: max(0, size - table.count))
}

/// Runs `body` on its own thread (the agent's loop blocks on its port); `join` waits for it.
final class Background<Result>: @unchecked Sendable {
    private var result: Result?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping () -> Result) {
        nonisolated(unsafe) let body = body
        let thread = Thread { [self] in
            result = body()
            done.signal()
        }
        thread.start()
    }

    /// The result; nil when the thread did not finish within `seconds`.
    func join(seconds: Double = 30) -> Result? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return result
    }
}

/// The test's side of the platform port: answers SEV-SNP report requests as the simulated platform would.
func answerSNPRequest(on port: MessagePort, certificateTable: [UInt8] = []) throws -> [UInt8] {
    guard case .snpReportRequest(let reportData, _)? = try port.receive(milliseconds: 10_000) else {
        throw GuestAgentError(.protocolViolation, "expected an SNP report request")
    }
    try port.send(.snpReportResponse(report: fakeSNPReport(reportData: reportData), certificateTable: certificateTable))
    return reportData
}

/// A directory that behaves like configfs-tsm: `mkdir` makes an entry with its attribute files, a write to `inblob`
/// or `privlevel` bumps `generation`, reading `outblob` gives a report over the last `inblob`. File I/O goes through
/// the agent's own `SystemFiles` on real files.
final class KernelLikeConfigfs: ConfigfsFiles, @unchecked Sendable {
    let root: String
    let provider: String
    let files = SystemFiles()
    /// How many reads of `outblob` see another writer bump `generation` first.
    var racingReads: Int
    /// Whether `mkdir` fails as configfs does when no provider is bound (ENXIO).
    var noProvider = false
    private(set) var createdEntries: [String] = []
    private(set) var writes: [(String, [UInt8])] = []

    init(root: String, provider: String = "sev_guest", racingReads: Int = 0) {
        self.root = root
        self.provider = provider
        self.racingReads = racingReads
    }

    func makeDirectory(_ path: String) throws(GuestAgentError) {
        if noProvider { throw GuestAgentError(.unavailable, "mkdir \(path): ENXIO", systemError: ENXIO) }
        try files.makeDirectory(path)
        createdEntries.append(path)
        var attributes = ["generation": Array("0\n".utf8), "provider": Array("\(provider)\n".utf8), "inblob": []]
        attributes["outblob"] = []
        if provider == "sev_guest" {
            attributes["auxblob"] = []
            attributes["privlevel"] = []
            attributes["privlevel_floor"] = Array("0\n".utf8)
        }
        for (name, bytes) in attributes { try? writeFile("\(path)/\(name)", bytes) }
    }

    func removeDirectory(_ path: String) throws(GuestAgentError) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { unlink("\(path)/\(name)") }
        try files.removeDirectory(path)
    }

    func read(_ path: String) throws(GuestAgentError) -> [UInt8] {
        if path.hasSuffix("/outblob"), racingReads > 0 {
            racingReads -= 1
            bumpGeneration(entry: (path as NSString).deletingLastPathComponent)
        }
        return try files.read(path)
    }

    func write(_ path: String, _ bytes: [UInt8]) throws(GuestAgentError) {
        try files.write(path, bytes)
        writes.append(((path as NSString).lastPathComponent, bytes))
        let entry = (path as NSString).deletingLastPathComponent
        if path.hasSuffix("/inblob") || path.hasSuffix("/privlevel") { bumpGeneration(entry: entry) }
        if path.hasSuffix("/inblob") {
            if provider == "sev_guest" {
                try? writeFile("\(entry)/outblob", fakeSNPReport(reportData: bytes))
                try? writeFile("\(entry)/auxblob", fakeCertificateTable(padTo: 0))
            } else {
                try? writeFile("\(entry)/outblob", [4, 0, 2, 0] + bytes)  // not a real quote: the bytes pass through
            }
        }
    }

    func exists(_ path: String) -> Bool { files.exists(path) }

    private func bumpGeneration(entry: String) {
        let text = (try? readFile("\(entry)/generation")).map { String(decoding: $0, as: UTF8.self) } ?? "0"
        let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try? writeFile("\(entry)/generation", Array("\(value + 1)\n".utf8))
    }
}

/// A stand-in for `/dev/sev-guest` that reads and writes the request structures through the pointers the provider
/// passes, as the kernel driver does.
final class FakeSEVGuestDevice: DeviceControl, @unchecked Sendable {
    /// The certificate table the "host" has; its size decides whether the first buffer is too small.
    var hostCertificates: [UInt8]
    /// The errno SNP_GET_EXT_REPORT fails with, when set (ENOTTY: a driver without extended requests).
    var extendedFailure: Int32?
    /// EXITINFO2 and errno for every request, when set.
    var failure: (errno: Int32, exitInfo2: UInt64)?
    /// The MSG_REPORT_RSP status to answer with.
    var status: UInt32 = 0
    private(set) var calls: [(request: UInt, certificateLength: UInt32?)] = []
    private(set) var seenVMPL: UInt32?

    init(hostCertificates: [UInt8]) { self.hostCertificates = hostCertificates }

    func control(_ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32 {
        let header = UnsafeMutableRawBufferPointer(start: argument, count: SNPGuestABI.requestSize)
        guard header[SNPGuestABI.requestMessageVersionOffset] == 1 else { return EINVAL }
        let requestAddress = header.load(fromByteOffset: SNPGuestABI.requestRequestDataOffset, as: UInt64.self)
        let responseAddress = header.load(fromByteOffset: SNPGuestABI.requestResponseDataOffset, as: UInt64.self)
        let isExtended = request == SNPGuestABI.getExtendedReport
        let requestSize = isExtended ? SNPGuestABI.extendedRequestSize : SNPGuestABI.reportRequestSize
        let requestBytes = UnsafeMutableRawBufferPointer(
            start: UnsafeMutableRawPointer(bitPattern: UInt(requestAddress)), count: requestSize)
        let responseBytes = UnsafeMutableRawBufferPointer(
            start: UnsafeMutableRawPointer(bitPattern: UInt(responseAddress)), count: SNPGuestABI.reportResponseSize)
        let certificateLength = isExtended
            ? requestBytes.load(fromByteOffset: SNPGuestABI.extendedRequestCertsLengthOffset, as: UInt32.self) : nil
        calls.append((request, certificateLength))
        if isExtended, let extendedFailure { return extendedFailure }
        if let failure {
            header.storeBytes(of: failure.exitInfo2, toByteOffset: SNPGuestABI.requestExitInfo2Offset, as: UInt64.self)
            return failure.errno
        }
        let reportData = Array(requestBytes[0..<64])
        seenVMPL = requestBytes.load(fromByteOffset: SNPGuestABI.reportRequestVMPLOffset, as: UInt32.self)
        if isExtended, let certificateLength {
            let needed = (hostCertificates.count + 4095) / 4096 * 4096
            if Int(certificateLength) < needed {
                requestBytes.storeBytes(
                    of: UInt32(needed), toByteOffset: SNPGuestABI.extendedRequestCertsLengthOffset, as: UInt32.self)
                let invalidLength = UInt64(1) << 32  // vmm_error SNP_GUEST_VMM_ERR_INVALID_LEN
                header.storeBytes(of: invalidLength, toByteOffset: SNPGuestABI.requestExitInfo2Offset, as: UInt64.self)
                return EIO
            }
            let address = requestBytes.load(
                fromByteOffset: SNPGuestABI.extendedRequestCertsAddressOffset, as: UInt64.self)
            let certificates = UnsafeMutableRawBufferPointer(
                start: UnsafeMutableRawPointer(bitPattern: UInt(address)), count: Int(certificateLength))
            certificates.copyBytes(from: hostCertificates)
        }
        var payload = [UInt8](repeating: 0, count: 32)
        payload.replaceSubrange(0..<4, with: withUnsafeBytes(of: status.littleEndian, Array.init))
        payload.replaceSubrange(4..<8, with: withUnsafeBytes(of: UInt32(1184).littleEndian, Array.init))
        payload += fakeSNPReport(reportData: reportData)
        responseBytes.copyBytes(from: payload)
        return 0
    }
}
