import HTTPTypes
import MockShiftHTTP
import Synchronization

/// The sending side every Server-Sent-Events answer shares (SPEC §5): the streamed body, the framing of one event
/// (`event: TYPE` + one `data: {json}` line + a blank line), the `: keep-alive` comment after 15 s of silence, and
/// the fault `cut_stream_after_events` (``StreamCut``). A run's stream (``EventStream``), a chatbot turn's
/// (``ChatStream``) and the namespace feed (``FeedStream``) each decide what their events say and hand the bytes
/// here.
final class SSEChannel: Sendable {
    /// The headers of every event stream (also those of a `HEAD`, which gets no stream).
    static let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]

    let body = StreamBody()
    private let keepAlive: KeepAlive
    private let cut: Mutex<StreamCut>
    /// A cut fault counts events: callers then hand events over one frame each (``send(_:)``), never merged
    /// (``send(filling:)``). Set once, so the token hot path checks it without a lock.
    let isCutArmed: Bool

    /// - Parameters:
    ///   - keepAliveInterval: silence, in nanoseconds of `scheduler`'s clock, before a `: keep-alive` comment.
    ///   - cutAfter: an injected fault's event count after which the connection is dropped; nil = never.
    init(scheduler: Scheduler, keepAliveInterval: UInt64 = KeepAlive.defaultInterval, cutAfter: Int? = nil) {
        keepAlive = KeepAlive(body: body, scheduler: scheduler, interval: keepAliveInterval)
        cut = Mutex(StreamCut(after: cutAfter))
        isCutArmed = cutAfter != nil
        body.onClose { [keepAlive] in keepAlive.stop() }
    }

    /// The HTTP response carrying the stream.
    func response() -> Response { Response(status: .ok, headerFields: Self.headers, stream: body) }

    /// Starts the keep-alive timer (after the first event).
    func startKeepAlive() { keepAlive.start() }

    /// One event's bytes: `event: TYPE`, `data: ` + the object as JSON, a blank line.
    static func frame(_ type: String, _ object: JSONObject) -> [UInt8] {
        var bytes = Array("event: \(type)\ndata: ".utf8)
        bytes += JSON.object(object).encoded()
        bytes += [10, 10]
        return bytes
    }

    /// Queues events, one frame each; an armed cut lets through only its count, then breaks the body off.
    func send(_ frames: [[UInt8]]) {
        keepAlive.wrote()
        let (bytes, breakOff) = cut.withLock { $0.pass(frames) }
        if breakOff { body.breakOff(with: bytes) } else { body.write(bytes) }
    }

    /// Queues what `fill` appends, any number of events at once, straight into the body's buffer (the token hot
    /// path, ``StreamBody/write(_:)-(inout [UInt8]) -> Void``). Only while no cut is armed.
    func send(filling fill: (inout [UInt8]) -> Void) {
        keepAlive.wrote()
        body.write(fill)
    }

    /// Queues the last events and ends the body (or breaks it off, when an armed cut runs out on them).
    func finish(_ frames: [[UInt8]]) {
        keepAlive.stop()
        let (bytes, breakOff) = cut.withLock { $0.pass(frames) }
        if breakOff { body.breakOff(with: bytes) } else { body.finish(with: bytes) }
    }
}

/// The fault `cut_stream_after_events` (README "Test controls"; issue 12 item 8): a stream that sends `limit`
/// events and then loses its connection, with no terminal event, as a network failure mid-answer looks to a
/// client. Once the limit is reached the rest is dropped and the body broken off (``StreamBody/breakOff(with:)``).
/// The run goes on, as for any client that went away (SPEC §5), unless `serve --cancel-on-disconnect` is set.
struct StreamCut: Sendable {
    /// Events still to send; nil = no cut.
    private var left: Int?

    init(after limit: Int?) { left = limit }

    /// True when a cut is armed.
    var isArmed: Bool { left != nil }

    /// The events of `frames` to send, and whether the stream must be broken off after them.
    mutating func pass(_ frames: [[UInt8]]) -> (send: [UInt8], breakOff: Bool) {
        guard let n = left else { return (Array(frames.joined()), false) }
        let sent = frames.prefix(n)
        left = n - sent.count
        return (Array(sent.joined()), frames.count >= n)
    }
}
