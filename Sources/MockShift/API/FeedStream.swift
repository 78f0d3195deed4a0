import HTTPTypes
import MockShiftHTTP

/// The namespace's run feed as Server-Sent Events (`GET /_mock/events`, issue 7): `event: TYPE` + one
/// `data: {json}` line + a blank line per ``RunFeedEvent``, in the framing of a run's own stream (SPEC §5).
/// The first event is `ready` (the subscription exists: whatever happens from now on is sent); a `: keep-alive`
/// comment goes out after 15 s of silence; the body ends when the daemon shuts down, after the final events
/// of the runs it interrupts. A client that hangs up is released by the transport, which ends the
/// subscription (`onClose`).
final class FeedStream: Sendable {
    let body = StreamBody()
    private let keepAlive: KeepAlive

    /// - Parameter keepAliveNanos: silence before a `: keep-alive` comment (15 s, as on a run's stream).
    init(scheduler: Scheduler, keepAliveNanos: UInt64 = KeepAlive.defaultInterval) {
        keepAlive = KeepAlive(body: body, scheduler: scheduler, interval: keepAliveNanos)
        body.onClose { [keepAlive] in keepAlive.stop() }
    }

    /// The headers of the feed's response (also those of a `HEAD`, which gets no stream).
    static let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]

    /// The HTTP response carrying the feed.
    func response() -> Response {
        Response(status: .ok, headerFields: Self.headers, stream: body)
    }

    /// Sends the `ready` event and starts the keep-alive timer.
    func start() {
        write(frame("ready", ["type": "ready", "at": .string(iso8601(micros: wallClockMicros()))]))
        keepAlive.start()
    }

    /// One feed event. Called under a run's lock (``RunEngine/subscribe(namespace:onEvent:onEnd:)``): format and
    /// queue only.
    func send(_ event: RunFeedEvent) {
        write(frame(event.type, event.json))
    }

    /// Ends the body (daemon shutdown).
    func end() {
        keepAlive.stop()
        body.finish()
    }

    private func frame(_ type: String, _ object: JSONObject) -> [UInt8] {
        var bytes = Array("event: \(type)\ndata: ".utf8)
        bytes += JSON.object(object).encoded()
        bytes += [10, 10]
        return bytes
    }

    private func write(_ bytes: [UInt8]) {
        keepAlive.wrote()
        body.write(bytes)
    }
}
