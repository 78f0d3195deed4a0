import CSQLite3
import Dispatch
import Foundation
import Synchronization

/// WAL checkpoints on a thread and connection of their own (issue 13 "Measured"): with `synchronous=NORMAL` a
/// commit never syncs the disk, but SQLite's automatic checkpoint runs inside whichever commit passes the WAL
/// threshold, with two `fdatasync`s, and that commit's thread (often the one timer thread, ending a run) waits
/// for the disk meanwhile. scripts/bench-sessions measured it: 900 session turns ending within half a second made
/// the other sessions' deltas up to 80–550 ms late when a checkpoint fell in that window.
///
/// The writer's automatic checkpoint is replaced by a WAL hook (`sqlite3_wal_hook`) that only wakes this thread
/// once the WAL holds ``thresholdPages`` pages; the thread then runs a PASSIVE checkpoint on its own connection,
/// which never blocks the writer (it copies what no reader still needs; the WAL restarts from its beginning at a
/// later commit once everything was copied). A busy or failed checkpoint is retried at the next wake-up. Crash
/// safety is SQLite's WAL: a committed transaction survives `kill -9` whether or not it was checkpointed.
final class Checkpointer: @unchecked Sendable {
    // @unchecked: `connection` is used only on `thread`; the rest is atomics and a semaphore.
    /// WAL pages after which a checkpoint is asked for (10,000 pages: about 40 MB with 4 KiB pages).
    let thresholdPages: Int32
    private let connection: SQLiteConnection
    private let wake = DispatchSemaphore(value: 0)
    private let requested = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    /// Checkpoints run so far (for tests).
    let completed = Atomic<Int>(0)
    /// Checkpoints the writer finished itself, the WAL being past twice the threshold (for tests).
    let finishedByWriter = Atomic<Int>(0)

    /// Opens the checkpointer's own connection to `path` and starts its thread. Throws ``SQLiteError``.
    init(path: String, thresholdPages: Int32) throws {
        self.thresholdPages = thresholdPages
        connection = try SQLiteConnection(path: path, readOnly: false, busyTimeoutMs: 0)
        let thread = Thread { [self] in run() }
        thread.name = "mockshift.checkpointer"
        thread.start()
    }

    /// Puts the WAL hook on `writer`: its commits no longer checkpoint; they wake this thread past the threshold.
    /// ``detach(from:)`` must run before this object goes away.
    ///
    /// Past twice the threshold the writer itself finishes a PASSIVE checkpoint, right after its commit (SQLite's
    /// own automatic checkpoint runs from this hook the same way). Under writes that never pause, this thread's
    /// checkpoints never reach the WAL's end (each commit adds frames while one runs), and SQLite restarts the WAL
    /// only once a checkpoint has copied all of it: the WAL grew without end (1.5 GB after 100,000 instant runs,
    /// each commit extending the file). The writer's checkpoint has only the frames this thread has not copied yet
    /// (it skips at once if this thread is checkpointing: PASSIVE never waits), then its next commit starts the
    /// WAL over from the beginning, in pages the file already has.
    func attach(to writer: SQLiteConnection) {
        sqlite3_wal_hook(writer.handle, { context, db, name, pages in
            let me = Unmanaged<Checkpointer>.fromOpaque(context!).takeUnretainedValue()
            if pages >= 2 * me.thresholdPages {
                if sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil) == SQLITE_OK {
                    me.finishedByWriter.add(1, ordering: .relaxed)
                }
            } else if pages >= me.thresholdPages {
                me.request()
            }
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Takes the hook off `writer` and ends the thread (after a checkpoint in progress).
    func detach(from writer: SQLiteConnection) {
        sqlite3_wal_hook(writer.handle, nil, nil)
        stopped.store(true, ordering: .releasing)
        wake.signal()
    }

    /// Asks for a checkpoint; several requests before the thread wakes make one.
    func request() {
        if !requested.exchange(true, ordering: .acquiringAndReleasing) { wake.signal() }
    }

    private func run() {
        while true {
            wake.wait()
            if stopped.load(ordering: .acquiring) { return }
            requested.store(false, ordering: .releasing)
            if sqlite3_wal_checkpoint_v2(connection.handle, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil) == SQLITE_OK {
                completed.add(1, ordering: .relaxed)
            }
        }
    }
}
