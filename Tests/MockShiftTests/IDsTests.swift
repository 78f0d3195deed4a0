import Foundation
import Testing
@testable import MockShift

/// Ids are laid out as the real service's ObjectIds (SPEC §2): Unix seconds first, then this process's random
/// bytes and a counter, so ids made one after another increase (new runs land at the end of the id index).
@Suite struct IDsTests {
    @Test func idsAreObjectIdsThatIncreaseWithinAProcess() throws {
        let before = UInt32(Date().timeIntervalSince1970)
        let ids = (0..<1_000).map { _ in IDs.make() }
        let after = UInt32(Date().timeIntervalSince1970)
        #expect(ids.allSatisfy(IDs.isValid))
        #expect(Set(ids).count == ids.count, "no id twice")
        let seconds = try #require(UInt32(ids[0].prefix(8), radix: 16))
        #expect(seconds >= before && seconds <= after, "the first 4 bytes are the Unix time in seconds")
        #expect(Set(ids.map { $0.dropFirst(8).prefix(10) }).count == 1, "5 random bytes per process")
        // The 3-byte counter may wrap once (it starts at random): past that point the order starts over.
        let increasing = zip(ids, ids.dropFirst()).filter { $0.0 < $0.1 }.count
        #expect(increasing >= ids.count - 2, "made one after another, ids increase")
    }
}
