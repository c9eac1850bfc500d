public import Foundation
import GuestImage

/// How many more members of a pool the host's partitions hold now: trial allocations of what one member asks for, on
/// a copy of the allocator the instance store builds from the partitions live instances hold — the allocator
/// `cmk launch` reserves with, so the pool asks the same authority before it launches (docs/pools.md, "A full host").
public struct PoolHostCapacity: Sendable {
    public let state: CMKStateDirectory
    /// What one member asks for: its vCPUs, its memory, whether it may share cores.
    public let request: PartitionRequest
    public let reserve: HostReserve
    public let inventory: @Sendable () throws -> HostInventory

    public init(
        state: CMKStateDirectory, request: PartitionRequest, reserve: HostReserve = .default,
        inventory: @escaping @Sendable () throws -> HostInventory = { try HostInventory.read() }
    ) {
        self.state = state
        self.request = request
        self.reserve = reserve
        self.inventory = inventory
    }

    /// What one member of `spec` asks for: its `--vcpus` and `--memory`, else its profile's (from `profiles`, else the
    /// guest-kernels/ folder `cmk launch` finds); nil when the profile cannot be read (then only the launches' own
    /// reservations decide).
    public static func request(for spec: PoolSpec, profiles: URL? = nil) -> PartitionRequest? {
        let profiles = profiles ?? GuestProfileCatalog.locate()
        var vcpus = spec.vcpus
        var memory = spec.memoryMiB
        if vcpus == nil || memory == nil {
            guard let profiles, let profile = try? GuestProfileCatalog(directory: profiles).profile(named: spec.profile)
            else { return nil }
            vcpus = vcpus ?? profile.vcpus
            memory = memory ?? profile.memoryMiB
        }
        guard let vcpus, let memory else { return nil }
        return PartitionRequest(cpuCount: vcpus, memoryMiB: memory, allowSharedCores: spec.allowSharedCores)
    }

    /// The answer for one scale-out.
    public struct Room: Sendable, Hashable {
        /// Members wanted.
        public var wanted: Int
        /// How many of them the host's partitions hold now (0 ... wanted).
        public var fits: Int
        /// The allocator's refusal (what was asked, what is free) when fewer than `wanted` fit.
        public var refusal: String?

        public init(wanted: Int, fits: Int, refusal: String?) {
            self.wanted = wanted
            self.fits = fits
            self.refusal = refusal
        }
    }

    /// How many of `wanted` more members fit now. `pending` names the pool's members still starting: those whose
    /// launch has not reserved yet are counted as if they had. Nil when the host or the store cannot be read (the
    /// launch then decides alone).
    public func room(wanted: Int, pending: [String] = []) -> Room? {
        guard wanted > 0 else { return Room(wanted: wanted, fits: 0, refusal: nil) }
        var allocator: PartitionAllocator
        do {
            let host = try inventory()
            let options = InstanceStore.Options(reserve: reserve)
            if let store = try InstanceStore.openForReading(state, options: options) {
                defer { store.close() }
                allocator = try store.allocator(for: host)
                for name in pending {
                    if let record = try store.instance(name), record.state != .stopped, record.holdsPartition { continue }
                    _ = try? allocator.allocate(request, for: "pending:\(name)")
                }
            } else {
                allocator = try PartitionAllocator(inventory: host, reserve: reserve)
                for name in pending { _ = try? allocator.allocate(request, for: "pending:\(name)") }
            }
        } catch {
            return nil
        }
        for index in 0..<wanted {
            do {
                _ = try allocator.allocate(request, for: "trial:\(index)")
            } catch {
                return Room(wanted: wanted, fits: index, refusal: error.reason)
            }
        }
        return Room(wanted: wanted, fits: wanted, refusal: nil)
    }
}
