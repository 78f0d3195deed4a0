import Foundation
import Testing
@testable import MockShift

/// WAL checkpoints run off the committing threads (``Checkpointer``): past the threshold a checkpoint happens on
/// the checkpointer's thread, and everything committed is there after reopening.
@Suite struct CheckpointerTests {
    @Test func pastTheThresholdTheCheckpointerRunsAndNothingIsLost() throws {
        let path = temporaryDatabasePath()
        var ids: [String] = []
        do {
            let store = try Store(path: path, checkpointPages: 4)
            let checkpointer = try #require(store.checkpointer)
            for k in 0..<200 {
                let s = SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .chatbot, ownerID: "bot\(k)", createdAt: Int64(k))
                try store.createSession(s)
                ids.append(s.id)
            }
            let deadline = Date().addingTimeInterval(10)
            while checkpointer.completed.load(ordering: .relaxed) == 0 && Date() < deadline { usleep(10_000) }
            #expect(checkpointer.completed.load(ordering: .relaxed) > 0, "a checkpoint ran on its own thread")
        }
        let reopened = try Store(path: path)
        for id in ids { #expect(try reopened.session(namespace: "k1", id: id) != nil) }
    }

    /// Under writes that never pause, the checkpointer's PASSIVE checkpoints never see the WAL's end (each commit
    /// adds frames while one runs), so SQLite never restarts the WAL: it grew without end (1.5 GB after 100,000
    /// instant runs, scripts/bench-instant-runs), every commit extending the file. Past twice the threshold the
    /// writer finishes a checkpoint itself, between two commits, and the WAL starts over: its size stays bounded.
    @Test func underWritesThatNeverPauseTheWALStaysBounded() throws {
        let path = temporaryDatabasePath()
        let store = try Store(path: path, checkpointPages: 16)
        let wal = { (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0 }
        var largest = 0
        for k in 0..<3_000 {
            try store.createSession(SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .chatbot, ownerID: "b\(k)", createdAt: 1))
            largest = max(largest, wal())
        }
        // 16 pages of 4 KiB: the WAL may reach about twice that plus what a checkpoint in progress lets pass.
        #expect(largest < 64 * 4_096 * 4, "the WAL reached \(largest) bytes")
        #expect(store.checkpointer?.finishedByWriter.load(ordering: .relaxed) ?? 0 > 0)
    }

    @Test func anInMemoryStoreHasNoCheckpointer() throws {
        #expect(try Store(path: ":memory:").checkpointer == nil)
    }

    @Test func theShutdownCheckpointEmptiesTheWAL() throws {
        let path = temporaryDatabasePath()
        let store = try Store(path: path)
        for k in 0..<50 {
            try store.createSession(SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .chatbot, ownerID: "b\(k)", createdAt: 1))
        }
        let wal = { (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0 }
        #expect(wal() > 0, "the sessions are in the WAL")
        store.checkpointForShutdown()
        #expect(wal() == 0, "the next start reads no WAL")
    }
}
