import HTTPTypes
import MockShiftHTTP
import Synchronization

/// The namespace's run feed as Server-Sent Events (`GET /_mock/events`, issue 7): `event: TYPE` + one
/// `data: {json}` line + a blank line per ``RunFeedEvent``, in the framing of a run's own stream (SPEC §5).
/// The first event is `ready` (the subscription exists: whatever happens from now on is sent); a `: keep-alive`
/// comment goes out after 15 s of silence; the body ends when the daemon shuts down, after the final events
/// of the runs it interrupts. A client that hangs up is released by the transport, which ends the
/// subscription (`onClose`).
final class FeedStream: Sendable {
    let body = StreamBody()
    private let scheduler: Scheduler
    private let keepAliveNanos: UInt64
    private struct State {
        var lastWrite: UInt64 = 0
        var keepAlive: TimerID?
        var done = false
    }
    private let state = Mutex(State())

    /// - Parameter keepAliveNanos: silence before a `: keep-alive` comment (15 s, as on a run's stream).
    init(scheduler: Scheduler, keepAliveNanos: UInt64 = EventStream.keepAliveNanos) {
        self.scheduler = scheduler
        self.keepAliveNanos = keepAliveNanos
        body.onClose { [weak self] in self?.stopKeepAlive() }
    }

    /// The HTTP response carrying the feed.
    func response() -> Response {
        Response(status: .ok, headerFields: [.contentType: "text/event-stream", .cacheControl: "no-cache"], stream: body)
    }

    /// Sends the `ready` event and starts the keep-alive timer.
    func start() {
        write(frame("ready", ["type": "ready", "at": .string(iso8601(micros: wallClockMicros()))]))
        scheduleKeepAlive(after: keepAliveNanos)
    }

    /// One feed event. Called under a run's lock (``RunEngine/subscribe(namespace:onEvent:onEnd:)``): format and
    /// queue only.
    func send(_ event: RunFeedEvent) {
        write(frame(event.type, event.json))
    }

    /// Ends the body (daemon shutdown).
    func end() {
        stopKeepAlive()
        body.finish()
    }

    private func frame(_ type: String, _ object: JSONObject) -> [UInt8] {
        var bytes = Array("event: \(type)\ndata: ".utf8)
        bytes += JSON.object(object).encoded()
        bytes += [10, 10]
        return bytes
    }

    private func write(_ bytes: [UInt8]) {
        state.withLock { $0.lastWrite = scheduler.now }
        body.write(bytes)
    }

    private func scheduleKeepAlive(after delay: UInt64) {
        let timer = scheduler.schedule(afterNanoseconds: delay) { [weak self] in self?.keepAliveTick() }
        let stale = state.withLock { st -> TimerID? in
            let old = st.keepAlive
            st.keepAlive = st.done ? nil : timer
            return st.done ? timer : old
        }
        if let stale { scheduler.cancel(stale) }
    }

    private func keepAliveTick() {
        let (done, quiet) = state.withLock { ($0.done, scheduler.now &- $0.lastWrite) }
        guard !done, !body.isClosed else { return }
        if quiet >= keepAliveNanos {
            write(Array(": keep-alive\n\n".utf8))
            scheduleKeepAlive(after: keepAliveNanos)
        } else {
            scheduleKeepAlive(after: keepAliveNanos - quiet)  // a full interval after the last write
        }
    }

    private func stopKeepAlive() {
        let timer = state.withLock { st -> TimerID? in
            st.done = true
            defer { st.keepAlive = nil }
            return st.keepAlive
        }
        if let timer { scheduler.cancel(timer) }
    }
}
