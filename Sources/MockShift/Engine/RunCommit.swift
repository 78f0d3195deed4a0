import Dispatch
import Logging
import Metrics
import Synchronization

/// What the engine reports and stores of a run: the namespace feed, the commit of each change (pending and
/// retried while the store cannot write, issue 11 item 2), and what follows a commit.
extension RunEngine {
    // MARK: - Run feed

    /// Sends what the run collected for the feed to its namespace's subscribers, in order. Called under the
    /// run's lock, after the commit of what it reports (so a reader that asks for the run's status is never
    /// behind the feed), at the end of every section that may have collected something.
    func deliverFeed(_ run: LiveRun, _ st: inout LiveState) {
        guard !st.feedItems.isEmpty, !st.commitPending else { return }
        let items = st.feedItems
        st.feedItems = []
        let subscribers = feed.subscribers(of: run.record.namespace)
        guard !subscribers.isEmpty else { return }
        for item in items {
            let event = feedEvent(item, run, st)
            for subscriber in subscribers { subscriber.onEvent(event) }
        }
    }

    /// Longest text of an output value a final event carries; the run's status has the whole result.
    static let feedTextLimit = 2_000

    func feedEvent(_ item: FeedItem, _ run: LiveRun, _ st: LiveState) -> RunFeedEvent {
        var o = JSONObject()
        let type: String
        switch item {
        case let .entry(index):
            let entry = st.timeline[index].objectValue ?? [:]
            type = entry["event"]?.stringValue ?? "event"
            o["type"] = .string(type)
            o["run_id"] = .string(run.record.id)
            o["pipeline_id"] = .string(run.record.pipelineID)
            for (k, v) in entry where k != "event" && k != "clock_ms" && k != "at" { o[k] = v }
            switch type {
            case "created":
                o["status"] = .string(RunStatus.inProgress.rawValue)
                o["mode"] = .string(run.record.mode.rawValue)
                if let version = run.record.version { o["version"] = .string(version) }
                o["nodes"] = .array(run.record.nodes.map { .string($0.id) })
                // What the run recorded, as its status shows it: a chatbot turn's `chatbot_id` and
                // `conversation_id` (the dashboard's conversation view follows its turns by them), `trace_id`, …
                for (k, v) in run.record.options ?? [:] where o[k] == nil { o[k] = v }
            case "paused": o["status"] = .string(RunStatus.paused.rawValue)
            case "resumed": o["status"] = .string(RunStatus.inProgress.rawValue)
            case RunStatus.completed.rawValue, RunStatus.failed.rawValue, RunStatus.terminated.rawValue:
                o["status"] = .string(type)
                if type == RunStatus.completed.rawValue, let result = st.record.result {
                    o["result"] = .object(Self.shortened(result))
                }
                if let usage = st.record.usage { o["output_tokens"] = usage["output_tokens"] }
            default: break
            }
            o["clock_ms"] = entry["clock_ms"]
            o["at"] = entry["at"]
        case let .tokens(node, outputs, tokens, clock, atMicros):
            type = "stream"
            o = ["type": "stream", "run_id": .string(run.record.id), "pipeline_id": .string(run.record.pipelineID),
                 "node": .string(node), "outputs": .array(outputs.map(JSON.string)), "text": .string(tokens.joined()),
                 "tokens": .int(Int64(tokens.count)), "clock_ms": .double(Double(clock) / 1_000_000),
                 "at": .string(iso8601(micros: atMicros))]
        }
        return RunFeedEvent(namespace: run.record.namespace, runID: run.record.id, pipelineID: run.record.pipelineID,
                            type: type, json: o)
    }

    /// Outputs with long texts cut to ``feedTextLimit`` characters (ending in `…`).
    static func shortened(_ outputs: JSONObject) -> JSONObject {
        var short = JSONObject()
        for (k, v) in outputs {
            if case let .string(text) = v, text.count > feedTextLimit {
                short[k] = .string(String(text.prefix(feedTextLimit)) + "…")
            } else {
                short[k] = v
            }
        }
        return short
    }

    // MARK: - Commit and notify

    /// What a commit leaves to do once the run's lock is released: the record as committed, the callers of
    /// terminate, pause or resume waiting for it, and, when the run just became final, its waiters.
    struct Committed {
        let record: RunRecord
        let replies: [ChangeReply]
        let waiters: [@Sendable (RunRecord) -> Void]
    }

    /// Commits the run's state and returns what must happen after the lock is released, or nil when the store
    /// could not take it. Then, with `retry`, the run keeps its state as "commit pending" (nothing of it is
    /// reported: no final event, no feed, no reply) and the pending-commit retry lands it once the store
    /// takes writes again (issue 11 item 2); without (a run being created, the shutdown), the caller gives up.
    func commitLocked(_ run: LiveRun, _ st: inout LiveState, retry: Bool = true) -> Committed? {
        if st.record.status.isFinal { st.record.events = st.timeline }
        do {
            try store.saveRuns([st.record])
        } catch {
            if retry && !st.commitPending { logger.warning("run \(st.record.id): commit pending, will retry: \(error)") }
            if retry {
                st.commitPending = true
                pendingCommits.add(run, engine: self)
            }
            return nil
        }
        return landedLocked(&st)
    }

    /// What follows a successful commit of the run's state, under its lock: it is no longer pending, and the
    /// callers waiting for it (and its waiters, if it is final) are handed back to be called after the lock.
    func landedLocked(_ st: inout LiveState) -> Committed {
        st.commitPending = false
        st.timelineCommitted = st.timeline.count
        let replies = st.commitReplies
        st.commitReplies = []
        guard st.record.status.isFinal else { return Committed(record: st.record, replies: replies, waiters: []) }
        let waiters = st.waiters
        st.waiters = []
        // Observers stay: a run that ends inside start() still announces itself to them afterwards, and a
        // final run emits nothing more anyway.
        return Committed(record: st.record, replies: replies, waiters: waiters)
    }

    func finish(_ committed: Committed?) {
        guard let committed else { return }
        if committed.record.status.isFinal {
            pruneIfDue()
            Counter(label: "mockshift_runs_finished_total", dimensions: [("status", committed.record.status.rawValue)]).increment()
            remember(committed.record)
            live.withLock { _ = $0.removeValue(forKey: committed.record.id) }
            for waiter in committed.waiters { waiter(committed.record) }
        }
        for reply in committed.replies { reply(.success(committed.record)) }
    }


    /// Tries again to commit every run with a pending commit; those that fail again stay pending.
    func retryPendingCommits() {
        for run in pendingCommits.take() {
            let committed = run.state.withLock { st -> Committed? in
                guard st.commitPending else { return nil }
                let outcome = commitLocked(run, &st)
                if outcome != nil { logger.info("run \(st.record.id): pending commit stored") }
                deliverFeed(run, &st)
                return outcome
            }
            finish(committed)
        }
        pendingCommits.scheduleNext(engine: self)
    }

    func remember(_ record: RunRecord) {
        finalRuns.withLock { cache in
            if cache.count >= Self.finalCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[record.id] = record
        }
    }
}

/// Runs whose last commit failed because the store could not write (issue 11 item 2), and the timer that
/// retries them: 50 ms after the first failure, then doubling up to 1 s while they keep failing. The retry runs
/// on a global queue, never on a transport or scheduler thread.
final class PendingCommits: Sendable {
    private struct State {
        var runs: [String: LiveRun] = [:]
        var scheduled = false
        var delayMs = 50
    }
    private let state = Mutex(State())

    /// Number of runs waiting for their commit.
    var count: Int { state.withLock { $0.runs.count } }

    /// Adds `run` (called under its lock) and starts the retry timer unless it is already going.
    func add(_ run: LiveRun, engine: RunEngine) {
        let due: Int? = state.withLock { s in
            s.runs[run.record.id] = run
            guard !s.scheduled else { return nil }
            s.scheduled = true
            return s.delayMs
        }
        if let due { schedule(after: due, engine) }
    }

    /// The runs to retry now; the timer stays claimed until ``scheduleNext(engine:)``.
    func take() -> [LiveRun] {
        state.withLock { s in
            defer { s.runs = [:] }
            return Array(s.runs.values)
        }
    }

    /// After a round: retry again later (backing off) if any run is still pending, else rest.
    func scheduleNext(engine: RunEngine) {
        let due: Int? = state.withLock { s in
            if s.runs.isEmpty {
                s.scheduled = false
                s.delayMs = 50
                return nil
            }
            s.delayMs = min(s.delayMs * 2, 1_000)
            return s.delayMs
        }
        if let due { schedule(after: due, engine) }
    }

    private func schedule(after ms: Int, _ engine: RunEngine) {
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) { [weak engine] in
            engine?.retryPendingCommits()
        }
    }
}
