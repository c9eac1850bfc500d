import Coordinator
import Foundation

/// The pool's endpoint: wires the controller to the coordinator's forwarder (filled in on merge with `update`).
enum PoolEndpoint {
    static func open(spec: PoolSpec, state: CMKStateDirectory) async throws -> any PoolTraffic {
        throw CoordinatorError(.launch, "the endpoint forwarder is not available in this build")
    }

    static func backendAddress(of member: String, state: CMKStateDirectory) async -> String? { nil }
}
