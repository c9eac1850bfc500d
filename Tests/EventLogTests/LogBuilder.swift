import BinaryFormat
import EventLog

func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }

/// Builds crypto-agile event logs byte by byte, so each test can break exactly one field.
struct LogBuilder {
    var algorithms: [(id: UInt16, size: UInt16)] = [(0x0004, 20), (0x000B, 32)]
    var headerPCRIndex: UInt32 = 0
    var headerEventType: UInt32 = 3
    var headerDigest = [UInt8](repeating: 0, count: 20)
    var signature: [UInt8] = Array("Spec ID Event03".utf8) + [0]
    var platformClass: UInt32 = 0
    var specVersionMinor: UInt8 = 0
    var specVersionMajor: UInt8 = 2
    var specErrata: UInt8 = 0
    var uintnSize: UInt8 = 2
    /// Overrides the declared number of algorithms.
    var numberOfAlgorithms: UInt32?
    var vendorInfo: [UInt8] = []
    /// Bytes appended inside the Spec ID event (counted by its eventSize).
    var specIDTrailing: [UInt8] = []
    var records: [[UInt8]] = []

    var specIDEvent: [UInt8] {
        var event = signature + le32(platformClass) + [specVersionMinor, specVersionMajor, specErrata, uintnSize]
        event += le32(numberOfAlgorithms ?? UInt32(algorithms.count))
        for algorithm in algorithms { event += le16(algorithm.id) + le16(algorithm.size) }
        event += [UInt8(vendorInfo.count)] + vendorInfo + specIDTrailing
        return event
    }

    var header: [UInt8] {
        le32(headerPCRIndex) + le32(headerEventType) + headerDigest + le32(UInt32(specIDEvent.count)) + specIDEvent
    }

    var bytes: [UInt8] { header + records.joined() }

    /// A TCG_PCR_EVENT2 with exactly the digests given.
    static func record(pcr: UInt32, type: UInt32, digests: [(UInt16, [UInt8])], data: [UInt8]) -> [UInt8] {
        var record = le32(pcr) + le32(type) + le32(UInt32(digests.count))
        for (id, digest) in digests { record += le16(id) + digest }
        return record + le32(UInt32(data.count)) + data
    }

    /// The digests a firmware would log for `data`: its hash in every declared bank (a pattern for banks
    /// cmk cannot hash).
    func digests(of data: [UInt8]) -> [(UInt16, [UInt8])] {
        algorithms.map { algorithm in
            let hash = TCGAlgorithm(rawValue: algorithm.id).hash(data)
                ?? [UInt8](repeating: UInt8(truncatingIfNeeded: data.count), count: Int(algorithm.size))
            return (algorithm.id, hash)
        }
    }

    /// Appends an event measuring `data` in every bank.
    mutating func add(pcr: UInt32, type: TCGEventType, data: [UInt8]) {
        records.append(Self.record(pcr: pcr, type: type.rawValue, digests: digests(of: data), data: data))
    }

    /// Appends an EV_NO_ACTION event with zero digests in every bank.
    mutating func addNoAction(pcr: UInt32 = 0, data: [UInt8]) {
        let zeros = algorithms.map { ($0.id, [UInt8](repeating: 0, count: Int($0.size))) }
        records.append(Self.record(pcr: pcr, type: TCGEventType.noAction.rawValue, digests: zeros, data: data))
    }

    /// Appends a Startup Locality event.
    mutating func addStartupLocality(_ locality: UInt8, pcr: UInt32 = 0) {
        addNoAction(pcr: pcr, data: Array("StartupLocality".utf8) + [0, locality])
    }
}

/// `value = H(value ‖ digest)` over `digests`, from `initial` — the extend written out for the tests.
func extendChain(_ algorithm: TCGAlgorithm, initial: [UInt8], _ digests: [[UInt8]]) -> [UInt8] {
    digests.reduce(initial) { algorithm.hash($0 + $1)! }
}

/// Whether `error` is a BinaryFormatError with this code, field and offset.
func isFormatError(_ error: any Error, _ code: BinaryFormatError.Code, field: String, offset: Int? = nil) -> Bool {
    guard let error = error as? BinaryFormatError else { return false }
    return error.code == code && error.field == field && (offset == nil || error.offset == offset)
}
