/// Splits a byte stream into sealed frames: `u32be length ‖ type ‖ ciphertext ‖ tag` (the names below call everything
/// after the length prefix the frame's ciphertext).
///
/// A length outside `minimumCiphertext...maximumCiphertext` fails as soon as its four bytes arrive, before anything
/// is buffered for it. Reads consume input only when a whole frame is there. A failure is final: a stream cannot be
/// resynchronised, so the decoder refuses everything after it.
public struct SealedFrameDecoder: Sendable {
    /// The smallest frame after its length prefix: the record-type byte and the tag (an empty body).
    public static let minimumCiphertext = 1 + NoiseCipher.tagLength
    public static let lengthPrefixSize = 4

    public let maximumCiphertext: Int
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var failure: SealedChannelError?

    public init(maximumCiphertext: Int = RecordLimits.standard.maximumCiphertext) {
        self.maximumCiphertext = maximumCiphertext
    }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        guard failure == nil else { return }
        if readIndex > 0 && readIndex >= buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet part of a whole frame.
    public var pendingByteCount: Int { buffer.count - readIndex }

    /// The next whole frame's ciphertext, or nil until it has arrived.
    public mutating func next() throws(SealedChannelError) -> [UInt8]? {
        if let failure { throw failure }
        guard pendingByteCount >= Self.lengthPrefixSize else { return nil }
        var length = 0
        for index in readIndex..<(readIndex + Self.lengthPrefixSize) { length = length << 8 | Int(buffer[index]) }
        guard length >= Self.minimumCiphertext, length <= maximumCiphertext else {
            let error = SealedChannelError(
                .frameLength,
                "a frame claims \(length) bytes; frames carry \(Self.minimumCiphertext) to \(maximumCiphertext)")
            failure = error
            throw error
        }
        guard pendingByteCount >= Self.lengthPrefixSize + length else { return nil }
        let start = readIndex + Self.lengthPrefixSize
        let ciphertext = Array(buffer[start..<(start + length)])
        readIndex = start + length
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        return ciphertext
    }

    /// The stream has ended: fails if it ended inside a frame.
    public mutating func finish() throws(SealedChannelError) {
        if let failure { throw failure }
        if pendingByteCount > 0 {
            let error = SealedChannelError(
                .frameTruncated, "the stream ended \(pendingByteCount) bytes into a frame that did not arrive whole")
            failure = error
            throw error
        }
    }

    /// The ciphertext of `frame` when it is exactly one whole frame within the limits.
    public static func single(_ frame: [UInt8], maximumCiphertext: Int) throws(SealedChannelError) -> ArraySlice<UInt8>
    {
        guard frame.count >= lengthPrefixSize else {
            throw SealedChannelError(.frameLength, "a frame of \(frame.count) bytes has no whole length prefix")
        }
        let length = frame[..<lengthPrefixSize].reduce(0) { $0 << 8 | Int($1) }
        guard length >= minimumCiphertext, length <= maximumCiphertext else {
            throw SealedChannelError(
                .frameLength,
                "a frame claims \(length) bytes; frames carry \(minimumCiphertext) to \(maximumCiphertext)")
        }
        guard frame.count == lengthPrefixSize + length else {
            throw SealedChannelError(
                .frameLength, "a frame of \(frame.count) bytes is not exactly one frame of \(length) bytes")
        }
        return frame[lengthPrefixSize...]
    }

    /// Frames one ciphertext.
    public static func frame(_ ciphertext: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(lengthPrefixSize + ciphertext.count)
        bytes.appendBigEndian(UInt32(ciphertext.count))
        bytes.append(contentsOf: ciphertext)
        return bytes
    }
}
