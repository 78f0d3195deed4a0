import Dispatch
import Foundation
import MockShiftHTTP

/// What a `post_message` / `post_messages` frame carries (API-CHAT §2.2, the SDK's `_encode_content`): text, text
/// with a MIME type, or a file with base64 `raw_bytes`. One frame is one turn.
enum SessionContent: Sendable {
    case text(String)
    case file(name: String, mimeType: String, bytes: [UInt8])

    /// The items of a `post_message` (`content`) or `post_messages` (`messages`) frame. Throws
    /// ``SessionSocket/FrameError`` naming what is wrong; an empty turn (no text, no file) is refused.
    static func items(of frame: JSONObject, type: String) throws -> [SessionContent] {
        let raw: [JSON]
        if type == "post_messages" {
            guard let list = frame["messages"]?.arrayValue else {
                throw SessionSocket.FrameError("post_messages needs messages (a list)")
            }
            raw = list
        } else {
            guard let content = frame["content"], content != .null else {
                throw SessionSocket.FrameError("post_message needs content (a string or an object)")
            }
            raw = [content]
        }
        var items: [SessionContent] = []
        for (index, item) in raw.enumerated() {
            let label = type == "post_messages" ? "messages[\(index)]" : "content"
            if let text = item.stringValue {
                items.append(.text(text))
                continue
            }
            guard let object = item.objectValue, let kind = object["type_string"]?.stringValue else {
                throw SessionSocket.FrameError("\(label) must be a string or an object with type_string and value")
            }
            if kind == "file" {
                guard let value = object["value"]?.objectValue, let base64 = value["raw_bytes"]?.stringValue else {
                    throw SessionSocket.FrameError("\(label) is a file without value.raw_bytes (base64)")
                }
                guard let bytes = ChatbotHandlers.base64(base64) else {
                    throw SessionSocket.FrameError("\(label).value.raw_bytes is not valid base64")
                }
                let metadata = value["metadata"]?.objectValue ?? [:]
                let name = metadata["name"]?.stringValue ?? "file"
                items.append(.file(name: name, mimeType: metadata["mime_type"]?.stringValue ?? ChatFileHandlers.guessedType(name),
                                   bytes: bytes))
            } else if let text = object["value"]?.stringValue {
                items.append(.text(text))
            } else {
                throw SessionSocket.FrameError("\(label) of type_string \(SessionSocket.short(kind)) needs value (a string)")
            }
        }
        let text = items.contains { if case let .text(t) = $0 { !t.isEmpty } else { false } }
        let file = items.contains { if case .file = $0 { true } else { false } }
        guard text || file else { throw SessionSocket.FrameError("\(type) has no text and no file: nothing to answer") }
        return items
    }

    /// The turn's user text: the texts, one per line.
    static func userText(_ items: [SessionContent]) -> String {
        items.compactMap { if case let .text(t) = $0, !t.isEmpty { t } else { nil } }.joined(separator: "\n")
    }

    /// The user's message as stored: text as `data_type_message`, a file as `file` with its name, MIME type and
    /// size (never its bytes).
    func content() -> JSONObject {
        switch self {
        case let .text(text):
            return ["type": "data_type_message", "value": .string(text), "status": "Complete"]
        case let .file(name, mimeType, bytes):
            return ["type": "file", "value": ["name": .string(name), "mime_type": .string(mimeType),
                                              "size": .int(Int64(bytes.count))], "status": "Complete"]
        }
    }
}

/// Chatbot session turns (SPEC §10, issue 13 item 4): each user message runs the chatbot's pipeline, as
/// `POST /chatbot/{id}/run` does, with the session's earlier turns as conversation memory. The session is the
/// conversation (same id): its turns show in `/_mock/conversations`, its files reach `chat_file_reader` nodes,
/// and `POST /chatbot/{id}/terminate` with the turn's run id stops it like `terminate_session` stops it (but the
/// session stays open and is told the answer was `Terminated`).
enum ChatbotSessionTurn {
    /// Where completed answers are stored and their end frames sent, one after another, off the scheduler thread.
    /// Ordered after every delta of the turn (they were sent before the run finished).
    static let ends = DispatchQueue(label: "mockshift.session-turn-ends")

    /// Why a turn cannot start: the failed ack's `error`.
    struct Refused: Error {
        let message: String
    }

    /// Starts the turn of `items` in chatbot session `session`. Sends the ack (with the user's message id),
    /// `Processing`, then the run's deltas and the end frames as they come. Throws ``Refused`` (nothing stored,
    /// nothing sent) when the chatbot, its pipeline or nodes are gone or the session has a turn in progress.
    static func start(_ app: MockShiftApp, session: SessionRecord, type: String, items: [SessionContent],
                      socket: SessionSocket, effect: Faults.Effect?) throws {
        let namespace = session.namespace
        try app.chatTurns.exclusive(namespace) {
            guard let chatbot = try app.store.chatbot(namespace: namespace, id: session.ownerID) else {
                throw Refused(message: "chatbot \(session.ownerID) of this session was deleted")
            }
            guard let pipeline = try app.store.pipeline(namespace: namespace, id: chatbot.pipelineID) else {
                throw Refused(message: "Pipeline \(chatbot.pipelineID) of chatbot \(chatbot.id) not found: it was deleted")
            }
            let (nodes, version): (JSONObject, String?)
            let input: String, output: String
            do {
                (nodes, version) = try ChatbotHandlers.runnableNodes(app, pipeline, chatbot.pipelineVersion)
                input = try ChatbotHandlers.nodeName(chatbot.input, of: "input", in: nodes)
                output = try ChatbotHandlers.nodeName(chatbot.output, of: "output", in: nodes)
            } catch let error as APIError {
                throw Refused(message: error.message)
            }
            let text = SessionContent.userText(items)
            let turn = SessionTurn(hub: app.sessionHub, sessionID: session.id, namespace: namespace,
                                   sender: ["object_id": .string(chatbot.id), "object_type": "chatbot"], userText: text)
            guard app.sessionHub.begin(turn) else { throw Refused(message: "a turn is in progress") }
            let conversationID = session.id
            switch app.chatTurns.reserve(conversationID, namespace: namespace, chatbotID: chatbot.id, userText: text,
                                         at: turn.startedAt) {
            case .reserved: break
            case .busy:
                app.sessionHub.end(turn)
                throw Refused(message: "a turn is in progress")
            case .gone:
                app.sessionHub.end(turn)
                throw Refused(message: "chatbot \(chatbot.id) of this session was deleted")
            }
            var userMessageID = ""
            do {
                // The session is the chatbot conversation: created with its first turn (or its first file).
                let files = items.compactMap { item -> ConversationFile? in
                    guard case let .file(name, mimeType, bytes) = item else { return nil }
                    return ConversationFile(name: name, mimeType: mimeType, bytes: bytes, messageIndex: 0, createdAt: turn.startedAt)
                }
                let exists = try app.store.conversation(namespace: namespace, id: conversationID) != nil
                if !files.isEmpty {
                    _ = try app.store.addConversationFiles(namespace: namespace, chatbotID: chatbot.id, conversationID: conversationID,
                                                           create: !exists, knowledgeBaseID: IDs.make(), files: files, at: turn.startedAt)
                } else if !exists {
                    try app.store.createConversation(namespace: namespace, id: conversationID, chatbotID: chatbot.id, at: turn.startedAt)
                }
                userMessageID = try SessionSocket.storeUserMessages(app, session: session.id, items)
            } catch {
                app.chatTurns.release(conversationID)
                app.sessionHub.end(turn)
                throw error
            }
            socket.send(SessionSocket.frame(type, session.id, [("success", true), ("message_id", .string(userMessageID))]))
            turn.status("Processing")

            let turns = (try? app.store.conversation(namespace: namespace, id: conversationID)?.turns) ?? []
            var options = RunOptions()
            options.llmFailures = effect?.llmFailures ?? []
            options.llmScripts = app.llmScripts.scripts(namespace: namespace, pipeline: pipeline, chatbotID: chatbot.id)
            options.scriptedPipeline = pipeline.name
            // A session answer streams as deltas whatever the LLM node's `stream` input says (SPEC §10).
            options.streamAllOutputs = true
            options.chatHistory = ChatbotHandlers.history(turns, current: text)
            options.chatFiles = (try? ChatFileHandlers.readerFiles(app, namespace: namespace, conversationID: conversationID, nodes: nodes)) ?? []
            options.recorded = ["chatbot_id": .string(chatbot.id), "conversation_id": .string(conversationID),
                                "session_id": .string(session.id)]
            let end = TurnEnd(app: app, conversationID: conversationID, output: output, userText: text, startedAt: turn.startedAt)
            let engine = app.engine
            do {
                let run = try engine.start(namespace: namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                           inputs: [input: .string(text)], options: options, mode: .stream,
                                           observer: { event in
                    switch event {
                    case let .started(run):
                        app.chatTurns.started(conversationID, runID: run.id)
                        turn.state.withLock { $0.runID = run.id }
                    case let .tokens(outputs, tokens):
                        if outputs.contains(output) { turn.delta(tokens.joined()) }
                    case let .output(name, value):
                        if name == output { turn.delta(value.stringValue ?? value.templateText) }
                    }
                }, onFinish: { run in
                    // A completed answer ends on the scheduler thread, inside its last token's tick: its two
                    // writes (the conversation turn, the session message) and end frames go to `ends`, so that the
                    // scheduler is not held while many turns end at once (scripts/bench-sessions: 1,000 turns
                    // ending together made the other sessions' deltas late). A stopped or failed answer ends
                    // inline: `terminate_session` waits for it to be stored.
                    if run.status == .completed {
                        ends.async { finish(app, turn, run, answer: end.store(run)) }
                    } else {
                        finish(app, turn, run, answer: end.store(run))
                    }
                })
                let pipelineID = pipeline.id
                turn.onStop { engine.terminate(namespace: namespace, pipelineID: pipelineID, runID: run.id, reply: { _ in }) }
                ChatbotHandlers.stopIfClosed(app, conversationID, run: run, pipelineID: pipeline.id)
            } catch {
                app.chatTurns.release(conversationID)
                let message = (error as? APIError)?.message ?? "\(error)"
                turn.finish(app, content: ["type": "error_message", "error": .string(message), "status": "Failed"],
                            notify: [notification(turn, ["type": "error_message", "error": .string(message)])])
            }
        }
    }

    /// The answer's end (SPEC §10): stored, then `message_notification` and `Idle` unless silenced. A completed run
    /// is `Complete` with the whole text; a stopped one (a chatbot terminate, a delete) `Terminated` with its
    /// text so far; a failed one an `error_message` with the run's error.
    static func finish(_ app: MockShiftApp, _ turn: SessionTurn, _ run: RunRecord, answer: String) {
        // A completed answer no token of which streamed (an output not fed by an LLM) still goes out as a delta.
        let unsent = turn.state.withLock { $0.text.isEmpty && $0.deltas == 0 }
        if run.status == .completed && unsent { turn.delta(answer) }
        let content: JSONObject
        switch run.status {
        case .completed:
            content = ["type": "data_type_message", "value": .string(answer), "status": "Complete"]
        case .terminated:
            content = ["type": "data_type_message", "value": .string(answer), "status": "Terminated"]
        default:
            content = ["type": "error_message", "error": .string(run.error ?? "unknown error"), "value": .string(answer),
                       "status": "Failed"]
        }
        var stored = content
        stored["run_id"] = .string(run.id)
        turn.finish(app, content: stored, notify: [notification(turn, content)])
    }

    /// `{"type":"message_notification","session_id":S,"message":{id, session_id, sender, content, created_at}}`.
    static func notification(_ turn: SessionTurn, _ content: JSONObject) -> JSONObject {
        SessionSocket.frame("message_notification", turn.sessionID, [("message", turn.answerMessage(content: content).json)])
    }
}

extension MockShiftApp {
    /// Waits until every completed session answer queued on ``ChatbotSessionTurn/ends`` is stored (at shutdown:
    /// a turn that completed a moment before SIGTERM keeps its answer).
    public func finishSessionTurnEnds() {
        ChatbotSessionTurn.ends.sync {}
    }
}
