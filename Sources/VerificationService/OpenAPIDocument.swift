import Foundation

/// The OpenAPI 3.1 document of the service (docs/openapi.yaml is a link to the same file), served at /openapi.yaml.
enum OpenAPIDocument {
    static let text: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else { return "openapi: 3.1.0\ninfo: {title: cmk serve, version: unknown}\npaths: {}\n" }
        return text
    }()
}
