import Foundation
import Logging
import Synchronization
import Testing
@testable import MockShift

/// Commits that cannot land for a while (issue 11 item 2): another connection holds the database's write lock.
@Suite struct PendingCommitTests {
    /// Polls `condition` every 10 ms until it holds; false after `seconds`.
    func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return try condition()
    }

    @Test func terminateWhileLockedRepliesOnlyAfterTheRetriedCommitLands() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pending-\(IDs.make())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("runs.sqlite3").path
        let store = try Store(path: path)
        let scheduler = Scheduler(clock: .manual)
        let engine = RunEngine(store: store, scheduler: scheduler, settings: EngineSettings(), logger: Logger(label: "test"))
        let finished = Mutex<[RunStatus]>([])
        let run = try engine.start(namespace: "default", pipelineID: "p1", nodes: EngineFixture.nodes, version: nil,
                                   inputs: ["question": "Write 100 words."], mode: .background,
                                   onFinish: { r in finished.withLock { $0.append(r.status) } })
        scheduler.advance(byNanoseconds: 650 * 1_000_000)  // 10 tokens

        let other = try SQLiteConnection(path: path, readOnly: false, busyTimeoutMs: 0)
        try other.execute("BEGIN IMMEDIATE")
        let replies = Mutex<[Result<RunRecord, APIError>]>([])
        engine.terminate(namespace: "default", pipelineID: "p1", runID: run.id) { r in replies.withLock { $0.append(r) } }

        // Stopped in memory, but nothing reported: no reply, no waiter, the stored run still in progress.
        scheduler.advance(byNanoseconds: 10_000 * 1_000_000)
        Thread.sleep(forTimeInterval: 0.3)  // several retry rounds fail meanwhile
        #expect(replies.withLock { $0.isEmpty })
        #expect(finished.withLock { $0.isEmpty })
        #expect(try engine.status(namespace: "default", pipelineID: "p1", runID: run.id).status == .inProgress)
        #expect(engine.liveCount == 1)
        #expect(!store.isWritable)

        try other.execute("ROLLBACK")
        #expect(eventually { replies.withLock { $0.count == 1 } })
        let reply = try #require(replies.withLock { $0.first }).get()
        #expect(reply.status == .terminated)
        #expect(reply.usage?["output_tokens"] == .int(10), "tokens stopped at the terminate, not at the commit")
        #expect(finished.withLock { $0 } == [.terminated])
        #expect(try engine.status(namespace: "default", pipelineID: "p1", runID: run.id).status == .terminated)
        #expect(engine.liveCount == 0)
        #expect(store.isWritable)
    }

    @Test func writesFailFastWhileAnotherProcessHoldsTheLock() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pending-\(IDs.make())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("fast.sqlite3").path
        let store = try Store(path: path)
        let other = try SQLiteConnection(path: path, readOnly: false, busyTimeoutMs: 0)
        try other.execute("BEGIN IMMEDIATE")
        let record = PipelineRecord(id: IDs.make(), namespace: "default", name: "p", mainBranch: IDs.make(), folderID: nil,
                                    description: nil, nodes: [:], canvasMetadata: .object([:]), createdAt: 0, modifiedAt: 0,
                                    currentVersion: nil)
        #expect(throws: StoreUnavailable.self) { try store.savePipeline(record) }
        let started = Date()
        for _ in 0..<20 { #expect(throws: StoreUnavailable.self) { try store.savePipeline(record) } }
        #expect(Date().timeIntervalSince(started) < 1.0, "writes wait at most one busy timeout per back-off period")
        try other.execute("ROLLBACK")
        #expect(eventually(5) { (try? store.savePipeline(record)) != nil })
        #expect(try store.pipeline(namespace: "default", id: record.id)?.name == "p")
    }
}
