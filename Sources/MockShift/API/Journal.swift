import Foundation
import MockShiftHTTP
import Synchronization

/// The journal behind `GET /_mock/requests` (SPEC §7, issue 13 item 5): the last `capacity` entries (setting
/// `serve --journal-size`, default 1,000), one ring shared by all namespaces; each caller only sees its own.
/// Two kinds of entry:
/// - `request`: a request to `/v1` (and the session upgrade at `/ws/session`) with method, path, query, body (cut
///   at 4 KiB), status, duration and the caller's key masked;
/// - `ws_frame`: a text frame in or out of a session socket (``FrameTap``): the socket's path, direction, the
///   frame's `type` and `session_id`, its size in bytes, and the upgrade's key masked. Never the frame's body: it may be megabytes
///   and holds the user's text.
///
/// Recording is on every `/v1` request's path and every session frame's (hundreds a second on a streaming
/// socket), so an entry keeps the raw pieces and becomes JSON only when someone reads the journal.
final class Journal: Sendable {
    /// One journalled event, as recorded.
    struct Entry: Sendable {
        let namespace: String
        /// Wall clock when the request arrived or the frame passed, microseconds since 1970.
        let atMicros: Int64
        let detail: Detail

        enum Detail: Sendable {
            case request(Request)
            case frame(Frame)
        }

        /// An answered request.
        struct Request: Sendable {
            let method: String
            let path: String
            let query: [(name: String, value: String)]
            /// At most 4 KiB of the body (empty for a form, whose fields are in `form`).
            let body: ArraySlice<UInt8>
            /// `(name, text or "<file NAME>")` per form field, or nil for a non-form body.
            let form: [(String, String)]?
            /// HTTP status, or nil when the connection was dropped by a fault.
            let status: Int?
            let durationNanoseconds: UInt64
            /// The `Authorization` header already masked (``Journal/mask(_:)``): the key itself is never kept.
            let authorization: JSON
        }

        /// A WebSocket text frame of a session socket (its body is not kept).
        struct Frame: Sendable {
            enum Direction: String, Sendable {
                case received = "in"
                case sent = "out"
            }
            let direction: Direction
            /// The frame's `type`, nil when it had none (or was not a JSON object); cut to 64 characters.
            let type: String?
            /// The frame's `session_id`, nil when it had none; cut to 64 characters.
            let sessionID: String?
            /// The frame's payload in bytes (UTF-8).
            let size: Int
            /// The path the socket was opened at (`/v1/ws/session` or `/ws/session`).
            let path: String
            /// The upgrade request's `Authorization`, masked.
            let authorization: JSON
        }

        /// A request entry (what `MockShiftApp` records once a `/v1` request is answered).
        init(namespace: String, atMicros: Int64, method: String, path: String, query: [(name: String, value: String)],
             body: ArraySlice<UInt8>, form: [(String, String)]?, status: Int?, durationNanoseconds: UInt64,
             authorization: JSON) {
            self.namespace = namespace
            self.atMicros = atMicros
            detail = .request(Request(method: method, path: path, query: query, body: body, form: form, status: status,
                                      durationNanoseconds: durationNanoseconds, authorization: authorization))
        }

        init(namespace: String, atMicros: Int64, frame: Frame) {
            self.namespace = namespace
            self.atMicros = atMicros
            detail = .frame(frame)
        }

        /// `request` or `ws_frame`: the entry's `kind`.
        var kind: String {
            switch detail {
            case .request: "request"
            case .frame: "ws_frame"
            }
        }

        var sessionID: String? {
            if case let .frame(frame) = detail { return frame.sessionID }
            return nil
        }

        /// The entry as `GET /_mock/requests` shows it: `kind` first, then `at`, then the kind's fields.
        var json: JSONObject {
            var entry: JSONObject = ["kind": .string(kind), "at": .string(iso8601(micros: atMicros))]
            switch detail {
            case let .request(r):
                var q = JSONObject()
                for item in r.query { q[item.name] = .string(item.value) }
                entry["method"] = .string(r.method)
                entry["path"] = .string(r.path)
                entry["query"] = .object(q)
                if let form = r.form {
                    var fields = JSONObject()
                    for (name, value) in form { fields[name] = .string(value) }
                    entry["body"] = .object(fields)
                } else if !r.body.isEmpty {
                    // Small JSON bodies as JSON; anything else as text, cut at 4 KiB.
                    entry["body"] = (try? JSON.parse(Array(r.body))) ?? .string(String(decoding: r.body, as: UTF8.self))
                }
                if let status = r.status {
                    entry["status"] = .int(Int64(status))
                } else {
                    entry["status"] = .null
                    entry["dropped"] = true
                }
                entry["duration_ms"] = .double(Double(r.durationNanoseconds) / 1_000_000)
                entry["authorization"] = r.authorization
            case let .frame(f):
                entry["path"] = .string(f.path)
                entry["direction"] = .string(f.direction.rawValue)
                entry["type"] = f.type.map(JSON.string) ?? .null
                entry["session_id"] = f.sessionID.map(JSON.string) ?? .null
                entry["size"] = .int(Int64(f.size))
                entry["authorization"] = f.authorization
            }
            return entry
        }
    }

    private struct Ring {
        var slots: [Entry?]
        var next = 0  // where the next entry goes; the oldest entry when the ring is full
    }

    private let ring: Mutex<Ring>
    /// Most entries kept (all namespaces together); the oldest go first.
    let capacity: Int

    /// - Parameter capacity: entries kept; 0 keeps none.
    init(capacity: Int = 1000) {
        self.capacity = max(0, capacity)
        ring = Mutex(Ring(slots: Array(repeating: nil, count: max(0, capacity))))
    }

    func record(_ entry: Entry) {
        guard capacity > 0 else { return }
        ring.withLock { r in
            r.slots[r.next] = entry
            r.next = (r.next + 1) % r.slots.count
        }
    }

    /// The namespace's entries, oldest first (at most `limit`, the newest ones), only those of `kind` (`request`
    /// or `ws_frame`) and of `sessionID` (frames naming that session) when given.
    func entries(namespace: String, limit: Int, kind: String? = nil, sessionID: String? = nil) -> [JSONObject] {
        let mine: [Entry] = ring.withLock { r in
            let ordered = r.slots[r.next...] + r.slots[..<r.next]
            return ordered.compactMap { $0 }.filter { entry in
                entry.namespace == namespace && (kind == nil || entry.kind == kind)
                    && (sessionID == nil || entry.sessionID == sessionID)
            }
        }
        return mine.suffix(limit).map(\.json)
    }

    /// Every namespace with an entry.
    func namespaces() -> Set<String> { ring.withLock { Set($0.slots.compactMap { $0?.namespace }) } }

    func clear(namespace: String) {
        ring.withLock { r in
            for i in r.slots.indices where r.slots[i]?.namespace == namespace { r.slots[i] = nil }
        }
    }

    /// `Bearer …abcd`: the scheme and the last four characters of a key longer than 8; `…` alone for a shorter
    /// one, `***` for a header that is not `scheme key`.
    static func mask(_ authorization: String?) -> JSON {
        guard let authorization else { return .null }
        guard let space = authorization.firstIndex(of: " ") else { return .string("***") }
        let key = authorization[authorization.index(after: space)...]
        let shown = key.utf8.count > 8 ? "…" + key.suffix(4) : "…"
        return .string("\(authorization[..<space]) \(shown)")
    }
}

/// What one session socket writes into the journal (issue 13 item 5): one entry per text frame in or out, made of
/// what the socket has at hand (the frame's object, its size) and what was fixed at the upgrade (the namespace,
/// the masked key). No encoding, no copy of the body: a socket streaming hundreds of deltas a second pays for a
/// few small strings and one lock per frame.
struct FrameTap: Sendable {
    let journal: Journal
    let namespace: String
    /// The upgrade's path.
    let path: String
    /// The upgrade's `Authorization`, masked once (``Journal/mask(_:)``).
    let authorization: JSON

    /// - Parameters:
    ///   - path: where the socket was opened.
    ///   - authorization: the upgrade request's `Authorization` header, as sent (masked here).
    init(journal: Journal, namespace: String, path: String, authorization: String?) {
        self.journal = journal
        self.namespace = namespace
        self.path = path
        self.authorization = Journal.mask(authorization)
    }

    /// A text message from the client, `size` bytes, read as `frame` (nil: not a JSON object).
    func received(_ frame: JSONObject?, size: Int) { record(.received, frame, size: size) }

    /// A frame queued for the client, `size` bytes once encoded.
    func sent(_ frame: JSONObject, size: Int) { record(.sent, frame, size: size) }

    private func record(_ direction: Journal.Entry.Frame.Direction, _ frame: JSONObject?, size: Int) {
        guard journal.capacity > 0 else { return }
        journal.record(Journal.Entry(namespace: namespace, atMicros: wallClockMicros(), frame: Journal.Entry.Frame(
            direction: direction, type: Self.field(frame?["type"]), sessionID: Self.field(frame?["session_id"]),
            size: size, path: path, authorization: authorization)))
    }

    /// A string field of a frame, cut to 64 characters (a client may put megabytes there); nil for anything else.
    static func field(_ value: JSON?) -> String? {
        guard case let .string(text)? = value else { return nil }
        return text.utf8.count <= 64 ? text : String(text.prefix(64)) + "…"
    }
}

/// The writer handlers answer through: forwards to the transport and, for `/v1` requests, writes the journal
/// entry once the answer is known. Without a transport writer (record mode's shadow answers, which no client
/// reads) the answer goes to `onSend` alone.
public struct ReplyWriter: Sendable {
    let writer: ResponseWriter?
    let onSend: (@Sendable (Response) -> Void)?

    /// Sends `response` (the first call counts, as with the transport's writer).
    public func send(_ response: Response) {
        onSend?(response)
        writer?.send(response)
    }
}
