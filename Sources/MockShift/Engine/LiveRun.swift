import Dispatch
import Logging
import Metrics
import Synchronization

/// A run in memory while it is not final.
final class LiveRun: Sendable {
    /// The scheduler lane key of this run's timers (``Scheduler/schedule(afterNanoseconds:tag:lane:_:)``).
    var lane: UInt64 { UInt64(truncatingIfNeeded: ObjectIdentifier(self).hashValue) }

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
    /// Counts this run's timers with the rest of its namespace's (``Scheduler/tag(_:)``).
    let timerTag: Scheduler.TimerTag?

    /// Scripted answers that may apply to this run's LLM nodes.
    let scripts: [LLMScript]
    /// The pipeline the scripts are for, when scripted answers apply to this run (``RunOptions/scriptedPipeline``).
    let scriptedPipeline: String?
    /// The conversation history its `chat_memory` nodes show (a chatbot turn), or nil.
    let chat: ChatHistory?
    /// The conversation's files its `chat_file_reader` nodes read (a chatbot turn), or nil.
    let files: [ChatFile]?

    init(graph: PipelineGraph, record: RunRecord, streamAll: Bool, streaming: Bool, failures: [RunOptions.LLMFailure] = [],
         scripts: [LLMScript] = [], scriptedPipeline: String? = nil, chat: ChatHistory? = nil, files: [ChatFile]? = nil,
         timerTag: Scheduler.TimerTag? = nil) {
        self.timerTag = timerTag
        self.scriptedPipeline = scriptedPipeline
        self.chat = chat
        self.files = files
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
    /// Where its streamed tokens stand: ``sent`` tokens went out, and the next ones follow from here.
    var cursor = LLMCompletion.TokenCursor()
    /// How many tokens went out to streams.
    var sent: Int { cursor.position }
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

    /// The node's timing: the daemon's, or a scripted answer's time to first token and rate, or its recorded
    /// token offsets.
    let timing: EngineSettings

    init(completion: LLMCompletion, startedAt: UInt64, streamsTo: [String], timing: EngineSettings) {
        self.timing = timing
        self.completion = completion
        self.startedAt = startedAt
        self.streamsTo = streamsTo
    }

    func emitted(at now: UInt64) -> Int {
        timing.emitted(after: now &- startedAt, of: completion.outputTokens)
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
    /// How much of `timeline` was there at the last successful commit (what is shown while one is pending).
    var timelineCommitted = 0
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
