import Logging
import Synchronization
import Testing
@testable import MockShift

/// Recorded answers (issue 15 item 3): a scripted answer's own tokens and token offsets, its `node` and exact
/// `prompt`, the checks of `POST /_mock/llm`, and `--replay-strict`.
@Suite struct RecordedAnswerTests {
    static let ms: UInt64 = 1_000_000

    func timing(_ offsets: [Double], scale: Double = 1) -> EngineSettings {
        var settings = EngineSettings()
        settings.timeScale = scale
        settings.tokenOffsets = offsets
        return settings
    }

    // MARK: Timing

    @Test func eachRecordedTokenIsDueAtItsOffsetAndTheFirstIsTheTimeToFirstToken() {
        let t = timing([120, 120, 300.5])
        #expect(t.due(token: 0) == 120 * Self.ms, "k = 0 is the time to first token: the first offset")
        #expect(t.due(token: 1) == 120 * Self.ms)
        #expect(t.due(token: 2) == 120 * Self.ms, "two tokens recorded at the same moment come together")
        #expect(t.due(token: 3) == 300_500_000)
        #expect(t.due(token: 4) == 300_500_000, "beyond the last token: the last")
    }

    @Test func emittedCountsTheTokensWhoseOffsetHasPassed() {
        let t = timing([120, 120, 300, 1000])
        #expect(t.emitted(after: 0, of: 4) == 0)
        #expect(t.emitted(after: 120 * Self.ms - 1, of: 4) == 0)
        #expect(t.emitted(after: 120 * Self.ms, of: 4) == 2)
        #expect(t.emitted(after: 999 * Self.ms, of: 4) == 3)
        #expect(t.emitted(after: 1000 * Self.ms, of: 4) == 4)
        #expect(t.emitted(after: 60_000 * Self.ms, of: 4) == 4)
        #expect(t.emitted(after: 60_000 * Self.ms, of: 2) == 2, "a failure after 2 tokens stops the count there")
    }

    @Test func theTimeScaleScalesRecordedOffsetsAndZeroMakesThemInstant() {
        let half = timing([100, 400], scale: 0.5)
        #expect(half.due(token: 1) == 50 * Self.ms)
        #expect(half.due(token: 2) == 200 * Self.ms)
        #expect(half.emitted(after: 199 * Self.ms, of: 2) == 1)
        #expect(timing([100, 400], scale: 0).emitted(after: 0, of: 2) == 2)
        #expect(timing([], scale: 1).due(token: 0) == 0, "an empty answer is due at once")
    }

    // MARK: Tokens

    @Test func recordedTokensKeepTheirBoundariesEvenInsideAGrapheme() {
        var script = LLMScript()
        script.setTokens(["Hel", "lo", ", wor", "ld", " e", "\u{301}!"])
        #expect(script.response == "Hello, world e\u{301}!")
        var completion = LLMCompletion(text: "simulated words here", inputTokens: 3)
        script.apply(to: &completion)
        #expect(completion.tokens == ["Hel", "lo", ", wor", "ld", " e", "\u{301}!"])
        #expect(completion.outputTokens == 6)
        #expect(completion.prefix(2) == "Hello")
        #expect(completion.prefix(5) == "Hello, world e", "cut before the combining accent, as it was streamed")
        #expect(completion.text == "Hello, world e\u{301}!")
        #expect(completion.inputTokens == 3)
        var cursor = LLMCompletion.TokenCursor()
        #expect(completion.next(4, from: &cursor) == ["Hel", "lo", ", wor", "ld"])
        #expect(completion.next(4, from: &cursor) == [" e", "\u{301}!"])
    }

    @Test func aResponseWithoutTokensIsStillCutByWords() {
        var script = LLMScript(response: "It is sunny.")
        var completion = LLMCompletion(text: "x", inputTokens: 1)
        script.apply(to: &completion)
        #expect(completion.tokens == ["It", " is", " sunny."])
        script.setTokens(["It is", " sunny."])
        script.setResponse("Cloudy now.")
        script.apply(to: &completion)
        #expect(completion.tokens == ["Cloudy", " now."], "a new response drops the old token boundaries")
    }

    // MARK: Matching

    @Test func nodeMatchesTheIdOrTheNameAndNodeIdOnlyTheId() {
        var byNode = LLMScript(response: "x")
        byNode.node = "writer"
        #expect(byNode.matches(nodeID: "llm_0", nodeName: "writer", prompt: "p"))
        #expect(byNode.matches(nodeID: "writer", nodeName: "other", prompt: "p"))
        #expect(!byNode.matches(nodeID: "llm_0", nodeName: "editor", prompt: "p"))
        let byID = LLMScript(nodeID: "llm_0", response: "x")
        #expect(byID.matches(nodeID: "llm_0", nodeName: "writer", prompt: "p"))
        #expect(!byID.matches(nodeID: "writer", nodeName: "llm_0", prompt: "p"))
    }

    @Test func anExactPromptMatchesTheWholePromptLiterally() {
        var script = LLMScript(response: "x")
        script.prompt = "What is 2+2? (exactly)"
        #expect(script.matches(nodeID: "llm", prompt: "What is 2+2? (exactly)"))
        #expect(!script.matches(nodeID: "llm", prompt: "What is 2+2? (exactly) "), "the whole prompt, not a part")
        #expect(!script.matches(nodeID: "llm", prompt: "what is 2+2? (exactly)"), "case counts")
        #expect(!script.matches(nodeID: "llm", prompt: "Q: What is 2+2? (exactly)"))
        let long = String(repeating: "a", count: 5000)
        script.prompt = long + "b"
        #expect(!script.matches(nodeID: "llm", prompt: long + "c"), "the whole prompt, beyond the pattern's searched prefix")
        #expect(script.matches(nodeID: "llm", prompt: long + "b"))
    }

    @Test func theStrictErrorNamesPipelineNodeAndPromptQuotedAndCut() {
        #expect(LLMScript.unrecorded("pipeline", "p", node: "llm_0", prompt: "Say \"hi\"\nnow")
                == #"no recorded answer for pipeline "p" node "llm_0" prompt "Say \"hi\"\nnow""#)
        let long = LLMScript.unrecorded("pipeline", "p", node: "llm", prompt: String(repeating: "x", count: 600))
        #expect(long.hasSuffix(String(repeating: "x", count: 10) + "\"…"))
        #expect(long.count < 600)
    }

    // MARK: Checks of POST /_mock/llm

    func added(_ body: JSONObject) throws -> LLMScript {
        try LLMScripts().add(namespace: "n", body).script
    }

    func refusal(_ body: JSONObject) -> String {
        do {
            _ = try LLMScripts().add(namespace: "n", body)
            return "accepted"
        } catch let error as APIError {
            return error.kind == .badRequest ? error.message : "status \(error.kind): \(error.message)"
        } catch {
            return "\(error)"
        }
    }

    @Test func tokensAloneGiveTheResponseAndOffsetsGiveTheTiming() throws {
        let script = try added(["prompt": "Hi", "node": "llm", "tokens": ["Hel", "lo!"], "token_offsets_ms": [250, 400.5]])
        #expect(script.response == "Hello!")
        #expect(script.tokenEnds == [3, 6])
        #expect(script.tokenOffsetsMilliseconds == [250, 400.5])
        #expect(script.prompt == "Hi" && script.node == "llm")
        let same = try added(["response": "Hello!", "tokens": ["Hel", "lo!"]])
        #expect(same.response == "Hello!" && same.tokenOffsetsMilliseconds == nil)
        #expect(try added(["tokens": [], "token_offsets_ms": []]).response == "", "an empty answer may be recorded")
    }

    @Test(arguments: [
        (["tokens": "Hello"], "tokens must be"),
        (["tokens": ["Hel", 5]], "tokens[1] must be a string"),
        (["tokens": ["Hel", ""]], "tokens[1] is empty"),
        (["response": "Hello!", "tokens": ["Hel", "lo"]], "tokens do not concatenate to response (they differ from character 5 on)"),
        (["token_offsets_ms": [1, 2]], "token_offsets_ms needs tokens"),
        (["response": "a b", "token_offsets_ms": [1, 2]], "token_offsets_ms needs tokens"),
        (["tokens": ["a", "b"], "token_offsets_ms": [1]], "token_offsets_ms has 1 offset(s) for 2 token(s)"),
        (["tokens": ["a", "b"], "token_offsets_ms": "1,2"], "token_offsets_ms must be"),
        (["tokens": ["a", "b"], "token_offsets_ms": [5, 4]], "token_offsets_ms[1] (4.0) is less than token_offsets_ms[0] (5.0)"),
        (["tokens": ["a", "b"], "token_offsets_ms": [-1, 4]], "token_offsets_ms[0] must be a number from 0 to 86400000"),
        (["tokens": ["a", "b"], "token_offsets_ms": [1, "2"]], "token_offsets_ms[1] must be a number"),
        (["tokens": ["a", "b"], "token_offsets_ms": [1, 86_400_001]], "token_offsets_ms[1] must be a number"),
        (["tokens": ["a"], "token_offsets_ms": [1], "ttft_ms": 5], "ttft_ms cannot be combined with token_offsets_ms"),
        (["tokens": ["a"], "token_offsets_ms": [1], "tokens_per_second": 5], "tokens_per_second cannot be combined with token_offsets_ms"),
        (["node": "llm", "node_id": "llm", "response": "x"], "node and node_id cannot both be given"),
        (["node": "", "response": "x"], "node must name an LLM node"),
        (["node": 3, "response": "x"], "node must be a string"),
        (["prompt": "a", "prompt_pattern": "a", "response": "x"], "prompt and prompt_pattern cannot both be given"),
        (["prompt": ["a"], "response": "x"], "prompt must be a string"),
        (["prompt": "a"], "a scripted answer needs one of response, tokens,"),
    ] as [(JSONObject, String)])
    func badRecordedFieldsAre400NamingTheField(body: JSONObject, error: String) {
        let message = refusal(body)
        #expect(message.hasPrefix(error), "expected an error starting \(error), got: \(message)")
    }

    // MARK: Runs

    /// An engine on a manual clock with `settings`, a streamed run of input → llm (streaming) → output, its tokens
    /// collected as they come.
    final class StreamedRun: Sendable {
        let scheduler = Scheduler(clock: .manual)
        let engine: RunEngine
        let store: Store
        let run: RunRecord
        /// The tokens of each tick, as the observer got them.
        let log = TokenLog()

        init(prompt: String, scripts: [LLMScript], strict: Bool = false, scriptedPipeline: String? = "chat",
             timeScale: Double = 1) throws {
            store = try Store(path: ":memory:")
            var settings = EngineSettings()
            settings.replayStrict = strict
            settings.timeScale = timeScale
            engine = RunEngine(store: store, scheduler: scheduler, settings: settings, logger: Logger(label: "test"))
            let nodes = JSONObject([
                node("input_0", "input", ["input_type": "string"], name: "question", outputs: ["text"]),
                node("llm_0", "llm", ["prompt": "{{ input_0.text }}", "model": "gpt-4o", "provider": "openai", "stream": true],
                     name: "writer", outputs: ["response"]),
                node("output_0", "output", ["value": "{{ llm_0.response }}", "output_type": "stream<string>"], name: "answer"),
            ])
            var options = RunOptions()
            options.llmScripts = scripts
            options.scriptedPipeline = scriptedPipeline
            let log = self.log
            run = try engine.start(namespace: "default", pipelineID: "p1", nodes: nodes, version: nil,
                                   inputs: ["question": .string(prompt)], options: options, mode: .stream, observer: { event in
                if case let .tokens(_, tokens) = event { log.ticks.withLock { $0.append(tokens) } }
            })
        }

        func advance(ms: UInt64) { scheduler.advance(byNanoseconds: ms * 1_000_000) }
        var ticks: [[String]] { log.ticks.withLock { $0 } }
        var tokens: [String] { ticks.flatMap { $0 } }
        func stored() throws -> RunRecord { try engine.status(namespace: "default", pipelineID: "p1", runID: run.id) }
    }

    final class TokenLog: Sendable {
        let ticks = Mutex<[[String]]>([])
    }

    func recorded(_ tokens: [String], _ offsets: [Double], prompt: String? = nil) -> LLMScript {
        var script = LLMScript()
        script.setTokens(tokens)
        script.tokenOffsetsMilliseconds = offsets
        script.prompt = prompt
        return script
    }

    @Test func aRecordedAnswerStreamsItsTokensAtTheirOffsetsOnTheManualClock() throws {
        let r = try StreamedRun(prompt: "Hi", scripts: [recorded(["Hel", "lo", ", wor", "ld!"], [300, 300, 450, 1200])])
        r.advance(ms: 299)
        #expect(r.tokens == [])
        r.advance(ms: 1)
        #expect(r.ticks == [["Hel", "lo"]], "both tokens recorded at 300 ms come then")
        r.advance(ms: 149)
        #expect(r.tokens == ["Hel", "lo"])
        r.advance(ms: 1)
        #expect(r.tokens == ["Hel", "lo", ", wor"])
        r.advance(ms: 749)
        #expect(try r.stored().status == .inProgress)
        r.advance(ms: 1)
        #expect(r.ticks == [["Hel", "lo"], [", wor"], ["ld!"]])
        let done = try r.stored()
        #expect(done.status == .completed)
        #expect(done.result == ["answer": "Hello, world!"])
    }

    @Test func recordedOffsetsAreScaledByTheTimeScale() throws {
        let r = try StreamedRun(prompt: "Hi", scripts: [recorded(["a", "b"], [1000, 2000])], timeScale: 0.5)
        r.advance(ms: 499)
        #expect(r.tokens == [])
        r.advance(ms: 1)
        #expect(r.tokens == ["a"])
        r.advance(ms: 500)
        #expect(r.tokens == ["a", "b"])
        #expect(try r.stored().status == .completed)
    }

    @Test func aTerminatedReplayKeepsTheRecordedTokensSentSoFar() throws {
        let r = try StreamedRun(prompt: "Hi", scripts: [recorded(["One", " two", " three"], [100, 200, 300])])
        r.advance(ms: 250)
        let stopped = try r.engine.terminate(namespace: "default", pipelineID: "p1", runID: r.run.id)
        #expect(stopped.status == .terminated)
        #expect(stopped.partialOutputs == ["answer": "One two"])
    }

    @Test func replayStrictFailsAnUnrecordedPromptNamingPipelineNodeAndPrompt() throws {
        let r = try StreamedRun(prompt: "Tell me a story.", scripts: [recorded(["x"], [10], prompt: "Hi")], strict: true)
        let failed = try r.stored()
        #expect(failed.status == .failed)
        #expect(failed.error == #"no recorded answer for pipeline "chat" node "llm_0" prompt "Tell me a story.""#)
        #expect(failed.nodes.map(\.state) == [.completed, .failed, .terminated])
        #expect(r.tokens == [])
    }

    @Test func replayStrictStillReplaysARecordedPrompt() throws {
        let r = try StreamedRun(prompt: "Hi", scripts: [recorded(["x", "y"], [10, 20], prompt: "Hi")], strict: true)
        r.advance(ms: 20)
        #expect(try r.stored().result == ["answer": "xy"])
    }

    @Test func withoutReplayStrictOrForAnUnscriptedRunAnUnrecordedPromptIsSimulated() throws {
        let loose = try StreamedRun(prompt: "Write 3 words.", scripts: [recorded(["x"], [10], prompt: "Hi")])
        loose.advance(ms: 60_000)
        #expect(try loose.stored().status == .completed)
        let unscripted = try StreamedRun(prompt: "Write 3 words.", scripts: [], strict: true, scriptedPipeline: nil)
        unscripted.advance(ms: 60_000)
        #expect(try unscripted.stored().status == .completed, "strictness is for runs scripted answers apply to")
    }
}
