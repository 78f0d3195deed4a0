import CSQLite3
import Foundation

/// A value bound to or read from a SQLite statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    /// Bytes kept as they are (a `BLOB`): uploaded files, which need not be UTF-8.
    case blob([UInt8])

    var text: String? { if case let .text(s) = self { s } else { nil } }
    var int: Int64? { if case let .int(i) = self { i } else { nil } }
    var blob: [UInt8]? { if case let .blob(b) = self { b } else { nil } }
}

/// A SQLite failure: the extended result code and SQLite's message.
public struct SQLiteError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public var description: String { "SQLite error \(code): \(message)" }

    /// True for failures that pass by themselves once their cause is gone: the database locked by another
    /// process (`SQLITE_BUSY`, `SQLITE_LOCKED`), a full disk (`SQLITE_FULL`) or an I/O error (`SQLITE_IOERR`).
    /// The store answers these with ``StoreUnavailable`` and the engine retries its commits (issue 11 item 2).
    public var isTransient: Bool {
        switch code & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR: true
        default: false
        }
    }
}

/// The store cannot take writes right now (the database is locked by another process, the disk is full):
/// thrown at once, without waiting, while an earlier write failed for such a reason and the next try is not due
/// yet. `reason` is SQLite's message. Callers answer 503 (the API layer) or keep their change pending and retry
/// (the run engine); it heals by itself once a write succeeds again.
public struct StoreUnavailable: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public var description: String { "storage unavailable (\(reason))" }
}

/// One SQLite connection: a thin binding over the C API (TECH-NOTES §5). Not thread-safe: the store gives each
/// connection to one thread at a time (the writer queue, or a reader taken from the pool).
final class SQLiteConnection: @unchecked Sendable {  // one thread at a time, see above
    let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    /// Opens `path` (a file name or a `file:` URI). Throws ``SQLiteError``.
    init(path: String, readOnly: Bool, busyTimeoutMs: Int32 = 5000) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE))
            | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: "\(message) (\(path))")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMs)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Runs one or more statements without parameters or results (schema, pragmas).
    func execute(_ sql: String) throws {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc) }
    }

    /// Runs `sql` with `parameters` and returns every row (each a list of column values).
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue] = []) throws -> [[SQLValue]] {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (i, value) in parameters.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case let .int(v): rc = sqlite3_bind_int64(statement, index, v)
            case let .double(v): rc = sqlite3_bind_double(statement, index, v)
            case let .text(v):
                // Explicit byte length: text may hold NUL characters, which a C-string bind would cut off.
                // The string's own UTF-8 storage, no copy (SQLite copies it); the empty string gets a valid
                // pointer of its own (a null one would bind NULL).
                var text = v
                rc = text.withUTF8 { buffer in
                    guard let base = buffer.baseAddress, buffer.count > 0 else {
                        return csqlite_bind_text_copy(statement, index, "", 0)
                    }
                    return base.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                        csqlite_bind_text_copy(statement, index, $0, Int32(buffer.count))
                    }
                }
            case let .blob(v):
                // SQLite copies the bytes (SQLITE_TRANSIENT); a zero-length blob still needs a valid pointer.
                // Callers keep blobs under SQLite's length limit (10^9 bytes), far below Int32.max.
                rc = (v.isEmpty ? [0] : v).withUnsafeBytes { buffer in
                    csqlite_bind_blob_copy(statement, index, buffer.baseAddress, Int32(v.count))
                }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        var rows: [[SQLValue]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            let columns = sqlite3_column_count(statement)
            var row: [SQLValue] = []
            row.reserveCapacity(Int(columns))
            for c in 0..<columns {
                switch sqlite3_column_type(statement, c) {
                case SQLITE_INTEGER: row.append(.int(sqlite3_column_int64(statement, c)))
                case SQLITE_FLOAT: row.append(.double(sqlite3_column_double(statement, c)))
                case SQLITE_NULL: row.append(.null)
                case SQLITE_BLOB:
                    let count = Int(sqlite3_column_bytes(statement, c))
                    if count > 0, let bytes = sqlite3_column_blob(statement, c) {
                        row.append(.blob(Array(UnsafeRawBufferPointer(start: bytes, count: count))))
                    } else {
                        row.append(.blob([]))
                    }
                default:
                    let count = Int(sqlite3_column_bytes(statement, c))
                    if let text = sqlite3_column_text(statement, c) {
                        row.append(.text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)))
                    } else {
                        row.append(.text(""))
                    }
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Number of rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let cached = statements[sql] { return cached }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc) }
        statements[sql] = statement
        return statement
    }
}
