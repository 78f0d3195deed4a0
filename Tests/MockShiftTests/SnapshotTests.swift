import Foundation
import Testing
@testable import MockShift

@Suite struct SecretRedactorTests {
    @Test func keysNamingSecretsAreRedactedWhateverTheirSpelling() {
        let inputs: JSON = ["api_key": "plain-value-123", "apiKey": "x", "x-api-key": "y", "access_token": "t",
                            "client_secret": "s", "Authorization": "Basic abc", "password": "hunter2"]
        let (cleaned, findings) = SecretRedactor.redact(inputs)
        #expect(cleaned["api_key"] == "<redacted:api_key>")
        #expect(cleaned["apiKey"] == "<redacted:apiKey>")
        #expect(cleaned["x-api-key"] == "<redacted:x-api-key>")
        #expect(cleaned["access_token"] == "<redacted:access_token>")
        #expect(cleaned["client_secret"] == "<redacted:client_secret>")
        #expect(cleaned["Authorization"] == "<redacted:Authorization>")
        #expect(cleaned["password"] == "<redacted:password>")
        #expect(Set(findings.map(\.path)) == ["api_key", "apiKey", "x-api-key", "access_token", "client_secret", "Authorization", "password"])
    }

    @Test func countsFlagsTemplatesAndEmptyValuesAreNotSecrets() {
        let inputs: JSON = ["max_tokens": 128000, "max_token": "500", "use_personal_api_key": false, "api_key": "",
                            "token": "{{ input_0.text }}", "secret": "<redacted:secret>", "tokens_used": "12",
                            "prompt": "Tell me about tokens and passwords."]
        let (cleaned, findings) = SecretRedactor.redact(inputs)
        #expect(cleaned == inputs)
        #expect(findings.isEmpty)
    }

    @Test func keyShapedValuesAreRedactedInsideText() {
        let key = "sk-" + String(repeating: "a1B2", count: 8)
        let inputs: JSON = ["prompt": .string("Use \(key) to call."), "system": "no key here: sk-short",
                            "notes": .string("ghp_" + String(repeating: "x", count: 36))]
        let (cleaned, findings) = SecretRedactor.redact(inputs)
        #expect(cleaned["prompt"] == "Use <redacted:prompt> to call.")
        #expect(cleaned["system"] == "no key here: sk-short")
        #expect(cleaned["notes"] == "<redacted:notes>")
        #expect(Set(findings.map(\.path)) == ["prompt", "notes"])
        #expect(!cleaned.encodedString().contains(key))
    }

    @Test func aHeaderValueIsNamedByItsSiblingKey() {
        let inputs: JSON = ["headers": [["key": "Authorization", "value": "Bearer abc"], ["key": "Accept", "value": "text/plain"]]]
        let (cleaned, findings) = SecretRedactor.redact(inputs)
        #expect(cleaned["headers"]?.arrayValue?[0]["value"] == "<redacted:value>")
        #expect(cleaned["headers"]?.arrayValue?[1]["value"] == "text/plain")
        #expect(findings.map(\.path) == ["headers[0].value"])
    }

    @Test func redactingTwiceChangesNothingMore() {
        let once = SecretRedactor.redact(["api_key": "sk-abcdefghijklmnopqrstuvwxyz"]).value
        let twice = SecretRedactor.redact(once)
        #expect(twice.value == once)
        #expect(twice.findings.isEmpty)
    }
}

@Suite struct SnapshotFilesTests {
    @Test func slugsKeepLowercaseLettersDigitsAndUnderscores() {
        #expect(SnapshotFiles.slug("streaming_chat") == "streaming_chat")
        #expect(SnapshotFiles.slug("Support Bot (v2)!") == "support-bot-v2")
        #expect(SnapshotFiles.slug("  ") == "unnamed")
        #expect(SnapshotFiles.slug("été") == "t")
        #expect(SnapshotFiles.slug(String(repeating: "a", count: 200)).count == 60)
    }

    @Test func clashingSlugsGetAHashOfTheNameWhateverTheOrder() {
        let names = ["support-bot", "Support Bot", "support bot", "other"]
        let files = SnapshotFiles.fileNames(.chatbot, names: names)
        #expect(files["support-bot"] == "chatbot-support-bot.json")
        #expect(files["other"] == "chatbot-other.json")
        #expect(files["Support Bot"]!.hasPrefix("chatbot-support-bot-") && files["Support Bot"]!.count == "chatbot-support-bot-12345678.json".count)
        #expect(Set(files.values).count == 4)
        #expect(SnapshotFiles.fileNames(.chatbot, names: names.reversed()) == files)
        // A name alone keeps the plain file name even when it is not its own slug.
        #expect(SnapshotFiles.fileNames(.pipeline, names: ["My Pipeline"]) == ["My Pipeline": "pipeline-my-pipeline.json"])
    }

    @Test func renderSortsKeysIndentsAndEndsWithANewline() {
        let value: JSON = ["b": [1, "x"], "a": ["z": .null, "é": true], "c": .object([:]), "d": .array([])]
        let text = String(decoding: SnapshotFiles.render(value), as: UTF8.self)
        #expect(text == """
            {
              "a": {
                "z": null,
                "é": true
              },
              "b": [
                1,
                "x"
              ],
              "c": {},
              "d": []
            }

            """)
    }
}

/// An upstream answering from a table of `path?query` → answer, for the snapshot logic without a network.
final class FakeUpstream: UpstreamReading, @unchecked Sendable {
    var answers: [String: Result<JSONObject, UpstreamError>] = [:]
    var asked: [String] = []

    func get(_ path: String, query: [(String, String)]) throws -> JSONObject {
        let key = path + "?" + query.filter { !["offset", "limit", "verbose", "include_shared"].contains($0.0) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        asked.append(key)
        guard let answer = answers[key] else { throw UpstreamError.http(status: 404, message: "not found: \(key)") }
        return try answer.get()
    }
}

@Suite struct SnapshotterTests {
    static func upstream() -> FakeUpstream {
        let fake = FakeUpstream()
        let nodes: JSON = ["llm": ["id": "llm", "type": "llm", "name": "llm",
                                   "inputs": ["api_key": "sk-live-0123456789abcdefghij", "prompt": "hi"]]]
        fake.answers["/pipelines?"] = .success(["objects": [["_id": "p1", "name": "chat"], ["_id": "p2", "name": "broken"]]])
        fake.answers["/pipeline?id=p1"] = .success(["object": ["_id": "p1", "name": "chat", "nodes": nodes, "currentVersion": "1.0.2"]])
        fake.answers["/pipeline?id=p1&version=1.0.2"] = .success(["object": ["_id": "p1", "name": "chat", "nodes": nodes]])
        fake.answers["/pipeline?id=p2"] = .failure(.http(status: 500, message: "boom"))
        fake.answers["/chatbots?"] = .success(["object_ids": ["c1"]])
        fake.answers["/chatbot?id=c1"] = .success(["object": ["_id": "c1", "name": "Bot", "pipeline": ["id": "p1"],
                                                              "slack_config": ["bot_token": "xoxb-123-456"]]])
        fake.answers["/agents?"] = .success(["objects": []])
        return fake
    }

    @Test func aFailedObjectIsReportedAndTheOthersAreWritten() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("snap-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var lines: [String] = []
        let outcome = try Snapshotter(upstream: Self.upstream(), log: { lines.append($0) }).run(.init(), into: folder)
        #expect(outcome.failures == ["pipeline 'broken': HTTP 500: boom"])
        #expect(outcome.written == ["chatbot-bot.json", "pipeline-chat.json"])
        #expect(outcome.redactions == ["pipeline 'chat' node 'llm' field 'api_key'", "chatbot 'Bot' field 'slack_config.bot_token'"])
        #expect(lines.contains("snapshot: pipeline 2/2 broken"))
        let text = try String(contentsOfFile: folder + "/pipeline-chat.json", encoding: .utf8)
        #expect(!text.contains("sk-live"))
        #expect(text.contains("\"version\": \"1.0.2\""))
        let bot = try JSON.parse(String(contentsOfFile: folder + "/chatbot-bot.json", encoding: .utf8))
        #expect(bot["chatbots"]?.arrayValue?.first?["pipeline"] == "chat")
    }

    @Test func anUnreachableUpstreamIsFatalAtTheFirstRequest() {
        let fake = FakeUpstream()
        fake.answers["/pipelines?"] = .failure(.unreachable("Could not connect to the server."))
        #expect(throws: Snapshotter.Fatal.self) {
            try Snapshotter(upstream: fake, log: { _ in }).run(.init(), into: "/nonexistent/never-written")
        }
        #expect(fake.asked == ["/pipelines?"])
    }

    @Test func aChatbotIsWrittenWithItsPipelineWhenPickedByName() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("snap-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fake = Self.upstream()
        fake.answers["/chatbot?name=Bot"] = fake.answers["/chatbot?id=c1"]
        var options = Snapshotter.Options()
        options.chatbots = ["Bot"]
        let outcome = try Snapshotter(upstream: fake, log: { _ in }).run(options, into: folder)
        #expect(outcome.failures.isEmpty)
        #expect(outcome.written == ["chatbot-bot.json", "pipeline-chat.json"])
        #expect(!fake.asked.contains("/pipelines?"))
    }
}
