import Testing
@testable import MockShift

/// The OpenAPI document (`GET /openapi.json`) against the route table: they must describe the same API.
@Suite struct OpenAPITests {
    /// `:id` → `{id}`, as OpenAPI writes path parameters.
    static func openAPIPath(_ pattern: String) -> String {
        pattern.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.first == ":" ? "{\(segment.dropFirst())}" : String(segment)
        }.joined(separator: "/")
    }

    static let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    @Test func documentListsExactlyTheRoutesOfTheRouter() throws {
        let routes = Set(Router.vectorShiftRoutes().table.map { "\($0.method.rawValue) \(Self.openAPIPath($0.pattern))" })
        var documented = Set<String>()
        for (path, item) in try #require(OpenAPI.document["paths"]?.objectValue) {
            for (method, _) in try #require(item.objectValue) where Self.methods.contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        #expect(routes.subtracting(documented).isEmpty, "routes missing from the document: \(routes.subtracting(documented).sorted())")
        #expect(documented.subtracting(routes).isEmpty, "documented but not routed: \(documented.subtracting(routes).sorted())")
    }

    @Test func everyPathParameterIsDeclaredAndEveryReferenceResolves() throws {
        let document = OpenAPI.document
        for (path, item) in try #require(document["paths"]?.objectValue) {
            let inPath = Set(path.split(separator: "/").filter { $0.first == "{" }.map { String($0.dropFirst().dropLast()) })
            for (method, operation) in try #require(item.objectValue) {
                let declared = Set((operation["parameters"]?.arrayValue ?? []).filter { $0["in"] == "path" }
                    .compactMap { $0["name"]?.stringValue })
                #expect(declared == inPath, "\(method) \(path): path parameters \(declared.sorted()), expected \(inPath.sorted())")
                let responses = try #require(operation["responses"]?.objectValue, "\(method) \(path) has no responses")
                #expect(responses["200"] != nil || responses["204"] != nil || responses["101"] != nil,
                        "\(method) \(path) lists no 200 (or 204, or 101 for the WebSocket upgrade)")
                #expect(responses["413"] != nil, "\(method) \(path) lists no 413 (the body limit applies to every route)")
                let secured = operation["security"] != .array([])
                #expect((responses["401"] != nil) == secured, "\(method) \(path): 401 exactly when secured")
            }
        }
        // Every "$ref" names something under components.
        func refs(_ value: JSON) -> [String] {
            switch value {
            case let .object(o): return o.flatMap { key, v in key == "$ref" ? [v.stringValue ?? ""] : refs(v) }
            case let .array(a): return a.flatMap(refs)
            default: return []
            }
        }
        for ref in Set(refs(document)) {
            let parts = ref.split(separator: "/").map(String.init)
            #expect(parts.count == 4 && parts[0] == "#" && parts[1] == "components", "odd $ref \(ref)")
            if parts.count == 4 { #expect(document["components"]?[parts[2]]?[parts[3]] != nil, "unresolved $ref \(ref)") }
        }
    }

    @Test func documentIsOpenAPI303WithBearerAuthAndBothErrorFormats() throws {
        let document = OpenAPI.document
        #expect(document["openapi"] == "3.0.3")
        #expect(document["components"]?["securitySchemes"]?["BearerAuth"]?["scheme"] == "bearer")
        #expect(document["components"]?["schemas"]?["PipelineError"]?["required"] == ["status", "error"])
        #expect(document["components"]?["schemas"]?["AuthError"]?["required"] == ["error"])
        // The documented 5xx: a failed synchronous run (SPEC §2-3) and refusals while shutting down.
        let run = try #require(document["paths"]?["/v1/pipeline/{id}/run"]?["post"]?["responses"])
        #expect(run["500"] != nil && run["409"] != nil && run["422"] != nil)
        let served = try JSON.parse(OpenAPI.encoded)
        #expect(Set(served["paths"]?.objectValue?.keys ?? []) == Set(document["paths"]?.objectValue?.keys ?? []), "the served bytes parse back")
    }
}
