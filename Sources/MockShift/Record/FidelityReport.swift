import Foundation
import HTTPTypes
import Synchronization

/// The fidelity report of a recording (issue 15 item 4): for each exchange with the real service, what the real
/// service answered against what MockShift would have answered, compared by shape (``ShapeDiff``) and counted
/// per endpoint. Thread-safe: the proxy's request threads record into one report; ``write(directory:)`` may run
/// at any time (it writes what was recorded so far) and again later.
///
/// ## Files
///
/// `fidelity-report.json`, keys always in this order, endpoints sorted by their key, differences by path, kind
/// and sides, so the file does not depend on the order exchanges came in (only which one gave each example does):
///
/// ```json
/// {
///   "format": "mockshift-fidelity-report/1",
///   "exchanges": 12,
///   "exchanges_not_compared": 1,
///   "endpoints_compared": 3,
///   "endpoints_differing": 1,
///   "endpoints": [
///     {
///       "endpoint": "GET /v1/pipeline/:id/run/status/:task",
///       "exchanges": 5,
///       "exchanges_differing": 2,
///       "differences": [
///         {"kind": "type", "path": "$.result.answer", "real": "string", "mock": "number", "count": 2,
///          "summary": "$.result.answer: string vs number",
///          "example": {"path": "$.result.answer", "request": "GET /v1/pipeline/6652…/run/status/8a1f…"}}
///       ],
///       "differences_not_listed": 0,
///       "not_compared": 1,
///       "not_compared_reasons": [{"reason": "the run was in another state on each side", "count": 1}]
///     }
///   ]
/// }
/// ```
///
/// - `endpoint`: method and route template as in `Routes.swift` (``endpoint(method:path:)``); a path no route takes
///   is kept as it came.
/// - `exchanges`: exchanges compared; `exchanges_differing`: those with at least one difference.
/// - A difference: `kind` (`status`, `missing`: the real answer has the key, the mock's lacks it; `extra`: the
///   reverse; `type`: both have a value there, of different JSON types), `path` (`$` the body, `.key` or
///   `["key"]` a member, `[*]` any array element; `status` for a status code), `real` and `mock` (a JSON type
///   name, `absent`, `none` for no JSON body, or the status code), `count` (exchanges that showed it), `summary`
///   (one line), and one `example`: the `path` with the element indexes where it was first seen and, when the
///   recorder gave it, the `request` (method and path, no query) of that exchange.
/// - At most ``distinctLimit`` distinct differences are listed per endpoint; the exchanges' further ones are
///   counted in `differences_not_listed`.
/// - `not_compared`: exchanges that could not be compared (no mock answer could be made: the request names an
///   object the mock never saw, the upstream gave no answer, …), with their `not_compared_reasons` (each reason
///   once, with a count, sorted); they are not in `exchanges` and are no differences. An endpoint whose exchanges
///   were all left uncompared is listed with `exchanges` 0; `endpoints_compared` counts those with at least one.
/// - Values from the bodies are never written (they may hold secrets): only where the shapes differ.
///
/// `fidelity-report.md`: the same as a short Markdown summary: totals, a table of differences per endpoint that
/// has some, then one line naming the endpoints whose answers had the same shape.
public final class FidelityReport: Sendable {
    /// The format name written in the JSON file; bumped when the file's meaning changes.
    public static let format = "mockshift-fidelity-report/1"
    /// The file names ``write(directory:)`` writes.
    public static let jsonFileName = "fidelity-report.json", markdownFileName = "fidelity-report.md"
    /// Most distinct differences kept per endpoint (an answer keyed by ids could otherwise grow without bound).
    public static let distinctLimit = 500

    private struct Seen {
        var difference: ShapeDifference
        var count: Int
        var request: String?
    }

    private struct Endpoint {
        var exchanges = 0
        var differing = 0
        var differences: [String: Seen] = [:]
        var notListed = 0
        var notCompared: [String: Int] = [:]
    }

    private let endpoints = Mutex<[String: Endpoint]>([:])

    public init() {}

    /// The routes that name endpoints (the one route table, `Routes.swift`).
    static let routes = Router.vectorShiftRoutes()

    /// The endpoint an exchange belongs to: `METHOD /route/:template` from the route table
    /// (`GET /v1/pipeline/:id/run/status/:task`), or `METHOD path` for a path no route takes. `path` without query.
    public static func endpoint(method: String, path: String) -> String {
        let pattern = routes.pattern(HTTPRequest.Method(method) ?? .get, path)
        return "\(method) \(pattern ?? path)"
    }

    /// Compares one exchange (``ShapeDiff/compare(realStatus:realBody:mockStatus:mockBody:)``) and counts it under
    /// `endpoint`; returns what differed. `request` (method and path, no query: queries may hold keys) is kept as the
    /// example of a difference seen for the first time.
    @discardableResult
    public func record(endpoint: String, realStatus: Int, realBody: JSON?, mockStatus: Int, mockBody: JSON?,
                       request: String? = nil) -> [ShapeDifference] {
        let differences = ShapeDiff.compare(realStatus: realStatus, realBody: realBody, mockStatus: mockStatus, mockBody: mockBody)
        record(endpoint: endpoint, differences: differences, request: request)
        return differences
    }

    /// Counts one exchange of `endpoint` whose comparison found `differences` (each distinct one once).
    public func record(endpoint: String, differences: [ShapeDifference], request: String? = nil) {
        endpoints.withLock { all in
            var entry = all[endpoint] ?? Endpoint()
            entry.exchanges += 1
            if !differences.isEmpty { entry.differing += 1 }
            for difference in differences {
                if entry.differences[difference.key] != nil {
                    entry.differences[difference.key]!.count += 1
                } else if entry.differences.count < Self.distinctLimit {
                    entry.differences[difference.key] = Seen(difference: difference, count: 1, request: request)
                } else {
                    entry.notListed += 1
                }
            }
            all[endpoint] = entry
        }
    }

    /// Counts one exchange of `endpoint` that could not be compared, for `reason` (a fixed sentence: never a value
    /// from the exchange).
    public func notCompared(endpoint: String, reason: String) {
        endpoints.withLock { all in all[endpoint, default: Endpoint()].notCompared[reason, default: 0] += 1 }
    }

    /// Exchanges left uncompared so far, all endpoints together.
    public var exchangesNotCompared: Int {
        endpoints.withLock { $0.values.reduce(0) { $0 + $1.notCompared.values.reduce(0, +) } }
    }

    /// Exchanges recorded so far, all endpoints together.
    public var exchanges: Int { endpoints.withLock { $0.values.reduce(0) { $0 + $1.exchanges } } }

    /// The report as the JSON file holds it (see the type's documentation).
    public func json() -> JSON {
        let all = endpoints.withLock { $0 }
        var list: [JSON] = []
        for name in all.keys.sorted() {
            let entry = all[name]!
            let differences = entry.differences.values.sorted { a, b in
                let (x, y) = (a.difference, b.difference)
                return (x.path, x.kind.rawValue, x.real, x.mock) < (y.path, y.kind.rawValue, y.real, y.mock)
            }
            list.append(.object([
                "endpoint": .string(name),
                "exchanges": .int(Int64(entry.exchanges)),
                "exchanges_differing": .int(Int64(entry.differing)),
                "differences": .array(differences.map { seen in
                    let d = seen.difference
                    var example: JSONObject = ["path": .string(d.examplePath)]
                    if let request = seen.request { example["request"] = .string(request) }
                    return .object([
                        "kind": .string(d.kind.rawValue), "path": .string(d.path), "real": .string(d.real),
                        "mock": .string(d.mock), "count": .int(Int64(seen.count)), "summary": .string(d.summary),
                        "example": .object(example),
                    ])
                }),
                "differences_not_listed": .int(Int64(entry.notListed)),
                "not_compared": .int(Int64(entry.notCompared.values.reduce(0, +))),
                "not_compared_reasons": .array(entry.notCompared.keys.sorted().map { reason in
                    .object(["reason": .string(reason), "count": .int(Int64(entry.notCompared[reason]!))])
                }),
            ]))
        }
        return .object([
            "format": .string(Self.format),
            "exchanges": .int(Int64(all.values.reduce(0) { $0 + $1.exchanges })),
            "exchanges_not_compared": .int(Int64(all.values.reduce(0) { $0 + $1.notCompared.values.reduce(0, +) })),
            "endpoints_compared": .int(Int64(all.values.filter { $0.exchanges > 0 }.count)),
            "endpoints_differing": .int(Int64(all.values.filter { $0.differing > 0 }.count)),
            "endpoints": .array(list),
        ])
    }

    /// The short Markdown summary (see the type's documentation).
    public func markdown() -> String {
        let report = json()
        let endpoints = report["endpoints"]?.arrayValue ?? []
        func int(_ value: JSON?) -> Int64 { value?.intValue ?? 0 }
        var out = "# MockShift fidelity report\n\n"
        out += "\(int(report["exchanges"])) exchange(s) compared on \(int(report["endpoints_compared"])) endpoint(s); "
        out += "\(int(report["endpoints_differing"])) endpoint(s) answered with another shape than the real service.\n"
        var same: [String] = []
        var uncompared: [String] = []
        for endpoint in endpoints {
            let name = endpoint["endpoint"]?.stringValue ?? ""
            let differences = endpoint["differences"]?.arrayValue ?? []
            for reason in endpoint["not_compared_reasons"]?.arrayValue ?? [] {
                uncompared.append("- `\(name)`: \(reason["reason"]?.stringValue ?? "") (\(int(reason["count"])))")
            }
            if int(endpoint["exchanges"]) == 0 { continue }
            guard int(endpoint["exchanges_differing"]) > 0 else {
                same.append("`\(name)` (\(int(endpoint["exchanges"])))")
                continue
            }
            out += "\n## `\(name)`\n\n"
            out += "\(int(endpoint["exchanges"])) exchange(s), \(int(endpoint["exchanges_differing"])) with differences.\n\n"
            out += "| difference | exchanges | example |\n|---|---|---|\n"
            for d in differences {
                let example = d["example"]
                var place = "`\(cell(example?["path"]?.stringValue ?? ""))`"
                if let request = example?["request"]?.stringValue { place += " in `\(cell(request))`" }
                out += "| \(cell(d["summary"]?.stringValue ?? "")) | \(int(d["count"])) | \(place) |\n"
            }
            let notListed = int(endpoint["differences_not_listed"])
            if notListed > 0 { out += "\n\(notListed) further difference(s) not listed.\n" }
        }
        if !same.isEmpty { out += "\nSame shape as the real service: " + same.joined(separator: ", ") + ".\n" }
        if !uncompared.isEmpty {
            out += "\nNot compared (no mock answer could be made; not counted as differences):\n\n"
            out += uncompared.joined(separator: "\n") + "\n"
        }
        return out
    }

    /// Writes ``jsonFileName`` (indented two spaces, a newline at the end) and ``markdownFileName`` into
    /// `directory` (created if missing), each replaced at once (written aside, then renamed), so a reader never
    /// sees half a report. Throws Foundation's file errors.
    public func write(directory: String) throws {
        let folder = URL(fileURLWithPath: directory, isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var text = ""
        Self.pretty(json(), indent: "", into: &text)
        try Data((text + "\n").utf8).write(to: folder.appendingPathComponent(Self.jsonFileName), options: .atomic)
        try Data(markdown().utf8).write(to: folder.appendingPathComponent(Self.markdownFileName), options: .atomic)
    }

    /// A Markdown table cell: `|` escaped, line breaks as spaces.
    private func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    /// JSON indented two spaces a level, keys in their stored order; empty objects and lists on one line.
    static func pretty(_ value: JSON, indent: String, into out: inout String) {
        let inner = indent + "  "
        switch value {
        case let .array(items) where !items.isEmpty:
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += inner
                pretty(item, indent: inner, into: &out)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case let .object(object) where !object.isEmpty:
            out += "{\n"
            for (i, entry) in object.entries.enumerated() {
                out += inner + JSON.string(entry.key).encodedString() + ": "
                pretty(entry.value, indent: inner, into: &out)
                out += i == object.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default:
            out += value.encodedString()
        }
    }
}
