public import Foundation

/// The installation's vTPM root: a swtpm local CA (`swtpm_localca`) in `<state-dir>/vtpm/ca`, made on first use, that
/// issues each child's EK certificate. `rootCertificate` is the anchor a verifier pins for the children's EKs.
public struct VTPMLocalCA: Sendable, Hashable {
    public let directory: URL

    public init(stateDirectory: URL) { directory = stateDirectory.appendingPathComponent("vtpm/ca") }

    /// The CA's root certificate (PEM), made by `swtpm_localca` the first time it issues a certificate.
    public var rootCertificate: URL { directory.appendingPathComponent("swtpm-localca-rootca-cert.pem") }
    /// The intermediate that signs EK certificates (PEM).
    public var issuerCertificate: URL { directory.appendingPathComponent("issuercert.pem") }
    /// The `swtpm_setup` configuration that points at this CA.
    public var setupConfiguration: URL { directory.appendingPathComponent("swtpm_setup.conf") }

    /// Writes the configuration files (idempotent); the CA's keys appear with the first EK certificate.
    public func prepare() throws {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let d = directory.path
        let files: [(String, String)] = [
            ("swtpm-localca.conf", "statedir = \(d)\nsigningkey = \(d)/signkey.pem\nissuercert = \(d)/issuercert.pem\ncertserial = \(d)/certserial\n"),
            ("swtpm-localca.options", ""),
            ("swtpm_setup.conf",
             "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = \(d)/swtpm-localca.conf\n"
                + "create_certs_tool_options = \(d)/swtpm-localca.options\nactive_pcr_banks = sha256\n"),
        ]
        for (name, text) in files {
            let url = directory.appendingPathComponent(name)
            if (try? String(contentsOf: url, encoding: .utf8)) != text {
                try text.write(to: url, atomically: true, encoding: .utf8)
            }
        }
    }
}

/// A child's software TPM: `swtpm socket --tpm2` with a state folder of its own (`<state-dir>/vtpm/instances/<id>`),
/// manufactured by `swtpm_setup` with an RSA-2048 EK and an EK certificate from the installation's ``VTPMLocalCA``
/// and all four PCR banks, reached by QEMU over a UNIX control socket (`-tpmdev emulator`, `-device tpm-tis`) so
/// OVMF measures the boot into it. ``stop()`` ends swtpm; ``remove()`` deletes the state (teardown, reconcile).
public final class SoftwareTPM: Sendable {
    /// The banks the vTPM is manufactured with (OVMF extends every active bank).
    public static let pcrBanks = "sha1,sha256,sha384,sha512"

    public let stateDirectory: URL
    /// The control socket QEMU's `-chardev socket` connects to.
    public let socket: URL
    /// The EK certificate (DER) `swtpm_setup` wrote, issued by the local CA.
    public let ekCertificate: URL
    let process: QEMUProcess

    private init(stateDirectory: URL, socket: URL, process: QEMUProcess) {
        self.stateDirectory = stateDirectory
        self.socket = socket
        self.ekCertificate = stateDirectory.appendingPathComponent("ek-rsa2048.crt")
        self.process = process
    }

    /// The state folder of instance `id`.
    public static func stateDirectory(stateDirectory: URL, instance id: String) -> URL {
        stateDirectory.appendingPathComponent("vtpm/instances/\(id)")
    }

    /// Manufactures the vTPM if its state folder holds none, then starts swtpm and waits for its socket.
    public static func start(directory: URL, localCA: VTPMLocalCA, timeout: Duration = .seconds(120)) async throws -> SoftwareTPM {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let state = directory.appendingPathComponent("tpm2-00.permall")
        if !fm.fileExists(atPath: state.path) {
            try localCA.prepare()
            let setup = try QEMUProcess.start([
                "swtpm_setup", "--tpm2", "--tpmstate", directory.path, "--create-ek-cert", "--config",
                localCA.setupConfiguration.path, "--pcr-banks", pcrBanks, "--write-ek-cert-files", directory.path,
                "--not-overwrite",
            ])
            guard let status = await setup.waitForExit(timeout: timeout) else {
                await setup.stop()
                throw QEMULaunchError(.cannotStart, "swtpm_setup did not finish within \(timeout)")
            }
            guard status == 0, fm.fileExists(atPath: state.path) else {
                throw QEMULaunchError(
                    .cannotStart, "swtpm_setup failed (status \(status)): \(setup.output.suffix(400))")
            }
        }
        let socket = directory.appendingPathComponent("swtpm.sock")
        try? fm.removeItem(at: socket)
        let process = try QEMUProcess.start([
            "swtpm", "socket", "--tpm2", "--tpmstate", "dir=\(directory.path)",
            "--ctrl", "type=unixio,path=\(socket.path)", "--terminate",
        ])
        let deadline = ContinuousClock.now + .seconds(10)
        while !fm.fileExists(atPath: socket.path) {
            if !process.isRunning || ContinuousClock.now >= deadline {
                await process.stop()
                throw QEMULaunchError(.socketFailed, "swtpm did not open \(socket.path): \(process.output.suffix(400))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return SoftwareTPM(stateDirectory: directory, socket: socket, process: process)
    }

    /// The QEMU arguments that attach this vTPM as a TIS device.
    public var qemuArguments: [String] {
        [
            "-chardev", "socket,id=cmkvtpm,path=\(socket.path)", "-tpmdev", "emulator,id=cmkvtpm0,chardev=cmkvtpm",
            "-device", "tpm-tis,tpmdev=cmkvtpm0",
        ]
    }

    public var processIdentifier: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Stops swtpm (SIGTERM, then SIGKILL).
    @discardableResult
    public func stop() async -> Int32 { await process.stop() }

    /// Reconciliation: deletes the vTPM state of every instance not in `liveInstances` (the ids of the instances that
    /// are not stopped), left behind by a supervisor that died before its teardown; returns the ids removed. Their
    /// swtpm has already exited with their QEMU (`--terminate`).
    @discardableResult
    public static func removeOrphans(stateDirectory: URL, keeping liveInstances: Set<String>) -> [String] {
        let folder = stateDirectory.appendingPathComponent("vtpm/instances")
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var removed: [String] = []
        for id in ids.sorted() where !liveInstances.contains(id) {
            remove(directory: folder.appendingPathComponent(id))
            removed.append(id)
        }
        return removed
    }

    /// Deletes a vTPM's state folder: its keys and EK certificate go with the instance.
    public static func remove(directory: URL) {
        try? FileManager.default.removeItem(at: directory)
    }
}
