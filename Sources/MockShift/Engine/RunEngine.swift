import Dispatch
import Logging
import Metrics
import Synchronization

/// Timing and text settings of the simulation (`serve` options, SPEC §1 and §6).
public struct EngineSettings: Sendable {
    /// Time to first token of each LLM node, in simulated milliseconds.
    public var ttftMilliseconds: Double = 400
    /// Tokens per simulated second after the first.
    public var tokensPerSecond: Double = 40
    /// Multiplies every simulated delay; 0 makes runs instant.
    public var timeScale: Double = 1
    /// Varies every simulated text.
    public var seed: UInt64 = 0
    /// `--strict-nodes`: a node type without real semantics fails the run instead of returning placeholders.
    public var strictNodes = false
    /// `--replay-strict` (issue 15 item 3): an LLM node of a scripted run (``RunOptions/scriptedPipeline``) that no
    /// scripted answer matches fails the run, naming pipeline, node and prompt, instead of simulating.
    public var replayStrict = false
    /// A recorded answer's timing (``LLMScript/tokenOffsetsMilliseconds``): token `k` (1-based) is due at
    /// `tokenOffsets[k − 1]` simulated ms instead of at TTFT + k / rate. Set per node, never by an option.
    var tokenOffsets: [Double]?

    public init() {}

    /// A delay so long it never comes (about 31 years): the cap for absurd settings.
    static let never: UInt64 = 1_000_000_000_000_000_000

    /// Real nanoseconds after an LLM node's start at which its `k`-th token (1-based) is emitted: TTFT, then
    /// one token every `1 / rate` seconds; `k = 0` is the TTFT itself. All scaled by the time scale.
    ///
    /// With recorded offsets, token `k` is due at its offset and `k = 0` means the first one (the TTFT); `k` beyond
    /// the last offset means the last.
    func due(token k: Int) -> UInt64 {
        let simulatedMs: Double
        if let offsets = tokenOffsets {
            guard !offsets.isEmpty else { return 0 }
            simulatedMs = offsets[min(max(k, 1), offsets.count) - 1]
        } else {
            simulatedMs = ttftMilliseconds + Double(k) * 1000 / max(tokensPerSecond, 0.001)
        }
        let nanos = simulatedMs * timeScale * 1_000_000
        guard nanos.isFinite, nanos > 0 else { return nanos.isNaN || nanos <= 0 ? 0 : Self.never }
        return nanos >= Double(Self.never) ? Self.never : UInt64(nanos)
    }

    /// Tokens emitted `elapsed` real nanoseconds after an LLM node started: `max(0, t − ttft) × rate / 1000`
    /// in simulated milliseconds, rounded down (SPEC §6), and never more than `total`.
    /// With recorded offsets: the tokens whose offset has passed (never more than `total`).
    func emitted(after elapsed: UInt64, of total: Int) -> Int {
        guard timeScale > 0 else { return total }
        if let offsets = tokenOffsets {
            // The offsets never decrease (checked when the script is added): the due tokens are a prefix.
            var low = 0, high = min(total, offsets.count)
            while low < high {
                let mid = (low + high) / 2
                if due(token: mid + 1) <= elapsed { low = mid + 1 } else { high = mid }
            }
            return low
        }
        let simulatedMs = Double(elapsed) / 1_000_000 / timeScale
        // Clamped in floating point before the conversion: a tiny time scale or a decades-long wait puts this far
        // outside `Int` (and `Int(Double)` traps there).
        let estimate = ((simulatedMs - ttftMilliseconds) * tokensPerSecond / 1000).rounded(.down)
        var n = estimate >= Double(total) ? total : estimate > 0 ? Int(estimate) : 0
        // Agree exactly with `due(token:)` despite floating-point rounding, so a timer set for token k sees it.
        while n < total && due(token: n + 1) <= elapsed { n += 1 }
        while n > 0 && due(token: n) > elapsed { n -= 1 }
        return n
    }
}

/// What a streaming run tells its observer as it goes (SPEC §5). The final state arrives through `onFinish`.
public enum RunEvent: Sendable {
    /// The run exists and is committed as `in_progress`: always the first event.
    case started(RunRecord)
    /// Tokens an LLM node just emitted, in order, for the output nodes that stream them (output-node names).
    case tokens(outputs: [String], tokens: [String])
    /// A whole output value that became ready (`stream_all_outputs`, outputs not fed by an LLM response).
    case output(name: String, value: JSON)
}

/// Options of a run beyond its inputs (API.md §4.1).
public struct RunOptions: Sendable {
    /// `node_input_overrides`: `{node id or name: {input: value}}`, over the stored inputs for this run.
    public var overrides: JSONObject = [:]
    /// `stream_all_outputs`: every output streams (SPEC §5).
    public var streamAllOutputs = false
    /// Stored with the run and shown in its status: `session_id`, `trace_id`, `webhook_url`,
    /// `send_intermediate_results`.
    public var recorded: JSONObject = [:]
    /// Injected LLM failures (`/_mock/faults`).
    public var llmFailures: [LLMFailure] = []
    /// Scripted LLM answers that may apply to this run's LLM nodes (`/_mock/llm`, fixtures), first match wins.
    public var llmScripts: [LLMScript] = []
    /// The name of the pipeline whose scripted answers `llmScripts` are, for runs scripted answers apply to
    /// (pipeline runs, chatbot turns): with `--replay-strict` (``EngineSettings/replayStrict``) an LLM node of such a
    /// run that no script matches fails it, naming this pipeline. Nil for other runs, which simulate.
    public var scriptedPipeline: String?
    /// The conversation a chatbot turn belongs to, for `chat_memory` nodes (SPEC §9); nil for plain runs, whose
    /// `chat_memory` nodes output an empty memory.
    public var chatHistory: ChatHistory?
    /// The files uploaded to that conversation before the turn started, in upload order, for `chat_file_reader`
    /// nodes (SPEC §9 "Files"); nil for plain runs, whose `chat_file_reader` nodes output no documents.
    public var chatFiles: [ChatFile]?

    /// An LLM node that fails after emitting `afterTokens` tokens: the run fails with `message`.
    public struct LLMFailure: Sendable {
        /// The node id, or nil for every LLM node.
        public var nodeID: String?
        public var afterTokens: Int
        public var message: String

        public init(nodeID: String?, afterTokens: Int, message: String) {
            self.nodeID = nodeID
            self.afterTokens = afterTokens
            self.message = message
        }
    }

    public init() {}
}

/// Runs pipelines (SPEC §3–6): evaluates the node graph in dependency order, drives LLM nodes with the one
/// ``Scheduler``, streams tokens to observers, and applies terminate, pause and resume. Every state change is
/// committed to the ``Store`` before the engine returns or tells anyone, so a response that reports it never
/// runs ahead of SQLite. Each run has its own lock; nothing holds a global lock across a tick (TECH-NOTES R6).
/// Knows nothing of HTTP.
public final class RunEngine: Sendable {
    let store: Store
    public let scheduler: Scheduler
    let settings: EngineSettings
    let logger: Logger
    let live = Mutex(LiveRunTable())
    /// Set by ``shutdown()``: no run starts afterwards.
    let closed = Atomic<Bool>(false)
    /// Final runs by id: they never change again (SPEC §3), so a status request need not read SQLite twice.
    let finalRuns = Mutex<[String: RunRecord]>([:])
    /// `--keep-runs` and its bookkeeping: finished runs since the last pruning, and whether one is under way.
    let retention = Mutex<(keep: Int, finishedSincePrune: Int, pruning: Bool)>((0, 0, false))
    static let finalCacheLimit = 4_096  // bounded memory (scripts/bench-hygiene); older runs are read from SQLite
    /// Subscribers of the namespace-wide run feed (`GET /_mock/events`, issue 7).
    let feed = RunFeed()
    /// Runs whose last commit failed, retried with back-off (50 ms doubling to 1 s) off every caller's thread
    /// until each lands.
    let pendingCommits = PendingCommits()

    public init(store: Store, scheduler: Scheduler, settings: EngineSettings, logger: Logger) {
        self.store = store
        self.scheduler = scheduler
        self.settings = settings
        self.logger = logger
    }

    /// Subscribes to every run event of `namespace` (issue 7's live feed): run created, node started, completed
    /// or skipped, first token, the tokens of streaming outputs as they are generated (only streaming runs
    /// produce them one by one), paused, resumed, and the final status with its error or result. Events of one
    /// run arrive in order, each after the state it reports is committed; `onEvent` is called under the run's
    /// lock, from any thread, so it must be quick (format and queue) and thread-safe. `onEnd` runs once when
    /// the engine shuts down, after the last runs' final events.
    ///
    /// - Throws: `.unavailable` when the engine is shutting down.
    public func subscribe(namespace: String, onEvent: @escaping @Sendable (RunFeedEvent) -> Void,
                          onEnd: @escaping @Sendable () -> Void) throws(APIError) -> RunFeedSubscription {
        guard let subscription = feed.subscribe(namespace: namespace, onEvent: onEvent, onEnd: onEnd) else {
            throw APIError(.unavailable, "server shutting down")
        }
        return subscription
    }

    /// Ends a subscription (its reader went away). Harmless twice.
    public func unsubscribe(_ subscription: RunFeedSubscription) { feed.unsubscribe(subscription) }

    /// Number of feed subscribers, all namespaces together.
    public var feedSubscriberCount: Int { feed.subscriberCount }

    /// Number of feed subscribers of `namespace`.
    public func feedSubscriberCount(namespace: String) -> Int { feed.subscriberCount(namespace: namespace) }

    /// Number of runs in memory (not final), all namespaces together.
    public var liveCount: Int { live.withLock { $0.count } }

    /// Number of runs of `namespace` in memory (not final): a lookup, kept as runs start and end.
    public func liveCount(namespace: String) -> Int { live.withLock { $0.count(namespace: namespace) } }

    /// Number of timers the runs of `namespace` wait on (tokens, first tokens, waits); the scheduler's other
    /// timers (streams' keep-alives) are in ``Scheduler/pendingCount`` only.
    public func liveTimerCount(namespace: String) -> Int { scheduler.pendingCount(tag: namespace) }

    /// Retention (`serve --keep-runs`, default 10,000): keep at most `keep` finished runs per namespace; 0 keeps
    /// all. Checked at start and then after every `keep / 10` finished runs (1 to 1,000), off the caller's thread.
    public func keepFinishedRuns(perNamespace keep: Int) {
        retention.withLock { $0.keep = max(0, keep) }
        pruneIfDue(force: true)
    }

    func pruneIfDue(force: Bool = false) {
        let keep: Int? = retention.withLock { r in
            guard r.keep > 0 else { return nil }
            r.finishedSincePrune += 1
            guard force || (r.finishedSincePrune >= max(1, min(r.keep / 10, 1000)) && !r.pruning) else { return nil }
            r.finishedSincePrune = 0
            r.pruning = true
            return r.keep
        }
        guard let keep else { return }
        DispatchQueue.global(qos: .utility).async { [self] in
            do {
                let deleted = try store.pruneFinishedRuns(keepPerNamespace: keep)
                if !deleted.isEmpty {
                    finalRuns.withLock { cache in for id in deleted { cache.removeValue(forKey: id) } }
                    logger.debug("retention: deleted \(deleted.count) old finished run(s)")
                }
            } catch {
                logger.error("retention: could not delete old runs: \(error)")
            }
            retention.withLock { $0.pruning = false }
        }
    }

    /// Marks runs left unfinished by an earlier process as failed (SPEC §1 "Restart"). Returns their ids.
    @discardableResult
    public func recoverAfterRestart() throws -> [String] {
        try store.failUnfinishedRuns(error: "run interrupted: server restarted", at: wallClockMicros())
    }

    /// Starts a run of `nodes` (the working state or a deployed snapshot) and returns it as committed.
    ///
    /// - Parameters:
    ///   - inputs: run inputs keyed by input-node name (API.md §4.1).
    ///   - observer: for streaming runs: receives ``RunEvent``s, in order, under the run's lock (keep it short).
    ///   - onFinish: called once, after the final state is committed, on whichever thread finished the run
    ///     (possibly before `start` returns, for a run with nothing to wait for).
    /// - Throws: ``APIError`` `.unprocessable` for a cycle or a missing node, `.badRequest` for missing,
    ///   unexpected or mistyped inputs or a malformed node, `.internalError` when the store fails, `.unavailable` when the server is shutting down.
    public func start(namespace: String, pipelineID: String, nodes: JSONObject, version: String?,
                      inputs: JSONObject, options: RunOptions = RunOptions(), mode: RunMode,
                      observer: (@Sendable (RunEvent) -> Void)? = nil,
                      onFinish: (@Sendable (RunRecord) -> Void)? = nil) throws(APIError) -> RunRecord {
        let run = try makeRun(namespace: namespace, pipelineID: pipelineID, nodes: nodes, version: version, inputs: inputs,
                              options: options, mode: mode, observer: observer, onFinish: onFinish)
        let committed = run.state.withLock { st -> Committed? in
            // Events produced while the run is set up wait until it is committed and announced.
            st.holding = true
            advance(run, &st)
            return announceLocked(run, &st, commitLocked(run, &st, retry: false))
        }
        return try started(run, committed)
    }

    /// A background run (API.md §4.1 `"background": true`) whose answer may come later: `reply` gets the run
    /// as committed, or why it could not be stored, exactly once, possibly on the store's write queue (keep it
    /// quick). A run that finishes inside the call (`--time-scale 0`) is committed without blocking the
    /// calling thread, so many callers' runs share one group commit (issue 14 item 5); any other run is
    /// committed before this returns, as ``start(namespace:pipelineID:nodes:version:inputs:options:mode:observer:onFinish:)``
    /// does. Either way nobody hears of the run before SQLite holds it.
    ///
    /// - Throws: what `start` throws before anything is stored (a bad graph or inputs, shutting down); errors of
    ///   the commit go to `reply`.
    public func startBackground(namespace: String, pipelineID: String, nodes: JSONObject, version: String?,
                                inputs: JSONObject, options: RunOptions = RunOptions(),
                                onFinish: (@Sendable (RunRecord) -> Void)? = nil,
                                reply: @escaping @Sendable (Result<RunRecord, APIError>) -> Void) throws(APIError) {
        let run = try makeRun(namespace: namespace, pipelineID: pipelineID, nodes: nodes, version: version, inputs: inputs,
                              options: options, mode: .background, observer: nil, onFinish: onFinish)
        enum Step { case committed(Committed?), inFlight(RunRecord) }
        let step = run.state.withLock { st -> Step in
            st.holding = true
            advance(run, &st)
            guard st.record.status.isFinal else { return .committed(announceLocked(run, &st, commitLocked(run, &st, retry: false))) }
            st.record.events = st.timeline
            st.commitPending = true  // in flight: nothing reports its end (status, feed, events) before it lands
            return .inFlight(st.record)
        }
        guard case let .inFlight(record) = step else {
            if case let .committed(committed) = step { reply(Result { () throws(APIError) in try started(run, committed) }) }
            return
        }
        store.saveRuns([record]) { [self] error in
            let committed = run.state.withLock { st -> Committed? in
                // Not pending any more: a shutdown or a terminate committed the same final state meanwhile.
                guard st.commitPending else {
                    return announceLocked(run, &st, Committed(record: st.record, replies: [], waiters: []))
                }
                guard error == nil else { return nil }
                return announceLocked(run, &st, landedLocked(&st))
            }
            reply(Result { () throws(APIError) in try started(run, committed) })
        }
    }

    /// A new run of `nodes`, checked and registered as live (not stored yet). Throws what ``start`` throws
    /// before anything is stored.
    private func makeRun(namespace: String, pipelineID: String, nodes: JSONObject, version: String?, inputs: JSONObject,
                         options: RunOptions, mode: RunMode, observer: (@Sendable (RunEvent) -> Void)?,
                         onFinish: (@Sendable (RunRecord) -> Void)?) throws(APIError) -> LiveRun {
        if closed.load(ordering: .acquiring) { throw APIError(.unavailable, "server shutting down") }
        let graph = try PipelineGraph(nodes: nodes, overrides: options.overrides)
        try NodeEvaluator.checkInputs(graph, runInputs: inputs)
        let now = wallClockMicros()
        let record = RunRecord(
            id: IDs.make(), namespace: namespace, pipelineID: pipelineID, mode: mode, version: version,
            inputs: inputs, status: .inProgress, result: nil, error: nil, partialOutputs: nil, usage: nil,
            options: options.recorded.isEmpty ? nil : options.recorded,
            createdAt: now, startedAt: now, endedAt: nil, nodes: graph.nodes.map { ($0.id, .pending) })
        let run = LiveRun(graph: graph, record: record, streamAll: options.streamAllOutputs, streaming: observer != nil,
                          failures: options.llmFailures, scripts: options.llmScripts, scriptedPipeline: options.scriptedPipeline,
                          chat: options.chatHistory, files: options.chatFiles, timerTag: scheduler.tag(namespace))
        run.state.withLock { st in
            st.feed = feed
            if let onFinish { st.waiters.append(onFinish) }
            if let observer { st.observers.append(observer) }
            st.log("created", clock: scheduler.now)
        }
        live.withLock { $0[record.id] = run }
        if closed.load(ordering: .acquiring) {  // shutdown() began between the check above and now
            live.withLock { _ = $0.removeValue(forKey: record.id) }
            throw APIError(.unavailable, "server shutting down")
        }
        return run
    }

    /// Once a new run's first commit landed (`committed`): it is announced to its observers (what it did while
    /// being set up follows) and its feed items go out. Returns `committed`.
    private func announceLocked(_ run: LiveRun, _ st: inout LiveState, _ committed: Committed?) -> Committed? {
        guard committed != nil else { return nil }
        st.holding = false
        st.notify(.started(run.record))
        for event in st.held { st.notify(event) }
        st.held = []
        deliverFeed(run, &st)
        return committed
    }

    /// After a new run's first commit, outside its lock: the run as committed, or, when the commit failed
    /// (`committed` nil), the run forgotten (never stored, never announced: it does not exist; its timers find
    /// no live run and do nothing) and the error to answer.
    private func started(_ run: LiveRun, _ committed: Committed?) throws(APIError) -> RunRecord {
        guard let committed else {
            run.state.withLock { st in for progress in st.llm.values { progress.cancelTimers(scheduler) } }
            live.withLock { _ = $0.removeValue(forKey: run.record.id) }
            if store.isWritable { throw APIError(.internalError, "could not store the run") }
            throw APIError(.unavailable, "storage unavailable: the run could not be stored; nothing was stored, try again")
        }
        Counter(label: "mockshift_runs_started_total", dimensions: [("mode", run.record.mode.rawValue)]).increment()
        finish(committed)
        return committed.record
    }

    /// What terminate, pause and resume answer once their change is committed: the run as stored, or an
    /// ``APIError``. Called exactly once, on any thread, possibly before the call that takes it returns.
    public typealias ChangeReply = @Sendable (Result<RunRecord, APIError>) -> Void

    /// Terminates a run (SPEC §4) and replies with its record as committed. A run that is already terminated is
    /// returned as it is (a second terminate is harmless); a completed or failed one too, unchanged: the
    /// caller answers 400 for those. Works on a paused run. Replies `.notFound` for an unknown run or one of
    /// another pipeline or key.
    ///
    /// The run stops at once (no token, node or output afterwards), but `reply` waits for the commit: while the
    /// store cannot write (another process holds the database, a full disk) the stopped run is kept as "final,
    /// commit pending", retried until it lands, and only then reported to anyone (issue 11 item 2). The caller
    /// must not block a transport thread on it.
    public func terminate(namespace: String, pipelineID: String, runID: String, reply: @escaping ChangeReply) {
        change(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: reply) { run, st in
            stopLocked(run, &st, status: .terminated, error: nil)
        }
    }

    /// ``terminate(namespace:pipelineID:runID:reply:)``, waiting for the reply up to ``changeWaitSeconds``
    /// (then `.unavailable`). For tests and callers off the transport threads.
    @discardableResult
    public func terminate(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        try Self.waitForReply { terminate(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: $0) }
    }

    /// Pauses a running run (SPEC §4): its timers stop, no token is emitted, status `paused`. A paused run is
    /// returned as it is; a final one unchanged (the caller answers 400). Blocks until committed (see
    /// ``terminate(namespace:pipelineID:runID:reply:)``).
    public func pause(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        try Self.waitForReply { pause(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: $0) }
    }

    /// Resumes a paused run where it stopped: the next token is the one that was due. A running run is
    /// returned as it is; a final one unchanged (the caller answers 400). Blocks until committed.
    public func resume(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        try Self.waitForReply { resume(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: $0) }
    }

    /// How long the blocking forms of terminate, pause and resume wait for a commit that is pending.
    public static let changeWaitSeconds = 30.0

    static func waitForReply(_ call: (@escaping ChangeReply) -> Void) throws(APIError) -> RunRecord {
        let box = Mutex<Result<RunRecord, APIError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        call { result in
            box.withLock { $0 = result }
            done.signal()
        }
        if done.wait(timeout: .now() + changeWaitSeconds) == .timedOut {
            throw APIError(.unavailable, "the change is not stored yet: storage unavailable; try again")
        }
        return try box.withLock { $0! }.get()
    }

    /// Pauses a running run (SPEC §4); replies as ``terminate(namespace:pipelineID:runID:reply:)`` does.
    public func pause(namespace: String, pipelineID: String, runID: String, reply: @escaping ChangeReply) {
        change(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: reply) { _, st in
            guard st.record.status == .inProgress else { return }
            let now = scheduler.now
            for id in Array(st.llm.keys) { noteFirstToken(&st, nodeID: id, at: now) }
            st.pausedAt = now
            st.record.status = .paused
            st.log("paused", clock: now)
            for id in st.llm.keys {
                if let timer = st.llm[id]?.timer { scheduler.cancel(timer) }
                if let timer = st.llm[id]?.firstTokenTimer { scheduler.cancel(timer) }
                st.llm[id]?.timer = nil
                st.llm[id]?.firstTokenTimer = nil
            }
        }
    }

    /// Resumes a paused run; replies as ``terminate(namespace:pipelineID:runID:reply:)`` does.
    public func resume(namespace: String, pipelineID: String, runID: String, reply: @escaping ChangeReply) {
        change(namespace: namespace, pipelineID: pipelineID, runID: runID, reply: reply) { run, st in
            guard st.record.status == .paused, let pausedAt = st.pausedAt else { return }
            let shift = scheduler.now &- pausedAt
            st.pausedAt = nil
            st.record.status = .inProgress
            st.log("resumed", clock: scheduler.now)
            for id in Array(st.llm.keys) {
                st.llm[id]?.startedAt &+= shift
                scheduleLLM(run, &st, nodeID: id)
            }
        }
    }

    /// Applies `body` to a live run under its lock, commits, and replies with the committed record; for a run
    /// that is not live, replies with the stored record (the caller decides what a final run means for its
    /// request). While the run has a commit pending, `body` still applies (a stop stops at once) but the reply
    /// waits for that commit, so nobody hears of a state SQLite does not hold.
    func change(namespace: String, pipelineID: String, runID: String, reply: @escaping ChangeReply,
                        _ body: (LiveRun, inout LiveState) -> Void) {
        guard let run = live.withLock({ $0[runID] }), run.record.namespace == namespace,
              run.record.pipelineID == pipelineID else {
            do throws(APIError) { reply(.success(try status(namespace: namespace, pipelineID: pipelineID, runID: runID))) } catch {
                reply(.failure(error))
            }
            return
        }
        let (unchanged, committed) = run.state.withLock { st -> (RunRecord?, Committed?) in
            if st.record.status.isFinal && !st.commitPending { return (st.record, nil) }
            let before = st.record.status
            if !before.isFinal { body(run, &st) }
            if st.record.status == before && !st.commitPending { return (st.record, nil) }
            st.commitReplies.append(reply)
            let outcome = commitLocked(run, &st)
            deliverFeed(run, &st)
            return (nil, outcome)
        }
        if let unchanged { return reply(.success(unchanged)) }
        finish(committed)  // nil: the commit is pending; the retry that lands it replies
    }

    /// The committed state of a run. Throws `.notFound` for an unknown run or one of another pipeline or key.
    public func status(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        var record = finalRuns.withLock { $0[runID] }
        if record == nil {
            do { record = try store.run(namespace: namespace, id: runID) } catch {
                throw Self.storeError(error)
            }
            if let record, record.status.isFinal { remember(record) }
        }
        guard let record, record.namespace == namespace, record.pipelineID == pipelineID else {
            throw APIError(.notFound, "Run \(runID) not found")
        }
        return record
    }

    /// A store failure as the engine reports it: 503 for a transient one (issue 11 item 2), else 500.
    static func storeError(_ error: any Error) -> APIError {
        if let error = error as? SQLiteError, error.isTransient {
            return APIError(.unavailable, "storage unavailable: \(error.message); try again")
        }
        return APIError(.internalError, "store error: \(error)")
    }

    /// A run's timeline: live from memory, or as stored with its final state. Throws `.notFound`.
    public func events(namespace: String, runID: String) throws(APIError) -> [JSON] {
        if let run = live.withLock({ $0[runID] }), run.record.namespace == namespace {
            // While a commit is pending, what happened since the last commit (a stop, the end) is not shown
            // yet: nothing reports a state SQLite does not hold (issue 11 item 2).
            return run.state.withLock { st in st.commitPending ? Array(st.timeline.prefix(st.timelineCommitted)) : st.timeline }
        }
        let record: RunRecord?
        do { record = try store.run(namespace: namespace, id: runID) } catch {
            throw Self.storeError(error)
        }
        guard let record else { throw APIError(.notFound, "Run \(runID) not found") }
        return record.events ?? []
    }

    /// Terminates every live run of a pipeline (it is being deleted, SPEC §3).
    public func terminateRuns(namespace: String, pipelineID: String) {
        let runs = live.withLock { $0.values.filter { $0.record.pipelineID == pipelineID && $0.record.namespace == namespace } }
        for run in runs { terminate(namespace: namespace, pipelineID: pipelineID, runID: run.record.id, reply: { _ in }) }
    }

    /// Terminates every live run of a namespace and forgets its cached final runs (`POST /_mock/reset`).
    public func terminateRuns(namespace: String) {
        let runs = live.withLock { $0.values.filter { $0.record.namespace == namespace } }
        for run in runs { terminate(namespace: namespace, pipelineID: run.record.pipelineID, runID: run.record.id, reply: { _ in }) }
        finalRuns.withLock { cache in cache = cache.filter { $0.value.namespace != namespace } }
    }

    /// Fails every live run with `run interrupted: server shut down` (SPEC §1 SIGTERM), committing each and
    /// answering their waiters. No run starts afterwards.
    public func shutdown() {
        closed.store(true, ordering: .releasing)
        let runs = live.withLock { Array($0.values) }
        for run in runs {
            let committed = run.state.withLock { st -> Committed? in
                if st.record.status.isFinal && !st.commitPending { return nil }
                if !st.record.status.isFinal { stopLocked(run, &st, status: .failed, error: "run interrupted: server shut down") }
                let outcome = commitLocked(run, &st, retry: false)
                if outcome == nil {
                    logger.warning("run \(st.record.id): its final state could not be stored before shutdown; the next start marks it failed (run interrupted: server restarted)")
                }
                deliverFeed(run, &st)
                return outcome
            }
            finish(committed)
        }
        feed.close()  // after the runs' final events: readers of the feed see them, then the end
    }
}
