import HTTPTypes
import MockShiftHTTP

/// The namespace's run feed as Server-Sent Events (`GET /_mock/events`, issue 7): one event per
/// ``RunFeedEvent``, in the framing of a run's own stream (SPEC §5, ``SSEChannel``). The first event is `ready`
/// (the subscription exists: whatever happens from now on is sent); a `: keep-alive` comment goes out after 15 s
/// of silence; the body ends when the daemon shuts down, after the final events of the runs it interrupts. A
/// client that hangs up is released by the transport, which ends the subscription (`onClose`).
final class FeedStream: Sendable {
    private let channel: SSEChannel
    var body: StreamBody { channel.body }

    /// - Parameter keepAliveNanos: silence before a `: keep-alive` comment (15 s, as on a run's stream).
    init(scheduler: Scheduler, keepAliveNanos: UInt64 = KeepAlive.defaultInterval) {
        channel = SSEChannel(scheduler: scheduler, keepAliveInterval: keepAliveNanos)
    }

    /// The HTTP response carrying the feed.
    func response() -> Response { channel.response() }

    /// Sends the `ready` event and starts the keep-alive timer.
    func start() {
        channel.send([SSEChannel.frame("ready", ["type": "ready", "at": .string(iso8601(micros: wallClockMicros()))])])
        channel.startKeepAlive()
    }

    /// One feed event. Called under a run's lock (``RunEngine/subscribe(namespace:onEvent:onEnd:)``): format and
    /// queue only.
    func send(_ event: RunFeedEvent) {
        channel.send([SSEChannel.frame(event.type, event.json)])
    }

    /// Ends the body (daemon shutdown).
    func end() { channel.finish([]) }
}
