import Logging
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

    public init() {}

    /// Real nanoseconds an LLM node takes to emit `tokens` tokens: TTFT, then `tokens / rate` seconds.
    func duration(tokens: Int) -> UInt64 {
        let simulatedMs = ttftMilliseconds + Double(tokens) * 1000 / max(tokensPerSecond, 0.001)
        return UInt64(max(0, simulatedMs * timeScale * 1_000_000))
    }

    /// Tokens emitted `elapsed` real nanoseconds after an LLM node started: `max(0, t − ttft) × rate / 1000`
    /// in simulated milliseconds, rounded down (SPEC §6).
    func emitted(after elapsed: UInt64, of total: Int) -> Int {
        guard timeScale > 0 else { return total }
        let simulatedMs = Double(elapsed) / 1_000_000 / timeScale
        let n = Int(((simulatedMs - ttftMilliseconds) * tokensPerSecond / 1000).rounded(.down))
        return min(total, max(0, n))
    }
}

/// Runs pipelines (SPEC §3, §4, §6): evaluates the node graph in dependency order, drives LLM nodes with the
/// one ``Scheduler``, and applies terminate. Every state change is committed to the ``Store`` before the
/// engine returns or notifies anyone, so a response that reports it never runs ahead of SQLite. Knows nothing
/// of HTTP.
public final class RunEngine: Sendable {
    let store: Store
    let scheduler: Scheduler
    let settings: EngineSettings
    let logger: Logger
    private let live = Mutex<[String: LiveRun]>([:])
    /// Set by ``shutdown()``: no run starts afterwards.
    private let closed = Atomic<Bool>(false)
    /// Final runs by id: they never change again (SPEC §3), so a status request need not read SQLite twice.
    private let finalRuns = Mutex<[String: RunRecord]>([:])
    private static let finalCacheLimit = 20_000

    public init(store: Store, scheduler: Scheduler, settings: EngineSettings, logger: Logger) {
        self.store = store
        self.scheduler = scheduler
        self.settings = settings
        self.logger = logger
    }

    /// Number of runs in memory (not final).
    public var liveCount: Int { live.withLock { $0.count } }

    /// Marks runs left unfinished by an earlier process as failed (SPEC §1 "Restart"). Returns their ids.
    @discardableResult
    public func recoverAfterRestart() throws -> [String] {
        try store.failUnfinishedRuns(error: "run interrupted: server restarted", at: wallClockMicros())
    }

    /// Starts a run of `nodes` (the working state or a deployed snapshot) and returns it as committed.
    ///
    /// - Parameters:
    ///   - inputs: run inputs keyed by input-node name (API.md §4.1).
    ///   - overrides: `node_input_overrides`, `{node id or name: {input: value}}` (SPEC §3).
    ///   - onFinish: called once, after the final state is committed, on whichever thread finished the run
    ///     (possibly before `start` returns, for a run with nothing to wait for).
    /// - Throws: ``APIError`` `.unprocessable` for a cycle or a missing node, `.badRequest` for missing
    ///   inputs or a malformed node, `.internalError` when the store fails.
    public func start(namespace: String, pipelineID: String, nodes: JSONObject, version: String?,
                      inputs: JSONObject, overrides: JSONObject, mode: RunMode,
                      onFinish: (@Sendable (RunRecord) -> Void)? = nil) throws(APIError) -> RunRecord {
        if closed.load(ordering: .acquiring) { throw APIError(.internalError, "server shutting down") }
        let graph = try PipelineGraph(nodes: nodes, overrides: overrides)
        let missing = NodeEvaluator.missingInputs(graph, runInputs: inputs)
        if !missing.isEmpty {
            throw APIError(.badRequest, "Missing input(s): \(missing.sorted().joined(separator: ", "))")
        }
        let now = wallClockMicros()
        let record = RunRecord(
            id: IDs.make(), namespace: namespace, pipelineID: pipelineID, mode: mode, version: version,
            inputs: inputs, status: .inProgress, result: nil, error: nil, partialOutputs: nil, usage: nil,
            createdAt: now, startedAt: now, endedAt: nil, nodes: graph.nodes.map { ($0.id, .pending) })
        let run = LiveRun(graph: graph, record: record)
        if let onFinish { run.state.withLock { $0.waiters.append(onFinish) } }
        live.withLock { $0[record.id] = run }
        if closed.load(ordering: .acquiring) {  // shutdown() began between the check above and now
            live.withLock { _ = $0.removeValue(forKey: record.id) }
            throw APIError(.internalError, "server shutting down")
        }
        let (snapshot, finished) = run.state.withLock { st in
            advance(run, &st)
            return commitLocked(run, &st)
        }
        guard let snapshot else {
            live.withLock { _ = $0.removeValue(forKey: record.id) }
            throw APIError(.internalError, "could not store the run")
        }
        finish(finished)
        return snapshot
    }

    /// Terminates a run (SPEC §4) and returns its record as committed. A run that is already terminated is
    /// returned as it is (a second terminate is harmless); a completed or failed one too, unchanged: the
    /// caller answers 400 for those. Throws `.notFound` for an unknown run or one of another pipeline or key.
    public func terminate(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        if let run = live.withLock({ $0[runID] }), run.record.namespace == namespace, run.record.pipelineID == pipelineID {
            let (snapshot, finished) = run.state.withLock { st -> (RunRecord?, Finished?) in
                if st.record.status.isFinal { return (st.record, nil) }
                stopLocked(run, &st, status: .terminated, error: nil)
                return commitLocked(run, &st)
            }
            finish(finished)
            if let snapshot { return snapshot }
            throw APIError(.internalError, "could not store the terminated run \(runID)")
        }
        return try status(namespace: namespace, pipelineID: pipelineID, runID: runID)
    }

    /// The committed state of a run. Throws `.notFound` for an unknown run or one of another pipeline or key.
    public func status(namespace: String, pipelineID: String, runID: String) throws(APIError) -> RunRecord {
        var record = finalRuns.withLock { $0[runID] }
        if record == nil {
            do { record = try store.run(namespace: namespace, id: runID) } catch {
                throw APIError(.internalError, "store error: \(error)")
            }
            if let record, record.status.isFinal { remember(record) }
        }
        guard let record, record.namespace == namespace, record.pipelineID == pipelineID else {
            throw APIError(.notFound, "Run \(runID) not found")
        }
        return record
    }

    private func remember(_ record: RunRecord) {
        finalRuns.withLock { cache in
            if cache.count >= Self.finalCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[record.id] = record
        }
    }

    /// Terminates every live run of a pipeline (it is being deleted, SPEC §3).
    public func terminateRuns(namespace: String, pipelineID: String) {
        let runs = live.withLock { $0.values.filter { $0.record.pipelineID == pipelineID && $0.record.namespace == namespace } }
        for run in runs { _ = try? terminate(namespace: namespace, pipelineID: pipelineID, runID: run.record.id) }
    }

    /// Fails every live run with `run interrupted: server shut down` (SPEC §1 SIGTERM), committing each and
    /// answering their waiters.
    public func shutdown() {
        closed.store(true, ordering: .releasing)
        let runs = live.withLock { Array($0.values) }
        for run in runs {
            let (_, finished) = run.state.withLock { st -> (RunRecord?, Finished?) in
                if st.record.status.isFinal { return (nil, nil) }
                stopLocked(run, &st, status: .failed, error: "run interrupted: server shut down")
                return commitLocked(run, &st)
            }
            finish(finished)
        }
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
                guard node.dependencies.allSatisfy({ st.nodeState($0) == .completed }) else { continue }
                let resolved = Templates.resolve(.object(node.inputs)) { reference in
                    st.outputs[run.graph.nodeID(for: reference.node)]?[reference.field]
                }.objectValue ?? [:]
                switch NodeEvaluator.evaluate(node, resolvedInputs: resolved, runInputs: st.record.inputs, seed: settings.seed) {
                case let .done(outputs):
                    st.outputs[node.id] = outputs
                    st.record.nodes[index].state = .completed
                    progressed = true
                case let .llm(completion):
                    st.record.nodes[index].state = .running
                    let nodeID = node.id
                    let timer = scheduler.schedule(afterNanoseconds: settings.duration(tokens: completion.tokens.count)) {
                        [weak self, weak run] in
                        guard let self, let run else { return }
                        self.llmFinished(run, nodeID: nodeID)
                    }
                    st.llm[node.id] = LLMProgress(completion: completion, startedAt: scheduler.now, timer: timer)
                }
            }
        }
        if st.record.nodes.allSatisfy({ $0.state == .completed || $0.state == .skipped }) {
            st.record.status = .completed
            st.record.endedAt = wallClockMicros()
            st.record.result = resultOutputs(run, st)
            st.record.usage = usage(st, emittedAt: nil)
        }
    }

    private func llmFinished(_ run: LiveRun, nodeID: String) {
        let (_, finished) = run.state.withLock { st -> (RunRecord?, Finished?) in
            guard st.record.status == .inProgress, let progress = st.llm.removeValue(forKey: nodeID),
                  let index = run.graph.nodes.firstIndex(where: { $0.id == nodeID }) else { return (nil, nil) }
            st.finishedLLM[nodeID] = progress.completion
            var outputs = progress.completion.outputs()
            outputs["complete"] = .bool(true)
            st.outputs[nodeID] = outputs
            st.record.nodes[index].state = .completed
            advance(run, &st)
            return commitLocked(run, &st)
        }
        finish(finished)
    }

    /// Stops a run now: cancels its timers, records what was produced so far, marks unfinished nodes.
    private func stopLocked(_ run: LiveRun, _ st: inout LiveState, status: RunStatus, error: String?) {
        let now = scheduler.now
        for progress in st.llm.values { scheduler.cancel(progress.timer) }
        st.record.status = status
        st.record.error = error
        st.record.endedAt = wallClockMicros()
        st.record.result = nil
        st.record.partialOutputs = partialOutputs(run, st, now: now)
        st.record.usage = usage(st, emittedAt: now)
        for i in st.record.nodes.indices {
            switch st.record.nodes[i].state {
            case .running: st.record.nodes[i].state = status == .terminated ? .terminated : .failed
            case .pending: st.record.nodes[i].state = .skipped
            default: break
            }
        }
        st.llm.removeAll()
    }

    /// Output-node values keyed by output-node name.
    private func resultOutputs(_ run: LiveRun, _ st: LiveState) -> JSONObject {
        var result = JSONObject()
        for node in run.graph.nodes where node.type == "output" {
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
                    let n = settings.emitted(after: now &- progress.startedAt, of: progress.completion.tokens.count)
                    return progress.completion.outputs(emitted: n)[reference.field]
                }
                available = false
                return nil
            }
            if available { partial[node.name] = value }
        }
        return partial
    }

    /// Token counts and credits over the run's LLM nodes; running ones count what they emitted by `emittedAt`.
    private func usage(_ st: LiveState, emittedAt now: UInt64?) -> JSONObject? {
        var input = 0, output = 0
        var credits = 0.0
        for completion in st.finishedLLM.values {
            input += completion.inputTokens
            output += completion.outputTokens
            credits += completion.creditsUsed
        }
        if let now {
            for progress in st.llm.values {
                let n = settings.emitted(after: now &- progress.startedAt, of: progress.completion.tokens.count)
                input += progress.completion.inputTokens
                output += n
                credits += progress.completion.outputs(emitted: n)["credits_used"]?.doubleValue ?? 0
            }
        }
        if input == 0 && output == 0 { return nil }
        return ["input_tokens": .int(Int64(input)), "output_tokens": .int(Int64(output)),
                "tokens_used": .int(Int64(input + output)), "credits_used": .double(credits)]
    }

    // MARK: - Commit and notify

    struct Finished {
        let record: RunRecord
        let waiters: [@Sendable (RunRecord) -> Void]
    }

    /// Commits the run's state. Returns the committed record, and, when the run just became final, what
    /// must happen after the lock is released (waiters to answer). A failed commit is logged and returns nil.
    private func commitLocked(_ run: LiveRun, _ st: inout LiveState) -> (RunRecord?, Finished?) {
        do {
            try store.saveRuns([st.record])
        } catch {
            logger.error("could not commit run \(st.record.id): \(error)")
            return (nil, nil)
        }
        guard st.record.status.isFinal else { return (st.record, nil) }
        let waiters = st.waiters
        st.waiters = []
        return (st.record, Finished(record: st.record, waiters: waiters))
    }

    private func finish(_ finished: Finished?) {
        guard let finished else { return }
        remember(finished.record)
        live.withLock { _ = $0.removeValue(forKey: finished.record.id) }
        for waiter in finished.waiters { waiter(finished.record) }
    }
}

/// A run in memory while it is not final.
final class LiveRun: Sendable {
    let graph: PipelineGraph
    /// The run's identity as created (id, namespace, pipeline); its changing state is in `state`.
    let record: RunRecord
    let state: Mutex<LiveState>

    init(graph: PipelineGraph, record: RunRecord) {
        self.graph = graph
        self.record = record
        state = Mutex(LiveState(record: record))
    }
}

/// A running LLM node: its completion and when it started (scheduler nanoseconds).
struct LLMProgress {
    let completion: LLMCompletion
    let startedAt: UInt64
    let timer: TimerID
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

    func nodeState(_ id: String) -> NodeState? {
        record.nodes.first(where: { $0.id == id })?.state
    }
}
