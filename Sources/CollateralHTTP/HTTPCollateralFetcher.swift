public import Attestation
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// Kept out of the Attestation module so that only what really fetches links FoundationNetworking (libcurl and
// its dependencies): verification never touches the network, and `cmk` starts faster without them.

/// Fetches over HTTPS with Foundation's URLSession.
public struct HTTPCollateralFetcher: CollateralFetcher {
    public init() {}

    public func fetch(_ url: String) async throws -> [UInt8] {
        guard let address = URL(string: url) else {
            throw AttestationError(.missingCollateral, "'\(url)' is not a URL")
        }
        let (data, response) = try await URLSession.shared.data(from: address)
        if let http = response as? HTTPURLResponse, http.statusCode != 200 {
            throw AttestationError(.missingCollateral, "\(url) answered HTTP \(http.statusCode)")
        }
        return [UInt8](data)
    }
}
