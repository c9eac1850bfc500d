internal import CTSS2

// The bridge between cmk's TPM 2.0 value types and libtss2-mu's C structures. Nothing here escapes:
// callers see Swift values and TPM2Error, never a C struct or a pointer.

/// Copies `bytes` into a fixed-size C array member (imported as a tuple).
func store<Tuple>(_ bytes: [UInt8], into tuple: inout Tuple, field: String) throws(TPM2Error) {
    let capacity = MemoryLayout<Tuple>.size
    guard bytes.count <= capacity else {
        throw TPM2Error(.fieldTooLarge, "\(field) holds \(bytes.count) bytes; the TPM allows at most \(capacity)")
    }
    withUnsafeMutableBytes(of: &tuple) { buffer in
        buffer.copyBytes(from: bytes)
    }
}

/// Reads the first `count` bytes of a fixed-size C array member.
func load<Tuple>(_ tuple: Tuple, count: Int, field: String) throws(TPM2Error) -> [UInt8] {
    let capacity = MemoryLayout<Tuple>.size
    guard count <= capacity else {
        throw TPM2Error(.fieldTooLarge, "\(field) declares \(count) bytes; the TPM allows at most \(capacity)")
    }
    return withUnsafeBytes(of: tuple) { Array($0.prefix(count)) }
}

func check(_ rc: TSS2_RC, _ what: String) throws(TPM2Error) {
    guard rc == TSS2_RC_SUCCESS else {
        throw TPM2Error(.marshalling, "libtss2-mu could not \(what)", nativeCode: rc)
    }
}

extension TPM2B_NAME {
    fileprivate init(bytes: [UInt8], field: String) throws(TPM2Error) {
        self.init()
        try store(bytes, into: &name, field: field)
        size = UInt16(bytes.count)
    }
    fileprivate func bytes(field: String) throws(TPM2Error) -> [UInt8] { try load(name, count: Int(size), field: field) }
}

extension TPM2B_DIGEST {
    fileprivate init(bytes: [UInt8], field: String) throws(TPM2Error) {
        self.init()
        try store(bytes, into: &buffer, field: field)
        size = UInt16(bytes.count)
    }
    fileprivate func bytes(field: String) throws(TPM2Error) -> [UInt8] { try load(buffer, count: Int(size), field: field) }
}

extension TPM2B_DATA {
    fileprivate init(bytes: [UInt8], field: String) throws(TPM2Error) {
        self.init()
        try store(bytes, into: &buffer, field: field)
        size = UInt16(bytes.count)
    }
    fileprivate func bytes(field: String) throws(TPM2Error) -> [UInt8] { try load(buffer, count: Int(size), field: field) }
}

extension TPML_PCR_SELECTION {
    fileprivate init(_ selections: [TPMSAttest.PCRSelection]) throws(TPM2Error) {
        self.init()
        let capacity = MemoryLayout.size(ofValue: pcrSelections) / MemoryLayout<TPMS_PCR_SELECTION>.stride
        guard selections.count <= capacity else {
            throw TPM2Error(.fieldTooLarge, "a PCR selection lists \(selections.count) banks; the TPM allows at most \(capacity)")
        }
        var converted: [TPMS_PCR_SELECTION] = []
        for selection in selections {
            var c = TPMS_PCR_SELECTION()
            c.hash = selection.hashAlgorithm
            try store(selection.bitmap, into: &c.pcrSelect, field: "PCR selection bitmap")
            c.sizeofSelect = UInt8(selection.bitmap.count)
            converted.append(c)
        }
        withUnsafeMutableBytes(of: &pcrSelections) { raw in
            let typed = raw.bindMemory(to: TPMS_PCR_SELECTION.self)
            for (index, c) in converted.enumerated() { typed[index] = c }
        }
        count = UInt32(selections.count)
    }

    fileprivate func selections() throws(TPM2Error) -> [TPMSAttest.PCRSelection] {
        let capacity = MemoryLayout.size(ofValue: pcrSelections) / MemoryLayout<TPMS_PCR_SELECTION>.stride
        guard Int(count) <= capacity else {
            throw TPM2Error(.fieldTooLarge, "a PCR selection declares \(count) banks; the TPM allows at most \(capacity)")
        }
        let raw: [TPMS_PCR_SELECTION] = withUnsafeBytes(of: pcrSelections) { buffer in
            Array(buffer.bindMemory(to: TPMS_PCR_SELECTION.self).prefix(Int(count)))
        }
        var result: [TPMSAttest.PCRSelection] = []
        for c in raw {
            result.append(.init(hashAlgorithm: c.hash, bitmap: try load(c.pcrSelect, count: Int(c.sizeofSelect), field: "PCR selection bitmap")))
        }
        return result
    }
}

extension TPMSAttest {
    /// Parses the TPM wire format of a TPMS_ATTEST (the body of a TPM2B_ATTEST) with libtss2-mu.
    ///
    /// Rejects trailing bytes, a magic other than TPM_GENERATED_VALUE, and attestation types other than
    /// quote and certify.
    public init(marshalled bytes: [UInt8]) throws(TPM2Error) {
        var c = TPMS_ATTEST()
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { buffer in
            Tss2_MU_TPMS_ATTEST_Unmarshal(buffer.baseAddress, buffer.count, &offset, &c)
        }
        try check(rc, "unmarshal a TPMS_ATTEST from \(bytes.count) bytes")
        guard offset == bytes.count else {
            throw TPM2Error(.trailingBytes, "\(bytes.count - offset) bytes follow the TPMS_ATTEST")
        }
        guard c.magic == Self.generatedValue else {
            throw TPM2Error(
                .notTPMGenerated,
                "magic is 0x\(String(c.magic, radix: 16)), not TPM_GENERATED_VALUE: the structure was not made by a TPM")
        }
        let attested: Attested
        switch AttestationType(rawValue: c.type) {
        case .quote:
            attested = .quote(
                pcrSelection: try c.attested.quote.pcrSelect.selections(),
                pcrDigest: try c.attested.quote.pcrDigest.bytes(field: "pcrDigest"))
        case .certify:
            attested = .certify(
                name: try c.attested.certify.name.bytes(field: "certified name"),
                qualifiedName: try c.attested.certify.qualifiedName.bytes(field: "certified qualified name"))
        default:
            throw TPM2Error(.unsupported, "attestation type 0x\(String(c.type, radix: 16)) is not a quote or a certification")
        }
        self.init(
            magic: c.magic,
            qualifiedSigner: try c.qualifiedSigner.bytes(field: "qualifiedSigner"),
            extraData: try c.extraData.bytes(field: "extraData"),
            clockInfo: ClockInfo(
                clock: c.clockInfo.clock, resetCount: c.clockInfo.resetCount,
                restartCount: c.clockInfo.restartCount, safe: c.clockInfo.safe != 0),
            firmwareVersion: c.firmwareVersion,
            attested: attested)
    }

    /// The TPM wire format, produced by libtss2-mu.
    public func marshalled() throws(TPM2Error) -> [UInt8] {
        var c = TPMS_ATTEST()
        c.magic = magic
        c.type = type.rawValue
        c.qualifiedSigner = try TPM2B_NAME(bytes: qualifiedSigner, field: "qualifiedSigner")
        c.extraData = try TPM2B_DATA(bytes: extraData, field: "extraData")
        c.clockInfo.clock = clockInfo.clock
        c.clockInfo.resetCount = clockInfo.resetCount
        c.clockInfo.restartCount = clockInfo.restartCount
        c.clockInfo.safe = clockInfo.safe ? 1 : 0
        c.firmwareVersion = firmwareVersion
        switch attested {
        case .quote(let selection, let digest):
            c.attested.quote.pcrSelect = try TPML_PCR_SELECTION(selection)
            c.attested.quote.pcrDigest = try TPM2B_DIGEST(bytes: digest, field: "pcrDigest")
        case .certify(let name, let qualifiedName):
            c.attested.certify.name = try TPM2B_NAME(bytes: name, field: "certified name")
            c.attested.certify.qualifiedName = try TPM2B_NAME(bytes: qualifiedName, field: "certified qualified name")
        }
        var buffer = [UInt8](repeating: 0, count: MemoryLayout<TPMS_ATTEST>.size)
        var offset = 0
        let rc = buffer.withUnsafeMutableBufferPointer { out in
            Tss2_MU_TPMS_ATTEST_Marshal(&c, out.baseAddress, out.count, &offset)
        }
        try check(rc, "marshal a TPMS_ATTEST")
        return Array(buffer.prefix(offset))
    }
}

/// TPM2B_DIGEST (Part 2 §10.4.2): a size-prefixed digest of at most 64 bytes.
public enum TPM2BDigest {
    /// Marshals `digest` as a TPM2B_DIGEST with libtss2-mu.
    public static func marshal(_ digest: [UInt8]) throws(TPM2Error) -> [UInt8] {
        var c = try TPM2B_DIGEST(bytes: digest, field: "digest")
        var buffer = [UInt8](repeating: 0, count: MemoryLayout<TPM2B_DIGEST>.size)
        var offset = 0
        let rc = buffer.withUnsafeMutableBufferPointer { out in
            Tss2_MU_TPM2B_DIGEST_Marshal(&c, out.baseAddress, out.count, &offset)
        }
        try check(rc, "marshal a TPM2B_DIGEST")
        return Array(buffer.prefix(offset))
    }

    /// Unmarshals a TPM2B_DIGEST with libtss2-mu; rejects trailing bytes.
    public static func unmarshal(_ bytes: [UInt8]) throws(TPM2Error) -> [UInt8] {
        var c = TPM2B_DIGEST()
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { buffer in
            Tss2_MU_TPM2B_DIGEST_Unmarshal(buffer.baseAddress, buffer.count, &offset, &c)
        }
        try check(rc, "unmarshal a TPM2B_DIGEST from \(bytes.count) bytes")
        guard offset == bytes.count else {
            throw TPM2Error(.trailingBytes, "\(bytes.count - offset) bytes follow the TPM2B_DIGEST")
        }
        return try c.bytes(field: "digest")
    }
}
