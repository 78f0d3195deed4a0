import HTTPTypes

/// The whole served API, one line a route (API.md §0, SPEC §2). Read top to bottom to see what MockShift
/// answers (every `GET` route also answers `HEAD`, and every path `OPTIONS`: see `Router.match`); handlers live in `PipelineHandlers.swift`, `RunHandlers.swift`,
/// `ChatbotHandlers.swift`, `ChatFileHandlers.swift`, `AgentHandlers.swift`, `SessionHandlers.swift`, `SessionControls.swift`, `MockHandlers.swift`
/// and `DashboardHandlers.swift`.
extension Router {
    static func vectorShiftRoutes() -> Router {
        var r = Router()
        // Pipelines (API.md §3)
        r.add(.post, "/v1/pipeline", PipelineHandlers.create)
        r.add(.get, "/v1/pipeline", PipelineHandlers.fetch)
        r.add(.post, "/v1/update/pipeline/:id", PipelineHandlers.update)
        r.add(.get, "/v1/pipelines", PipelineHandlers.list)
        r.add(.delete, "/v1/pipeline/:id", PipelineHandlers.delete)
        r.add(.post, "/v1/pipeline/:id/duplicate", PipelineHandlers.duplicate)
        r.add(.post, "/v1/pipeline/:id/revert", PipelineHandlers.revert)
        r.add(.post, "/v1/pipeline/:id/share", PipelineHandlers.share)
        r.add(.post, "/v1/pipeline/:id/unshare", PipelineHandlers.unshare)
        r.add(.post, "/v1/pipeline/:id/remove-node", PipelineHandlers.removeNode)
        // Runs (API.md §4–5, SPEC §3–4)
        r.add(.post, "/v1/pipeline/:id/run", RunHandlers.run)
        r.add(.get, "/v1/pipeline/:id/run/status/:task", RunHandlers.status)
        r.add(.post, "/v1/pipeline/:id/terminate", RunHandlers.terminate)
        r.add(.post, "/v1/pipeline/:id/pause", RunHandlers.pause)
        r.add(.post, "/v1/pipeline/:id/resume", RunHandlers.resume)
        r.add(.post, "/v1/pipeline/:id/bulk-run", RunHandlers.bulkRun)  // the SDK's spelling
        r.add(.post, "/v1/pipeline/:id/bulk_run", RunHandlers.bulkRun)  // the docs' spelling
        // Chatbots (API-CHAT.md §1, SPEC §9; ChatbotHandlers.swift)
        r.add(.post, "/v1/chatbot", ChatbotHandlers.create)
        r.add(.get, "/v1/chatbot", ChatbotHandlers.fetch)
        r.add(.get, "/v1/chatbots", ChatbotHandlers.list)
        r.add(.delete, "/v1/chatbot/:id", ChatbotHandlers.delete)
        r.add(.post, "/v1/chatbot/:id/run", ChatbotHandlers.run)
        r.add(.post, "/v1/chatbot/:id/terminate", ChatbotHandlers.terminate)
        r.add(.post, "/v1/chatbot/:id/upload", ChatFileHandlers.upload)  // files of a conversation (ChatFileHandlers.swift)
        // Agents (API-CHAT.md §3, SPEC §11; AgentHandlers.swift)
        r.add(.post, "/v1/agent", AgentHandlers.create)
        r.add(.get, "/v1/agent", AgentHandlers.fetch)
        r.add(.get, "/v1/agents", AgentHandlers.list)
        r.add(.post, "/v1/update/agent/:id", AgentHandlers.update)
        r.add(.delete, "/v1/agent/:id", AgentHandlers.delete)
        r.add(.post, "/v1/agent/:id/run", AgentHandlers.run)
        // Sessions over WebSocket (API-CHAT.md §2, SPEC §10; SessionHandlers.swift): the upgrade, at the SDK's
        // default URL and at the one it builds from VECTORSHIFT_WS_URL (no /v1)
        r.add(.get, "/v1/ws/session", SessionHandlers.open)
        r.add(.get, "/ws/session", SessionHandlers.open)
        // This API's own description (OpenAPI.swift), public
        r.add(.get, "/openapi.json", MockHandlers.openAPI)
        // The live dashboard (DashboardHandlers.swift), public: files without data
        r.add(.get, "/", DashboardHandlers.page)
        r.add(.get, "/_mock/ui", DashboardHandlers.page)
        r.add(.get, "/_mock/ui/:file", DashboardHandlers.file)
        r.add(.get, "/favicon.ico", DashboardHandlers.favicon)  // 204: no icon, and no 404 in the browser's console
        // Test controls (SPEC §7)
        r.add(.get, "/metrics", MockHandlers.metrics)
        r.add(.get, "/_mock/health", MockHandlers.health)
        r.add(.get, "/_mock/ready", MockHandlers.ready)
        r.add(.get, "/_mock/stats", MockHandlers.stats)
        r.add(.post, "/_mock/reset", MockHandlers.reset)
        r.add(.get, "/_mock/runs", MockHandlers.runs)
        r.add(.get, "/_mock/runs/:id/events", MockHandlers.runEvents)
        r.add(.get, "/_mock/events", MockHandlers.events)  // the live feed (Server-Sent Events)
        r.add(.get, "/_mock/requests", MockHandlers.requests)
        r.add(.post, "/_mock/faults", MockHandlers.addFault)
        r.add(.get, "/_mock/faults", MockHandlers.listFaults)
        r.add(.delete, "/_mock/faults", MockHandlers.clearFaults)
        r.add(.post, "/_mock/llm", MockHandlers.addLLMScript)
        r.add(.get, "/_mock/llm", MockHandlers.listLLMScripts)
        r.add(.delete, "/_mock/llm", MockHandlers.clearLLMScripts)
        r.add(.get, "/_mock/chatbots", ChatbotHandlers.activity)  // the dashboard's chatbot list, with counts
        r.add(.get, "/_mock/conversations", ChatbotHandlers.conversations)
        r.add(.get, "/_mock/conversations/:id", ChatbotHandlers.conversation)
        r.add(.get, "/_mock/sessions", SessionControls.list)  // WebSocket sessions with their turns (SessionControls.swift)
        r.add(.get, "/_mock/sessions/:id", SessionControls.session)
        r.add(.post, "/_mock/sessions/:id/terminate", SessionControls.terminate)  // the dashboard's Stop (SessionControls.swift)
        r.add(.get, "/_mock/clock", MockHandlers.clock)
        r.add(.post, "/_mock/clock/advance", MockHandlers.advanceClock)
        return r
    }
}
