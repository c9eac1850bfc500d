import AttestationPolicy
import Foundation

extension AuditReport {
    /// The report in `format`, as text (JSON and Markdown end with a newline).
    public func rendered(as format: Format) throws -> String {
        switch format {
        case .json: try json()
        case .md: markdown()
        case .html: html()
        }
    }

    /// Stable JSON: sorted keys, two-space indentation, dates as RFC 3339 UTC with milliseconds.
    public func json() throws -> String {
        do {
            return String(decoding: try CanonicalJSON.encoder(pretty: true).encode(self), as: UTF8.self) + "\n"
        } catch {
            throw AuditLogError(.encoding, "could not encode the audit report as JSON: \(error)")
        }
    }

    /// Markdown with one section per policy; text from records is escaped so it cannot inject markup.
    public func markdown() -> String {
        var out: [String] = []
        out.append("# cmk audit report")
        out.append("")
        out.append("- Window: \(Timestamp.string(window.start)) to \(Timestamp.string(window.end))")
        out.append("- Generated: \(Timestamp.string(generatedAt))")
        if let policyFilter { out.append("- Policy: \(md(policyFilter))") }
        out.append(
            "- Evaluations: \(totals.evaluations) (admitted \(totals.admitted), rejected \(totals.rejected)); "
                + "records: \(totals.records)")
        if totals.simulated > 0 {
            out.append("")
            out.append(
                "> **Simulated evidence:** \(totals.simulated) evaluation(s) used cmk's simulated platform; "
                    + "they prove nothing about real hardware.")
        }
        out.append("")
        out.append("## Log integrity")
        out.append("")
        out.append(contentsOf: integrityLines().map { "- \($0)" })
        if !recordsByKind.isEmpty {
            out.append("")
            out.append("## Records by kind")
            out.append("")
            out.append("| Kind | Records |")
            out.append("| --- | ---: |")
            for (kind, count) in recordsByKind.sorted(by: { $0.key < $1.key }) {
                out.append("| \(md(kind)) | \(count) |")
            }
        }
        for policy in policies {
            out.append("")
            out.append("## Policy \(md(policy.id))")
            out.append("")
            out.append("| Evaluations | Admitted | Rejected | Simulated | Versions | Evidence |")
            out.append("| ---: | ---: | ---: | ---: | --- | --- |")
            out.append(
                "| \(policy.evaluations) | \(policy.admitted) | \(policy.rejected) | \(policy.simulated) | "
                    + "\(policy.versions.map(String.init).joined(separator: ", ")) | "
                    + "\(md(policy.evidenceTypes.joined(separator: ", "))) |")
            if !policy.failuresByRule.isEmpty {
                out.append("")
                out.append("### Failures by rule")
                out.append("")
                out.append("| Rule | Failures | Last expected | Last actual | Hint |")
                out.append("| --- | ---: | --- | --- | --- |")
                for rule in policy.failuresByRule {
                    out.append(
                        "| \(md(rule.rule)) | \(rule.count) | \(md(rule.lastExpected)) | \(md(rule.lastActual)) | "
                            + "\(md(rule.lastHint ?? "")) |")
                }
            }
            if !policy.warningsByRule.isEmpty {
                out.append("")
                out.append("### Warnings by rule")
                out.append("")
                out.append("| Rule | Warnings | Last expected | Last actual |")
                out.append("| --- | ---: | --- | --- |")
                for rule in policy.warningsByRule {
                    out.append(
                        "| \(md(rule.rule)) | \(rule.count) | \(md(rule.lastExpected)) | \(md(rule.lastActual)) |")
                }
            }
            if !policy.tcbAndMeasurements.isEmpty {
                out.append("")
                out.append("### TCB versions and measurements: seen vs required")
                out.append("")
                out.append("| Rule | Required | Seen | Status | First seen | Last seen | Count |")
                out.append("| --- | --- | --- | --- | --- | --- | ---: |")
                for item in policy.tcbAndMeasurements {
                    out.append(
                        "| \(md(item.rule)) | \(md(item.expected)) | \(md(item.actual)) | \(item.status.rawValue) | "
                            + "\(Timestamp.string(item.firstSeen)) | \(Timestamp.string(item.lastSeen)) | "
                            + "\(item.count) |")
                }
            }
            appendExpiries("Expiring within \(Self.days(expiryHorizonDays)) days", policy.expiringSoon, to: &out)
            appendExpiries("Waivers", policy.waivers, to: &out)
            if !policy.findings.isEmpty {
                out.append("")
                out.append("### Posture findings")
                out.append("")
                out.append("| Severity | Rule | Finding |")
                out.append("| --- | --- | --- |")
                for finding in policy.findings {
                    out.append("| \(finding.severity.rawValue) | \(md(finding.key)) | \(md(finding.message)) |")
                }
            }
            if !policy.simulatedEvaluations.isEmpty {
                out.append("")
                out.append("### Simulated evaluations")
                out.append("")
                out.append("| Record | Time | Instance | Verdict |")
                out.append("| ---: | --- | --- | --- |")
                for item in policy.simulatedEvaluations {
                    out.append(
                        "| \(item.sequence) | \(Timestamp.string(item.time)) | \(md(item.instance ?? "")) | "
                            + "\(item.verdict.rawValue) |")
                }
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    private func appendExpiries(_ title: String, _ items: [ExpiryItem], to out: inout [String]) {
        guard !items.isEmpty else { return }
        out.append("")
        out.append("### \(title)")
        out.append("")
        out.append("| Kind | Name | Not after | Days left |")
        out.append("| --- | --- | --- | ---: |")
        for item in items {
            out.append(
                "| \(md(item.kind)) | \(md(item.name)) | \(Timestamp.string(item.notAfter)) | "
                    + "\(item.expired ? "expired" : String(item.daysLeft)) |")
        }
    }

    /// The integrity proof as sentences, shared by the Markdown and HTML renderings.
    func integrityLines() -> [String] {
        var lines: [String] = []
        if integrity.intact {
            lines.append("Intact: \(integrity.recordCount) record(s) verified")
        } else {
            lines.append(
                "BROKEN: \(integrity.firstProblem ?? "unknown problem")"
                    + (integrity.problemCount > 1 ? " (\(integrity.problemCount) problems in all)" : ""))
        }
        lines.append("Head: record \(integrity.headSequence), hash \(integrity.headHash)")
        if let checkpoint = integrity.lastCheckpoint {
            lines.append(
                "Last checkpoint: \(checkpoint.id.map { "#\($0) " } ?? "")at record \(checkpoint.sequence), "
                    + "\(Timestamp.string(checkpoint.time)); signature \(checkpoint.signature); "
                    + (checkpoint.matchesChain ? "matches the chain" : "does NOT match the chain"))
            lines.append("Checkpoint key fingerprint (SHA-256 of the public key): \(checkpoint.keyFingerprint)")
        } else {
            lines.append("No checkpoint yet")
        }
        if integrity.uncheckpointedRecords > 0 {
            lines.append("Not yet checkpointed: \(integrity.uncheckpointedRecords) record(s)")
        }
        if !integrity.missingTriggers.isEmpty {
            lines.append("Append-only triggers missing: \(integrity.missingTriggers.joined(separator: ", "))")
        }
        return lines
    }

    static func days(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }

    /// Escapes text for a Markdown table cell: HTML-significant characters as entities, pipes and backticks
    /// escaped, line breaks as spaces.
    private func md(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "|": out += "\\|"
            case "`": out += "\\`"
            case "*": out += "\\*"
            case "_": out += "\\_"
            case "[": out += "\\["
            case "]": out += "\\]"
            case "\n", "\r": out += " "
            default: out.append(character)
            }
        }
        return out
    }
}
