import Foundation
import HTTPTypes
import MockShiftHTTP
import Synchronization

/// Chatbot handlers (SPEC §9, API-CHAT §1, issue 12): CRUD, turns, "Stop generating", and the conversation test
/// controls. A turn is a pipeline run of the chatbot's pipeline started through ``RunEngine/start``: it shows
/// wherever runs show, and stopping it is the engine's terminate. What a turn adds is the conversation: the
/// history handed to the run's `chat_memory` nodes, and the finished turn stored (before anyone hears of the
/// end: the run's `onFinish` stores it, and the engine calls that before it answers a terminate).
enum ChatbotHandlers {
    /// The settings objects a chatbot stores and returns as sent.
    static let configKeys = ["deployment_options", "access_config", "twilio_config", "slack_config"]

    // MARK: Chatbot objects

    /// `POST /chatbot` (`Chatbot.new`): `{"status":"success","id":ID}`. 400 without a name or `pipeline.id`, or when
    /// `input`/`output` name no input/output node of the pipeline (an empty name is resolved when there is exactly
    /// one such node: else `Input name not found` / `Output name not found`); 404 for an unknown pipeline.
    static func create(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let name = try body.string("name"), !name.isEmpty else { throw APIError(.badRequest, "Chatbot name is required") }
        let (pipelineID, version) = try pipelineLink(body)
        guard let pipeline = try c.app.store.pipeline(namespace: c.namespace, id: pipelineID) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        let nodes = try runnableNodes(c, pipeline, version).nodes
        let input = try nodeName(try body.string("input") ?? "", of: "input", in: nodes)
        let output = try nodeName(try body.string("output") ?? "", of: "output", in: nodes)
        var configs = JSONObject()
        for key in configKeys { configs[key] = .object(try body.object(key)) }
        let now = wallClockMicros()
        let chatbot = ChatbotRecord(
            id: IDs.make(), namespace: c.namespace, name: name, description: try body.string("description") ?? "",
            pipelineID: pipeline.id, pipelineVersion: version, input: input, output: output,
            deployed: try body.bool("deployed"), configs: configs, createdAt: now, modifiedAt: now)
        try c.app.store.saveChatbot(chatbot)
        return .json(.ok, ["status": "success", "id": .string(chatbot.id)])
    }

    /// `GET /chatbot?id=…|name=…` (`Chatbot.fetch`): `{"status":"success","object":{…}}` (SPEC §9), 404 when missing.
    static func fetch(_ c: HandlerContext) throws -> Reply {
        let id = c.request.queryValue("id"), name = c.request.queryValue("name")
        var chatbot: ChatbotRecord?
        if let id, !id.isEmpty {
            chatbot = try c.app.store.chatbot(namespace: c.namespace, id: id)
            if let name, !name.isEmpty, chatbot?.name != name { chatbot = nil }
        } else if let name, !name.isEmpty {
            chatbot = try c.app.store.chatbot(namespace: c.namespace, name: name)
        } else {
            throw APIError(.badRequest, "Chatbot ID or name is required")
        }
        guard let chatbot else { throw APIError(.notFound, "Chatbot not found") }
        return .json(.ok, ["status": "success", "object": render(chatbot)])
    }

    /// `GET /chatbots` (`Chatbot.list`): newest first; `objects` with `verbose=true`, else `object_ids`, like
    /// pipelines. `include_shared` is accepted and changes nothing (nothing is shared offline).
    static func list(_ c: HandlerContext) throws -> Reply {
        let offset = try PipelineHandlers.intQuery(c, "offset") ?? 0
        let limit = try PipelineHandlers.intQuery(c, "limit") ?? 1000
        guard offset >= 0, limit >= 0 else { throw APIError(.badRequest, "offset and limit must not be negative") }
        let chatbots = try c.app.store.chatbots(namespace: c.namespace, offset: offset, limit: min(limit, 10_000))
        if c.request.queryValue("verbose") == "true" {
            return .json(.ok, ["status": "success", "objects": .array(chatbots.map(render))])
        }
        return .json(.ok, ["status": "success", "object_ids": .array(chatbots.map { .string($0.id) })])
    }

    /// `DELETE /chatbot/{id}`: deletes it with its conversations (stored first), then stops its live turns.
    static func delete(_ c: HandlerContext) throws -> Reply {
        try c.app.chatTurns.exclusive(c.namespace) {
            let id = c.parameter("id")
            guard let chatbot = try c.app.store.chatbot(namespace: c.namespace, id: id) else {
                throw APIError(.notFound, "Chatbot not found")
            }
            // Closed first: a turn reserved but not started yet stops itself once started (``ChatTurns/started``).
            let live = c.app.chatTurns.close(namespace: c.namespace, chatbotID: id)
            _ = try c.app.store.deleteChatbot(namespace: c.namespace, id: id)
            for runID in live {
                c.app.engine.terminate(namespace: c.namespace, pipelineID: chatbot.pipelineID, runID: runID, reply: { _ in })
            }
            return .json(.ok, ["status": "success"])
        }
    }

    /// A chatbot as `GET /chatbot` returns it (SPEC §9; the keys `_from_fetch_obj` reads, API-CHAT §1.3).
    static func render(_ b: ChatbotRecord) -> JSON {
        var o: JSONObject = ["_id": .string(b.id), "id": .string(b.id), "name": .string(b.name),
                             "description": .string(b.description),
                             "pipeline": ["object_id": .string(b.pipelineID), "id": .string(b.pipelineID),
                                          "version": .string(b.pipelineVersion ?? "latest")],
                             "input": .string(b.input), "output": .string(b.output), "deployed": .bool(b.deployed)]
        for key in configKeys { o[key] = b.configs[key] ?? .object([:]) }
        o["created_at"] = .string(iso8601(micros: b.createdAt))
        o["modified_at"] = .string(iso8601(micros: b.modifiedAt))
        return .object(o)
    }

    /// `pipeline`: `{"id", "version"?}` (JSON, or its JSON text in a form), or the id as text. The version is
    /// `latest` (or absent: stored as nil), `MAJOR.MINOR.PATCH`, or `{major, minor, patch}` (the docs).
    static func pipelineLink(_ body: JSONObject) throws -> (id: String, version: String?) {
        var link: JSONObject
        if case let .string(text)? = body["pipeline"], (try? JSON.parse(text))?.objectValue == nil {
            link = ["id": .string(text)]
        } else {
            link = try body.object("pipeline")
        }
        guard let id = try link.string("id") ?? link.string("object_id"), !id.isEmpty else {
            throw APIError(.badRequest, "pipeline.id is required")
        }
        switch link["version"] {
        case nil, .null?: return (id, nil)
        case let .string(v)?: return (id, v.isEmpty || v == "latest" ? nil : v)
        case let .object(parts)?:
            let numbers = ["major", "minor", "patch"].map { parts[$0]?.intValue }
            guard numbers.allSatisfy({ $0 != nil && $0! >= 0 }) else {
                throw APIError(.badRequest, "pipeline.version must be \"latest\", MAJOR.MINOR.PATCH or {major, minor, patch}")
            }
            return (id, numbers.map { String($0!) }.joined(separator: "."))
        default:
            throw APIError(.badRequest, "pipeline.version must be \"latest\", MAJOR.MINOR.PATCH or {major, minor, patch}")
        }
    }

    /// The nodes a chatbot runs (SPEC §9 `pipeline.version`): a named snapshot; for nil (latest) the latest
    /// deployed snapshot, else the working state when none is deployed.
    static func runnableNodes(_ c: HandlerContext, _ pipeline: PipelineRecord, _ version: String?) throws -> (nodes: JSONObject, version: String?) {
        try runnableNodes(c.app, pipeline, version)
    }

    /// ``runnableNodes(_:_:_:)`` off a request (a chatbot session's turn).
    static func runnableNodes(_ app: MockShiftApp, _ pipeline: PipelineRecord, _ version: String?) throws -> (nodes: JSONObject, version: String?) {
        if let version { return (try PipelineHandlers.deployedVersion(app, pipeline, version).nodes, version) }
        if let current = pipeline.currentVersion, let snapshot = try app.store.version(pipelineID: pipeline.id, version: current) {
            return (snapshot.nodes, current)
        }
        return (pipeline.nodes, nil)
    }

    /// The name of the `type` (input/output) node `name` names; an empty name is resolved when the pipeline has
    /// exactly one. 400 `Input name not found` / `Output name not found` otherwise (the real server's text).
    static func nodeName(_ name: String, of type: String, in nodes: JSONObject) throws -> String {
        let names = nodes.entries.compactMap { key, value -> String? in
            guard let node = value.objectValue, node["type"]?.stringValue == type else { return nil }
            return node["name"]?.stringValue ?? node["id"]?.stringValue ?? key
        }
        let label = type == "input" ? "Input" : "Output"
        if name.isEmpty {
            guard names.count == 1 else {
                throw APIError(.badRequest, "\(label) name not found")
            }
            return names[0]
        }
        guard names.contains(name) else {
            throw APIError(.badRequest, "\(label) name not found: the pipeline has no \(type) node named '\(name)'")
        }
        return name
    }

    // MARK: Turns

    /// `POST /chatbot/{id}/run` (JSON, multipart or urlencoded): `text` or base64 `audio`, optional
    /// `conversation_id` (absent or "" = a new conversation), `stream`. One turn = one run of the linked pipeline;
    /// the answer is the chatbot's output node's value (SPEC §9 gives the answers and events).
    static func run(_ c: HandlerContext) throws -> Reply {
        // The turn's setup, from the chatbot lookup to its run being live and recorded, never interleaves with a
        // delete or reset of the key's chatbots and pipelines (``ChatTurns/exclusive(_:_:)``).
        try c.app.chatTurns.exclusive(c.namespace) { try startTurn(c) }
    }

    private static func startTurn(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        let app = c.app, namespace = c.namespace
        guard let chatbot = try app.store.chatbot(namespace: namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Chatbot not found")
        }
        let text = try userText(body)
        let stream = try body.bool("stream")
        guard let pipeline = try app.store.pipeline(namespace: namespace, id: chatbot.pipelineID) else {
            throw APIError(.notFound, "Pipeline \(chatbot.pipelineID) of chatbot \(chatbot.id) not found: it was deleted")
        }
        let (nodes, version) = try runnableNodes(c, pipeline, chatbot.pipelineVersion)
        let input = try nodeName(chatbot.input, of: "input", in: nodes)
        let output = try nodeName(chatbot.output, of: "output", in: nodes)
        let requested = try body.string("conversation_id") ?? ""
        if !requested.isEmpty {
            guard let conversation = try app.store.conversation(namespace: namespace, id: requested),
                  conversation.chatbotID == chatbot.id else {
                throw APIError(.notFound, "Conversation \(requested) not found")
            }
            // A session's conversation takes its turns from the session only (found by a newcomer: an HTTP turn
            // went into the conversation but never into the session's messages).
            if try app.store.session(namespace: namespace, id: requested) != nil {
                throw APIError(.conflict, "conversation \(requested) belongs to a WebSocket session: post its messages to the session")
            }
        }
        let conversationID = requested.isEmpty ? IDs.make() : requested
        switch app.chatTurns.reserve(conversationID, namespace: namespace, chatbotID: chatbot.id, userText: text,
                                     at: wallClockMicros()) {
        case .reserved: break
        case .busy: throw APIError(.conflict, "conversation \(conversationID) has a turn in progress")
        case .gone: throw APIError(.notFound, "Chatbot not found")
        }
        do {
            var turns: [ChatTurn] = []
            if requested.isEmpty {
                try app.store.createConversation(namespace: namespace, id: conversationID, chatbotID: chatbot.id, at: wallClockMicros())
            } else {
                turns = try app.store.conversation(namespace: namespace, id: conversationID)?.turns ?? []
            }
            var options = RunOptions()
            options.llmFailures = c.injectedLLMFailures
            options.llmScripts = app.llmScripts.scripts(namespace: namespace, pipeline: pipeline, chatbotID: chatbot.id)
            options.scriptedPipeline = pipeline.name
            options.chatHistory = history(turns, current: text)
            options.chatFiles = requested.isEmpty ? [] : try ChatFileHandlers.readerFiles(app, namespace: namespace,
                                                                                         conversationID: conversationID, nodes: nodes)
            options.recorded = ["chatbot_id": .string(chatbot.id), "conversation_id": .string(conversationID)]
            let end = TurnEnd(app: app, conversationID: conversationID, output: output, userText: text, startedAt: wallClockMicros())
            let engine = app.engine
            if stream {
                let events = ChatStream(scheduler: app.keepAliveScheduler, conversationID: conversationID, output: output,
                                        cutAfter: c.injectedStreamCut)
                let run = try engine.start(namespace: namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                           inputs: [input: .string(text)], options: options, mode: .stream,
                                           observer: { event in
                    // Recorded before the start event goes out: a Stop pressed on it finds the turn.
                    if case let .started(run) = event { app.chatTurns.started(conversationID, runID: run.id) }
                    events.send(event)
                }, onFinish: { run in
                    events.finish(run, answer: end.store(run))
                })
                app.streams.track(events.body, namespace: namespace)
                if app.cancelOnDisconnect {
                    let pipelineID = pipeline.id
                    events.body.onClose { engine.terminate(namespace: namespace, pipelineID: pipelineID, runID: run.id, reply: { _ in }) }
                }
                c.writer.send(events.response())
                stopIfClosed(app, conversationID, run: run, pipelineID: pipeline.id)
                return .later
            }
            let writer = c.writer
            let run = try engine.start(namespace: namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                       inputs: [input: .string(text)], options: options, mode: .sync, onFinish: { run in
                writer.send(syncAnswer(run, answer: end.store(run), conversationID: conversationID))
            })
            stopIfClosed(app, conversationID, run: run, pipelineID: pipeline.id)
            return .later
        } catch {
            let gone = !app.chatTurns.isOpen(conversationID)
            app.chatTurns.release(conversationID)
            if requested.isEmpty { try? app.store.deleteConversation(namespace: namespace, id: conversationID) }
            // The chatbot (or the key's whole namespace) went while this turn was being set up.
            if gone { throw APIError(.notFound, "Chatbot not found") }
            throw error
        }
    }

    /// Records the turn's run; when its chatbot was deleted (or its namespace reset) while the turn was being set
    /// up, the run is stopped at once, as the delete or reset stops turns already running (found by review: such
    /// a turn used to finish "success" with its conversation gone).
    static func stopIfClosed(_ app: MockShiftApp, _ conversationID: String, run: RunRecord, pipelineID: String) {
        if !app.chatTurns.started(conversationID, runID: run.id) {
            app.engine.terminate(namespace: run.namespace, pipelineID: pipelineID, runID: run.id, reply: { _ in })
        }
    }

    /// The user's text: `text`, or `audio` (base64) as `audio transcript (N bytes)` (SPEC §9). 400 for invalid
    /// base64, or when neither is given.
    static func userText(_ body: JSONObject) throws -> String {
        let text = try body.string("text") ?? "", audio = try body.string("audio") ?? ""
        if !text.isEmpty && !audio.isEmpty { throw APIError(.badRequest, "give text or audio, not both") }
        if !text.isEmpty { return text }
        if !audio.isEmpty {
            guard let bytes = base64(audio) else { throw APIError(.badRequest, "audio must be base64 (invalid base64)") }
            return "audio transcript (\(bytes.count) bytes)"
        }
        throw APIError(.badRequest, "text or audio is required (a non-empty string)")
    }

    /// Standard padded base64 (audio, uploaded files); nil for anything else, a wrong length included (Foundation
    /// alone took `YWJj=`).
    static func base64(_ text: String) -> [UInt8]? {
        guard text.utf8.count % 4 == 0, let data = Data(base64Encoded: text) else { return nil }
        return [UInt8](data)
    }

    /// Stored turns as `chat_memory` history: each turn's user text and answer (a stopped answer marked so);
    /// failed turns are left out (nothing was answered).
    static func history(_ turns: [ChatTurn], current: String) -> ChatHistory {
        var messages: [ChatHistory.Message] = []
        for turn in turns where turn.outcome != .failed {
            messages.append(.init(role: .human, text: turn.userText))
            messages.append(.init(role: .ai, text: turn.answer, stopped: turn.outcome == .stopped))
        }
        return ChatHistory(messages: messages, currentText: current)
    }

    /// The non-streaming answer (SPEC §9): 200 with the answer; 409 with the partial answer when stopped; 500
    /// with the error when the run failed.
    static func syncAnswer(_ run: RunRecord, answer: String, conversationID: String) -> Response {
        switch run.status {
        case .completed:
            return MockShiftApp.json(.ok, ["status": "success", "conversation_id": .string(conversationID),
                                           "output_message": .string(answer), "follow_up_questions": [],
                                           "run_id": .string(run.id), "pipeline_run_id": .string(run.id)])
        case .terminated:
            var error = APIError(.conflict, "run \(run.id) was terminated", runID: run.id)
            error.details = ["conversation_id": .string(conversationID), "output_message": .string(answer)]
            return MockShiftApp.render(error)
        default:
            var error = APIError(.internalError, run.error ?? "unknown error", runID: run.id)
            error.details = ["conversation_id": .string(conversationID)]
            return MockShiftApp.render(error)
        }
    }

    /// `POST /chatbot/{id}/terminate` with `pipeline_run_id` (or `run_id`; JSON, form or multipart): SPEC §4's
    /// terminate of one of this chatbot's turns; 404 for a run of anything else.
    static func terminate(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let chatbot = try c.app.store.chatbot(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Chatbot not found")
        }
        var runID = try body.string("pipeline_run_id") ?? ""
        if runID.isEmpty { runID = try body.string("run_id") ?? "" }
        guard !runID.isEmpty else { throw APIError(.badRequest, "pipeline_run_id is required") }
        // Live first: a turn is stored before it stops being live, so one of the two finds it.
        let live = c.app.chatTurns.liveRuns(namespace: c.namespace, chatbotID: chatbot.id).contains(runID)
        let stored = live ? nil : try c.app.store.turnOwner(namespace: c.namespace, runID: runID)
        guard live || stored?.chatbotID == chatbot.id else {
            throw APIError(.notFound, "Run \(runID) not found")
        }
        let id = runID
        let answer = ChangeAnswer(c) { run in
            try RunHandlers.requireLive(run, wanted: .terminated)
            return ["status": "success", "run_id": .string(id), "pipeline_run_id": .string(id), "run_status": "terminated"]
        }
        c.app.engine.terminate(namespace: c.namespace, pipelineID: chatbot.pipelineID, runID: runID, reply: answer.reply)
        answer.expireIfPending()
        return .later
    }

    // MARK: Test controls

    /// `GET /_mock/conversations[?chatbot_id=…]`: the caller's conversations, oldest first, with their turns and
    /// the turn in progress (`turn_in_progress`, its run id; `live_turn`, also its user text and start).
    /// A trailing slash is the one-conversation route with an empty id (what `/_mock/conversations/%20` becomes
    /// once the transport trims the request line): 404, never the whole list.
    static func conversations(_ c: HandlerContext) throws -> Reply {
        if c.request.path.hasSuffix("/") { throw APIError(.notFound, "Conversation not found: the id is empty") }
        var chatbotID = c.request.queryValue("chatbot_id")
        if chatbotID?.isEmpty == true { chatbotID = nil }
        let all = try c.app.store.conversations(namespace: c.namespace, chatbotID: chatbotID)
        return .json(.ok, ["status": "success", "conversations": .array(all.map { render($0, c.app) })])
    }

    /// `GET /_mock/chatbots[?limit=&offset=]`: the caller's chatbots, newest first, each as `GET /chatbot` renders it
    /// plus how much it is used: `conversations`, `turns` (stored), `live_turns` (in progress now) and
    /// `last_activity_at` (the newest conversation start, turn end or live turn start; null when none). The
    /// dashboard's chatbot list (issue 12 item 7): counts without loading every turn.
    static func activity(_ c: HandlerContext) throws -> Reply {
        let offset = try PipelineHandlers.intQuery(c, "offset") ?? 0
        let limit = try PipelineHandlers.intQuery(c, "limit") ?? 1000
        guard offset >= 0, limit >= 0 else { throw APIError(.badRequest, "offset and limit must not be negative") }
        let all = try c.app.store.chatbotActivity(namespace: c.namespace, offset: offset, limit: min(limit, 10_000))
        let items = all.map { item -> JSON in
            var o = render(item.chatbot).objectValue ?? [:]
            let live = c.app.chatTurns.liveTurns(namespace: c.namespace, chatbotID: item.chatbot.id)
            o["conversations"] = .int(Int64(item.conversations))
            o["turns"] = .int(Int64(item.turns))
            o["live_turns"] = .int(Int64(live.count))
            let last = ([item.lastActivity] + live.map(\.startedAt)).compactMap { $0 }.max()
            o["last_activity_at"] = last.map { .string(iso8601(micros: $0)) } ?? .null
            return .object(o)
        }
        return .json(.ok, ["status": "success", "chatbots": .array(items)])
    }

    /// `GET /_mock/conversations/{id}`: one conversation with its turns (user text, answer, run id, outcome) and its
    /// uploaded files (``ChatFileHandlers/render(_:)``: no bytes).
    static func conversation(_ c: HandlerContext) throws -> Reply {
        guard let conversation = try c.app.store.conversation(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Conversation \(c.parameter("id")) not found")
        }
        return .json(.ok, ["status": "success", "conversation": render(conversation, c.app)])
    }

    static func render(_ conversation: ConversationRecord, _ app: MockShiftApp) -> JSON {
        let turns = conversation.turns.enumerated().map { index, turn -> JSON in
            var o: JSONObject = ["index": .int(Int64(index)), "user_text": .string(turn.userText), "answer": .string(turn.answer),
                                 "run_id": .string(turn.runID), "outcome": .string(turn.outcome.rawValue)]
            if let error = turn.error { o["error"] = .string(error) }
            o["created_at"] = .string(iso8601(micros: turn.createdAt))
            o["ended_at"] = .string(iso8601(micros: turn.endedAt))
            return .object(o)
        }
        return ["id": .string(conversation.id), "chatbot_id": .string(conversation.chatbotID),
                "created_at": .string(iso8601(micros: conversation.createdAt)),
                "turn_in_progress": app.chatTurns.liveRun(conversation.id).map(JSON.string) ?? .null,
                "live_turn": app.chatTurns.liveTurn(conversation.id).map(render) ?? .null,
                "turns": .array(turns), "knowledge_base_id": conversation.knowledgeBaseID.map(JSON.string) ?? .null,
                "files": .array(conversation.files.map(ChatFileHandlers.render))]
    }

    /// A turn in progress (its run started, not stored yet): `run_id`, `user_text`, `started_at`.
    static func render(_ turn: ChatTurns.LiveTurn) -> JSON {
        ["run_id": .string(turn.runID), "user_text": .string(turn.userText), "started_at": .string(iso8601(micros: turn.startedAt))]
    }
}

extension MockShiftApp {
    /// After a crash (SPEC §1 "Restart"): the chatbot turns among the runs `runIDs` that the restart marked failed
    /// are stored in their conversations as failed turns (user text, no answer, the run's error), so a
    /// conversation says how each of its turns ended (found by review: the turn used to vanish). Errors are
    /// logged; nothing here stops the start.
    public func recordInterruptedTurns(_ runIDs: [String]) {
        for id in runIDs {
            do {
                guard let run = try store.run(id: id), let chatbotID = run.options?["chatbot_id"]?.stringValue,
                      let conversationID = run.options?["conversation_id"]?.stringValue,
                      let chatbot = try store.chatbot(namespace: run.namespace, id: chatbotID) else { continue }
                let text = run.inputs[chatbot.input]?.stringValue ?? ""
                try store.appendTurn(conversationID: conversationID, ChatTurn(
                    userText: text, answer: "", runID: run.id, outcome: .failed, error: run.error,
                    createdAt: run.createdAt, endedAt: run.endedAt ?? wallClockMicros()))
            } catch {
                logger.error("restart: could not store the interrupted chatbot turn of run \(id): \(error)")
            }
        }
    }
}

extension MockShiftApp {
    /// After a restart: session turns whose answer was never stored are stored as failed with `interrupted`
    /// (SPEC §10), so `get_messages` after a resume says how the turn ended. Errors are logged.
    public func recordInterruptedSessionTurns() {
        do {
            let count = try store.failInterruptedSessionTurns(at: wallClockMicros(), newID: IDs.make)
            if count > 0 { logger.notice("marked \(count) interrupted session turn(s) as failed") }
        } catch {
            logger.error("restart: could not mark interrupted session turns: \(error)")
        }
    }
}

/// How a turn ends: its run's final record becomes a stored turn (user text, answer, run id, outcome), and the
/// conversation is free for its next turn. Called from the run's `onFinish`, so the turn is stored before a
/// terminate that stopped it answers (`RunEngine.finish` calls waiters before replies).
struct TurnEnd: Sendable {
    let app: MockShiftApp
    let conversationID: String
    let output: String
    let userText: String
    let startedAt: Int64

    /// Stores the turn, frees the conversation, and returns the answer: the output's value when completed, else
    /// what it had produced (`partial_outputs`: the text the user saw of a stopped answer).
    func store(_ run: RunRecord) -> String {
        let values = run.status == .completed ? run.result : run.partialOutputs
        let answer = values?[output].map { $0.stringValue ?? $0.templateText } ?? ""
        let outcome: TurnOutcome = switch run.status {
        case .completed: .completed
        case .terminated: .stopped
        default: .failed
        }
        let turn = ChatTurn(userText: userText, answer: answer, runID: run.id, outcome: outcome,
                            error: outcome == .failed ? run.error : nil, createdAt: startedAt, endedAt: run.endedAt ?? wallClockMicros())
        do {
            try app.store.appendTurn(conversationID: conversationID, turn)
        } catch {
            app.logger.error("conversation \(conversationID): turn of run \(run.id) not stored: \(error)")
        }
        app.chatTurns.release(conversationID)
        return answer
    }
}

/// Chatbot turns in progress: at most one per conversation (SPEC §9: a second is 409), with the run each one
/// started, so a chatbot's terminate and delete find its live runs. A deleted chatbot is closed here, and a reset
/// namespace gets a new generation: a turn reserved before either, whose run starts after, learns it from
/// ``started(_:runID:)`` and is stopped.
final class ChatTurns: Sendable {
    private struct Turn {
        let namespace: String
        let chatbotID: String
        let generation: Int
        /// What the user sent, and when the turn was claimed (microseconds since 1970): the dashboard shows the
        /// turn before it is stored.
        let userText: String
        let startedAt: Int64
        var runID: String?
    }

    /// A turn in progress whose run has started (``liveTurn(_:)``, ``liveTurns(namespace:chatbotID:)``).
    struct LiveTurn {
        let conversationID: String
        let runID: String
        let userText: String
        /// Microseconds since 1970.
        let startedAt: Int64
    }
    private struct State {
        var turns: [String: Turn] = [:]
        /// Deleted chatbots (ids are never reused).
        var closed: Set<String> = []
        /// Bumped by each reset of the namespace.
        var generations: [String: Int] = [:]
    }
    private let state = Mutex(State())
    /// One lock per namespace for ``exclusive(_:_:)`` (never removed: one small lock per key seen).
    private let gates = Mutex<[String: NSLock]>([:])

    /// Runs `body` alone among the namespace's turn setups, chatbot and pipeline deletes and resets (found by
    /// review: a turn set up while its chatbot was deleted or its key reset ran on with its conversation gone).
    /// A setup is a few store reads, one write and the run's start: short, so waiting for one is too.
    func exclusive<T>(_ namespace: String, _ body: () throws -> T) throws -> T {
        let gate = gates.withLock { locks -> NSLock in
            if let lock = locks[namespace] { return lock }
            let lock = NSLock()
            locks[namespace] = lock
            return lock
        }
        gate.lock()
        defer { gate.unlock() }
        return try body()
    }

    enum Reservation { case reserved, busy, gone }

    /// Claims `conversationID` for a new turn of `userText`: `.busy` when a turn of it is in progress, `.gone` when
    /// the chatbot was deleted meanwhile.
    func reserve(_ conversationID: String, namespace: String, chatbotID: String, userText: String, at micros: Int64) -> Reservation {
        state.withLock { s in
            if s.closed.contains(chatbotID) { return .gone }
            guard s.turns[conversationID] == nil else { return .busy }
            s.turns[conversationID] = Turn(namespace: namespace, chatbotID: chatbotID, generation: s.generations[namespace] ?? 0,
                                           userText: userText, startedAt: micros)
            return .reserved
        }
    }

    /// Records the run of a claimed turn. False when the turn must stop: its chatbot was deleted, or its
    /// namespace reset, since it was reserved. A turn that already ended (or was never claimed) is true.
    @discardableResult
    func started(_ conversationID: String, runID: String) -> Bool {
        state.withLock { s in
            guard let turn = s.turns[conversationID] else { return true }
            if turn.runID == nil { s.turns[conversationID]?.runID = runID }
            return !s.closed.contains(turn.chatbotID) && turn.generation == (s.generations[turn.namespace] ?? 0)
        }
    }

    /// False when the conversation's turn (reserved, maybe not started) belongs to a chatbot deleted or a
    /// namespace reset since.
    func isOpen(_ conversationID: String) -> Bool {
        state.withLock { s in
            guard let turn = s.turns[conversationID] else { return true }
            return !s.closed.contains(turn.chatbotID) && turn.generation == (s.generations[turn.namespace] ?? 0)
        }
    }

    /// Frees the conversation (its turn ended, or never started).
    func release(_ conversationID: String) {
        _ = state.withLock { $0.turns.removeValue(forKey: conversationID) }
    }

    /// Closes a chatbot being deleted: no new turn of it starts; returns the runs of its turns in progress.
    func close(namespace: String, chatbotID: String) -> [String] {
        state.withLock { s in
            s.closed.insert(chatbotID)
            return s.turns.values.filter { $0.namespace == namespace && $0.chatbotID == chatbotID }.compactMap(\.runID)
        }
    }

    /// A reset of `namespace` begins: turns reserved before it stop once their run starts.
    func resetNamespace(_ namespace: String) {
        state.withLock { $0.generations[namespace, default: 0] += 1 }
    }

    /// Run ids of `chatbotID`'s turns in progress.
    func liveRuns(namespace: String, chatbotID: String) -> [String] {
        state.withLock { s in s.turns.values.filter { $0.namespace == namespace && $0.chatbotID == chatbotID }.compactMap(\.runID) }
    }

    /// The run of the conversation's turn in progress, if any.
    func liveRun(_ conversationID: String) -> String? {
        state.withLock { $0.turns[conversationID]?.runID }
    }

    /// The conversation's turn in progress, once its run has started.
    func liveTurn(_ conversationID: String) -> LiveTurn? {
        state.withLock { s in s.turns[conversationID].flatMap { Self.live(conversationID, $0) } }
    }

    /// `chatbotID`'s turns in progress whose runs have started.
    func liveTurns(namespace: String, chatbotID: String) -> [LiveTurn] {
        state.withLock { s in
            s.turns.compactMap { id, turn in
                turn.namespace == namespace && turn.chatbotID == chatbotID ? Self.live(id, turn) : nil
            }
        }
    }

    private static func live(_ conversationID: String, _ turn: Turn) -> LiveTurn? {
        turn.runID.map { LiveTurn(conversationID: conversationID, runID: $0, userText: turn.userText, startedAt: turn.startedAt) }
    }
}
