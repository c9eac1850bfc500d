import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk supervise --instance ID`: the detached watcher of an admitted instance whose supervisor died, started by
    /// the cmk command that reconciled and re-adopted it (docs/coordinator.md, "Re-supervising").
    struct Supervise: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch a re-adopted admitted instance (QEMU exit and agent heartbeat) until it stops or fails.",
            discussion: """
                Started in its own session by `cmk reconcile` (and every cmk command that reconciles) for each admitted \
                instance whose supervisor is gone and whose QEMU still runs; not meant to be run by hand. It takes the \
                instance over (refusing one another supervisor runs), listens on its control socket again, resumes the \
                heartbeat once QEMU reconnects, and records a failure within a second; `cmk stop NAME` stops it.
                Exit status: 0 stopped, 4 the instance failed, 6 no such instance, 7 another supervisor runs it.
                """,
            shouldDisplay: false)

        @Option(help: "The instance id (or name).")
        var instance: String

        @Option(help: "Milliseconds between heartbeats.")
        var heartbeatInterval = 100

        @Option(help: "Milliseconds without a heartbeat answer before the instance counts as failed.")
        var heartbeatTimeout = 700

        @OptionGroup var state: StateOptions

        func validate() throws {
            if !(10...10_000).contains(heartbeatInterval) || !(50...60_000).contains(heartbeatTimeout)
                || heartbeatTimeout <= heartbeatInterval
            {
                throw ValidationError("--heartbeat-interval 10 to 10000 ms, --heartbeat-timeout 50 to 60000 ms and longer")
            }
        }

        func run() async throws {
            let stateDirectory = state.state
            let stop = StopSignal()
            let watch = AdoptedInstanceWatch(
                state: stateDirectory, instance: instance,
                settings: InstanceWatch.Settings(
                    pingInterval: .milliseconds(heartbeatInterval), answerTimeout: .milliseconds(heartbeatTimeout))
            ) { line in
                FileHandle.standardError.write(Data("cmk supervise: \(line)\n".utf8))
            }
            let record: InstanceRecord
            do {
                record = try watch.claim()
            } catch let error as CoordinatorError {
                FileHandle.standardError.write(Data("cmk supervise: \(error.reason)\n".utf8))
                throw ExitCode(InstanceExit.status(forCode: error.code.name))
            }
            // `cmk stop NAME` finds the supervisor by this file.
            let files = InstanceFiles(state: stateDirectory, name: record.name)
            try Data("\(getpid())\n".utf8).write(to: files.supervisorPID)
            defer { try? FileManager.default.removeItem(at: files.supervisorPID) }
            let ending = try await watch.run { stop.requested }
            FileHandle.standardError.write(Data("cmk: \(record.name) \(ending.state.rawValue): \(ending.reason)\n".utf8))
            if ending.state == .failed { throw ExitCode(InstanceExit.launchFailed) }
        }
    }
}
