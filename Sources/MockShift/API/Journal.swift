import Foundation
import MockShiftHTTP
import Synchronization

/// The request journal behind `GET /_mock/requests` (SPEC §7): the last `capacity` requests to `/v1` (setting
/// `serve --journal-size`, default 1,000), each with method, path, query, body (cut at 4 KiB), status, duration
/// and the caller's key masked. One ring shared by all namespaces; each caller only sees its own entries.
///
/// Recording is on every `/v1` request's path, so an entry keeps the raw pieces and becomes JSON only when
/// someone reads the journal.
final class Journal: Sendable {
    /// One answered request, as recorded.
    struct Entry: Sendable {
        let namespace: String
        /// Wall clock when the request arrived, microseconds since 1970.
        let atMicros: Int64
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

        /// The entry as `GET /_mock/requests` shows it.
        var json: JSONObject {
            var q = JSONObject()
            for item in query { q[item.name] = .string(item.value) }
            var entry: JSONObject = ["at": .string(iso8601(micros: atMicros)), "method": .string(method),
                                     "path": .string(path), "query": .object(q)]
            if let form {
                var fields = JSONObject()
                for (name, value) in form { fields[name] = .string(value) }
                entry["body"] = .object(fields)
            } else if !body.isEmpty {
                // Small JSON bodies as JSON; anything else as text, cut at 4 KiB.
                entry["body"] = (try? JSON.parse(Array(body))) ?? .string(String(decoding: body, as: UTF8.self))
            }
            if let status {
                entry["status"] = .int(Int64(status))
            } else {
                entry["status"] = .null
                entry["dropped"] = true
            }
            entry["duration_ms"] = .double(Double(durationNanoseconds) / 1_000_000)
            entry["authorization"] = authorization
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

    /// The namespace's entries, oldest first (at most `limit`, the newest ones).
    func entries(namespace: String, limit: Int) -> [JSONObject] {
        let mine: [Entry] = ring.withLock { r in
            let ordered = r.slots[r.next...] + r.slots[..<r.next]
            return ordered.compactMap { $0 }.filter { $0.namespace == namespace }
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

/// The writer handlers answer through: forwards to the transport and, for `/v1` requests, writes the journal
/// entry once the answer is known.
public struct ReplyWriter: Sendable {
    let writer: ResponseWriter
    let onSend: (@Sendable (Response) -> Void)?

    /// Sends `response` (the first call counts, as with the transport's writer).
    public func send(_ response: Response) {
        onSend?(response)
        writer.send(response)
    }
}
