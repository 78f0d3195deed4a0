import HTTPTypes
import Metrics
import MockShiftHTTP

/// Test controls under `/_mock/` (SPEC §7): outside `/v1`, JSON, same authentication; each acts on the
/// caller's namespace only.
enum MockHandlers {
    /// `GET /openapi.json`: the OpenAPI 3.0.3 document of every route (``OpenAPI``). Served without
    /// authentication even with `--api-key` (see `MockShiftApp.isPublic`): it is the same for every caller and
    /// holds no namespace's data, and tools (schemathesis, Swagger UI) load it before they know a key. SPEC §7's
    /// "the --api-key rule applies to /_mock/ too" concerns `/v1` and `/_mock/`; this path is outside both.
    static func openAPI(_ c: HandlerContext) throws -> Reply {
        c.writer.send(Response(status: .ok, headerFields: [.contentType: "application/json"], body: OpenAPI.encoded))
        return .later
    }

    /// `GET /_mock/health`: the daemon is alive; `live_runs` counts the caller's runs only.
    static func health(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "ok", "live_runs": .int(Int64(c.app.engine.liveCount(namespace: c.namespace)))])
    }

    /// `GET /_mock/ready`: 200 once fixtures are loaded, 503 before.
    static func ready(_ c: HandlerContext) throws -> Reply {
        guard c.app.ready else { throw APIError(.unavailable, "not ready: fixtures are still loading") }
        return .json(.ok, ["status": "ready"])
    }

    /// `GET /_mock/stats`: the caller's figures (issue 11 item 14: another key's runs are not counted): live runs,
    /// the timers they wait on, open streams (its runs' and its feeds), readers of its live feed, stored runs by
    /// status, its open session sockets (`session_sockets`) and session turns in progress (`live_session_turns`,
    /// SPEC §10). Under `daemon`, figures of the whole daemon that belong to no namespace: the transport's
    /// (`connections`, `parked_requests`, `requests_in_flight`, `open_streams`), every scheduler timer
    /// (`live_timers`, keep-alives included), `storage` (`ok`, or `unavailable` while writes fail), `pending_commits`
    /// (runs whose change waits to be stored) and `scheduler_lateness` (`timers_fired`, `p50_ms`, `p99_ms`, `max_ms`:
    /// how late the scheduler's timers fired since the daemon started).
    static func stats(_ c: HandlerContext) throws -> Reply {
        let engine = c.app.engine, namespace = c.namespace
        var byStatus = JSONObject()
        for (status, count) in try c.app.store.runCounts(namespace: namespace).sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            byStatus[status.rawValue] = .int(Int64(count))
        }
        var daemon = c.app.currentTransportStats()
        daemon["live_timers"] = .int(Int64(engine.scheduler.pendingCount))
        // Issue 11 item 2: whether writes get through, and runs whose change waits for its commit.
        daemon["storage"] = .string(c.app.store.isWritable ? "ok" : "unavailable")
        daemon["pending_commits"] = .int(Int64(engine.pendingCommits.count))
        let late = engine.scheduler.latenessSnapshot
        daemon["scheduler_lateness"] = ["timers_fired": .int(Int64(late.fired)),
                                        "p50_ms": .double(late.quantileMilliseconds(0.5)),
                                        "p99_ms": .double(late.quantileMilliseconds(0.99)),
                                        "max_ms": .double(Double(late.maxNanoseconds) / 1e6)]
        return .json(.ok, ["status": "ok",
                           "live_runs": .int(Int64(engine.liveCount(namespace: namespace))),
                           "live_timers": .int(Int64(engine.liveTimerCount(namespace: namespace))),
                           "open_streams": .int(Int64(c.app.streams.count(namespace: namespace))),
                           "feed_subscribers": .int(Int64(engine.feedSubscriberCount(namespace: namespace))),
                           "session_sockets": .int(Int64(c.app.sessionHub.openSocketCount(namespace: namespace))),
                           "live_session_turns": .int(Int64(c.app.sessionHub.liveTurns(namespace: namespace).count)),
                           "runs_by_status": .object(byStatus),
                           "daemon": .object(daemon)])
    }

    /// `GET /metrics`: Prometheus text (SPEC §7): request and run counters, request durations, and, read now,
    /// live runs, timers, open streams and connections.
    static func metrics(_ c: HandlerContext) throws -> Reply {
        Gauge(label: "mockshift_live_runs").record(c.app.engine.liveCount)
        Gauge(label: "mockshift_live_timers").record(c.app.engine.scheduler.pendingCount)
        for (k, v) in c.app.currentTransportStats() {
            if let n = v.intValue { Gauge(label: "mockshift_\(k)").record(n) }
        }
        c.writer.send(Response(status: .ok, headerFields: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                               body: c.app.currentMetricsText()))
        return .later
    }

    /// `POST /_mock/reset`: terminates the caller's live runs and deletes its pipelines, runs, journal, faults and
    /// scripted answers; with `serve --fixtures`, the namespace then holds the fixtures again, its starting state
    /// (``FixtureSeeder/reset(_:app:)``, issue 11 item 8). `?all=true` (or `1`) does it for every namespace that
    /// holds anything or was seeded, and only for the admin key (`--admin-key`); any other value of `all` but
    /// `false`/`0` is a 400. Other keys' data is untouched. The answer names the namespaces masked like the
    /// journal's keys (a namespace is an API key).
    static func reset(_ c: HandlerContext) throws -> Reply {
        var namespaces = [c.namespace]
        let all = c.request.queryValue("all")?.lowercased()
        guard all == nil || ["true", "1", "false", "0"].contains(all!) else {
            throw APIError(.badRequest, "all must be true or false")
        }
        if all == "true" || all == "1" {
            guard let admin = c.app.adminKey, c.namespace == admin else {
                throw APIError(.forbidden, "reset?all=true needs the admin key (serve --admin-key)")
            }
            let holders = Set(try c.app.store.namespaces()).union(c.app.journal.namespaces())
                .union(c.app.faults.namespaces()).union(c.app.llmScripts.namespaces()).union([c.namespace])
            namespaces = holders.sorted()
        }
        // A reset stops runs and clears rules in memory before it writes: make sure it can write first, so a
        // 503 really leaves everything as it was (issue 11 item 2).
        try c.app.store.ensureWritable()
        var pipelines = 0, runs = 0
        for namespace in namespaces {
            // Session turns stop first, silenced: an agent's turn waiting for an approval has no run to terminate.
            for turn in c.app.sessionHub.liveTurns(namespace: namespace) { turn.silenceAndStop(timeout: 1) }
            // Not while a chatbot turn of the key is being set up (``ChatTurns/exclusive``).
            let deleted = try c.app.chatTurns.exclusive(namespace) {
                c.app.chatTurns.resetNamespace(namespace)
                return try c.app.fixtureSeeder.reset(namespace, app: c.app)
            }
            pipelines += deleted.pipelines
            runs += deleted.runs
        }
        let shown = namespaces.map { namespace -> JSON in
            namespace == "default" ? "default" : .string(namespace.count > 8 ? "…" + namespace.suffix(4) : "…")
        }
        return .json(.ok, ["status": "success", "namespaces": .array(shown),
                           "deleted": ["pipelines": .int(Int64(pipelines)), "runs": .int(Int64(runs))]])
    }

    /// `GET /_mock/runs[?pipeline_id=…][&status=…][&limit=…]`: the caller's runs, newest first, as run status JSON
    /// with `mode`.
    static func runs(_ c: HandlerContext) throws -> Reply {
        var status: RunStatus?
        if let raw = c.request.queryValue("status"), !raw.isEmpty {
            guard let s = RunStatus(rawValue: raw) else {
                throw APIError(.badRequest, "status must be one of in_progress, paused, completed, failed, terminated")
            }
            status = s
        }
        let limit = try PipelineHandlers.intQuery(c, "limit") ?? 100
        guard limit >= 0 else { throw APIError(.badRequest, "limit must not be negative") }
        let pipeline = c.request.queryValue("pipeline_id").flatMap { $0.isEmpty ? nil : $0 }
        let runs = try c.app.store.runs(namespace: c.namespace, pipelineID: pipeline, status: status, limit: min(limit, 10_000))
        // Each as its status JSON, plus `mode` (sync, background, stream), which the status of /v1 does not show.
        let rendered: [JSON] = runs.map { run in
            var object = RunHandlers.render(run).objectValue ?? [:]
            object["mode"] = .string(run.mode.rawValue)
            return .object(object)
        }
        return .json(.ok, ["status": "success", "runs": .array(rendered)])
    }

    /// `GET /_mock/runs/{id}/events`: the run's timeline: created, node_started, first_token, tokens (with
    /// `count`), node_completed, paused, resumed, and its end (completed, failed, terminated), each with
    /// `clock_ms` (the scheduler's clock: simulated time under `--clock manual`) and `at` (wall clock).
    static func runEvents(_ c: HandlerContext) throws -> Reply {
        let events = try c.app.engine.events(namespace: c.namespace, runID: c.parameter("id"))
        return .json(.ok, ["status": "success", "run_id": .string(c.parameter("id")), "events": .array(events)])
    }

    /// `GET /_mock/events`: the caller's run events as Server-Sent Events, live (issue 7; ``FeedStream``): first
    /// `ready`, then every run's `created`, node events, `first_token`, `stream` (tokens of streaming outputs),
    /// `paused`, `resumed` and final status, each with `run_id`, `pipeline_id`, `type`, `clock_ms` and `at`. Never
    /// ends while the daemon runs; the dashboard reads it with `fetch()` so that the key stays in a header.
    ///
    /// `HEAD` gets the stream's status and headers only, without subscribing: nothing is started for a body that
    /// is never sent.
    static func events(_ c: HandlerContext) throws -> Reply {
        if c.isHead { return .empty(.ok, SSEChannel.headers) }
        let engine = c.app.engine
        let stream = FeedStream(scheduler: c.app.keepAliveScheduler)
        stream.start()  // queued before the subscription, so `ready` is the first event
        let subscription: RunFeedSubscription
        do {
            subscription = try engine.subscribe(namespace: c.namespace, onEvent: { stream.send($0) }, onEnd: { stream.end() })
        } catch {
            stream.end()
            throw error
        }
        stream.body.onClose { engine.unsubscribe(subscription) }
        c.app.streams.track(stream.body, namespace: c.namespace)
        c.writer.send(stream.response())
        return .later
    }

    /// `GET /_mock/requests[?limit=…][&kind=request|ws_frame][&session_id=…]`: the caller's journal, oldest first,
    /// keys masked: its `/v1` requests (and session upgrades) and the text frames of its session sockets
    /// (``Journal``); the newest `limit` of those of `kind` and, for frames, of `session_id`.
    static func requests(_ c: HandlerContext) throws -> Reply {
        let limit = try PipelineHandlers.intQuery(c, "limit") ?? c.app.journal.capacity
        guard limit >= 0 else { throw APIError(.badRequest, "limit must not be negative") }
        let kind = c.request.queryValue("kind").flatMap { $0.isEmpty ? nil : $0 }
        guard kind == nil || kind == "request" || kind == "ws_frame" else {
            throw APIError(.badRequest, "kind must be request or ws_frame")
        }
        let session = c.request.queryValue("session_id").flatMap { $0.isEmpty ? nil : $0 }
        let entries = c.app.journal.entries(namespace: c.namespace, limit: limit, kind: kind, sessionID: session)
        return .json(.ok, ["status": "success", "requests": .array(entries.map(JSON.object))])
    }

    /// `POST /_mock/faults`: adds a fault rule for the caller's `/v1` requests (see `Faults`); answers it with
    /// its `fault_id`.
    static func addFault(_ c: HandlerContext) throws -> Reply {
        let rule = try c.app.faults.add(namespace: c.namespace, try c.bodyObject())
        return .json(.ok, ["status": "success", "fault_id": .string(rule.id), "fault": .object(rule.json)])
    }

    /// `GET /_mock/faults`: the caller's fault rules, with what remains of their `times`.
    static func listFaults(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "success", "faults": .array(c.app.faults.list(namespace: c.namespace).map(JSON.object))])
    }

    /// `DELETE /_mock/faults`: removes the caller's fault rules.
    static func clearFaults(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "success", "removed": .int(Int64(c.app.faults.clear(namespace: c.namespace)))])
    }

    /// `POST /_mock/llm`: adds a scripted LLM answer for the caller's runs: matched on `pipeline_id` or
    /// `pipeline_name`, `node_id` and `prompt_pattern` (a regular expression), it sets `response`, `ttft_ms`,
    /// `tokens_per_second`, or a failure after `fail_after_tokens` with `message`. The newest match wins.
    static func addLLMScript(_ c: HandlerContext) throws -> Reply {
        let rule = try c.app.llmScripts.add(namespace: c.namespace, try c.bodyObject())
        return .json(.ok, ["status": "success", "script_id": .string(rule.id), "script": .object(rule.json)])
    }

    /// `GET /_mock/llm`: the caller's scripted answers, newest first.
    static func listLLMScripts(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "success", "scripts": .array(c.app.llmScripts.list(namespace: c.namespace).map(JSON.object))])
    }

    /// `DELETE /_mock/llm`: removes the caller's scripted answers.
    static func clearLLMScripts(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "success", "removed": .int(Int64(c.app.llmScripts.clear(namespace: c.namespace)))])
    }

    /// `GET /_mock/clock`: which clock drives simulated time, and its time in milliseconds.
    static func clock(_ c: HandlerContext) throws -> Reply {
        let scheduler = c.app.engine.scheduler
        return .json(.ok, ["status": "success", "clock": .string(scheduler.clock == .manual ? "manual" : "real"),
                           "now_ms": .double(Double(scheduler.now) / 1_000_000)])
    }

    /// How far the manual clock may go: 1e13 ms (about 317 years) in nanoseconds.
    static let manualClockLimitNanoseconds: UInt64 = 10_000_000_000_000_000_000

    /// `POST /_mock/clock/advance {"ms": N}` (manual clock only, SPEC §6): moves simulated time by N ms and
    /// answers once everything due by then has happened (tokens emitted, nodes finished, runs committed).
    static func advanceClock(_ c: HandlerContext) throws -> Reply {
        let scheduler = c.app.engine.scheduler
        guard scheduler.clock == .manual else {
            throw APIError(.badRequest, "the clock is real; start the daemon with --clock manual to advance it")
        }
        let body = try c.bodyObject()
        guard let ms = body["ms"]?.doubleValue, ms.isFinite, ms >= 0, ms <= 1e12 else {
            throw APIError(.badRequest, "ms is required: a number of milliseconds from 0 to 1e12")
        }
        // The clock counts nanoseconds in a UInt64: past ~1.8e13 ms it would wrap; stop well before (timers are set
        // up to ~1e12 ms ahead of it).
        let nanoseconds = UInt64(ms * 1_000_000)
        guard scheduler.now <= Self.manualClockLimitNanoseconds - nanoseconds else {
            throw APIError(.badRequest, "ms would move the manual clock past 1e13 ms (it is at \(Double(scheduler.now) / 1_000_000) ms)")
        }
        scheduler.advance(byNanoseconds: nanoseconds)
        return .json(.ok, ["status": "success", "now_ms": .double(Double(scheduler.now) / 1_000_000)])
    }
}
