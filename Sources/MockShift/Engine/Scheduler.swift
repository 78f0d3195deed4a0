import Foundation
import Synchronization

/// Identifies one scheduled timer, for ``Scheduler/cancel(_:)``. Equal when it names the same timer.
public struct TimerID: Hashable, Sendable {
    let slot: Scheduler.Slot

    public static func == (a: TimerID, b: TimerID) -> Bool { a.slot === b.slot }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(slot)) }
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

    /// Counts the pending timers scheduled with it (``pendingCount(tag:)``); the engine keeps one per namespace
    /// (``tag(_:)``), so a token's timer costs no lookup by name.
    public final class TimerTag: Sendable {
        let pending = Atomic<Int>(0)
    }

    /// One timer: its action until it is taken, by firing or by a cancel, whichever comes first.
    final class Slot: @unchecked Sendable {
        let lane: Int
        let tag: TimerTag?
        private let taken = Atomic<Bool>(false)
        /// Read and cleared only by the one caller of ``take()`` that wins (the atomic flag orders it).
        private var action: (@Sendable () -> Void)?

        init(lane: Int, tag: TimerTag?, action: @escaping @Sendable () -> Void) {
            self.lane = lane
            self.tag = tag
            self.action = action
        }

        var isTaken: Bool { taken.load(ordering: .acquiring) }

        /// The action, to the first caller only (nil to later ones); the slot lets it go, so a cancelled timer
        /// holds nothing (a run, a stream) while its heap entry waits for its deadline.
        func take() -> (@Sendable () -> Void)? {
            guard !taken.exchange(true, ordering: .acquiringAndReleasing) else { return nil }
            defer { action = nil }
            return action
        }
    }

    /// A heap entry: a plain value, so heap moves cost no reference counting; the heap owns one retain of `slot`.
    private struct Entry: Comparable {
        let deadline: UInt64
        let sequence: UInt64
        let slot: Unmanaged<Slot>
        static func == (a: Entry, b: Entry) -> Bool { a.sequence == b.sequence }
        static func < (a: Entry, b: Entry) -> Bool {
            (a.deadline, a.sequence) < (b.deadline, b.sequence)
        }
    }

    private struct State {
        var heap: [Entry] = []
        var nextSequence: UInt64 = 1
        var manualNow: UInt64 = 0
        var stopped = false
    }

    /// A timer due in a batch: who fires it, and when it was due.
    typealias Due = (slot: Slot, deadline: UInt64)

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
    /// Timers set and not yet fired or cancelled.
    private let pending = Atomic<Int>(0)
    /// The tags handed out by name (``tag(_:)``).
    private let tags = Mutex<[String: TimerTag]>([:])
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
        private let work = Mutex<(due: [Due], stopped: Bool)>(([], false))
        private let go = DispatchSemaphore(value: 0)
        private let done = DispatchSemaphore(value: 0)

        /// Hands `due` over (the scheduler's thread).
        func start(_ due: [Due]) {
            work.withLock { $0.due = due }
            go.signal()
        }
        /// Waits until the share handed over is fired (the scheduler's thread).
        func wait() { done.wait() }
        /// The next share to fire, nil once stopped (the lane's thread).
        func next() -> [Due]? {
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

    /// The tag that counts a namespace's timers (the same object for the same name, kept for the scheduler's life).
    public func tag(_ name: String) -> TimerTag {
        tags.withLock { tags in
            if let tag = tags[name] { return tag }
            let tag = TimerTag()
            tags[name] = tag
            return tag
        }
    }

    /// Runs `action` on the scheduler's thread once `delay` nanoseconds have passed. Timers with equal deadlines
    /// fire in the order they were scheduled. A `tag` (the run engine gives its runs' namespace, ``tag(_:)``)
    /// counts the timer in ``pendingCount(tag:)`` until it fires or is cancelled.
    ///
    /// `lane`: a key that keeps timers together on one of the scheduler's lanes (see
    /// ``init(clock:tickNanoseconds:lanes:aroundBatch:)``); nil = lane 0.
    @discardableResult
    public func schedule(afterNanoseconds delay: UInt64, tag: TimerTag? = nil, lane: UInt64? = nil,
                         _ action: @escaping @Sendable () -> Void) -> TimerID {
        let laneIndex = lane.map { Int($0 % UInt64(helpers.count + 1)) } ?? 0
        let (sum, overflow) = now.addingReportingOverflow(delay)
        let deadline = overflow ? UInt64.max : sum  // saturates: a wrapped deadline would fire at once
        let slot = Slot(lane: laneIndex, tag: tag, action: action)
        tag?.pending.add(1, ordering: .relaxed)
        pending.add(1, ordering: .relaxed)
        let isEarliest = state.withLock { st -> Bool in
            let entry = Entry(deadline: deadline, sequence: st.nextSequence, slot: .passRetained(slot))
            st.nextSequence += 1
            Scheduler.push(entry, into: &st.heap)
            return st.heap.first == entry
        }
        if isEarliest && clock == .real {
            wakeup.lock()
            wakeup.signal()
            wakeup.unlock()
        }
        return TimerID(slot: slot)
    }

    /// Cancels a timer; returns false when it already fired or was cancelled.
    @discardableResult
    public func cancel(_ id: TimerID) -> Bool {
        take(id.slot) != nil
    }

    /// Takes `slot`'s action (to fire it, or to drop it for a cancel) and uncounts it; nil when already taken.
    private func take(_ slot: Slot) -> (@Sendable () -> Void)? {
        guard let action = slot.take() else { return nil }
        slot.tag?.pending.subtract(1, ordering: .relaxed)
        pending.subtract(1, ordering: .relaxed)
        return action
    }

    /// Number of timers waiting to fire.
    public var pendingCount: Int { pending.load(ordering: .relaxed) }

    /// Number of timers set with the tag named `tag` that wait to fire.
    public func pendingCount(tag: String) -> Int {
        tags.withLock { $0[tag] }?.pending.load(ordering: .relaxed) ?? 0
    }

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

    /// Stops the thread; pending timers never fire (their actions are let go now).
    public func stop() {
        let heap = state.withLock { st -> [Entry] in
            st.stopped = true
            defer { st.heap.removeAll() }
            return st.heap
        }
        for entry in heap { _ = take(entry.slot.takeRetainedValue()) }
        for helper in helpers { helper.stop() }
        wakeup.lock()
        wakeup.broadcast()
        wakeup.unlock()
    }

    // MARK: Internals

    /// Pops the earliest live timer due at `limit` and takes its action, skipping cancelled entries.
    private func popDue(upTo limit: UInt64, settingNow: Bool) -> (deadline: UInt64, action: @Sendable () -> Void)? {
        while true {
            let popped = state.withLock { st -> Entry? in
                guard let top = st.heap.first, top.deadline <= limit else { return nil }
                Scheduler.popFirst(&st.heap)
                if settingNow { st.manualNow = max(st.manualNow, top.deadline) }
                return top
            }
            guard let popped else { return nil }
            if let action = take(popped.slot.takeRetainedValue()) { return (popped.deadline, action) }
        }
    }

    /// Takes every timer due at `limit` off the heap, in deadline order, skipping cancelled ones; each keeps its
    /// action (so ``cancel(_:)`` still works) until it is fired.
    private func takeDue(upTo limit: UInt64) -> [(due: Due, lane: Int)] {
        var entries: [Entry] = []
        state.withLock { st in
            while let top = st.heap.first, top.deadline <= limit {
                Scheduler.popFirst(&st.heap)
                entries.append(top)
            }
        }
        var due: [(due: Due, lane: Int)] = []
        due.reserveCapacity(entries.count)
        for entry in entries {
            let slot = entry.slot.takeRetainedValue()  // the heap's retain, now ours
            if !slot.isTaken { due.append(((slot, entry.deadline), slot.lane)) }
        }
        return due
    }

    /// Fires one lane's share of a batch, in order, inside `aroundBatch`, on the calling thread.
    private func fireBatch(_ due: [Due]) {
        guard !due.isEmpty else { return }
        let fire = { @Sendable [self] in
            var late: [UInt64] = []
            late.reserveCapacity(due.count)
            for (slot, deadline) in due {
                // Taken one by one: an earlier timer of the batch may have cancelled this one.
                guard let action = take(slot) else { continue }
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
                var shares = [[Due]](repeating: [], count: helpers.count + 1)
                for timer in due { shares[timer.lane].append(timer.due) }
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
                while let top = st.heap.first, top.slot.takeUnretainedValue().isTaken {
                    Scheduler.popFirst(&st.heap)
                    top.slot.release()
                }
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
