import Dispatch
import Logging
import Synchronization
import Testing
@testable import MockShift

/// Instant runs (`--time-scale 0`, issue 14 item 5): answered from the group commit without holding the caller's
/// thread, and never before SQLite holds the run.
@Suite struct InstantRunTests {
    /// An engine at time scale 0 on the real clock (the only clock on which a run finishes inside its start).
    static func instantEngine(_ store: Store) -> (RunEngine, Scheduler) {
        var settings = EngineSettings()
        settings.timeScale = 0
        let scheduler = Scheduler(clock: .real)
        return (RunEngine(store: store, scheduler: scheduler, settings: settings, logger: Logger(label: "test")), scheduler)
    }

    @Test func anInstantBackgroundRunIsAnsweredOnlyOnceItsCompletedStateIsStored() throws {
        let store = try Store(path: temporaryDatabasePath())
        let (engine, scheduler) = Self.instantEngine(store)
        defer { scheduler.stop() }
        let count = 200
        let seen = Mutex<[(answered: RunRecord, stored: RunRecord?)]>([])
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            do {
                try engine.startBackground(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                           inputs: ["question": .string("Write \(i % 30 + 1) words.")]) { result in
                    let answered = try? result.get()
                    // Read back through SQLite at the moment of the answer: what the answer reports is stored.
                    let stored = answered.flatMap { try? store.run(namespace: "default", id: $0.id) }
                    if let answered { seen.withLock { $0.append((answered, stored)) } }
                    done.signal()
                }
            } catch {
                Issue.record("start failed: \(error)")
                done.signal()
            }
        }
        for _ in 0..<count { #expect(done.wait(timeout: .now() + 10) == .success, "every run is answered") }
        let all = seen.withLock { $0 }
        #expect(all.count == count)
        for (answered, stored) in all {
            #expect(answered.status == .completed)
            #expect(stored?.status == .completed, "run \(answered.id) answered before it was stored")
            #expect(stored?.result == answered.result)
            #expect(stored?.nodes.map(\.state) == [.completed, .completed, .completed])
        }
        #expect(engine.liveCount == 0)
    }

    @Test func aRunThatDoesNotEndAtOnceIsStoredBeforeStartBackgroundReturns() throws {
        let f = try EngineFixture()  // manual clock: the LLM waits for it
        let answered = Mutex<RunRecord?>(nil)
        try f.engine.startBackground(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                     inputs: ["question": .string("Write 10 words.")]) { result in
            answered.withLock { $0 = try? result.get() }
        }
        let run = try #require(answered.withLock { $0 })
        #expect(run.status == .inProgress)
        #expect(try f.stored(run.id).nodes.map(\.state) == [.completed, .running, .pending])
    }

    @Test func badInputsAreThrownAndNothingIsAnswered() throws {
        let f = try EngineFixture()
        let answered = Atomic<Int>(0)
        #expect(throws: APIError.self) {
            try f.engine.startBackground(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                         inputs: ["nope": .string("x")]) { _ in answered.add(1, ordering: .relaxed) }
        }
        #expect(answered.load(ordering: .relaxed) == 0)
        #expect(f.engine.liveCount == 0)
    }

    @Test func emptyTextIsStoredAsEmptyTextNotNull() throws {
        let store = try Store(path: ":memory:")
        var run = sampleRun(pipelineID: "p1")
        run.status = .failed
        run.error = ""
        run.inputs = ["question": ""]
        try store.saveRuns([run])
        let stored = try #require(try store.run(namespace: "default", id: run.id))
        #expect(stored.error == "")
        #expect(stored.inputs == ["question": ""])
    }
}
