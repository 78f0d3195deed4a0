import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking  // URLSession on Linux (libcurl underneath: Debian's libcurl4 at run time)
#endif
import Logging
import Synchronization

/// Calls a background run's `webhook_url` once the run is final (API.md §4.1 `start(webhook_url=…)`, issue 11
/// item 6): one `POST` of the run's final status JSON, the very bytes `GET /v1/pipeline/{pid}/run/status/{id}`
/// answers, with `Content-Type: application/json`, `User-Agent: mockshift/0.1 (webhook)`, `X-MockShift-Run-Id`
/// and `X-MockShift-Attempt` (1-based).
///
/// Each attempt has ``Settings/attemptTimeout``; a connection error, a timeout or a 5xx answer is retried after
/// each wait of ``Settings/backoff`` (so 3 attempts by default); any 2xx is delivered; any other answer (a 3xx
/// too: redirects are not followed, URLSession would turn the POST into a GET) fails at once. The outcome is appended to the run's stored
/// timeline: `webhook_delivered` `{url, status_code, attempts}` or `webhook_failed` `{url, error, attempts,
/// status_code?}`; failures are also logged as warnings.
///
/// Deliveries never run on the caller's thread (the scheduler's, a transport thread, or one holding a run's
/// lock): ``deliver(_:to:)`` only queues. At most ``Settings/maxConcurrent`` are in flight, at most
/// ``Settings/maxQueued`` wait behind them (more fail at once with `webhook queue full`). ``shutdown(waitingAtMost:)``
/// waits a bounded time and abandons the rest. Knows nothing of routes or the engine: it is handed the payload.
///
/// Only loopback hosts are called unless ``allowHosts(_:)`` (`serve --webhook-host`) names others: a local mock
/// must not send a test suite's (or a fuzzer's) made-up URLs out to the network. A URL of another host is
/// accepted at run start but its delivery fails at once, `webhook_failed` with a message naming the option.
public final class Webhooks: Sendable {
    /// Timing and bounds of deliveries.
    public struct Settings: Sendable {
        /// Seconds one attempt may take, connection to last byte.
        public var attemptTimeout: Double = 5
        /// Seconds to wait before each retry; its length is the number of retries.
        public var backoff: [Double] = [0.5, 1]
        /// Deliveries in flight at once.
        public var maxConcurrent = 16
        /// Deliveries waiting for a free slot; beyond it a delivery fails at once.
        public var maxQueued = 10_000

        public init() {}
    }

    /// The `User-Agent` of every delivery.
    public static let userAgent = "mockshift/0.1 (webhook)"

    /// One run's delivery.
    struct Delivery: Sendable {
        let serial: UInt64
        let namespace: String
        let runID: String
        let url: URL
        let body: Data
    }

    private struct State {
        var nextSerial: UInt64 = 0
        /// Delivery serial → delivery, for those in flight (between attempts too).
        var active: [UInt64: Delivery] = [:]
        /// Delivery serial → attempts begun, for those in flight.
        var attempts: [UInt64: Int] = [:]
        var waiting: [Delivery] = []
        var waitingHead = 0
        var closed = false
        var waitingCount: Int { waiting.count - waitingHead }
    }

    private let settings: Settings
    private let session: URLSession
    private let store: Store
    private let logger: Logger
    /// The scheduler's clock in nanoseconds, for the timeline's `clock_ms`.
    private let clock: @Sendable () -> UInt64
    /// Retries wait on this queue (real time, whatever the simulation's clock).
    private let queue = DispatchQueue(label: "mockshift.webhooks")
    private let state = Mutex(State())
    /// Hosts deliveries may go to besides loopback (lowercased); `*` allows any.
    private let extraHosts = Mutex<Set<String>>([])

    /// Lets deliveries go to `hosts` too (names or addresses as written in URLs, without brackets); `*` allows
    /// every host. Loopback (`localhost`, `127.0.0.0/8`) is always allowed.
    public func allowHosts(_ hosts: [String]) {
        extraHosts.withLock { $0.formUnion(hosts.map { $0.lowercased() }) }
    }

    /// True when `url`'s host may be called: loopback, or allowed by ``allowHosts(_:)``.
    public func mayCall(_ url: URL) -> Bool {
        guard var host = url.host?.lowercased() else { return false }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts[0] == "127", parts.allSatisfy({ UInt8($0) != nil }) { return true }
        return extraHosts.withLock { $0.contains("*") || $0.contains(host) }
    }
    /// Entered per accepted delivery, left when it ends or is abandoned: what shutdown waits on.
    private let pending = DispatchGroup()

    /// - Parameters:
    ///   - store: where outcomes are appended to the runs' timelines.
    ///   - clock: the simulation clock (nanoseconds) the timeline's `clock_ms` is read from.
    public init(store: Store, clock: @escaping @Sendable () -> UInt64, settings: Settings = Settings(), logger: Logger) {
        self.store = store
        self.clock = clock
        self.settings = settings
        self.logger = logger
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = settings.attemptTimeout
        configuration.timeoutIntervalForResource = settings.attemptTimeout
        configuration.httpMaximumConnectionsPerHost = settings.maxConcurrent
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        // Completion handlers run on the session's own operation queue, never on a caller's thread.
        session = URLSession(configuration: configuration, delegate: RedirectRefuser(), delegateQueue: nil)
    }

    /// The URL `text` names when it is an absolute `http` or `https` URL with a host, else nil.
    /// Besides, the port (when given) must be 1–65535 and the host no IPv6 literal (`[::1]`): URLSession on Linux
    /// cannot send to those, so they are refused when the run starts rather than failing at its end.
    public static func url(_ text: String) -> URL? {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty, !host.contains(":"), !host.hasPrefix("[") else { return nil }
        if let port = url.port, !(1...65_535).contains(port) { return nil }
        return url
    }

    /// Queues one POST of `body` (a final run's status JSON) to `url` for run `runID` of `namespace`. Returns at
    /// once; safe from any thread.
    public func deliver(namespace: String, runID: String, to url: URL, body: [UInt8]) {
        enum Admission { case start(Delivery), queued, refused(String) }
        let allowed = mayCall(url)
        let admission = state.withLock { s -> Admission in
            if s.closed { return .refused("server shutting down") }
            if !allowed {
                return .refused("host \(url.host ?? "") not allowed: only loopback hosts are called unless serve --webhook-host names it (or *)")
            }
            s.nextSerial += 1
            let delivery = Delivery(serial: s.nextSerial, namespace: namespace, runID: runID, url: url, body: Data(body))
            if s.active.count < settings.maxConcurrent {
                s.active[delivery.serial] = delivery
                pending.enter()
                return .start(delivery)
            }
            if s.waitingCount < settings.maxQueued {
                s.waiting.append(delivery)
                pending.enter()
                return .queued
            }
            return .refused("webhook queue full (\(settings.maxQueued) waiting)")
        }
        switch admission {
        case let .start(delivery): queue.async { self.attempt(delivery, number: 1) }
        case .queued: break
        case let .refused(reason):
            queue.async {
                self.record(namespace: namespace, runID: runID, url: url,
                            outcome: .failed(error: reason, statusCode: nil, attempts: 0))
            }
        }
    }

    enum Outcome {
        case delivered(statusCode: Int, attempts: Int)
        case failed(error: String, statusCode: Int?, attempts: Int)
    }

    private func attempt(_ delivery: Delivery, number: Int) {
        let live = state.withLock { s -> Bool in
            guard s.active[delivery.serial] != nil else { return false }  // abandoned at shutdown
            s.attempts[delivery.serial] = number
            return true
        }
        guard live else { return }
        var request = URLRequest(url: delivery.url, timeoutInterval: settings.attemptTimeout)
        request.httpMethod = "POST"
        request.httpBody = delivery.body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(Self.userAgent, forHTTPHeaderField: "User-Agent")
        request.setValue(delivery.runID, forHTTPHeaderField: "X-MockShift-Run-Id")
        request.setValue(String(number), forHTTPHeaderField: "X-MockShift-Attempt")
        session.dataTask(with: request) { _, response, error in
            self.attempted(delivery, number: number, statusCode: (response as? HTTPURLResponse)?.statusCode, error: error)
        }.resume()
    }

    private func attempted(_ delivery: Delivery, number: Int, statusCode: Int?, error: (any Error)?) {
        if let statusCode, error == nil, (200..<300).contains(statusCode) {
            return end(delivery, .delivered(statusCode: statusCode, attempts: number))
        }
        let reason: String
        let retryable: Bool
        if let statusCode, error == nil {
            reason = "HTTP \(statusCode)"
            retryable = statusCode >= 500
        } else {
            reason = error.map(Self.describe) ?? "no answer"
            // A URL the HTTP client cannot use will not get better by waiting.
            let code = (error as? URLError)?.code
            retryable = code != .badURL && code != .unsupportedURL
        }
        let closing = state.withLock { $0.closed }
        if retryable, number <= settings.backoff.count, !closing {
            logger.debug("webhook for run \(delivery.runID): attempt \(number) failed (\(reason)), retrying")
            let wait = settings.backoff[number - 1]
            queue.asyncAfter(deadline: .now() + .milliseconds(Int(wait * 1000))) { self.attempt(delivery, number: number + 1) }
            return
        }
        end(delivery, .failed(error: reason + (retryable && closing ? " (not retried: server shutting down)" : ""),
                              statusCode: statusCode, attempts: number))
    }

    /// Ends a delivery in flight and starts the next waiting one; does nothing for one shutdown abandoned (and
    /// recorded) already.
    private func end(_ delivery: Delivery, _ outcome: Outcome) {
        let (wasActive, next) = state.withLock { s -> (Bool, Delivery?) in
            guard s.active.removeValue(forKey: delivery.serial) != nil else { return (false, nil) }
            s.attempts[delivery.serial] = nil
            guard s.waitingCount > 0 else { return (true, nil) }
            let next = s.waiting[s.waitingHead]
            s.waitingHead += 1
            if s.waitingHead > 1024 && s.waitingHead * 2 > s.waiting.count {
                s.waiting.removeFirst(s.waitingHead)
                s.waitingHead = 0
            }
            s.active[next.serial] = next
            return (true, next)
        }
        guard wasActive else { return }
        if let next { queue.async { self.attempt(next, number: 1) } }
        record(namespace: delivery.namespace, runID: delivery.runID, url: delivery.url, outcome: outcome)
        pending.leave()
    }

    /// Logs an outcome and appends it to the run's timeline.
    private func record(namespace: String, runID: String, url: URL, outcome: Outcome) {
        var entry: JSONObject
        switch outcome {
        case let .delivered(statusCode, attempts):
            logger.debug("webhook for run \(runID) delivered to \(url.absoluteString): HTTP \(statusCode) after \(attempts) attempt(s)")
            entry = ["event": "webhook_delivered", "url": .string(url.absoluteString),
                     "status_code": .int(Int64(statusCode)), "attempts": .int(Int64(attempts))]
        case let .failed(error, statusCode, attempts):
            logger.warning("webhook for run \(runID) to \(url.absoluteString) failed after \(attempts) attempt(s): \(error)")
            entry = ["event": "webhook_failed", "url": .string(url.absoluteString), "error": .string(error),
                     "attempts": .int(Int64(attempts))]
            if let statusCode { entry["status_code"] = .int(Int64(statusCode)) }
        }
        entry["clock_ms"] = .double(Double(clock()) / 1_000_000)
        entry["at"] = .string(iso8601(micros: wallClockMicros()))
        append(.object(entry), namespace: namespace, runID: runID, attempt: 1)
    }

    /// Appends `entry` to the run's stored timeline; while storage is unavailable (issue 11 item 2) tries again
    /// after 0.25 s, doubling up to 5 s, for about ten minutes, so a passing lock does not lose the outcome.
    private func append(_ entry: JSON, namespace: String, runID: String, attempt: Int) {
        do {
            try store.appendRunEvent(namespace: namespace, id: runID, entry)
        } catch is StoreUnavailable where attempt < 130 {
            let wait = min(0.25 * Double(1 << min(attempt - 1, 5)), 5)
            queue.asyncAfter(deadline: .now() + wait) {
                self.append(entry, namespace: namespace, runID: runID, attempt: attempt + 1)
            }
        } catch {
            logger.error("webhook for run \(runID): could not record the outcome in its timeline: \(error)")
        }
    }

    /// Stops taking deliveries and waits at most `seconds` for those queued or in flight (no retry starts
    /// meanwhile); the rest are abandoned, logged, and recorded as `webhook_failed` (`abandoned: server shut
    /// down`). Call after the engine's shutdown, whose interrupted runs queue their deliveries first.
    public func shutdown(waitingAtMost seconds: Double) {
        state.withLock { $0.closed = true }
        if pending.wait(timeout: .now() + .milliseconds(Int(seconds * 1000))) == .success {
            session.invalidateAndCancel()
            return
        }
        let abandoned = state.withLock { s -> [(Delivery, Int)] in
            let all = s.active.values.map { ($0, s.attempts[$0.serial] ?? 0) } + s.waiting[s.waitingHead...].map { ($0, 0) }
            s.active = [:]
            s.attempts = [:]
            s.waiting = []
            s.waitingHead = 0
            return all
        }
        session.invalidateAndCancel()
        if abandoned.isEmpty { return }
        logger.warning("shutdown: abandoned \(abandoned.count) webhook delivery(ies) still pending after \(seconds) s")
        for (delivery, attempts) in abandoned.sorted(by: { $0.0.serial < $1.0.serial }) {
            record(namespace: delivery.namespace, runID: delivery.runID, url: delivery.url,
                   outcome: .failed(error: "abandoned: server shut down", statusCode: nil, attempts: attempts))
            pending.leave()
        }
    }

    /// A transfer error in a few words (URLError's own description is long and localized).
    private static func describe(_ error: any Error) -> String {
        guard let error = error as? URLError else { return "\(error)" }
        switch error.code {
        case .timedOut: return "timed out"
        case .cannotConnectToHost: return "connection refused"
        case .cannotFindHost, .dnsLookupFailed: return "host not found"
        case .networkConnectionLost: return "connection lost"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
             .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot: return "TLS failed"
        case .cancelled: return "cancelled"
        case .badURL, .unsupportedURL: return "the HTTP client cannot use this URL"
        default: return "transfer error \(error.code.rawValue)"
        }
    }
}

/// Answers a redirect with "do not follow": the 3xx becomes the attempt's answer (a followed 301/302/303 would
/// reach the new address as a GET without the payload, and look delivered).
private final class RedirectRefuser: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}
