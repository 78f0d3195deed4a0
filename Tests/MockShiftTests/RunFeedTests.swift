import Synchronization
import Testing
@testable import MockShift
@testable import MockShiftHTTP

/// The namespace-wide run feed (issue 7): what the engine tells subscribers, in which order, after which
/// commit; and its SSE framing and keep-alive (`FeedStream`). On the manual clock: exact and instant.
@Suite struct RunFeedTests {
    /// Collects feed events (type, and the run status committed when the event arrived).
    final class Collector: Sendable {
        let events = Mutex<[RunFeedEvent]>([])
        let committed = Mutex<[RunStatus?]>([])
        let ended = Mutex(0)
        var types: [String] { events.withLock { $0.map(\.type) } }
    }

    func subscribe(_ f: EngineFixture, namespace: String = "default", checkCommit: Bool = true) throws -> (Collector, RunFeedSubscription) {
        let c = Collector()
        let store = f.store
        let subscription = try f.engine.subscribe(namespace: namespace, onEvent: { event in
            c.events.withLock { $0.append(event) }
            // What SQLite says at the moment the event is delivered: the feed never runs ahead of a commit.
            let status = checkCommit ? (try? store.run(namespace: event.namespace, id: event.runID))?.status : nil
            c.committed.withLock { $0.append(status) }
        }, onEnd: { c.ended.withLock { $0 += 1 } })
        return (c, subscription)
    }

    @Test func backgroundRunReportsItsLifeInOrderEachAfterItsCommit() throws {
        let f = try EngineFixture()
        let (c, _) = try subscribe(f)
        let run = try f.start()
        f.advance(ms: 60_000)
        #expect(c.types == ["created", "node_completed", "node_started", "first_token", "tokens", "node_completed",
                            "node_completed", "completed"])
        let events = c.events.withLock { $0 }
        #expect(events.allSatisfy { $0.json["run_id"] == .string(run.id) && $0.json["pipeline_id"] == "p1" })
        #expect(events.allSatisfy { $0.json["at"]?.stringValue?.hasSuffix("Z") == true && $0.json["clock_ms"] != nil })
        #expect(events[0].json["mode"] == "background" && events[0].json["status"] == "in_progress")
        #expect(events[0].json["nodes"] == ["input_0", "llm", "output_0"])
        let last = try #require(events.last)
        #expect(last.json["status"] == "completed")
        #expect(last.json["result"]?["answer"]?.stringValue?.isEmpty == false)
        #expect(c.committed.withLock { $0.last } == .completed, "the final event comes after the final commit")
        #expect(c.committed.withLock { $0.first } == .inProgress, "created comes after the run's first commit")
    }

    @Test func streamingRunSendsItsTokensAsTheyAreGeneratedAndStopsAtTerminate() throws {
        let f = try EngineFixture()
        let (c, _) = try subscribe(f)
        var options = RunOptions()
        options.streamAllOutputs = true  // the fixture's output streams the LLM's tokens
        let run = try f.engine.start(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                     inputs: ["question": "Write 100 words."], options: options, mode: .stream,
                                     observer: { _ in })
        f.advance(ms: 400 + 3 * 25)  // first token at 425 ms, then two more
        let streamed = c.events.withLock { $0.filter { $0.type == "stream" } }
        #expect(streamed.count == 3, "one event per token tick, got \(streamed.map { $0.json })")
        #expect(streamed.allSatisfy { $0.json["node"] == "llm" && $0.json["outputs"] == ["answer"] && $0.json["tokens"] == 1 })
        let text = streamed.compactMap { $0.json["text"]?.stringValue }.joined()
        f.advance(ms: 10)
        _ = try f.engine.pause(namespace: "default", pipelineID: "p1", runID: run.id)
        _ = try f.engine.resume(namespace: "default", pipelineID: "p1", runID: run.id)
        _ = try f.engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id)
        f.advance(ms: 60_000)
        #expect(Array(c.types.suffix(4)) == ["paused", "resumed", "tokens", "terminated"], "got \(c.types)")
        #expect(c.types.filter { $0 == "stream" }.count == 3, "no token after terminate")
        let final = try #require(c.events.withLock { $0.last })
        #expect(final.type == "terminated" && final.json["status"] == "terminated")
        #expect(c.committed.withLock { $0.last } == .terminated)
        #expect(try f.stored(run.id).partialOutputs?["answer"]?.stringValue == text, "the feed's tokens are the partial output")
    }

    @Test func otherNamespacesAreNotToldAndUnsubscribingStopsEvents() throws {
        let f = try EngineFixture()
        let (other, _) = try subscribe(f, namespace: "someone-else")
        let (mine, subscription) = try subscribe(f)
        _ = try f.start()
        #expect(other.types.isEmpty)
        #expect(!mine.types.isEmpty)
        f.engine.unsubscribe(subscription)
        f.engine.unsubscribe(subscription)  // harmless twice
        let before = mine.types.count
        f.advance(ms: 60_000)
        #expect(mine.types.count == before)
        #expect(f.engine.feedSubscriberCount == 1)
    }

    @Test func shutdownSendsTheInterruptedRunsEndThenEndsTheFeed() throws {
        let f = try EngineFixture()
        let (c, _) = try subscribe(f)
        _ = try f.start()
        f.engine.shutdown()
        let last = try #require(c.events.withLock { $0.last })
        #expect(last.type == "failed" && last.json["error"] == "run interrupted: server shut down")
        #expect(c.ended.withLock { $0 } == 1)
        #expect(throws: APIError.self) { try f.engine.subscribe(namespace: "default", onEvent: { _ in }, onEnd: {}) }
        #expect(f.engine.feedSubscriberCount == 0)
    }

    // MARK: FeedStream

    func pending(_ stream: FeedStream) -> String {
        String(decoding: stream.body.state.withLock { $0.pending }, as: UTF8.self)
    }

    @Test func feedFramesEventsAfterReadyAndKeepsAliveAfterFifteenQuietSeconds() {
        let scheduler = Scheduler(clock: .manual)
        let stream = FeedStream(scheduler: scheduler)
        stream.start()
        #expect(pending(stream).hasPrefix("event: ready\ndata: {\"type\":\"ready\",\"at\":\""))
        let event = RunFeedEvent(namespace: "default", runID: "r", pipelineID: "p", type: "node_started",
                                 json: ["type": "node_started", "run_id": "r", "pipeline_id": "p", "node": "llm"])
        stream.send(event)
        #expect(pending(stream).hasSuffix("event: node_started\ndata: {\"type\":\"node_started\",\"run_id\":\"r\",\"pipeline_id\":\"p\",\"node\":\"llm\"}\n\n"))
        let size = pending(stream).count
        scheduler.advance(byNanoseconds: 14_999_000_000)
        #expect(pending(stream).count == size)
        scheduler.advance(byNanoseconds: 1_000_000)
        #expect(pending(stream).hasSuffix(": keep-alive\n\n"))
        stream.end()
        #expect(stream.body.state.withLock { $0.finished })
        #expect(scheduler.pendingCount == 0, "ending cancels the keep-alive timer")
    }
}
