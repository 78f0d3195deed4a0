import HTTPTypes
import MockShiftHTTP

/// What a handler gives back: a JSON answer now, or nothing yet (it answers later through the writer, e.g. a
/// synchronous run that waits for its end).
public enum Reply: Sendable {
    case json(HTTPResponse.Status, JSON)
    case later
}

/// Everything a handler needs about one request.
public struct HandlerContext: Sendable {
    public let app: MockShiftApp
    public let request: Request
    /// API-key namespace (SPEC §7).
    public let namespace: String
    /// Path parameters by name (`:id` → `id`).
    public let parameters: [String: String]
    /// For handlers that reply `.later`.
    public let writer: ReplyWriter
    /// LLM failures an injected fault adds to the runs this request starts.
    public var injectedLLMFailures: [RunOptions.LLMFailure] = []

    /// A path parameter that the route guarantees.
    public func parameter(_ name: String) -> String { parameters[name] ?? "" }

    /// The request body as a JSON object: a JSON body (empty → `{}`), or form fields (urlencoded or
    /// multipart, SPEC §4) with each value kept as text. Throws `.badRequest` "Invalid JSON body".
    public func bodyObject() throws -> JSONObject {
        if let fields = request.formFields {
            var object = JSONObject()
            for field in fields { object[field.name] = .string(field.text) }
            return object
        }
        if request.body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { return [:] }
        guard let value = try? JSON.parse(request.body), let object = value.objectValue else {
            throw APIError(.badRequest, "Invalid JSON body")
        }
        return object
    }
}

/// A handler: parses, calls the engine or the store, renders. Throws ``APIError``.
public typealias Handler = @Sendable (HandlerContext) throws -> Reply

/// Matches a method and path to a handler. Patterns are literal segments and `:name` parameters; empty segments
/// (`//`) are ignored. Paths are compared as UTF-8 bytes, and only routes with as many segments as the path are
/// tried: matching showed as a tenth of a status poll's cost before (`scripts/bench-status`).
public struct Router: Sendable {
    enum Segment: Sendable {
        case literal([UInt8])
        case parameter(String)
    }

    struct Route: Sendable {
        let method: HTTPRequest.Method
        let pattern: String
        let segments: [Segment]
        let handler: Handler
    }

    private var routes: [Route] = []
    /// Indices into `routes` by segment count.
    private var bySegmentCount: [Int: [Int]] = [:]

    public init() {}

    /// Adds a route; `pattern` like `/v1/pipeline/:id/run`.
    public mutating func add(_ method: HTTPRequest.Method, _ pattern: String, _ handler: @escaping Handler) {
        let segments: [Segment] = pattern.split(separator: "/").map { part in
            part.first == ":" ? .parameter(String(part.dropFirst())) : .literal(Array(part.utf8))
        }
        bySegmentCount[segments.count, default: []].append(routes.count)
        routes.append(Route(method: method, pattern: pattern, segments: segments, handler: handler))
    }

    /// Every route as (method, pattern), in table order.
    var table: [(method: HTTPRequest.Method, pattern: String)] { routes.map { ($0.method, $0.pattern) } }

    /// The handler and parameters for `method` and `path`. Throws `.notFound` for an unknown path and
    /// `.methodNotAllowed` when only the method is wrong.
    public func match(_ method: HTTPRequest.Method, _ path: String) throws -> (Handler, [String: String]) {
        let utf8 = path.utf8
        let parts = utf8.split(separator: UInt8(ascii: "/"))
        var allowed: [String] = []
        for index in bySegmentCount[parts.count] ?? [] {
            let route = routes[index]
            var matched = true
            for (segment, part) in zip(route.segments, parts) {
                if case let .literal(bytes) = segment, !part.elementsEqual(bytes) { matched = false; break }
            }
            guard matched else { continue }
            guard route.method == method else { allowed.append(route.method.rawValue); continue }
            var parameters: [String: String] = [:]
            for (segment, part) in zip(route.segments, parts) {
                if case let .parameter(name) = segment { parameters[name] = String(Substring(part)) }
            }
            return (route.handler, parameters)
        }
        if !allowed.isEmpty {
            var error = APIError(.methodNotAllowed, "Method \(method.rawValue) not allowed on \(path)")
            error.allowedMethods = allowed
            throw error
        }
        throw APIError(.notFound, "Not found: \(method.rawValue) \(path)")
    }
}

/// Typed reads of request-body fields: absent or `null` is nil; a value of another type is a 400 naming the
/// field. Forms carry everything as text (API.md §1), so booleans also accept "true"/"false" and objects and
/// lists also accept JSON text.
extension JSONObject {
    func string(_ key: String) throws -> String? {
        switch self[key] {
        case nil, .null?: return nil
        case let .string(s)?: return s
        default: throw APIError(.badRequest, "\(key) must be a string")
        }
    }

    func bool(_ key: String) throws -> Bool {
        switch self[key] {
        case nil, .null?: return false
        case let .bool(b)?: return b
        case let .string(s)? where ["true", "false"].contains(s.lowercased()): return s.lowercased() == "true"
        default: throw APIError(.badRequest, "\(key) must be true or false")
        }
    }

    func object(_ key: String) throws -> JSONObject {
        switch self[key] {
        case nil, .null?: return [:]
        case let .object(o)?: return o
        case let .string(text)?:
            guard let o = (try? JSON.parse(text))?.objectValue else { throw APIError(.badRequest, "\(key) must be a JSON object") }
            return o
        default: throw APIError(.badRequest, "\(key) must be an object")
        }
    }

    func list(_ key: String) throws -> [JSON]? {
        switch self[key] {
        case nil, .null?: return nil
        case let .array(items)?: return items
        case let .string(text)?:
            guard let items = (try? JSON.parse(text))?.arrayValue else { throw APIError(.badRequest, "\(key) must be a JSON list") }
            return items
        default: throw APIError(.badRequest, "\(key) must be a list")
        }
    }
}
