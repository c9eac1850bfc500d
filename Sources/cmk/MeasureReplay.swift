import ArgumentParser
import BinaryFormat
import EventLog
import Foundation

extension CMK.Measure {
    /// `cmk measure replay`: the PCR or RTMR values a TCG event log implies.
    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay a TCG crypto-agile event log to the PCR (TPM) or RTMR (TDX CCEL) values it implies.",
            discussion: """
                Reads a TPM 2.0 log (/sys/kernel/security/tpm0/binary_bios_measurements) or a TDX CCEL log area \
                (/sys/firmware/acpi/tables/data/CCEL) and prints, for each hash bank, every register the log extends: \
                start from zeros, value = H(value || digest) for each event except EV_NO_ACTION (a Startup Locality \
                event sets PCR 0's initial last byte). With --ccel-table (/sys/firmware/acpi/tables/CCEL) the table is \
                verified, MR indices are named MRTD and RTMR0-3, and RTMR0-3 are printed from the SHA-384 bank.
                Exit status: 0 replayed, 2 usage error or an unreadable or malformed log or table.
                """)

        @Argument(help: "The event log (binary_bios_measurements, or the CCEL log area).")
        var eventLog: String

        @Option(help: "The ACPI CCEL table that points to the log: name MRTD/RTMR0-3 and print RTMR0-3.")
        var ccelTable: String?

        @Flag(help: "List every event (index, type, digests, data).")
        var events = false

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let document: EventLogReplayDocument
            do {
                let log = try ReplayInput.eventLog(eventLog)
                let table = try ccelTable.map(ReplayInput.ccelTable)
                document = try ReplayInput.document(log: log, table: table, ccelPath: ccelTable, includeEvents: events)
            } catch {
                FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
                throw ExitCode(2)
            }
            print(json ? try JSONOutput.encode(document) : document.lines.joined(separator: "\n"))
        }
    }
}

/// Reading the replay command's files, with errors that name the file and the offending field.
private enum ReplayInput {
    struct Failure: Error {
        let message: String
    }

    static func read(_ path: String, what: String) throws(Failure) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(message: "cannot read the \(what) '\(path)'")
        }
        guard !data.isEmpty else { throw Failure(message: "the \(what) '\(path)' is empty") }
        return [UInt8](data)
    }

    static func eventLog(_ path: String) throws(Failure) -> TCGEventLog {
        let bytes = try read(path, what: "event log")
        do {
            return try TCGEventLog(bytes: bytes)
        } catch {
            throw Failure(message: "'\(path)' is not a TCG crypto-agile event log: \(error.description)")
        }
    }

    static func ccelTable(_ path: String) throws(Failure) -> CCELTable {
        let bytes = try read(path, what: "CCEL table")
        do {
            return try CCELTable(bytes: bytes)
        } catch {
            throw Failure(message: "'\(path)' is not an ACPI CCEL table: \(error.description)")
        }
    }

    static func document(log: TCGEventLog, table: CCELTable?, ccelPath: String?, includeEvents: Bool)
        throws(Failure) -> EventLogReplayDocument
    {
        do {
            return try EventLogReplayDocument(log: log, ccelTable: table, includeEvents: includeEvents)
        } catch {
            throw Failure(message: "the log does not fit the CCEL table '\(ccelPath ?? "")': \(error.description)")
        }
    }
}
