import Testing
@testable import MockShift

/// The fault `cut_stream_after_events` (`StreamCut`): how many events pass and when the stream is broken off.
@Suite struct StreamCutTests {
    let a: [UInt8] = [1], b: [UInt8] = [2, 2], c: [UInt8] = [3]

    @Test func withoutALimitEverythingPassesAndNothingBreaks() {
        var cut = StreamCut(after: nil)
        #expect(!cut.isArmed)
        let (bytes, breakOff) = cut.pass([a, b, c])
        #expect(bytes == [1, 2, 2, 3] && !breakOff)
    }

    @Test func theLimitCountsEventsAcrossCallsAndBreaksOnTheLast() {
        var cut = StreamCut(after: 3)
        #expect(cut.isArmed)
        var step = cut.pass([a])
        #expect(step.send == [1] && !step.breakOff)
        step = cut.pass([b, c, a])  // the third event is the last one sent
        #expect(step.send == [2, 2, 3] && step.breakOff)
        step = cut.pass([c])
        #expect(step.send.isEmpty && step.breakOff, "nothing after the cut")
    }

    @Test func zeroBreaksOffBeforeTheFirstEvent() {
        var cut = StreamCut(after: 0)
        let step = cut.pass([a])
        #expect(step.send.isEmpty && step.breakOff)
    }
}
