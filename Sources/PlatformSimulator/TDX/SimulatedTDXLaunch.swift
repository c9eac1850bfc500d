import BinaryFormat
import Crypto
public import GuestProtocol
public import TDX

/// One TD launched on the simulated TDX module: the exact inputs QEMU was given, MRTD computed from the firmware's
/// TDVF metadata (``TDXMRTD``, per-page order as KVM measures), MRCONFIGID from the launch, and the CCEL event log
/// TDVF would write for the kernel, initrd and command line (``TDVFDirectBoot``) with the RTMRs it extends.
///
/// The coordinator never tells the simulated module a digest: it gives the bytes, and passes only MRCONFIGID, which
/// on real hardware is the host's to choose too (`tdx-guest,mrconfigid=`).
public struct SimulatedTDXLaunch: Sendable {
    /// What QEMU is given for the launch.
    public struct Inputs: Sendable {
        /// The TDVF firmware image (`-bios`), byte for byte.
        public var firmware: [UInt8]
        /// The kernel file (`-kernel`), the initrd file (`-initrd`) and the command line (`-append`).
        public var kernel: [UInt8]
        public var initrd: [UInt8]?
        public var cmdline: String
        /// `-m`, in MiB: where QEMU puts the initrd, and so the setup header TDVF measures.
        public var memoryMiB: Int
        /// MRCONFIGID (`tdx-guest,mrconfigid=`): 48 bytes, the coordinator's SHA-384 of the instance manifest.
        public var mrConfigID: [UInt8]
        /// TDATTRIBUTES: SEPT_VE_DISABLE (bit 28) by default, as QEMU sets it; DEBUG (bit 0) off.
        public var tdAttributes: UInt64
        /// XFAM: x87, SSE, AVX, AVX-512, PKRU and the AMX bits a current Xeon TD gets from QEMU (0x602E7).
        public var xfam: UInt64

        public init(
            firmware: [UInt8], kernel: [UInt8], initrd: [UInt8]? = nil, cmdline: String = "", memoryMiB: Int,
            mrConfigID: [UInt8] = [UInt8](repeating: 0, count: 48), tdAttributes: UInt64 = 0x1000_0000,
            xfam: UInt64 = 0x602E7
        ) {
            self.firmware = firmware
            self.kernel = kernel
            self.initrd = initrd
            self.cmdline = cmdline
            self.memoryMiB = memoryMiB
            self.mrConfigID = mrConfigID
            self.tdAttributes = tdAttributes
            self.xfam = xfam
        }
    }

    /// The quote version the simulated quoting enclave emits (v4, TD 1.0 body).
    public static let quoteVersion: UInt16 = 4
    /// QE auth data: 32 bytes 00 01 … 1F, as Intel's TD QE sends.
    public static let qeAuthData: [UInt8] = (0..<32).map { UInt8($0) }

    public let inputs: Inputs
    /// MRTD, from the firmware's TDVF metadata.
    public let mrTD: [UInt8]
    /// The CCEL event log handed to the guest with every quote, and the RTMRs it extends.
    public let eventLog: [UInt8]
    public let rtmrs: [[UInt8]]
    /// The simulated module that launched the TD.
    public let module: SimulatedTDXModule

    /// Measures `inputs` on `module`; throws when the launch is not one a TDX module would start (firmware without
    /// TDVF metadata, MRCONFIGID not 48 bytes, DEBUG or reserved TD attributes, a kernel TDVF could not load ...).
    public init(_ inputs: Inputs, module: SimulatedTDXModule) throws(PlatformSimulatorError) {
        guard inputs.mrConfigID.count == TDXQuote.TDReport.Layout.measurementSize else {
            throw PlatformSimulatorError(
                .invalidLaunch, "MRCONFIGID is 48 bytes; \(inputs.mrConfigID.count) were given")
        }
        guard inputs.tdAttributes & ~Self.allowedAttributes == 0 else {
            throw PlatformSimulatorError(
                .invalidLaunch,
                "TD attributes 0x\(String(inputs.tdAttributes, radix: 16)) set bits the simulated module does not offer "
                    + "(it launches non-debug TDs with SEPT_VE_DISABLE, PKS or PERFMON only)")
        }
        do throws(TDXMeasurementError) {
            mrTD = try TDXMRTD(firmware: inputs.firmware, order: .perPage).digest.bytes
            let boot = try TDVFDirectBoot(
                .init(
                    kernel: inputs.kernel, initrd: inputs.initrd, commandLine: inputs.cmdline,
                    memoryMiB: inputs.memoryMiB))
            eventLog = boot.log
            rtmrs = boot.rtmrs
        } catch {
            throw PlatformSimulatorError(.invalidLaunch, "the launch cannot be measured: \(error.reason)")
        }
        self.inputs = inputs
        self.module = module
    }

    /// SEPT_VE_DISABLE (28), PKS (30), PERFMON (63): the attributes a production TD may have; never DEBUG (0).
    static let allowedAttributes: UInt64 = 1 << 28 | 1 << 30 | 1 << 63

    /// A version 4 DCAP quote for this launch (TDX.md §1–3): header (ECDSA-256 key type 2, TEE type 0x81, Intel's
    /// QE vendor id, QE_ID in the user data), TD 1.0 report body, and signature data with QE report certification
    /// data (type 6): the QE report — its REPORTDATA SHA-256(attestation key ‖ QE auth data) ‖ 32 zeros — signed
    /// by the PCK key, the QE auth data, and the PCK chain (type 5) as PEM with a trailing NUL.
    public func quote(reportData: [UInt8]) throws(PlatformSimulatorError) -> [UInt8] {
        typealias Body = TDXQuote.TDReport.Layout
        guard reportData.count == Body.reportDataSize else {
            throw PlatformSimulatorError(.invalidRequest, "REPORTDATA is 64 bytes; \(reportData.count) were given")
        }
        typealias I = SimulatedTDXModule.Identity
        func le16(_ value: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: value), UInt8(value >> 8)] }
        func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }
        let zero48 = [UInt8](repeating: 0, count: 48)

        var header = le16(Self.quoteVersion) + le16(TDXQuote.ecdsaP256KeyType) + le32(TDXQuote.tdxTEEType)
        header += [0, 0, 0, 0] + TDXQuote.intelQEVendorID + module.configuration.qeID.bytes + [0, 0, 0, 0]
        var body = I.teeTCBSVN + I.mrSeam + I.mrSignerSeam + [UInt8](repeating: 0, count: 8)
        body += le64(inputs.tdAttributes) + le64(inputs.xfam) + mrTD + inputs.mrConfigID + zero48 + zero48
        body += rtmrs.joined() + reportData
        let signed = header + body

        var qeReport = I.cpuSVN + le32(I.qeMiscSelect) + [UInt8](repeating: 0, count: 28) + I.qeAttributes
        qeReport += I.qeMREnclave + [UInt8](repeating: 0, count: 32) + I.qeMRSigner + [UInt8](repeating: 0, count: 96)
        qeReport += le16(I.qeISVProdID) + le16(I.qeISVSVN) + [UInt8](repeating: 0, count: 60)
        let attestationKey = module.attestationPublicKey
        qeReport += Array(SHA256.hash(data: attestationKey + Self.qeAuthData)) + [UInt8](repeating: 0, count: 32)

        let chain = Array(module.pckChainPEM.utf8) + [0]
        var certification = qeReport + (try module.signWithPCKKey(qeReport))
        certification += le16(UInt16(Self.qeAuthData.count)) + Self.qeAuthData
        certification += le16(5) + le32(UInt32(chain.count)) + chain
        var signature = try module.signWithAttestationKey(signed) + attestationKey
        signature += le16(6) + le32(UInt32(certification.count)) + certification
        let quote = signed + le32(UInt32(signature.count)) + signature
        // Never hand out what cmk's own strict parser would refuse.
        do {
            _ = try TDXQuote(bytes: quote)
        } catch {
            throw PlatformSimulatorError(.inconsistentState, "the simulated quote does not parse: \(error)")
        }
        return quote
    }

    /// Answers a message from the guest's platform port: `.tdxQuoteRequest` with `.tdxQuoteResponse` (quote and CCEL
    /// event log), anything else — or a request that cannot be answered — with `.failure`.
    public func respond(to message: GuestMessage) -> GuestMessage {
        guard case .tdxQuoteRequest(let reportData) = message else {
            return .failure("the simulated TDX module answers TDX quote requests only, not \(message.kind)")
        }
        do {
            return .tdxQuoteResponse(quote: try quote(reportData: reportData), eventLog: eventLog)
        } catch {
            return .failure(error.reason)
        }
    }
}

/// Printing a launch names it by its measurements, not by megabytes of firmware and kernel.
extension SimulatedTDXLaunch: CustomStringConvertible, CustomReflectable {
    public var description: String {
        "simulated TDX launch (MRTD \(Hex.encode(mrTD)), RTMR1 \(Hex.encode(rtmrs[1])), RTMR2 \(Hex.encode(rtmrs[2])))"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "mrTD": Hex.encode(mrTD), "rtmrs": rtmrs.map(Hex.encode), "mrConfigID": Hex.encode(inputs.mrConfigID),
                "memoryMiB": inputs.memoryMiB, "module": module.description,
            ])
    }
}
