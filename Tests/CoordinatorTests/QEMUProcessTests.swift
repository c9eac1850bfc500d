import Coordinator
import Foundation
import Testing

/// How QEMU is spawned: with standard input, output and error only.
@Suite("QEMU's process: what it inherits")
struct QEMUProcessTests {
    static func targets(_ pid: Int32) throws -> [Int32: String] {
        var targets: [Int32: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
            guard let fd = Int32(name) else { continue }
            targets[fd] = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(name)")) ?? "?"
        }
        return targets
    }

    @Test("a spawned QEMU holds descriptors 0, 1 and 2 only, not the write end of a pipe the caller has open")
    func noInheritedDescriptors() async throws {
        // A pipe as another child's output would be: open in this process, not close-on-exec. Were it passed on,
        // the long-lived child would keep its reader from ever seeing the end of the stream.
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        defer {
            close(ends[0])
            close(ends[1])
        }
        let pipeName = try #require(try Self.targets(getpid())[ends[1]])
        let child = try QEMUProcess.start(["sleep", "30"])
        // Past the program's own start-up (coreutils may open a locale file for a moment).
        try await Task.sleep(for: .milliseconds(300))
        let held = try Self.targets(child.processIdentifier)
        _ = await child.stop(grace: .seconds(1))
        #expect(!held.values.contains(pipeName), "the child holds \(pipeName): \(held)")
        #expect(held.keys.sorted() == [0, 1, 2], "the child holds \(held)")
    }
}
