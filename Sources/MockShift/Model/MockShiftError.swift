/// The one error type thrown by handlers, the engine and the store's callers (STYLE "Errors"). It names a
/// semantic kind, not an HTTP code: the API layer maps kinds to status codes and renders the body in the
/// VectorShift formats in one place (`API/ErrorRendering.swift`).
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, in terms of the API's contract (SPEC §2).
    public enum Kind: Sendable, Equatable {
        /// Malformed or missing fields (400).
        case badRequest
        /// Missing or rejected API key (401, auth format).
        case unauthorized
        /// A valid key that may not do this (403), e.g. a global reset without the admin key.
        case forbidden
        /// Unknown id or name, or another key's object (404).
        case notFound
        /// Wrong method on a known path (405).
        case methodNotAllowed
        /// A WebSocket upgrade for a protocol version other than 13 (426, with `Sec-WebSocket-Version: 13`;
        /// RFC 6455 §4.4, SPEC §10).
        case upgradeRequired
        /// A synchronous run that was terminated (409).
        case conflict
        /// Body over the limit (413).
        case payloadTooLarge
        /// Semantically invalid pipeline: a cycle, a reference to a missing node (422).
        case unprocessable
        /// A feature a later version will serve (501).
        case notImplemented
        /// A synchronous run that failed, or a bug (500).
        case internalError
        /// The daemon is shutting down, or storage cannot take writes right now (503, with `Retry-After: 1`).
        case unavailable
        /// The upstream a recording daemon forwards to gave no answer, or broke one off (502; `serve --record`).
        case badGateway
    }

    public var kind: Kind
    public var message: String
    /// The run concerned, echoed as `run_id` in the body (sync run answers, SPEC §3).
    public var runID: String?
    /// More keys of the error body after `error` and `run_id` (a chatbot turn's `conversation_id` and partial
    /// `output_message`, SPEC §9).
    public var details: JSONObject = [:]
    /// For `.methodNotAllowed`: the methods the path does answer (sent as the `Allow` header).
    public var allowedMethods: [String] = []
    /// Rendered as `{"error": message}` (the real agent routes' 4xx format, API-CHAT §3.4 "FORMAT 1") instead of
    /// `{"status":"failed","error":…}`.
    public var plainBody = false

    public init(_ kind: Kind, _ message: String, runID: String? = nil) {
        self.kind = kind
        self.message = message
        self.runID = runID
    }

    public var description: String { message }
}
