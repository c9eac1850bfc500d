internal import CLinuxHost
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Pins each vCPU thread of a QEMU to one CPU of its partition (`sched_setaffinity(2)` on the thread id QMP's
/// `query-cpus-fast` reports), and proves it by reading the kernel's view back from
/// `/proc/<pid>/task/<tid>/status` (`Cpus_allowed_list`).
///
/// vCPU *i* goes to the partition's CPU *i mod n* (CPUs in ascending order): with as many CPUs as vCPUs each vCPU
/// has a core to itself. QEMU's other threads (main loop, I/O) keep the affinity the launch gave the whole process
/// (the partition, through `taskset`).
public enum VCPUPinning {
    /// One vCPU thread after pinning.
    public struct Pin: Sendable, Hashable, Codable {
        public let vcpu: Int
        public let threadID: Int32
        /// The CPU it was pinned to.
        public let cpu: Int
        /// What the kernel reports for the thread afterwards (`Cpus_allowed_list`).
        public let allowed: [Int]
    }

    /// Pins `vcpus` of the QEMU process `pid` to `cpus`; throws `handover` when a thread is not QEMU's, the call
    /// fails, or the kernel reports another affinity afterwards.
    public static func pin(pid: Int32, vcpus: [QMPClient.VCPU], cpus: [Int], proc: String = "/proc") throws -> [Pin] {
        let sorted = cpus.sorted()
        guard !sorted.isEmpty else { throw CoordinatorError(.handover, "no partition CPUs to pin vCPUs to") }
        var pins: [Pin] = []
        for vcpu in vcpus {
            let cpu = sorted[vcpu.index % sorted.count]
            let status = "\(proc)/\(pid)/task/\(vcpu.threadID)/status"
            guard FileManager.default.fileExists(atPath: status) else {
                throw CoordinatorError(
                    .handover, "vCPU \(vcpu.index)'s thread \(vcpu.threadID) is not a thread of QEMU (pid \(pid))")
            }
            try setAffinity(thread: vcpu.threadID, cpus: [cpu])
            let allowed = try allowedCPUs(statusFile: status)
            guard allowed == [cpu] else {
                throw CoordinatorError(
                    .handover,
                    "vCPU \(vcpu.index) (thread \(vcpu.threadID)) runs on \(CPUList.format(allowed)) after pinning to \(cpu)"
                )
            }
            pins.append(Pin(vcpu: vcpu.index, threadID: vcpu.threadID, cpu: cpu, allowed: allowed))
        }
        return pins
    }

    /// `sched_setaffinity(tid, cpus)`, with a mask of 1024 CPUs (glibc's `cpu_set_t`).
    static func setAffinity(thread: Int32, cpus: [Int]) throws {
        var mask = [UInt8](repeating: 0, count: 128)
        for cpu in cpus {
            guard cpu >= 0, cpu < mask.count * 8 else {
                throw CoordinatorError(.handover, "CPU \(cpu) is outside the affinity mask (\(mask.count * 8) CPUs)")
            }
            mask[cpu / 8] |= UInt8(1 << (cpu % 8))
        }
        guard cmk_sched_setaffinity(thread, UInt(mask.count), mask) == 0 else {
            let number = errno
            throw CoordinatorError(
                .handover,
                "sched_setaffinity(\(thread), \(CPUList.format(cpus))): \(String(cString: strerror(number)))",
                nativeCode: number)
        }
    }

    /// The `Cpus_allowed_list` of a `/proc/.../status` file.
    public static func allowedCPUs(statusFile: String) throws -> [Int] {
        let text = try String(contentsOfFile: statusFile, encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            throw CoordinatorError(.malformedHostFile, "\(statusFile) has no Cpus_allowed_list")
        }
        return try CPUList.parse(
            line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces), file: statusFile)
    }
}
