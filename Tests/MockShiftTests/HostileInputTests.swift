import Foundation
import HTTPTypes
import Logging
import Testing
@testable import MockShift
@testable import MockShiftHTTP

#if canImport(Glibc)
import Glibc
#endif

/// One answer read off a raw socket.
struct RawAnswer {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A bare HTTP/1.1 client over a POSIX socket: sends exactly the bytes it is given (invalid UTF-8, `%00`, `..`,
/// huge bodies), which URLSession would refuse or normalise. One request per connection (`Connection: close`).
enum RawHTTP {
    static func request(port: UInt16, _ method: String, _ target: String, headers: [(String, String)] = [],
                        body: [UInt8] = [], contentLength: Int? = nil, timeout: Int = 30) -> RawAnswer? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(contentLength ?? body.count)\r\n\r\n"
        var out = Array(head.utf8) + body
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeMutableBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may answer (413) and close before reading everything
            sent += n
        }
        out = []
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            received.append(contentsOf: buffer[0..<n])
        }
        return parse(received)
    }

    static func parse(_ bytes: [UInt8]) -> RawAnswer? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."),
              let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded: [UInt8] = [], i = 0
            while let lineEnd = body[i...].firstIndex(of: 13), let size = Int(String(decoding: body[i..<lineEnd], as: UTF8.self), radix: 16) {
                if size == 0 { break }
                let start = lineEnd + 2
                guard start + size <= body.count else { break }
                decoded += body[start..<(start + size)]
                i = start + size + 2
                guard i < body.count else { break }
            }
            body = decoded
        }
        return RawAnswer(status: status, headers: headers, body: body)
    }
}

/// A MockShiftApp behind a real HTTPServer on port 0: an in-memory store and the manual clock, so nothing waits.
final class LiveDaemon {
    let app: MockShiftApp
    let server: HTTPServer
    var port: UInt16 { server.port }
    static let maxBody = 4 * 1024 * 1024

    init() throws {
        let logger = Logger(label: "hostile-input-test")
        let store = try Store(path: ":memory:")
        let engine = RunEngine(store: store, scheduler: Scheduler(clock: .manual), settings: EngineSettings(), logger: logger)
        app = MockShiftApp(store: store, engine: engine, apiKeys: [], maxBodyBytes: Self.maxBody, logger: logger)
        app.markReady()
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.maxBodyBytes = Self.maxBody
        server = HTTPServer(configuration: configuration, responder: app, logger: logger)
        try server.start()
    }

    deinit { server.stop(drainSeconds: 0.5) }

    func call(_ method: String, _ target: String, key: String, json: JSON? = nil) -> RawAnswer? {
        RawHTTP.request(port: port, method, target, headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
                        body: json?.encoded() ?? [])
    }

    /// input → text → output: runs end at once, whatever the clock.
    static let textPipeline: JSON = ["name": "hostile", "nodes": [
        "input_0": ["type": "input", "name": "question", "inputs": ["input_type": "string"], "outputs": ["text"]],
        "text_0": ["type": "text", "inputs": ["text": "echo {{ input_0.text }}"], "outputs": ["text"]],
        "output_0": ["type": "output", "name": "answer", "inputs": ["value": "{{ text_0.text }}"]],
    ]]

    struct SeedError: Error, CustomStringConvertible { let description: String }

    /// Creates the pipeline and one completed run in `key`'s namespace; returns their ids. Throws plain errors
    /// (no `#require`): it runs off the test's task.
    func seed(key: String) throws -> (pipeline: String, run: String) {
        let created = call("POST", "/v1/pipeline", key: key, json: Self.textPipeline)
        guard let pipeline = created.flatMap({ try? JSON.parse($0.body)["id"]?.stringValue }) else {
            throw SeedError(description: "create answered \(created?.status ?? 0) \(created?.text ?? "nothing")")
        }
        let started = call("POST", "/v1/pipeline/\(pipeline)/run", key: key, json: ["inputs": ["question": "hi"], "background": true])
        guard let run = started.flatMap({ try? JSON.parse($0.body)["run_id"]?.stringValue }) else {
            throw SeedError(description: "run answered \(started?.status ?? 0) \(started?.text ?? "nothing")")
        }
        return (pipeline, run)
    }
}

/// Hostile input to every route (issue 5, "Fuzzing"): malformed bodies, wrong JSON types, huge strings, deep
/// nesting, invalid UTF-8, path tricks, through the real transport. Nothing may crash the daemon, answer an
/// undocumented 5xx, or answer an error that is not JSON in the VectorShift formats (SPEC §2).
@Suite(.serialized) struct HostileInputTests {
    /// The statuses the OpenAPI document lists for `method path-pattern`.
    static func documentedStatuses(_ method: String, _ pattern: String) -> Set<Int> {
        let operation = OpenAPI.document["paths"]?[OpenAPITests.openAPIPath(pattern)]?[method.lowercased()]
        return Set((operation?["responses"]?.objectValue?.keys ?? []).compactMap { Int($0) })
    }

    /// What is wrong with one answer: it did not come, its status is not one the route documents (or 404/405 for
    /// a path the route table does not hold), or its body is not JSON in the right error format.
    static func problems(_ answer: RawAnswer?, _ what: String, allowed: Set<Int>) -> [String] {
        guard let answer else { return ["\(what): no answer (connection dropped or timed out)"] }
        var found: [String] = []
        if !allowed.contains(answer.status) {
            found.append("\(what): status \(answer.status) is not documented (\(allowed.sorted())): \(answer.text.prefix(300))")
        }
        let isJSON = answer.headers["content-type"]?.hasPrefix("application/json") ?? false
        if answer.status >= 400 || isJSON {
            guard let body = try? JSON.parse(answer.body) else { return found + ["\(what): body is not JSON: \(answer.text.prefix(300))"] }
            let plain = body.objectValue?.keys == ["error"] && body["error"]?.stringValue != nil
            // The agent routes answer their 400 and 404 as `{"error": …}` (API-CHAT §3.4).
            let agentRoute = what.contains("/v1/agent") || what.contains("/v1/update/agent")
            if answer.status == 401, !plain {
                found.append("\(what): 401 body \(answer.text.prefix(200))")
            } else if agentRoute, [400, 404].contains(answer.status), plain {
                // the agent format
            } else if answer.status >= 400, answer.status != 401, !(body["status"] == "failed" && body["error"]?.stringValue != nil) {
                found.append("\(what): error body \(answer.text.prefix(200))")
            }
        }
        return found
    }

    /// Runs `body` on a thread of its own: these tests block on sockets for tens of seconds, which on the
    /// cooperative pool (2 threads on 2 cores) starved timing tests running beside them.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    static let megabyte = String(repeating: "x", count: 1 << 20)

    /// Bodies every route gets, whatever it reads: (label, content type, bytes).
    static func bodies(fields: [String]) -> [(String, String, [UInt8])] {
        var out: [(String, String, [UInt8])] = [
            ("truncated object", "application/json", Array(#"{"run_id": "#.utf8)),
            ("truncated list", "application/json", Array("[1, 2".utf8)),
            ("trailing garbage", "application/json", Array(#"{"a": 1}}"#.utf8)),
            ("bare word", "application/json", Array("nul".utf8)),
            ("NUL byte", "application/json", [0]),
            ("list", "application/json", Array("[]".utf8)),
            ("string", "application/json", Array(#""text""#.utf8)),
            ("number", "application/json", Array("42".utf8)),
            ("null", "application/json", Array("null".utf8)),
            ("huge number", "application/json", Array(#"{"ms": 1e400, "limit": 1e400, "times": 1e400}"#.utf8)),
            ("invalid UTF-8", "application/json", [0x7B, 0x22, 0x6E, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0xC3, 0x22, 0x7D]),
            ("invalid UTF-8 key", "application/json", [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]),
            ("lone surrogate escape", "application/json", Array(#"{"name": "\ud800", "run_id": "\udfff"}"#.utf8)),
            ("deep list", "application/json", Array(repeating: UInt8(ascii: "["), count: 100_000)),
            ("deep list closed", "application/json",
             Array(repeating: UInt8(ascii: "["), count: 100_000) + Array(repeating: UInt8(ascii: "]"), count: 100_000)),
            ("deep object", "application/json", Array(String(repeating: #"{"a":"#, count: 100_000).utf8)),
            ("many keys", "application/json", Array(("{" + (0..<20_000).map { "\"k\($0)\":0" }.joined(separator: ",") + "}").utf8)),
            ("form garbage", "application/x-www-form-urlencoded", Array("%%%=&&==%ZZ&run_id=%00&a=%FF%FE".utf8)),
            ("multipart without boundary", "multipart/form-data", Array("--x\r\n\r\n".utf8)),
            ("multipart broken", "multipart/form-data; boundary=XYZ",
             Array("--XYZ\r\nContent-Disposition: form-data; name=\"run_id\"\r\n\r\nabc\r\n--XYZ\r\nContent-Disposition: form-data; name=\"inputs.question\"; filename=\"a.bin\"\r\n\r\n\u{FF}\u{0}".utf8)),
            ("unknown content type", "application/x-unknown", Array("\u{1}\u{2}".utf8)),
        ]
        // Values nested just under JSONDecoder's depth limit pass parsing: they must survive being stored, read
        // back, run through templates and re-encoded, on whichever thread does it.
        var deep: JSON = "x"
        for _ in 0..<500 { deep = [deep] }
        let deepValues: JSON = [
            "name": "deep", "inputs": ["question": deep], "runs": [["inputs": ["question": deep]]],
            "node_input_overrides": ["text_0": ["text": deep]], "canvas_metadata": ["nodes": deep],
            "nodes": ["input_0": ["type": "input", "name": "question", "inputs": ["input_type": "string", "default_value": deep]],
                      "output_0": ["type": "output", "name": "answer", "inputs": ["value": "{{ input_0.text }}"]]],
            "body": deep, "run_ids": deep,
        ]
        out.append(("values nested 500 deep", "application/json", deepValues.encoded()))
        var wrong: [JSONObject] = [[:], [:], [:], [:], [:]]
        for start in stride(from: 0, to: fields.count, by: 3) {  // 3 MB a body: under the test daemon's 4 MiB limit
            var huge = JSONObject()
            for field in fields[start..<min(start + 3, fields.count)] { huge[field] = .string(megabyte) }
            out.append(("1 MB strings in \(huge.keys)", "application/json", JSON.object(huge).encoded()))
        }
        for field in fields {
            wrong[0][field] = .array([.int(1)])
            wrong[1][field] = .object(["x": .object(["y": .null])])
            wrong[2][field] = .int(-1)
            wrong[3][field] = .double(1e308)
            wrong[4][field] = .string("\u{0}../..%2F\u{FFFF}")
        }
        for (i, object) in wrong.enumerated() { out.append(("wrong types \(i)", "application/json", JSON.object(object).encoded())) }
        var form = fields.map { "\($0)=\(String(repeating: "y", count: 200_000))" }.joined(separator: "&")
        if form.isEmpty { form = "a=b" }
        out.append(("huge form", "application/x-www-form-urlencoded", Array(form.utf8)))
        return out
    }

    /// The fields of the route's JSON body as the document describes them (`name` for a route without a body,
    /// which must ignore it): the wrong-type and huge-string bodies set each of them.
    static func fields(_ method: String, _ pattern: String) -> [String] {
        let operation = OpenAPI.document["paths"]?[OpenAPITests.openAPIPath(pattern)]?[method.lowercased()]
        let schema = operation?["requestBody"]?["content"]?["application/json"]?["schema"]
        let names = schema?["properties"]?.objectValue?.keys ?? []
        return names.isEmpty ? ["name"] : names
    }

    @Test func everyRouteSurvivesHostileBodiesWithDocumentedStatusesAndJSONErrors() async throws {
        let found = try await Self.offThePool { try Self.hostileBodies() }
        #expect(found.isEmpty, "\(found.count) problem(s):\n\(found.prefix(30).joined(separator: "\n"))")
    }

    static func hostileBodies() throws -> [String] {
        let daemon = try LiveDaemon()
        var found: [String] = []
        var slowest = Duration.zero
        // The live feed (`GET /_mock/events`) never ends while the daemon runs, so a one-shot client would wait for
        // its timeout on every body; it reads no body anyway (test_events.py covers it).
        for (index, route) in Router.vectorShiftRoutes().table.enumerated() where route.pattern != "/_mock/events" {
            let key = "hostile-\(index)"
            let method = route.method.rawValue
            let allowed = Self.documentedStatuses(method, route.pattern)
            if allowed.isEmpty { found.append("\(method) \(route.pattern) is not documented") }
            for (label, contentType, body) in Self.bodies(fields: Self.fields(method, route.pattern)) {
                // Fresh objects for each body: a body may delete the pipeline, reset the namespace or end the run.
                let (pipeline, run) = try daemon.seed(key: key)
                let target = route.pattern.replacingOccurrences(of: ":task", with: run)
                    .replacingOccurrences(of: ":id", with: route.pattern.hasPrefix("/_mock/runs") ? run : pipeline)
                let started = ContinuousClock.now
                let answer = RawHTTP.request(port: daemon.port, method, target,
                                             headers: [("Authorization", "Bearer \(key)"), ("Content-Type", contentType)], body: body)
                let elapsed = ContinuousClock.now - started
                slowest = max(slowest, elapsed)
                found += Self.problems(answer, "\(method) \(route.pattern) with \(label)", allowed: allowed)
                // A parse that is quadratic in the body (60,000 keys took minutes) holds a transport thread.
                if elapsed > .seconds(5) { found.append("\(method) \(route.pattern) with \(label) took \(elapsed)") }
                _ = daemon.call("DELETE", "/_mock/faults", key: key)  // a body that happened to be a valid rule
                // What the request stored reads back.
                found += Self.problems(daemon.call("GET", "/v1/pipeline?id=\(pipeline)", key: key),
                                       "fetch after \(method) \(route.pattern) with \(label)", allowed: [200, 404])
            }
        }
        print("hostile bodies: slowest answer \(slowest)")
        let health = daemon.call("GET", "/_mock/health", key: "after")
        if health?.status != 200 { found.append("the daemon no longer answers after the hostile bodies") }
        return found
    }

    /// Path tricks on every route: encoded slashes, dot segments, NUL, invalid UTF-8, over-long ids (10,000
    /// characters, twice in some routes: within the default 32 KiB request head; beyond it libmicrohttpd answers
    /// 414/431 itself, see `test_limits.py`). They reach
    /// at most an unknown id (404) or an unknown path (404/405); never another route's handler with a cut-off id.
    @Test func pathTricksNeverReachAnotherObjectOrAnUndocumentedStatus() async throws {
        let found = try await Self.offThePool { try Self.pathTricks() }
        #expect(found.isEmpty, "\(found.count) problem(s):\n\(found.prefix(30).joined(separator: "\n"))")
    }

    static func pathTricks() throws -> [String] {
        var found: [String] = []
        let daemon = try LiveDaemon()
        let key = "paths"
        let (pipeline, run) = try daemon.seed(key: key)
        let tricks = ["..", "%2e%2e", "\(pipeline)%2F..", "\(pipeline)%2Frun", "\(pipeline)%00", "\(pipeline)%00x", "%00",
                      "%FF%FE", "\(String(repeating: "a", count: 10_000))", "\(pipeline)/..", "%20", "a%2F%2F%2Fb", "%25",
                      "\(pipeline)#frag"]
        for route in Router.vectorShiftRoutes().table where route.pattern.contains(":") {
            let method = route.method.rawValue
            let allowed = Self.documentedStatuses(method, route.pattern).union([404, 405])
            for trick in tricks {
                let target = route.pattern.replacingOccurrences(of: ":task", with: trick).replacingOccurrences(of: ":id", with: trick)
                let answer = RawHTTP.request(port: daemon.port, method, target,
                                             headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
                                             body: Array(#"{"run_id": "\#(run)", "run_ids": ["\#(run)"], "name": "x", "version": "latest", "role": "viewer", "node_id": "input_0"}"#.utf8))
                found += Self.problems(answer, "\(method) \(target.prefix(80))", allowed: allowed)
                if let answer, answer.status == 200 {
                    found.append("\(method) \(target.prefix(80)) reached a handler that succeeded: \(answer.text.prefix(200))")
                }
            }
        }
        // Query tricks on the routes that read the query.
        let queries = ["/v1/pipeline?id=%00", "/v1/pipeline?id=\(pipeline)%00", "/v1/pipeline?name=%FF", "/v1/pipeline?id=\(pipeline)&version=1.0.0.0",
                       "/v1/pipeline?id=\(pipeline)&version=%00", "/v1/pipelines?limit=99999999999999999999", "/v1/pipelines?offset=-1",
                       "/v1/pipelines?limit=1e3", "/_mock/runs?limit=-5", "/_mock/runs?status=%00", "/_mock/requests?limit=abc",
                       "/v1/pipelines?verbose=true&limit=\(String(repeating: "9", count: 5000))", "/_mock/reset?all=true"]
        for target in queries {
            let method = target.hasPrefix("/_mock/reset") ? "POST" : "GET"
            let pattern = String(target.split(separator: "?")[0])
            found += Self.problems(RawHTTP.request(port: daemon.port, method, target, headers: [("Authorization", "Bearer \(key)")]),
                                   "\(method) \(target.prefix(80))", allowed: Self.documentedStatuses(method, pattern))
        }
        // Nothing above touched the pipeline or its run.
        let fetched = daemon.call("GET", "/v1/pipeline?id=\(pipeline)", key: key)
        if fetched?.status != 200 { found.append("the pipeline did not survive: \(fetched?.text.prefix(200) ?? "no answer")") }
        let status = daemon.call("GET", "/v1/pipeline/\(pipeline)/run/status/\(run)", key: key)
        if status.flatMap({ (try? JSON.parse($0.body))?["status"] }) != "completed" {
            found.append("the run did not survive: \(status?.text.prefix(200) ?? "no answer")")
        }
        return found
    }

    /// A body over the limit is 413 in the pipeline error format on every route (the transport checks the
    /// declared length before reading).
    @Test func oversizedBodiesAre413OnEveryRoute() async throws {
        let found = try await Self.offThePool { () throws -> [String] in
            let daemon = try LiveDaemon()
            var found: [String] = []
            for route in Router.vectorShiftRoutes().table {
                let target = route.pattern.replacingOccurrences(of: ":task", with: "t").replacingOccurrences(of: ":id", with: "i")
                let answer = RawHTTP.request(port: daemon.port, route.method.rawValue, target, headers: [("Content-Type", "application/json")],
                                             body: Array("{}".utf8), contentLength: LiveDaemon.maxBody + 1)
                found += Self.problems(answer, "\(route.method.rawValue) \(route.pattern) oversized", allowed: [413])
            }
            return found
        }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }
}
