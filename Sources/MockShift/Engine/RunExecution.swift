import Dispatch
import Logging
import Metrics
import Synchronization

/// How a run moves (SPEC §3–6): nodes evaluated in dependency order, timed nodes on the scheduler, stops. All of it
/// runs under the run's lock.
extension RunEngine {
    // MARK: - Execution (all under the run's lock)

    /// Evaluates every node whose dependencies are done, starting LLM nodes on the scheduler, and completes
    /// the run when no node is left.
    func advance(_ run: LiveRun, _ st: inout LiveState) {
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
                                              strict: settings.strictNodes, chat: run.chat, files: run.files) {
                case let .failed(message):
                    st.record.nodes[index].state = .running
                    stopLocked(run, &st, status: .failed, error: message)
                    return
                case let .wait(milliseconds, outputs):
                    st.record.nodes[index].state = .running
                    st.log("node_started", node: node.id, clock: scheduler.now)
                    var timing = settings
                    timing.ttftMilliseconds = milliseconds
                    var progress = LLMProgress(completion: LLMCompletion(text: "", inputTokens: 0), startedAt: scheduler.now,
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
                    if let script = run.scripts.first(where: { $0.matches(nodeID: node.id, nodeName: node.name, prompt: prompt) }) {
                        script.apply(to: &completion)
                        if let ttft = script.ttftMilliseconds { timing.ttftMilliseconds = ttft }
                        if let rate = script.tokensPerSecond { timing.tokensPerSecond = rate }
                        timing.tokenOffsets = script.tokenOffsetsMilliseconds
                        if let after = script.failAfterTokens, failure == nil { failure = (after, script.message) }
                    } else if settings.replayStrict, let pipeline = run.scriptedPipeline {
                        // `--replay-strict`: nothing recorded for this prompt, so nothing is made up either.
                        stopLocked(run, &st, status: .failed,
                                   error: LLMScript.unrecorded("pipeline", pipeline, node: node.id, prompt: prompt))
                        return
                    }
                    var progress = LLMProgress(completion: completion, startedAt: scheduler.now,
                                               streamsTo: run.streaming ? run.streamedOutputs[node.id] ?? [] : [], timing: timing)
                    if let failure { progress.failure = (min(failure.afterTokens, completion.outputTokens), failure.message) }
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
    func scheduleLLM(_ run: LiveRun, _ st: inout LiveState, nodeID: String) {
        guard var progress = st.llm[nodeID] else { return }
        scheduleLLM(run, &progress, nodeID: nodeID)
        st.llm[nodeID] = progress
    }

    /// ``scheduleLLM(_:_:nodeID:)`` on a node's progress the caller holds (and stores back).
    private func scheduleLLM(_ run: LiveRun, _ progress: inout LLMProgress, nodeID: String) {
        let total = progress.failure?.afterTokens ?? progress.completion.outputTokens
        let target = progress.streamsTo.isEmpty ? total : min(total, progress.sent + 1)
        let elapsed = scheduler.now &- progress.startedAt
        let dueAt = progress.timing.due(token: target)
        progress.generation &+= 1
        let generation = progress.generation
        let tag = run.timerTag  // the timers are counted per namespace (liveTimerCount)
        let lane = run.lane  // one run's timers stay on one scheduler lane, in order
        // The run is held strongly (a timer that fires or is cancelled lets it go; nothing of the run holds the
        // closure), the engine weakly (tests drop engines whose scheduler lives on).
        progress.timer = scheduler.schedule(afterNanoseconds: dueAt > elapsed ? dueAt - elapsed : 0, tag: tag,
                                            lane: lane) {
            [weak self, run] in
            self?.llmTick(run, nodeID: nodeID, generation: generation)
        }
        // A node whose tokens nobody streams ticks only at its end: a timer of its own puts its first token on
        // the timeline when it comes.
        let firstDue = progress.timing.due(token: 1)
        if progress.streamsTo.isEmpty, !progress.firstTokenLogged, progress.outputsOverride == nil, total > 0, firstDue < dueAt {
            progress.firstTokenTimer = scheduler.schedule(afterNanoseconds: firstDue > elapsed ? firstDue - elapsed : 0,
                                                          tag: tag, lane: lane) {
                [weak self, weak run] in
                guard let self, let run else { return }
                run.state.withLock { st in
                    guard st.record.status == .inProgress, st.llm[nodeID]?.generation == generation else { return }
                    self.noteFirstToken(&st, nodeID: nodeID, at: self.scheduler.now)
                    self.deliverFeed(run, &st)
                }
            }
        }
    }

    /// An LLM node's timer fired: send the tokens now due, then finish the node or wait for the next token.
    ///
    /// On the real clock, a run that ends here is committed without holding the scheduler's thread: its final state goes to the
    /// store's committer and the run stays "commit pending" (nothing reports its end: no `result` event, no status,
    /// no waiter) until it lands, then ends as any commit ends it (``landedAfterTick(_:error:)``). Thousands of
    /// streams ending within a second no longer hold up the tokens of the others (issue 14 item 2).
    func llmTick(_ run: LiveRun, nodeID: String, generation: UInt64) {
        enum Step { case committed(Committed?), inFlight(RunRecord) }
        let step = run.state.withLock { st -> Step in
            defer { deliverFeed(run, &st) }  // tokens of a waiting node too; after the commit otherwise
            guard st.record.status == .inProgress,
                  tickLocked(run, &st, nodeID: nodeID, generation: generation) != .waiting else { return .committed(nil) }
            advance(run, &st)
            // The manual clock keeps the commit inline: `advance` returns once what fell due is done and stored.
            guard st.record.status.isFinal, !st.commitPending, scheduler.clock == .real else {
                return .committed(commitLocked(run, &st))
            }
            st.record.events = st.timeline
            st.commitPending = true
            return .inFlight(st.record)
        }
        switch step {
        case let .committed(committed): finish(committed)
        case let .inFlight(record):
            store.saveRuns([record]) { [self] error in
                // Off the store's write queue before the run's lock is taken: a thread holding that lock may be
                // waiting for the write queue (a terminate or the shutdown committing the same run), and what the
                // end sets off (a chatbot turn's answer stored, a webhook) may write to the store itself.
                DispatchQueue.global().async { self.landedAfterTick(run, error: error) }
            }
        }
    }

    /// The final commit of ``llmTick(_:nodeID:generation:)`` landed (`error` nil) or failed: the run ends, or waits
    /// for the pending-commit retry like any run whose commit failed. Nothing happens when a terminate or the
    /// shutdown committed the run meanwhile.
    private func landedAfterTick(_ run: LiveRun, error: (any Error)?) {
        let committed = run.state.withLock { st -> Committed? in
            guard st.commitPending else { return nil }
            defer { deliverFeed(run, &st) }
            if let error {
                logger.warning("run \(st.record.id): commit pending, will retry: \(error)")
                pendingCommits.add(run, engine: self)
                return nil
            }
            return landedLocked(&st)
        }
        finish(committed)
    }

    /// What ``tickLocked(_:_:nodeID:)`` did to its node.
    enum TickOutcome { case waiting, completed, failed }

    /// Sends an LLM (or wait) node's tokens now due; then finishes the node (its outputs set, the run not yet
    /// advanced), fails the run (an injected failure), or schedules the next timer. With a `generation`, a node
    /// rescheduled since (a pause, a resume) is left alone: `.waiting`.
    func tickLocked(_ run: LiveRun, _ st: inout LiveState, nodeID: String, generation: UInt64? = nil) -> TickOutcome {
        // The hot path (a tick per token per live run): the node's progress is moved out of the table and back
        // (a copy would retain and release each of its references, per token).
        guard var progress = st.llm.removeValue(forKey: nodeID) else { return .waiting }
        if let generation, progress.generation != generation {
            st.llm[nodeID] = progress
            return .waiting
        }
        let now = scheduler.now
        if !progress.firstTokenLogged, progress.emitted(at: now) > 0 {  // as noteFirstToken does
            progress.firstTokenLogged = true
            st.log("first_token", node: nodeID, clock: progress.startedAt &+ progress.timing.due(token: 1))
        }
        let total = progress.failure?.afterTokens ?? progress.completion.outputTokens
        let emitted = progress.timing.emitted(after: now &- progress.startedAt, of: total)
        if !progress.streamsTo.isEmpty && emitted > progress.sent {
            let tokens = progress.completion.next(emitted - progress.sent, from: &progress.cursor)
            st.notify(.tokens(outputs: progress.streamsTo, tokens: tokens))
            st.feedTokens(node: nodeID, outputs: progress.streamsTo, tokens: tokens, clock: now)
        }
        guard emitted >= total else {
            scheduleLLM(run, &progress, nodeID: nodeID)
            st.llm[nodeID] = progress
            return .waiting
        }
        if let failure = progress.failure {  // an injected fault: the node fails here, and the run with it
            st.llm[nodeID] = progress  // stopLocked logs what it produced
            stopLocked(run, &st, status: .failed, error: "node \(nodeID): \(failure.message)")
            return .failed
        }
        if let timer = progress.firstTokenTimer { scheduler.cancel(timer) }
        logTokens(&st, nodeID: nodeID, progress, emitted: emitted)
        st.log("node_completed", node: nodeID, clock: scheduler.now)
        if progress.outputsOverride == nil { st.finishedLLM[nodeID] = progress.completion }
        var outputs = progress.outputsOverride ?? progress.completion.outputs()
        outputs["complete"] = .bool(true)
        st.outputs[nodeID] = outputs
        if let index = run.graph.nodes.firstIndex(where: { $0.id == nodeID }) { st.record.nodes[index].state = .completed }
        return .completed
    }

    /// Starts the timers of a timed node (LLM or wait) that ``advance(_:_:)`` just set up; with `--time-scale 0`
    /// it has nothing to wait for and finishes at once, inside the same commit as the rest of the run (an
    /// instant run is one commit, with no scheduler round trip). Returns true when the node completed now.
    func startTimedNode(_ run: LiveRun, _ st: inout LiveState, nodeID: String, index: Int) -> Bool {
        guard settings.timeScale == 0, scheduler.clock == .real else {
            scheduleLLM(run, &st, nodeID: nodeID)
            return false
        }
        return tickLocked(run, &st, nodeID: nodeID) == .completed
    }

    /// Stops a run now: cancels its timers, records what was produced so far, marks unfinished nodes.
    func stopLocked(_ run: LiveRun, _ st: inout LiveState, status: RunStatus, error: String?) {
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
    func noteFirstToken(_ st: inout LiveState, nodeID: String, at now: UInt64) {
        guard var progress = st.llm[nodeID], !progress.firstTokenLogged, progress.emitted(at: now) > 0 else { return }
        progress.firstTokenLogged = true
        st.llm[nodeID] = progress
        let first = progress.startedAt &+ progress.timing.due(token: 1)
        st.log("first_token", node: nodeID, clock: first)
    }

    /// Timeline entries for an LLM node that stops: its first token (if not logged yet) and how many it emitted.
    func logTokens(_ st: inout LiveState, nodeID: String, _ progress: LLMProgress, emitted: Int) {
        guard emitted > 0 else { return }
        if !progress.firstTokenLogged {
            st.log("first_token", node: nodeID, clock: progress.startedAt &+ progress.timing.due(token: 1))
        }
        st.log("tokens", node: nodeID, clock: scheduler.now, extra: ["count": .int(Int64(emitted))])
    }

    /// True when `node`'s `dependencies` name a path of a condition node that was not taken (API.md §6 gating).
    func gatedOff(_ node: GraphNode, _ run: LiveRun, _ st: LiveState) -> Bool {
        guard let gates = node.inputs["dependencies"] else { return false }
        return Templates.references(in: gates).contains { reference in
            st.outputs[run.graph.nodeID(for: reference.node)]?[reference.field] == .bool(false)
        }
    }

    /// Output-node values keyed by output-node name (skipped outputs are left out).
    func resultOutputs(_ run: LiveRun, _ st: LiveState) -> JSONObject {
        var result = JSONObject()
        for node in run.graph.nodes where node.type == "output" && st.outputs[node.id] != nil {
            result[node.name] = st.outputs[node.id]?["value"] ?? .null
        }
        return result
    }

    /// For a run stopped early: each output node whose value can be formed from finished nodes and the tokens
    /// running LLM nodes had emitted by `now`, keyed by output-node name.
    func partialOutputs(_ run: LiveRun, _ st: LiveState, now: UInt64) -> JSONObject {
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
    func usage(_ st: LiveState, at now: UInt64?) -> JSONObject? {
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
                credits += progress.completion.credits(emitted: n)
            }
        }
        if input == 0 && output == 0 { return nil }
        return ["input_tokens": .int(Int64(input)), "output_tokens": .int(Int64(output)),
                "tokens_used": .int(Int64(input + output)), "credits_used": .double(credits)]
    }
}
