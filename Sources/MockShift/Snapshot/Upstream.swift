import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking  // URLSession on Linux (libcurl underneath)
#endif

/// Why a request to the upstream VectorShift API (or a MockShift standing in for it) gave no usable answer.
public enum UpstreamError: Error, Sendable, CustomStringConvertible {
    /// No HTTP answer at all: connection refused, name not resolved, timeout, TLS failure.
    case unreachable(String)
    /// An answer other than 2xx, with the message its body gives (`error`, `message` or `detail`, as the SDK reads
    /// it, API.md §2) or the start of the body.
    case http(status: Int, message: String)
    /// A 2xx answer whose body is not the JSON expected.
    case badBody(String)

    public var description: String {
        switch self {
        case let .unreachable(reason): "cannot reach the upstream: \(reason)"
        case let .http(status, message): "HTTP \(status): \(message)"
        case let .badBody(reason): "bad answer: \(reason)"
        }
    }
}

extension URLSessionUpstream {
    /// The API's base URL from what a user wrote (`--from`, `--record`): `http(s)://HOST[:PORT][/PREFIX]` with
    /// `/v1` added unless it ends with it (the SDK's `VECTORSHIFT_BASE_URL` ends with it, a MockShift root does
    /// not), trailing slashes dropped. Nil when it is no http(s) URL with a host, or has a query or a fragment
    /// (the paths of the API go after it: `…/v1?x=1/v1` would be no URL of the API).
    public static func apiBase(_ text: String) -> URL? {
        guard !text.contains("?"), !text.contains("#") else { return nil }
        var trimmed = text
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        if !trimmed.hasSuffix("/v1") { trimmed += "/v1" }
        guard let url = URL(string: trimmed), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty else { return nil }
        return url
    }
}

/// Reads JSON from the upstream API: `GET` of a path under the base URL (`…/v1`), with query items.
/// A protocol so that the snapshot logic can be tested without a network.
public protocol UpstreamReading: Sendable {
    /// The JSON object a `GET` of `path` (`/pipelines`, starting with `/`) answers. Throws ``UpstreamError``.
    func get(_ path: String, query: [(String, String)]) throws -> JSONObject
}

/// ``UpstreamReading`` over Foundation's `URLSession` (no hand-written HTTP client, issue 15 item 5): each request
/// carries `Authorization: Bearer KEY` and `Content-Type: application/json`, as the SDK's do (API.md §1), and waits
/// at most `timeout` seconds. Safe from any thread but the session's own queue.
public final class URLSessionUpstream: UpstreamReading {
    /// The base URL, ending in `/v1`.
    public let base: URL
    private let apiKey: String
    private let session: URLSession

    /// `base`: `http(s)://HOST[:PORT][/PREFIX]`; `/v1` is added unless it ends with it (the SDK's
    /// `VECTORSHIFT_BASE_URL` ends with it, a MockShift root does not). Nil when `base` is no http(s) URL.
    public init?(base text: String, apiKey: String, timeout: Double = 60) {
        guard let url = Self.apiBase(text) else { return nil }
        base = url
        self.apiKey = apiKey
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        session = URLSession(configuration: configuration)
    }

    public func get(_ path: String, query: [(String, String)]) throws -> JSONObject {
        guard var components = URLComponents(string: base.absoluteString + path) else {
            throw UpstreamError.badBody("bad path \(path)")
        }
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        guard let url = components.url else { throw UpstreamError.badBody("bad query for \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = "GET"
        request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("mockshift/0.1 (snapshot)", forHTTPHeaderField: "User-Agent")
        let (data, status) = try Self.send(request, on: session)
        guard (200..<300).contains(status) else {
            throw UpstreamError.http(status: status, message: Self.errorMessage(data))
        }
        let value: JSON
        do { value = try JSON.parse(Array(data)) } catch {
            throw UpstreamError.badBody("\(path) answered \(status) with a body that is not JSON")
        }
        guard let object = value.objectValue else { throw UpstreamError.badBody("\(path) answered JSON that is not an object") }
        return object
    }

    /// Sends `request` and waits for the whole answer: its body and status. Throws ``UpstreamError/unreachable(_:)``
    /// when no HTTP answer came.
    static func send(_ request: URLRequest, on session: URLSession) throws -> (Data, Int) {
        final class Box: @unchecked Sendable { var data: Data?; var status = 0; var error: (any Error)? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        session.dataTask(with: request) { data, response, error in
            box.data = data
            box.status = (response as? HTTPURLResponse)?.statusCode ?? 0
            box.error = error
            done.signal()
        }.resume()
        done.wait()  // the box is written before the signal and read after the wait
        if let error = box.error { throw UpstreamError.unreachable(error.localizedDescription) }
        guard box.status > 0 else { throw UpstreamError.unreachable("no HTTP answer") }
        return (box.data ?? Data(), box.status)
    }

    /// The message of an error body as the SDK finds it (API.md §2): the first non-empty `error`, `message` or
    /// `detail` of a JSON object, else the body's first 200 characters.
    static func errorMessage(_ data: Data) -> String {
        if let object = (try? JSON.parse(Array(data)))?.objectValue {
            for key in ["error", "message", "detail"] {
                switch object[key] {
                case let .string(text)? where !text.isEmpty: return text
                case let value? where value != .null && value.stringValue == nil: return value.encodedString()
                default: continue
                }
            }
        }
        let text = String(decoding: data.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "(empty body)" : text
    }
}
