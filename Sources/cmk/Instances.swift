import ArgumentParser
import Coordinator
import Foundation

/// The host reserve, as flags shared by the commands that allocate or report partitions.
struct ReserveOptions: ParsableArguments {
    @Option(name: .customLong("reserve-cpus"), help: "CPUs the host keeps for itself (the lowest-numbered ones).")
    var reserveCPUs: Int = HostReserve.default.cpuCount

    @Option(name: .customLong("reserve-memory-mib"), help: "MiB of memory the host keeps for itself.")
    var reserveMemoryMiB: Int = HostReserve.default.memoryMiB

    var reserve: HostReserve { HostReserve(cpuCount: reserveCPUs, memoryMiB: reserveMemoryMiB) }

    func validate() throws {
        guard reserveCPUs >= 0 else { throw ValidationError("--reserve-cpus cannot be negative") }
        guard reserveMemoryMiB >= 0 else { throw ValidationError("--reserve-memory-mib cannot be negative") }
    }
}

/// Prints a coordinator failure in the requested form; exit status 2 (cannot proceed).
enum CoordinatorFailure {
    static func report(_ error: CoordinatorError, json: Bool) -> ExitCode {
        if json {
            print((try? JSONOutput.encode(ErrorOutput(code: error.code.name, reason: error.reason))) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("error [\(error.code)]: \(error.reason)\n".utf8))
        }
        return ExitCode(2)
    }
}

extension CMK {
    /// `cmk ps`: the instances and their states.
    struct PS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ps",
            abstract: "List instances: state, CPUs (marked shared when overcommitted), memory, policy, age.",
            discussion: """
                Reads the instance store of the state folder without taking the coordinator's lock. Stopped \
                instances are listed only with --all.
                Exit status: 0 listed (also when there are none), 2 the store cannot be read.
                """)

        @Flag(name: .long, help: "Print the instances as JSON.")
        var json = false

        @Flag(name: .long, help: "Include stopped instances.")
        var all = false

        @OptionGroup var state: StateOptions

        func run() throws {
            do {
                let store = try InstanceStore.openForReading(state.state)
                defer { store?.close() }
                let records = try store?.instances(includeStopped: all) ?? []
                print(json ? try JSONOutput.encode(records) : InstanceTable.render(records, now: Date()))
            } catch let error as CoordinatorError {
                throw CoordinatorFailure.report(error, json: json)
            }
        }
    }

    /// `cmk host`: the host's CPUs, NUMA nodes and memory, and what is free after the reserve.
    struct HostCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "host",
            abstract: "Show the host's CPUs, NUMA nodes, memory and huge pages, and what is free for instances.",
            discussion: """
                Read from /sys and /proc; the partitions live instances hold come from the instance store of the \
                state folder. Exit status: 0 reported, 2 the host or the store cannot be read.
                """)

        @Flag(name: .long, help: "Print the report as JSON.")
        var json = false

        @OptionGroup var reserve: ReserveOptions
        @OptionGroup var state: StateOptions

        func run() throws {
            do {
                let inventory = try HostInventory.read()
                let options = InstanceStore.Options(reserve: reserve.reserve)
                let store = try InstanceStore.openForReading(state.state, options: options)
                defer { store?.close() }
                let allocator =
                    try store?.allocator(for: inventory)
                    ?? PartitionAllocator(inventory: inventory, reserve: reserve.reserve)
                let report = HostReport(allocator)
                print(json ? try JSONOutput.encode(report) : report.render())
            } catch let error as CoordinatorError {
                throw CoordinatorFailure.report(error, json: json)
            }
        }
    }
}
