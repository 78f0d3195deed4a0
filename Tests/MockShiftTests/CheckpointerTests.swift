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
