import ArgumentParser
import Foundation
import MockShift

/// `mockshift snapshot`: writes an account's pipelines, chatbots and agents as fixture files (issue 15 item 1; the
/// work is ``Snapshotter``). Progress, failures and redactions go to standard error; nothing to standard output.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Write an account's pipelines, chatbots and agents as fixture files for serve --fixtures.",
        discussion: """
            Reads the account through the public API (the calls the SDK makes) and writes one file per object into \
            the output folder: pipeline-NAME.json, chatbot-NAME.json, agent-NAME.json, keys sorted, so that a \
            second snapshot of an unchanged account changes no byte. Secrets in node inputs (api_key, token, \
            password, ..., and values shaped like keys, e.g. sk-...) are replaced by "<redacted:FIELD>" and listed \
            on standard error (object, node, field; never the value).
            Exit status: 0 everything written; 3 some objects could not be read (reported; the others written); \
            1 nothing could be done (upstream unreachable, key refused, folder not writable); 64 bad options.
            """)

    @Option(name: .customLong("from"), help: "The API to read: https://api.vectorshift.ai/v1, or a MockShift (http://127.0.0.1:8000); /v1 is added when missing.")
    var from: String

    @Option(name: .customLong("api-key"), help: "The account's API key. [env: VECTORSHIFT_API_KEY] (the variable keeps the key out of the process list)")
    var apiKey: String?

    @Option(name: .customLong("out"), help: "The folder to write into (created if missing).")
    var out: String

    @Option(name: .customLong("pipeline"), help: "Only this pipeline, by name (repeatable).")
    var pipelines: [String] = []

    @Option(name: .customLong("chatbot"), help: "Only this chatbot, by name, with its pipeline (repeatable).")
    var chatbots: [String] = []

    @Option(name: .customLong("agent"), help: "Only this agent, by name (repeatable).")
    var agents: [String] = []

    @Option(name: .customLong("folder"), help: "Only the pipelines of this folder (by id) and the chatbots that run them.")
    var folder: String?

    @Option(name: .customLong("timeout"), help: "Seconds one request may take.")
    var timeout: Double = 60

    /// Exit status when some objects could not be read (the others were written).
    static let partialExitCode: Int32 = 3

    func validate() throws {
        guard resolvedKey() != nil else {
            throw ValidationError("an API key is needed: --api-key KEY, or VECTORSHIFT_API_KEY in the environment")
        }
        guard timeout.isFinite, timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be 1 to 3600 seconds") }
        guard URLSessionUpstream(base: from, apiKey: "-") != nil else {
            throw ValidationError("--from must be an http:// or https:// URL without a query, e.g. https://api.vectorshift.ai/v1")
        }
        if out.isEmpty { throw ValidationError("--out must name a folder") }
    }

    private func resolvedKey() -> String? {
        if let apiKey, !apiKey.isEmpty { return apiKey }
        let env = ProcessInfo.processInfo.environment["VECTORSHIFT_API_KEY"] ?? ""
        return env.isEmpty ? nil : env
    }

    func run() throws {
        guard let key = resolvedKey(), let upstream = URLSessionUpstream(base: from, apiKey: key, timeout: timeout) else {
            throw ExitCode(64)
        }
        func say(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        var options = Snapshotter.Options()
        options.pipelines = pipelines
        options.chatbots = chatbots
        options.agents = agents
        options.folder = folder
        let outcome: Snapshotter.Outcome
        do {
            outcome = try Snapshotter(upstream: upstream, log: say).run(options, into: out)
        } catch let fatal as Snapshotter.Fatal {
            say("mockshift snapshot: \(upstream.base.absoluteString): \(fatal)")
            throw ExitCode(1)
        }
        say("snapshot: \(outcome.pipelines) pipeline(s), \(outcome.chatbots) chatbot(s), \(outcome.agents) agent(s) into \(out): "
            + "\(outcome.written.count) file(s) written, \(outcome.unchanged.count) unchanged, \(outcome.removed.count) removed; "
            + "\(outcome.redactions.count) secret(s) redacted, \(outcome.failures.count) failure(s)")
        if !outcome.failures.isEmpty { throw ExitCode(Self.partialExitCode) }
    }
}
