/// A WebSocket session (SPEC §10, API-CHAT §2): the stateful conversation a `Session` of the SDK creates for a
/// chatbot or an agent, resumable by id from any socket of the same key until it is terminated. Stored per API
/// key, so a restart keeps it.
public struct SessionRecord: Sendable, Equatable {
    /// Who a session talks to: the `object_type` of `create_session` (a lowercase string in the SDK).
    public enum OwnerType: String, Sendable, CaseIterable {
        case chatbot
        case agent
    }

    /// `open` until `terminate_session`; a terminated session is never resumed (SPEC §10).
    public enum Status: String, Sendable {
        case open
        case terminated
    }

    /// 24 lowercase hex characters.
    public var id: String
    public var namespace: String
    public var ownerType: OwnerType
    public var ownerID: String
    public var status: Status
    /// Microseconds since 1970.
    public var createdAt: Int64
    public var terminatedAt: Int64?

    public init(id: String, namespace: String, ownerType: OwnerType, ownerID: String, status: Status = .open,
                createdAt: Int64, terminatedAt: Int64? = nil) {
        self.id = id
        self.namespace = namespace
        self.ownerType = ownerType
        self.ownerID = ownerID
        self.status = status
        self.createdAt = createdAt
        self.terminatedAt = terminatedAt
    }
}

/// One stored message of a session, in the shape `get_messages` answers and the SDK's `SessionMessage.from_dict`
/// reads (API-CHAT §2.8): `sender` is `{"user_id":…}` for the user or `{"object_id":…,"object_type":…}` for the
/// chatbot or agent; `content` holds `type` (e.g. `data_type_message`), `value` and `status` (`Complete`,
/// `Streaming`, `Terminated`, …).
public struct SessionMessageRecord: Sendable, Equatable {
    public var id: String
    public var sessionID: String
    public var sender: JSONObject
    public var content: JSONObject
    /// Microseconds since 1970.
    public var createdAt: Int64

    public init(id: String, sessionID: String, sender: JSONObject, content: JSONObject, createdAt: Int64) {
        self.id = id
        self.sessionID = sessionID
        self.sender = sender
        self.content = content
        self.createdAt = createdAt
    }

    /// `{"id","session_id","sender","content","created_at"}`, as a `get_messages` answer lists it.
    public var json: JSON {
        ["id": .string(id), "session_id": .string(sessionID), "sender": .object(sender), "content": .object(content),
         "created_at": .string(iso8601(micros: createdAt))]
    }
}
