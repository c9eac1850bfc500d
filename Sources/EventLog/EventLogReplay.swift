public import BinaryFormat

/// The register values an event log implies: for each bank, for each PCR (or CC measurement register)
/// that the log extends, the value after every event.
///
/// Replay follows the TPM 2.0 extend (TPM 2.0 Library Part 1, §17.3 "PCR Extend"): a register starts as
/// digest-size zero bytes and every event except EV_NO_ACTION sets `value = H(value ‖ digest)`, with the
/// event's digest for that bank. When the log holds a Startup Locality event (PC Client Platform Firmware
/// Profile rev 1.05, §10.4.5.3), PCR 0 starts as zeros with its last byte set to the locality.
public struct EventLogReplay: Sendable, Hashable, Codable {
    /// One register's replayed value.
    public struct Register: Sendable, Hashable, Codable {
        /// The PCR index (TPM log) or measurement-register index (CCEL log).
        public let index: UInt32
        public let value: HexBytes
        /// How many events were extended into it.
        public let eventCount: Int
    }

    /// One bank: every register the log touches, in index order.
    public struct Bank: Sendable, Hashable, Codable {
        public let algorithm: TCGAlgorithm
        public let registers: [Register]

        /// The replayed value of register `index`, nil when the log never touches it.
        public func value(at index: UInt32) -> HexBytes? {
            registers.first { $0.index == index }?.value
        }
    }

    /// The replayed banks, in the order the Spec ID event declares them.
    public let banks: [Bank]
    /// Declared banks cmk cannot hash (SM3, SHA-3), so did not replay.
    public let skippedAlgorithms: [TCGAlgorithm]

    /// The bank of `algorithm`, nil when the log does not declare it or cmk cannot hash it.
    public func bank(_ algorithm: TCGAlgorithm) -> Bank? { banks.first { $0.algorithm == algorithm } }

    /// Replays `log`.
    public init(log: TCGEventLog) {
        var banks: [Bank] = []
        var skipped: [TCGAlgorithm] = []
        for declared in log.header.algorithms {
            guard declared.algorithm.isReplayable else {
                skipped.append(declared.algorithm)
                continue
            }
            let zero = [UInt8](repeating: 0, count: declared.digestSize)
            var values: [UInt32: [UInt8]] = [:]
            var counts: [UInt32: Int] = [:]
            if let locality = log.startupLocality {
                values[0] = Array(zero.dropLast()) + [locality]
                counts[0] = 0
            }
            for event in log.events where event.isMeasured {
                // Parsing guarantees one digest per declared bank, of the declared size.
                guard let digest = event.digest(for: declared.algorithm),
                    let extended = declared.algorithm.hash((values[event.pcrIndex] ?? zero) + digest)
                else { continue }
                values[event.pcrIndex] = extended
                counts[event.pcrIndex, default: 0] += 1
            }
            let registers = values.keys.sorted().map { index in
                Register(index: index, value: HexBytes(values[index] ?? zero), eventCount: counts[index] ?? 0)
            }
            banks.append(Bank(algorithm: declared.algorithm, registers: registers))
        }
        self.banks = banks
        self.skippedAlgorithms = skipped
    }
}

extension TCGEventLog {
    /// The register values this log implies (see ``EventLogReplay``).
    public func replay() -> EventLogReplay { EventLogReplay(log: self) }
}
