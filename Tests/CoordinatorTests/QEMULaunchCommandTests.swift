import Coordinator
import Foundation
import Testing

let sampleSettings = QEMUInstanceSettings(
    name: "child-1", kernel: "/img/vmlinuz", initrd: "/img/initrd.cpio", commandLine: "console=ttyS0 panic=-1",
    vcpus: 2, memoryMiB: 1024, serialLog: "/run/cmk/child-1/serial.log", pidFile: "/run/cmk/child-1/qemu.pid",
    controlSocket: "/run/cmk/child-1/control.sock", platformSocket: "/run/cmk/child-1/platform.sock")

/// The arguments every launch shares after the machine-specific ones: firmware and direct kernel boot, the console to
/// a file, the two virtio-serial ports as socket clients, no reboot, the pid file.
func sharedTail(platform: Bool) -> [String] {
    var tail = [
        "-nodefaults", "-no-user-config",
        "-bios", "/usr/share/ovmf/OVMF.fd", "-kernel", "/img/vmlinuz", "-initrd", "/img/initrd.cpio",
        "-append", "console=ttyS0 panic=-1",
        "-display", "none", "-monitor", "none",
        "-chardev", "file,id=cmkserial,path=/run/cmk/child-1/serial.log", "-serial", "chardev:cmkserial",
        "-device", "virtio-serial-pci,id=cmkports",
        "-chardev", "socket,id=cmkcontrol,path=/run/cmk/child-1/control.sock,reconnect=1",
        "-device", "virtserialport,bus=cmkports.0,chardev=cmkcontrol,name=cmk.control",
    ]
    if platform {
        tail += [
            "-chardev", "socket,id=cmkplatform,path=/run/cmk/child-1/platform.sock,reconnect=1",
            "-device", "virtserialport,bus=cmkports.0,chardev=cmkplatform,name=cmk.platform",
        ]
    }
    return tail + ["-no-reboot", "-pidfile", "/run/cmk/child-1/qemu.pid"]
}

@Suite("QEMU command lines")
struct QEMULaunchCommandTests {
    @Test("the simulated child: q35 under TCG, EPYC-v4, OVMF, direct kernel boot, both guest ports")
    func simulated() throws {
        let command = SimulatedLaunchCommand(settings: sampleSettings)
        #expect(
            try command.commandLine() == [
                "qemu-system-x86_64", "-name", "child-1", "-machine", "q35", "-accel", "tcg", "-cpu", "EPYC-v4",
                "-smp", "2", "-m", "1024M",
            ] + sharedTail(platform: true))
    }

    @Test("KVM only when the host showed it usable; pinning goes through taskset")
    func kvmAndPinning() throws {
        #expect(QEMUAccelerator.choose(kvmUsable: false) == .tcg)
        #expect(QEMUAccelerator.choose(kvmUsable: true) == .kvm)
        var settings = sampleSettings
        settings.hostCPUs = [2, 3]
        let command = SimulatedLaunchCommand(settings: settings, accelerator: .choose(kvmUsable: true))
        let line = try command.commandLine()
        #expect(Array(line.prefix(4)) == ["taskset", "--cpu-list", "2,3", "qemu-system-x86_64"])
        #expect(line.firstIndex(of: "-accel").map { line[$0 + 1] } == "kvm")
    }

    @Test("SEV-SNP: the documented sev-snp-guest object and confidential-guest-support, a memfd backend, kernel hashes")
    func sevSNP() throws {
        var settings = sampleSettings
        settings.platformSocket = nil
        let hostData = [UInt8](repeating: 0xAB, count: 32)
        let command = SEVSNPLaunchCommand(settings: settings, hostData: hostData)
        let hostDataText = Data(hostData).base64EncodedString()
        #expect(
            try command.commandLine() == [
                "qemu-system-x86_64", "-name", "child-1",
                "-machine", "q35,confidential-guest-support=sev0,memory-backend=ram1",
                "-accel", "kvm", "-cpu", "EPYC-v4", "-smp", "2", "-m", "1024M",
                "-object", "memory-backend-memfd,id=ram1,size=1024M,share=true",
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,"
                    + "host-data=\(hostDataText)",
            ] + sharedTail(platform: false))
        // QEMU docs/system/i386/amd-memory-encryption.rst, "Launching (SEV-SNP)":
        //   -machine ...,confidential-guest-support=sev0 \
        //   -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1
        let documented = "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1"
        #expect(try command.guestObject().hasPrefix(documented + ","))
        // The SNP_LAUNCH_START default the same page gives for policy.
        let plain = SEVSNPLaunchCommand(settings: settings, kernelHashes: false)
        #expect(try plain.guestObject() == documented + ",policy=0x30000")
    }

    @Test("SEV-SNP: id-block, id-auth and author-key-enabled go in as base64 with their lengths checked")
    func sevSNPIdentity() throws {
        var settings = sampleSettings
        settings.platformSocket = nil
        let block = [UInt8](repeating: 1, count: 96)
        let auth = [UInt8](repeating: 2, count: 4096)
        let command = SEVSNPLaunchCommand(settings: settings, idBlock: block, idAuth: auth, authorKeyEnabled: true)
        #expect(
            try command.guestObject()
                == "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,"
                + "id-block=\(Data(block).base64EncodedString()),id-auth=\(Data(auth).base64EncodedString()),"
                + "author-key-enabled=on"
        )
        for wrong in [
            SEVSNPLaunchCommand(settings: settings, hostData: [1, 2, 3]),
            SEVSNPLaunchCommand(settings: settings, idBlock: block),
            SEVSNPLaunchCommand(settings: settings, idBlock: [1], idAuth: auth),
            SEVSNPLaunchCommand(settings: settings, authorKeyEnabled: true),
            SEVSNPLaunchCommand(settings: sampleSettings),  // a real child has no platform port
        ] {
            #expect(throws: QEMULaunchError.self) { try wrong.commandLine() }
        }
    }

    @Test(
        "TDX: the tdx-guest object as JSON with mrconfigid and the quote-generation socket, split IRQ chip, -cpu host")
    func tdx() throws {
        var settings = sampleSettings
        settings.platformSocket = nil
        let configID = [UInt8](repeating: 0x5A, count: 48)
        let command = TDXLaunchCommand(
            settings: settings, mrConfigID: configID, quoteGenerationSocket: .vsock(cid: 2, port: 4050))
        let line = try command.commandLine()
        #expect(
            Array(line.prefix(14)) == [
                "qemu-system-x86_64", "-name", "child-1",
                "-machine", "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                "-accel", "kvm", "-cpu", "host", "-smp", "2", "-m", "1024M", "-object",
            ])
        #expect(Array(line.dropFirst(15)) == sharedTail(platform: false))
        // The QEMU patch that added the property gives:
        //   -object '{"qom-type":"tdx-guest","id":"tdx0",
        //             "quote-generation-socket":{"type": "vsock", "cid":"2","port":"1234"}}'
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line[14].utf8)) as? [String: Any])
        #expect(object["qom-type"] as? String == "tdx-guest")
        #expect(object["id"] as? String == "tdx0")
        #expect(object["mrconfigid"] as? String == Data(configID).base64EncodedString())
        #expect(
            object["quote-generation-socket"] as? [String: String] == ["type": "vsock", "cid": "2", "port": "4050"])
        #expect(object.count == 4)
        let unix = TDXLaunchCommand(settings: settings, quoteGenerationSocket: .unix(path: "/run/qgs.sock"))
        #expect(
            try unix.guestObject()
                == #"{"id":"tdx0","qom-type":"tdx-guest","#
                + #""quote-generation-socket":{"path":"/run/qgs.sock","type":"unix"}}"#
        )
        #expect(throws: QEMULaunchError.self) {
            try TDXLaunchCommand(settings: settings, mrConfigID: [1]).commandLine()
        }
    }

    @Test("commas in socket and log paths are doubled, as QEMU's option syntax needs")
    func commaEscaping() throws {
        var settings = sampleSettings
        settings.controlSocket = "/tmp/a,b/control.sock"
        settings.serialLog = "/tmp/a,b/serial.log"
        let line = try SimulatedLaunchCommand(settings: settings).commandLine()
        #expect(line.contains("socket,id=cmkcontrol,path=/tmp/a,,b/control.sock,reconnect=1"))
        #expect(line.contains("file,id=cmkserial,path=/tmp/a,,b/serial.log"))
        settings.reconnect = .milliseconds(500)
        #expect(
            try SimulatedLaunchCommand(settings: settings).commandLine().contains(
                "socket,id=cmkcontrol,path=/tmp/a,,b/control.sock,reconnect-ms=500"))
    }

    @Test("bad settings are refused with a reason: name, vCPUs, memory, CPU list, missing platform socket")
    func invalidSettings() {
        var cases: [QEMUInstanceSettings] = []
        for change in [
            { (s: inout QEMUInstanceSettings) in s.name = "child 1" },
            { $0.name = "a,b" },
            { $0.vcpus = 0 },
            { $0.memoryMiB = 16 },
            { $0.hostCPUs = [] },
            { $0.hostCPUs = [1, 1] },
            { $0.commandLine = "a\nb" },
            { $0.platformSocket = nil },
            { $0.reconnect = .seconds(0) },
        ] as [(inout QEMUInstanceSettings) -> Void] {
            var settings = sampleSettings
            change(&settings)
            cases.append(settings)
        }
        for settings in cases {
            #expect(throws: QEMULaunchError.self, "\(settings)") {
                try SimulatedLaunchCommand(settings: settings).commandLine()
            }
        }
        #expect(throws: QEMULaunchError.self) {
            try SimulatedLaunchCommand(settings: sampleSettings, cpuModel: "EPYC,x").commandLine()
        }
    }

    @Test(
        "the EPYC model: v4 where QEMU has it, else the newest version with the same signature", .timeLimit(.minutes(3))
    )
    func cpuModels() async throws {
        let older = QEMUCPUModels(
            help:
                "x86 EPYC  (alias configured by machine type)\n" + "x86 EPYC-v1  AMD EPYC Processor\n"
                + "x86 EPYC-v3  AMD EPYC Processor\n"
        )
        #expect(older.epycModel() == "EPYC-v3")
        #expect(QEMUCPUModels(names: ["EPYC-v4", "EPYC-v3"]).epycModel() == "EPYC-v4")
        #expect(QEMUCPUModels(names: ["qemu64"]).epycModel() == nil)
        let help = try await CommandRunner.run("qemu-system-x86_64", ["-cpu", "help"], timeout: .seconds(30))
        let installed = QEMUCPUModels(help: help.standardOutputText)
        #expect(installed.names.contains("qemu64"))
        #expect(installed.epycModel() != nil, "the installed QEMU offers no EPYC model")
    }
}
