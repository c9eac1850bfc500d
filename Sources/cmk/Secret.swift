import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk secret`: the secrets policies hand over by reference.
    struct Secret: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store the secrets that policies hand over by reference (sealed to each admitted child).",
            subcommands: [Put.self, List.self])

        struct Put: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Store a secret under a reference (as a 0600 file in <state>/secrets).",
                discussion: """
                    The policy names the reference (handover.secrets); at each admission the coordinator reads the \
                    bytes, seals them with HPKE to the child's attested key and forgets them. The bytes are never \
                    printed or logged. Exit status: 0 stored, 2 usage error or unreadable input.
                    """)

            @Argument(help: "The reference, as the policy names it (e.g. vault:db/credentials or api-token).")
            var reference: String

            @Option(help: "The file holding the secret (at most 1 MiB).")
            var fromFile: String

            @OptionGroup var state: StateOptions

            func run() throws {
                let contents: [UInt8]
                do {
                    contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fromFile)))
                    try state.state.prepare()
                    try SecretStore(state.state).put(reference, contents: contents)
                } catch {
                    FileHandle.standardError.write(Data("cmk secret put: \(error)\n".utf8))
                    throw ExitCode(2)
                }
                print("stored secret \(reference) (\(contents.count) bytes)")
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the stored secret references (names only).")

            @OptionGroup var state: StateOptions

            func run() throws {
                for reference in SecretStore(state.state).references() { print(reference) }
            }
        }
    }
}
