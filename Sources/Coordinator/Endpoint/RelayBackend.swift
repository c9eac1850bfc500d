public import Foundation
import Synchronization

/// An instance's workload as an endpoint backend: requests go over the instance supervisor's relay socket
/// (`RelayMessage.workload`), which passes them to the agent on the control port (`.workloadRequest`, 0x40).
/// Keeps a few idle connections so concurrent clients do not queue behind each other.
public final class RelayBackend: EndpointBackend, @unchecked Sendable {
    public let name: String
    let path: String
    private let idle = Mutex<[RelayLink]>([])

    public init(state: CMKStateDirectory, instance: String) {
        name = instance
        path = ChannelFiles.relaySocket(state, instance: instance)
    }

    public func call(_ request: [UInt8], timeout: Duration) throws(CoordinatorError) -> [UInt8] {
        let link: RelayLink
        if let reused = idle.withLock({ $0.popLast() }) { link = reused } else { link = try RelayLink.connect(path: path) }
        let answer: RelayMessage
        do throws(CoordinatorError) {
            answer = try link.request(RelayMessage(.workload, data: Data(request)), timeout: timeout)
        } catch {
            // The supervisor went away or restarted: its other idle connections are stale too.
            link.close()
            close()
            throw error
        }
        guard answer.op == .accepted, let data = answer.data else {
            link.close()
            throw CoordinatorError(.launch, "\(name) refused the request: \(answer.reason ?? "no reason")")
        }
        idle.withLock { links in
            if links.count < 8 { links.append(link) } else { link.close() }
        }
        return Array(data)
    }

    public func close() {
        let links = idle.withLock { links in
            defer { links.removeAll() }
            return links
        }
        for link in links { link.close() }
    }
}
