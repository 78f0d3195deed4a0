import Glibc
import Synchronization
import Testing
@testable import MockShift

@Suite struct SchedulerTests {
    @Test func timersFireInDeadlineOrderAndTiesInSchedulingOrder() {
        let scheduler = Scheduler(clock: .manual)
        let fired = Mutex<[String]>([])
        scheduler.schedule(afterNanoseconds: 300) { fired.withLock { $0.append("c") } }
        scheduler.schedule(afterNanoseconds: 100) { fired.withLock { $0.append("a") } }
        scheduler.schedule(afterNanoseconds: 200) { fired.withLock { $0.append("b1") } }
        scheduler.schedule(afterNanoseconds: 200) { fired.withLock { $0.append("b2") } }
        scheduler.advance(byNanoseconds: 250)
        #expect(fired.withLock { $0 } == ["a", "b1", "b2"])
        #expect(scheduler.now == 250)
        scheduler.advance(byNanoseconds: 50)
        #expect(fired.withLock { $0 } == ["a", "b1", "b2", "c"])
    }

    @Test func cancelledTimerNeverFiresAndCancelReportsIt() {
        let scheduler = Scheduler(clock: .manual)
        let fired = Mutex<[Int]>([])
        let first = scheduler.schedule(afterNanoseconds: 10) { fired.withLock { $0.append(1) } }
        scheduler.schedule(afterNanoseconds: 20) { fired.withLock { $0.append(2) } }
        #expect(scheduler.cancel(first))
        #expect(!scheduler.cancel(first), "a second cancel must report that nothing was cancelled")
        scheduler.advance(byNanoseconds: 100)
        #expect(fired.withLock { $0 } == [2])
        #expect(scheduler.pendingCount == 0)
    }

    @Test func timersScheduledByAnActionFireInTheSameWindow() {
        let scheduler = Scheduler(clock: .manual)
        let fired = Mutex<[UInt64]>([])
        scheduler.schedule(afterNanoseconds: 10) {
            fired.withLock { $0.append(scheduler.now) }
            scheduler.schedule(afterNanoseconds: 10) { fired.withLock { $0.append(scheduler.now) } }
        }
        scheduler.advance(byNanoseconds: 25)
        #expect(fired.withLock { $0 } == [10, 20])
    }

    @Test func realClockFiresEarlierTimerScheduledAfterALaterOne() async throws {
        let scheduler = Scheduler(clock: .real)
        defer { scheduler.stop() }
        let fired = Mutex<[String]>([])
        scheduler.schedule(afterNanoseconds: 5_000_000_000) { fired.withLock { $0.append("late") } }
        scheduler.schedule(afterNanoseconds: 1_000_000) { fired.withLock { $0.append("early") } }
        let deadline = ContinuousClock.now + .seconds(5)
        while fired.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(2)) }
        #expect(fired.withLock { $0 } == ["early"], "the 1 ms timer must not wait behind the 5 s one")
    }

    /// Real clock in ticks: timers due within one tick fire as one batch inside `aroundBatch`, in deadline order,
    /// and a timer cancelled by an earlier one of its batch does not fire (issue 14 item 2).
    @Test func tickedRealClockFiresDueTimersAsOneBatchAndHonoursCancelsWithinIt() async throws {
        let batches = Mutex<[[String]]>([])
        let scheduler = Scheduler(clock: .real, tickNanoseconds: 1_000_000_000, aroundBatch: { fire in
            batches.withLock { $0.append([]) }
            fire()
        })
        defer { scheduler.stop() }
        let note = { @Sendable (name: String) in batches.withLock { $0[$0.count - 1].append(name) } }
        let victim = Mutex<TimerID?>(nil)
        // Due 30, 20 and 10 ms before a tick boundary at least a whole tick away: all three fire together at that
        // boundary however slowly this thread schedules them (within most of a second).
        let tick: UInt64 = 1_000_000_000
        let boundary = Scheduler.roundUp(scheduler.now + tick, to: tick)
        let before = { @Sendable (ms: UInt64) -> UInt64 in
            let due = boundary - ms * 1_000_000, now = scheduler.now
            return due > now ? due - now : 0
        }
        scheduler.schedule(afterNanoseconds: before(20)) {
            note("b")
            if let id = victim.withLock({ $0 }) { _ = scheduler.cancel(id) }
        }
        scheduler.schedule(afterNanoseconds: before(30)) { note("a") }
        victim.withLock { $0 = scheduler.schedule(afterNanoseconds: before(10)) { note("cancelled") } }
        let deadline = ContinuousClock.now + .seconds(5)
        while batches.withLock({ $0.flatMap { $0 }.count < 2 }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(batches.withLock { $0 } == [["a", "b"]], "one batch, in deadline order, without the cancelled timer")
        #expect(scheduler.pendingCount == 0)
    }

    /// Two lanes: timers keyed to one lane keep their deadline order and share a thread; the two lanes' timers
    /// run on two threads (issue 14 item 2).
    @Test func lanesKeepEachKeysOrderAndSplitTheWorkOverThreads() async throws {
        let scheduler = Scheduler(clock: .real, tickNanoseconds: 1_000_000, lanes: 2)
        defer { scheduler.stop() }
        let fired = Mutex<[(key: UInt64, step: Int, thread: UInt)]>([])
        for step in 0..<20 {
            for key in UInt64(0)..<4 {
                scheduler.schedule(afterNanoseconds: UInt64(1_000_000 + step * 200_000), lane: key) {
                    fired.withLock { $0.append((key, step, UInt(pthread_self()))) }
                }
            }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while fired.withLock({ $0.count }) < 80 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let all = fired.withLock { $0 }
        #expect(all.count == 80)
        for key in UInt64(0)..<4 {
            let mine = all.filter { $0.key == key }
            #expect(mine.map(\.step) == Array(0..<20), "lane key \(key) fired out of order")
            #expect(Set(mine.map(\.thread)).count == 1, "one key's timers on one thread")
        }
        #expect(Set(all.map(\.thread)).count == 2, "two lanes, two threads")
    }

    /// A cancelled timer lets its action (and what it holds: a live run) go at once, not when its deadline comes
    /// round; `stop()` lets every pending one go. Tags count per name.
    @Test func cancelAndStopLetTheActionGoAndTagsCountPerName() {
        final class Held: Sendable {}
        let scheduler = Scheduler(clock: .manual)
        let a = scheduler.tag("ns-a"), b = scheduler.tag("ns-b")
        #expect(scheduler.tag("ns-a") === a, "one tag per name")
        weak var cancelledHeld: Held?
        weak var stoppedHeld: Held?
        do {
            let held = Held(), other = Held()
            cancelledHeld = held
            stoppedHeld = other
            let timer = scheduler.schedule(afterNanoseconds: 1_000_000_000, tag: a) { _ = held }
            scheduler.schedule(afterNanoseconds: 2_000_000_000, tag: b) { _ = other }
            scheduler.schedule(afterNanoseconds: 2_000_000_000, tag: a) {}
            #expect(scheduler.pendingCount(tag: "ns-a") == 2)
            #expect(scheduler.pendingCount(tag: "ns-b") == 1)
            #expect(scheduler.pendingCount(tag: "unknown") == 0)
            #expect(scheduler.cancel(timer))
        }
        #expect(cancelledHeld == nil, "the cancelled timer's action was let go before its deadline")
        #expect(stoppedHeld != nil, "a pending timer holds its action")
        #expect(scheduler.pendingCount(tag: "ns-a") == 1)
        #expect(scheduler.pendingCount == 2)
        scheduler.stop()
        #expect(stoppedHeld == nil, "stop() lets pending actions go")
        #expect(scheduler.pendingCount == 0)
        #expect(scheduler.pendingCount(tag: "ns-b") == 0)
    }

    @Test func roundUpToTicksSaturates() {
        #expect(Scheduler.roundUp(0, to: 1_000) == 0)
        #expect(Scheduler.roundUp(1, to: 1_000) == 1_000)
        #expect(Scheduler.roundUp(1_000, to: 1_000) == 1_000)
        #expect(Scheduler.roundUp(UInt64.max - 5, to: 1_000) == UInt64.max)
    }
}

@Suite struct LatenessTests {
    @Test func quantilesComeFromFiftyMicrosecondBuckets() {
        var late = Scheduler.Lateness()
        #expect(late.quantileMilliseconds(0.99) == 0)
        for _ in 0..<98 { late.record(10_000) }        // 0.01 ms: first bucket
        late.record(2_000_000)                         // 2 ms
        late.record(500_000_000)                       // 500 ms: past the last bucket
        #expect(late.fired == 100)
        #expect(late.quantileMilliseconds(0.5) == 0.05)
        #expect(late.quantileMilliseconds(0.99) == 2.05)
        #expect(late.quantileMilliseconds(1.0) == 500)
    }
}
