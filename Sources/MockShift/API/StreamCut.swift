import MockShiftHTTP

/// The fault `cut_stream_after_events` (README "Faults"; issue 12 item 8): a stream that sends `limit` events and
/// then loses its connection, with no terminal event, as a network failure mid-answer looks to a client. Each
/// stream type passes its events through ``pass(_:)`` before writing them; once the limit is reached, the rest is
/// dropped and the body broken off (``StreamBody/breakOff(with:)``). The run goes on, as for any client that went
/// away (SPEC §5), unless `serve --cancel-on-disconnect` is set.
struct StreamCut: Sendable {
    /// Events still to send; nil = no cut.
    private var left: Int?

    init(after limit: Int?) { left = limit }

    /// True when a cut is armed (callers then hand events over one by one, not merged).
    var isArmed: Bool { left != nil }

    /// The events of `frames` to send, and whether the stream must be broken off after them.
    mutating func pass(_ frames: [[UInt8]]) -> (send: [UInt8], breakOff: Bool) {
        guard let n = left else { return (Array(frames.joined()), false) }
        let sent = frames.prefix(n)
        left = n - sent.count
        return (Array(sent.joined()), frames.count >= n)
    }
}
