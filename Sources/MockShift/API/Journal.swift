import Foundation
import MockShiftHTTP
import Synchronization

/// The request journal behind `GET /_mock/requests` (SPEC §7): the last requests to `/v1`, each with method,
/// path, query, body (cut at 4 KiB), status, duration and the caller's key masked. A bounded ring shared by all
/// namespaces; each caller only sees its own namespace's entries.
final class Journal: Sendable {
    struct Entry: Sendable {
        let namespace: String
        let json: JSONObject
    }

    private let entries = Mutex<[Entry]>([])
    let capacity: Int

    init(capacity: Int = 1000) { self.capacity = capacity }

    func record(namespace: String, _ json: JSONObject) {
        entries.withLock { list in
            if list.count >= capacity { list.removeFirst(list.count - capacity + 1) }
            list.append(Entry(namespace: namespace, json: json))
        }
    }

    /// The namespace's entries, oldest first (at most `limit`, the newest ones).
    func entries(namespace: String, limit: Int) -> [JSONObject] {
        let mine = entries.withLock { $0.filter { $0.namespace == namespace }.map(\.json) }
        return Array(mine.suffix(limit))
    }

    func clear(namespace: String) {
        entries.withLock { $0.removeAll { $0.namespace == namespace } }
    }

    /// `Bearer sk-…abcd`: the scheme and the last four characters only.
    static func mask(_ authorization: String?) -> JSON {
        guard let authorization else { return .null }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return .string("***") }
        let key = parts[1]
        let shown = key.count > 8 ? "…" + key.suffix(4) : "…"
        return .string("\(parts[0]) \(shown)")
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
