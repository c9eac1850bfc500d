import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk volume`: the data volumes policies hand over by name.
    struct Volume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the data volumes that policies hand over by name (hot-plugged after admission).",
            subcommands: [Create.self])

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create an empty raw volume image <state>/volumes/NAME.img (sparse, 0600).",
                discussion: "Exit status: 0 created, 2 usage error or it exists.")

            @Argument(help: "The volume name, as the policy names it (letters, digits, - _ .).")
            var name: String

            @Option(help: "Size in MiB.")
            var sizeMib = 64

            @OptionGroup var state: StateOptions

            func run() throws {
                do {
                    try state.state.prepare()
                    let image = try VolumeStore(state.state).create(name, sizeMiB: sizeMib)
                    print("created volume \(name): \(image.path) (\(sizeMib) MiB)")
                } catch {
                    FileHandle.standardError.write(Data("cmk volume create: \(error)\n".utf8))
                    throw ExitCode(2)
                }
            }
        }
    }
}
