import Logging
import Synchronization
import Testing
@testable import MockShift

/// An engine on an in-memory store and a manual clock: LLM timing is exact and instant.
struct EngineFixture {
    let store: Store
    let scheduler = Scheduler(clock: .manual)
    let engine: RunEngine

    init(ttftMs: Double = 400, tokensPerSecond: Double = 40) throws {
        store = try Store(path: ":memory:")
        var settings = EngineSettings()
        settings.ttftMilliseconds = ttftMs
        settings.tokensPerSecond = tokensPerSecond
        engine = RunEngine(store: store, scheduler: scheduler, settings: settings, logger: Logger(label: "test"))
    }

    static let nodes = JSONObject([
        node("input_0", "input", ["input_type": "string"], name: "question", outputs: ["text"]),
        node("llm", "llm", ["prompt": "{{ input_0.text }}", "model": "gpt-4o", "provider": "openai"],
             outputs: ["response", "tokens_used"]),
        node("output_0", "output", ["value": "{{ llm.response }}"], name: "answer"),
    ])

    func start(_ prompt: String = "Write 10 words about robots.", onFinish: (@Sendable (RunRecord) -> Void)? = nil) throws -> RunRecord {
        try engine.start(namespace: "default", pipelineID: "p1", nodes: Self.nodes, version: nil,
                         inputs: ["question": .string(prompt)], mode: .background, onFinish: onFinish)
    }

    func advance(ms: UInt64) { scheduler.advance(byNanoseconds: ms * 1_000_000) }

    func stored(_ id: String) throws -> RunRecord { try engine.status(namespace: "default", pipelineID: "p1", runID: id) }
}

@Suite struct RunEngineTests {
    @Test func runCompletesAfterTimeToFirstTokenPlusTokensAtTheRate() throws {
        let f = try EngineFixture()
        let run = try f.start()
        #expect(run.status == .inProgress)
        #expect(try f.stored(run.id).nodes.map(\.state) == [.completed, .running, .pending])
        let expected = LLMSimulator.complete(LLMRequest(provider: "openai", model: "gpt-4o", system: "",
                                                        prompt: "Write 10 words about robots.", maxTokens: 128_000, seed: 0))
        let total = 400 + UInt64(expected.tokens.count) * 25  // 40 tokens/s = 25 ms a token
        f.advance(ms: total - 1)
        #expect(try f.stored(run.id).status == .inProgress)
        f.advance(ms: 1)
        let done = try f.stored(run.id)
        #expect(done.status == .completed)
        #expect(done.result == ["answer": .string(expected.text)])
        #expect(done.nodes.map(\.state) == [.completed, .completed, .completed])
    }

    @Test func terminateStopsTheRunKeepsPartialOutputAndNothingCompletesAfterwards() throws {
        let f = try EngineFixture()
        let finished = Mutex<[RunStatus]>([])
        let run = try f.start("Write 100 words.") { r in finished.withLock { $0.append(r.status) } }
        f.advance(ms: 400 + 10 * 25)  // 10 tokens emitted
        let terminated = try f.engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id)
        #expect(terminated.status == .terminated)
        #expect(terminated.result == nil)
        let partial = try #require(terminated.partialOutputs?["answer"]?.stringValue)
        #expect(partial.split(separator: " ").count == 10, "10 tokens by then (SPEC §6 formula), got: \(partial)")
        #expect(terminated.nodes.map(\.state) == [.completed, .terminated, .terminated], "the output node never started: terminated, not skipped")
        f.advance(ms: 60_000)
        let later = try f.stored(run.id)
        #expect(later.status == .terminated)
        #expect(later.result == nil)
        #expect(finished.withLock { $0 } == [.terminated], "waiters hear the end exactly once")
        #expect(f.scheduler.pendingCount == 0)
    }

    @Test func secondTerminateReturnsTheSameTerminatedRun() throws {
        let f = try EngineFixture()
        let run = try f.start()
        let first = try f.engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id)
        let second = try f.engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id)
        #expect(first.status == .terminated && second.status == .terminated)
        #expect(first.endedAt == second.endedAt)
    }

    @Test func terminateOfCompletedRunLeavesItCompleted() throws {
        let f = try EngineFixture()
        let run = try f.start()
        f.advance(ms: 60_000)
        let after = try f.engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id)
        #expect(after.status == .completed)
        #expect(after.result?["answer"] != nil)
    }

    @Test func unknownRunOrOtherPipelineIsNotFound() throws {
        let f = try EngineFixture()
        let run = try f.start()
        for (pipeline, id) in [("p1", IDs.make()), ("p2", run.id)] {
            do {
                _ = try f.engine.terminate(namespace: "default", pipelineID: pipeline, runID: id)
                Issue.record("expected notFound for \(pipeline)/\(id)")
            } catch { #expect(error.kind == .notFound) }
        }
        do {
            _ = try f.engine.terminate(namespace: "someone-else", pipelineID: "p1", runID: run.id)
            Issue.record("another key's run must be invisible")
        } catch { #expect(error.kind == .notFound) }
    }

    @Test func runWithoutLLMNodesCompletesAtOnceAndCallsItsWaiter() throws {
        let f = try EngineFixture()
        let heard = Mutex<RunStatus?>(nil)
        let nodes = JSONObject([node("input_0", "input", name: "q", outputs: ["text"]),
                                node("output_0", "output", ["value": "echo: {{ input_0.text }}"], name: "answer")])
        let run = try f.engine.start(namespace: "default", pipelineID: "p1", nodes: nodes, version: nil,
                                     inputs: ["q": "hello"], mode: .sync, onFinish: { r in heard.withLock { $0 = r.status } })
        #expect(run.status == .completed)
        #expect(run.result == ["answer": "echo: hello"])
        #expect(heard.withLock { $0 } == .completed)
    }

    @Test func missingInputIsABadRequest() throws {
        let f = try EngineFixture()
        do {
            _ = try f.engine.start(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                   inputs: [:], mode: .background)
            Issue.record("missing input must be rejected")
        } catch {
            #expect(error.kind == .badRequest)
            #expect(error.message.contains("question"))
        }
    }

    @Test func unknownNodeTypesGiveDeterministicPlaceholders() throws {
        let f = try EngineFixture()
        let nodes = JSONObject([node("kb", "knowledge_base", outputs: ["results"]),
                                node("output_0", "output", ["value": "{{ kb.results }}"], name: "answer")])
        let a = try f.engine.start(namespace: "default", pipelineID: "p1", nodes: nodes, version: nil, inputs: [:], mode: .sync)
        let b = try f.engine.start(namespace: "default", pipelineID: "p1", nodes: nodes, version: nil, inputs: [:], mode: .sync)
        #expect(a.result == b.result)
        #expect(a.result?["answer"]?.stringValue?.isEmpty == false)
    }

    @Test func shutdownFailsLiveRunsWithTheShutdownError() throws {
        let f = try EngineFixture()
        let run = try f.start()
        f.engine.shutdown()
        let stored = try f.stored(run.id)
        #expect(stored.status == .failed)
        #expect(stored.error == "run interrupted: server shut down")
        #expect(f.engine.liveCount == 0)
    }
}
