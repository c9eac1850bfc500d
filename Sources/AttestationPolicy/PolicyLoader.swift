public import Foundation
import Attestation
import BinaryFormat
import Crypto
import SEVSNP
import TDX

/// Reads policy files strictly: unknown keys, wrong types, impossible values and a TCB for the wrong product are
/// rejected with the line and key named; reference artifacts are measured with cmk's calculators and the derived
/// digests become part of the policy (and of its content digest).
public struct PolicyLoader: Sendable {
    /// Environment used to expand `${NAME}` in reference artifact paths.
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// Loads the policy in `path`.
    public func load(path: String) throws(PolicyError) -> Policy {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PolicyError(.unreadable, "cannot read the policy: \(error.localizedDescription)", file: path)
        }
        do {
            return try load(text: text, baseDirectory: URL(fileURLWithPath: path).deletingLastPathComponent())
        } catch {
            throw error.in(file: path)
        }
    }

    /// Loads a policy from YAML text; relative artifact paths resolve against `baseDirectory`.
    public func load(text: String, baseDirectory: URL? = nil) throws(PolicyError) -> Policy {
        let root = try PolicyYAML.root(text)
        let top = try root.mapping(allowed: [
            "id", "version", "description", "evidence", "trust", "freshness", "sev-snp", "tdx", "tpm", "handover", "update",
        ])
        let id = try top.require("id").name(pattern: "policy id")
        let version = try top.require("version").integer(in: 1...1_000_000)
        let description = try top["description"]?.string() ?? ""
        let evidenceNode = try top.require("evidence")
        guard let evidence = Policy.EvidenceKind(rawValue: try evidenceNode.string()) else {
            throw evidenceNode.error(.invalidValue, "evidence must be sev-snp or tdx")
        }
        let trust = try readTrust(top.require("trust"), evidence: evidence)
        let freshness = try readFreshness(top["freshness"])

        var snp: Policy.SNPRules?
        var tdx: Policy.TDXRules?
        switch evidence {
        case .sevSNP:
            if let other = top["tdx"] { throw other.error(.unknownKey, "a sev-snp policy has no tdx section") }
            snp = try readSNP(top.require("sev-snp"), base: baseDirectory)
        case .tdx:
            if let other = top["sev-snp"] { throw other.error(.unknownKey, "a tdx policy has no sev-snp section") }
            tdx = try readTDX(top.require("tdx"), base: baseDirectory)
        }
        let handover = try readHandover(top["handover"])
        let tpm = try top["tpm"].map { node throws(PolicyError) in try readTPM(node) }
        return Policy(
            id: id, version: version, description: description, evidence: evidence, trust: trust, freshness: freshness,
            snp: snp, tdx: tdx, tpm: tpm, handover: handover)
    }

    // MARK: Sections.

    func readTrust(_ node: PolicyNode, evidence: Policy.EvidenceKind) throws(PolicyError) -> Policy.Trust {
        let map = try node.mapping(allowed: ["roots", "crl"])
        let rootsNode = try map.require("roots")
        let allowed = Policy.hardwareRoots[evidence, default: []].union(Policy.simulatedRoots)
        var roots: [String] = []
        for item in try rootsNode.list() {
            let name = try item.string()
            guard allowed.contains(name) else {
                throw item.error(
                    .invalidValue,
                    "'\(name)' is not a root for \(evidence.rawValue) evidence; known: \(allowed.sorted().joined(separator: ", "))")
            }
            if (evidence == .sevSNP && name == "simulated-intel") || (evidence == .tdx && name == "simulated-amd") {
                throw item.error(.invalidValue, "'\(name)' does not sign \(evidence.rawValue) evidence")
            }
            roots.append(name)
        }
        guard !roots.isEmpty else { throw rootsNode.error(.invalidValue, "name at least one trusted root") }
        let crl = try map["crl"].map { node throws(PolicyError) in
            RevocationMode(rawValue: try node.choice(RevocationMode.allCases.map(\.rawValue)))!
        } ?? .hard
        return Policy.Trust(roots: roots, crl: crl)
    }

    func readFreshness(_ node: PolicyNode?) throws(PolicyError) -> Policy.Freshness {
        guard let node else { return Policy.Freshness(maxEvidenceAge: nil, reportData: .none) }
        let map = try node.mapping(allowed: ["max-evidence-age", "report-data"])
        let age = try map["max-evidence-age"]?.duration()
        let binding = try map["report-data"].map { node throws(PolicyError) in
            Policy.ReportDataBinding(rawValue: try node.choice(Policy.ReportDataBinding.allCases.map(\.rawValue)))!
        } ?? .none
        return Policy.Freshness(maxEvidenceAge: age, reportData: binding)
    }

    func readHandover(_ node: PolicyNode?) throws(PolicyError) -> Handover {
        guard let node else { return Handover() }
        let map = try node.mapping(allowed: ["secrets", "volumes", "channel-peers", "channel-peer-measurements"])
        func names(_ key: String, _ what: String) throws(PolicyError) -> [String] {
            guard let list = map[key] else { return [] }
            var result: [String] = []
            for item in try list.list() { result.append(try item.name(pattern: what)) }
            return result
        }
        let peers = try names("channel-peers", "channel peer")
        // The launch measurements (SEV-SNP MEASUREMENT, TDX MRTD) a peer's child must show: the coordinator writes
        // them into the instance manifest (bound by HOST_DATA / MRCONFIGID), and the child refuses another value.
        var pins: [String: [HexBytes]]?
        if let node = map["channel-peer-measurements"] {
            var result: [String: [HexBytes]] = [:]
            for (peer, list) in try node.anyMapping() {
                guard peers.contains(peer) else {
                    throw list.error(
                        .invalidValue, "'\(peer)' is not listed in handover.channel-peers, so it cannot be pinned")
                }
                let digests = try readDigests(list, length: 48)
                guard !digests.isEmpty else { throw list.error(.invalidValue, "list at least one measurement") }
                result[peer] = digests
            }
            pins = result.isEmpty ? nil : result
        }
        return Handover(
            secrets: try names("secrets", "secret reference"), volumes: try names("volumes", "volume name"),
            channelPeers: peers, channelPeerMeasurements: pins)
    }

    func readBinding(_ node: PolicyNode, length: Int) throws(PolicyError) -> Policy.Binding {
        if try node.string() == "manifest" { return .manifest }
        return .value(HexBytes(try node.hex(length: length)))
    }

    func readDigests(_ node: PolicyNode, length: Int) throws(PolicyError) -> [HexBytes] {
        var result: [HexBytes] = []
        for item in try node.list() { result.append(HexBytes(try item.hex(length: length))) }
        return result
    }

    // MARK: SEV-SNP.

    func readSNP(_ node: PolicyNode, base: URL?) throws(PolicyError) -> Policy.SNPRules {
        let map = try node.mapping(allowed: [
            "measurement", "tcb", "guest-policy", "platform-info", "vmpl", "host-data", "signers", "chip-ids",
            "minimum-guest-svn",
        ])
        var rules = Policy.SNPRules(
            measurement: nil, tcb: [], debug: .forbidden, migrationAgent: .forbidden, smt: nil, minimumABI: nil,
            platformRequire: [], platformForbid: [], vmpl: nil, hostData: nil, signers: [], chipIDs: [],
            minimumGuestSVN: nil)
        if let measurement = map["measurement"] {
            rules.measurement = try readMeasurement(measurement, length: 48, base: base, measure: measureSNP)
        }
        if let tcb = map["tcb"] {
            let products = try tcb.mapping(allowed: AMDProduct.allCases.map { $0.rawValue.lowercased() })
            for product in AMDProduct.allCases {
                guard let entry = products[product.rawValue.lowercased()] else { continue }
                rules.tcb.append(try readProductTCB(entry, product: product))
            }
        }
        if let guest = map["guest-policy"] {
            let g = try guest.mapping(allowed: ["debug", "migration-agent", "smt", "minimum-abi"])
            if let debug = g["debug"] { rules.debug = try permission(debug) }
            if let agent = g["migration-agent"] { rules.migrationAgent = try permission(agent) }
            if let smt = g["smt"] { rules.smt = try permission(smt) }
            if let abi = g["minimum-abi"] {
                let text = try abi.string()
                let parts = text.split(separator: ".").compactMap { UInt8($0) }
                guard parts.count == 2 else { throw abi.error(.invalidValue, "'\(text)' is not MAJOR.MINOR, e.g. 1.51") }
                rules.minimumABI = text
            }
        }
        if let platform = map["platform-info"] {
            let p = try platform.mapping(allowed: ["require", "forbid"])
            let known = [
                "SMT_EN", "TSME_EN", "ECC_EN", "RAPL_DIS", "CIPHERTEXT_HIDING_DRAM_EN", "ALIAS_CHECK_COMPLETE",
                "IOMMU_WRITE_SAFE", "SEV_TIO_EN",
            ]
            func flags(_ key: String) throws(PolicyError) -> [String] {
                guard let list = p[key] else { return [] }
                var result: [String] = []
                for item in try list.list() { result.append(try item.choice(known)) }
                return result
            }
            rules.platformRequire = try flags("require")
            rules.platformForbid = try flags("forbid")
            if let both = Set(rules.platformRequire).intersection(rules.platformForbid).first {
                throw platform.error(.invalidValue, "\(both) is both required and forbidden")
            }
        }
        rules.vmpl = try map["vmpl"]?.integer(in: 0...3)
        if let hostData = map["host-data"] { rules.hostData = try readBinding(hostData, length: 32) }
        if let signers = map["signers"] {
            for item in try signers.list() { rules.signers.append(try item.choice(["VCEK", "VLEK"])) }
        }
        if let chips = map["chip-ids"] { rules.chipIDs = try readDigests(chips, length: 64) }
        rules.minimumGuestSVN = try map["minimum-guest-svn"]?.integer(in: 0...Int(UInt32.max))
        return rules
    }

    func permission(_ node: PolicyNode) throws(PolicyError) -> Policy.Permission {
        Policy.Permission(rawValue: try node.choice(["allowed", "forbidden"]))!
    }

    func readProductTCB(_ node: PolicyNode, product: AMDProduct) throws(PolicyError) -> Policy.ProductTCB {
        let map = try node.mapping(allowed: ["reported", "committed", "launch"])
        func components(_ key: String) throws(PolicyError) -> SNPTCBVersion.Components? {
            guard let entry = map[key] else { return nil }
            let hasFMC = product.tcbLayout == .turin
            let names = (hasFMC ? ["fmc"] : []) + ["bootloader", "tee", "snp", "microcode"]
            let c: PolicyMapping
            do {
                c = try entry.mapping(allowed: names)
            } catch where error.code == .unknownKey && !hasFMC && error.keyPath?.hasSuffix(".fmc") == true {
                throw PolicyError(
                    .wrongProduct,
                    "\(product.rawValue) TCBs have no FMC component (only Turin's do): bootloader, tee, snp, microcode",
                    line: error.line, keyPath: error.keyPath)
            }
            func svn(_ name: String) throws(PolicyError) -> UInt8 { UInt8(try c.require(name).integer(in: 0...255)) }
            return SNPTCBVersion.Components(
                fmc: hasFMC ? try svn("fmc") : nil, bootloader: try svn("bootloader"), tee: try svn("tee"),
                snp: try svn("snp"), microcode: try svn("microcode"))
        }
        let tcb = Policy.ProductTCB(
            product: product, reported: try components("reported"), committed: try components("committed"),
            launch: try components("launch"))
        if tcb.reported == nil && tcb.committed == nil && tcb.launch == nil {
            throw node.error(.missingKey, "give at least one of reported, committed, launch")
        }
        return tcb
    }

    // MARK: Measurements and reference artifacts.

    typealias Measure = (PolicyMapping, PolicyNode, URL?) throws(PolicyError) -> Policy.DerivedReference

    func readMeasurement(_ node: PolicyNode, length: Int, base: URL?, measure: Measure) throws(PolicyError) -> Policy.MeasurementRule {
        let map = try node.mapping(allowed: ["allow", "reference"])
        var rule = Policy.MeasurementRule(allow: [], references: [])
        if let allow = map["allow"] { rule.allow = try readDigests(allow, length: length) }
        if let references = map["reference"] {
            for item in try references.list() {
                let fields = try item.mapping(allowed: [
                    "firmware", "kernel", "initrd", "cmdline", "vcpus", "vcpu-type", "guest-features", "kernel-hashes",
                ])
                rule.references.append(try measure(fields, item, base))
            }
        }
        if rule.acceptable.isEmpty {
            throw node.error(.invalidValue, "give at least one digest under allow or one reference")
        }
        return rule
    }

    /// Reads a reference artifact, expanding `${NAME}` and resolving relative paths against the policy's folder.
    func artifact(_ node: PolicyNode, base: URL?) throws(PolicyError) -> (path: String, bytes: [UInt8]) {
        var path = try node.string()
        while let start = path.range(of: "${"), let end = path.range(of: "}", range: start.upperBound..<path.endIndex) {
            let name = String(path[start.upperBound..<end.lowerBound])
            guard let value = environment[name] else {
                throw node.error(.referenceArtifact, "the path uses ${\(name)}, which is not set in the environment")
            }
            path.replaceSubrange(start.lowerBound..<end.upperBound, with: value)
        }
        let url = path.hasPrefix("/") || base == nil ? URL(fileURLWithPath: path) : base!.appendingPathComponent(path)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw node.error(.referenceArtifact, "cannot read the reference artifact \(url.path)")
        }
        return (url.standardizedFileURL.path, Array(data))
    }

    func measureSNP(_ fields: PolicyMapping, _ node: PolicyNode, _ base: URL?) throws(PolicyError) -> Policy.DerivedReference {
        var inputs: [String: String] = [:]
        let firmwareNode = try fields.require("firmware")
        let firmware = try artifact(firmwareNode, base: base)
        inputs["firmware"] = "\(firmware.path) sha256:\(Hex.encode(SHA256.hash(data: firmware.bytes)))"
        var kernel: [UInt8]?
        var initrd: [UInt8]?
        if let node = fields["kernel"] {
            let file = try artifact(node, base: base)
            kernel = file.bytes
            inputs["kernel"] = "\(file.path) sha256:\(Hex.encode(SHA256.hash(data: file.bytes)))"
        }
        if let node = fields["initrd"] {
            let file = try artifact(node, base: base)
            initrd = file.bytes
            inputs["initrd"] = "\(file.path) sha256:\(Hex.encode(SHA256.hash(data: file.bytes)))"
        }
        let cmdline = try fields["cmdline"]?.string()
        if let cmdline { inputs["cmdline"] = cmdline }
        if kernel == nil && (initrd != nil || cmdline != nil) {
            throw node.error(.invalidValue, "initrd and cmdline are measured with a kernel: give kernel too")
        }
        let vcpus = try fields.require("vcpus").integer(in: 1...512)
        inputs["vcpus"] = String(vcpus)
        let typeNode = try fields.require("vcpu-type")
        let typeName = try typeNode.string()
        guard let signature = SNPVCPUType.signature(named: typeName) else {
            throw typeNode.error(
                .invalidValue, "unknown vCPU type '\(typeName)'; known: \(SNPVCPUType.signatures.keys.sorted().joined(separator: ", "))")
        }
        inputs["vcpu-type"] = typeName
        let features = try fields["guest-features"]?.integer(in: 0...Int(Int64.max)) ?? 1
        inputs["guest-features"] = "0x" + String(features, radix: 16)
        let placement = try fields["kernel-hashes"].map { node throws(PolicyError) in
            SNPLaunchMeasurement.KernelHashesPlacement(rawValue: try node.choice(["firmware", "assumed-amdsev"]))!
        } ?? .firmware
        inputs["kernel-hashes"] = placement.rawValue
        do {
            let measurement = try SNPLaunchMeasurement(.init(
                firmware: firmware.bytes, kernel: kernel, initrd: initrd, cmdline: cmdline, vcpus: vcpus,
                vcpuSignature: signature, guestFeatures: UInt64(features), kernelHashesPlacement: placement))
            if let assumption = measurement.assumption { inputs["assumption"] = assumption }
            return Policy.DerivedReference(inputs: inputs, digest: measurement.digest)
        } catch {
            throw node.error(.referenceArtifact, "cannot compute the launch measurement: \(error.reason) [\(error.code)]")
        }
    }

    func measureTDX(_ fields: PolicyMapping, _ node: PolicyNode, _ base: URL?) throws(PolicyError) -> Policy.DerivedReference {
        for key in ["kernel", "initrd", "cmdline", "vcpus", "vcpu-type", "guest-features", "kernel-hashes"] where fields[key] != nil {
            throw fields[key]!.error(.unknownKey, "MRTD measures the firmware only; \(key) is measured into RTMRs")
        }
        let firmware = try artifact(try fields.require("firmware"), base: base)
        do {
            let mrtd = try TDXMRTD(firmware: firmware.bytes)
            return Policy.DerivedReference(
                inputs: ["firmware": "\(firmware.path) sha256:\(Hex.encode(SHA256.hash(data: firmware.bytes)))"],
                digest: mrtd.digest)
        } catch {
            throw node.error(.referenceArtifact, "cannot compute MRTD: \(error.reason)")
        }
    }

    // MARK: TDX.

    func readTDX(_ node: PolicyNode, base: URL?) throws(PolicyError) -> Policy.TDXRules {
        let map = try node.mapping(allowed: ["mrtd", "rtmr", "mr-config-id", "mr-seam", "debug", "tcb", "event-log"])
        var rules = Policy.TDXRules(
            mrTD: nil, rtmrs: [:], mrConfigID: nil, mrSeam: [], debug: .forbidden, acceptedStatuses: ["UpToDate"],
            waivers: [], eventLog: .ifPresent)
        if let log = map["event-log"] {
            rules.eventLog = try log.choice(["required", "if-present"]) == "required" ? .required : .ifPresent
        }
        if let mrtd = map["mrtd"] { rules.mrTD = try readMeasurement(mrtd, length: 48, base: base, measure: measureTDX) }
        if let rtmr = map["rtmr"] {
            for (key, value) in try rtmr.anyMapping() {
                guard let index = Int(key), (0...3).contains(index) else {
                    throw value.error(.unknownKey, "RTMR indexes are 0, 1, 2 and 3")
                }
                rules.rtmrs[index] = try readDigests(value, length: 48)
            }
        }
        if let config = map["mr-config-id"] { rules.mrConfigID = try readBinding(config, length: 48) }
        if let seam = map["mr-seam"] { rules.mrSeam = try readDigests(seam, length: 48) }
        if let debug = map["debug"] { rules.debug = try permission(debug) }
        if let tcb = map["tcb"] {
            let t = try tcb.mapping(allowed: ["accept", "waivers"])
            let acceptable = [
                "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                "OutOfDate", "OutOfDateConfigurationNeeded", "TDRelaunchAdvised", "TDRelaunchAdvisedConfigurationNeeded",
            ]
            if let accept = t["accept"] {
                rules.acceptedStatuses = []
                for item in try accept.list() {
                    let status = try item.string()
                    if status == "Revoked" || status.hasPrefix("TCB_") || status.hasSuffix("_MISMATCH") {
                        throw item.error(.unsafe, "\(status) can never be accepted: the platform cannot be trusted")
                    }
                    rules.acceptedStatuses.append(try item.choice(acceptable))
                }
            }
            if let waivers = t["waivers"] {
                for item in try waivers.list() {
                    let w = try item.mapping(allowed: ["status", "advisories", "expires", "reason"])
                    let statusNode = try w.require("status")
                    let status = try statusNode.choice(acceptable)
                    guard let expires = w["expires"] else {
                        throw item.error(.unsafe, "every waiver needs an expires date: open-ended waivers reach production unnoticed")
                    }
                    var advisories: [String] = []
                    if let list = w["advisories"] {
                        for advisory in try list.list() {
                            let name = try advisory.string()
                            guard name.hasPrefix("INTEL-SA-") || name.hasPrefix("INTEL-DOC-") else {
                                throw advisory.error(.invalidValue, "'\(name)' is not an Intel advisory ID (INTEL-SA-nnnnn)")
                            }
                            advisories.append(name)
                        }
                    }
                    rules.waivers.append(Policy.Waiver(
                        status: status, advisories: advisories, expires: try expires.date(),
                        reason: try w.require("reason").string()))
                }
            }
        }
        return rules
    }
}
