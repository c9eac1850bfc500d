import ArgumentParser
import Coordinator

/// The cmk command line: a thin shell over the library modules.
@main
struct CMK: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cmk",
        abstract: "The confidential multikernel: attested kernel instances in SEV-SNP or TDX domains.",
        discussion: """
            Without SEV-SNP or TDX hardware, cmk runs children under QEMU with a simulated platform whose roots \
            are generated per installation and labelled 'simulated' everywhere.
            """,
        version: CMKVersion.current,
        subcommands: [Doctor.self])
}
