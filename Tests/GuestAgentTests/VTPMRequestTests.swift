@testable import GuestAgent
import GuestProtocol
import Testing

/// The agent's answers to vTPM requests when there is nothing to use: each is a `failure` with a reason, never a crash
/// and never a quote (the swtpm-backed path is covered by GuestTPMCommandTests and, under QEMU, VTPMLaunchTests).
@Suite("vTPM requests without a TPM")
struct VTPMRequestTests {
    func agent() -> GuestAgent {
        let agent = GuestAgent(instance: "child-1", provider: UnusedProvider(), log: .silent)
        agent.tpmDevicePaths = ["/nonexistent/cmk-test-tpmrm0"]
        return agent
    }

    @Test("a key request without a TPM device fails naming --vtpm; activation and quotes before keys are refused")
    func refusesWithoutTPM() {
        let agent = agent()
        guard case .failure(let reason) = agent.tpmMessage(.tpmKeyRequest) else {
            Issue.record("a key request without a TPM did not fail")
            return
        }
        #expect(reason.contains("--vtpm"), "\(reason)")
        for request in [
            GuestMessage.tpmActivateRequest(credentialBlob: [0, 1, 2], encryptedSecret: [0, 1, 3]),
            .tpmQuoteRequest(nonce: Array(repeating: 1, count: 32)),
        ] {
            guard case .failure(let reason) = agent.tpmMessage(request) else {
                Issue.record("\(request.kind) before the keys was answered")
                continue
            }
            #expect(reason.contains("tpmKeyRequest first"), "\(reason)")
        }
    }
}

/// An evidence provider the vTPM requests never reach.
struct UnusedProvider: EvidenceProvider {
    var name: String { "unused" }
    func evidence(reportData: [UInt8]) throws(GuestAgentError) -> Evidence {
        throw GuestAgentError(.unavailable, "not used")
    }
}
