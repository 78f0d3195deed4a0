import HTTPTypes
import MockShiftHTTP

/// What a handler gives back: a JSON answer now, or nothing yet (it answers later through the writer, e.g. a
/// synchronous run that waits for its end).
public enum Reply: Sendable {
    case json(HTTPResponse.Status, JSON)
    /// A status and headers with no body (`204` of `OPTIONS` and of `/favicon.ico`).
    case empty(HTTPResponse.Status, HTTPFields)
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
    /// An injected fault's `cut_stream_after_events`: a stream this request opens is cut after that many events.
    public var injectedStreamCut: Int? = nil

    /// True for a `HEAD` request, which the router gives to the `GET` handler (RFC 9110 §9.3.2: the same status
    /// and headers, no body; the transport leaves the body out). A handler that would start something for the
    /// body, such as a stream, answers its head only when this is set.
    public var isHead: Bool { request.head.method == .head }

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
    /// `.methodNotAllowed` when only the method is wrong, with the methods the path takes (its `Allow`).
    ///
    /// Two methods come with the table rather than from it (RFC 9110 §9.3.2, §9.3.7): `HEAD` takes the `GET`
    /// route of its path (the transport sends the same status and headers without the body, and a handler that
    /// would open a stream answers its headers only, see ``HandlerContext/isHead``), and `OPTIONS` answers 204
    /// with `Allow` on every routed path, `OPTIONS *` with every method the daemon serves.
    public func match(_ method: HTTPRequest.Method, _ path: String) throws -> (Handler, [String: String]) {
        if method == .options {
            let allowed = path == "*" ? allMethods : allowedMethods(path)
            guard let allowed else { throw APIError(.notFound, "Not found: OPTIONS \(path)") }
            return ({ _ in .empty(.noContent, [.allow: allowed.joined(separator: ", ")]) }, [:])
        }
        let wanted: HTTPRequest.Method = method == .head ? .get : method
        let parts = path.utf8.split(separator: UInt8(ascii: "/"))
        var pathExists = false
        for index in bySegmentCount[parts.count] ?? [] {
            let route = routes[index]
            guard Self.literalsMatch(route, parts) else { continue }
            pathExists = true
            guard route.method == wanted else { continue }
            var parameters: [String: String] = [:]
            for (segment, part) in zip(route.segments, parts) {
                if case let .parameter(name) = segment { parameters[name] = String(Substring(part)) }
            }
            return (route.handler, parameters)
        }
        // A HEAD's error says GET, so that its Content-Length is the GET's (RFC 9110 §9.3.2); nobody reads it.
        if pathExists, let allowed = allowedMethods(path) {
            var error = APIError(.methodNotAllowed, "Method \(wanted.rawValue) not allowed on \(path)")
            error.allowedMethods = allowed
            throw error
        }
        throw APIError(.notFound, "Not found: \(wanted.rawValue) \(path)")
    }

    /// The pattern of the route that `method` and `path` take (`/v1/pipeline/:id/run/status/:task`; `HEAD` takes
    /// the `GET` route), nil when none does: how the fidelity report groups exchanges (``FidelityReport``).
    public func pattern(_ method: HTTPRequest.Method, _ path: String) -> String? {
        let wanted: HTTPRequest.Method = method == .head ? .get : method
        let parts = path.utf8.split(separator: UInt8(ascii: "/"))
        for index in bySegmentCount[parts.count] ?? [] where routes[index].method == wanted && Self.literalsMatch(routes[index], parts) {
            return routes[index].pattern
        }
        return nil
    }

    /// The methods `path` takes, in table order, `HEAD` after `GET` and `OPTIONS` last (the `Allow` of a 405 and
    /// of `OPTIONS`); nil for a path no route matches.
    public func allowedMethods(_ path: String) -> [String]? {
        let parts = path.utf8.split(separator: UInt8(ascii: "/"))
        var allowed: [String] = []
        for index in bySegmentCount[parts.count] ?? [] where Self.literalsMatch(routes[index], parts) {
            let method = routes[index].method.rawValue
            if !allowed.contains(method) { allowed.append(method) }
            if method == "GET" && !allowed.contains("HEAD") { allowed.append("HEAD") }
        }
        return allowed.isEmpty ? nil : allowed + ["OPTIONS"]
    }

    /// Every method some route takes, with `HEAD` and `OPTIONS` (`OPTIONS *`).
    private var allMethods: [String] {
        var all: [String] = []
        for route in routes where !all.contains(route.method.rawValue) { all.append(route.method.rawValue) }
        if all.contains("GET") { all.append("HEAD") }
        return all + ["OPTIONS"]
    }

    /// True when the literal segments of `route` equal the path's (parameters match anything).
    private static func literalsMatch(_ route: Route, _ parts: [Substring.UTF8View]) -> Bool {
        for (segment, part) in zip(route.segments, parts) {
            if case let .literal(bytes) = segment, !part.elementsEqual(bytes) { return false }
        }
        return true
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
