public import Foundation

/// A tiny guest that proves a QEMU accelerator really runs code: a 512-byte BIOS boot sector that writes
/// a marker to the first serial port and then leaves QEMU through the `isa-debug-exit` device.
///
/// The probe passes only if QEMU exits with the debug-exit status (the guest ran to its last instruction)
/// and the serial log holds the marker. A hung accelerator (as KVM is on some nested hosts: the node
/// exists, the guest never runs) times out and fails.
public enum ProbeGuest {
    /// The line the guest writes to COM1.
    public static let marker = "CMK-PROBE-OK"
    /// The value the guest writes to the debug-exit port; QEMU exits with `(value << 1) | 1`.
    static let exitValue: UInt8 = 0x31
    /// QEMU's exit status when the guest finished.
    public static var expectedExitStatus: Int32 { Int32(exitValue) << 1 | 1 }

    /// The boot sector. Real-mode code loaded at 0x7C00 by the BIOS:
    /// ```
    /// 00 FA          cli
    /// 01 31 C0       xor  ax, ax
    /// 03 8E D8       mov  ds, ax
    /// 05 FC          cld
    /// 06 BE 1B 7C    mov  si, 0x7C1B        ; the marker
    /// 09 BA F8 03    mov  dx, 0x3F8         ; COM1 data register
    /// 0C AC          lodsb                  ; next:
    /// 0D 84 C0       test al, al
    /// 0F 74 03       jz   done
    /// 11 EE          out  dx, al
    /// 12 EB F8       jmp  next
    /// 14 B0 31       mov  al, 0x31          ; done:
    /// 16 E6 F4       out  0xF4, al          ; isa-debug-exit
    /// 18 F4          hlt
    /// 19 EB FD       jmp  0x18
    /// 1B "CMK-PROBE-OK\n\0"
    /// ```
    public static var bootSector: [UInt8] {
        var code: [UInt8] = [
            0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0xFC, 0xBE, 0x1B, 0x7C, 0xBA, 0xF8, 0x03, 0xAC, 0x84, 0xC0, 0x74, 0x03,
            0xEE, 0xEB, 0xF8, 0xB0, exitValue, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD,
        ]
        code += Array(marker.utf8) + [0x0A, 0x00]
        code += [UInt8](repeating: 0, count: 510 - code.count)
        return code + [0x55, 0xAA]
    }

    /// The outcome of one probe boot.
    public struct Outcome: Sendable, Hashable {
        public let passed: Bool
        public let detail: String
    }

    /// Boots the probe under `accelerator` (`tcg` or `kvm`).
    public static func boot(qemu: String, accelerator: String, timeout: Duration) async -> Outcome {
        let fm = FileManager.default
        let directory = fm.temporaryDirectory.appendingPathComponent("cmk-probe-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: directory) }
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            return Outcome(passed: false, detail: "cannot create a probe folder: \(error)")
        }
        let image = directory.appendingPathComponent("probe.img")
        let serial = directory.appendingPathComponent("serial.log")
        guard fm.createFile(atPath: image.path, contents: Data(bootSector)) else {
            return Outcome(passed: false, detail: "cannot write the probe image")
        }
        let arguments = [
            "-accel", accelerator, "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none", "-no-reboot",
            "-drive", "file=\(image.path),format=raw,if=ide,index=0",
            "-serial", "file:\(serial.path)",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        let started = ContinuousClock.now
        let result: CommandResult
        do {
            result = try await CommandRunner.run(qemu, arguments, timeout: timeout)
        } catch {
            return Outcome(passed: false, detail: error.description)
        }
        let elapsed = ContinuousClock.now - started
        let serialText = (try? String(contentsOf: serial, encoding: .utf8)) ?? ""
        let seconds = String(format: "%.1f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        if result.timedOut {
            return Outcome(passed: false, detail: "a probe guest under \(accelerator) did not finish within \(timeout) (hung)")
        }
        if result.exitCode == expectedExitStatus, serialText.contains(marker) {
            return Outcome(passed: true, detail: "a probe guest ran under \(accelerator) in \(seconds) s")
        }
        let stderr = result.standardErrorText.split(separator: "\n").first.map(String.init) ?? ""
        return Outcome(
            passed: false,
            detail: "a probe guest under \(accelerator) failed (exit \(result.exitCode))" + (stderr.isEmpty ? "" : ": \(stderr)"))
    }
}
