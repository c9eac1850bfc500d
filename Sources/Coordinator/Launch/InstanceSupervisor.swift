public import Foundation
import Attestation
public import AttestationPolicy
import AttestationResults
import AuditLog
import BinaryFormat
import Crypto
import EventLog
import GuestImage
public import GuestProtocol
import PlatformSimulator

/// Which simulated platform a child is launched on: the TEE whose evidence it produces (`--tee sim-snp|sim-tdx`).
public enum SimulatedPlatformKind: String, Sendable, Hashable, CaseIterable, Codable {
    /// The simulated AMD secure processor: SEV-SNP reports (the default).
    case sevSNP = "sim-snp"
    /// The simulated TDX module and quoting enclave: TDX quotes with a CCEL event log.
    case tdx = "sim-tdx"

    /// The evidence a policy for this platform must be written for.
    public var evidence: Policy.EvidenceKind { self == .sevSNP ? .sevSNP : .tdx }
    /// The platform's folder under the state directory: `simulated/amd` or `simulated/intel`.
    public var stateFolder: String { self == .sevSNP ? "simulated/amd" : "simulated/intel" }
    /// The manifest's platform name.
    var manifestName: String { self == .sevSNP ? "simulated-sev-snp" : "simulated-tdx" }
}

/// What to launch.
public struct LaunchRequest: Sendable {
    public var name: String
    public var profile: String
    public var policyPath: String
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var allowSharedCores: Bool
    public var accelerator: QEMUAccelerator
    /// How long the child may take from QEMU start to the agent's `ready`.
    public var bootTimeout: Duration
    /// The agent binary to put into the image (nil: the `cmk-guest` beside the running executable).
    public var agent: URL?
    /// The simulated platform the child runs on.
    public var platform: SimulatedPlatformKind

    public init(
        name: String, profile: String, policyPath: String, vcpus: Int? = nil, memoryMiB: Int? = nil,
        allowSharedCores: Bool = false, accelerator: QEMUAccelerator = .tcg, bootTimeout: Duration = .seconds(180),
        agent: URL? = nil, platform: SimulatedPlatformKind = .sevSNP
    ) {
        self.platform = platform
        self.name = name
        self.profile = profile
        self.policyPath = policyPath
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.allowSharedCores = allowSharedCores
        self.accelerator = accelerator
        self.bootTimeout = bootTimeout
        self.agent = agent
    }
}

/// How a launch ended (the instance may keep running after an admission).
public struct LaunchOutcome: Sendable, Codable {
    public let name: String
    public let verdict: Verdict
    public let state: String
    public let partitionCPUs: [Int]
    public let shared: Bool
    public let measurement: String?
    public let auditSequence: Int64?
    public let token: String?
    public let failures: [RuleOutcome]
    public let simulated: Bool
    /// Seconds from QEMU start to the agent's `ready`, and for the attestation round trip.
    public let bootSeconds: Double?
    public let attestationSeconds: Double?
    /// What an admitted child was handed (names, digests, pins, timings); nil otherwise.
    public let handover: HandoverReport?
    /// What a rejected child said it holds when asked before it was shut down (it should hold nothing).
    public let guestStatus: AgentStatus?

    public init(
        name: String, verdict: Verdict, state: String, partitionCPUs: [Int], shared: Bool, measurement: String?,
        auditSequence: Int64?, token: String?, failures: [RuleOutcome], simulated: Bool, bootSeconds: Double?,
        attestationSeconds: Double?, handover: HandoverReport? = nil, guestStatus: AgentStatus? = nil
    ) {
        self.name = name
        self.verdict = verdict
        self.state = state
        self.partitionCPUs = partitionCPUs
        self.shared = shared
        self.measurement = measurement
        self.auditSequence = auditSequence
        self.token = token
        self.failures = failures
        self.simulated = simulated
        self.bootSeconds = bootSeconds
        self.attestationSeconds = attestationSeconds
        self.handover = handover
        self.guestStatus = guestStatus
    }
}

/// Runs one instance through its life cycle in this process: reserve an exclusive partition, build the image,
/// start the simulated platform and QEMU pinned to the partition, wait for the agent, ask for fresh evidence,
/// appraise it against the policy, sign the EAR, record the decision — and only then hand over. On rejection or
/// failure: quarantine (shut the child down), tear down, give the partition back.
public final class InstanceSupervisor: @unchecked Sendable {
    public let state: CMKStateDirectory
    public let paths: CMKPaths
    public let request: LaunchRequest
    let progress: @Sendable (String) -> Void

    private var qemu: QEMUProcess?
    private var control: FramedConnection?
    private var listener: UnixSocketListener?
    private var platform: SimulatedPlatformService?
    private var instanceID: String?

    public init(state: CMKStateDirectory, paths: CMKPaths, request: LaunchRequest, progress: @escaping @Sendable (String) -> Void) {
        self.state = state
        self.paths = paths
        self.request = request
        self.progress = progress
    }

    /// The instance's private folder: image, sockets, serial log, pid files.
    public static func folder(_ state: CMKStateDirectory, name: String) -> URL {
        state.url.appendingPathComponent("instances").appendingPathComponent(name)
    }

    func withStore<T>(_ body: (InstanceStore) throws -> T) throws -> T {
        let store = try InstanceStore(state)
        defer { store.close() }
        return try body(store)
    }

    /// Launches and attests; returns once the instance is admitted (still running) or has been torn down.
    public func launch() async throws -> LaunchOutcome {
        try state.prepare()
        let folder = Self.folder(state, name: request.name)
        // 1. The profile and its image, reproducibly (before the policy: a policy may pin the measurement by
        //    reference to the image, `${CMK_IMAGES}/<profile>/...`).
        guard let profilesFolder = GuestProfileCatalog.locate() else {
            throw CoordinatorError(.launch, "cannot find guest-kernels/ (set CMK_GUEST_KERNELS)")
        }
        let profile = try GuestProfileCatalog(directory: profilesFolder).profile(named: request.profile)
        let vcpus = request.vcpus ?? profile.vcpus
        let memory = request.memoryMiB ?? profile.memoryMiB
        progress("building the \(profile.name) image")
        let agent = request.agent ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("cmk-guest")
        guard FileManager.default.isExecutableFile(atPath: agent.path) else {
            throw CoordinatorError(.launch, "no cmk-guest agent at \(agent.path): build it (swift build --product cmk-guest)")
        }
        let image = try await GuestImage.build(
            profile: profile, cacheDirectory: paths.cacheDirectory, agent: agent,
            output: Self.imagesDirectory(paths).appendingPathComponent(profile.name))
        let policy = try PolicyLoader(environment: Self.policyEnvironment(paths)).load(path: request.policyPath)
        guard policy.evidence == request.platform.evidence else {
            throw CoordinatorError(
                .launch,
                "the simulated platform \(request.platform.rawValue) produces \(request.platform.evidence.rawValue) "
                    + "evidence; policy \(policy.id) is for \(policy.evidence.rawValue)")
        }

        // 2. An exclusive partition (reconcile first: never two owners for a core).
        progress("reserving \(vcpus) CPU(s) and \(memory) MiB")
        let record = try withStore { store in
            try store.reconcile()
            return try store.reserve(
                InstanceRequest(
                    name: request.name,
                    resources: PartitionRequest(cpuCount: vcpus, memoryMiB: memory, allowSharedCores: request.allowSharedCores),
                    profile: profile.name,
                    policy: PolicyReference(id: policy.id, version: policy.version, digest: policy.digest)),
                on: try HostInventory.read())
        }
        instanceID = record.id
        progress("reserved CPUs \(CPUList.format(record.partition.cpus))\(record.partition.shared ? " (shared)" : "")")
        do {
            return try await boot(
                policy: policy, profile: profile, image: image, record: record, folder: folder, vcpus: vcpus, memory: memory)
        } catch {
            await teardown(reason: "launch failed: \(error)", to: .failed)
            throw error
        }
    }

    private func boot(
        policy: Policy, profile: GuestProfile, image: GuestImage, record: InstanceRecord, folder: URL, vcpus: Int, memory: Int
    ) async throws -> LaunchOutcome {
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        // 3. The exact bytes QEMU is given.
        let firmwarePath = "/usr/share/ovmf/OVMF.fd"
        let firmware = try Array(Data(contentsOf: URL(fileURLWithPath: firmwarePath)))
        let kernel = try Array(Data(contentsOf: URL(fileURLWithPath: image.kernel.path)))
        let initrd = try Array(Data(contentsOf: URL(fileURLWithPath: image.initrd.path)))

        // A simulated TD's agent learns its platform from the command line (which TDVF measures into RTMR2).
        let commandLine = request.platform == .tdx ? image.commandLine + " cmk.platform=tdx" : image.commandLine

        // 4. The manifest the instance is launched with; its digest goes into HOST_DATA (MRCONFIGID on TDX).
        let manifest = InstanceManifest(
            name: request.name, platform: request.platform.manifestName,
            image: .init(
                profile: profile.name, kernelSHA256: image.kernel.sha256.description, initrdSHA256: image.initrd.sha256.description,
                firmwareSHA256: Hex.encode(SHA256.hash(data: firmware)), cmdline: commandLine),
            vcpus: vcpus, memoryMiB: memory, policyID: policy.id, policyVersion: policy.version, policyDigest: policy.digest,
            channelPeers: policy.handover.channelPeers)
        try Data(manifest.canonicalBytes).write(to: folder.appendingPathComponent("manifest.json"))

        // 5. The simulated platform measures the launch itself, from the exact bytes QEMU is given.
        let controlPath = folder.appendingPathComponent("control.sock").path
        let platformPath = folder.appendingPathComponent("platform.sock").path
        let platformFolder = state.url.appendingPathComponent(request.platform.stateFolder)
        var tdxCollateral: TDXCollateral?
        let qmpPath = folder.appendingPathComponent("qmp.sock").path
        listener = try UnixSocketListener(path: controlPath)
        switch request.platform {
        case .sevSNP:
            let processor = try SimulatedAMDSecureProcessor(directory: platformFolder)
            let launch = try processor.launch(.init(
                firmware: firmware, kernel: kernel, initrd: initrd, cmdline: commandLine, vcpus: vcpus, vcpuType: "EPYC-v4",
                guestFeatures: 0x1, guestPolicy: 0x30000, hostData: manifest.hostData))
            progress("SIMULATED platform: launch measurement \(Hex.encode(launch.measurement))")
            platform = try SimulatedPlatformService(socketPath: platformPath, launch: launch)
        case .tdx:
            let module = try SimulatedTDXModule(directory: platformFolder)
            let launch = try module.launch(.init(
                firmware: firmware, kernel: kernel, initrd: initrd, cmdline: commandLine, memoryMiB: memory,
                mrConfigID: manifest.mrConfigID))
            // The collateral Intel's PCS would serve, issued now by the simulated platform under its own root.
            tdxCollateral = try module.collateral()
            progress("SIMULATED TDX platform: MRTD \(Hex.encode(launch.mrTD)), RTMR1 \(Hex.encode(launch.rtmrs[1]))")
            platform = try SimulatedPlatformService(socketPath: platformPath, launch: launch)
        }

        // 6. QEMU, pinned to the partition.
        let settings = QEMUInstanceSettings(
            name: request.name, firmware: firmwarePath, kernel: image.kernel.path, initrd: image.initrd.path,
            commandLine: commandLine, vcpus: vcpus, memoryMiB: memory,
            serialLog: folder.appendingPathComponent("serial.log").path, pidFile: folder.appendingPathComponent("qemu.pid").path,
            controlSocket: controlPath, platformSocket: platformPath, hostCPUs: record.partition.cpus,
            qmpSocket: qmpPath, hotplugSlots: policy.handover.volumes.count)
        // Debian's QEMU 7.2 lacks EPYC-v4; EPYC-v3 has the same CPUID signature, so the measurement is unchanged.
        // (A simulated TD runs on the same vCPU model: no TDX measurement covers the CPU model.)
        let qemuPath = CommandRunner.which("qemu-system-x86_64") ?? "qemu-system-x86_64"
        let help = try await CommandRunner.run(qemuPath, ["-cpu", "help"], timeout: .seconds(30))
        guard let cpuModel = QEMUCPUModels(help: help.standardOutputText).epycModel() else {
            throw CoordinatorError(.launch, "QEMU (\(qemuPath)) offers no EPYC CPU model")
        }
        let command = SimulatedLaunchCommand(settings: settings, accelerator: request.accelerator, cpuModel: cpuModel)
        let started = ContinuousClock.now
        let process = try QEMUProcess.start(try command.commandLine())
        qemu = process
        try? await Task.sleep(for: .milliseconds(300))
        guard process.isRunning, let identity = ProcessIdentity.of(pid: process.processIdentifier) else {
            throw CoordinatorError(.launch, "QEMU exited at once (status \(process.exitStatus ?? -1)): \(process.output)")
        }
        try withStore { store in
            _ = try store.transition(
                record.id, to: .booting, reason: "QEMU started (pid \(identity.pid))",
                changes: InstanceChanges(
                    process: identity, sockets: ["control": controlPath, "platform": platformPath, "qmp": qmpPath]))
        }
        progress("booting (QEMU pid \(identity.pid), \(request.accelerator.rawValue)); waiting for cmk-guest")

        // 7. The agent.
        let connection = try listener!.accept(timeout: request.bootTimeout)
        control = connection
        let ready = try connection.receive(timeout: request.bootTimeout)
        guard case .ready(_, let agentVersion, let provider) = ready else {
            throw CoordinatorError(.launch, "the child's first message was \(ready.kind), not ready")
        }
        let bootSeconds = Self.seconds(ContinuousClock.now - started)
        progress("cmk-guest \(agentVersion) ready after \(String(format: "%.1f", bootSeconds)) s (evidence: \(provider))")
        try withStore { store in _ = try store.transition(record.id, to: .attesting, reason: "agent ready") }

        // 8. Fresh evidence bound to a nonce and the agent's key.
        var nonce = [UInt8](repeating: 0, count: 32)
        for index in nonce.indices { nonce[index] = UInt8.random(in: 0...255) }
        let asked = Date()
        let attestStart = ContinuousClock.now
        try connection.send(.attestRequest(nonce: nonce))
        let answer = try connection.receive(timeout: .seconds(120))
        guard case .attestResponse(let kind, let publicKey, let evidence, let auxiliary) = answer else {
            throw CoordinatorError(.launch, "the child answered \(answer.kind) to the attestation request")
        }
        let attestationSeconds = Self.seconds(ContinuousClock.now - attestStart)

        // 9. Appraise with the real verifier; the simulated roots are trusted only if the policy names them.
        let anchors = try TrustAnchorStore(directory: TrustAnchorStore.locateDefaultDirectory(), simulated: platformFolder)
        let appraiser = EvidenceAppraiser(trustAnchors: anchors)
        let presented: PresentedEvidence = kind == "sev-snp"
            ? .snp(report: evidence, certificateTable: auxiliary, endorsement: nil, chain: [])
            : .tdx(quote: evidence, collateral: tdxCollateral)
        let input = appraiser.input(
            presented, revocation: policy.trust.crl,
            context: AppraisalContext(
                evaluationTime: Date(), nonce: nonce, boundKey: publicKey, manifest: manifest.canonicalBytes, collectedAt: asked))
        // A TD's event log must replay to the RTMRs its verified quote carries, or the log describes another boot.
        if case .tdx(let result)? = input.claims, !auxiliary.isEmpty {
            let replayed: [HexBytes]
            do {
                replayed = try TDXMeasurementRegisters(log: try TCGEventLog(bytes: auxiliary)).rtmrs
            } catch {
                throw CoordinatorError(.launch, "the TD's event log cannot be read: \(error)")
            }
            guard replayed == result.claims.rtmrs else {
                throw CoordinatorError(
                    .launch,
                    "the TD's event log replays to RTMRs \(replayed.map { $0.description.prefix(16) + "…" }) but its "
                        + "quote carries \(result.claims.rtmrs.map { $0.description.prefix(16) + "…" })")
            }
            progress("the TD's event log (\(auxiliary.count) bytes) replays to the RTMRs its quote carries")
        }
        let appraisal = policy.evaluate(input)
        let measurement: String? =
            switch input.claims {
            case .snp(let result)?: result.claims.measurement.description
            case .tdx(let result)?: result.claims.mrTD.description
            case nil: nil
            }

        // 10. Sign the result and record the decision, whatever it is.
        try state.prepare()
        let key = try EARSigningKey.loadOrCreate(directory: state.keysDirectory)
        let claims = try EARClaims(
            appraisal: appraisal, verifierID: .cmk(version: CMKVersion.current), issuedAt: Date(),
            expiresAt: Date().addingTimeInterval(300), issuer: "cmk", nonce: nonce)
        let token = try EARJWT.sign(claims, with: key)
        let audit = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
        let recorded = try audit.append(.appraisal(appraisal, actor: "coordinator", instance: request.name, resultToken: token))
        try Data(token.utf8).write(to: folder.appendingPathComponent("ear.jwt"))

        guard appraisal.verdict == .admit else {
            progress("REJECTED by policy \(policy.id): \(appraisal.failures.map(\.rule).joined(separator: ", ")); quarantining")
            try withStore { store in
                _ = try store.transition(
                    record.id, to: .rejected, reason: "policy \(policy.id) rejected: \(appraisal.failures.map(\.rule).joined(separator: ", "))",
                    changes: InstanceChanges(evidenceDigest: appraisal.evidenceDigest, auditSequence: recorded.sequence))
            }
            // Nothing was handed over; ask the child what it holds (names only) before it is shut down, as evidence.
            var guestStatus: AgentStatus?
            if (try? connection.send(.statusRequest)) != nil, case .status(let status)? = try? connection.receive(timeout: .seconds(10)) {
                guestStatus = status
                progress("the rejected child holds \(status.secretFiles.count) secret file(s), \(status.volumes.count) volume(s)")
            }
            await teardown(reason: "rejected", to: nil)
            return LaunchOutcome(
                name: request.name, verdict: .reject, state: "stopped", partitionCPUs: record.partition.cpus,
                shared: record.partition.shared, measurement: measurement, auditSequence: recorded.sequence, token: token,
                failures: appraisal.failures, simulated: appraisal.simulated, bootSeconds: bootSeconds,
                attestationSeconds: attestationSeconds, guestStatus: guestStatus)
        }

        // 11. Only now: the handover (Handover.swift): pin the vCPUs, seal the secrets to the attested key, attach
        //     the volumes, name the channel peers.
        let report: HandoverReport
        do {
            report = try Handover(
                instance: request.name, policy: policy, handover: appraisal.handover, nonce: nonce, boundKey: publicKey,
                qemuPID: identity.pid, partitionCPUs: record.partition.cpus, qmpSocket: qmpPath,
                secrets: SecretStore(state), volumes: VolumeStore(state), progress: progress
            ).run(over: connection)
        } catch {
            // Admitted, but not handed over: the record says so before the instance is torn down (as failed).
            // The reason may quote the child (untrusted text): at most 500 characters reach the log and the record.
            let reason = String("\(error)".prefix(500))
            progress("HANDOVER FAILED: \(reason)")
            _ = try? audit.append(
                AuditEntry(
                    actor: "coordinator", kind: .instanceEvent, instance: request.name,
                    details: ["event": "handover-failed", "reason": reason]))
            throw error
        }
        _ = try audit.append(
            AuditEntry(actor: "coordinator", kind: .instanceEvent, instance: request.name, details: Handover.auditDetails(report)))
        try withStore { store in
            try store.recordHandover(
                record.id, secrets: report.secrets.map(\.name), volumes: report.volumes.map(\.name),
                channelPeers: report.channelPeers, sealedSecretsSHA256: report.sealedMessageSHA256)
            _ = try store.transition(
                record.id, to: .admitted, reason: "policy \(policy.id) v\(policy.version) admitted",
                changes: InstanceChanges(evidenceDigest: appraisal.evidenceDigest, auditSequence: recorded.sequence))
        }
        progress("ADMITTED by policy \(policy.id) v\(policy.version)\(appraisal.simulated ? " (SIMULATED platform)" : ""); audit record #\(recorded.sequence)")
        return LaunchOutcome(
            name: request.name, verdict: .admit, state: "admitted", partitionCPUs: record.partition.cpus,
            shared: record.partition.shared, measurement: measurement, auditSequence: recorded.sequence, token: token,
            failures: [], simulated: appraisal.simulated, bootSeconds: bootSeconds, attestationSeconds: attestationSeconds,
            handover: report)
    }

    /// Serves an admitted instance until its QEMU exits or `stopRequested` turns true; then stops it.
    public func supervise(stopRequested: @Sendable () -> Bool) async {
        guard let qemu else { return }
        while qemu.isRunning && !stopRequested() {
            _ = await qemu.waitForExit(timeout: .milliseconds(500))
        }
        await teardown(reason: qemu.isRunning ? "stop requested" : "QEMU exited (status \(qemu.exitStatus ?? -1))", to: nil)
    }

    /// Quarantine and teardown: ask the child to shut down, stop QEMU, close the ports, release the partition.
    func teardown(reason: String, to failure: InstanceState?) async {
        if let control { try? control.send(.shutdown) }
        if let qemu {
            if qemu.isRunning { _ = await qemu.waitForExit(timeout: .seconds(3)) }
            if qemu.isRunning { _ = await qemu.stop(grace: .seconds(5)) }
        }
        control?.close()
        control = nil
        platform?.stop()
        platform = nil
        listener = nil
        guard let id = instanceID else { return }
        try? withStore { store in
            if let failure, let current = try store.instance(id), current.state != .stopped, current.state != failure {
                _ = try? store.transition(id, to: failure, reason: reason, changes: InstanceChanges(processGone: true))
            }
            if let current = try store.instance(id), current.state != .stopped {
                if current.state != .stopping { _ = try store.transition(id, to: .stopping, reason: reason) }
                _ = try store.transition(id, to: .stopped, reason: reason, changes: InstanceChanges(processGone: true))
            }
        }
        instanceID = nil
    }

    /// Where launches build their images, one folder per profile (reproducible bytes, so launches can share them).
    /// `$CMK_IMAGES` when set (the same variable policies use for `${CMK_IMAGES}`), else `<cache>/images`.
    public static func imagesDirectory(_ paths: CMKPaths) -> URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_IMAGES"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        return paths.cacheDirectory.appendingPathComponent("images")
    }

    /// The environment policies are loaded with: the process's, plus `CMK_IMAGES` when unset.
    public static func policyEnvironment(_ paths: CMKPaths) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        if environment["CMK_IMAGES"] == nil { environment["CMK_IMAGES"] = imagesDirectory(paths).path }
        return environment
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
