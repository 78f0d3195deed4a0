import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One database file belongs to one daemon (issue 11 item 3): an exclusive, non-blocking claim on a database
/// file, held until the process ends.
///
/// The claim is `flock(LOCK_EX | LOCK_NB)` on a sidecar file, `<database>.lock`, beside the database (its path
/// with symbolic links resolved, the way SQLite names its `-wal` and `-shm` files, so two spellings of one file
/// meet on one lock). A sidecar rather than the database itself because SQLite's own locks are POSIX `fcntl`
/// locks, which the process loses when it closes *any* descriptor of that file: MockShift never opens the
/// database outside SQLite. `flock` and `fcntl` locks do not interact on Linux, and the kernel drops the claim
/// when the process dies, however it dies, so a crash leaves no stale lock. The claim covers the `-wal` and
/// `-shm` files too, since only the holder opens the database.
///
/// The holder writes its pid into the sidecar, so a refused daemon can say who holds the file. The sidecar is
/// left in place at exit: deleting it would let two daemons lock two different files of the same name.
///
/// Taking the claim never writes to the database; the caller takes it before any start-up write.
public final class DatabaseLock: @unchecked Sendable {
    // @unchecked: immutable after init; the descriptor is only closed by the kernel at process exit.

    /// Why a claim was not taken.
    public enum Failure: Error, CustomStringConvertible {
        /// Another process holds the claim. `holder` is e.g. `mockshift (pid 1234)` when the sidecar names a
        /// live process, nil when it cannot be learned.
        case held(database: String, lockFile: String, holder: String?)
        /// The sidecar cannot be created or opened (permissions, missing folder, ...).
        case cannotOpen(lockFile: String, reason: String)

        public var description: String {
            switch self {
            case let .held(database, lockFile, holder):
                "database \(database) is in use by \(holder ?? "another process") (it holds \(lockFile)); "
                    + "one database file serves one daemon: stop that one or pass another --db"
            case let .cannotOpen(lockFile, reason):
                "cannot open the lock file \(lockFile): \(reason)"
            }
        }
    }

    /// The sidecar file whose `flock` is the claim.
    public let lockFile: String
    /// Kept open for the process's lifetime: closing it would release the claim.
    private let descriptor: Int32
    /// The database file itself, with its symbolic links resolved.
    let databaseFile: String
    /// A descriptor of the database file holding the second claim (see ``claimDatabaseFile()``); never closed.
    private let fileClaim = Mutex<Int32?>(nil)

    /// Claims `database` (a file path or a `file:` URI as `--db` takes it) for this process, creating the
    /// sidecar `<database>.lock` if needed (the database's folder must exist). Throws ``Failure/held(database:lockFile:holder:)``
    /// at once, without waiting, when another process holds it.
    public init(database: String) throws {
        lockFile = Self.lockFile(for: database)
        let fd = open(lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Failure.cannotOpen(lockFile: lockFile, reason: String(cString: strerror(errno)))
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let holder = code == EWOULDBLOCK ? Self.holder(readingFrom: fd) : nil
            close(fd)  // the sidecar's descriptor, never the database's: SQLite's locks are untouched
            if code == EWOULDBLOCK { throw Failure.held(database: database, lockFile: lockFile, holder: holder) }
            throw Failure.cannotOpen(lockFile: lockFile, reason: String(cString: strerror(code)))
        }
        descriptor = fd
        databaseFile = String(lockFile.dropLast(".lock".count))
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        if FileManager.default.fileExists(atPath: databaseFile) { try claimDatabaseFile(beforeSQLite: true) }
    }

    /// The second claim: `flock` on the database file itself, so that another name of the same file (a hard
    /// link, which the sidecar's path cannot see) is refused too; `flock` follows the file, not the name. Taken
    /// in `init` when the file exists, else by the caller once SQLite has created it. Its descriptor is never
    /// closed: closing any descriptor of the database would drop SQLite's own `fcntl` locks (only before SQLite
    /// opened the file, at a refusal in `init`, is one closed).
    public func claimDatabaseFile() throws(Failure) {
        try claimDatabaseFile(beforeSQLite: false)
    }

    private func claimDatabaseFile(beforeSQLite: Bool) throws(Failure) {
        if fileClaim.withLock({ $0 != nil }) { return }
        let fd = open(databaseFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Failure.cannotOpen(lockFile: databaseFile, reason: String(cString: strerror(errno)))
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            if beforeSQLite { close(fd) }
            if code == EWOULDBLOCK {
                throw Failure.held(database: databaseFile, lockFile: databaseFile,
                                   holder: "another process, under another name of the same file (a hard link)")
            }
            throw Failure.cannotOpen(lockFile: databaseFile, reason: String(cString: strerror(code)))
        }
        fileClaim.withLock { $0 = fd }
    }

    /// `<database>.lock`, with the database's path made absolute and its symbolic links resolved (the folder's
    /// when the file does not exist yet). A `file:` URI is reduced to its path.
    static func lockFile(for database: String) -> String {
        var path = database
        if path.hasPrefix("file:") {
            path = String(path.dropFirst("file:".count).prefix { $0 != "?" && $0 != "#" })
            if path.hasPrefix("//") { path = String(path.dropFirst(2).drop { $0 != "/" }) }  // file://host/path
        }
        let url = URL(fileURLWithPath: path)
        let resolved = realPath(url.path)
            ?? realPath(url.deletingLastPathComponent().path).map { $0 + "/" + url.lastPathComponent }
            ?? url.path
        return resolved + ".lock"
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// `mockshift (pid N)` (or the process's own name) when the sidecar holds the pid of a live process.
    private static func holder(readingFrom fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0,
              let pid = Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
              pid > 0, kill(pid, 0) == 0 || errno == EPERM
        else { return nil }
        let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(name.flatMap { $0.isEmpty ? nil : $0 } ?? "process") (pid \(pid))"
    }
}
