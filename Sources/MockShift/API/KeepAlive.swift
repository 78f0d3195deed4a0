import MockShiftHTTP
import Synchronization

/// The `: keep-alive` comment of a Server-Sent-Events body (SPEC §5): written after `interval` nanoseconds
/// without a write, on `scheduler`'s clock, until ``stop()`` or the client goes away. Each ``SSEChannel`` (every
/// event stream) has one and calls ``wrote()`` after every write.
final class KeepAlive: Sendable {
    /// 15 s, for both streams.
    static let defaultInterval: UInt64 = 15_000_000_000

    private let body: StreamBody
    private let scheduler: Scheduler
    private let interval: UInt64
    private struct State {
        var timer: TimerID?
        var stopped = false
    }
    private let state = Mutex(State())
    /// When the last write was, on the scheduler's clock: set at every event, so a plain atomic, no lock.
    private let lastWrite = Atomic<UInt64>(0)

    init(body: StreamBody, scheduler: Scheduler, interval: UInt64 = KeepAlive.defaultInterval) {
        self.body = body
        self.scheduler = scheduler
        self.interval = interval
    }

    /// Records a write now (the next comment comes a full interval later).
    func wrote() { lastWrite.store(scheduler.now, ordering: .relaxed) }

    /// Starts the timer (a first write should come before).
    func start() { schedule(after: interval) }

    /// No comment from now on; cancels the timer.
    func stop() {
        let timer = state.withLock { st -> TimerID? in
            st.stopped = true
            defer { st.timer = nil }
            return st.timer
        }
        if let timer { scheduler.cancel(timer) }
    }

    private func schedule(after delay: UInt64) {
        let timer = scheduler.schedule(afterNanoseconds: delay) { [weak self] in self?.tick() }
        let stale = state.withLock { st -> TimerID? in
            let old = st.timer
            st.timer = st.stopped ? nil : timer
            return st.stopped ? timer : old
        }
        if let stale { scheduler.cancel(stale) }
    }

    private func tick() {
        let stopped = state.withLock { $0.stopped }
        let last = lastWrite.load(ordering: .relaxed), now = scheduler.now  // in this order: now >= last
        let quiet = now > last ? now - last : 0
        guard !stopped, !body.isClosed else { return }
        if quiet >= interval {
            body.write(Array(": keep-alive\n\n".utf8))
            wrote()
            schedule(after: interval)
        } else {
            schedule(after: interval - quiet)  // a full interval after the last write
        }
    }
}
