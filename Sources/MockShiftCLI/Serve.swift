import ArgumentParser
import Foundation
import Logging
import MockShift
import Metrics
import MockShiftHTTP
import Prometheus

/// `mockshift`: the command-line entry point.
struct MockShiftCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mockshift",
        abstract: "A local mock of the VectorShift API for testing \"Stop generating\" offline.",
        subcommands: [Serve.self, SnapshotCommand.self])
}

/// `mockshift serve`: runs the daemon (SPEC §1). Every option can also come from `MOCKSHIFT_<NAME>`
/// (e.g. `MOCKSHIFT_PORT`); the flag wins.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the MockShift daemon.",
        discussion: """
            Prints exactly one line to standard output once it accepts connections:
              mockshift listening on http://HOST:PORT/v1
            Logs go to standard error. SIGINT/SIGTERM stop it cleanly.
            Each option may also be set with an environment variable MOCKSHIFT_<NAME> \
            (MOCKSHIFT_PORT, MOCKSHIFT_DB, MOCKSHIFT_API_KEY as a comma-separated list, ...); the flag wins.
            """)

    @Option(help: "Address to listen on. [default: 127.0.0.1] [env: MOCKSHIFT_HOST]")
    var host: String?

    @Option(help: "TCP port; 0 picks a free one and reports it on the ready line. [default: 8000] [env: MOCKSHIFT_PORT]")
    var port: UInt16?

    @Option(help: "SQLite database file (parent folder created), or :memory: for no persistence. [default: ./data/mockshift.sqlite3] [env: MOCKSHIFT_DB]")
    var db: String?

    @Option(name: .customLong("api-key"), help: "Accept only this API key (repeatable). Without it any key is accepted. [env: MOCKSHIFT_API_KEY, comma-separated]")
    var apiKeys: [String] = []

    @Option(name: .customLong("ttft-ms"), help: "LLM time to first token, in simulated milliseconds. [default: 400] [env: MOCKSHIFT_TTFT_MS]")
    var ttftMs: Double?

    @Option(name: .customLong("tokens-per-second"), help: "LLM tokens per simulated second. [default: 40] [env: MOCKSHIFT_TOKENS_PER_SECOND]")
    var tokensPerSecond: Double?

    @Option(name: .customLong("time-scale"), help: "Multiplies every simulated delay; 0 = instant. [default: 1] [env: MOCKSHIFT_TIME_SCALE]")
    var timeScale: Double?

    @Option(help: "Varies every simulated LLM text. [default: 0] [env: MOCKSHIFT_SEED]")
    var seed: UInt64?

    @Option(name: .customLong("max-body-mb"), help: "Largest request body in MiB; larger ones get 413. [default: 32] [env: MOCKSHIFT_MAX_BODY_MB]")
    var maxBodyMB: Double?

    @Option(name: .customLong("admin-key"), help: "The key that may reset every namespace at once (POST /_mock/reset?all=true). [env: MOCKSHIFT_ADMIN_KEY]")
    var adminKey: String?

    @Option(help: "Fixture files (*.json) in this folder are every key's starting state: loaded into the namespace `default` before reporting ready, into another key's namespace on its first request, and again on reset. [env: MOCKSHIFT_FIXTURES]")
    var fixtures: String?

    @Option(help: "real, or manual: simulated time moves only with POST /_mock/clock/advance. [default: real] [env: MOCKSHIFT_CLOCK]")
    var clock: String?

    @Flag(name: .customLong("strict-nodes"), help: "Fail a run at a node type MockShift has no real semantics for, naming the type (default: deterministic placeholder outputs). [env: MOCKSHIFT_STRICT_NODES=1]")
    var strictNodes = false

    @Flag(name: .customLong("replay-strict"), help: "A pipeline run, chatbot turn or session turn whose LLM prompt no scripted answer matches fails, naming the pipeline, node and prompt, instead of simulating. [env: MOCKSHIFT_REPLAY_STRICT=1]")
    var replayStrict = false

    @Flag(name: .customLong("cancel-on-disconnect"), help: "Terminate a streaming run when its client disconnects (by default it keeps running, as on the real service). [env: MOCKSHIFT_CANCEL_ON_DISCONNECT=1]")
    var cancelOnDisconnect = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. [default: info] [env: MOCKSHIFT_LOG_LEVEL]")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text, or json: one JSON object per line on standard error. [default: text] [env: MOCKSHIFT_LOG_FORMAT]")
    var logFormat: String?

    @Option(name: .customLong("journal-size"), help: "Requests kept by the journal (GET /_mock/requests), all keys together; the oldest go first. [default: 1000] [env: MOCKSHIFT_JOURNAL_SIZE]")
    var journalSize: Int?

    @Option(name: .customLong("keep-runs"), help: "Finished runs kept per API key with their node states and timelines; older ones are deleted. 0 keeps all. [default: 10000] [env: MOCKSHIFT_KEEP_RUNS]")
    var keepRuns: Int?

    @Option(name: .customLong("max-connections"), help: "Most open connections (streams included); more wait in the listen queue. [default: 15000, or the open-file limit - 100] [env: MOCKSHIFT_MAX_CONNECTIONS]")
    var maxConnections: Int?

    @Option(name: .customLong("connection-timeout"), help: "Seconds of silence after which a connection is closed (idle keep-alive, or a slow client mid-request); open streams are exempt. [default: 120] [env: MOCKSHIFT_CONNECTION_TIMEOUT]")
    var connectionTimeout: Int?

    @Option(name: .customLong("max-header-kb"), help: "Memory for one request's line, headers and query in KiB; a larger head gets 414/431. [default: 32] [env: MOCKSHIFT_MAX_HEADER_KB]")
    var maxHeaderKB: Int?

    @Flag(name: .customLong("exit-with-parent"), help: "Shut down cleanly (as on SIGTERM) once the process that started the daemon exits, however it ends; for test harnesses. [env: MOCKSHIFT_EXIT_WITH_PARENT=1]")
    var exitWithParent = false

    @Flag(name: .customLong("exit-on-stdin-close"), help: "Shut down cleanly (as on SIGTERM) once standard input reaches end of file: start it with a pipe that its starter never writes to (closed when the starter dies). Not with </dev/null. [env: MOCKSHIFT_EXIT_ON_STDIN_CLOSE=1]")
    var exitOnStdinClose = false

    @Option(name: .customLong("webhook-host"), help: "Also call webhooks on this host (repeatable; * = any host). Only loopback hosts (localhost, 127.0.0.0/8) are called otherwise. [env: MOCKSHIFT_WEBHOOK_HOST, comma-separated]")
    var webhookHosts: [String] = []

    @Option(name: .customLong("record"), help: "Record mode: forward every /v1 request (WebSocket sessions excepted) to this API, e.g. https://api.vectorshift.ai/v1, with the caller's key, and keep what goes by in --record-dir. [env: MOCKSHIFT_RECORD]")
    var record: String?

    @Option(name: .customLong("record-dir"), help: "Where record mode keeps the objects and scripted answers it saw, as fixture files (serve --fixtures loads them), and the fidelity report (fidelity-report.json, .md). [env: MOCKSHIFT_RECORD_DIR]")
    var recordDir: String?

    /// Exit status when the database file is held by another daemon (issue 11 item 3): EX_TEMPFAIL of
    /// sysexits.h, "try again later". 64 is a usage error, 2 a bad fixture, 1 anything else (port taken, ...).
    static let databaseInUseExitCode: Int32 = 75

    func validate() throws {
        func check(_ value: Double?, _ name: String, _ env: String, _ range: ClosedRange<Double>, _ rule: String) throws {
            guard let value = setting(value, env, Double.init) else {
                if let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_\(env)"], !raw.isEmpty {
                    throw ValidationError("MOCKSHIFT_\(env) must be a number")
                }
                return
            }
            guard value.isFinite, range.contains(value) else { throw ValidationError("--\(name) must be \(rule)") }
        }
        try check(timeScale, "time-scale", "TIME_SCALE", 0...1_000_000, "a number from 0 to 1000000")
        try check(tokensPerSecond, "tokens-per-second", "TOKENS_PER_SECOND", 0.001...1_000_000, "a number from 0.001 to 1000000")
        try check(ttftMs, "ttft-ms", "TTFT_MS", 0...86_400_000, "a number of milliseconds from 0 to 86400000")
        try check(maxBodyMB, "max-body-mb", "MAX_BODY_MB", 0.001...1024, "a number of MiB from 0.001 to 1024")
        if let level = setting(logLevel, "LOG_LEVEL", { $0 }), Logger.Level(rawValue: level) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        for (name, valid) in [("PORT", { UInt16($0) != nil }), ("SEED", { UInt64($0) != nil })] as [(String, (String) -> Bool)] {
            if let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_\(name)"], !raw.isEmpty, !valid(raw) {
                throw ValidationError("MOCKSHIFT_\(name) must be \(name == "PORT" ? "a port number from 0 to 65535" : "a whole number >= 0")")
            }
        }
        func checkInt(_ value: Int?, _ name: String, _ env: String, _ range: ClosedRange<Int>) throws {
            if value == nil, let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_\(env)"], !raw.isEmpty, Int(raw) == nil {
                throw ValidationError("MOCKSHIFT_\(env) must be a whole number")
            }
            if let v = setting(value, env, Int.init), !range.contains(v) {
                throw ValidationError("--\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
        }
        try checkInt(journalSize, "journal-size", "JOURNAL_SIZE", 0...1_000_000)
        try checkInt(keepRuns, "keep-runs", "KEEP_RUNS", 0...100_000_000)
        try checkInt(maxConnections, "max-connections", "MAX_CONNECTIONS", 2...1_000_000)
        try checkInt(connectionTimeout, "connection-timeout", "CONNECTION_TIMEOUT", 1...86_400)
        try checkInt(maxHeaderKB, "max-header-kb", "MAX_HEADER_KB", 4...1024)
        if let f = setting(logFormat, "LOG_FORMAT", { $0 }), !["text", "json"].contains(f) {
            throw ValidationError("--log-format must be text or json")
        }
        if let c = setting(clock, "CLOCK", { $0 }), !["real", "manual"].contains(c) {
            throw ValidationError("--clock must be real or manual")
        }
        for name in ["STRICT_NODES", "REPLAY_STRICT", "CANCEL_ON_DISCONNECT", "EXIT_WITH_PARENT", "EXIT_ON_STDIN_CLOSE"] {
            if let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_\(name)"], !raw.isEmpty,
               !["1", "true", "yes", "0", "false", "no"].contains(raw.lowercased()) {
                throw ValidationError("MOCKSHIFT_\(name) must be 1/true/yes or 0/false/no")
            }
        }
        if apiKeys.isEmpty, let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_API_KEY"],
           !raw.trimmingCharacters(in: .whitespaces).isEmpty,
           raw.split(separator: ",").allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            throw ValidationError("MOCKSHIFT_API_KEY holds no key (a comma-separated list of keys)")
        }
        if apiKeys.contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            throw ValidationError("--api-key must not be empty")
        }
        let upstream = setting(record, "RECORD", { $0 }), folder = setting(recordDir, "RECORD_DIR", { $0 })
        if (upstream == nil) != (folder == nil) { throw ValidationError("--record and --record-dir go together") }
        if let upstream, UpstreamProxy(base: upstream) == nil {
            throw ValidationError("--record must be an http:// or https:// URL without a query, e.g. https://api.vectorshift.ai/v1")
        }
        if let folder {  // a recording that cannot be kept is refused at start, not lost request by request
            let probe = URL(fileURLWithPath: folder).appendingPathComponent(".mockshift-write-check")
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Data().write(to: probe)
                try FileManager.default.removeItem(at: probe)
            } catch {
                throw ValidationError("--record-dir \(folder): cannot write there: \(error.localizedDescription)")
            }
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: setting(logLevel, "LOG_LEVEL", { $0 }) ?? "info") ?? .info
        let jsonLogs = setting(logFormat, "LOG_FORMAT", { $0 }) == "json"
        LoggingSystem.bootstrap { label in
            if jsonLogs { return JSONLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mockshift")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        var engineSettings = EngineSettings()
        engineSettings.ttftMilliseconds = setting(ttftMs, "TTFT_MS", Double.init) ?? 400
        engineSettings.tokensPerSecond = setting(tokensPerSecond, "TOKENS_PER_SECOND", Double.init) ?? 40
        engineSettings.timeScale = setting(timeScale, "TIME_SCALE", Double.init) ?? 1
        engineSettings.seed = setting(seed, "SEED", UInt64.init) ?? 0
        engineSettings.strictNodes = strictNodes
            || ["1", "true", "yes"].contains(ProcessInfo.processInfo.environment["MOCKSHIFT_STRICT_NODES"]?.lowercased() ?? "")
        engineSettings.replayStrict = flagSetting(replayStrict, "REPLAY_STRICT")
        let keys = apiKeys.isEmpty
            ? (ProcessInfo.processInfo.environment["MOCKSHIFT_API_KEY"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            : apiKeys
        let maxBody = Int((setting(maxBodyMB, "MAX_BODY_MB", Double.init) ?? 32) * 1024 * 1024)
        let path = setting(db, "DB", { $0 }) ?? "./data/mockshift.sqlite3"

        // Block the stop signals before any thread starts, so only sigwait() below receives them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        // Watch the starter first: a daemon whose starter died during start-up stops once it is up.
        let watchParent = flagSetting(exitWithParent, "EXIT_WITH_PARENT")
        let watchStdin = flagSetting(exitOnStdinClose, "EXIT_ON_STDIN_CLOSE")
        // A starter that died took the read ends of our stdout and stderr pipes: log lines must not kill us
        // with SIGPIPE before the clean stop.
        if watchParent || watchStdin { signal(SIGPIPE, SIG_IGN) }
        if watchParent { StarterWatch.watchParent(logger: logger) }
        if watchStdin { StarterWatch.watchStandardInput(logger: logger) }

        // Start order (issue 11 item 3): claim the database file, then bind the port, and only then write to the
        // database (migrations, restart recovery, retention, fixtures). A start that fails before that leaves
        // the file, and the daemon that owns it, untouched.
        var databaseLock: DatabaseLock?
        if path != ":memory:" {
            do {
                try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(),
                                                        withIntermediateDirectories: true)
                databaseLock = try DatabaseLock(database: path)
            } catch let failure as DatabaseLock.Failure {
                FileHandle.standardError.write(Data("mockshift: \(failure)\n".utf8))
                if case .held = failure { throw ExitCode(Self.databaseInUseExitCode) }
                throw ExitCode(1)
            } catch {
                FileHandle.standardError.write(Data("mockshift: cannot open database \(path): \(error)\n".utf8))
                throw ExitCode(1)
            }
        }

        var http = HTTPServerConfiguration()
        http.host = setting(host, "HOST", { $0 }) ?? "127.0.0.1"
        http.port = setting(port, "PORT", UInt16.init) ?? 8000
        http.maxBodyBytes = maxBody
        let fileLimit = raiseOpenFileLimit()
        http.connectionLimit = UInt32(setting(maxConnections, "MAX_CONNECTIONS", Int.init) ?? max(64, min(15_000, fileLimit - 100)))
        if Int(http.connectionLimit) > fileLimit - 50 {
            logger.warning("--max-connections \(http.connectionLimit) is above the open-file limit (\(fileLimit)) less a margin: connections beyond it will fail")
        }
        http.connectionTimeoutSeconds = UInt32(setting(connectionTimeout, "CONNECTION_TIMEOUT", Int.init) ?? 120)
        http.connectionMemoryLimit = (setting(maxHeaderKB, "MAX_HEADER_KB", Int.init) ?? 32) * 1024
        http.shutdownResponse = MockShiftApp.render(APIError(.unavailable, "server shutting down"))
        // libmicrohttpd's own messages (client hang-ups, ...) only when debugging, and not with JSON logs: it writes
        // plain lines straight to standard error.
        http.errorLog = level <= .debug && !jsonLogs
        // Requests get 503 "server starting" until the application below is ready to take them.
        let responder = StartingResponder()
        let server = HTTPServer(configuration: http, responder: responder, logger: logger)
        do { try server.start() } catch {
            FileHandle.standardError.write(Data("mockshift: \(error)\n".utf8))
            throw ExitCode(1)
        }

        // From here on the port is ours and so is the file: the first writes.
        let store: Store
        do { store = try Store(path: path) } catch {
            FileHandle.standardError.write(Data("mockshift: cannot open database \(path): \(error)\n".utf8))
            server.stop()
            throw ExitCode(1)
        }
        // A database SQLite just created: claim the file itself too (hard links), as the lock does for one that
        // existed.
        do { try databaseLock?.claimDatabaseFile() } catch {
            FileHandle.standardError.write(Data("mockshift: \(error)\n".utf8))
            server.stop()
            throw ExitCode(Self.databaseInUseExitCode)
        }
        // Timers in ticks of 1 ms, the streams written in a tick resumed together (issue 14 item 2),
        // `MOCKSHIFT_SCHEDULER_TICK_US` changes the tick for benchmarks (0 = fire at each deadline).
        let tickMicros = ProcessInfo.processInfo.environment["MOCKSHIFT_SCHEDULER_TICK_US"].flatMap(UInt64.init) ?? 1_000
        // And on one lane per core (at most 4): `MOCKSHIFT_SCHEDULER_LANES` changes it for benchmarks.
        let lanes = ProcessInfo.processInfo.environment["MOCKSHIFT_SCHEDULER_LANES"].flatMap(Int.init)
            ?? min(ProcessInfo.processInfo.activeProcessorCount, 4)
        let scheduler = Scheduler(clock: setting(clock, "CLOCK", { $0 }) == "manual" ? .manual : .real,
                                  tickNanoseconds: tickMicros * 1_000, lanes: lanes, aroundBatch: { ResumeBatch.run($0) })
        let engine = RunEngine(store: store, scheduler: scheduler, settings: engineSettings, logger: logger)
        let interrupted = try engine.recoverAfterRestart()
        if !interrupted.isEmpty { logger.notice("marked \(interrupted.count) interrupted run(s) as failed") }
        let cancel = flagSetting(cancelOnDisconnect, "CANCEL_ON_DISCONNECT")
        var recorder: RecordingProxy?
        if let upstream = setting(record, "RECORD", { $0 }), let folder = setting(recordDir, "RECORD_DIR", { $0 }) {
            recorder = RecordingProxy(upstream: upstream, directory: folder, logger: logger)
            logger.notice("record mode: /v1 requests go to \(recorder?.proxy.base.absoluteString ?? upstream); recording into \(folder)")
        }
        let app = MockShiftApp(store: store, engine: engine, apiKeys: Set(keys), maxBodyBytes: maxBody,
                               cancelOnDisconnect: cancel, seed: engineSettings.seed,
                               adminKey: setting(adminKey, "ADMIN_KEY", { $0 }),
                               journalSize: setting(journalSize, "JOURNAL_SIZE", Int.init) ?? 1000, recorder: recorder,
                               logger: logger)
        app.recordInterruptedTurns(interrupted)
        app.recordInterruptedSessionTurns()
        engine.keepFinishedRuns(perNamespace: setting(keepRuns, "KEEP_RUNS", Int.init) ?? 10_000)
        app.webhooks.allowHosts(webhookHosts.isEmpty
            ? (ProcessInfo.processInfo.environment["MOCKSHIFT_WEBHOOK_HOST"] ?? "").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            : webhookHosts)
        if !Self.isLoopback(http.host) {
            logger.warning("listening on \(http.host), which is not a loopback address: anyone who can reach this machine can use the API\(keys.isEmpty ? " with any key (set --api-key)" : "")")
        }
        app.exposeMetrics { registry.emitToBuffer() }
        app.reportTransportStats { [server] in
            ["open_streams": .int(Int64(server.openStreams)), "parked_requests": .int(Int64(server.parkedRequests)),
             "requests_in_flight": .int(Int64(server.requestsInFlight)),
             "connections": .int(Int64(server.currentConnections)),
             "open_websockets": .int(Int64(server.openWebSockets)),
             "closing_websockets": .int(Int64(server.closingWebSockets))]
        }
        responder.serve(with: app)

        if let folder = setting(fixtures, "FIXTURES", { $0 }) {
            // Loaded after the socket opens, so /_mock/ready answers 503 meanwhile; the ready line waits for them.
            do {
                let loaded = try Fixtures.load(directory: folder, into: app)
                logger.info("fixtures: \(loaded.files) file(s), \(loaded.pipelines) pipeline(s), \(loaded.chatbots) chatbot(s), \(loaded.agents) agent(s), \(loaded.scripts) scripted answer(s), \(loaded.faults) fault(s)")
            } catch {
                FileHandle.standardError.write(Data("mockshift: \(error)\n".utf8))
                server.stop()
                scheduler.stop()
                throw ExitCode(2)
            }
        }
        app.markReady()
        let shownHost = http.host.contains(":") ? "[\(http.host)]" : http.host
        // The ready line (SPEC §1), written unbuffered so a test reading our stdout sees it at once.
        FileHandle.standardOutput.write(Data("mockshift listening on http://\(shownHost):\(server.port)/v1\n".utf8))
        logger.info("serving \(path) (ttft \(engineSettings.ttftMilliseconds) ms, \(engineSettings.tokensPerSecond) tokens/s, time scale \(engineSettings.timeScale))")

        var received: Int32 = 0
        sigwait(&signals, &received)
        logger.info("signal \(received): shutting down")
        server.stopAccepting()
        recorder?.fidelity.close()  // the fidelity report, before the shutdown interrupts the shadow's runs
        engine.shutdown()
        // Session turns that completed just before: their answers are stored off the timer thread; wait for them.
        app.finishSessionTurnEnds()
        // Webhook calls of the runs just ended (and any still going): a bounded wait, then abandoned (logged).
        app.webhooks.shutdown(waitingAtMost: 1)
        recorder?.drain()  // objects and answers read before the stop are written
        server.stop()
        scheduler.stop()
        store.checkpointForShutdown()
        withExtendedLifetime(databaseLock) {}  // the claim holds until the database is closed
    }

    /// True for addresses only this machine can reach: `localhost`, 127.0.0.0/8, `::1`.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" || h.hasPrefix("127.")
    }

    /// The flag if given, else `MOCKSHIFT_<name>` parsed with `parse`, else nil.
    private func setting<T>(_ flag: T?, _ name: String, _ parse: (String) -> T?) -> T? {
        if let flag { return flag }
        guard let raw = ProcessInfo.processInfo.environment["MOCKSHIFT_\(name)"], !raw.isEmpty else { return nil }
        return parse(raw)
    }

    /// A boolean flag, else `MOCKSHIFT_<name>` as 1/true/yes.
    private func flagSetting(_ flag: Bool, _ name: String) -> Bool {
        flag || ["1", "true", "yes"].contains(ProcessInfo.processInfo.environment["MOCKSHIFT_\(name)"]?.lowercased() ?? "")
    }

    /// Raises the soft open-file limit to the hard one (each connection is a descriptor); returns the new limit.
    private func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(min(limit.rlim_cur, 1_000_000))
    }
}
