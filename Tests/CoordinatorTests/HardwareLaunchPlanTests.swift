import Attestation
import AttestationPolicy
import CMKTesting
import Coordinator
import Foundation
import TDX
import Testing

/// The real `--tee snp|tdx` path, checked on a host that cannot run it: with an injected host that says it can, the
/// exact QEMU argv the supervisor would start and the verifier configuration it would use; on this host, the
/// refusal before anything is reserved.
@Suite("a real SEV-SNP or TDX launch: the command, the verifier, the refusal")
struct HardwareLaunchPlanTests {
    static let folder = URL(fileURLWithPath: "/tmp/cmk-state/instances/web")
    static let instanceID = "0f4c2a8e-5b1d-4c3e-9a7f-2d6b8e1c0a93"

    static func settings() -> QEMUInstanceSettings {
        InstanceSupervisor.instanceSettings(
            name: "web", folder: folder, firmware: "/usr/share/ovmf/OVMF.fd", kernel: "/images/general/bzImage",
            initrd: "/images/general/initrd.cpio", commandLine: "console=ttyS0 cmk.instance=web", vcpus: 2,
            memoryMiB: 2048, cpus: [2, 3], volumeSlots: 1)
    }

    static func header(_ name: String) throws -> PolicyHeader {
        try PolicyLoader().header(path: SharedVectors.repositoryRoot.appendingPathComponent("policies/\(name)").path)
    }

    /// Everything after the guest object: the same for both TEEs (no platform port: a real child asks its hardware).
    static let common = [
        "-nodefaults", "-no-user-config", "-bios", "/firmware/OVMF.amdsev.fd", "-kernel", "/images/general/bzImage",
        "-initrd", "/images/general/initrd.cpio", "-append", "console=ttyS0 cmk.instance=web",
        "-display", "none", "-monitor", "none",
        "-chardev", "file,id=cmkserial,path=/tmp/cmk-state/instances/web/serial.log", "-serial", "chardev:cmkserial",
        "-device", "virtio-serial-pci,id=cmkports",
        "-chardev", "socket,id=cmkcontrol,path=/tmp/cmk-state/instances/web/control.sock,reconnect=1",
        "-device", "virtserialport,bus=cmkports.0,chardev=cmkcontrol,name=cmk.control",
        "-device", "pcie-root-port,id=cmkslot0,bus=pcie.0,chassis=1",
        "-qmp", "unix:/tmp/cmk-state/instances/web/qmp.sock,server=on,wait=off",
        "-no-reboot", "-pidfile", "/tmp/cmk-state/instances/web/qemu.pid",
        "-uuid", instanceID,
    ]

    @Test("SEV-SNP: sev-snp-guest with kernel hashes and HOST_DATA under KVM, verified against AMD's roots only")
    func snpPlan() throws {
        let host = HardwareTEEHost(
            missing: [], firmware: "/firmware/OVMF.amdsev.fd", cpuModel: "EPYC-v4",
            collateralCache: URL(fileURLWithPath: "/cache/collateral"))
        let hostData = [UInt8](repeating: 0xAB, count: 32)
        let plan = try HardwareLaunchPlan(
            tee: .snp, host: host, settings: Self.settings(), instanceID: Self.instanceID,
            policy: try Self.header("sev-snp-production.yaml"), hostData: hostData,
            mrConfigID: [UInt8](repeating: 0xCD, count: 48))
        let hostDataBase64 = Data(hostData).base64EncodedString()
        #expect(
            plan.arguments == [
                "taskset", "--cpu-list", "2,3", "qemu-system-x86_64", "-name", "web",
                "-machine", "q35,confidential-guest-support=sev0,memory-backend=ram1", "-accel", "kvm",
                "-cpu", "EPYC-v4", "-smp", "2", "-m", "2048M",
                "-object", "memory-backend-memfd,id=ram1,size=2048M,share=true",
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data=\(hostDataBase64)",
            ] + Self.common, "\(plan.arguments)")
        #expect(!plan.arguments.joined(separator: " ").contains("cmk.platform"), "no simulated platform port")
        #expect(
            plan.verifier
                == VerifierConfiguration.forHardware(tee: .snp, host: host, policy: try Self.header("sev-snp-production.yaml")))
        #expect(plan.verifier.evidence == .sevSNP)
        #expect(plan.verifier.trustedRoots == ["amd-milan", "amd-genoa", "amd-turin"])
        #expect(plan.verifier.simulatedRootsLoaded == false)
        #expect(plan.verifier.collateralCache == "/cache/collateral")
        #expect(plan.verifier.revocation == .hard)
    }

    @Test("TDX: tdx-guest with MRCONFIGID and the QGS socket, split IRQ chip, -cpu host, verified against Intel's root")
    func tdxPlan() throws {
        let host = HardwareTEEHost(
            missing: [], firmware: "/firmware/OVMF.amdsev.fd",
            quoteGenerationSocket: .unix(path: "/var/run/tdx-qgs/qgs.socket"),
            collateralCache: URL(fileURLWithPath: "/cache/collateral"))
        let mrConfigID = [UInt8](repeating: 0xCD, count: 48)
        let plan = try HardwareLaunchPlan(
            tee: .tdx, host: host, settings: Self.settings(), instanceID: Self.instanceID,
            policy: try Self.header("tdx-production.yaml"), hostData: [UInt8](repeating: 0xAB, count: 32),
            mrConfigID: mrConfigID)
        let object =
            "{\"id\":\"tdx0\",\"mrconfigid\":\"\(Data(mrConfigID).base64EncodedString())\",\"qom-type\":\"tdx-guest\","
            + "\"quote-generation-socket\":{\"path\":\"/var/run/tdx-qgs/qgs.socket\",\"type\":\"unix\"}}"
        #expect(
            plan.arguments == [
                "taskset", "--cpu-list", "2,3", "qemu-system-x86_64", "-name", "web",
                "-machine", "q35,kernel-irqchip=split,confidential-guest-support=tdx0", "-accel", "kvm",
                "-cpu", "host", "-smp", "2", "-m", "2048M", "-object", object,
            ] + Self.common, "\(plan.arguments)")
        #expect(plan.verifier.evidence == .tdx)
        #expect(plan.verifier.trustedRoots == ["intel-sgx-root"])
        #expect(plan.verifier.simulatedRootsLoaded == false)
        #expect(plan.verifier.presentation.contains("intel/tdx/<fmspc>/"))
    }

    @Test("the probe of a host with nothing names what a real launch lacks; a host that can requires nothing")
    func probeNamesWhatIsMissing() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-hw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        for (tee, missing) in [(TEEKind.snp, "/dev/sev"), (.tdx, "kvm_intel/parameters/tdx")] {
            let host = await HardwareTEEHost.probe(tee, root: root)
            #expect(host.missing.contains { $0.contains(missing) }, "\(host.missing)")
            let error = #expect(throws: CoordinatorError.self) { try host.require(tee) }
            #expect(error?.code == .platformUnavailable)
        }
        let can = HardwareTEEHost(missing: [], firmware: "/f", collateralCache: root)
        #expect(throws: Never.self) { try can.require(.snp) }
    }

    /// A private cache sharing the project's guest kernel, and a state folder.
    static func workspace() throws -> (URL, CMKPaths, CMKStateDirectory) {
        let work = URL(fileURLWithPath: "/tmp/cmk-hw-\(UUID().uuidString.prefix(8))")
        let cache = work.appendingPathComponent("cache")
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            at: cache.appendingPathComponent("guest-kernel"),
            withDestinationURL: SharedVectors.cacheDirectory.appendingPathComponent("guest-kernel"))
        return (work, CMKPaths(cacheDirectory: cache), CMKStateDirectory(work.appendingPathComponent("state")))
    }

    @Test("on this host a real launch is refused as unavailable before anything is reserved, naming what is missing")
    func refusedHere() async throws {
        let (work, paths, state) = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: work) }
        let policies = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        for (tee, policy) in [(TEEKind.snp, "sev-snp-production.yaml"), (.tdx, "tdx-production.yaml")] {
            let supervisor = InstanceSupervisor(
                state: state, paths: paths,
                request: LaunchRequest(
                    name: "real-\(tee.rawValue)", profile: "general",
                    policyPath: policies.appendingPathComponent(policy).path, tee: tee),
                progress: { _ in })
            let error = await #expect(throws: CoordinatorError.self) { _ = try await supervisor.launch() }
            #expect(error?.code == .platformUnavailable, "\(error?.reason ?? "")")
            #expect(error?.reason.contains("missing") == true && error?.reason.contains("KVM") == true, "\(error?.reason ?? "")")
            #expect(supervisor.reservedInstance == nil)
        }
        let reader = try InstanceStore.openForReading(state)
        #expect(try reader?.instances(includeStopped: true).isEmpty ?? true, "nothing was reserved")
        reader?.close()
    }

    @Test(
        "with a host that says it can, the supervisor starts exactly the planned QEMU; here KVM is absent, so the launch fails and gives everything back",
        .timeLimit(.minutes(5)))
    func supervisorStartsThePlannedCommand() async throws {
        let agent = SharedVectors.repositoryRoot.appendingPathComponent(".build/debug/cmk-guest")
        try #require(FileManager.default.isExecutableFile(atPath: agent.path), "build cmk-guest first (swift build)")
        let (work, paths, state) = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: work) }
        let host = HardwareTEEHost(
            missing: [], firmware: "/usr/share/ovmf/OVMF.fd", cpuModel: "EPYC-v4",
            collateralCache: paths.cacheDirectory.appendingPathComponent("collateral"))
        let lines = LineCollector()
        let supervisor = InstanceSupervisor(
            state: state, paths: paths,
            request: LaunchRequest(
                name: "real-snp", profile: "general",
                policyPath: SharedVectors.repositoryRoot.appendingPathComponent("policies/sev-snp-production.yaml").path,
                bootTimeout: .seconds(60), agent: agent, tee: .snp, reserve: HostReserve(cpuCount: 0, memoryMiB: 0),
                hardwareHost: host),
            progress: { event in
                if case .note(let line) = event { lines.append(line) }
            })
        let error = await #expect(throws: CoordinatorError.self) { _ = try await supervisor.launch() }
        #expect(error?.code == .launch, "QEMU cannot start an SEV-SNP guest without KVM: \(error?.reason ?? "")")
        let started = try #require(
            lines.text.split(separator: "\n").first { $0.hasPrefix("QEMU command: ") }, "\(lines.text)")
        let argv = started.dropFirst("QEMU command: ".count).split(separator: " ").map(String.init)
        #expect(argv.contains("-accel") && argv.contains("kvm") && !argv.contains("tcg"))
        #expect(argv.contains { $0.hasPrefix("sev-snp-guest,id=sev0,") && $0.contains("kernel-hashes=on,host-data=") })
        #expect(!argv.contains { $0.contains("cmkplatform") }, "no simulated platform port")
        #expect(lines.text.contains("verifier: sev-snp against amd-milan, amd-genoa, amd-turin"), "\(lines.text)")
        let reader = try #require(try InstanceStore.openForReading(state))
        defer { reader.close() }
        let record = try #require(try reader.instance("real-snp"))
        #expect(record.state == .stopped && !record.holdsPartition, "\(record.state)")
        #expect(QEMUInstanceMarker.runningQEMUs(instanceID: record.id).isEmpty, "no QEMU left")
    }

    @Test("TDX evidence takes the cached collateral for its FMSPC; an unreadable cache file is an error naming it, not 'missing'")
    func cachedCollateral() throws {
        let vector = SharedVectors.sharedDirectory.appendingPathComponent("vectors/tdx/dcapqvl-v4-uptodate")
        let quote = [UInt8](try Data(contentsOf: vector.appendingPathComponent("quote.bin")))
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-hw-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: cache) }
        let host = HardwareTEEHost(missing: [], firmware: "/f", collateralCache: cache)
        let verifier = VerifierConfiguration.forHardware(tee: .tdx, host: host, policy: try Self.header("tdx-production.yaml"))
        func presented() throws -> TDXCollateral? {
            guard case .tdx(_, let collateral, _) = try HardwareLaunchPlan.presented(
                kind: "tdx", evidence: quote, auxiliary: [], verifier: verifier)
            else { Issue.record("not TDX evidence"); return nil }
            return collateral
        }
        // Nothing cached: every item absent, for the verifier to name.
        let empty = try presented()
        #expect(empty != nil && empty?.tcbInfoJSON == nil && empty?.pckCRL == nil)
        // The vector's collateral in the FMSPC's folder is what the verifier gets.
        let platform = try TDXCollateralFetch.platform(of: try TDXQuote(bytes: quote))
        let folder = TDXCollateral.cacheFolder(cache, fmspc: platform.fmspc)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in TDXCollateral.fileNames + ["pck_crl_issuer_chain.pem"] {
            try FileManager.default.copyItem(at: vector.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        let cached = try presented()
        #expect(cached?.tcbInfoJSON == [UInt8](try Data(contentsOf: vector.appendingPathComponent("tcbinfo.json"))))
        #expect(cached?.pckCRL != nil && cached?.rootCACRL != nil)
        // A damaged CRL in the cache fails the launch with the folder and the parser's reason.
        try Data("not a CRL".utf8).write(to: folder.appendingPathComponent("pck_crl.der"))
        let error = #expect(throws: CoordinatorError.self) { _ = try presented() }
        #expect(error?.reason.contains(folder.path) == true && error?.reason.contains("cannot be read") == true, "\(error?.reason ?? "")")
        // A quote that does not parse gets no collateral: the verifier rejects the quote itself, with its reason.
        guard case .tdx(_, nil, _) = try HardwareLaunchPlan.presented(
            kind: "tdx", evidence: Array(quote.prefix(100)), auxiliary: [], verifier: verifier)
        else { Issue.record("a truncated quote got collateral"); return }
    }
}
