import HTTPTypes
import MockShiftHTTP
import Synchronization

/// One streaming run's Server-Sent Events (SPEC §5, API.md §4.4): `event: TYPE` + one `data: {json}` line + a
/// blank line per event; every event's JSON repeats `type` and carries `run_id` and `task_id`. The first event
/// is `start`, then one `stream` event per token and output, then exactly one `result` event, after which the
/// body ends. A `: keep-alive` comment goes out after 15 s of silence.
final class EventStream: @unchecked Sendable {
    // @unchecked: `tokenFrames` is only touched by send(_:), which the engine calls under the run's lock, one
    // event at a time (no lock of its own on the token hot path); the rest is under `state`.
    private let channel: SSEChannel
    var body: StreamBody { channel.body }
    private struct State {
        var runID = ""
    }
    private let state = Mutex(State())
    /// Per output name: the bytes before and after a token's JSON string in its `stream` event (a run streams
    /// to one output or a few: a list beats hashing).
    private var tokenFrames: [(output: String, prefix: [UInt8], suffix: [UInt8])] = []

    /// `cutAfter`: an injected fault's event count after which the connection is dropped (``StreamCut``).
    init(scheduler: Scheduler, cutAfter: Int? = nil) {
        channel = SSEChannel(scheduler: scheduler, cutAfter: cutAfter)
    }

    /// The HTTP response carrying this stream.
    func response() -> Response { channel.response() }

    /// Turns an engine event into SSE bytes. Called under the run's lock, so keep it to formatting and one write.
    func send(_ event: RunEvent) {
        switch event {
        case let .started(run):
            state.withLock { $0.runID = run.id }
            channel.send([frame("start", ["status": .string(run.status.rawValue)])])
            channel.startKeepAlive()
        case let .tokens(outputs, tokens):
            // The hot path (one call per token tick): splice each token between cached bytes instead of
            // building a JSON object per event; the bytes are the same as frame("stream", ...) would give.
            if channel.isCutArmed {  // a fault counts events: hand them over one by one
                let parts = outputs.map(tokenFrame)
                return channel.send(tokens.flatMap { token in
                    parts.map { $0.prefix + JSON.string(token).encoded() + $0.suffix }
                })
            }
            // Token by token, each to every output in turn, written straight into the body's buffer: tokens due
            // together go out in one write.
            if outputs.count == 1 {  // the usual case: no list of frames
                let part = tokenFrame(outputs[0])
                channel.send { bytes in
                    for token in tokens {
                        bytes += part.prefix
                        JSON.appendString(token, to: &bytes)
                        bytes += part.suffix
                    }
                }
                return
            }
            let parts = outputs.map(tokenFrame)
            channel.send { bytes in
                for token in tokens {
                    for part in parts {
                        bytes += part.prefix
                        JSON.appendString(token, to: &bytes)
                        bytes += part.suffix
                    }
                }
            }
        case let .output(name, value):
            channel.send([frame("stream", ["output_name": .string(name), "output_value": value])])
        }
    }

    /// Sends the terminal `result` event for a final run and ends the body.
    func finish(_ run: RunRecord) {
        var fields: JSONObject = ["status": .string(run.status.rawValue)]
        switch run.status {
        case .completed: fields["outputs"] = .object(run.result ?? [:])
        case .failed: fields["error"] = .string(run.error ?? "unknown error")
        default: fields["partial_outputs"] = .object(run.partialOutputs ?? [:])
        }
        state.withLock { $0.runID = run.id }
        channel.finish([frame("result", fields)])
    }

    private func tokenFrame(_ output: String) -> (prefix: [UInt8], suffix: [UInt8]) {
        if let cached = tokenFrames.first(where: { $0.output == output }) { return (cached.prefix, cached.suffix) }
        let marker = "\u{1}"  // a stand-in value, split out to leave the bytes around it
        let whole = frame("stream", ["output_name": .string(output), "output_value": .string(marker)])
        let needle = JSON.string(marker).encoded()
        let at = whole.indices.first { whole[$0...].starts(with: needle) }!
        let parts = (Array(whole[..<at]), Array(whole[(at + needle.count)...]))
        tokenFrames.append((output, parts.0, parts.1))
        return parts
    }

    /// `status` first where there is one (SPEC §3: in every run JSON, SSE data included), then `type`, the
    /// fields, and the run's id as `run_id` and `task_id`. Takes the state lock: never call it under that lock.
    private func frame(_ type: String, _ fields: JSONObject) -> [UInt8] {
        let runID = state.withLock { $0.runID }
        var object = JSONObject()
        if let status = fields["status"] { object["status"] = status }
        object["type"] = .string(type)
        for (k, v) in fields where k != "status" { object[k] = v }
        object["run_id"] = .string(runID)
        object["task_id"] = .string(runID)
        return SSEChannel.frame(type, object)
    }
}
