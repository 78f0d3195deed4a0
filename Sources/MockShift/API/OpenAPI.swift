/// The OpenAPI 3.0.3 description of everything MockShift serves (SPEC §2 "The OpenAPI document"), served at
/// `GET /openapi.json`.
///
/// Built here in Swift, beside the route table, rather than kept as a JSON file: the one place that lists
/// routes (`Routes.swift`) and the one that describes them sit in the same module, and
/// `OpenAPITests.documentListsExactlyTheRoutesOfTheRouter` fails when the two disagree (a route added without
/// its description, or a description left behind). What each operation lists as responses is what its handler
/// can answer: 401 and 413 on every secured route (authentication and the body limit come before routing),
/// 400/404/409/422 where the handler throws them, the documented 500 of a failed synchronous run, and 503 where
/// the engine refuses new runs during shutdown. Any other 5xx is a bug (fuzzing counts it as a failure).
///
/// Faults injected through `POST /_mock/faults` can make any `/v1` route answer any status (100–599) with any
/// body, wait, or drop the connection; that is said once in the document's description instead of listing
/// every code on every route.
enum OpenAPI {
    /// The document, built once.
    static let document: JSON = build()
    /// The document as bytes, encoded once.
    static let encoded: [UInt8] = document.encoded()

    // MARK: Schema building blocks

    static let string: JSON = ["type": "string"]
    static let integer: JSON = ["type": "integer"]
    static let number: JSON = ["type": "number"]
    static let boolean: JSON = ["type": "boolean"]
    static let anyObject: JSON = ["type": "object"]
    static let anyValue: JSON = [:]
    static func nullable(_ schema: JSON) -> JSON {
        var o = schema.objectValue ?? [:]
        o["nullable"] = true
        return .object(o)
    }
    static func described(_ schema: JSON, _ text: String) -> JSON {
        var o = schema.objectValue ?? [:]
        o["description"] = .string(text)
        return .object(o)
    }
    static func enumeration(_ values: [String]) -> JSON { ["type": "string", "enum": .array(values.map(JSON.string))] }
    static func array(_ items: JSON) -> JSON { ["type": "array", "items": items] }
    static func ref(_ name: String) -> JSON { ["$ref": .string("#/components/schemas/\(name)")] }
    static func object(_ properties: [(String, JSON)], required: [String] = [], closed: Bool = false) -> JSON {
        var o: JSONObject = ["type": "object", "properties": .object(JSONObject(properties))]
        if !required.isEmpty { o["required"] = .array(required.map(JSON.string)) }
        if closed { o["additionalProperties"] = false }
        return .object(o)
    }
    /// `{"status":"success", …}`: the success shape of every JSON answer.
    static func success(_ properties: [(String, JSON)] = [], required: [String] = []) -> JSON {
        object([("status", enumeration(["success"]))] + properties, required: ["status"] + required)
    }

    /// A field of a request body: its JSON schema, and its schema in a form body (urlencoded or multipart),
    /// where every value is text (`HandlerContext.bodyObject`): booleans as "true"/"false", objects and lists as
    /// JSON text where the handler parses them (`JSONObject.object`, `.list`). `form == nil`: the field cannot be
    /// given in a form (the handler wants a real JSON object there, e.g. `nodes`).
    struct Field {
        let name: String
        let json: JSON
        let form: JSON?
        init(_ name: String, _ json: JSON, form: JSON?) {
            self.name = name
            self.json = json
            self.form = form
        }
        /// A string field, the same in both encodings; an optional one may be `null` in JSON.
        static func text(_ name: String, _ description: String? = nil, required: Bool = false) -> Field {
            var schema = description.map { described(string, $0) } ?? string
            if required, var o = schema.objectValue { o["minLength"] = 1; schema = .object(o) }
            return Field(name, required ? schema : nullable(schema), form: schema)
        }
        static func flag(_ name: String, _ description: String) -> Field {
            Field(name, nullable(described(boolean, description)),
                  form: described(enumeration(["true", "false", "TRUE", "FALSE", "True", "False"]), description))
        }
        /// An object that a form may carry as JSON text.
        static func jsonObject(_ name: String, _ schema: JSON, _ description: String) -> Field {
            Field(name, nullable(described(schema, description)), form: described(string, "JSON text of an object: " + description))
        }
    }

    /// A request body accepted as JSON and, because every handler reads its body through
    /// `HandlerContext.bodyObject`, as form-urlencoded and multipart too (no body at all counts as `{}`).
    /// `closed`: unknown fields are 400 (fault and script rules); otherwise they are ignored. `files`: multipart
    /// file parts are run inputs, each named by its input node (the SDK) or `inputs.<name>` (the docs).
    static func body(_ fields: [Field], required: [String] = [], closed: Bool = false, files: Bool = false,
                     description: String? = nil) -> JSON {
        let jsonSchema = object(fields.map { ($0.name, $0.json) }, required: required, closed: closed)
        let formFields = fields.compactMap { f in f.form.map { (f.name, $0) } }
        let formRequired = required.filter { r in formFields.contains { $0.0 == r } }
        func formSchema(extra: JSON) -> JSON {
            var o = object(formFields, required: formRequired).objectValue ?? [:]
            o["additionalProperties"] = closed ? false : extra
            return .object(o)
        }
        let form = formSchema(extra: string)
        let multipart = files ? formSchema(extra: ["type": "string", "format": "binary"]) : form
        var b: JSONObject = ["required": false, "content": [
            "application/json": ["schema": jsonSchema],
            "application/x-www-form-urlencoded": ["schema": form],
            "multipart/form-data": ["schema": multipart],
        ]]
        if let description { b["description"] = .string(description) }
        return .object(b)
    }

    static func query(_ name: String, _ schema: JSON, _ description: String) -> JSON {
        ["name": .string(name), "in": "query", "required": false, "schema": schema, "description": .string(description)]
    }
    static func path(_ name: String, _ description: String) -> JSON {
        ["name": .string(name), "in": "path", "required": true, "schema": string, "description": .string(description)]
    }
    static let pipelineID = path("id", "Pipeline id (24 lowercase hex characters; any other text is simply unknown: 404).")

    /// A JSON response with `schema`.
    static func json(_ description: String, _ schema: JSON) -> JSON {
        ["description": .string(description), "content": ["application/json": ["schema": schema]]]
    }
    static func standard(_ name: String) -> JSON { ["$ref": .string("#/components/responses/\(name)")] }

    /// One operation. `secured` operations take the bearer key (and so can answer 401); every operation can
    /// answer 413, since the body limit is checked before routing.
    static func operation(_ tag: String, _ summary: String, _ description: String, parameters: [JSON] = [],
                          body: JSON? = nil, ok: JSON, okStatus: String = "200", errors: [String],
                          secured: Bool = true) -> JSON {
        var responses: JSONObject = [okStatus: ok]
        var codes = errors + ["413"]
        if secured { codes.append("401") }
        for code in codes.sorted() { responses[code] = standard(code) }
        var op: JSONObject = ["tags": [.string(tag)], "summary": .string(summary), "description": .string(description)]
        if !parameters.isEmpty { op["parameters"] = .array(parameters) }
        if let body { op["requestBody"] = body }
        op["responses"] = .object(responses)
        if !secured { op["security"] = [] }
        return .object(op)
    }

    // MARK: The document

    static func build() -> JSON {
        var paths = JSONObject()
        func add(_ method: String, _ path: String, _ operation: JSON) {
            var item = paths[path]?.objectValue ?? [:]
            item[method] = operation
            paths[path] = .object(item)
        }
        for (method, path, op) in pipelineOperations() + runOperations() + chatbotOperations() + agentOperations()
            + sessionOperations() + controlOperations() {
            add(method, path, op)
        }
        return [
            "openapi": "3.0.3",
            "info": [
                "title": "MockShift",
                "version": "1",
                "description": .string(description),
            ],
            "servers": [["url": "/", "description": "this daemon; the VectorShift SDK's base URL is /v1"]],
            "security": [["BearerAuth": []]],
            "tags": [
                ["name": "pipelines", "description": "Pipeline CRUD (API.md §3)"],
                ["name": "runs", "description": "Runs, status, terminate, pause, resume (API.md §4–5, SPEC §3–4)"],
                ["name": "chatbots", "description": "Chatbots, their turns and Stop generating (API-CHAT.md §1, SPEC §9)"],
                ["name": "agents", "description": "Agents and their functional runs (API-CHAT.md §3, SPEC §11); 4xx bodies are {\"error\": …}"],
                ["name": "sessions", "description": "Sessions over WebSocket (API-CHAT.md §2, SPEC §10)"],
                ["name": "controls", "description": "Test controls outside /v1 (SPEC §7)"],
                ["name": "dashboard", "description": "The live dashboard's files (issue 7), public"],
            ],
            "paths": .object(paths),
            "components": ["securitySchemes": securitySchemes(), "schemas": schemas(), "responses": responses()],
        ]
    }

    static let description = """
        A local mock of the VectorShift API (`/v1`, as the official Python SDK 0.1.15 uses it) plus test \
        controls (`/_mock/…`, `/metrics`) and a live dashboard (`/`). Send `Authorization: Bearer KEY`: each key \
        is its own namespace; no header or `Bearer None` means the namespace `default`. When the daemon runs \
        with `--api-key`, only those keys are accepted everywhere but this document and the dashboard's files \
        (401 `{"error": …}` otherwise).

        Errors are JSON: `{"status":"failed","error":…}` (plus `run_id` when a run is concerned), or \
        `{"error":…}` for authentication (401). Every route answers 413 for a body over `--max-body-mb`, and \
        405 for a method it does not serve on a known path (404 for an unknown path), with `Allow`.

        Not listed per path (RFC 9110): every `GET` path also answers `HEAD` (the same status and headers, no \
        body; the live feed is not opened), and every path answers `OPTIONS` with 204 and `Allow` (`OPTIONS *`: \
        every method served), without a key.

        Fault injection: rules added with `POST /_mock/faults` make matching `/v1` requests answer any status \
        (100–599) with any JSON body, wait first, or drop the connection without an answer. Those answers are \
        not listed per route. While the daemon shuts down, waiting requests are answered 503.
        """

    static func securitySchemes() -> JSON {
        ["BearerAuth": ["type": "http", "scheme": "bearer",
                        "description": "Any key unless the daemon runs with --api-key; the key names the namespace."]]
    }

    static func responses() -> JSON {
        let pipelineError = ref("PipelineError")
        return [
            "400": json("Malformed or missing fields (the message names them), or a malformed body.", pipelineError),
            "401": json("Missing or rejected API key (only when the daemon runs with --api-key).", ref("AuthError")),
            "403": json("A valid key that may not do this.", pipelineError),
            "404": json("Unknown id or name (also another key's objects).", pipelineError),
            "409": json("A synchronous run that was terminated before it ended (SPEC §3); carries run_id.", pipelineError),
            "413": json("Request body over the limit (--max-body-mb, default 32 MiB).", pipelineError),
            "422": json("Semantically invalid pipeline: a cycle, or a template naming a missing node.", pipelineError),
            "426": [
                "description": "A WebSocket upgrade for a protocol version other than 13 (RFC 6455 §4.4).",
                "headers": ["Sec-WebSocket-Version": ["description": "The version served.", "schema": enumeration(["13"])]],
                "content": ["application/json": ["schema": pipelineError]],
            ],
            "500": json("A synchronous run whose node failed: `executor task failed: …`, with run_id (SPEC §3).", pipelineError),
            "503": json("The daemon is shutting down (or, for /_mock/ready, still loading fixtures).", pipelineError),
        ]
    }

    static func schemas() -> JSON {
        let runStatusValue = enumeration(["in_progress", "paused", "completed", "failed", "terminated"])
        let timestamp = described(string, "ISO 8601, UTC")
        let node = object([
            ("type", described(string, "node type, e.g. input, llm, output, text")),
            ("id", nullable(described(string, "equals the node's key when given"))),
            ("name", nullable(string)),
            ("inputs", nullable(anyObject)),
            ("outputs", nullable(array(anyValue))),
        ], required: ["type"])
        let pipeline = object([
            ("_id", string), ("id", string), ("name", string), ("mainBranch", string),
            ("nodes", ["type": "object", "additionalProperties": ref("Node")]),
            ("canvas_metadata", anyValue),
            ("inputs", ["type": "object", "additionalProperties": object([("io_type", anyValue), ("description", anyValue), ("default_value", anyValue)])]),
            ("outputs", ["type": "object", "additionalProperties": object([("io_type", anyValue), ("description", anyValue)])]),
            ("createdDate", timestamp), ("modifiedDate", timestamp),
            ("description", string), ("currentVersion", described(string, "the last deployed version")),
            ("shared_with", array(anyObject)),
        ], required: ["_id", "id", "name", "mainBranch", "nodes", "canvas_metadata", "inputs", "outputs", "createdDate", "modifiedDate"])
        let summary = object([("_id", string), ("id", string), ("name", string), ("mainBranch", string),
                              ("createdDate", timestamp), ("modifiedDate", timestamp)],
                             required: ["_id", "id", "name", "mainBranch", "createdDate", "modifiedDate"])
        let runStatus = object([
            ("status", runStatusValue), ("task_id", string), ("run_id", string), ("pipeline_id", string),
            ("result", described(anyObject, "outputs by output-node name; exactly when completed")),
            ("error", described(string, "exactly when failed")),
            ("partial_outputs", described(anyObject, "what a stopped run had generated")),
            ("input_tokens", anyValue), ("output_tokens", anyValue), ("tokens_used", anyValue), ("credits_used", anyValue),
            ("version", string),
            ("created_at", timestamp), ("started_at", nullable(timestamp)), ("ended_at", nullable(timestamp)),
            ("nodes", ["type": "object", "additionalProperties": enumeration(["pending", "running", "completed", "skipped", "failed", "terminated"])]),
        ], required: ["status", "task_id", "run_id", "pipeline_id", "created_at", "started_at", "ended_at", "nodes"])
        return [
            "PipelineError": object([("status", enumeration(["failed"])), ("error", string),
                                     ("run_id", described(string, "the run concerned, when there is one"))],
                                    required: ["status", "error"]),
            "AuthError": object([("error", string)], required: ["error"]),
            "Success": success(),
            "Node": node,
            "Pipeline": pipeline,
            "PipelineSummary": summary,
            "RunStatus": runStatus,
            "Chatbot": object([
                ("_id", string), ("id", string), ("name", string), ("description", string),
                ("pipeline", object([("object_id", string), ("id", string), ("version", string)])),
                ("input", string), ("output", string), ("deployed", boolean),
                ("deployment_options", anyObject), ("access_config", anyObject), ("twilio_config", anyObject),
                ("slack_config", anyObject), ("created_at", timestamp), ("modified_at", timestamp),
            ], required: ["_id", "id", "name", "pipeline", "input", "output", "deployed"]),
            "ChatbotActivity": object([
                ("_id", string), ("id", string), ("name", string), ("description", string),
                ("pipeline", object([("object_id", string), ("id", string), ("version", string)])),
                ("input", string), ("output", string), ("deployed", boolean),
                ("deployment_options", anyObject), ("access_config", anyObject), ("twilio_config", anyObject),
                ("slack_config", anyObject), ("created_at", timestamp), ("modified_at", timestamp),
                ("conversations", integer), ("turns", integer), ("live_turns", integer),
                ("last_activity_at", nullable(timestamp)),
            ], required: ["id", "name", "pipeline", "output", "conversations", "turns", "live_turns", "last_activity_at"]),
            "Conversation": object([
                ("id", string), ("chatbot_id", string), ("created_at", timestamp),
                ("turn_in_progress", nullable(described(string, "the run of the turn going on"))),
                ("live_turn", nullable(object([("run_id", string), ("user_text", string), ("started_at", timestamp)],
                                              required: ["run_id", "user_text", "started_at"]))),
                ("turns", array(object([("index", integer), ("user_text", string), ("answer", string), ("run_id", string),
                                        ("outcome", enumeration(["completed", "stopped", "failed"])), ("error", string),
                                        ("created_at", timestamp), ("ended_at", timestamp)]))),
                ("knowledge_base_id", nullable(described(string, "given by the first upload"))),
                ("files", array(object([("document_id", string), ("name", string), ("mime_type", string), ("size", integer),
                                        ("sha256", string), ("message_index", integer), ("created_at", timestamp)]))),
            ], required: ["id", "chatbot_id", "turns"]),
            "Session": object([
                ("id", string), ("owner_type", enumeration(["chatbot", "agent"])), ("owner_id", string),
                ("status", enumeration(["open", "terminated"])), ("created_at", timestamp),
                ("terminated_at", nullable(timestamp)), ("message_count", described(integer, "messages stored")),
                ("messages", described(array(object([("id", string), ("session_id", string), ("sender", anyObject),
                                                     ("content", anyObject), ("created_at", timestamp)])),
                                       "only in GET /_mock/sessions/{id}: as get_messages answers them")),
                ("turns", described(array(object([
                    ("index", integer), ("message_ids", array(string)), ("user_text", string),
                    ("answer_message_id", nullable(string)), ("answer", nullable(string)),
                    ("outcome", enumeration(["completed", "terminated", "failed", "in_progress", "awaiting_approval"])),
                    ("error", string), ("started_at", nullable(timestamp)), ("ended_at", nullable(timestamp)),
                ], required: ["index", "message_ids", "user_text", "answer_message_id", "answer", "outcome"])),
                "only in GET /_mock/sessions/{id}: each user message with the answer after it")),
            ], required: ["id", "owner_type", "owner_id", "status", "created_at", "terminated_at", "message_count"]),
        ]
    }

    // MARK: Operations

    static let runOptionFields: [Field] = [
        Field.jsonObject("node_input_overrides", ["type": "object", "additionalProperties": anyObject],
                         "{node id or name: {input name: value}} for this run only"),
        Field.flag("stream_all_outputs", "stream every output (SPEC §5)"),
        Field.text("session_id"), Field.text("trace_id", "echoed in the background answer"), Field.text("webhook_url", "absolute http(s) URL, else 400; a background run POSTs its final status there when it ends"),
        Field.flag("send_intermediate_results", "recorded"),
    ]

    static func pipelineOperations() -> [(String, String, JSON)] {
        let nodes = Field("nodes", nullable(["type": "object", "additionalProperties": ref("Node"),
                                             "description": "nodes keyed by node id"]), form: nil)
        let canvas = Field.jsonObject("canvas_metadata", anyObject, "canvas layout, stored as given")
        let created = json("Created.", success([("id", string)], required: ["id"]))
        return [
            ("post", "/v1/pipeline", operation(
                "pipelines", "Create a pipeline (Pipeline.new)", "Stores a new pipeline; `inputs`/`outputs` are recomputed from the nodes.",
                body: body([Field.text("name", "non-empty", required: true), nodes, canvas,
                            Field("inputs", nullable(anyValue), form: string), Field("outputs", nullable(anyValue), form: string),
                            Field.text("folder_id"), Field.text("description")], required: ["name"]),
                ok: created, errors: ["400"])),
            ("get", "/v1/pipeline", operation(
                "pipelines", "Fetch a pipeline (Pipeline.fetch)",
                "By `id` (and `name`, when both are given they must agree) or by `name` (the most recently modified wins); `version` returns a deployed snapshot.",
                parameters: [query("id", string, "pipeline id"), query("name", string, "pipeline name"),
                             query("version", string, "MAJOR.MINOR.PATCH or latest"), query("branch_id", string, "ignored"),
                             query("username", string, "ignored"), query("org_name", string, "ignored")],
                ok: json("The pipeline.", success([("object", ref("Pipeline"))], required: ["object"])), errors: ["400", "404"])),
            ("post", "/v1/update/pipeline/{id}", operation(
                "pipelines", "Save or move a pipeline (save, move_to_folder)",
                "A partial update: absent keys stay. `deploy: true` snapshots a version bumped as `bump` says (SPEC §8).",
                parameters: [pipelineID],
                body: body([nodes, canvas, Field.text("name", "non-empty when given"), Field.text("folder_id"), Field.text("description"),
                            Field.text("branch_id", "ignored"), Field.flag("deploy", "snapshot a version"),
                            Field("bump", nullable(enumeration(["major", "minor", "patch"])), form: enumeration(["major", "minor", "patch"]))]),
                ok: json("Saved; `version` when deployed.", success([("id", string), ("version", string)], required: ["id"])),
                errors: ["400", "404"])),
            ("get", "/v1/pipelines", operation(
                "pipelines", "List pipelines (Pipeline.list)", "`objects` with verbose=true, else `object_ids`.",
                parameters: [query("folder_id", string, "only this folder"), query("include_shared", string, "ignored"),
                             query("verbose", string, "true: objects"), query("offset", integer, ">= 0"),
                             query("limit", integer, ">= 0 (at most 10000 are returned)")],
                ok: json("The caller's pipelines.", success([("objects", array(ref("PipelineSummary"))), ("object_ids", array(string))])),
                errors: ["400"])),
            ("delete", "/v1/pipeline/{id}", operation(
                "pipelines", "Delete a pipeline", "Terminates its live runs, then deletes it.", parameters: [pipelineID],
                ok: json("Deleted.", ref("Success")), errors: ["404"])),
            ("post", "/v1/pipeline/{id}/duplicate", operation(
                "pipelines", "Duplicate a pipeline", "A copy of the working state under a new id.", parameters: [pipelineID],
                body: body([Field.text("name", "default: NAME (copy)"), Field.text("description"), Field.text("folder_id")]),
                ok: created, errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/revert", operation(
                "pipelines", "Revert to a deployed version", "Copies snapshot `version` into the working state.", parameters: [pipelineID],
                body: body([Field.text("version", "MAJOR.MINOR.PATCH or latest", required: true)], required: ["version"]),
                ok: json("Reverted.", ref("Success")), errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/share", operation(
                "pipelines", "Share a pipeline", "Recorded; fetch shows it as `shared_with`.", parameters: [pipelineID],
                body: body([Field("role", enumeration(["viewer", "editor"]), form: enumeration(["viewer", "editor"])),
                            Field.text("user_id"), Field.text("org_id"), Field.text("name")], required: ["role"]),
                ok: json("Recorded.", ref("Success")), errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/unshare", operation(
                "pipelines", "Unshare a pipeline", "Removes the recorded shares of `user_id` or `org_id`.", parameters: [pipelineID],
                body: body([Field.text("user_id"), Field.text("org_id")]),
                ok: json("Removed.", ref("Success")), errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/remove-node", operation(
                "pipelines", "Remove a node", "Removes the node (by `node_id` or `node_name`), its edges and references to it.",
                parameters: [pipelineID], body: body([Field.text("node_id"), Field.text("node_name")]),
                ok: json("Removed.", success([("node_id", string)], required: ["node_id"])), errors: ["400", "404"])),
        ]
    }

    static func runOperations() -> [(String, String, JSON)] {
        let runBody = body([Field.jsonObject("inputs", anyObject, "run inputs keyed by input-node name"),
                            Field.flag("background", "answer task_id at once"), Field.flag("stream", "answer Server-Sent Events"),
                            Field.text("version", "run a deployed snapshot (MAJOR.MINOR.PATCH or latest)")] + runOptionFields,
                           files: true, description: "JSON, or multipart as the SDK sends files (each file part named by its input node, or inputs.NAME).")
        let syncResult = success([("run_id", string), ("outputs", anyObject)], required: ["run_id", "outputs"])
        let background = success([("task_id", string), ("run_id", string), ("trace_id", string)], required: ["task_id", "run_id"])
        let runOK: JSON = [
            "description": "Synchronous: the outputs once the run completed. Background: the task id at once. Stream: Server-Sent Events (start, stream…, result).",
            "content": ["application/json": ["schema": ["anyOf": [syncResult, background]]],
                        "text/event-stream": ["schema": described(string, "event: TYPE / data: {json} frames")]],
        ]
        let runID = body([Field.text("run_id", required: true)], required: ["run_id"])
        let task = path("task", "Run id (task_id).")
        let bulkItem = object([("inputs", nullable(anyObject))] + runOptionFields.map { ($0.name, $0.json) })
        let bulk = body([Field("runs", array(bulkItem), form: described(string, "JSON text of the list")),
                         Field.text("version", "run a deployed snapshot")], required: ["runs"])
        let bulkOK = json("Every run's end, in request order.", success([("run_outputs", array(object(
            [("run_id", string), ("status", enumeration(["completed", "failed", "terminated"])), ("outputs", anyObject), ("error", string)],
            required: ["run_id", "status"])))], required: ["run_outputs"]))
        let bulkOp = operation("runs", "Run a pipeline several times", "Starts every run at once and answers when all have ended.",
                               parameters: [pipelineID], body: bulk, ok: bulkOK, errors: ["400", "404", "422", "503"])
        return [
            ("post", "/v1/pipeline/{id}/run", operation(
                "runs", "Run a pipeline (run, start, stream)",
                "Synchronous by default (answers when the run ends: 409 if it was terminated, 500 `executor task failed: …` if a node failed); `background: true` answers at once; `stream: true` answers Server-Sent Events.",
                parameters: [pipelineID], body: runBody, ok: runOK, errors: ["400", "404", "409", "422", "500", "503"])),
            ("get", "/v1/pipeline/{id}/run/status/{task}", operation(
                "runs", "Run status", "The committed state of the run (SPEC §3).", parameters: [pipelineID, task],
                ok: json("The run.", ref("RunStatus")), errors: ["404"])),
            ("post", "/v1/pipeline/{id}/terminate", operation(
                "runs", "Terminate a run", "The run is terminated before the answer; terminating it again is harmless; a completed or failed run is 400.",
                parameters: [pipelineID], body: runID,
                ok: json("Terminated.", success([("run_id", string), ("run_status", enumeration(["terminated"]))], required: ["run_id", "run_status"])),
                errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/pause", operation(
                "runs", "Pause a run", "Freezes the run's timers; a final run is 400.", parameters: [pipelineID], body: runID,
                ok: json("Paused.", success([("run_id", string), ("run_status", enumeration(["paused"]))], required: ["run_id", "run_status"])),
                errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/resume", operation(
                "runs", "Resume runs", "Each run continues where it stopped; a final run is 400 and nothing is resumed.",
                parameters: [pipelineID],
                body: body([Field("run_ids", nullable(array(string)), form: described(string, "one id, or JSON text of a list")),
                            Field.text("run_id", "a single id, when run_ids is absent")]),
                ok: json("Resumed.", success([("run_ids", array(string)), ("run_statuses", ["type": "object", "additionalProperties": string])],
                                             required: ["run_ids", "run_statuses"])),
                errors: ["400", "404"])),
            ("post", "/v1/pipeline/{id}/bulk-run", bulkOp),
            ("post", "/v1/pipeline/{id}/bulk_run", bulkOp),
        ]
    }

    static func agentOperations() -> [(String, String, JSON)] {
        let agentID = path("id", "Agent id (24 lowercase hex characters; any other text is simply unknown: 404).")
        let io: JSON = ["type": "object", "additionalProperties": object([("name", string), ("io_type", string), ("description", nullable(string))])]
        let fields = [Field.text("name", "non-empty", required: true),
                      Field.jsonObject("llm_client_key", object([("provider", string), ("model_id", string)], required: ["provider", "model_id"]), "the model"),
                      Field.text("agent_type", "functional (default) or conversational"), Field.text("instructions"),
                      Field("tools", nullable(["anyOf": [anyObject, array(anyValue)]]), form: described(string, "JSON text")),
                      Field.jsonObject("inputs", io, "keyed by the ids the SDK mints"), Field.jsonObject("outputs", io, "keyed by the ids the SDK mints"),
                      Field.jsonObject("memory_config", anyObject, "stored as sent")]
        /// The agent routes answer 400 and 404 as `{"error": …}` (API-CHAT §3.4).
        func agentOp(_ summary: String, _ description: String, parameters: [JSON] = [], body: JSON? = nil, ok: JSON,
                     errors: [String]) -> JSON {
            var op = operation("agents", summary, description, parameters: parameters, body: body, ok: ok, errors: errors).objectValue!
            var responses = op["responses"]!.objectValue!
            if errors.contains("400") { responses["400"] = json("Malformed or missing fields.", ref("AuthError")) }
            if errors.contains("404") { responses["404"] = json("Unknown agent (also another key's).", ref("AuthError")) }
            op["responses"] = .object(responses)
            return .object(op)
        }
        return [
            ("post", "/v1/agent", agentOp("Create an agent (Agent.new)", "Kept as sent; Agent.new then fetches it.",
                                          body: body(fields, required: ["name", "llm_client_key"]),
                                          ok: json("Created.", success([("id", string)], required: ["id"])), errors: ["400"])),
            ("get", "/v1/agent", agentOp("Fetch an agent (Agent.fetch)", "By `id` (and `name`: they must agree) or by `name`.",
                                         parameters: [query("id", string, "agent id"), query("name", string, "agent name"),
                                                      query("username", string, "ignored"), query("org_name", string, "ignored")],
                                         ok: json("The agent as saved, plus _id, mainBranch, agent_type, timestamps.", success([("object", anyObject)], required: ["object"])),
                                         errors: ["400", "404"])),
            ("get", "/v1/agents", agentOp("List agents (Agent.list)", "Newest first; `objects` with verbose=true, else `object_ids`.",
                                          parameters: [query("include_shared", string, "ignored"), query("verbose", string, "true: objects"),
                                                       query("offset", integer, ">= 0"), query("limit", integer, ">= 0 (at most 10000 are returned)")],
                                          ok: json("The caller's agents.", success([("objects", array(anyObject)), ("object_ids", array(string))])),
                                          errors: ["400"])),
            ("post", "/v1/update/agent/{id}", agentOp("Save an agent (agent.save)", "Replaces it; deploy=true also snapshots a version (SPEC §8).",
                                                      parameters: [agentID],
                                                      body: body(fields + [Field.flag("deploy", "snapshot a version"), Field.text("bump", "major, minor or patch"),
                                                                           Field.text("branch_id", "ignored"), Field.text("description")], required: ["name", "llm_client_key"]),
                                                      ok: json("Saved.", success([("id", string), ("version", string)], required: ["id"])),
                                                      errors: ["400", "404"])),
            ("delete", "/v1/agent/{id}", agentOp("Delete an agent", "With its versions.", parameters: [agentID],
                                                 ok: json("Deleted.", ref("Success")), errors: ["404"])),
            ("post", "/v1/agent/{id}/run", agentOp(
                "Run a functional agent (Agent.run)",
                "Waits the simulated LLM time; outputs keyed by output id. 500 `Failed to run agent: …` when the run fails.",
                parameters: [agentID],
                body: body([Field.jsonObject("inputs", anyObject, "values by input name"), Field.text("additional_instructions")], files: true),
                ok: json("The outputs.", success([("run_id", string), ("outputs", anyObject)], required: ["run_id", "outputs"])),
                errors: ["400", "404", "500", "503"])),
        ]
    }

    /// An HTML answer.
    static func page(_ description: String) -> JSON {
        ["description": .string(description), "content": ["text/html": ["schema": string]]]
    }

    static func chatbotOperations() -> [(String, String, JSON)] {
        let chatbotID = path("id", "Chatbot id (24 lowercase hex characters; any other text is simply unknown: 404).")
        let configs = ChatbotHandlers.configKeys.map { Field.jsonObject($0, anyObject, "stored as sent") }
        let link = object([("id", string), ("object_id", string),
                           ("version", ["anyOf": [string, object([("major", integer), ("minor", integer), ("patch", integer)])]])])
        let turnAnswer = success([("conversation_id", string), ("output_message", string), ("follow_up_questions", array(anyValue)),
                                  ("run_id", string), ("pipeline_run_id", string)],
                                 required: ["conversation_id", "output_message", "run_id"])
        let runOK: JSON = [
            "description": "The answer once the turn's run completed, or with stream=true Server-Sent Events (start, stream…, result).",
            "content": ["application/json": ["schema": turnAnswer],
                        "text/event-stream": ["schema": described(string, "event: TYPE / data: {json} frames")]],
        ]
        let runBody = body([Field.text("text", "the user's message"), Field.text("audio", "base64 audio, fed as `audio transcript (N bytes)`"),
                            Field.text("conversation_id", "absent or empty: a new conversation"),
                            Field.flag("stream", "answer Server-Sent Events")])
        let stop = body([Field.text("pipeline_run_id", "the turn's run id"), Field.text("run_id", "the same, if pipeline_run_id is absent")])
        // Written out rather than built by `body(…)`: only the parts named `files` are files, and in JSON they are a
        // list of base64 objects (the docs' shape), not form fields.
        let jsonFile = object([("type", enumeration(["file"])), ("raw_bytes", described(string, "the bytes, base64")),
                               ("name", string), ("mime_type", string),
                               ("metadata", object([("name", string), ("mime_type", string)]))], required: ["raw_bytes"])
        let messageIndex = described(["anyOf": [integer, string]], "a whole number >= 0; default 0")
        let formUpload = object([("files", described(array(["type": "string", "format": "binary"]), "one part per file")),
                                 ("conversation_id", string), ("message_index", string)])
        let uploadBody: JSON = ["required": false, "content": [
            "application/json": ["schema": object([("files", array(jsonFile)), ("conversation_id", nullable(string)),
                                                   ("message_index", nullable(messageIndex))])],
            "multipart/form-data": ["schema": formUpload],
            "application/x-www-form-urlencoded": ["schema": formUpload],
        ]]
        let uploaded = object([("name", string), ("mime_type", string), ("size", integer), ("document_id", string)],
                              required: ["name", "mime_type", "document_id"])
        return [
            ("post", "/v1/chatbot", operation(
                "chatbots", "Create a chatbot (Chatbot.new)",
                "Links a pipeline and names its input and output nodes (an empty name is resolved when the pipeline has exactly one such node).",
                body: body([Field.text("name", "non-empty", required: true), Field.text("description"),
                            Field("pipeline", nullable(link), form: described(string, "JSON text of the object, or the pipeline id")),
                            Field.text("input", "input node name"), Field.text("output", "output node name"),
                            Field.flag("deployed", "stored as sent")] + configs, required: ["name"]),
                ok: json("Created.", success([("id", string)], required: ["id"])), errors: ["400", "404"])),
            ("get", "/v1/chatbot", operation(
                "chatbots", "Fetch a chatbot (Chatbot.fetch)", "By `id` (and `name`: they must agree) or by `name`.",
                parameters: [query("id", string, "chatbot id"), query("name", string, "chatbot name"),
                             query("username", string, "ignored"), query("org_name", string, "ignored")],
                ok: json("The chatbot.", success([("object", ref("Chatbot"))], required: ["object"])), errors: ["400", "404"])),
            ("get", "/v1/chatbots", operation(
                "chatbots", "List chatbots (Chatbot.list)", "Newest first; `objects` with verbose=true, else `object_ids`.",
                parameters: [query("include_shared", string, "ignored"), query("verbose", string, "true: objects"),
                             query("offset", integer, ">= 0"), query("limit", integer, ">= 0 (at most 10000 are returned)")],
                ok: json("The caller's chatbots.", success([("objects", array(ref("Chatbot"))), ("object_ids", array(string))])),
                errors: ["400"])),
            ("delete", "/v1/chatbot/{id}", operation(
                "chatbots", "Delete a chatbot", "With its conversations; its live turns are stopped.", parameters: [chatbotID],
                ok: json("Deleted.", ref("Success")), errors: ["404"])),
            ("post", "/v1/chatbot/{id}/run", operation(
                "chatbots", "Run a chatbot turn (Chatbot.run)",
                "One run of the linked pipeline. 409 when the turn was stopped while the request waited (with the partial `output_message`) or when the conversation has a turn in progress; 500 when the run failed.",
                parameters: [chatbotID], body: runBody, ok: runOK, errors: ["400", "404", "409", "422", "500", "503"])),
            ("post", "/v1/chatbot/{id}/terminate", operation(
                "chatbots", "Stop generating", "Terminates one of the chatbot's turns (SPEC §4 rules: harmless twice, 400 after its end).",
                parameters: [chatbotID], body: stop,
                ok: json("Terminated.", success([("run_id", string), ("pipeline_run_id", string), ("run_status", enumeration(["terminated"]))],
                                                required: ["run_id", "run_status"])),
                errors: ["400", "404"])),
            ("post", "/v1/chatbot/{id}/upload", operation(
                "chatbots", "Upload files to a conversation (Chatbot.upload_files)",
                "Multipart parts named `files` (the SDK), or JSON `files[{type, raw_bytes}]` (the docs). Without `conversation_id` a new conversation is created. The conversation's later turns hand the files to `chat_file_reader` nodes. 400 for no files or invalid base64; 404 for an unknown chatbot or conversation; 413 for one file over 10^9 bytes.",
                parameters: [chatbotID], body: uploadBody,
                ok: json("Stored.", success([("errors", array(string)), ("conversation_id", string), ("knowledge_base_id", string),
                                             ("uploaded_files", array(uploaded))],
                                            required: ["errors", "conversation_id", "knowledge_base_id", "uploaded_files"])),
                errors: ["400", "404"])),
        ]
    }

    /// The WebSocket upgrade, at the SDK's default URL and at `VECTORSHIFT_WS_URL`'s (no `/v1`). What follows
    /// the 101 is not HTTP, so it is described in words only.
    static func sessionOperations() -> [(String, String, JSON)] {
        let upgrade = operation(
            "sessions", "Open a session WebSocket (Session.connect)",
            "RFC 6455 upgrade (version 13; no extensions, no subprotocol): send `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13` and `Sec-WebSocket-Key`. The socket then carries JSON text frames, one object each (API-CHAT.md §2.2–2.3). Any other request is 400; another version is 426.",
            ok: ["description": "Switching Protocols: the connection is a WebSocket from here on (`Sec-WebSocket-Accept`)."],
            okStatus: "101", errors: ["400", "426"])
        return [("get", "/v1/ws/session", upgrade), ("get", "/ws/session", upgrade)]
    }

    static func controlOperations() -> [(String, String, JSON)] {
        let cleared = json("Removed.", success([("removed", integer)], required: ["removed"]))
        let faultFields: [Field] = [
            Field.text("method"), Field.text("path", "glob starting with /: * within a segment, ** across"), Field.text("pipeline_id"),
            Field("status", nullable(["type": "integer", "minimum": 200, "maximum": 599]), form: string),
            Field("body", anyValue, form: string),
            Field("delay_ms", nullable(["type": "number", "minimum": 0, "maximum": 600_000]), form: string),
            Field.flag("drop", "close the connection without an answer"), Field.text("node_id"),
            Field("llm_fail_after_tokens", nullable(["type": "integer", "minimum": 0]), form: string),
            Field("cut_stream_after_events", nullable(["type": "integer", "minimum": 0]), form: string),
            Field.text("message"), Field("times", nullable(["type": "integer", "minimum": 1]), form: string),
            Field("probability", nullable(["type": "number", "minimum": 0, "maximum": 1]), form: string),
        ]
        let scriptFields: [Field] = [
            Field.text("pipeline_id"), Field.text("pipeline_name"), Field.text("node_id"),
            Field.text("node", "the LLM node's id or name; not with node_id"),
            Field.text("prompt_pattern", "a regular expression"),
            Field.text("prompt", "the whole resolved prompt, matched literally; not with prompt_pattern"), Field.text("response"),
            Field("tokens", nullable(described(array(["type": "string", "minLength": 1]), "the answer as streamed; their concatenation is response")),
                  form: described(string, "JSON text of the list")),
            Field("token_offsets_ms", nullable(described(array(["type": "number", "minimum": 0, "maximum": 86_400_000]),
                                                         "one per token, non-decreasing: simulated ms from the node's start to each token; not with ttft_ms or tokens_per_second")),
                  form: described(string, "JSON text of the list")),
            Field("ttft_ms", nullable(["type": "number", "minimum": 0, "maximum": 86_400_000]), form: string),
            Field("tokens_per_second", nullable(["type": "number", "minimum": 0.001, "maximum": 1_000_000]), form: string),
            Field("fail_after_tokens", nullable(["type": "number", "minimum": 0, "maximum": 1_000_000]), form: string),
            Field.text("message"), Field.text("chatbot_id", "only that chatbot's turns"),
            Field.text("agent_id", "only that conversational agent's session turns"),
            Field.text("agent_name", "only that conversational agent's session turns"),
            Field.text("tool", "the tool (name or id) the agent calls; needs agent_id or agent_name"),
        ]
        let limit = query("limit", integer, ">= 0")
        return [
            ("get", "/openapi.json", operation(
                "controls", "This document",
                "Served without authentication, also with --api-key: it describes the daemon and holds no namespace's data.",
                ok: json("OpenAPI 3.0.3.", anyObject), errors: [], secured: false)),
            ("get", "/", operation(
                "dashboard", "The live dashboard",
                "An HTML page (issue 7) embedded in the binary. Served without authentication: it holds no data; it asks for the key and sends it in the Authorization header of every request it makes.",
                ok: page("The page."), errors: [], secured: false)),
            ("get", "/_mock/ui", operation(
                "dashboard", "The live dashboard", "The same page as `/`.", ok: page("The page."), errors: [], secured: false)),
            ("get", "/_mock/ui/{file}", operation(
                "dashboard", "A file of the dashboard", "`index.html`, `app.js`, `chat.js` or `style.css`; 404 for any other name.",
                parameters: [path("file", "File name.")],
                ok: ["description": "The file.",
                     "content": ["text/html": ["schema": string], "text/javascript": ["schema": string], "text/css": ["schema": string]]],
                errors: ["404"], secured: false)),
            ("get", "/favicon.ico", operation(
                "dashboard", "No icon", "204 without a body, so that browsers find no error; without authentication.",
                ok: ["description": "No content."], okStatus: "204", errors: [], secured: false)),
            ("get", "/metrics", operation(
                "controls", "Prometheus metrics", "Request and run counters, request durations, live gauges.",
                ok: ["description": "Prometheus text format 0.0.4.", "content": ["text/plain": ["schema": string]]], errors: [])),
            ("get", "/_mock/health", operation(
                "controls", "Alive", "`live_runs`: the caller's.", ok: json("Alive.", object([("status", enumeration(["ok"])), ("live_runs", integer)], required: ["status", "live_runs"])),
                errors: [])),
            ("get", "/_mock/ready", operation(
                "controls", "Ready", "503 until fixtures are loaded.", ok: json("Ready.", object([("status", enumeration(["ready"]))], required: ["status"])),
                errors: ["503"])),
            ("get", "/_mock/stats", operation(
                "controls", "Statistics",
                "The caller's live runs, their timers, its open streams and feed readers, its stored runs by status; under `daemon`, the figures of the whole daemon (transport, every timer, scheduler lateness).",
                ok: json("Figures.", object([
                    ("status", enumeration(["ok"])), ("live_runs", integer), ("live_timers", integer), ("open_streams", integer),
                    ("feed_subscribers", integer), ("runs_by_status", ["type": "object", "additionalProperties": integer]),
                    ("daemon", object([
                        ("connections", integer), ("parked_requests", integer), ("requests_in_flight", integer),
                        ("open_streams", integer), ("live_timers", integer),
                        ("scheduler_lateness", object([("timers_fired", integer), ("p50_ms", number), ("p99_ms", number), ("max_ms", number)],
                                                      required: ["timers_fired", "p50_ms", "p99_ms", "max_ms"])),
                    ], required: ["connections", "parked_requests", "open_streams", "live_timers", "scheduler_lateness"])),
                ], required: ["status", "live_runs", "live_timers", "open_streams", "feed_subscribers", "runs_by_status", "daemon"])),
                errors: [])),
            ("post", "/_mock/reset", operation(
                "controls", "Reset the caller's namespace",
                "Deletes the namespace's pipelines, runs, journal, faults and scripted answers; with `serve --fixtures` it then holds the fixtures again. `all=true` (or `1`) resets every namespace, for the --admin-key only (403 otherwise); other values but `false`/`0` are 400. The namespaces are listed masked (`…` and the key's last four characters).",
                parameters: [query("all", string, "true or 1: every namespace (admin key only)")],
                ok: json("Reset.", success([("namespaces", array(string)), ("deleted", object([("pipelines", integer), ("runs", integer)]))],
                                           required: ["namespaces", "deleted"])),
                errors: ["400", "403"])),
            ("get", "/_mock/runs", operation(
                "controls", "The caller's runs", "Newest first, as run status JSON plus `mode` (sync, background, stream).",
                parameters: [query("pipeline_id", string, "only this pipeline"), query("status", string, "one run status"), limit],
                ok: json("Runs.", success([("runs", array(ref("RunStatus")))], required: ["runs"])), errors: ["400"])),
            ("get", "/_mock/runs/{id}/events", operation(
                "controls", "A run's timeline", "", parameters: [path("id", "Run id.")],
                ok: json("Events.", success([("run_id", string), ("events", array(anyObject))], required: ["run_id", "events"])),
                errors: ["404"])),
            ("get", "/_mock/events", operation(
                "controls", "The live run feed (Server-Sent Events)",
                "Never ends while the daemon runs (it ends at shutdown). `event: TYPE` + `data: {json}` frames: first `ready`, then the caller's run events as they happen: `created` (with `mode`, `nodes`, and what the run recorded: a chatbot turn's `chatbot_id` and `conversation_id`), `node_started`, `node_completed`, `node_skipped`, `first_token`, `stream` (tokens of streaming outputs: `node`, `outputs`, `text`, `tokens`), `tokens` (count), `paused`, `resumed`, and the final `completed` (with `result`), `failed` (with `error`) or `terminated`; each with `run_id`, `pipeline_id`, `type`, `clock_ms` and `at`. A `: keep-alive` comment after 15 s of silence. Read it with `fetch()` to send the key in the Authorization header (the dashboard does).",
                ok: ["description": "Server-Sent Events, without end.",
                     "content": ["text/event-stream": ["schema": described(string, "event: TYPE / data: {json} frames")]]],
                errors: ["503"])),
            ("get", "/_mock/requests", operation(
                "controls", "The caller's request journal",
                "Oldest first, keys masked: the last /v1 requests (and session upgrades), `kind` `request`, and the text frames of its session sockets, `kind` `ws_frame` (`path` of the socket, `direction` in/out, the frame's `type` and `session_id`, `size` in bytes; no body). The newest `limit` of those matching `kind` and `session_id`.",
                parameters: [limit, query("kind", enumeration(["request", "ws_frame"]), "only entries of this kind"),
                             query("session_id", string, "only frames naming this session")],
                ok: json("Requests.", success([("requests", array(anyObject))], required: ["requests"])), errors: ["400"])),
            ("post", "/_mock/faults", operation(
                "controls", "Add a fault rule",
                "Matching /v1 requests then answer `status` with `body`, wait `delay_ms`, drop the connection, or make LLM nodes fail: any status, not listed per route. Unknown fields are 400.",
                body: body(faultFields, closed: true),
                ok: json("Added.", success([("fault_id", string), ("fault", anyObject)], required: ["fault_id", "fault"])), errors: ["400"])),
            ("get", "/_mock/faults", operation(
                "controls", "List fault rules", "", ok: json("Rules.", success([("faults", array(anyObject))], required: ["faults"])), errors: [])),
            ("delete", "/_mock/faults", operation("controls", "Remove fault rules", "", ok: cleared, errors: [])),
            ("post", "/_mock/llm", operation(
                "controls", "Add a scripted LLM answer", "The newest matching rule wins. Unknown fields are 400.",
                body: body(scriptFields, closed: true),
                ok: json("Added.", success([("script_id", string), ("script", anyObject)], required: ["script_id", "script"])), errors: ["400"])),
            ("get", "/_mock/llm", operation(
                "controls", "List scripted LLM answers", "", ok: json("Rules.", success([("scripts", array(anyObject))], required: ["scripts"])), errors: [])),
            ("delete", "/_mock/llm", operation("controls", "Remove scripted LLM answers", "", ok: cleared, errors: [])),
            ("get", "/_mock/chatbots", operation(
                "controls", "The caller's chatbots with their activity",
                "Newest first, each as `GET /v1/chatbot` returns it plus `conversations`, `turns` (stored), `live_turns` (in progress) and `last_activity_at` (null without conversations). The dashboard's chatbot list.",
                parameters: [limit, query("offset", integer, ">= 0")],
                ok: json("Chatbots.", success([("chatbots", array(ref("ChatbotActivity")))], required: ["chatbots"])),
                errors: ["400"])),
            ("get", "/_mock/conversations", operation(
                "controls", "The caller's chatbot conversations", "Oldest first, each with its turns (user text, answer, run id, outcome: completed, stopped or failed).",
                parameters: [query("chatbot_id", string, "only this chatbot's")],
                ok: json("Conversations.", success([("conversations", array(ref("Conversation")))], required: ["conversations"])),
                errors: ["404"])),
            ("get", "/_mock/conversations/{id}", operation(
                "controls", "One conversation", "", parameters: [path("id", "Conversation id.")],
                ok: json("The conversation.", success([("conversation", ref("Conversation"))], required: ["conversation"])),
                errors: ["404"])),
            ("get", "/_mock/sessions", operation(
                "controls", "The caller's WebSocket sessions",
                "Oldest first: id, owner (chatbot or agent), status, times and the number of stored messages.",
                parameters: [query("owner_id", string, "only this chatbot's or agent's"),
                             query("status", enumeration(["open", "terminated"]), "only sessions in this status")],
                ok: json("Sessions.", success([("sessions", array(ref("Session")))], required: ["sessions"])),
                errors: ["400", "404"])),
            ("get", "/_mock/sessions/{id}", operation(
                "controls", "One session with its messages and turns",
                "The stored messages (as get_messages answers them) and the turns read from them: each user message with the answer after it and how it ended (completed, terminated, failed, in_progress, awaiting_approval).",
                parameters: [path("id", "Session id.")],
                ok: json("The session.", success([("session", ref("Session"))], required: ["session"])),
                errors: ["404"])),
            ("post", "/_mock/sessions/{id}/terminate", operation(
                "controls", "Terminate a session",
                "As the session's own `terminate_session` frame: the session is terminated for good, its turn in progress stops at once (no further frame of it) and is stored with status `Terminated` before this answers; then every socket attached to the session gets Close 1000 `session terminated`. Harmless twice.",
                parameters: [path("id", "Session id.")],
                ok: json("Terminated.", success([("session_id", string), ("session_status", enumeration(["terminated"])),
                                                 ("stopped_turn", boolean), ("closed_sockets", integer)],
                                                required: ["session_id", "session_status", "stopped_turn", "closed_sockets"])),
                errors: ["404"])),
            ("get", "/_mock/clock", operation(
                "controls", "The simulation clock", "",
                ok: json("Clock.", success([("clock", enumeration(["real", "manual"])), ("now_ms", number)], required: ["clock", "now_ms"])),
                errors: [])),
            ("post", "/_mock/clock/advance", operation(
                "controls", "Advance the manual clock", "Only with --clock manual (400 otherwise); answers once everything due has happened.",
                body: body([Field("ms", ["type": "number", "minimum": 0, "maximum": 1e12], form: string)], required: ["ms"]),
                ok: json("Advanced.", success([("now_ms", number)], required: ["now_ms"])), errors: ["400"])),
        ]
    }
}
