import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking  // URLSession on Linux (libcurl underneath: Debian's libcurl4 at run time)
#endif
import Synchronization

/// Sends requests on to an upstream HTTP API and hands its answer back as it arrives (`serve --record`, issue 15
/// items 2 and 5): the status and headers first, then each piece of the body as URLSession receives it (so a
/// Server-Sent-Events answer can be relayed event by event), then the end, or the error that cut it short.
///
/// Foundation's URLSession does the HTTP (no hand-written client, issue 15 item 5). Redirects are not followed
/// (the answer is relayed as it is). A request may wait ``idleTimeout`` seconds between two pieces of its answer
/// (streams send a keep-alive comment every 15 s) and has no limit on its whole length. Knows no routes.
public final class UpstreamProxy: Sendable {
    /// What becomes of one forwarded request; each closure is called on the proxy's own queue, in order: `head`
    /// once (unless the request fails before any answer), `data` for each piece, `end` once (nil: the whole answer
    /// arrived; else why not).
    public struct Handlers: Sendable {
        public var head: @Sendable (_ status: Int, _ headers: [(String, String)]) -> Void
        public var data: @Sendable (_ bytes: [UInt8]) -> Void
        public var end: @Sendable (_ error: String?) -> Void

        public init(head: @escaping @Sendable (Int, [(String, String)]) -> Void, data: @escaping @Sendable ([UInt8]) -> Void,
                    end: @escaping @Sendable (String?) -> Void) {
            self.head = head
            self.data = data
            self.end = end
        }
    }

    /// Cancels a forwarded request (the client went away): its `end` is called with an error.
    public struct Cancel: Sendable {
        let run: @Sendable () -> Void
        public func callAsFunction() { run() }
    }

    /// The upstream's base, ending in `/v1`.
    public let base: URL
    /// Seconds a request may wait between two pieces of its answer.
    public static let idleTimeout: Double = 300
    private let session: URLSession
    private let relay: Relay

    /// `base`: `http(s)://HOST[:PORT][/PREFIX]`; `/v1` is added unless it ends with it. Nil when it is no http(s)
    /// URL with a host.
    public init?(base text: String) {
        guard let url = URLSessionUpstream.apiBase(text) else { return nil }
        base = url
        relay = Relay()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Self.idleTimeout
        configuration.timeoutIntervalForResource = 7 * 86_400
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1  // one queue: a request's pieces arrive in order
        session = URLSession(configuration: configuration, delegate: relay, delegateQueue: queue)
    }

    /// Forwards one request: `path` is the part after `/v1` (`/pipeline/abc/run`), `query` the query items as the
    /// client sent them, `headers` the header fields to pass on (the caller picks them). Returns at once.
    public func forward(method: String, path: String, query: [(String, String)], headers: [(String, String)],
                        body: [UInt8], handlers: Handlers) -> Cancel {
        let encodedPath = path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path
        var components = URLComponents(string: base.absoluteString + encodedPath)
        if !query.isEmpty { components?.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        guard let url = components?.url else {
            handlers.end("cannot build an upstream URL for \(path)")
            return Cancel {}
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if !body.isEmpty { request.httpBody = Data(body) }
        let task = session.dataTask(with: request)
        relay.register(task.taskIdentifier, handlers)
        task.resume()
        return Cancel { task.cancel() }
    }

    /// The session's delegate: routes each task's events to its handlers.
    private final class Relay: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        // @unchecked: `handlers` is guarded by its mutex; URLSession calls the delegate on one serial queue.
        private let handlers = Mutex<[Int: Handlers]>([:])

        func register(_ id: Int, _ h: Handlers) { handlers.withLock { $0[id] = h } }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void) {
            if let http = response as? HTTPURLResponse, let h = handlers.withLock({ $0[dataTask.taskIdentifier] }) {
                let fields = http.allHeaderFields.compactMap { key, value -> (String, String)? in
                    guard let k = key as? String, let v = value as? String else { return nil }
                    return (k, v)
                }
                h.head(http.statusCode, fields)
            }
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            handlers.withLock { $0[dataTask.taskIdentifier] }?.data(Array(data))
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
            let h = handlers.withLock { $0.removeValue(forKey: task.taskIdentifier) }
            h?.end(error.map { ($0 as NSError).localizedDescription })
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
            completionHandler(nil)
        }
    }
}
