import ArgumentParser
import Coordinator
import Foundation

/// The cmk command line: a thin shell over the library modules.
///
/// Exit status, for every command: 0 success (or a positive verdict), 1 a negative verdict (evidence did not
/// verify, the host is not ready), 2 a usage error or input that cannot be read.
@main
struct CMK: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cmk",
        abstract: "The confidential multikernel: attested kernel instances in SEV-SNP or TDX domains.",
        discussion: """
            Exit status: 0 success, 1 a negative verdict, 2 a usage error or unreadable input.
            """,
        version: CMKVersion.current,
        subcommands: [
            Doctor.self, Evidence.self, Measure.self, PolicyCommand.self, Attest.self, Audit.self, EAR.self, Image.self,
            Launch.self, Stop.self, PS.self, HostCommand.self, Inspect.self, Logs.self, Reconcile.self, Secret.self,
            Volume.self, Supervise.self, Serve.self, ChannelCommand.self, EndpointCommand.self, Update.self,
            PoolCommand.self,
        ])

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Shared JSON output settings.
enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
