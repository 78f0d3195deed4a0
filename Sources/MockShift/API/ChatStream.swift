import HTTPTypes
import MockShiftHTTP
import Synchronization

/// One streaming chatbot turn's Server-Sent Events (SPEC §9, framing as SPEC §5): first `start` with
/// `conversation_id`, `run_id` and `pipeline_run_id` (before any token, so a Stop button works at once); one
/// `stream` event per token of the chatbot's output node, or its whole value once when no token of it streamed;
/// exactly one final `result` (`success` with `output_message`, `terminated` with the partial one, or `failed`
/// with `error`), after which the body ends. A `: keep-alive` comment goes out after 15 s of silence.
final class ChatStream: Sendable {
    private let channel: SSEChannel
    var body: StreamBody { channel.body }
    private struct State {
        var runID = ""
        /// A token of the output went out.
        var streamed = false
    }
    private let state = Mutex(State())
    private let conversationID: String
    private let output: String

    /// `output`: the chatbot's output node name, the only output whose tokens are sent. `cutAfter`: an injected
    /// fault's event count after which the connection is dropped (``StreamCut``).
    init(scheduler: Scheduler, conversationID: String, output: String, cutAfter: Int? = nil) {
        channel = SSEChannel(scheduler: scheduler, cutAfter: cutAfter)
        self.conversationID = conversationID
        self.output = output
    }

    /// The HTTP response carrying this stream.
    func response() -> Response { channel.response() }

    /// Turns an engine event into SSE bytes. Called under the run's lock: formatting and one write.
    func send(_ event: RunEvent) {
        switch event {
        case let .started(run):
            state.withLock { $0.runID = run.id }
            channel.send([SSEChannel.frame("start", [
                "status": "in_progress", "type": "start", "conversation_id": .string(conversationID),
                "run_id": .string(run.id), "pipeline_run_id": .string(run.id)])])
            channel.startKeepAlive()
        case let .tokens(outputs, tokens):
            guard outputs.contains(output) else { return }
            let runID = state.withLock { s in s.streamed = true; return s.runID }
            channel.send(tokens.map { token in
                SSEChannel.frame("stream", ["type": "stream", "output_value": .string(token),
                                            "conversation_id": .string(conversationID), "run_id": .string(runID)])
            })
        case .output:
            break  // whole values of other outputs (stream_all_outputs): a chatbot never asks for them
        }
    }

    /// Sends the output's whole value when none of its tokens streamed (a completed turn), then the terminal
    /// `result` event, and ends the body.
    func finish(_ run: RunRecord, answer: String) {
        let streamed = state.withLock { s in s.runID = run.id; return s.streamed }
        var frames: [[UInt8]] = []
        if run.status == .completed && !streamed && !answer.isEmpty {
            frames.append(SSEChannel.frame("stream", ["type": "stream", "output_value": .string(answer),
                                                      "conversation_id": .string(conversationID), "run_id": .string(run.id)]))
        }
        var result: JSONObject
        switch run.status {
        case .completed:
            result = ["status": "success", "type": "result", "conversation_id": .string(conversationID),
                      "output_message": .string(answer), "follow_up_questions": []]
        case .terminated:
            result = ["status": "terminated", "type": "result", "conversation_id": .string(conversationID),
                      "output_message": .string(answer), "follow_up_questions": []]
        default:
            result = ["status": "failed", "type": "result", "conversation_id": .string(conversationID),
                      "error": .string(run.error ?? "unknown error"), "output_message": .string(answer)]
        }
        result["run_id"] = .string(run.id)
        result["pipeline_run_id"] = .string(run.id)
        frames.append(SSEChannel.frame("result", result))
        channel.finish(frames)
    }
}
