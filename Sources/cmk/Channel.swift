import ArgumentParser
import AuditLog
import Coordinator
import Foundation

extension CMK {
    /// `cmk channel`: sealed channels between admitted instances, relayed by their supervisors (ciphertext only).
    struct ChannelCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "channel",
            abstract: "Sealed channels between admitted instances: open, send, close, list, trace.",
            discussion: """
                The two children run the handshake and check each other's evidence themselves; the host only relays \
                frames it cannot read (docs/channels.md). Exit status: 0 done, 1 refused or failed, 2 a usage \
                error or unreadable state.
                """,
            subcommands: [Open.self, Send.self, Close.self, List.self, Trace.self, Tamper.self])
    }
}

/// Shared by the channel commands.
enum ChannelCLI {
    static func fail(_ error: CoordinatorError, json: Bool) -> ExitCode {
        let negative = [CoordinatorError.Code.channelRefused, .unknownChannel].contains(error.code)
        if json {
            print((try? JSONOutput.encode(ErrorOutput(code: error.code.name, reason: error.reason))) ?? "{}")
        } else {
            FileHandle.standardError.write(Data("error [\(error.code)]: \(error.reason)\n".utf8))
        }
        return ExitCode(negative ? 1 : 2)
    }

    /// Sends one request to an instance's supervisor and returns its answer's note.
    static func ask(
        _ state: CMKStateDirectory, instance: String, _ message: RelayMessage
    ) throws(CoordinatorError) -> String {
        let path = ChannelFiles.relaySocket(state, instance: instance)
        guard FileManager.default.fileExists(atPath: path) else {
            throw CoordinatorError(
                .channelRefused, "\(instance) has no relay (\(path)): it is not admitted or its supervisor is gone")
        }
        let link = try RelayLink.connect(path: path)
        defer { link.close() }
        let answer = try link.request(message, timeout: .seconds(60))
        guard answer.op == .accepted else {
            throw CoordinatorError(.channelRefused, answer.reason ?? "refused without a reason")
        }
        return answer.reason ?? ""
    }

    static func info(_ state: CMKStateDirectory, _ channel: String) throws(CoordinatorError) -> ChannelFiles.Info {
        try ChannelFiles.validate(channel: channel)
        guard let info = ChannelFiles.info(state, channel: channel) else {
            throw CoordinatorError(.unknownChannel, "no channel \(channel) in \(state.url.path) (cmk channel ls)")
        }
        return info
    }

    /// Waits (polling the events both supervisors write) until `done` says yes or the time is up.
    static func wait(
        _ state: CMKStateDirectory, _ info: ChannelFiles.Info, timeout: Double,
        until done: (ChannelSummary) -> Bool
    ) async -> ChannelSummary {
        let deadline = Date().addingTimeInterval(timeout)
        var summary = ChannelSummary(state, info: info)
        while !done(summary), Date() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            summary = ChannelSummary(state, info: info)
        }
        return summary
    }

    static func render(_ summary: ChannelSummary) -> String {
        var lines = ["\(summary.channel): \(summary.initiator.instance) ⇄ \(summary.responder.instance), \(summary.state)"]
        for end in [summary.initiator, summary.responder] {
            let handshake = end.handshakeMicros.map { ", handshake \($0 / 1000) ms in the child" } ?? ""
            lines.append(
                "  \(end.instance): \(end.state)\(end.detail.isEmpty ? "" : " — \(end.detail)") "
                    + "[records sent \(end.recordsSent), received \(end.recordsReceived)\(handshake)]")
        }
        for direction in summary.relayed {
            lines.append("  relayed \(direction.from) → \(direction.to): \(direction.frames) frames, \(direction.bytes) bytes")
        }
        if summary.tamperedFrames > 0 { lines.append("  frames the relay altered on request: \(summary.tamperedFrames)") }
        return lines.joined(separator: "\n")
    }
}

extension CMK.ChannelCommand {
    struct Open: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open a sealed channel from INITIATOR to RESPONDER and wait for both ends to verify each other.",
            discussion: """
                The host relays only between two admitted instances whose policies list each other in \
                handover.channel-peers; a refusal is audited. Exit status: 0 both ends established the channel, \
                1 refused or the handshake failed (each end's reason is printed), 2 a usage error.
                """)

        @Argument(help: "The initiating instance.") var initiator: String
        @Argument(help: "The responding instance.") var responder: String
        @Option(name: .customLong("name"), help: "The channel id (default INITIATOR-RESPONDER).") var name: String?
        @Option(help: "Seconds to wait for the handshake.") var timeout: Double = 120
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var state: StateOptions

        func run() async throws {
            let state = state.state
            let channel = name ?? "\(initiator)-\(responder)"
            let summary: ChannelSummary
            do throws(CoordinatorError) {
                summary = try await open(state, channel: channel)
            } catch {
                throw ChannelCLI.fail(error, json: json)
            }
            print(json ? try JSONOutput.encode(summary) : ChannelCLI.render(summary))
            if summary.state != "open" { throw ExitCode(1) }
        }

        func open(_ state: CMKStateDirectory, channel: String) async throws(CoordinatorError) -> ChannelSummary {
            try ChannelFiles.validate(channel: channel)
            var refusal: CoordinatorError?
            do throws(CoordinatorError) {
                try ChannelAccess.check(state, initiator: initiator, responder: responder)
            } catch {
                refusal = error
            }
            if let refusal {
                if refusal.code == .channelRefused {
                    try? StateOptionsAudit.record(
                        state,
                        details: [
                            "event": "channel-refused", "channel": channel, "initiator": initiator,
                            "responder": responder, "reason": refusal.reason,
                        ], instance: initiator)
                }
                throw refusal
            }
            _ = try ChannelCLI.ask(state, instance: initiator, RelayMessage(.open, channel: channel, responder: responder))
            let info = try ChannelCLI.info(state, channel)
            return await ChannelCLI.wait(state, info, timeout: timeout) { $0.state != "handshaking" }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Have an instance's agent seal messages to its peer (the host passes the text to the sender only).",
            discussion: """
                With --echo the peer's agent sends each message back and the sender checks it came back unchanged; \
                the round trip is measured inside the sender (`--count` for many, reported as median and p99). \
                Exit status: 0 sent (and echoed), 1 the channel failed or an echo did not come back, 2 a usage error.
                """)

        @Argument(help: "The channel id.") var channel: String
        @Argument(help: "The message text (omit with --size).") var message: String?
        @Option(help: "The sending instance (default: the initiator).") var from: String?
        @Flag(help: "Ask the peer to send each message back.") var echo = false
        @Option(help: "How many messages.") var count = 1
        @Option(help: "Send SIZE random bytes instead of text.") var size: Int?
        @Option(help: "Seconds to wait for the echoes.") var timeout: Double = 60
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var state: StateOptions

        func validate() throws {
            guard (message == nil) != (size == nil) else { throw ValidationError("give a message or --size, not both") }
            guard (1...100_000).contains(count) else { throw ValidationError("--count is 1 to 100000") }
            if let size { guard (0...65517).contains(size) else { throw ValidationError("--size is 0 to 65517") } }
        }

        struct Output: Encodable {
            let channel: String
            let from: String
            let sent: Int
            let echoed: Int
            let changed: Int
            let roundTripMicros: [UInt64]
            let medianMicros: UInt64?
            let p99Micros: UInt64?
        }

        func run() async throws {
            let state = state.state
            do {
                let info = try ChannelCLI.info(state, channel)
                let sender = from ?? info.initiator
                guard [info.initiator, info.responder].contains(sender) else {
                    throw CoordinatorError(.invalidArgument, "\(sender) is not an end of \(channel)")
                }
                let before = ChannelFiles.events(state, channel: channel, instance: sender)
                let payload = size.map { Data((0..<$0).map { _ in UInt8.random(in: 0...255) }) } ?? Data((message ?? "").utf8)
                var echoes: [ChannelFiles.Event] = []
                for index in 0..<count {
                    // One connection per request: the supervisor answers and closes it.
                    _ = try ChannelCLI.ask(
                        state, instance: sender, RelayMessage(.send, channel: channel, data: payload, echo: echo))
                    guard echo else { continue }
                    let deadline = Date().addingTimeInterval(timeout)
                    while true {
                        let events = ChannelFiles.events(state, channel: channel, instance: sender).dropFirst(before.count)
                        if let failure = events.first(where: { $0.event == "failed" }) {
                            throw CoordinatorError(.channelRefused, "\(sender) reports the channel failed: \(failure.detail)")
                        }
                        echoes = events.filter { $0.event == "echoed" }
                        if echoes.count > index { break }
                        guard Date() < deadline else {
                            throw CoordinatorError(.channelRefused, "no echo for message \(index + 1) within \(timeout) s")
                        }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
                let micros = echoes.map(\.micros).sorted()
                let output = Output(
                    channel: channel, from: sender, sent: count, echoed: echoes.count,
                    changed: echoes.filter { $0.detail.contains("CHANGED") }.count, roundTripMicros: micros,
                    medianMicros: micros.isEmpty ? nil : micros[micros.count / 2],
                    p99Micros: micros.isEmpty ? nil : micros[min(micros.count - 1, Int(Double(micros.count) * 0.99))])
                if json {
                    print(try JSONOutput.encode(output))
                } else {
                    var line = "\(sender) sealed \(count) message(s) of \(payload.count) bytes on \(channel)"
                    if echo, let median = output.medianMicros, let p99 = output.p99Micros {
                        line += "; \(output.echoed) came back (\(output.changed) changed), round trip median "
                            + "\(median) µs, p99 \(p99) µs (measured in \(sender))"
                    }
                    print(line)
                }
                if output.changed > 0 { throw ExitCode(1) }
            } catch let error as CoordinatorError {
                throw ChannelCLI.fail(error, json: json)
            }
        }
    }

    struct Close: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close a channel in order (an authenticated close record from one end).")

        @Argument(help: "The channel id.") var channel: String
        @Option(help: "The closing instance (default: the initiator).") var from: String?
        @OptionGroup var state: StateOptions

        func run() async throws {
            let state = state.state
            let info: ChannelFiles.Info
            do throws(CoordinatorError) {
                info = try ChannelCLI.info(state, channel)
                _ = try ChannelCLI.ask(state, instance: from ?? info.initiator, RelayMessage(.close, channel: channel))
            } catch {
                throw ChannelCLI.fail(error, json: false)
            }
            let summary = await ChannelCLI.wait(state, info, timeout: 30) { $0.state != "open" }
            print(ChannelCLI.render(summary))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List channels: ends, state, frames and bytes relayed each way.")

        @Flag(help: "Print the channels as JSON.") var json = false
        @OptionGroup var state: StateOptions

        func run() throws {
            let summaries = ChannelFiles.all(state.state).map { ChannelSummary(state.state, info: $0) }
            if json {
                print(try JSONOutput.encode(summaries))
            } else if summaries.isEmpty {
                print("no channels")
            } else {
                print(summaries.map(ChannelCLI.render).joined(separator: "\n"))
            }
        }
    }

    struct Trace: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what the host sees of a channel: every frame's direction, size, kind and ciphertext.",
            discussion: "The relay never has a key: this is all the host can know. Exit status: 0 shown, 1 no such channel.")

        @Argument(help: "The channel id.") var channel: String
        @Flag(help: "Print the whole ciphertext of each frame (as traced: at most 4096 bytes).") var full = false
        @Flag(help: "Print the trace as JSON.") var json = false
        @OptionGroup var state: StateOptions

        func run() throws {
            do throws(CoordinatorError) {
                _ = try ChannelCLI.info(state.state, channel)
            } catch {
                throw ChannelCLI.fail(error, json: json)
            }
            let trace = ChannelFiles.trace(state.state, channel: channel)
            if json {
                print(try JSONOutput.encode(trace))
                return
            }
            for entry in trace {
                let hex = full ? entry.hex : String(entry.hex.prefix(64)) + (entry.hex.count > 64 ? "…" : "")
                print(
                    "#\(entry.sequence) \(entry.from) → \(entry.to) \(entry.kind) \(entry.length) bytes"
                        + "\(entry.tampered ? " TAMPERED" : "") \(hex)")
            }
            print("\(trace.count) frames, \(trace.reduce(0) { $0 + $1.length }) bytes; ciphertext only")
        }
    }

    struct Tamper: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the relay flip one bit in the next frame of a channel (both ends must notice; audited).")

        @Argument(help: "The channel id.") var channel: String
        @OptionGroup var state: StateOptions

        func run() throws {
            do throws(CoordinatorError) {
                let info = try ChannelCLI.info(state.state, channel)
                print(try ChannelCLI.ask(state.state, instance: info.initiator, RelayMessage(.tamper, channel: channel)))
            } catch {
                throw ChannelCLI.fail(error, json: false)
            }
        }
    }
}

/// Audit records the command line writes itself (a refusal found before any supervisor was asked).
enum StateOptionsAudit {
    static func record(_ state: CMKStateDirectory, details: [String: String], instance: String) throws {
        try state.prepare()
        let log = try AuditLog(path: state.auditLog, keyDirectory: state.keysDirectory)
        _ = try log.append(AuditEntry(actor: "cli", kind: .instanceEvent, instance: instance, details: details))
    }
}
