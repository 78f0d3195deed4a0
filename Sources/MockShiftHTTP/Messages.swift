import HTTPTypes

/// One HTTP request as the transport hands it to a ``HTTPResponder``: the head (method, path, headers, as
/// swift-http-types values), the decoded query items, and the body read in full.
///
/// The transport fills `formFields` when the body is `application/x-www-form-urlencoded` or
/// `multipart/form-data` (parsed by libmicrohttpd's post processor), and sets `bodyTooLarge` instead of
/// reading a body over the configured limit (the responder should answer 413).
public struct Request: Sendable {
    /// Method, path (without the query string) and header fields.
    public var head: HTTPRequest
    /// Query items in the order the client sent them, percent-decoded by libmicrohttpd.
    public var query: [(name: String, value: String)]
    /// The raw body bytes (empty when `bodyTooLarge`).
    public var body: [UInt8]
    /// Form fields of a urlencoded or multipart body, in order; `nil` for any other content type.
    public var formFields: [FormField]?
    /// True when the body exceeded the transport's limit and was not kept.
    public var bodyTooLarge: Bool

    public init(head: HTTPRequest, query: [(name: String, value: String)] = [], body: [UInt8] = [],
                formFields: [FormField]? = nil, bodyTooLarge: Bool = false) {
        self.head = head
        self.query = query
        self.body = body
        self.formFields = formFields
        self.bodyTooLarge = bodyTooLarge
    }

    /// The path without the query string, e.g. `/v1/pipeline/abc/run`.
    public var path: String { head.path ?? "/" }

    /// The first query value named `name`, if any.
    public func queryValue(_ name: String) -> String? {
        query.first(where: { $0.name == name })?.value
    }
}

/// One field of a form body. `filename` is set for a multipart file part.
public struct FormField: Sendable, Equatable {
    public var name: String
    public var filename: String?
    public var contentType: String?
    public var value: [UInt8]

    public init(name: String, filename: String? = nil, contentType: String? = nil, value: [UInt8]) {
        self.name = name
        self.filename = filename
        self.contentType = contentType
        self.value = value
    }

    /// The value as UTF-8 text (invalid bytes repaired).
    public var text: String { String(decoding: value, as: UTF8.self) }
}

/// A response value: status and headers as swift-http-types values, and a body.
public struct Response: Sendable {
    /// Status and header fields.
    public var head: HTTPResponse
    /// The body: complete bytes, a ``StreamBody`` written over time (sent chunked), or a WebSocket upgrade.
    public var body: Body

    public enum Body: Sendable {
        case bytes([UInt8])
        case stream(StreamBody)
        /// No answer at all: the transport closes the connection (a simulated network failure).
        case dropConnection
        /// `101 Switching Protocols`, after which the connection is a WebSocket served by the upgrade's handler
        /// (``Response/webSocketUpgrade(accept:handler:)``).
        case webSocket(WebSocketUpgrade)
    }

    /// A "response" that closes the connection without answering.
    public static let dropConnection: Response = {
        var r = Response(status: .internalServerError)
        r.body = .dropConnection
        return r
    }()

    public init(status: HTTPResponse.Status, headerFields: HTTPFields = [:], body: [UInt8] = []) {
        self.head = HTTPResponse(status: status, headerFields: headerFields)
        self.body = .bytes(body)
    }

    /// A streamed response (e.g. `text/event-stream`).
    public init(status: HTTPResponse.Status, headerFields: HTTPFields = [:], stream: StreamBody) {
        self.head = HTTPResponse(status: status, headerFields: headerFields)
        self.body = .stream(stream)
    }
}

/// What the transport calls for every complete request. Implementations answer through `writer`, either
/// before returning (the common case) or later from any thread: the transport then parks the connection
/// with libmicrohttpd's suspend/resume, holding no thread while it waits.
public protocol HTTPResponder: Sendable {
    /// Handles `request`; must call `writer.send(_:)` exactly once, now or later.
    func respond(to request: Request, writer: ResponseWriter)
}
