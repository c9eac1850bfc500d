public import GuestProtocol

/// One end of a guest-protocol port (docs/guest-protocol.md): whole messages out, whole messages in, reassembled
/// from a byte stream that arrives in arbitrary pieces.
///
/// Used from one thread at a time (the agent is a single loop); not `Sendable`.
public final class MessagePort {
    /// The descriptor of the port: a virtio-serial character device in the guest, a socket in tests.
    public let descriptor: FileDescriptor
    /// The port's name in log lines (`control`, `platform`).
    public let name: String
    private var decoder = GuestFrameDecoder()

    /// Wraps an open port.
    public init(_ descriptor: FileDescriptor, name: String) {
        self.descriptor = descriptor
        self.name = name
    }

    /// Opens the port at `path` (character device or UNIX socket).
    public convenience init(path: String, name: String) throws(GuestAgentError) {
        self.init(try FileDescriptor.openPort(path), name: name)
    }

    /// Sends one message as one frame.
    public func send(_ message: GuestMessage) throws(GuestAgentError) {
        try descriptor.writeAll(message.encoded())
    }

    /// The next message; nil when the peer closed the port between frames.
    ///
    /// - Parameter milliseconds: how long to wait for a whole frame; nil waits without limit.
    /// - Throws: `.timeout` when no whole frame arrived in time, `.protocolViolation` on a malformed frame (the
    ///   stream cannot be resynchronised: close the port), `.peerClosed` when the peer closed inside a frame.
    public func receive(milliseconds: Int? = nil) throws(GuestAgentError) -> GuestMessage? {
        let deadline = milliseconds.map { ContinuousClock.now + .milliseconds($0) }
        while true {
            do {
                if let message = try decoder.next() { return message }
            } catch {
                throw GuestAgentError(.protocolViolation, "malformed frame on the \(name) port: \(error)")
            }
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                let (seconds, attoseconds) = left.components
                let wait = left <= .zero ? 0 : Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
                guard try descriptor.waitReadable(milliseconds: wait) else {
                    if ContinuousClock.now < deadline { continue }
                    throw GuestAgentError(.timeout, "no whole message on the \(name) port within \(milliseconds!) ms")
                }
            }
            let chunk = try descriptor.read(upTo: 64 * 1024)
            if chunk.isEmpty {
                guard decoder.pendingByteCount == 0 else {
                    throw GuestAgentError(
                        .peerClosed,
                        "the \(name) port closed inside a frame (\(decoder.pendingByteCount) bytes pending)")
                }
                return nil
            }
            decoder.append(chunk)
        }
    }
}
