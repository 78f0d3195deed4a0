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

    public init() {}

    /// A delay so long it never comes (about 31 years): the cap for absurd settings.
    static let never: UInt64 = 1_000_000_000_000_000_000

    /// Real nanoseconds after an LLM node's start at which its `k`-th token (1-based) is emitted: TTFT, then
    /// one token every `1 / rate` seconds; `k = 0` is the TTFT itself. All scaled by the time scale.
    func due(token k: Int) -> UInt64 {
        let simulatedMs = ttftMilliseconds + Double(k) * 1000 / max(tokensPerSecond, 0.001)
        let nanos = simulatedMs * timeScale * 1_000_000
        guard nanos.isFinite, nanos > 0 else { return nanos.isNaN || nanos <= 0 ? 0 : Self.never }
        return nanos >= Double(Self.never) ? Self.never : UInt64(nanos)
    }

    /// Tokens emitted `elapsed` real nanoseconds after an LLM node started: `max(0, t − ttft) × rate / 1000`
    /// in simulated milliseconds, rounded down (SPEC §6), and never more than `total`.
    func emitted(after elapsed: UInt64, of total: Int) -> Int {
        guard timeScale > 0 else { return total }
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

/// A scripted LLM answer (SPEC §6 "Fixtures can script an LLM's answer"): for LLM nodes it matches (node id,
/// and a regular expression searched in the resolved prompt), it sets the text, the timing, or a failure after
/// N tokens. Unset parts keep the simulation's.
public struct LLMScript: Sendable {
    public var nodeID: String?
    public var promptPattern: String? { didSet { compiled = promptPattern.flatMap(PromptPattern.init) } }
    /// `promptPattern` compiled once.
    private var compiled: PromptPattern?
    public var response: String?
    public var ttftMilliseconds: Double?
    public var tokensPerSecond: Double?
    public var failAfterTokens: Int?
    public var message: String

    public init(nodeID: String? = nil, promptPattern: String? = nil, response: String? = nil, ttftMilliseconds: Double? = nil,
                tokensPerSecond: Double? = nil, failAfterTokens: Int? = nil, message: String = "scripted LLM failure") {
        self.nodeID = nodeID
        self.promptPattern = promptPattern
        self.compiled = promptPattern.flatMap(PromptPattern.init)
        self.response = response
        self.ttftMilliseconds = ttftMilliseconds
        self.tokensPerSecond = tokensPerSecond
        self.failAfterTokens = failAfterTokens
        self.message = message
    }

    /// True when the script applies to `nodeID` with `prompt` (see ``PromptPattern``).
    public func matches(nodeID: String, prompt: String) -> Bool {
        if let id = self.nodeID, id != nodeID { return false }
        guard let pattern = promptPattern, !pattern.isEmpty else { return true }
        return compiled?.matches(prompt) ?? prompt.contains(pattern)
    }

    /// The scripted text as tokens: one per word, each after the first with its leading space.
    public static func tokens(of text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for ch in text {
            if ch == " " && !current.isEmpty && current != " " {
                tokens.append(current)
                current = ""
            }
            current.append(ch)
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }
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
    private let live = Mutex(LiveRunTable())
    /// Set by ``shutdown()``: no run starts afterwards.
    private let closed = Atomic<Bool>(false)
    /// Final runs by id: they never change again (SPEC §3), so a status request need not read SQLite twice.
    private let finalRuns = Mutex<[String: RunRecord]>([:])
    /// `--keep-runs` and its bookkeeping: finished runs since the last pruning, and whether one is under way.
    private let retention = Mutex<(keep: Int, finishedSincePrune: Int, pruning: Bool)>((0, 0, false))
    private static let finalCacheLimit = 4_096  // bounded memory (scripts/bench-hygiene); older runs are read from SQLite
    /// Subscribers of the namespace-wide run feed (`GET /_mock/events`, issue 7).
    let feed = RunFeed()

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

    private func pruneIfDue(force: Bool = false) {
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
                          failures: options.llmFailures, scripts: options.llmScripts)
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
        let committed = run.state.withLock { st -> Committed? in
            // Events produced while the run is set up wait until it is committed and announced.
            st.holding = true
            advance(run, &st)
            let outcome = commitLocked(run, &st, retry: false)
            if outcome != nil {
                st.holding = false
                st.notify(.started(record))
                for event in st.held { st.notify(event) }
                st.held = []
                deliverFeed(run, &st)
            }
            return outcome
        }
        guard let committed else {
            // Never stored, never announced: the run does not exist. Its timers find no live run and do nothing.
            run.state.withLock { st in for progress in st.llm.values { progress.cancelTimers(scheduler) } }
            live.withLock { _ = $0.removeValue(forKey: record.id) }
            if store.isWritable { throw APIError(.internalError, "could not store the run") }
            throw APIError(.unavailable, "storage unavailable: the run could not be stored; nothing was stored, try again")
        }
        Counter(label: "mockshift_runs_started_total", dimensions: [("mode", mode.rawValue)]).increment()
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

    private static func waitForReply(_ call: (@escaping ChangeReply) -> Void) throws(APIError) -> RunRecord {
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
    private func change(namespace: String, pipelineID: String, runID: String, reply: @escaping ChangeReply,
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
            return run.state.withLock { $0.timeline }
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
                deliverFeed(run, &st)
                return outcome
            }
            finish(committed)
        }
        feed.close()  // after the runs' final events: readers of the feed see them, then the end
    }

    // MARK: - Execution (all under the run's lock)

    /// Evaluates every node whose dependencies are done, starting LLM nodes on the scheduler, and completes
    /// the run when no node is left.
    private func advance(_ run: LiveRun, _ st: inout LiveState) {
        guard st.record.status == .inProgress else { return }
        var progressed = true
        while progressed {
            progressed = false
            for (index, node) in run.graph.nodes.enumerated() where st.record.nodes[index].state == .pending {
                let states = node.dependencies.map { st.nodeState($0) }
                guard states.allSatisfy({ $0 == .completed || $0 == .skipped }) else { continue }
                // Skipped: gated on a condition path not taken, or fed by a skipped node (a merge takes what came).
                if gatedOff(node, run, st) || (node.type != "merge" && states.contains(.skipped)) {
                    st.record.nodes[index].state = .skipped
                    st.log("node_skipped", node: node.id, clock: scheduler.now)
                    progressed = true
                    continue
                }
                let resolved = Templates.resolve(.object(node.inputs)) { reference in
                    st.outputs[run.graph.nodeID(for: reference.node)]?[reference.field]
                }.objectValue ?? [:]
                switch NodeEvaluator.evaluate(node, resolvedInputs: resolved, runInputs: st.record.inputs, seed: settings.seed,
                                              strict: settings.strictNodes) {
                case let .failed(message):
                    st.record.nodes[index].state = .running
                    stopLocked(run, &st, status: .failed, error: message)
                    return
                case let .wait(milliseconds, outputs):
                    st.record.nodes[index].state = .running
                    st.log("node_started", node: node.id, clock: scheduler.now)
                    var timing = settings
                    timing.ttftMilliseconds = milliseconds
                    var progress = LLMProgress(completion: LLMCompletion(tokens: [], inputTokens: 0), startedAt: scheduler.now,
                                               streamsTo: [], timing: timing)
                    progress.outputsOverride = outputs
                    st.llm[node.id] = progress
                    if startTimedNode(run, &st, nodeID: node.id, index: index) { progressed = true }
                    if st.record.status != .inProgress { return }  // an injected failure ended the run
                case let .done(outputs):
                    st.outputs[node.id] = outputs
                    st.record.nodes[index].state = .completed
                    st.log("node_completed", node: node.id, clock: scheduler.now)
                    if node.type == "output", run.streamAll, run.streaming, !run.tokenOutputs.contains(node.name) {
                        st.notify(.output(name: node.name, value: outputs["value"] ?? .null))
                    }
                    progressed = true
                case .llm(var completion):
                    st.record.nodes[index].state = .running
                    st.log("node_started", node: node.id, clock: scheduler.now)
                    var timing = settings
                    var failure = run.failures.first(where: { $0.nodeID == nil || $0.nodeID == node.id })
                        .map { (afterTokens: $0.afterTokens, message: $0.message) }
                    let prompt = resolved["prompt"]?.templateText ?? ""
                    if let script = run.scripts.first(where: { $0.matches(nodeID: node.id, prompt: prompt) }) {
                        if let text = script.response { completion.tokens = LLMScript.tokens(of: text) }
                        if let ttft = script.ttftMilliseconds { timing.ttftMilliseconds = ttft }
                        if let rate = script.tokensPerSecond { timing.tokensPerSecond = rate }
                        if let after = script.failAfterTokens, failure == nil { failure = (after, script.message) }
                    }
                    var progress = LLMProgress(completion: completion, startedAt: scheduler.now,
                                               streamsTo: run.streaming ? run.streamedOutputs[node.id] ?? [] : [], timing: timing)
                    if let failure { progress.failure = (min(failure.afterTokens, completion.tokens.count), failure.message) }
                    st.llm[node.id] = progress
                    if startTimedNode(run, &st, nodeID: node.id, index: index) { progressed = true }
                    if st.record.status != .inProgress { return }  // an injected failure ended the run
                }
            }
        }
        if st.record.nodes.allSatisfy({ $0.state == .completed || $0.state == .skipped }) {
            st.log("completed", clock: scheduler.now)
            st.record.status = .completed
            st.record.endedAt = wallClockMicros()
            st.record.result = resultOutputs(run, st)
            st.record.usage = usage(st, at: nil)
        }
    }

    /// Sets the LLM node's next timer: its next token when tokens stream to someone, else its last token.
    private func scheduleLLM(_ run: LiveRun, _ st: inout LiveState, nodeID: String) {
        guard var progress = st.llm[nodeID] else { return }
        let total = progress.failure?.afterTokens ?? progress.completion.tokens.count
        let target = progress.streamsTo.isEmpty ? total : min(total, progress.sent + 1)
        let elapsed = scheduler.now &- progress.startedAt
        let dueAt = progress.timing.due(token: target)
        progress.generation &+= 1
        let generation = progress.generation
        let namespace = run.record.namespace  // the timers are counted per namespace (liveTimerCount)
        progress.timer = scheduler.schedule(afterNanoseconds: dueAt > elapsed ? dueAt - elapsed : 0, tag: namespace) {
            [weak self, weak run] in
            guard let self, let run else { return }
            self.llmTick(run, nodeID: nodeID, generation: generation)
        }
        // A node whose tokens nobody streams ticks only at its end: a timer of its own puts its first token on
        // the timeline when it comes.
        let firstDue = progress.timing.due(token: 1)
        if progress.streamsTo.isEmpty, !progress.firstTokenLogged, progress.outputsOverride == nil, total > 0, firstDue < dueAt {
            progress.firstTokenTimer = scheduler.schedule(afterNanoseconds: firstDue > elapsed ? firstDue - elapsed : 0,
                                                          tag: namespace) {
                [weak self, weak run] in
                guard let self, let run else { return }
                run.state.withLock { st in
                    guard st.record.status == .inProgress, st.llm[nodeID]?.generation == generation else { return }
                    self.noteFirstToken(&st, nodeID: nodeID, at: self.scheduler.now)
                    self.deliverFeed(run, &st)
                }
            }
        }
        st.llm[nodeID] = progress
    }

    /// An LLM node's timer fired: send the tokens now due, then finish the node or wait for the next token.
    private func llmTick(_ run: LiveRun, nodeID: String, generation: UInt64) {
        let committed = run.state.withLock { st -> Committed? in
            defer { deliverFeed(run, &st) }  // tokens of a waiting node too; after the commit otherwise
            guard st.record.status == .inProgress, st.llm[nodeID]?.generation == generation,
                  let index = run.graph.nodes.firstIndex(where: { $0.id == nodeID }),
                  tickLocked(run, &st, nodeID: nodeID, index: index) != .waiting else { return nil }
            advance(run, &st)
            return commitLocked(run, &st)
        }
        finish(committed)
    }

    /// What ``tickLocked(_:_:nodeID:index:)`` did to its node.
    private enum TickOutcome { case waiting, completed, failed }

    /// Sends an LLM (or wait) node's tokens now due; then finishes the node (its outputs set, the run not yet
    /// advanced), fails the run (an injected failure), or schedules the next timer.
    private func tickLocked(_ run: LiveRun, _ st: inout LiveState, nodeID: String, index: Int) -> TickOutcome {
        noteFirstToken(&st, nodeID: nodeID, at: scheduler.now)
        guard var progress = st.llm[nodeID] else { return .waiting }
        let total = progress.failure?.afterTokens ?? progress.completion.tokens.count
        let emitted = progress.timing.emitted(after: scheduler.now &- progress.startedAt, of: total)
        if !progress.streamsTo.isEmpty && emitted > progress.sent {
            let tokens = Array(progress.completion.tokens[progress.sent..<emitted])
            st.notify(.tokens(outputs: progress.streamsTo, tokens: tokens))
            st.feedTokens(node: nodeID, outputs: progress.streamsTo, tokens: tokens, clock: scheduler.now)
            progress.sent = emitted
        }
        st.llm[nodeID] = progress
        guard emitted >= total else {
            scheduleLLM(run, &st, nodeID: nodeID)
            return .waiting
        }
        if let failure = progress.failure {  // an injected fault: the node fails here, and the run with it
            stopLocked(run, &st, status: .failed, error: "node \(nodeID): \(failure.message)")
            return .failed
        }
        st.llm[nodeID] = nil
        if let timer = progress.firstTokenTimer { scheduler.cancel(timer) }
        logTokens(&st, nodeID: nodeID, progress, emitted: emitted)
        st.log("node_completed", node: nodeID, clock: scheduler.now)
        if progress.outputsOverride == nil { st.finishedLLM[nodeID] = progress.completion }
        var outputs = progress.outputsOverride ?? progress.completion.outputs()
        outputs["complete"] = .bool(true)
        st.outputs[nodeID] = outputs
        st.record.nodes[index].state = .completed
        return .completed
    }

    /// Starts the timers of a timed node (LLM or wait) that ``advance(_:_:)`` just set up; with `--time-scale 0`
    /// it has nothing to wait for and finishes at once, inside the same commit as the rest of the run (an
    /// instant run is one commit, with no scheduler round trip). Returns true when the node completed now.
    private func startTimedNode(_ run: LiveRun, _ st: inout LiveState, nodeID: String, index: Int) -> Bool {
        guard settings.timeScale == 0, scheduler.clock == .real else {
            scheduleLLM(run, &st, nodeID: nodeID)
            return false
        }
        return tickLocked(run, &st, nodeID: nodeID, index: index) == .completed
    }

    /// Stops a run now: cancels its timers, records what was produced so far, marks unfinished nodes.
    private func stopLocked(_ run: LiveRun, _ st: inout LiveState, status: RunStatus, error: String?) {
        let now = st.pausedAt ?? scheduler.now  // a paused run's tokens stopped when it was paused
        for (id, progress) in st.llm {
            if let timer = progress.timer { scheduler.cancel(timer) }
            if let timer = progress.firstTokenTimer { scheduler.cancel(timer) }
            logTokens(&st, nodeID: id, progress, emitted: progress.produced(at: now))
        }
        st.log(status.rawValue, clock: scheduler.now, extra: error.map { ["error": .string($0)] } ?? [:])
        st.record.status = status
        st.record.error = error
        st.record.endedAt = wallClockMicros()
        st.record.result = nil
        st.record.partialOutputs = partialOutputs(run, st, now: now)
        st.record.usage = usage(st, at: now)
        for i in st.record.nodes.indices {
            switch st.record.nodes[i].state {
            case .running: st.record.nodes[i].state = status == .terminated ? .terminated : .failed
            // Never started: cut off by the run's end (`skipped` means an untaken condition path, `failed` would
            // blame a node that never ran, `pending` would read as still waiting; issue 11).
            case .pending: st.record.nodes[i].state = .terminated
            default: break
            }
        }
        st.llm.removeAll()
        st.pausedAt = nil
    }

    /// Logs an LLM node's first token once it has come (at the moment it came), if not logged yet. Called
    /// before anything moves the node's start (a resume), so the computed moment is the real one.
    private func noteFirstToken(_ st: inout LiveState, nodeID: String, at now: UInt64) {
        guard var progress = st.llm[nodeID], !progress.firstTokenLogged, progress.emitted(at: now) > 0 else { return }
        progress.firstTokenLogged = true
        st.llm[nodeID] = progress
        let first = progress.startedAt &+ progress.timing.due(token: 1)
        st.log("first_token", node: nodeID, clock: first)
    }

    /// Timeline entries for an LLM node that stops: its first token (if not logged yet) and how many it emitted.
    private func logTokens(_ st: inout LiveState, nodeID: String, _ progress: LLMProgress, emitted: Int) {
        guard emitted > 0 else { return }
        if !progress.firstTokenLogged {
            st.log("first_token", node: nodeID, clock: progress.startedAt &+ progress.timing.due(token: 1))
        }
        st.log("tokens", node: nodeID, clock: scheduler.now, extra: ["count": .int(Int64(emitted))])
    }

    /// True when `node`'s `dependencies` name a path of a condition node that was not taken (API.md §6 gating).
    private func gatedOff(_ node: GraphNode, _ run: LiveRun, _ st: LiveState) -> Bool {
        guard let gates = node.inputs["dependencies"] else { return false }
        return Templates.references(in: gates).contains { reference in
            st.outputs[run.graph.nodeID(for: reference.node)]?[reference.field] == .bool(false)
        }
    }

    /// Output-node values keyed by output-node name (skipped outputs are left out).
    private func resultOutputs(_ run: LiveRun, _ st: LiveState) -> JSONObject {
        var result = JSONObject()
        for node in run.graph.nodes where node.type == "output" && st.outputs[node.id] != nil {
            result[node.name] = st.outputs[node.id]?["value"] ?? .null
        }
        return result
    }

    /// For a run stopped early: each output node whose value can be formed from finished nodes and the tokens
    /// running LLM nodes had emitted by `now`, keyed by output-node name.
    private func partialOutputs(_ run: LiveRun, _ st: LiveState, now: UInt64) -> JSONObject {
        var partial = JSONObject()
        for node in run.graph.nodes where node.type == "output" {
            if let done = st.outputs[node.id]?["value"] {
                partial[node.name] = done
                continue
            }
            var available = true
            let value = Templates.resolve(node.inputs["value"] ?? .null) { reference in
                let id = run.graph.nodeID(for: reference.node)
                if let outputs = st.outputs[id] { return outputs[reference.field] }
                if let progress = st.llm[id] {
                    return progress.completion.outputs(emitted: progress.produced(at: now))[reference.field]
                }
                available = false
                return nil
            }
            if available { partial[node.name] = value }
        }
        return partial
    }

    /// Token counts and credits over the run's LLM nodes; running ones count what they emitted by `now`.
    private func usage(_ st: LiveState, at now: UInt64?) -> JSONObject? {
        var input = 0, output = 0
        var credits = 0.0
        for completion in st.finishedLLM.values {
            input += completion.inputTokens
            output += completion.outputTokens
            credits += completion.creditsUsed
        }
        if let now {
            for progress in st.llm.values {
                let n = progress.produced(at: now)
                input += progress.completion.inputTokens
                output += n
                credits += progress.completion.outputs(emitted: n)["credits_used"]?.doubleValue ?? 0
            }
        }
        if input == 0 && output == 0 { return nil }
        return ["input_tokens": .int(Int64(input)), "output_tokens": .int(Int64(output)),
                "tokens_used": .int(Int64(input + output)), "credits_used": .double(credits)]
    }

    // MARK: - Run feed

    /// Sends what the run collected for the feed to its namespace's subscribers, in order. Called under the
    /// run's lock, after the commit of what it reports (so a reader that asks for the run's status is never
    /// behind the feed), at the end of every section that may have collected something.
    private func deliverFeed(_ run: LiveRun, _ st: inout LiveState) {
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

    private func feedEvent(_ item: FeedItem, _ run: LiveRun, _ st: LiveState) -> RunFeedEvent {
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
    private func commitLocked(_ run: LiveRun, _ st: inout LiveState, retry: Bool = true) -> Committed? {
        if st.record.status.isFinal { st.record.events = st.timeline }
        do {
            try store.saveRuns([st.record])
        } catch {
            if !st.commitPending { logger.warning("run \(st.record.id): commit pending, will retry: \(error)") }
            if retry {
                st.commitPending = true
                pendingCommits.add(run, engine: self)
            }
            return nil
        }
        st.commitPending = false
        let replies = st.commitReplies
        st.commitReplies = []
        guard st.record.status.isFinal else { return Committed(record: st.record, replies: replies, waiters: []) }
        let waiters = st.waiters
        st.waiters = []
        // Observers stay: a run that ends inside start() still announces itself to them afterwards, and a
        // final run emits nothing more anyway.
        return Committed(record: st.record, replies: replies, waiters: waiters)
    }

    private func finish(_ committed: Committed?) {
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

    /// Runs whose last commit failed, retried with back-off (50 ms doubling to 1 s) off every caller's thread
    /// until each lands.
    let pendingCommits = PendingCommits()

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

    private func remember(_ record: RunRecord) {
        finalRuns.withLock { cache in
            if cache.count >= Self.finalCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[record.id] = record
        }
    }
}

/// A run in memory while it is not final.
final class LiveRun: Sendable {
    let graph: PipelineGraph
    /// The run's identity as created (id, namespace, pipeline); its changing state is in `state`.
    let record: RunRecord
    /// True when someone reads the run as a stream.
    let streaming: Bool
    /// `stream_all_outputs`.
    let streamAll: Bool
    /// LLM node id → names of the output nodes its tokens stream to (SPEC §5).
    let streamedOutputs: [String: [String]]
    /// Every output name that receives tokens.
    let tokenOutputs: Set<String>
    /// Injected LLM failures for this run.
    let failures: [RunOptions.LLMFailure]
    let state: Mutex<LiveState>

    /// Scripted answers that may apply to this run's LLM nodes.
    let scripts: [LLMScript]

    init(graph: PipelineGraph, record: RunRecord, streamAll: Bool, streaming: Bool, failures: [RunOptions.LLMFailure] = [],
         scripts: [LLMScript] = []) {
        self.failures = failures
        self.scripts = scripts
        self.graph = graph
        self.record = record
        self.streaming = streaming
        self.streamAll = streamAll
        streamedOutputs = LiveRun.streamedOutputs(graph, streamAll: streamAll)
        tokenOutputs = Set(streamedOutputs.values.joined())
        state = Mutex(LiveState(record: record))
    }

    /// Which outputs stream an LLM's tokens: those whose value names the LLM's `response` when the LLM's `stream`
    /// input is true or the output is `stream<string>`; with `streamAll`, every output fed by an LLM response.
    static func streamedOutputs(_ graph: PipelineGraph, streamAll: Bool) -> [String: [String]] {
        var map: [String: [String]] = [:]
        let llms = Dictionary(graph.nodes.filter { NodeEvaluator.textGenerators[$0.type] != nil }.map { ($0.id, $0) },
                              uniquingKeysWith: { a, _ in a })
        for node in graph.nodes where node.type == "output" {
            let streamType = node.inputs["output_type"]?.stringValue == "stream<string>"
            for reference in Templates.references(in: node.inputs["value"] ?? .null) {
                let id = graph.nodeID(for: reference.node)
                guard let llm = llms[id], reference.field == NodeEvaluator.textGenerators[llm.type] else { continue }
                if streamAll || streamType || flag(llm.inputs["stream"]) {
                    if !(map[id]?.contains(node.name) ?? false) { map[id, default: []].append(node.name) }
                }
            }
        }
        return map
    }
}

/// `true` for JSON `true` or the text `"true"` (forms send booleans as text, API.md §1).
func flag(_ value: JSON?) -> Bool {
    switch value {
    case let .bool(b): b
    case let .string(s): s.lowercased() == "true"
    default: false
    }
}

/// A running LLM node: its completion, when it started (scheduler nanoseconds, moved forward by pauses), and
/// how far its tokens went out.
struct LLMProgress {
    let completion: LLMCompletion
    var startedAt: UInt64
    /// Output names that receive its tokens as they come; empty = nobody streams them.
    let streamsTo: [String]
    var sent = 0
    var timer: TimerID?
    /// Bumped at each (re)schedule, so a timer that fired late after a pause does nothing.
    var generation: UInt64 = 0
    /// An injected failure: after how many tokens, and the message.
    var failure: (afterTokens: Int, message: String)?
    /// The timeline has its `first_token` entry.
    var firstTokenLogged = false
    /// A timed node that is no LLM (`wait_node`): its outputs when it ends.
    var outputsOverride: JSONObject?
    /// The timer that logs the first token of a node nobody streams.
    var firstTokenTimer: TimerID?

    /// The node's timing: the daemon's, or a scripted answer's time to first token and rate.
    let timing: EngineSettings

    init(completion: LLMCompletion, startedAt: UInt64, streamsTo: [String], timing: EngineSettings) {
        self.timing = timing
        self.completion = completion
        self.startedAt = startedAt
        self.streamsTo = streamsTo
    }

    func emitted(at now: UInt64) -> Int {
        timing.emitted(after: now &- startedAt, of: completion.tokens.count)
    }

    /// What the node had produced by `now`, as far as anyone could see: for a streamed node, the tokens that
    /// went out (a token due whose timer had not fired yet was never seen); otherwise the clock's count.
    func produced(at now: UInt64) -> Int {
        streamsTo.isEmpty ? emitted(at: now) : sent
    }
}

struct LiveState {
    var record: RunRecord
    /// Node id → outputs, for finished nodes.
    var outputs: [String: JSONObject] = [:]
    /// Running LLM nodes.
    var llm: [String: LLMProgress] = [:]
    /// Finished LLM nodes' completions (for usage).
    var finishedLLM: [String: LLMCompletion] = [:]
    var waiters: [@Sendable (RunRecord) -> Void] = []
    /// The last commit failed (storage unavailable): `record` is ahead of SQLite until the retry lands it, and
    /// nothing final is reported meanwhile (issue 11 item 2).
    var commitPending = false
    /// Callers of terminate, pause or resume waiting for the commit of their change.
    var commitReplies: [RunEngine.ChangeReply] = []
    var observers: [@Sendable (RunEvent) -> Void] = []
    /// While true, events wait in `held` (the run is not announced yet).
    var holding = false
    var held: [RunEvent] = []
    /// Scheduler time the run was paused at.
    var pausedAt: UInt64?
    /// The timeline (`/_mock/runs/{id}/events`): what happened, on the scheduler's clock and the wall clock.
    var timeline: [JSON] = []
    /// The engine's run feed; while anyone subscribes, what happens is collected in `feedItems` until
    /// `RunEngine.deliverFeed` sends it (after the commit of the state it reports).
    var feed: RunFeed?
    var feedItems: [FeedItem] = []

    /// Appends a timeline event at scheduler time `clock` (nanoseconds), stamped with the wall clock now.
    mutating func log(_ event: String, node: String? = nil, clock: UInt64, extra: JSONObject = [:]) {
        var entry: JSONObject = ["event": .string(event)]
        if let node { entry["node"] = .string(node) }
        for (k, v) in extra { entry[k] = v }
        entry["clock_ms"] = .double(Double(clock) / 1_000_000)
        entry["at"] = .string(iso8601(micros: wallClockMicros()))
        timeline.append(.object(entry))
        if feed?.isWatched == true { feedItems.append(.entry(timeline.count - 1)) }
    }

    /// Collects a token tick for the run feed, if anyone subscribes.
    mutating func feedTokens(node: String, outputs: [String], tokens: [String], clock: UInt64) {
        guard feed?.isWatched == true else { return }
        feedItems.append(.tokens(node: node, outputs: outputs, tokens: tokens, clock: clock, atMicros: wallClockMicros()))
    }

    mutating func notify(_ event: RunEvent) {
        if holding { held.append(event); return }
        for observer in observers { observer(event) }
    }

    func nodeState(_ id: String) -> NodeState? {
        record.nodes.first(where: { $0.id == id })?.state
    }
}

extension LLMProgress {
    /// Cancels the node's timers (its next tick and its first-token log).
    func cancelTimers(_ scheduler: Scheduler) {
        if let timer { scheduler.cancel(timer) }
        if let firstTokenTimer { scheduler.cancel(firstTokenTimer) }
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
