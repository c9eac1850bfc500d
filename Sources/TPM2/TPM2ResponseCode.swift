internal import CTSS2

/// A TPM 2.0 or TSS2 response code (TPM 2.0 Part 2 §6.6, TSS2 Overview §6): a value and its meaning.
public struct TPM2ResponseCode: Sendable, Hashable, CustomStringConvertible {
    /// The raw 32-bit code; bits 16..23 name the layer that produced it (0 = the TPM itself).
    public let rawValue: UInt32

    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// Whether the code reports success.
    public var isSuccess: Bool { rawValue == 0 }

    /// The TSS2 layer that produced the code (0 is the TPM; 6 ESAPI, 7 SAPI, 9 MU, 10 TCTI, 11 resource manager ...).
    public var layer: UInt8 { UInt8((rawValue >> 16) & 0xFF) }

    /// For codes from the TPM, whether this is a format-one code (bit 7), which names a handle,
    /// session or parameter number alongside the error.
    public var isFormatOne: Bool { layer == 0 && rawValue & 0x80 != 0 }

    /// The decoded text, from libtss2-rc (`Tss2_RC_Decode`), e.g. "tpm:error(2.0): TPM not initialized by TPM2_Startup or already initialized".
    public var text: String {
        String(cString: Tss2_RC_Decode(rawValue))
    }

    public var description: String {
        "0x" + String(rawValue, radix: 16, uppercase: false) + " " + text
    }
}
