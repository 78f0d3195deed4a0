import Foundation
import Testing
@testable import MockShift

/// The fidelity core (issue 15 item 4): shapes compared (``ShapeDiff``) and counted per endpoint (``FidelityReport``).
@Suite struct ShapeDiffTests {
    func summaries(_ real: JSON?, _ mock: JSON?) -> [String] { ShapeDiff.compare(real: real, mock: mock).map(\.summary) }

    @Test func equalShapesWithOtherValuesShowNoDifference() {
        let real: JSON = ["status": "success", "run_id": "abc", "outputs": ["x": 1, "y": [true, nil]], "n": 2.5]
        let mock: JSON = ["n": 7, "outputs": ["y": [false, nil], "x": 99.5], "run_id": "zzz", "status": "failed"]
        #expect(ShapeDiff.compare(real: real, mock: mock) == [], "values, key order and int vs double are not shape")
    }

    @Test func missingExtraAndRetypedKeysAreFoundWithTheirPaths() {
        let real: JSON = ["status": "success", "outputs": ["x": "text", "gone": ["a": 1]], "usage": nil]
        let mock: JSON = ["status": "success", "outputs": ["x": 12, "new": true], "usage": ["tokens": 3]]
        let found = ShapeDiff.compare(real: real, mock: mock)
        #expect(found.map(\.summary) == [
            "$.outputs.x: string vs number",
            "$.outputs.gone: missing in mock (object)",
            "$.outputs.new: extra in mock (boolean)",
            "$.usage: null vs object",
        ])
        #expect(found.map(\.kind) == [.type, .missing, .extra, .type])
        #expect(found[1].real == "object" && found[1].mock == "absent")
        #expect(found[2].real == "absent" && found[2].mock == "boolean")
    }

    @Test func arraysAreComparedElementByElementAndEachDifferenceIsReportedOnce() {
        let real: JSON = ["runs": [["id": "a", "n": 1], ["id": "b", "n": 2], ["id": "c", "n": 3]]]
        let mock: JSON = ["runs": [["id": "a", "n": 1], ["id": 5, "n": 2], ["id": 6]]]
        let found = ShapeDiff.compare(real: real, mock: mock)
        #expect(found.map(\.summary) == ["$.runs[*].id: string vs number", "$.runs[*].n: missing in mock (number)"])
        #expect(found.map(\.examplePath) == ["$.runs[1].id", "$.runs[2].n"], "the first element that showed it")
        #expect(summaries(["a": [1, 2, 3]], ["a": [4]]) == [], "an array's length is data, not shape")
        #expect(summaries(["a": []], ["a": ["x"]]) == [])
        #expect(summaries([[1], ["x"]], [[2], [3]]) == ["$[*][*]: string vs number"])
    }

    @Test func oddKeysAreQuotedSoEveryPathReadsBackToOnePlace() {
        #expect(summaries(["a b": 1, "x.y": 1, "_ok9": 1, "9lives": 1, "é": 1], [:]) == [
            #"$["a b"]: missing in mock (number)"#, #"$["x.y"]: missing in mock (number)"#, "$._ok9: missing in mock (number)",
            #"$["9lives"]: missing in mock (number)"#, #"$["é"]: missing in mock (number)"#,
        ])
    }

    @Test func aBodyOnOneSideOnlyOrOfAnotherRootTypeIsATypeDifference() {
        #expect(summaries(["a": 1], nil) == ["$: object vs none"])
        #expect(summaries(nil, nil) == [])
        #expect(summaries(["a": 1], [1]) == ["$: object vs array"])
        #expect(summaries("x", "y") == [])
    }

    @Test func statusCodesAreComparedAndBodiesOnlyWithinTheSameClass() {
        let differing = ShapeDiff.compare(realStatus: 200, realBody: ["a": 1], mockStatus: 404, mockBody: ["error": "x"])
        #expect(differing.map(\.summary) == ["status: 200 vs 404"], "a 404's body is not a 200's with other keys")
        #expect(differing[0].kind == .status && differing[0].real == "200" && differing[0].mock == "404")
        let sameClass = ShapeDiff.compare(realStatus: 400, realBody: ["status": "failed", "error": "x"], mockStatus: 422,
                                          mockBody: ["error": "y"])
        #expect(sameClass.map(\.summary) == ["status: 400 vs 422", "$.status: missing in mock (string)"])
        #expect(ShapeDiff.compare(realStatus: 200, realBody: ["a": 1], mockStatus: 200, mockBody: ["a": 2]) == [])
    }

    // MARK: FidelityReport

    let status = "GET /v1/pipeline/:id/run/status/:task"

    @Test func endpointsAreNamedByTheRouteTable() {
        #expect(FidelityReport.endpoint(method: "GET", path: "/v1/pipeline/abc/run/status/def") == status)
        #expect(FidelityReport.endpoint(method: "POST", path: "/v1/pipeline/abc/run") == "POST /v1/pipeline/:id/run")
        #expect(FidelityReport.endpoint(method: "HEAD", path: "/v1/pipelines") == "HEAD /v1/pipelines")
        #expect(FidelityReport.endpoint(method: "GET", path: "/v1/no/such/route") == "GET /v1/no/such/route")
    }

    @Test func theReportCountsExchangesAndEachDistinctDifferenceWithOneExample() throws {
        let report = FidelityReport()
        report.record(endpoint: status, realStatus: 200, realBody: ["status": "completed", "result": ["answer": "hi"]],
                      mockStatus: 200, mockBody: ["status": "completed", "result": ["answer": 1]],
                      request: "GET /v1/pipeline/p1/run/status/t1")
        report.record(endpoint: status, realStatus: 200, realBody: ["status": "completed", "result": ["answer": "yo"]],
                      mockStatus: 200, mockBody: ["status": "completed", "result": ["answer": 2], "extra": true],
                      request: "GET /v1/pipeline/p1/run/status/t2")
        report.record(endpoint: status, realStatus: 200, realBody: ["status": "completed"], mockStatus: 200,
                      mockBody: ["status": "in_progress"])
        report.record(endpoint: "GET /v1/pipelines", realStatus: 200, realBody: ["objects": []], mockStatus: 200,
                      mockBody: ["objects": []])
        #expect(report.exchanges == 4)
        let json = report.json()
        #expect(json.encodedString() == """
            {"format":"mockshift-fidelity-report/1","exchanges":4,"exchanges_not_compared":0,"endpoints_compared":2,"endpoints_differing":1,\
            "endpoints":[{"endpoint":"GET /v1/pipeline/:id/run/status/:task","exchanges":3,"exchanges_differing":2,\
            "differences":[{"kind":"extra","path":"$.extra","real":"absent","mock":"boolean","count":1,\
            "summary":"$.extra: extra in mock (boolean)","example":{"path":"$.extra","request":"GET /v1/pipeline/p1/run/status/t2"}},\
            {"kind":"type","path":"$.result.answer","real":"string","mock":"number","count":2,\
            "summary":"$.result.answer: string vs number","example":{"path":"$.result.answer","request":"GET /v1/pipeline/p1/run/status/t1"}}],\
            "differences_not_listed":0,"not_compared":0,"not_compared_reasons":[]},\
            {"endpoint":"GET /v1/pipelines","exchanges":1,"exchanges_differing":0,"differences":[],"differences_not_listed":0,\
            "not_compared":0,"not_compared_reasons":[]}]}
            """)
        let markdown = report.markdown()
        #expect(markdown.contains("4 exchange(s) compared on 2 endpoint(s); 1 endpoint(s) answered with another shape"))
        #expect(markdown.contains("## `GET /v1/pipeline/:id/run/status/:task`"))
        #expect(markdown.contains("| $.result.answer: string vs number | 2 | `$.result.answer` in `GET /v1/pipeline/p1/run/status/t1` |"))
        #expect(markdown.contains("Same shape as the real service: `GET /v1/pipelines` (1)."))
    }

    @Test func theSameExchangesInAnyOrderGiveTheSameBytes() {
        let exchanges: [(String, JSON, JSON)] = [
            ("POST /v1/pipeline", ["id": "a", "status": "success"], ["id": 1]),
            ("GET /v1/pipelines", ["objects": [["id": "x"]]], ["objects": [["id": "y", "name": "n"]]]),
            ("POST /v1/pipeline", ["id": "a"], ["id": "b", "z": nil]),
            (status, ["b": 1, "a": 1], ["c": 1]),
        ]
        func report(_ order: [Int]) -> String {
            let r = FidelityReport()
            for i in order { r.record(endpoint: exchanges[i].0, realStatus: 200, realBody: exchanges[i].1, mockStatus: 200, mockBody: exchanges[i].2) }
            return r.json().encodedString() + r.markdown()
        }
        #expect(report([0, 1, 2, 3]) == report([3, 2, 1, 0]))
        #expect(report([0, 1, 2, 3]) == report([2, 0, 3, 1]))
    }

    @Test func distinctDifferencesPerEndpointAreBounded() {
        let report = FidelityReport()
        var real = JSONObject()
        for i in 0..<(FidelityReport.distinctLimit + 7) { real["key\(i)"] = 1 }
        report.record(endpoint: "GET /x", realStatus: 200, realBody: .object(real), mockStatus: 200, mockBody: [:])
        let endpoint = report.json()["endpoints"]?.arrayValue?.first
        #expect(endpoint?["differences"]?.arrayValue?.count == FidelityReport.distinctLimit)
        #expect(endpoint?["differences_not_listed"] == .int(7))
        #expect(report.markdown().contains("7 further difference(s) not listed."))
    }

    @Test func recordingFromManyThreadsLosesNoExchange() async {
        let report = FidelityReport()
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<250 {
                        report.record(endpoint: "GET /e\(t % 2)", realStatus: 200, realBody: ["a": "s"],
                                      mockStatus: 200, mockBody: ["a": i % 2 == 0 ? "t" : 1])
                    }
                }
            }
        }
        #expect(report.exchanges == 2000)
        let endpoints = report.json()["endpoints"]?.arrayValue ?? []
        #expect(endpoints.map { $0["exchanges_differing"] } == [.int(500), .int(500)])
        #expect(endpoints.map { $0["differences"]?.arrayValue?.first?["count"] } == [.int(500), .int(500)])
    }

    @Test func theFilesAreWrittenIndentedAndReplacedWhole() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fidelity-\(UUID().uuidString)/nested")
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        let report = FidelityReport()
        report.record(endpoint: "GET /v1/pipelines", realStatus: 200, realBody: ["objects": []], mockStatus: 500, mockBody: nil)
        try report.write(directory: folder.path)
        let text = try String(contentsOf: folder.appendingPathComponent(FidelityReport.jsonFileName), encoding: .utf8)
        #expect(text.hasPrefix("{\n  \"format\": \"mockshift-fidelity-report/1\",\n  \"exchanges\": 1,\n"))
        #expect(text.hasSuffix("}\n"))
        #expect(text.contains("\"differences_not_listed\": 0,\n"))
        #expect(try JSON.parse(text) == report.json(), "the indented file reads back to the report")
        report.record(endpoint: "GET /v1/pipelines", realStatus: 200, realBody: ["objects": []], mockStatus: 200, mockBody: ["objects": []])
        try report.write(directory: folder.path)
        let again = try String(contentsOf: folder.appendingPathComponent(FidelityReport.jsonFileName), encoding: .utf8)
        #expect(try JSON.parse(again)["exchanges"] == .int(2))
        let markdown = try String(contentsOf: folder.appendingPathComponent(FidelityReport.markdownFileName), encoding: .utf8)
        #expect(markdown.contains("| status: 200 vs 500 | 1 |"))
    }
}
