import Crypto
import Foundation
import Synchronization

/// Run status values (SPEC §3). `completed`, `failed` and `terminated` are final and never change again.
public enum RunStatus: String, Sendable, Codable {
    case inProgress = "in_progress"
    case paused
    case completed
    case failed
    case terminated

    /// True for `completed`, `failed` and `terminated`.
    public var isFinal: Bool { self == .completed || self == .failed || self == .terminated }
}

/// Per-node state inside a run (SPEC §3 `nodes`).
public enum NodeState: String, Sendable, Codable {
    case pending, running, completed, skipped, failed, terminated
}

/// How a run was requested on `POST /pipeline/{id}/run` (SPEC §3).
public enum RunMode: String, Sendable {
    case sync, background, stream
}

/// A stored pipeline: its working state (`nodes`, `canvas_metadata`) plus bookkeeping.
public struct PipelineRecord: Sendable, Equatable {
    /// 24 lowercase hex characters.
    public var id: String
    /// API-key namespace the pipeline belongs to (SPEC §7).
    public var namespace: String
    public var name: String
    /// Branch id the SDK reads as `mainBranch` (equal to `id`, as on the real service).
    public var mainBranch: String
    public var folderID: String?
    public var description: String?
    /// Nodes keyed by node id, each a node JSON object (API.md §6).
    public var nodes: JSONObject
    public var canvasMetadata: JSON
    /// Microseconds since 1970.
    public var createdAt: Int64
    public var modifiedAt: Int64
    /// The newest deployed version (`1.0.0`, ...), nil before the first deploy.
    public var currentVersion: String?
}

/// What a pipeline listing shows of each pipeline.
public struct PipelineSummary: Sendable, Equatable {
    public var id: String
    public var name: String
    public var mainBranch: String
    public var createdAt: Int64
    public var modifiedAt: Int64
}

/// A stored run: what was asked and how it ended (SPEC §3).
public struct RunRecord: Sendable, Equatable {
    public var id: String
    public var namespace: String
    public var pipelineID: String
    public var mode: RunMode
    /// Deployed version the run executes, or nil for the working state.
    public var version: String?
    public var inputs: JSONObject
    public var status: RunStatus
    /// Outputs keyed by output-node name, exactly when `completed`.
    public var result: JSONObject?
    /// Error text, exactly when `failed`.
    public var error: String?
    /// What had been produced when a run was terminated.
    public var partialOutputs: JSONObject?
    /// Token counts and credits summed over the run's LLM nodes.
    public var usage: JSONObject?
    /// Options recorded with the run (`session_id`, `trace_id`, `webhook_url`, ...).
    public var options: JSONObject?
    /// The run's timeline (`GET /_mock/runs/{id}/events`), stored with its final state.
    public var events: [JSON]? = nil
    /// Microseconds since 1970; nil until it happens.
    public var createdAt: Int64
    public var startedAt: Int64?
    public var endedAt: Int64?
    /// Node id → state.
    public var nodes: [(id: String, state: NodeState)]

    public static func == (a: RunRecord, b: RunRecord) -> Bool {
        a.id == b.id && a.status == b.status && a.result == b.result && a.error == b.error
            && a.partialOutputs == b.partialOutputs && a.endedAt == b.endedAt
            && a.nodes.map(\.id) == b.nodes.map(\.id) && a.nodes.map(\.state) == b.nodes.map(\.state)
    }
}

/// A deploy snapshot of a pipeline (SPEC §8).
public struct PipelineVersion: Sendable, Equatable {
    public var pipelineID: String
    public var version: String
    public var nodes: JSONObject
    public var canvasMetadata: JSON
    public var description: String?
    public var createdAt: Int64
}

/// Identifiers and clocks shared by the layers.
public enum IDs {
    /// A new id of 24 lowercase hex characters laid out as the real service's (MongoDB ObjectIds, SPEC §2; the
    /// SDK makes node ids with `bson.ObjectId`): 4 bytes of Unix seconds, 5 random bytes drawn once per process,
    /// a 3-byte counter that starts at a random value. Ids made one after another in a process increase, so a new
    /// run's id lands at the end of SQLite's id index instead of on a random page of it: with random ids each run
    /// committed rewrote its own index pages (measured with scripts/bench-instant-runs).
    public static func make() -> String {
        let seconds = UInt64(UInt32(truncatingIfNeeded: time(nil)))
        let counter = UInt64(IDs.counter.add(1, ordering: .relaxed).newValue & 0xFF_FFFF)
        let a = seconds << 32 | IDs.processRandom >> 8            // 16 hex: seconds, then 4 random bytes
        let b = UInt32(truncatingIfNeeded: (IDs.processRandom & 0xFF) << 24 | counter)  // 8 hex: 1 random byte, counter
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 24) { out in
            for k in 0..<16 { out[k] = digits[Int((a >> (60 - 4 * UInt64(k))) & 15)] }
            for k in 0..<8 { out[16 + k] = digits[Int((b >> (28 - 4 * UInt32(k))) & 15)] }
            return 24
        }
    }

    /// This process's 5 random bytes (the low 40 bits).
    private static let processRandom: UInt64 = UInt64.random(in: 0...0xFF_FFFF_FFFF)
    /// Counts the ids made; starts at random, as ObjectId's counter does.
    private static let counter = Atomic<UInt32>(UInt32.random(in: 0...0xFF_FFFF))

    /// True when `s` looks like one of our ids.
    public static func isValid(_ s: String) -> Bool {
        s.utf8.count == 24 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}

/// Wall-clock time in microseconds since 1970.
public func wallClockMicros() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

/// ISO 8601 UTC with milliseconds, e.g. `2026-11-29T20:50:07.123Z`. Formatted by hand from `gmtime_r`:
/// Foundation's date formatting was the largest cost of a status request (measured with scripts/bench-status).
public func iso8601(micros: Int64) -> String {
    var seconds = time_t(micros / 1_000_000)
    let millis = Int((micros % 1_000_000) / 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    // 24 bytes, written in place: no intermediate arrays (this runs for every timestamp of every status reply).
    return String(unsafeUninitializedCapacity: 24) { buffer in
        var i = 0
        func put(_ value: Int, _ width: Int) {
            var v = value
            for j in stride(from: i + width - 1, through: i, by: -1) { buffer[j] = UInt8(48 + v % 10); v /= 10 }
            i += width
        }
        func sep(_ byte: UInt8) { buffer[i] = byte; i += 1 }
        put(Int(parts.tm_year) + 1900, 4); sep(45)
        put(Int(parts.tm_mon) + 1, 2); sep(45)
        put(Int(parts.tm_mday), 2); sep(84)
        put(Int(parts.tm_hour), 2); sep(58)
        put(Int(parts.tm_min), 2); sep(58)
        put(Int(parts.tm_sec), 2); sep(46)
        put(millis, 3); sep(90)
        return i
    }
}

/// A chatbot (SPEC §9, API-CHAT §1): a named front of one pipeline, whose `input` node receives the user's text
/// and whose `output` node's value is the answer. Stored per API key like pipelines.
public struct ChatbotRecord: Sendable, Equatable {
    /// 24 lowercase hex characters.
    public var id: String
    public var namespace: String
    public var name: String
    public var description: String
    public var pipelineID: String
    /// The pipeline version the chatbot runs: nil (or `latest`) = the latest deployed snapshot, else the working
    /// state when none is deployed; `MAJOR.MINOR.PATCH` = that snapshot.
    public var pipelineVersion: String?
    /// Input and output node names, resolved at creation (SPEC §9).
    public var input: String
    public var output: String
    /// Stored as sent; undeployed chatbots run too (the SDK cannot deploy one).
    public var deployed: Bool
    /// `deployment_options`, `access_config`, `twilio_config`, `slack_config`: stored and returned as sent.
    public var configs: JSONObject
    /// Microseconds since 1970.
    public var createdAt: Int64
    public var modifiedAt: Int64

    public init(id: String, namespace: String, name: String, description: String, pipelineID: String,
                pipelineVersion: String?, input: String, output: String, deployed: Bool, configs: JSONObject,
                createdAt: Int64, modifiedAt: Int64) {
        self.id = id
        self.namespace = namespace
        self.name = name
        self.description = description
        self.pipelineID = pipelineID
        self.pipelineVersion = pipelineVersion
        self.input = input
        self.output = output
        self.deployed = deployed
        self.configs = configs
        self.createdAt = createdAt
        self.modifiedAt = modifiedAt
    }
}

/// How a chatbot turn ended (SPEC §9): its run completed, was stopped (terminated: the answer is the partial
/// text the user saw), or failed.
public enum TurnOutcome: String, Sendable {
    case completed, stopped, failed
}

/// One finished turn of a conversation: the user's text, the answer (partial when stopped), the run that
/// produced it and how it ended.
public struct ChatTurn: Sendable, Equatable {
    public var userText: String
    public var answer: String
    public var runID: String
    public var outcome: TurnOutcome
    /// The run's error, when it failed.
    public var error: String?
    /// Microseconds since 1970.
    public var createdAt: Int64
    public var endedAt: Int64

    public init(userText: String, answer: String, runID: String, outcome: TurnOutcome, error: String? = nil,
                createdAt: Int64, endedAt: Int64) {
        self.userText = userText
        self.answer = answer
        self.runID = runID
        self.outcome = outcome
        self.error = error
        self.createdAt = createdAt
        self.endedAt = endedAt
    }
}

/// A conversation of one chatbot, with its finished turns, oldest first.
public struct ConversationRecord: Sendable, Equatable {
    public var id: String
    public var namespace: String
    public var chatbotID: String
    public var createdAt: Int64
    public var turns: [ChatTurn]
    /// The conversation's "temporary knowledge base" (API-CHAT §1.2), given by its first upload; nil before.
    public var knowledgeBaseID: String? = nil
    /// Files uploaded to the conversation, in upload order, without their bytes (``ConversationFile/bytes`` nil).
    public var files: [ConversationFile] = []
}

/// A file uploaded to a chatbot conversation (`POST /chatbot/{id}/upload`, API-CHAT §1.2; SPEC §9 "Files").
public struct ConversationFile: Sendable, Equatable {
    /// 24 lowercase hex characters, like every id.
    public var documentID: String
    /// The file name as uploaded (the multipart part's `filename`, or JSON `name`).
    public var name: String
    public var mimeType: String
    /// Length of the content in bytes.
    public var size: Int
    /// SHA-256 of the content, lowercase hex: lets a test check the bytes arrived intact without reading them.
    public var sha256: String
    /// `message_index` as sent (the SDK's default is 0).
    public var messageIndex: Int64
    /// Microseconds since 1970.
    public var createdAt: Int64
    /// The content; nil when read as a listing (``Store/conversation(namespace:id:)``).
    public var bytes: [UInt8]?

    public init(documentID: String, name: String, mimeType: String, size: Int, sha256: String, messageIndex: Int64,
                createdAt: Int64, bytes: [UInt8]?) {
        self.documentID = documentID
        self.name = name
        self.mimeType = mimeType
        self.size = size
        self.sha256 = sha256
        self.messageIndex = messageIndex
        self.createdAt = createdAt
        self.bytes = bytes
    }

    /// A new upload of `bytes`: a fresh document id, the size and the SHA-256 computed here.
    public init(name: String, mimeType: String, bytes: [UInt8], messageIndex: Int64, createdAt: Int64) {
        let digest = SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
        self.init(documentID: IDs.make(), name: name, mimeType: mimeType, size: bytes.count, sha256: digest,
                  messageIndex: messageIndex, createdAt: createdAt, bytes: bytes)
    }
}

/// An agent (SPEC §11, API-CHAT §3): what `Agent.new`/`save` sent, kept as the SDK's own document
/// (`llm_client_key`, `agent_type`, `tools`, `instructions`, `inputs`/`outputs` keyed by the ids the SDK minted,
/// `memory_config`, …) so that `GET /agent` gives it back for `Agent.from_json`. Stored per API key.
public struct AgentRecord: Sendable, Equatable {
    /// 24 lowercase hex characters.
    public var id: String
    public var namespace: String
    public var name: String
    /// The saved fields, without `name` and the save-only keys (`deploy`, `bump`, `branch_id`).
    public var document: JSONObject
    /// The last deployed version (`MAJOR.MINOR.PATCH`, SPEC §8), nil before the first deploy.
    public var currentVersion: String?
    /// Microseconds since 1970.
    public var createdAt: Int64
    public var modifiedAt: Int64

    public init(id: String, namespace: String, name: String, document: JSONObject, currentVersion: String?,
                createdAt: Int64, modifiedAt: Int64) {
        self.id = id
        self.namespace = namespace
        self.name = name
        self.document = document
        self.currentVersion = currentVersion
        self.createdAt = createdAt
        self.modifiedAt = modifiedAt
    }

    /// `conversational` or `functional` (the SDK's default, and what any other value means: API-CHAT §3.3).
    public var isConversational: Bool { document["agent_type"]?.stringValue?.lowercased() == "conversational" }
}

/// How much a chatbot has been used, from what is stored (``Store/chatbotActivity(namespace:offset:limit:)``): the
/// dashboard's chatbot list (issue 12 item 7). Turns in progress are not stored yet, so not counted here.
public struct ChatbotActivity: Sendable, Equatable {
    public var chatbot: ChatbotRecord
    /// Its conversations.
    public var conversations: Int
    /// Finished turns over all its conversations.
    public var turns: Int
    /// Microseconds since 1970: the newest conversation start or turn end; nil while it has no conversation.
    public var lastActivity: Int64?
}
