import ArgumentParser
import Coordinator
import Foundation

extension CMK {
    /// `cmk doctor`: what this host can do for cmk.
    struct Doctor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report what this host can do: TEE interfaces, KVM, QEMU, OVMF, swtpm, the guest kernel.",
            discussion: """
                Exit status: 0 when the embedded default (the simulated platform under QEMU) can run here, \
                1 when something it needs is missing (each blocker is listed).
                """)

        @Flag(name: .long, help: "Print the report as JSON.")
        var json = false

        @Option(name: .long, help: "Seconds a KVM probe guest may take before KVM counts as not usable.")
        var kvmTimeout: Int = 8

        func validate() throws {
            guard (1...120).contains(kvmTimeout) else {
                throw ValidationError("--kvm-timeout must be between 1 and 120 seconds")
            }
        }

        func run() async throws {
            var probe = HostProbe()
            probe.probeTimeout = .seconds(kvmTimeout)
            let isTerminal = isatty(STDERR_FILENO) == 1
            if isTerminal && !json {
                FileHandle.standardError.write(Data("probing the host (QEMU, KVM, firmware) ...\n".utf8))
            }
            let report = await probe.run()
            if json {
                print(try JSONOutput.encode(report))
            } else {
                print(DoctorTable.render(report))
            }
            if !report.embeddedDefaultReady { throw ExitCode(1) }
        }
    }
}
