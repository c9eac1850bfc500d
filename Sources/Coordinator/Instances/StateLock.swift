public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one-writer lock of a state folder: an exclusive `flock(2)` on `<state-dir>/coordinator.lock`, held by
/// the coordinator process that changes instances, for as long as it runs.
///
/// The kernel drops the lock when the holder's file is closed, so a crashed coordinator never leaves it
/// behind. The file holds the holder's pid, for the message a second coordinator gets. It is opened
/// close-on-exec, so QEMU and other children never inherit it (a QEMU outliving its coordinator would otherwise
/// keep every later coordinator out).
public final class StateLock: @unchecked Sendable {
    /// The lock file.
    public let path: URL
    private let mutex = NSLock()
    private var descriptor: Int32

    /// Takes the lock, waiting up to `wait` while another holds it (zero: not at all). The wait retries every
    /// 2 ms on the calling thread: callers hold the lock for one change at a time, so waits are short.
    ///
    /// - Throws: `stateLocked` naming the holder's pid when another open file still holds it after `wait`
    ///   (another process, or another store in this process); `fileSystem` when the file cannot be opened.
    public init(path: URL, wait: Duration = .zero) throws(CoordinatorError) {
        self.path = path
        let fd = open(path.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            throw CoordinatorError(
                .fileSystem, "cannot open the state lock \(path.path): \(String(cString: strerror(code)))",
                nativeCode: code)
        }
        let deadline = ContinuousClock.now + wait
        var locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        while !locked, errno == EWOULDBLOCK || errno == EAGAIN || errno == EINTR, ContinuousClock.now < deadline {
            usleep(2_000)
            locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        guard locked else {
            let code = errno
            let holder = Self.recordedPID(fd)
            close(fd)
            if code == EWOULDBLOCK || code == EAGAIN {
                let who = holder.map { "pid \($0)" } ?? "pid unknown"
                throw CoordinatorError(
                    .stateLocked,
                    "another cmk coordinator (\(who)) holds the state lock \(path.path); stop it, or use another "
                        + "--state-dir", nativeCode: code)
            }
            throw CoordinatorError(
                .fileSystem, "cannot lock \(path.path): \(String(cString: strerror(code)))", nativeCode: code)
        }
        let record = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0, pwrite(fd, record, record.count, 0) == record.count else {
            let code = errno
            close(fd)
            throw CoordinatorError(
                .fileSystem, "cannot record this coordinator's pid in \(path.path): \(String(cString: strerror(code)))",
                nativeCode: code)
        }
        descriptor = fd
    }

    /// Whether this value still holds the lock.
    public var isHeld: Bool { mutex.withLock { descriptor >= 0 } }

    /// Releases the lock (closing the file); later calls do nothing.
    public func release() {
        mutex.withLock {
            guard descriptor >= 0 else { return }
            close(descriptor)
            descriptor = -1
        }
    }

    deinit { release() }

    /// The pid the holder wrote into the file, if it has written one yet.
    private static func recordedPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer.prefix(count), as: UTF8.self).trimmingWhitespace())
    }
}
