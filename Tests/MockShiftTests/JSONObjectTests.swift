import Testing
@testable import MockShift

/// JSONObject past its index threshold behaves like the small one, and stays linear to fill.
@Suite struct JSONObjectTests {
    @Test func largeObjectKeepsOrderReplacesAndRemovesLikeASmallOne() {
        var object = JSONObject()
        for i in 0..<100 { object["k\(i)"] = .int(Int64(i)) }
        object["k5"] = "five"  // replace: keeps its place
        object["k7"] = nil  // remove: later keys move up and are still found
        object["k7"] = 7  // re-added at the end
        #expect(object.count == 100)
        #expect(object.keys.first == "k0" && object.keys[5] == "k5" && object.keys[7] == "k8" && object.keys.last == "k7")
        #expect(object["k5"] == "five" && object["k99"] == 99 && object["k7"] == 7 && object["nope"] == nil)
        for i in [0, 6, 8, 50, 99] { #expect(object["k\(i)"] == .int(Int64(i)), "k\(i) after removal") }
        var small = JSONObject()
        for key in object.keys { small[key] = object[key] }
        #expect(small == object)
    }

    /// Regression: each insert searched every key before it, so a ~1 MB body of 60,000 keys held a transport
    /// thread for minutes (HostileInputTests "many keys").
    @Test func parsingAnObjectOf50000KeysIsLinear() throws {
        let text = "{" + (0..<50_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        let started = ContinuousClock.now
        let object = try #require(try JSON.parse(text).objectValue)
        let elapsed = ContinuousClock.now - started
        #expect(object.count == 50_000 && object["k49999"] == 49_999)
        #expect(elapsed < .seconds(10), "took \(elapsed): quadratic again?")
    }
}
