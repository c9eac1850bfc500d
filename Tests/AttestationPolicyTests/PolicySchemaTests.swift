import AttestationPolicy
import CMKTesting
import Foundation
import Testing

/// The JSON Schema in docs/ is checked with an independent validator (Python jsonschema) against the shipped
/// policies and the same bad files cmk's loader rejects, so the schema and the loader cannot drift apart silently.
@Suite("Policy JSON Schema")
struct PolicySchemaTests {
    /// Validates each YAML text; returns one line per input: "valid" or "invalid: <first error>".
    static func validate(_ documents: [String]) throws -> [String] {
        let script = """
            import json, sys, yaml, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            for text in json.load(sys.stdin):
                try:
                    document = yaml.safe_load(text)
                except yaml.YAMLError as error:
                    print("invalid: yaml"); continue
                # YAML dates become datetime.date; the policy language treats them as text.
                document = json.loads(json.dumps(document, default=str))
                errors = sorted(validator.iter_errors(document), key=lambda e: e.path)
                print("valid" if not errors else "invalid: " + errors[0].message[:200])
            """
        let schema = SharedVectors.repositoryRoot.appendingPathComponent("docs/policy.schema.json").path
        let output = try ExternalTool.run(
            ExternalTool.python, ["-c", script, schema], input: try JSONEncoder().encode(documents))
        #expect(output.status == 0, "\(output.standardError)")
        return output.standardOutput.split(separator: "\n").map(String.init)
    }

    @Test("every shipped policy is valid under the schema")
    func shippedPoliciesAreValid() throws {
        let folder = SharedVectors.repositoryRoot.appendingPathComponent("policies")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }.sorted()
        let texts = try files.map { try String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8) }
        let results = try Self.validate(texts)
        #expect(results.count == files.count)
        for (file, result) in zip(files, results) { #expect(result == "valid", "\(file): \(result)") }
    }

    @Test("the schema rejects the bad policies the loader rejects (where a schema can say it)")
    func schemaRejectsBadPolicies() throws {
        let expressible = PolicyLoaderTests.bad.filter {
            // A schema cannot read files, expand variables or see duplicate keys after parsing.
            ![PolicyError.Code.referenceArtifact, .duplicateKey].contains($0.code)
        }
        let results = try Self.validate(expressible.map(\.yaml))
        for (bad, result) in zip(expressible, results) { #expect(result.hasPrefix("invalid"), "\(bad.name) should be invalid: \(result)") }
        #expect(results.count == expressible.count)
    }
}
