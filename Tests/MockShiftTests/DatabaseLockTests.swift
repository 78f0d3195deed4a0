import Foundation
import Testing
@testable import MockShift

@Suite struct DatabaseLockTests {
    private func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mockshift-lock-\(IDs.make())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func aSecondClaimOnTheSameDatabaseIsRefusedNamingTheHolder() throws {
        let dir = try folder()
        let db = dir.appendingPathComponent("db.sqlite3").path
        let first = try DatabaseLock(database: db)
        #expect(first.lockFile.hasSuffix("/db.sqlite3.lock"))
        #expect(try String(contentsOfFile: first.lockFile, encoding: .utf8) == "\(getpid())\n")
        // flock belongs to the open file description, so a second claim conflicts even in this process.
        do {
            _ = try DatabaseLock(database: db)
            Issue.record("a second claim on \(db) was granted")
        } catch let DatabaseLock.Failure.held(database, lockFile, holder) {
            #expect(database == db && lockFile == first.lockFile)
            #expect(holder?.hasSuffix("(pid \(getpid()))") == true, "holder: \(holder ?? "nil")")
        }
        #expect(!FileManager.default.fileExists(atPath: db), "claiming never creates or touches the database")
    }

    @Test func aSymbolicLinkOrAFileURINamesTheSameLock() throws {
        let dir = try folder()
        let db = dir.appendingPathComponent("real.sqlite3").path
        FileManager.default.createFile(atPath: db, contents: Data())
        let link = dir.appendingPathComponent("link.sqlite3").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: db)
        #expect(DatabaseLock.lockFile(for: link) == DatabaseLock.lockFile(for: db))
        #expect(DatabaseLock.lockFile(for: "file:\(db)?mode=rwc") == DatabaseLock.lockFile(for: db))
    }

    @Test func aMissingFolderIsAnOpenFailureNotAHeldLock() {
        #expect(throws: DatabaseLock.Failure.self) {
            _ = try DatabaseLock(database: "/nonexistent-\(IDs.make())/db.sqlite3")
        }
    }
}
