public import Foundation
public import Attestation
public import AttestationPolicy
import AttestationResults
import AuditLog
import BinaryFormat
import Crypto
import EventLog
import GuestImage
public import GuestProtocol
import PlatformSimulator

extension TEEKind {
    /// The evidence a policy for this platform must be written for: SEV-SNP reports or TDX quotes.
    public var evidence: Policy.EvidenceKind {
        switch self {
        case .simulatedSNP, .snp: .sevSNP
        case .simulatedTDX, .tdx: .tdx
        }
    }
    /// The simulated platform's folder under the state directory: `simulated/amd` or `simulated/intel`.
    public var simulatedStateFolder: String { evidence == .sevSNP ? "simulated/amd" : "simulated/intel" }
    /// The manifest's platform name.
    var manifestName: String {
        switch self {
        case .simulatedSNP: "simulated-sev-snp"
        case .simulatedTDX: "simulated-tdx"
        case .snp: "sev-snp"
        case .tdx: "tdx"
        }
    }
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
    /// The confidential platform to launch on.
    public var tee: TEEKind
    /// How an admitted instance's agent is watched.
    public var heartbeat: InstanceWatch.Settings
    /// What the host keeps for itself when the partition is chosen.
    public var reserve: HostReserve
    /// Attach a software TPM (swtpm) so OVMF measures the boot into it (docs/coordinator.md, "vTPM per child").
    public var vtpm: Bool = false
    /// The instance this launch succeeds (`cmk update`): named in the manifest's `updatePeers`, so the two children
    /// accept a state-transfer channel with each other (docs/updates.md).
    public var updateOf: String?
    /// Another kernel image for the profile (`--kernel`): the profile's command line, init and modules stay.
    public var kernel: URL?
    /// That kernel's `lib/modules/<release>` folder (`--kernel-modules`); nil: the cache kernel's, if the release is
    /// the same (``GuestProfile/replacingKernel(image:modules:cacheDirectory:)``).
    public var kernelModules: URL?
    /// For `snp` and `tdx`: what the host offers a real launch; nil probes the host (``HardwareTEEHost/probe``).
    /// Tests inject a host that can, to check the command and verifier a real launch would use.
    public var hardwareHost: HardwareTEEHost?

    public init(
        name: String, profile: String, policyPath: String, vcpus: Int? = nil, memoryMiB: Int? = nil,
        allowSharedCores: Bool = false, accelerator: QEMUAccelerator = .tcg, bootTimeout: Duration = .seconds(180),
        agent: URL? = nil, tee: TEEKind = .simulatedSNP, heartbeat: InstanceWatch.Settings = .default,
        reserve: HostReserve = .default, hardwareHost: HardwareTEEHost? = nil
    ) {
        self.hardwareHost = hardwareHost
        self.tee = tee
        self.heartbeat = heartbeat
        self.reserve = reserve
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

/// How a launch ended (the instance may keep running after an admission), as the supervisor persists it in
/// `<state>/instances/<name>.outcome.json` for `cmk launch --json` and `cmk inspect`.
public struct LaunchOutcome: Sendable, Codable {
    /// Why a launch did not get to a verdict.
    public struct Failure: Sendable, Codable, Hashable {
        /// A ``CoordinatorError`` code (`insufficient-resources`, `platform-unavailable`, `launch` ...).
        public let code: String
        public let reason: String

        public init(code: String, reason: String) {
            self.code = code
            self.reason = reason
        }
    }

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
    /// The instance's id in the store.
    public var instanceID: String?
    /// The platform (`sim-snp` ...).
    public var tee: String?
    /// Each phase that ran, in order, with its time.
    public var phases: [PhaseTiming]
    /// The policy's whole evaluation: every rule's outcome, the trust vector, the verdict, the handover.
    public var appraisal: Appraisal?
    /// The verified SEV-SNP claims the policy judged.
    public var snpClaims: SNPClaims?
    /// The verified TDX claims the policy judged.
    public var tdxClaims: TDXClaims?
    /// The verified evidence's measurement and binding fields under their TEE's names (HOST_DATA on SEV-SNP,
    /// MRCONFIGID / MROWNER / RTMRs on TDX).
    public var platformFields: [PlatformField]?
    /// HOST_DATA: SHA-256 of the instance manifest (hex).
    public var manifestDigest: String?
    /// What the policy's appraisal named for the handover (references), only after admission.
    public var handoverReferences: AttestationPolicy.Handover?
    /// What an admitted child was handed (names, digests, pins, timings); nil otherwise.
    public var handover: HandoverReport?
    /// What a rejected child said it holds when asked before it was shut down (it should hold nothing).
    public var guestStatus: AgentStatus?
    /// Why the launch stopped short of a verdict; nil when there is one.
    public var error: Failure?

    public init(
        name: String, verdict: Verdict, state: String, partitionCPUs: [Int], shared: Bool, measurement: String?,
        auditSequence: Int64?, token: String?, failures: [RuleOutcome], simulated: Bool, bootSeconds: Double?,
        attestationSeconds: Double?, instanceID: String? = nil, tee: String? = nil, phases: [PhaseTiming] = [],
        appraisal: Appraisal? = nil, snpClaims: SNPClaims? = nil, tdxClaims: TDXClaims? = nil,
        platformFields: [PlatformField] = [], manifestDigest: String? = nil,
        handoverReferences: AttestationPolicy.Handover? = nil, handover: HandoverReport? = nil,
        guestStatus: AgentStatus? = nil, error: Failure? = nil
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
        self.instanceID = instanceID
        self.tee = tee
        self.phases = phases
        self.appraisal = appraisal
        self.snpClaims = snpClaims
        self.tdxClaims = tdxClaims
        self.platformFields = platformFields
        self.manifestDigest = manifestDigest
        self.handoverReferences = handoverReferences
        self.handover = handover
        self.guestStatus = guestStatus
        self.error = error
    }

    /// The outcome of a launch that failed before a verdict.
    public static func failed(
        name: String, error: any Error, tee: TEEKind, phases: [PhaseTiming], instanceID: String?, partition: Partition?
    ) -> LaunchOutcome {
        let code = (error as? CoordinatorError)?.code.name ?? "launch"
        let reason = (error as? CoordinatorError)?.reason ?? "\(error)"
        return LaunchOutcome(
            name: name, verdict: .reject, state: code == CoordinatorError.Code.stoppedByOperator.name ? "stopped" : "failed",
            partitionCPUs: partition?.cpus ?? [],
            shared: partition?.shared ?? false, measurement: nil, auditSequence: nil, token: nil,
            failures: [
                RuleOutcome(
                    rule: "launch", status: .fail, expected: "a child that boots and attests", actual: reason,
                    hint: "see cmk logs \(name)", trustClaim: .configuration, trustValue: 0)
            ],
            simulated: tee.isSimulated, bootSeconds: phases.first(where: { $0.phase == .boot })?.seconds,
            attestationSeconds: nil, instanceID: instanceID, tee: tee.rawValue, phases: phases,
            error: Failure(code: code, reason: reason))
    }
}

/// The steps of a launch, in the order they run.
public enum LaunchPhase: String, Sendable, Codable, Hashable, CaseIterable {
    /// Reconcile the store and reserve an exclusive partition.
    case reserve
    /// Build the image, load the policy, measure the launch, write the manifest.
    case image
    /// Start QEMU and wait for the agent's `ready`.
    case boot
    /// Send the nonce and receive the evidence.
    case evidence
    /// Verify the evidence, evaluate the policy, sign the EAR, append to the audit log.
    case verify
    /// Pin the vCPUs, seal the secrets to the attested key, attach the volumes, name the channel peers, and
    /// receive the child's confirmation (only on admission; see ``Handover``).
    case handover
}

/// How long one phase took.
public struct PhaseTiming: Sendable, Codable, Hashable {
    public let phase: LaunchPhase
    public let seconds: Double
    /// One line on what the phase did.
    public let detail: String

    public init(phase: LaunchPhase, seconds: Double, detail: String) {
        self.phase = phase
        self.seconds = seconds
        self.detail = detail
    }
}

/// What a supervisor reports while it works.
public enum LaunchEvent: Sendable {
    case phaseStarted(LaunchPhase)
    case phaseFinished(PhaseTiming)
    /// A line for the log.
    case note(String)
}

/// Runs one instance through its life cycle in this process: reserve an exclusive partition, build the image,
/// start the simulated platform and QEMU pinned to the partition, wait for the agent, ask for fresh evidence,
/// appraise it against the policy, sign the EAR, record the decision — and only then hand over. On rejection or
/// failure: quarantine (shut the child down), tear down, give the partition back. An admitted instance is then
/// watched (``supervise(stopRequested:)``): a QEMU that exits or an agent that stops answering marks it failed
/// within a second and gives its partition back.
public final class InstanceSupervisor: @unchecked Sendable {
    public let state: CMKStateDirectory
    public let paths: CMKPaths
    public let request: LaunchRequest
    let progress: @Sendable (LaunchEvent) -> Void

    private var qemu: QEMUProcess?
    private var exitNotifier: ProcessExitNotifier?
    private var control: FramedConnection?
    private var listener: UnixSocketListener?
    private var platform: SimulatedPlatformService?
    private var softwareTPM: SoftwareTPM?
    private var instanceID: String?
    private var partition: Partition?
    /// The host a real (`snp`, `tdx`) launch runs on, once checked.
    private var hardwareHost: HardwareTEEHost?
    /// A stop asked for before the handover began (``requestStop()``), and what the launch had got to.
    private let stopLock = NSLock()
    private var stopRequestedAt: ContinuousClock.Instant?
    private var handoverBegun = false
    private var verdictRecorded: Verdict?
    /// The phases finished so far.
    public private(set) var phases: [PhaseTiming] = []

    public init(
        state: CMKStateDirectory, paths: CMKPaths, request: LaunchRequest,
        progress: @escaping @Sendable (LaunchEvent) -> Void
    ) {
        self.state = state
        self.paths = paths
        self.request = request
        self.progress = progress
    }

    /// The store id and partition of the instance, once reserved.
    public var reservedInstance: (id: String, partition: Partition)? {
        guard let instanceID, let partition else { return nil }
        return (instanceID, partition)
    }

    /// The instance's private folder: image, sockets, serial log, pid files.
    public static func folder(_ state: CMKStateDirectory, name: String) -> URL {
        state.url.appendingPathComponent("instances").appendingPathComponent(name)
    }

    /// How supervisors open the store: they share the state folder with other supervisors and commands, each
    /// holding the lock for one change, so they wait for it a while.
    public static func storeOptions(reserve: HostReserve = .default) -> InstanceStore.Options {
        InstanceStore.Options(reserve: reserve, lockWait: .seconds(15))
    }

    func withStore<T>(_ body: (InstanceStore) throws -> T) throws -> T {
        let store = try InstanceStore(state, options: Self.storeOptions(reserve: request.reserve))
        defer { store.close() }
        return try body(store)
    }

    private func note(_ line: String) { progress(.note(line)) }

    /// Runs `body` as `phase`, reporting its start and its time.
    private func phase<T>(_ phase: LaunchPhase, _ body: () async throws -> (T, String)) async throws -> T {
        try checkStop(beginning: phase)
        progress(.phaseStarted(phase))
        let start = ContinuousClock.now
        let (value, detail) = try await body()
        let timing = PhaseTiming(phase: phase, seconds: Self.seconds(ContinuousClock.now - start), detail: detail)
        phases.append(timing)
        progress(.phaseFinished(timing))
        return value
    }

    /// Launches and attests; returns once the instance is admitted (still running) or has been torn down.
    ///
    /// - Throws: `platformUnavailable` when the platform cannot run here; `insufficientResources` (saying what is
    ///   free) when the partition does not fit; `launch` when the child does not boot, attest or acknowledge.
    public func launch() async throws -> LaunchOutcome {
        try state.prepare()
        // Before anything is reserved or built: a policy that cannot appraise this platform's evidence is a usage
        // error, then a platform this host cannot run is refused naming what is missing.
        let header: PolicyHeader
        do {
            header = try PolicyLoader().header(path: request.policyPath)
        } catch {
            throw CoordinatorError(.invalidArgument, error.description)
        }
        try TEEAvailability.requireAppraisable(header, by: request.tee, policyPath: request.policyPath)
        if header.requiresVTPM && !request.vtpm {
            throw CoordinatorError(
                .invalidArgument,
                "policy \(header.id) (\(request.policyPath)) has a tpm section: only a child with a vTPM can satisfy it; "
                    + "launch with --vtpm, or use a policy without one")
        }
        if request.tee.isSimulated {
            try TEEAvailability.require(request.tee)
        } else {
            // A real platform: KVM and its device files, QEMU's guest object, the firmware, the QGS for a TD.
            let host: HardwareTEEHost
            if let injected = request.hardwareHost {
                host = injected
            } else {
                host = await HardwareTEEHost.probe(request.tee, paths: paths)
            }
            try host.require(request.tee)
            hardwareHost = host
        }
        let folder = Self.folder(state, name: request.name)
        guard let profilesFolder = GuestProfileCatalog.locate() else {
            throw CoordinatorError(.launch, "cannot find guest-kernels/ (set CMK_GUEST_KERNELS)")
        }
        var profile = try GuestProfileCatalog(directory: profilesFolder).profile(named: request.profile)
        if let kernel = request.kernel {
            profile = try profile.replacingKernel(
                image: kernel, modules: request.kernelModules, cacheDirectory: paths.cacheDirectory)
        }
        let vcpus = request.vcpus ?? profile.vcpus
        let memory = request.memoryMiB ?? profile.memoryMiB

        // 1. An exclusive partition first (reconcile first: never two owners for a core), so a launch that cannot
        //    fit is refused at once.
        let record = try await phase(.reserve) {
            let supervisor = ProcessIdentity.of(pid: getpid())
            var reconciled: [ReconciliationOutcome] = []
            defer {
                // An admitted instance whose supervisor died is watched again by a detached `cmk supervise`.
                AdoptedInstanceWatch.startWatchers(for: reconciled, state: state)
            }
            let record = try withStore { store in
                reconciled = try store.reconcile()
                for outcome in reconciled where outcome.action != .supervised {
                    note("reconciled \(outcome.name): \(outcome.action.rawValue) (\(outcome.reason))")
                }
                return try store.reserve(
                    InstanceRequest(
                        name: request.name,
                        resources: PartitionRequest(
                            cpuCount: vcpus, memoryMiB: memory, allowSharedCores: request.allowSharedCores),
                        profile: profile.name, supervisor: supervisor),
                    on: try HostInventory.read())
            }
            return (
                record,
                "CPUs \(CPUList.format(record.partition.cpus))\(record.partition.shared ? " (shared)" : "") and "
                    + "\(memory) MiB"
            )
        }
        instanceID = record.id
        partition = record.partition
        do {
            return try await boot(profile: profile, record: record, folder: folder, vcpus: vcpus, memory: memory)
        } catch {
            if let stopped = await stopIfRequested() { throw stopped }
            await teardown(reason: "launch failed: \(error)", to: .failed)
            throw error
        }
    }

    /// Asks a launch in progress to stop (`cmk stop`, SIGTERM to the supervisor): before the handover has begun,
    /// QEMU is killed at once — a child without a verdict gets no grace period and holds nothing — so the wait for
    /// the agent or its evidence ends, and the launch tears down to `stopped`, the audit log saying the operator
    /// stopped it before a verdict (or after it, before the handover). Once the handover has begun this only
    /// records the request: ``supervise(stopRequested:)`` then stops the admitted instance the ordinary way.
    /// Safe to call from any thread, any number of times.
    public func requestStop() {
        let target: QEMUProcess? = stopLock.withLock {
            if stopRequestedAt == nil { stopRequestedAt = .now }
            return handoverBegun ? nil : qemu
        }
        if let target, target.isRunning { kill(target.processIdentifier, SIGKILL) }
    }

    /// Whether ``requestStop()`` was called.
    public var stopWasRequested: Bool { stopLock.withLock { stopRequestedAt != nil } }

    /// Records the QEMU just started; kills it at once when a stop came in while it was starting.
    private func adopt(_ process: QEMUProcess) {
        let stop = stopLock.withLock {
            qemu = process
            return stopRequestedAt != nil
        }
        if stop { kill(process.processIdentifier, SIGKILL) }
    }

    /// Throws `stoppedByOperator` when a stop was asked for before `phase` (the handover is then never begun).
    private func checkStop(beginning phase: LaunchPhase) throws(CoordinatorError) {
        let stop = stopLock.withLock {
            if stopRequestedAt == nil, phase == .handover { handoverBegun = true }
            return stopRequestedAt != nil
        }
        if stop {
            throw CoordinatorError(.stoppedByOperator, "stopped by the operator before the \(phase.rawValue) phase")
        }
    }

    /// When a stop was asked for: tears the child down to `stopped` (QEMU gone, ports closed, partition released),
    /// appends an `instance-event` (`stopped-before-verdict`) to the audit log, and returns the error the launch
    /// ends with; nil when no stop was asked for.
    private func stopIfRequested() async -> CoordinatorError? {
        guard let requestedAt = stopLock.withLock({ stopRequestedAt }) else { return nil }
        let verdict = verdictRecorded
        let reason =
            verdict.map { "stopped by the operator (cmk stop) after the \($0.rawValue) verdict, before the handover" }
            ?? "stopped by the operator (cmk stop) before a verdict"
        let id = instanceID
        note("STOPPED: \(reason); nothing was handed over")
        await teardown(reason: reason, to: nil)
        let seconds = Self.seconds(ContinuousClock.now - requestedAt)
        note("torn down \(Int(seconds * 1000)) ms after the stop request; partition released")
        do {
            let audit = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
            _ = try audit.append(
                AuditEntry(
                    actor: "operator", kind: .instanceEvent, instance: request.name,
                    details: [
                        "event": verdict == nil ? "stopped-before-verdict" : "stopped-before-handover",
                        "reason": reason, "instanceID": id ?? "-", "handedOver": "nothing",
                        "phase": phases.last.map { "after \($0.phase.rawValue)" } ?? "before reserve",
                        "teardownMs": String(Int(seconds * 1000)),
                    ]))
        } catch {
            note("cannot append the stop to the audit log: \(error)")
        }
        return CoordinatorError(.stoppedByOperator, reason)
    }

    private func boot(
        profile: GuestProfile, record: InstanceRecord, folder: URL, vcpus: Int, memory: Int
    ) async throws -> LaunchOutcome {
        // 2. The image, reproducibly, then the policy (a policy may pin the measurement by reference to the image,
        //    `${CMK_IMAGES}/<profile>/...`), the manifest, and the simulated platform's measurement of the launch
        //    (the AMD secure processor for sim-snp, the TDX module for sim-tdx).
        enum SimulatedLaunch {
            case snp(SimulatedSNPLaunch)
            case tdx(SimulatedTDXLaunch)
            /// A real SEV-SNP guest or TD: the hardware measures the launch, the guest asks its own hardware.
            case hardware(HardwareTEEHost)
        }
        struct Prepared {
            let image: GuestImage
            let policy: Policy
            let manifest: InstanceManifest
            /// The kernel command line QEMU is given (a TD's adds `cmk.platform=tdx`).
            let commandLine: String
            let launch: SimulatedLaunch
            /// The simulated platform's state folder: its roots are trusted only if the policy names them.
            let simulatedRoots: URL
            /// The collateral Intel's PCS would serve, issued by the simulated TDX platform; nil for SEV-SNP.
            let tdxCollateral: TDXCollateral?
            let firmwarePath: String
            let cpuModel: String
        }
        let prepared: Prepared = try await phase(.image) {
            let agent = request.agent ?? Self.defaultAgent()
            guard FileManager.default.isExecutableFile(atPath: agent.path) else {
                throw CoordinatorError(
                    .launch,
                    "no cmk-guest agent at \(agent.path): build it (scripts/build-guest-agent makes the static release "
                        + "binary that ships; swift build --product cmk-guest a debug one) or name one with --agent")
            }
            let image = try await GuestImage.build(
                profile: profile, cacheDirectory: paths.cacheDirectory, agent: agent,
                output: Self.imagesDirectory(paths).appendingPathComponent(Self.imageFolderName(profile)))
            let policy = try PolicyLoader(environment: Self.policyEnvironment(paths)).load(path: request.policyPath)
            guard policy.evidence == request.tee.evidence else {
                throw CoordinatorError(
                    .launch,
                    "the \(request.tee.rawValue) platform produces \(request.tee.evidence.rawValue) evidence; policy "
                        + "\(policy.id) is for \(policy.evidence.rawValue)")
            }
            try withStore { store in
                _ = try store.update(
                    record.id,
                    InstanceChanges(policy: PolicyReference(id: policy.id, version: policy.version, digest: policy.digest)))
            }
            try? FileManager.default.removeItem(at: folder)
            try FileManager.default.createDirectory(
                at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            // The exact bytes QEMU is given (a real guest boots the firmware the host probe found).
            let firmwarePath = hardwareHost?.firmware ?? "/usr/share/ovmf/OVMF.fd"
            let firmware = try Array(Data(contentsOf: URL(fileURLWithPath: firmwarePath)))
            let kernel = try Array(Data(contentsOf: URL(fileURLWithPath: image.kernel.path)))
            let initrd = try Array(Data(contentsOf: URL(fileURLWithPath: image.initrd.path)))
            // A simulated TD's agent learns its platform from the command line (which TDVF measures into RTMR2).
            let commandLine =
                request.tee == .simulatedTDX ? image.commandLine + " cmk.platform=tdx" : image.commandLine
            // The manifest the instance is launched with; its digest goes into HOST_DATA (MRCONFIGID on TDX).
            let manifest = InstanceManifest(
                name: request.name, platform: request.tee.manifestName,
                image: .init(
                    profile: profile.name, kernelSHA256: image.kernel.sha256.description,
                    initrdSHA256: image.initrd.sha256.description,
                    firmwareSHA256: Hex.encode(SHA256.hash(data: firmware)), cmdline: commandLine),
                vcpus: vcpus, memoryMiB: memory, policyID: policy.id, policyVersion: policy.version,
                policyDigest: policy.digest, channelPeers: policy.handover.channelPeers,
                peerMeasurements: policy.handover.channelPeerMeasurements?.mapValues { $0.map(\.description) },
                updatePeers: UpdateNaming.updatePeers(of: request.name, predecessor: request.updateOf))
            try Data(manifest.canonicalBytes).write(to: folder.appendingPathComponent("manifest.json"))
            // The simulated platform measures the launch itself, from the exact bytes QEMU is given.
            let platformFolder = state.url.appendingPathComponent(request.tee.simulatedStateFolder)
            let launch: SimulatedLaunch
            var tdxCollateral: TDXCollateral?
            switch (request.tee.evidence, hardwareHost) {
            case (_, let host?):
                note("real \(request.tee.evidence == .tdx ? "TDX" : "SEV-SNP") launch: firmware \(host.firmware)")
                launch = .hardware(host)
            case (.sevSNP, nil):
                let processor = try SimulatedAMDSecureProcessor(directory: platformFolder)
                let snp = try processor.launch(
                    .init(
                        firmware: firmware, kernel: kernel, initrd: initrd, cmdline: commandLine, vcpus: vcpus,
                        vcpuType: "EPYC-v4", guestFeatures: 0x1, guestPolicy: 0x30000, hostData: manifest.hostData))
                note("SIMULATED platform: launch measurement \(Hex.encode(snp.measurement))")
                launch = .snp(snp)
            case (.tdx, nil):
                let module = try SimulatedTDXModule(directory: platformFolder)
                let td = try module.launch(
                    .init(
                        firmware: firmware, kernel: kernel, initrd: initrd, cmdline: commandLine, memoryMiB: memory,
                        mrConfigID: manifest.mrConfigID))
                // The collateral Intel's PCS would serve, issued now by the simulated platform under its own root.
                tdxCollateral = try module.collateral()
                note("SIMULATED TDX platform: MRTD \(Hex.encode(td.mrTD)), RTMR1 \(Hex.encode(td.rtmrs[1]))")
                launch = .tdx(td)
            }
            let cpuModel: String
            if let host = hardwareHost { cpuModel = host.cpuModel } else { cpuModel = try await Self.epycModel() }
            return (
                Prepared(
                    image: image, policy: policy, manifest: manifest, commandLine: commandLine, launch: launch,
                    simulatedRoots: platformFolder, tdxCollateral: tdxCollateral, firmwarePath: firmwarePath,
                    cpuModel: cpuModel),
                "\(profile.name) image, policy \(policy.id) v\(policy.version)"
            )
        }
        let policy = prepared.policy

        // What verification needs (the pinned and simulated roots, the appraiser, the EAR key, the audit log) is
        // loaded while the child boots, on another thread: none of it depends on the evidence.
        struct VerificationContext: Sendable {
            let appraiser: EvidenceAppraiser
            let key: EARSigningKey
            let audit: AuditLog
        }
        let stateDirectory = state
        // A real child is verified against the pinned hardware roots only (the simulated ones are not even loaded),
        // with the SEV-SNP collateral cache for VCEKs and CRLs.
        let hardware = hardwareHost
        let simulatedRoots: URL? = hardware == nil ? prepared.simulatedRoots : nil
        let verificationContext = Task.detached { () throws -> VerificationContext in
            let anchors = try TrustAnchorStore(
                directory: TrustAnchorStore.locateDefaultDirectory(), simulated: simulatedRoots)
            try stateDirectory.prepare()
            return VerificationContext(
                appraiser: EvidenceAppraiser(
                    trustAnchors: anchors,
                    snpCollateral: hardware.map { SNPCollateralStore(directory: $0.collateralCache) }),
                key: try EARSigningKey.loadOrCreate(directory: stateDirectory.keysDirectory),
                audit: try AuditLog(path: stateDirectory.auditLog, keyDirectory: stateDirectory.keysDirectory))
        }

        // 3. QEMU, pinned to the partition, marked with the instance id; then the agent's `ready`.
        let controlPath = folder.appendingPathComponent("control.sock").path
        let platformPath = folder.appendingPathComponent("platform.sock").path
        let qmpPath = folder.appendingPathComponent("qmp.sock").path
        let (connection, bootSeconds, identity): (FramedConnection, Double, ProcessIdentity) = try await phase(.boot) {
            listener = try UnixSocketListener(path: controlPath)
            var settings = Self.instanceSettings(
                name: request.name, folder: folder, firmware: prepared.firmwarePath, kernel: prepared.image.kernel.path,
                initrd: prepared.image.initrd.path, commandLine: prepared.commandLine, vcpus: vcpus, memoryMiB: memory,
                cpus: record.partition.cpus, volumeSlots: policy.handover.volumes.count)
            let argv: [String]
            switch prepared.launch {
            case .snp(let launch): platform = try SimulatedPlatformService(socketPath: platformPath, launch: launch)
            case .tdx(let launch): platform = try SimulatedPlatformService(socketPath: platformPath, launch: launch)
            case .hardware: break
            }
            if case .hardware(let host) = prepared.launch {
                // sev-snp-guest (kernel-hashes, HOST_DATA) or tdx-guest (MRCONFIGID, the QGS socket) under KVM.
                let plan = try HardwareLaunchPlan(
                    tee: request.tee, host: host, settings: settings, instanceID: record.id,
                    policy: PolicyHeader(policy), hostData: prepared.manifest.hostData,
                    mrConfigID: prepared.manifest.mrConfigID)
                argv = plan.arguments
                note("QEMU command: \(argv.joined(separator: " "))")
                note(
                    "verifier: \(plan.verifier.evidence.rawValue) against \(plan.verifier.trustedRoots.joined(separator: ", ")), "
                        + "collateral \(plan.verifier.collateralCache), revocation \(plan.verifier.revocation.rawValue)")
            } else {
                settings.platformSocket = platformPath
                let command = SimulatedLaunchCommand(
                    settings: settings, accelerator: request.accelerator, cpuModel: prepared.cpuModel)
                argv = try command.commandLine() + QEMUInstanceMarker.arguments(instanceID: record.id)
            }
            // A software TPM, when asked for, is attached as tpm-tis so the firmware measures the boot into it.
            let vtpmArguments = try await startSoftwareTPM(instanceID: record.id)
            let started = ContinuousClock.now
            let process = try QEMUProcess.start(argv + vtpmArguments)
            adopt(process)
            let notifier = try ProcessExitNotifier(pid: process.processIdentifier)
            exitNotifier = notifier
            guard let identity = ProcessIdentity.of(pid: process.processIdentifier) else {
                throw CoordinatorError(
                    .launch, "QEMU exited at once (status \(process.exitStatus ?? -1)): \(process.output)")
            }
            try withStore { store in
                _ = try store.transition(
                    record.id, to: .booting, reason: "QEMU started (pid \(identity.pid))",
                    changes: InstanceChanges(
                        process: identity,
                        sockets: ["control": controlPath, "platform": platformPath, "qmp": qmpPath]))
            }
            note("booting (QEMU pid \(identity.pid), \(request.accelerator.rawValue)); waiting for cmk-guest")
            let connection = try Self.accept(
                listener!, timeout: request.bootTimeout, qemu: process, notifier: notifier)
            control = connection
            let ready = try Self.receive(connection, timeout: request.bootTimeout, notifier: notifier, qemu: process)
            guard case .ready(_, let agentVersion, let provider) = ready else {
                throw CoordinatorError(.launch, "the child's first message was \(ready.kind), not ready")
            }
            let bootSeconds = Self.seconds(ContinuousClock.now - started)
            try withStore { store in _ = try store.transition(record.id, to: .attesting, reason: "agent ready") }
            return (
                (connection, bootSeconds, identity),
                "cmk-guest \(agentVersion) ready (evidence: \(provider)), QEMU pid \(identity.pid)"
            )
        }

        // 4. Fresh evidence bound to a nonce and the agent's key. With a vTPM, first the child's EK and AK, and the AK
        //    proven to sit beside the EK by credential activation (MakeCredential here, ActivateCredential in the
        //    child; the verifier compares the secrets); the TEE report then binds the session key followed by
        //    SHA-256 of the AK (`ReportData.withAttestationKey`), and a quote over the boot PCRs carries the same
        //    nonce (docs/tpm-verification.md, "In the child").
        var nonce = [UInt8](repeating: 0, count: 32)
        for index in nonce.indices { nonce[index] = UInt8.random(in: 0...255) }
        let asked = Date()
        let (kind, publicKey, evidence, auxiliary, vtpmEvidence, attestationSeconds):
            (String, [UInt8], [UInt8], [UInt8], VTPMLaunchEvidence?, Double) = try await phase(.evidence)
        {
            let start = ContinuousClock.now
            var vtpmKeys: (challenge: TPMCredentialChallenge, activated: [UInt8], attestationKey: [UInt8])?
            if request.vtpm {
                try connection.send(.tpmKeyRequest)
                let keys = try Self.receive(connection, timeout: .seconds(120), notifier: exitNotifier!, qemu: qemu!)
                guard case .tpmKeys(let endorsementKey, let attestationKey) = keys else {
                    throw CoordinatorError(.launch, "the child answered \(Self.describe(keys)) to the vTPM key request")
                }
                var secret = [UInt8](repeating: 0, count: 32)
                var seed = [UInt8](repeating: 0, count: 32)
                for index in secret.indices { secret[index] = UInt8.random(in: 0...255) }
                for index in seed.indices { seed[index] = UInt8.random(in: 0...255) }
                let challenge = try TPMCredentialChallenge(
                    endorsementKey: endorsementKey, attestationKey: attestationKey, secret: secret, seed: seed)
                try connection.send(
                    .tpmActivateRequest(
                        credentialBlob: challenge.credentialBlob, encryptedSecret: challenge.encryptedSecret))
                let activated = try Self.receive(connection, timeout: .seconds(120), notifier: exitNotifier!, qemu: qemu!)
                guard case .tpmActivated(let returned) = activated else {
                    throw CoordinatorError(
                        .launch, "the child answered \(Self.describe(activated)) to the credential activation")
                }
                vtpmKeys = (challenge, returned, attestationKey)
                note("vTPM: AK \(Hex.encode(SHA256.hash(data: attestationKey)).prefix(16))… created, credential activated")
            }
            try connection.send(.attestRequest(nonce: nonce))
            let answer = try Self.receive(connection, timeout: .seconds(120), notifier: exitNotifier!, qemu: qemu!)
            guard case .attestResponse(let kind, let publicKey, let evidence, let auxiliary) = answer else {
                throw CoordinatorError(.launch, "the child answered \(answer.kind) to the attestation request")
            }
            var vtpmEvidence: VTPMLaunchEvidence?
            if let vtpmKeys {
                try connection.send(.tpmQuoteRequest(nonce: nonce))
                let quoted = try Self.receive(connection, timeout: .seconds(120), notifier: exitNotifier!, qemu: qemu!)
                guard case .tpmQuote(let quote, let signature, let eventLog) = quoted else {
                    throw CoordinatorError(.launch, "the child answered \(Self.describe(quoted)) to the quote request")
                }
                vtpmEvidence = VTPMLaunchEvidence(
                    evidence: TPMEvidence(
                        quote: quote, signature: signature, attestationKey: vtpmKeys.attestationKey, eventLog: eventLog),
                    activation: vtpmKeys.challenge.activation(returned: vtpmKeys.activated))
                try vtpmEvidence?.write(to: folder, nonce: nonce)
            }
            return (
                (kind, publicKey, evidence, auxiliary, vtpmEvidence, Self.seconds(ContinuousClock.now - start)),
                "\(kind) evidence, \(evidence.count) bytes"
                    + (vtpmEvidence.map { ", vTPM quote with an event log of \($0.evidence.eventLog.count) bytes" } ?? "")
            )
        }

        // 5. Appraise with the real verifier (the simulated roots are trusted only if the policy names them), sign
        //    the result and record the decision, whatever it is.
        struct Verified {
            let appraisal: Appraisal
            let claims: SNPClaims?
            let tdxClaims: TDXClaims?
            let fields: [PlatformField]
            /// SEV-SNP MEASUREMENT or TDX MRTD (hex), from the verified evidence.
            let measurement: String?
            let token: String
            let sequence: Int64
            let audit: AuditLog
        }
        let verified: Verified = try await phase(.verify) {
            let context = try await verificationContext.value
            let appraiser = context.appraiser
            let presented: PresentedEvidence
            if let hardware {
                // The report with its certificate table (VCEK from the cache when it is empty), or the quote with the
                // cached TCB Info and QE Identity for its FMSPC.
                presented = try HardwareLaunchPlan.presented(
                    kind: kind, evidence: evidence, auxiliary: auxiliary,
                    verifier: VerifierConfiguration.forHardware(
                        tee: request.tee, host: hardware, policy: PolicyHeader(policy)))
            } else {
                presented =
                    kind == "sev-snp"
                    ? .snp(report: evidence, certificateTable: auxiliary, endorsement: nil, chain: [])
                    : .tdx(quote: evidence, collateral: prepared.tdxCollateral, eventLog: auxiliary.isEmpty ? nil : auxiliary)
            }
            // With a vTPM, REPORT_DATA binds the session key followed by SHA-256 of the AK, and the quote is verified
            // beside the TEE evidence (the policy's `tpm` rules judge it), its EK certificate under the local CA.
            let boundKey =
                vtpmEvidence.map {
                    ReportData.withAttestationKey(
                        sessionKey: publicKey, attestationKeyDigest: Array(SHA256.hash(data: $0.attestationKeyPublicArea)))
                } ?? publicKey
            let appraisalContext = AppraisalContext(
                evaluationTime: Date(), nonce: nonce, boundKey: boundKey,
                manifest: prepared.manifest.canonicalBytes, collectedAt: asked)
            let input: AppraisalInput
            if let vtpmEvidence {
                try vtpmEvidence.writeBinding(to: folder, boundKey: boundKey, reportData: nil)
                let endorsement = try VTPMLaunchEvidence.endorsement(
                    localCA: VTPMLocalCA(stateDirectory: stateDirectory.url), tpm: softwareTPM)
                input = appraiser.input(
                    presented, tpm: vtpmEvidence.evidence, activation: vtpmEvidence.activation,
                    revocation: policy.trust.crl, context: appraisalContext, endorsementRoots: endorsement?.roots ?? [],
                    endorsementCertificate: endorsement?.certificate)
                if let reportData = input.claims?.reportData {
                    try vtpmEvidence.writeBinding(to: folder, boundKey: boundKey, reportData: reportData)
                }
                switch input.tpm {
                case .success(let result)?:
                    note(
                        "vTPM: quote verified (\(result.claims.bank) PCRs \(result.claims.pcrs.map(String.init).joined(separator: ","))), "
                            + "kernel Authenticode \(result.claims.boot.kernelAuthenticodeSHA256?.description ?? "none")")
                case .failure(let error)?: note("vTPM: quote REJECTED: \(error.code): \(error.reason)")
                case nil: break
                }
            } else {
                input = appraiser.input(presented, revocation: policy.trust.crl, context: appraisalContext)
            }
            // A TD's event log is replayed by the appraiser: the policy's `tdx.event-log` rule compares it with the
            // RTMRs of the verified quote, so a log describing another boot is a recorded rejection, not a crash.
            if case .tdx(_, let events, let size)? = input.eventLog {
                note("the TD's event log (\(size) bytes, \(events) measured events) replayed for the policy")
            }
            let appraisal = policy.evaluate(input)
            let claims: SNPClaims? = if case .snp(let result)? = input.claims { result.claims } else { nil }
            let tdxClaims: TDXClaims? = if case .tdx(let result)? = input.claims { result.claims } else { nil }
            let fields = claims.map(PlatformField.fields) ?? tdxClaims.map(PlatformField.fields) ?? []
            let measurement: String? =
                switch input.claims {
                case .snp(let result)?: result.claims.measurement.description
                case .tdx(let result)?: result.claims.mrTD.description
                case nil: nil
                }
            let earClaims = try EARClaims(
                appraisal: appraisal, verifierID: .cmk(version: CMKVersion.current), issuedAt: Date(),
                expiresAt: Date().addingTimeInterval(300), issuer: "cmk", nonce: nonce)
            let token = try EARJWT.sign(earClaims, with: context.key)
            let recorded = try context.audit.append(
                .appraisal(appraisal, actor: "coordinator", instance: request.name, resultToken: token))
            stopLock.withLock { verdictRecorded = appraisal.verdict }
            try Data(token.utf8).write(to: folder.appendingPathComponent("ear.jwt"))
            return (
                Verified(
                    appraisal: appraisal, claims: claims, tdxClaims: tdxClaims, fields: fields,
                    measurement: measurement, token: token,
                    sequence: recorded.sequence, audit: context.audit),
                "\(appraisal.verdict.rawValue) by policy \(policy.id) v\(policy.version), audit record "
                    + "#\(recorded.sequence)"
            )
        }
        let appraisal = verified.appraisal
        func outcome(
            _ verdict: Verdict, state: String, handover: HandoverReport? = nil, guestStatus: AgentStatus? = nil
        ) -> LaunchOutcome {
            LaunchOutcome(
                name: request.name, verdict: verdict, state: state, partitionCPUs: record.partition.cpus,
                shared: record.partition.shared, measurement: verified.measurement,
                auditSequence: verified.sequence, token: verified.token, failures: appraisal.failures,
                simulated: appraisal.simulated, bootSeconds: bootSeconds, attestationSeconds: attestationSeconds,
                instanceID: record.id, tee: request.tee.rawValue, phases: phases, appraisal: appraisal,
                snpClaims: verified.claims, tdxClaims: verified.tdxClaims, platformFields: verified.fields,
                manifestDigest: Hex.encode(prepared.manifest.hostData),
                handoverReferences: verdict == .admit ? appraisal.handover : nil, handover: handover,
                guestStatus: guestStatus)
        }

        guard appraisal.verdict == .admit else {
            note(
                "REJECTED by policy \(policy.id): \(appraisal.failures.map(\.rule).joined(separator: ", ")); "
                    + "quarantining")
            try withStore { store in
                _ = try store.transition(
                    record.id, to: .rejected,
                    reason: "policy \(policy.id) rejected: \(appraisal.failures.map(\.rule).joined(separator: ", "))",
                    changes: InstanceChanges(evidenceDigest: appraisal.evidenceDigest, auditSequence: verified.sequence))
            }
            // Nothing was handed over; ask the child what it holds (names only) before it is shut down, as evidence.
            var guestStatus: AgentStatus?
            if (try? connection.send(.statusRequest)) != nil,
                case .status(let status)? = try? Self.receive(
                    connection, timeout: .seconds(10), notifier: exitNotifier!, qemu: qemu!)
            {
                guestStatus = status
                note(
                    "the rejected child holds \(status.secretFiles.count) secret file(s), "
                        + "\(status.volumes.count) volume(s)")
            }
            await teardown(reason: "rejected", to: nil)
            return outcome(.reject, state: "stopped", guestStatus: guestStatus)
        }

        // 6. Only now: the handover (Handover.swift): pin the vCPUs, seal the secrets to the attested key, attach
        //    the volumes, name the channel peers; the child confirms what it received.
        let report: HandoverReport = try await phase(.handover) {
            let report: HandoverReport
            do {
                report = try Handover(
                    instance: request.name, policy: policy, handover: appraisal.handover, nonce: nonce,
                    boundKey: publicKey, qemuPID: identity.pid, partitionCPUs: record.partition.cpus,
                    qmpSocket: qmpPath, secrets: SecretStore(state), volumes: VolumeStore(state),
                    progress: { [progress] line in progress(.note(line)) }
                ).run(over: connection)
            } catch {
                // Admitted, but not handed over: the record says so before the instance is torn down (as failed).
                // The reason may quote the child (untrusted text): at most 500 characters reach the log and the
                // record.
                let reason = String("\(error)".prefix(500))
                note("HANDOVER FAILED: \(reason)")
                _ = try? verified.audit.append(
                    AuditEntry(
                        actor: "coordinator", kind: .instanceEvent, instance: request.name,
                        details: ["event": "handover-failed", "reason": reason]))
                throw error
            }
            _ = try verified.audit.append(
                AuditEntry(
                    actor: "coordinator", kind: .instanceEvent, instance: request.name,
                    details: Handover.auditDetails(report)))
            try withStore { store in
                try store.recordHandover(
                    record.id, secrets: report.secrets.map(\.name), volumes: report.volumes.map(\.name),
                    channelPeers: report.channelPeers, sealedSecretsSHA256: report.sealedMessageSHA256)
                _ = try store.transition(
                    record.id, to: .admitted, reason: "policy \(policy.id) v\(policy.version) admitted",
                    changes: InstanceChanges(evidenceDigest: appraisal.evidenceDigest, auditSequence: verified.sequence))
            }
            return (
                report,
                "\(report.secrets.count) secret(s), \(report.volumes.count) volume(s), "
                    + "\(report.channelPeers.count) channel peer(s)"
            )
        }
        note(
            "ADMITTED by policy \(policy.id) v\(policy.version)\(appraisal.simulated ? " (SIMULATED platform)" : ""); "
                + "audit record #\(verified.sequence)")
        return outcome(.admit, state: "admitted", handover: report)
    }

    /// The QEMU settings of an instance in `folder`: its image, size, partition, serial log, pid file, control and
    /// QMP sockets, and one hot-plug slot per volume the policy names (the platform port is added for a simulated
    /// child only).
    public static func instanceSettings(
        name: String, folder: URL, firmware: String, kernel: String, initrd: String, commandLine: String, vcpus: Int,
        memoryMiB: Int, cpus: [Int], volumeSlots: Int
    ) -> QEMUInstanceSettings {
        QEMUInstanceSettings(
            name: name, firmware: firmware, kernel: kernel, initrd: initrd, commandLine: commandLine, vcpus: vcpus,
            memoryMiB: memoryMiB, serialLog: folder.appendingPathComponent("serial.log").path,
            pidFile: folder.appendingPathComponent("qemu.pid").path,
            controlSocket: folder.appendingPathComponent("control.sock").path, platformSocket: nil, hostCPUs: cpus,
            qmpSocket: folder.appendingPathComponent("qmp.sock").path, hotplugSlots: volumeSlots)
    }

    /// The EPYC CPU model this host's QEMU has, for a simulated child.
    public static func epycModel() async throws -> String {
        // Debian's QEMU 7.2 lacks EPYC-v4; EPYC-v3 has the same CPUID signature, so the measurement is unchanged.
        // (A simulated TD runs on the same vCPU model: no TDX measurement covers the CPU model.)
        let qemuPath = CommandRunner.which("qemu-system-x86_64") ?? "qemu-system-x86_64"
        let help = try await CommandRunner.run(qemuPath, ["-cpu", "help"], timeout: .seconds(30))
        guard let cpuModel = QEMUCPUModels(help: help.standardOutputText).epycModel() else {
            throw CoordinatorError(.launch, "QEMU (\(qemuPath)) offers no EPYC CPU model")
        }
        return cpuModel
    }

    /// Accepts the agent's connection, giving up at once when QEMU exits.
    static func accept(
        _ listener: UnixSocketListener, timeout: Duration, qemu: QEMUProcess, notifier: ProcessExitNotifier
    ) throws -> FramedConnection {
        let deadline = ContinuousClock.now + timeout
        while true {
            if notifier.exit != nil {
                throw CoordinatorError(
                    .launch,
                    "QEMU exited during boot (status \(qemu.exitStatus ?? -1)): "
                        + "\(qemu.output.suffix(400).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            do {
                return try listener.accept(timeout: .milliseconds(100))
            } catch {
                if ContinuousClock.now >= deadline {
                    throw CoordinatorError(.launch, "the child did not connect to its control port within \(timeout)")
                }
            }
        }
    }

    /// The next message, giving up at once when QEMU exits.
    static func receive(
        _ connection: FramedConnection, timeout: Duration, notifier: ProcessExitNotifier, qemu: QEMUProcess
    ) throws -> GuestMessage {
        switch try connection.receive(timeout: timeout, watching: notifier.descriptor) {
        case .message(let message): return message
        case .timedOut: throw CoordinatorError(.launch, "no answer from the child within \(timeout)")
        case .watchedReadable:
            throw CoordinatorError(.launch, "QEMU exited (status \(qemu.exitStatus ?? -1)) before the child answered")
        }
    }

    /// How supervising an admitted instance ended.
    public struct SupervisionEnding: Sendable {
        /// `stopped` (asked to stop) or `failed`.
        public let state: InstanceState
        public let reason: String
        /// For a failure: seconds from noticing it to the store saying `failed` with the partition released.
        public let recordSeconds: Double?
    }

    /// Watches an admitted instance until its QEMU exits, its agent stops answering, or `stopRequested` turns
    /// true. A stop tears it down (`stopping → stopped`). A failure is recorded at once: QEMU killed if it still
    /// runs, `failed` with the partition released, an `instance-event` in the audit log saying why; the instance
    /// stays listed as failed until `cmk stop`.
    public func supervise(stopRequested: @escaping @Sendable () -> Bool) async -> SupervisionEnding {
        guard let qemu, let control, let exitNotifier, let instanceID else {
            return SupervisionEnding(state: .stopped, reason: "nothing to supervise", recordSeconds: nil)
        }
        let watch = InstanceWatch(settings: request.heartbeat)
        // Sealed channels (Channels/ChannelRelay.swift): this supervisor relays its instance's frames, ciphertext only.
        let relay = startChannelRelay(control: control)
        defer { relay?.stop() }
        let report = await withCheckedContinuation { (continuation: CheckedContinuation<InstanceWatch.Report, Never>) in
            Thread.detachNewThread {
                continuation.resume(
                    returning: watch.run(
                        connection: control, exit: exitNotifier, stopRequested: stopRequested,
                        other: { relay?.handle($0) }))
            }
        }
        let pid = qemu.processIdentifier
        let reason: String
        switch report.ending {
        case .stopRequested:
            await teardown(reason: "stop requested", to: nil)
            return SupervisionEnding(state: .stopped, reason: "stop requested", recordSeconds: nil)
        case .qemuExited:
            reason = "its QEMU (pid \(pid)) exited with status \(qemu.exitStatus ?? -1) while admitted"
        case .agentSilent(let silence):
            reason =
                "cmk-guest stopped answering heartbeats (no answer for \(Int(Self.seconds(silence) * 1000)) ms); "
                + "its QEMU (pid \(pid)) was killed"
        case .controlFailed(let detail):
            reason = "its control port failed (\(detail)); its QEMU (pid \(pid)) was killed"
        }
        // Quarantine at once: an unresponsive child gets no grace period.
        if qemu.isRunning { _ = await qemu.stop(grace: .zero) }
        var recorded: Double?
        do {
            try withStore { store in
                _ = try store.transition(
                    instanceID, to: .failed, reason: reason, changes: InstanceChanges(processGone: true))
            }
            recorded = Self.seconds(ContinuousClock.now - report.detectedAt)
        } catch {
            note("cannot record the failure: \(error)")
        }
        note("FAILED: \(reason); recorded \(Int((recorded ?? -1) * 1000)) ms after detection; partition released")
        do {
            let audit = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
            _ = try audit.append(
                AuditEntry(
                    actor: "coordinator", kind: .instanceEvent, instance: request.name,
                    details: [
                        "event": "failed", "reason": reason, "instanceID": instanceID,
                        "detectedAt": ISO8601DateFormatter().string(from: report.detectedDate),
                        "heartbeatsAnswered": String(report.answered),
                        "slowestHeartbeatMs": String(Int(Self.seconds(report.slowestAnswer) * 1000)),
                    ]))
        } catch {
            note("cannot append the failure to the audit log: \(error)")
        }
        control.close()
        self.control = nil
        platform?.stop()
        platform = nil
        listener = nil
        await stopSoftwareTPM()
        self.instanceID = nil
        return SupervisionEnding(state: .failed, reason: reason, recordSeconds: recorded)
    }

    /// Starts the child's swtpm when the request asks for one; returns the QEMU arguments that attach it.
    private func startSoftwareTPM(instanceID: String) async throws -> [String] {
        guard request.vtpm else { return [] }
        let tpm = try await SoftwareTPM.start(
            directory: SoftwareTPM.stateDirectory(stateDirectory: state.url, instance: instanceID),
            localCA: VTPMLocalCA(stateDirectory: state.url))
        softwareTPM = tpm
        note("vTPM: swtpm pid \(tpm.processIdentifier), EK certificate from the local CA")
        return tpm.qemuArguments
    }

    /// Stops the child's swtpm and deletes its state (the instance's keys go with it).
    private func stopSoftwareTPM() async {
        guard let tpm = softwareTPM else { return }
        softwareTPM = nil
        await tpm.stop()
        SoftwareTPM.remove(directory: tpm.stateDirectory)
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
        await stopSoftwareTPM()
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

    /// The image folder of `profile`: its name, or for a profile given another kernel (`--kernel`) its name and the
    /// first 16 hex digits of that kernel's SHA-256, so a running child's image is never rebuilt under it.
    static func imageFolderName(_ profile: GuestProfile) -> String {
        guard case .path(let image, _) = profile.kernel,
              let bytes = FileManager.default.contents(atPath: image) else { return profile.name }
        return "\(profile.name)-kernel-\(Hex.encode(SHA256.hash(data: bytes)).prefix(16))"
    }

    /// Where launches build their images, one folder per profile (reproducible bytes, so launches can share them).
    /// `$CMK_IMAGES` when set (the same variable policies use for `${CMK_IMAGES}`), else `<cache>/images`.
    public static func imagesDirectory(_ paths: CMKPaths) -> URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_IMAGES"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        return paths.cacheDirectory.appendingPathComponent("images")
    }

    /// The cmk-guest put into a child's image when `--agent` names none: `$CMK_GUEST_AGENT` when set (scripts/test and
    /// scripts/main set it to the static release binary scripts/build-guest-agent makes — the one that ships), else
    /// the `cmk-guest` installed beside this cmk.
    public static func defaultAgent() -> URL {
        if let explicit = ProcessInfo.processInfo.environment["CMK_GUEST_AGENT"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("cmk-guest")
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
