import Foundation
import Synchronization

/// Identifies one scheduled timer, for ``Scheduler/cancel(_:)``.
public struct TimerID: Hashable, Sendable {
    let value: UInt64
}

/// The one timer scheduler that drives every run (SPEC §6): a deadline heap served by a single thread, so
/// thousands of live runs need no thread each. Times are nanoseconds on the scheduler's clock.
///
/// With `clock: .manual` no thread runs: time moves only through ``advance(byNanoseconds:)``, which fires
/// due timers on the caller's thread in deadline order. Tests use it for exact timing; SPEC §6's
/// `--clock manual` will use it too.
public final class Scheduler: Sendable {
    /// Where the scheduler's time comes from.
    public enum Clock: Sendable {
        /// The monotonic clock; a background thread fires timers.
        case real
        /// Time starts at 0 and moves only with ``Scheduler/advance(byNanoseconds:)``.
        case manual
    }

    private struct Entry: Comparable {
        let deadline: UInt64
        let sequence: UInt64
        static func < (a: Entry, b: Entry) -> Bool {
            (a.deadline, a.sequence) < (b.deadline, b.sequence)
        }
    }

    private struct State {
        var heap: [Entry] = []
        var actions: [UInt64: (tag: String?, lane: Int, action: @Sendable () -> Void)] = [:]
        /// Pending timers by tag (a namespace), kept as timers are set, fire and are cancelled.
        var pendingByTag: [String: Int] = [:]

        /// Takes timer `id` out, with its tag's count.
        mutating func remove(_ id: UInt64) -> (@Sendable () -> Void)? {
            guard let entry = actions.removeValue(forKey: id) else { return nil }
            if let tag = entry.tag {
                let left = (pendingByTag[tag] ?? 1) - 1
                pendingByTag[tag] = left > 0 ? left : nil
            }
            return entry.action
        }
        var nextSequence: UInt64 = 1
        var manualNow: UInt64 = 0
        var stopped = false
    }

    /// How late timers fire on the real clock: a histogram of (fire time - deadline) in 50 µs buckets up to
    /// 100 ms, plus the maximum. Read by `GET /_mock/stats` and `scripts/bench-live-runs` (issue 5 target:
    /// p99 <= 5 ms with 10,000 live runs).
    public struct Lateness: Sendable {
        /// Bucket width in nanoseconds.
        public static let bucketNanoseconds: UInt64 = 50_000
        /// counts[i] = timers that fired between i and i+1 bucket widths late; the last bucket holds the rest.
        public var counts = [UInt64](repeating: 0, count: 2_001)
        /// Timers measured.
        public var fired: UInt64 = 0
        /// Worst lateness seen, in nanoseconds.
        public var maxNanoseconds: UInt64 = 0

        mutating func record(_ nanoseconds: UInt64) {
            counts[Int(min(nanoseconds / Self.bucketNanoseconds, UInt64(counts.count - 1)))] += 1
            fired += 1
            maxNanoseconds = max(maxNanoseconds, nanoseconds)
        }

        /// The lateness at quantile `q` (0...1) in milliseconds: the upper edge of the bucket that holds it
        /// (so at most 0.05 ms pessimistic); 0 when nothing fired.
        public func quantileMilliseconds(_ q: Double) -> Double {
            guard fired > 0 else { return 0 }
            let rank = UInt64((Double(fired) * q).rounded(.up))
            var seen: UInt64 = 0
            for (i, c) in counts.enumerated() {
                seen += c
                if seen >= max(rank, 1) {
                    if i == counts.count - 1 { return Double(maxNanoseconds) / 1e6 }
                    return Double(UInt64(i + 1) * Self.bucketNanoseconds) / 1e6
                }
            }
            return Double(maxNanoseconds) / 1e6
        }
    }

    public let clock: Clock
    private let state = Mutex(State())
    private let lateness = Mutex(Lateness())
    private let wakeup = NSCondition()  // signalled when an earlier deadline arrives or on stop
    private let origin = DispatchTime.now().uptimeNanoseconds

    /// Real clock: timers are served in ticks of this many nanoseconds (0 = at each deadline).
    public let tickNanoseconds: UInt64
    /// Real clock: wraps the firing of each batch of due timers (see ``init(clock:tickNanoseconds:aroundBatch:)``).
    private let aroundBatch: (@Sendable (() -> Void) -> Void)?

    /// Creates a scheduler; with `.real` its thread starts at once.
    ///
    /// - Parameters:
    ///   - tickNanoseconds: real clock only: the thread wakes on multiples of this period (the next deadline
    ///     rounded up) and fires every timer then due as one batch, instead of waking at each deadline. At
    ///     thousands of live streams this turns a wake-up and a transport round trip per token into one per tick
    ///     (issue 14 item 2; measured with `scripts/bench-streams`), at the price of up to one tick of lateness.
    ///     Timers still fire in deadline order, and a timer cancelled by an earlier one of its batch does not fire.
    ///   - aroundBatch: real clock only: called with a closure that fires one batch; it must call it once, on
    ///     this thread (the daemon holds streaming connections' resumes back until the batch is over:
    ///     `MockShiftHTTP.ResumeBatch`).
    ///   - lanes: real clock only: how many threads fire a batch. A timer scheduled with a `lane` key fires on
    ///     lane `key % lanes` (the engine keys a run's timers by the run, so one run's timers keep their order);
    ///     other timers on lane 0, the scheduler's own thread. Each further lane is a thread that fires its share
    ///     of the batch while lane 0 fires its own; the next batch waits for all of them. At 5,000 streams the
    ///     tokens' work no longer waits for one core (issue 14 item 2).
    public init(clock: Clock = .real, tickNanoseconds: UInt64 = 0, lanes: Int = 1,
                aroundBatch: (@Sendable (() -> Void) -> Void)? = nil) {
        self.clock = clock
        self.tickNanoseconds = tickNanoseconds
        self.aroundBatch = aroundBatch
        self.helpers = clock == .real ? (1..<max(lanes, 1)).map { _ in LaneThread() } : []
        if clock == .real {
            for (i, helper) in helpers.enumerated() {
                let thread = Thread { [self, helper] in
                    while let due = helper.next() {
                        fireBatch(due)
                        helper.finished()
                    }
                }
                thread.name = "mockshift-lane-\(i + 1)"
                thread.start()
            }
            let thread = Thread { [self] in self.runLoop() }
            thread.name = "mockshift-scheduler"
            thread.start()
        }
    }

    /// Threads firing lanes 1... of each batch (empty with one lane or the manual clock).
    private let helpers: [LaneThread]

    /// One further lane's thread: gets its share of a batch, fires it, says it is done.
    private final class LaneThread: Sendable {
        private let work = Mutex<(due: [(id: UInt64, deadline: UInt64)], stopped: Bool)>(([], false))
        private let go = DispatchSemaphore(value: 0)
        private let done = DispatchSemaphore(value: 0)

        /// Hands `due` over (the scheduler's thread).
        func start(_ due: [(id: UInt64, deadline: UInt64)]) {
            work.withLock { $0.due = due }
            go.signal()
        }
        /// Waits until the share handed over is fired (the scheduler's thread).
        func wait() { done.wait() }
        /// The next share to fire, nil once stopped (the lane's thread).
        func next() -> [(id: UInt64, deadline: UInt64)]? {
            go.wait()
            return work.withLock { $0.stopped ? nil : $0.due }
        }
        func finished() { done.signal() }
        func stop() {
            work.withLock { $0.stopped = true }
            go.signal()
        }
    }

    /// Nanoseconds since the scheduler started (real) or the manual time.
    public var now: UInt64 {
        switch clock {
        case .real: DispatchTime.now().uptimeNanoseconds - origin
        case .manual: state.withLock { $0.manualNow }
        }
    }

    /// Runs `action` on the scheduler's thread once `delay` nanoseconds have passed. Timers with equal deadlines
    /// fire in the order they were scheduled. A `tag` (the run engine gives its runs' namespace) counts the timer
    /// in ``pendingCount(tag:)`` until it fires or is cancelled.
    ///
    /// `lane`: a key that keeps timers together on one of the scheduler's lanes (see
    /// ``init(clock:tickNanoseconds:lanes:aroundBatch:)``); nil = lane 0.
    @discardableResult
    public func schedule(afterNanoseconds delay: UInt64, tag: String? = nil, lane: UInt64? = nil,
                         _ action: @escaping @Sendable () -> Void) -> TimerID {
        let laneIndex = lane.map { Int($0 % UInt64(helpers.count + 1)) } ?? 0
        let (sum, overflow) = now.addingReportingOverflow(delay)
        let deadline = overflow ? UInt64.max : sum  // saturates: a wrapped deadline would fire at once
        let (id, isEarliest) = state.withLock { st -> (UInt64, Bool) in
            let id = st.nextSequence
            st.nextSequence += 1
            st.actions[id] = (tag, laneIndex, action)
            if let tag { st.pendingByTag[tag, default: 0] += 1 }
            let entry = Entry(deadline: deadline, sequence: id)
            Scheduler.push(entry, into: &st.heap)
            return (id, st.heap.first == entry)
        }
        if isEarliest && clock == .real {
            wakeup.lock()
            wakeup.signal()
            wakeup.unlock()
        }
        return TimerID(value: id)
    }

    /// Cancels a timer; returns false when it already fired or was cancelled.
    @discardableResult
    public func cancel(_ id: TimerID) -> Bool {
        state.withLock { $0.remove(id.value) != nil }
    }

    /// Number of timers waiting to fire.
    public var pendingCount: Int { state.withLock { $0.actions.count } }

    /// Number of timers set with `tag` that wait to fire.
    public func pendingCount(tag: String) -> Int { state.withLock { $0.pendingByTag[tag] ?? 0 } }

    /// Lateness of every timer fired so far by the real clock's thread (the manual clock is never late).
    public var latenessSnapshot: Lateness { lateness.withLock { $0 } }

    /// Manual clock only: moves time forward and fires every timer that falls due, in order, on this thread
    /// (including timers those actions schedule within the window).
    public func advance(byNanoseconds delta: UInt64) {
        precondition(clock == .manual, "advance is for the manual clock")
        let target = state.withLock { st in
            let (sum, overflow) = st.manualNow.addingReportingOverflow(delta)
            return overflow ? UInt64.max : sum  // saturates: time never wraps back to the start
        }
        while let (_, action) = popDue(upTo: target, settingNow: true) { action() }
        state.withLock { $0.manualNow = max($0.manualNow, target) }
    }

    /// Stops the thread; pending timers never fire.
    public func stop() {
        state.withLock {
            $0.stopped = true
            $0.actions.removeAll()
            $0.pendingByTag.removeAll()
        }
        for helper in helpers { helper.stop() }
        wakeup.lock()
        wakeup.broadcast()
        wakeup.unlock()
    }

    // MARK: Internals

    /// Pops the earliest live timer due at `limit`, skipping cancelled entries.
    private func popDue(upTo limit: UInt64, settingNow: Bool) -> (deadline: UInt64, action: @Sendable () -> Void)? {
        state.withLock { st in
            while let top = st.heap.first, top.deadline <= limit {
                Scheduler.popFirst(&st.heap)
                if let action = st.remove(top.sequence) {
                    if settingNow { st.manualNow = max(st.manualNow, top.deadline) }
                    return (top.deadline, action)
                }
            }
            return nil
        }
    }

    /// Takes every timer due at `limit` off the heap, in deadline order, skipping cancelled ones; their actions
    /// stay registered (so ``cancel(_:)`` still works) until each is fired.
    private func takeDue(upTo limit: UInt64) -> [(id: UInt64, deadline: UInt64, lane: Int)] {
        state.withLock { st in
            var due: [(id: UInt64, deadline: UInt64, lane: Int)] = []
            while let top = st.heap.first, top.deadline <= limit {
                Scheduler.popFirst(&st.heap)
                if let entry = st.actions[top.sequence] { due.append((top.sequence, top.deadline, entry.lane)) }
            }
            return due
        }
    }

    /// Fires one lane's share of a batch, in order, inside `aroundBatch`, on the calling thread.
    private func fireBatch(_ due: [(id: UInt64, deadline: UInt64)]) {
        guard !due.isEmpty else { return }
        let fire = { @Sendable [self] in
            var late: [UInt64] = []
            late.reserveCapacity(due.count)
            for (id, deadline) in due {
                // Taken out one by one: an earlier timer of the batch may have cancelled this one.
                guard let action = state.withLock({ $0.remove(id) }) else { continue }
                let l = now &- deadline
                late.append(l > (1 << 62) ? 0 : l)
                action()
            }
            lateness.withLock { for l in late { $0.record(l) } }  // one lock a batch, not a token
        }
        if let aroundBatch { aroundBatch(fire) } else { fire() }
    }

    /// `value` rounded up to a multiple of `step` (saturating).
    static func roundUp(_ value: UInt64, to step: UInt64) -> UInt64 {
        let (sum, overflow) = value.addingReportingOverflow(step - 1)
        return overflow ? UInt64.max : sum / step * step
    }

    private func runLoop() {
        while true {
            if state.withLock({ $0.stopped }) { return }
            let due = takeDue(upTo: now)
            if !due.isEmpty {
                var shares = [[(id: UInt64, deadline: UInt64)]](repeating: [], count: helpers.count + 1)
                for timer in due { shares[timer.lane].append((timer.id, timer.deadline)) }
                var started: [LaneThread] = []
                for (i, helper) in helpers.enumerated() where !shares[i + 1].isEmpty {
                    helper.start(shares[i + 1])
                    started.append(helper)
                }
                fireBatch(shares[0])
                for helper in started { helper.wait() }
                continue
            }
            let next: UInt64? = state.withLock { st in
                while let top = st.heap.first, st.actions[top.sequence] == nil { Scheduler.popFirst(&st.heap) }
                return st.heap.first?.deadline
            }
            wakeup.lock()
            // Re-check under the condition's lock so a schedule() between the check and the wait is not lost.
            let earliest = state.withLock { $0.heap.first?.deadline }
            if earliest == next, !state.withLock({ $0.stopped }) {
                if let next {
                    let current = now  // read once: it moves between two reads
                    let wake = tickNanoseconds > 0 ? Scheduler.roundUp(next, to: tickNanoseconds) : next
                    let waitNanos = wake > current ? wake - current : 0
                    if waitNanos > 0 { _ = wakeup.wait(until: Date(timeIntervalSinceNow: Double(waitNanos) / 1e9)) }
                } else {
                    wakeup.wait()
                }
            }
            wakeup.unlock()
        }
    }

    private static func push(_ entry: Entry, into heap: inout [Entry]) {
        heap.append(entry)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[i] < heap[parent] { heap.swapAt(i, parent); i = parent } else { break }
        }
    }

    private static func popFirst(_ heap: inout [Entry]) {
        guard !heap.isEmpty else { return }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count && heap[l] < heap[smallest] { smallest = l }
            if r < heap.count && heap[r] < heap[smallest] { smallest = r }
            if smallest == i { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}
