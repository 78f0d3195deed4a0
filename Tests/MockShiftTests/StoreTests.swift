import Foundation
import Testing
@testable import MockShift

func temporaryDatabasePath() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("mockshift-test-\(IDs.make())/db.sqlite3").path
}

func samplePipeline(namespace: String = "default", name: String = "p", modifiedAt: Int64 = 1) -> PipelineRecord {
    let id = IDs.make()
    return PipelineRecord(id: id, namespace: namespace, name: name, mainBranch: id, folderID: nil, description: nil,
                          nodes: ["in": ["id": "in", "type": "input"]], canvasMetadata: [:], createdAt: 1,
                          modifiedAt: modifiedAt, currentVersion: nil)
}

func sampleRun(pipelineID: String, status: RunStatus = .inProgress) -> RunRecord {
    RunRecord(id: IDs.make(), namespace: "default", pipelineID: pipelineID, mode: .background, version: nil,
              inputs: ["q": "hi"], status: status, result: nil, error: nil, partialOutputs: nil, usage: nil, options: nil,
              createdAt: 10, startedAt: 10, endedAt: nil, nodes: [("in", .completed), ("llm", .running)])
}

@Suite struct StoreTests {
    @Test func migrationsCreateTheSchemaOnceAndReopeningKeepsData() throws {
        let path = temporaryDatabasePath()
        let p = samplePipeline()
        do {
            let store = try Store(path: path)
            #expect(try store.schemaVersion() == Store.migrations.count)
            try store.savePipeline(p)
        }
        let reopened = try Store(path: path)
        #expect(try reopened.schemaVersion() == Store.migrations.count)
        #expect(try reopened.pipeline(namespace: "default", id: p.id) == p)
    }

    @Test func nameLookupReturnsTheMostRecentlyModifiedAndRespectsNamespaces() throws {
        let store = try Store(path: ":memory:")
        let older = samplePipeline(name: "same", modifiedAt: 100)
        let newer = samplePipeline(name: "same", modifiedAt: 200)
        let otherKey = samplePipeline(namespace: "key-b", name: "same", modifiedAt: 300)
        try store.savePipeline(newer)
        try store.savePipeline(older)
        try store.savePipeline(otherKey)
        #expect(try store.pipeline(namespace: "default", name: "same")?.id == newer.id)
        #expect(try store.pipeline(namespace: "key-b", name: "same")?.id == otherKey.id)
        #expect(try store.pipeline(namespace: "default", id: otherKey.id) == nil)
        #expect(try store.pipeline(namespace: "default", name: "absent") == nil)
    }

    @Test func deploySnapshotsAVersionAndDeleteRemovesIt() throws {
        let store = try Store(path: ":memory:")
        var p = samplePipeline()
        p.currentVersion = "1.0.0"
        try store.savePipeline(p, deploying: PipelineVersion(pipelineID: p.id, version: "1.0.0", nodes: p.nodes,
                                                             canvasMetadata: [:], description: "first", createdAt: 5))
        #expect(try store.version(pipelineID: p.id, version: "1.0.0")?.description == "first")
        #expect(try store.deletePipeline(namespace: "default", id: p.id))
        #expect(try store.version(pipelineID: p.id, version: "1.0.0") == nil)
        #expect(try !store.deletePipeline(namespace: "default", id: p.id))
    }

    @Test func runRoundTripsWithNodeStates() throws {
        let store = try Store(path: ":memory:")
        var run = sampleRun(pipelineID: "p1")
        try store.saveRuns([run])
        #expect(try store.run(namespace: "default", id: run.id) == run)
        run.status = .completed
        run.result = ["answer": "done"]
        run.nodes[1].state = .completed
        run.endedAt = 20
        try store.saveRuns([run])
        let stored = try #require(try store.run(namespace: "default", id: run.id))
        #expect(stored.status == .completed)
        #expect(stored.result == ["answer": "done"])
        #expect(stored.nodes.map(\.state) == [.completed, .completed])
        #expect(try store.run(namespace: "other", id: run.id) == nil)
    }

    @Test func finalRunIsNeverOverwrittenBySaveUnlessFinal() throws {
        let store = try Store(path: ":memory:")
        var run = sampleRun(pipelineID: "p1", status: .completed)
        try store.saveRuns([run])
        run.status = .terminated
        let existing = try store.saveRunUnlessFinal(run)
        #expect(existing?.status == .completed)
        #expect(try store.run(namespace: "default", id: run.id)?.status == .completed)
    }

    @Test func unfinishedRunsAreFailedOnRecovery() throws {
        let store = try Store(path: ":memory:")
        let live = sampleRun(pipelineID: "p1")
        let done = sampleRun(pipelineID: "p1", status: .completed)
        try store.saveRuns([live, done])
        let failed = try store.failUnfinishedRuns(error: "run interrupted: server restarted", at: 99)
        #expect(failed == [live.id])
        let stored = try #require(try store.run(namespace: "default", id: live.id))
        #expect(stored.status == .failed)
        #expect(stored.error == "run interrupted: server restarted")
        #expect(stored.nodes.map(\.state) == [.completed, .failed])
        #expect(try store.run(namespace: "default", id: done.id)?.status == .completed)
    }
}

@Suite struct StoreTextTests {
    @Test func textWithNULAndUnicodeRoundTrips() throws {
        let store = try Store(path: ":memory:")
        var p = samplePipeline(name: "a\u{0}b 🚀 \"q\"")
        p.description = ""
        try store.savePipeline(p)
        let stored = try #require(try store.pipeline(namespace: "default", id: p.id))
        #expect(stored.name == "a\u{0}b 🚀 \"q\"")
        #expect(stored.description == "")
    }

    @Test func listingShowsSummariesNewestFirstWithOffsetAndLimit() throws {
        let store = try Store(path: ":memory:")
        let a = samplePipeline(name: "a", modifiedAt: 1), b = samplePipeline(name: "b", modifiedAt: 2)
        try store.savePipeline(a)
        try store.savePipeline(b)
        #expect(try store.pipelineSummaries(namespace: "default", folderID: nil, offset: 0, limit: 10).map(\.id) == [b.id, a.id])
        #expect(try store.pipelineSummaries(namespace: "default", folderID: nil, offset: 1, limit: 10).map(\.id) == [a.id])
        #expect(try store.pipelineSummaries(namespace: "other", folderID: nil, offset: 0, limit: 10).isEmpty)
    }

    @Test func concurrentDeploysThroughUpdatePipelineNeverShareAVersion() throws {
        // Regression (scripts/crash-drill): saves used to read, then write in two steps, so two deploys at once
        // took the same version and the second snapshot replaced the first.
        let store = try Store(path: temporaryDatabasePath())
        let p = samplePipeline()
        try store.savePipeline(p)
        let deploys = 64
        DispatchQueue.concurrentPerform(iterations: deploys) { i in
            _ = try? store.updatePipeline(namespace: "default", id: p.id) { pipeline in
                pipeline.nodes = ["n": ["id": "n", "type": "text", "inputs": ["text": .string("deploy \(i)")]]]
                let version = SemanticVersion.next(after: pipeline.currentVersion, bump: nil)
                pipeline.currentVersion = version
                return PipelineVersion(pipelineID: pipeline.id, version: version, nodes: pipeline.nodes,
                                       canvasMetadata: [:], description: nil, createdAt: 1)
            }
        }
        let current = try #require(try store.pipeline(namespace: "default", id: p.id)?.currentVersion)
        #expect(current == "1.0.\(deploys - 1)", "every deploy takes the next version")
        var texts = Set<String>()
        for patch in 0..<deploys {
            let snapshot = try #require(try store.version(pipelineID: p.id, version: "1.0.\(patch)"))
            texts.insert(snapshot.nodes["n"]?["inputs"]?["text"]?.stringValue ?? "")
        }
        #expect(texts.count == deploys, "each version holds the nodes of its own deploy, got \(texts.count) distinct")
    }

    @Test func updatePipelineOfAMissingPipelineWritesNothingAndAThrowRollsBack() throws {
        let store = try Store(path: ":memory:")
        let p = samplePipeline()
        try store.savePipeline(p)
        #expect(try store.updatePipeline(namespace: "default", id: IDs.make()) { _ in nil } == nil)
        #expect(try store.updatePipeline(namespace: "other", id: p.id) { _ in nil } == nil, "another key's pipeline")
        struct Refused: Error {}
        #expect(throws: Refused.self) {
            try store.updatePipeline(namespace: "default", id: p.id) { pipeline in
                pipeline.name = "changed"
                throw Refused()
            }
        }
        #expect(try store.pipeline(namespace: "default", id: p.id) == p)
        _ = try store.deletePipeline(namespace: "default", id: p.id)
        #expect(try store.updatePipeline(namespace: "default", id: p.id) { _ in nil } == nil,
                "a deleted pipeline is not brought back")
        #expect(try store.pipeline(namespace: "default", id: p.id) == nil)
    }

    @Test func appendRunEventExtendsOnlyAFinalRunsTimelineInItsNamespace() throws {
        let store = try Store(path: ":memory:")
        let p = samplePipeline()
        try store.savePipeline(p)
        var live = sampleRun(pipelineID: p.id)
        live.events = [["event": "created"]]
        var done = sampleRun(pipelineID: p.id, status: .completed)
        done.events = [["event": "created"], ["event": "completed"]]
        try store.saveRuns([live, done])
        #expect(try store.appendRunEvent(namespace: "default", id: done.id, ["event": "webhook_delivered"]))
        #expect(try store.run(namespace: "default", id: done.id)?.events?.compactMap { $0.objectValue?["event"]?.stringValue }
                == ["created", "completed", "webhook_delivered"])
        #expect(try !store.appendRunEvent(namespace: "default", id: live.id, ["event": "webhook_delivered"]),
                "a live run's timeline is the engine's")
        #expect(try store.run(namespace: "default", id: live.id)?.events?.count == 1)
        #expect(try !store.appendRunEvent(namespace: "key-b", id: done.id, ["event": "x"]), "another key's run")
        #expect(try !store.appendRunEvent(namespace: "default", id: IDs.make(), ["event": "x"]), "an unknown run")
    }
}
