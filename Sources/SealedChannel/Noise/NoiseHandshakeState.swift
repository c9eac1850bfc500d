import Crypto

/// A token of a Noise message pattern (section 7.1).
public enum NoiseToken: String, Sendable, Hashable {
    case e, s, ee, es, se, ss
}

/// A Noise handshake pattern without pre-messages (section 7): its name and its message patterns, the first sent by
/// the initiator and then alternating.
public struct NoisePattern: Sendable, Hashable {
    public let name: String
    public let messages: [[NoiseToken]]

    /// XX (section 7.5): mutual authentication, each side's static key sent encrypted.
    ///
    ///     -> e
    ///     <- e, ee, s, es
    ///     -> s, se
    public static let xx = NoisePattern(name: "XX", messages: [[.e], [.e, .ee, .s, .es], [.s, .se]])
    /// NN (section 7.4): no static keys.
    ///
    ///     -> e
    ///     <- e, ee
    public static let nn = NoisePattern(name: "NN", messages: [[.e], [.e, .ee]])

    public static let known: [NoisePattern] = [xx, nn]
}

/// A concrete Noise protocol (section 8): a pattern, a DH function, a cipher and a hash.
public struct NoiseProtocol: Sendable, Hashable, CustomStringConvertible {
    public let pattern: NoisePattern
    public let dh: NoiseDH
    public let cipher: NoiseCipher
    public let hash: NoiseHash

    public init(pattern: NoisePattern, dh: NoiseDH = .x25519, cipher: NoiseCipher, hash: NoiseHash) {
        self.pattern = pattern
        self.dh = dh
        self.cipher = cipher
        self.hash = hash
    }

    /// Parses a protocol name such as `Noise_XX_25519_ChaChaPoly_SHA256`; only the patterns and functions cmk has.
    public init(name: String) throws(SealedChannelError) {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[0] == "Noise",
            let pattern = NoisePattern.known.first(where: { $0.name == parts[1] }),
            let dh = NoiseDH(rawValue: parts[2]), let cipher = NoiseCipher(rawValue: parts[3]),
            let hash = NoiseHash(rawValue: parts[4])
        else {
            throw SealedChannelError(.unsupported, "\(name) is not a Noise protocol this build implements")
        }
        self.init(pattern: pattern, dh: dh, cipher: cipher, hash: hash)
    }

    /// `Noise_XX_25519_ChaChaPoly_SHA256`: what cmk's sealed channels use.
    public static let cmkChannel = NoiseProtocol(pattern: .xx, cipher: .chaChaPoly, hash: .sha256)

    /// The protocol name (section 8), hashed into `h` first.
    public var name: String { "Noise_\(pattern.name)_\(dh.rawValue)_\(cipher.rawValue)_\(hash.rawValue)" }
    public var description: String { name }
}

/// The two transport cipher states Split() returns, arranged for one side: what it sends with and what it receives
/// with, and the final handshake hash (a channel binding value, section 11.2).
public struct NoiseTransportKeys: Sendable {
    public var sending: NoiseCipherState
    public var receiving: NoiseCipherState
    public let handshakeHash: [UInt8]
}

/// What ReadMessage() yields: the payload, the handshake hash just before the payload was decrypted (what the
/// sender could bind its payload to), the peer's static key once known, and the transport keys after the last
/// message.
public struct NoiseReadResult: Sendable {
    public let payload: [UInt8]
    public let hashBeforePayload: [UInt8]
    public let remoteStaticKey: [UInt8]?
    public let transport: NoiseTransportKeys?
}

/// A Noise HandshakeState (section 5.3) for patterns without pre-messages or PSKs.
///
/// Writing is split in two so a payload can depend on the handshake hash at the point where it is encrypted:
/// ``beginWrite()`` processes the message's tokens, ``handshakeHash`` is then the value the payload will be
/// encrypted under, and ``finishWrite(payload:)`` appends the payload. ``writeMessage(payload:)`` does both. Any
/// failure leaves the state failed: Noise handshakes are not retried (section 5.3).
public struct NoiseHandshakeState: Sendable {
    /// The largest Noise message (section 3).
    public static let maximumMessageLength = 65535

    public let noiseProtocol: NoiseProtocol
    public let isInitiator: Bool
    private var symmetric: NoiseSymmetricState
    private let localStatic: NoiseKeyPair?
    private var localEphemeral: NoiseKeyPair?
    private let presetEphemeral: NoiseKeyPair?
    public private(set) var remoteStaticKey: [UInt8]?
    public private(set) var remoteEphemeralKey: [UInt8]?
    private var messageIndex = 0
    private var pendingMessage: [UInt8]?
    private var failed = false

    /// Initialize(handshake_pattern, initiator, prologue, s, e, rs, re) without pre-messages. `ephemeral` fixes the
    /// ephemeral key for test vectors only; a real handshake generates a fresh one.
    public init(
        _ noiseProtocol: NoiseProtocol, initiator: Bool, prologue: [UInt8], staticKey: NoiseKeyPair? = nil,
        fixedEphemeralForTesting ephemeral: NoiseKeyPair? = nil
    ) throws(SealedChannelError) {
        let ownTurns = noiseProtocol.pattern.messages.enumerated().filter { ($0.offset % 2 == 0) == initiator }
        let needsStatic = ownTurns.contains { $0.element.contains(.s) }
        if needsStatic && staticKey == nil {
            throw SealedChannelError(.invalidState, "\(noiseProtocol.pattern.name) needs this side's static key")
        }
        self.noiseProtocol = noiseProtocol
        self.isInitiator = initiator
        self.localStatic = staticKey
        self.presetEphemeral = ephemeral
        symmetric = NoiseSymmetricState(
            protocolName: Array(noiseProtocol.name.utf8), cipher: noiseProtocol.cipher, hash: noiseProtocol.hash)
        symmetric.mixHash(prologue)
    }

    /// `h`, GetHandshakeHash().
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// Whether every message of the pattern has been written or read.
    public var isComplete: Bool { messageIndex >= noiseProtocol.pattern.messages.count }

    /// Whether this side writes the next message.
    public var isMyTurn: Bool { !isComplete && (messageIndex % 2 == 0) == isInitiator }

    /// WriteMessage(payload) in one step.
    public mutating func writeMessage(
        payload: [UInt8]
    ) throws(SealedChannelError) -> (message: [UInt8], transport: NoiseTransportKeys?) {
        _ = try beginWrite()
        return try finishWrite(payload: payload)
    }

    /// The first half of WriteMessage: processes the tokens; returns the handshake hash the payload will be
    /// encrypted under.
    @discardableResult
    public mutating func beginWrite() throws(SealedChannelError) -> [UInt8] {
        try guardUsable()
        guard isMyTurn, pendingMessage == nil else {
            failed = true
            throw SealedChannelError(.invalidState, "it is not this side's turn to write a handshake message")
        }
        var message: [UInt8] = []
        do throws(SealedChannelError) {
            for token in noiseProtocol.pattern.messages[messageIndex] {
                switch token {
                case .e:
                    let pair = presetEphemeral ?? NoiseKeyPair()
                    localEphemeral = pair
                    message += pair.publicKey
                    symmetric.mixHash(pair.publicKey)
                case .s:
                    message += try symmetric.encryptAndHash(try requireLocalStatic().publicKey)
                default:
                    try mixDH(token)
                }
            }
        } catch {
            failed = true
            throw error
        }
        pendingMessage = message
        return symmetric.handshakeHash
    }

    /// The second half of WriteMessage: appends the encrypted payload; after the last message, Split().
    public mutating func finishWrite(
        payload: [UInt8]
    ) throws(SealedChannelError) -> (message: [UInt8], transport: NoiseTransportKeys?) {
        try guardUsable()
        guard var message = pendingMessage else {
            failed = true
            throw SealedChannelError(.invalidState, "finishWrite without beginWrite")
        }
        pendingMessage = nil
        do throws(SealedChannelError) {
            message += try symmetric.encryptAndHash(payload)
        } catch {
            failed = true
            throw error
        }
        guard message.count <= Self.maximumMessageLength else {
            failed = true
            throw SealedChannelError(
                .messageTooLarge, "a handshake message would be \(message.count) bytes; Noise allows 65535")
        }
        messageIndex += 1
        return (message, isComplete ? splitForRole() : nil)
    }

    /// ReadMessage(message).
    public mutating func readMessage(_ message: [UInt8]) throws(SealedChannelError) -> NoiseReadResult {
        try guardUsable()
        guard !isComplete, !isMyTurn else {
            failed = true
            throw SealedChannelError(
                .invalidState, "a handshake message arrived when this side should write or is done")
        }
        do throws(SealedChannelError) {
            guard message.count <= Self.maximumMessageLength else {
                throw SealedChannelError(
                    .messageTooLarge, "a handshake message of \(message.count) bytes; Noise allows 65535")
            }
            var offset = 0
            func take(_ count: Int, _ what: String) throws(SealedChannelError) -> [UInt8] {
                guard message.count - offset >= count else {
                    throw SealedChannelError(
                        .handshakeMalformed,
                        "handshake message \(messageIndex + 1) ends inside \(what) (\(message.count) bytes)")
                }
                defer { offset += count }
                return Array(message[offset..<(offset + count)])
            }
            let keyLength = noiseProtocol.dh.publicKeyLength
            for token in noiseProtocol.pattern.messages[messageIndex] {
                switch token {
                case .e:
                    let key = try take(keyLength, "the peer's ephemeral key")
                    remoteEphemeralKey = key
                    symmetric.mixHash(key)
                case .s:
                    let length = symmetric.cipherState.hasKey ? keyLength + NoiseCipher.tagLength : keyLength
                    let sealed = try take(length, "the peer's static key")
                    remoteStaticKey = try symmetric.decryptAndHash(sealed)
                default:
                    try mixDH(token)
                }
            }
            let hashBeforePayload = symmetric.handshakeHash
            let payload = try symmetric.decryptAndHash(Array(message[offset...]))
            messageIndex += 1
            return NoiseReadResult(
                payload: payload, hashBeforePayload: hashBeforePayload, remoteStaticKey: remoteStaticKey,
                transport: isComplete ? splitForRole() : nil)
        } catch {
            failed = true
            throw error
        }
    }

    private func guardUsable() throws(SealedChannelError) {
        if failed { throw SealedChannelError(.invalidState, "the handshake failed earlier and cannot continue") }
    }

    private func requireLocalStatic() throws(SealedChannelError) -> NoiseKeyPair {
        guard let localStatic else { throw SealedChannelError(.invalidState, "no local static key") }
        return localStatic
    }

    private func requireLocalEphemeral() throws(SealedChannelError) -> NoiseKeyPair {
        guard let localEphemeral else { throw SealedChannelError(.invalidState, "no local ephemeral key") }
        return localEphemeral
    }

    private func requireRemote(_ key: [UInt8]?, _ what: String) throws(SealedChannelError) -> [UInt8] {
        guard let key else { throw SealedChannelError(.invalidState, "the peer's \(what) key is not known yet") }
        return key
    }

    /// The DH tokens (section 5.3): ee, es, se, ss, with the roles of es and se swapped on the responder.
    private mutating func mixDH(_ token: NoiseToken) throws(SealedChannelError) {
        let dh = noiseProtocol.dh
        let shared: SymmetricKey
        switch (token, isInitiator) {
        case (.ee, _):
            shared = try dh.agree(try requireLocalEphemeral(), try requireRemote(remoteEphemeralKey, "ephemeral"))
        case (.es, true):
            shared = try dh.agree(try requireLocalEphemeral(), try requireRemote(remoteStaticKey, "static"))
        case (.es, false):
            shared = try dh.agree(try requireLocalStatic(), try requireRemote(remoteEphemeralKey, "ephemeral"))
        case (.se, true):
            shared = try dh.agree(try requireLocalStatic(), try requireRemote(remoteEphemeralKey, "ephemeral"))
        case (.se, false):
            shared = try dh.agree(try requireLocalEphemeral(), try requireRemote(remoteStaticKey, "static"))
        case (.ss, _):
            shared = try dh.agree(try requireLocalStatic(), try requireRemote(remoteStaticKey, "static"))
        case (.e, _), (.s, _):
            throw SealedChannelError(.invalidState, "\(token) is not a DH token")
        }
        symmetric.mixKey(shared)
    }

    /// Split(), arranged for this side; the ephemeral private key is dropped.
    private mutating func splitForRole() -> NoiseTransportKeys {
        let (c1, c2) = symmetric.split()
        localEphemeral = nil
        return isInitiator
            ? NoiseTransportKeys(sending: c1, receiving: c2, handshakeHash: symmetric.handshakeHash)
            : NoiseTransportKeys(sending: c2, receiving: c1, handshakeHash: symmetric.handshakeHash)
    }
}
