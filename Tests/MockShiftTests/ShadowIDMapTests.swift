import Testing
@testable import MockShift

/// Record mode's shadow maps the ids the upstream minted to its own (issue 15 item 4, ``ShadowIDMap``).
@Suite struct ShadowIDMapTests {
    @Test func idsArePairedFromTwoAnswersToTheSameRequestOutsideArrays() {
        var map = ShadowIDMap()
        map.learn(real: ["status": "success", "id": "real-p"], shadow: ["status": "success", "id": "mock-p"])
        map.learn(real: ["status": "success", "task_id": "real-t", "run_id": "real-t", "object": ["_id": "real-o", "name": "n"],
                         "objects": [["id": "real-listed"]]],
                  shadow: ["status": "success", "task_id": "mock-t", "run_id": "mock-t", "object": ["_id": "mock-o", "name": "m"],
                           "objects": [["id": "mock-listed"]]])
        #expect(map.shadowID("real-p") == "mock-p")
        #expect(map.shadowID("real-t") == "mock-t")
        #expect(map.shadowID("real-o") == "mock-o")
        #expect(map.shadowID("real-listed") == nil, "list elements need not be the same objects in the same order")
        #expect(map.shadowIDs.count == 3, "names and statuses are no ids")
        map.learn(real: ["id": "real-p"], shadow: ["id": "other"])
        #expect(map.shadowID("real-p") == "mock-p", "the first pair learnt stays")
        map.learn(real: ["id": "same"], shadow: ["id": "same"])
        #expect(map.shadowID("same") == nil)
    }

    @Test func pathsQueriesAndBodiesAreTranslatedAndUnknownIdsRefused() {
        var map = ShadowIDMap()
        map.learn(real: ["id": "rp"], shadow: ["id": "sp"])
        map.learn(real: ["run_id": "rr"], shadow: ["run_id": "sr"])
        #expect(map.translate(path: "/v1/pipeline/rp/run/status/rr", pattern: "/v1/pipeline/:id/run/status/:task")
                == "/v1/pipeline/sp/run/status/sr")
        #expect(map.translate(path: "/v1/pipeline/unknown/run", pattern: "/v1/pipeline/:id/run") == nil)
        #expect(map.translate(path: "/v1/pipelines", pattern: "/v1/pipelines") == "/v1/pipelines")
        #expect(map.translate(path: "/v1/no/route/rp", pattern: nil) == "/v1/no/route/rp")
        let query = map.translate(query: [("id", "rp"), ("version", "1.0.0")])
        #expect(query?.map(\.name) == ["id", "version"] && query?.map(\.value) == ["sp", "1.0.0"])
        #expect(map.translate(query: [("id", "nope")]) == nil)
        #expect(map.translate(query: [("name", "nope")])?.first?.value == "nope", "a name is no id")
        let body: JSON = ["run_id": "rr", "pipeline": ["object_id": "rp", "version": "latest"], "text": "rp and more"]
        #expect(map.translate(body: body) == ["run_id": "sr", "pipeline": ["object_id": "sp", "version": "latest"],
                                              "text": "rp and more"])
        #expect(map.translate(body: ["run_id": "unknown"]) == nil)
        #expect(map.translate(body: ["run_ids": ["rr", "unknown"]]) == nil)
        #expect(map.translate(body: ["conversation_id": ""]) == ["conversation_id": ""], "empty: a new conversation")
    }

    @Test func aStreamsEventsAreGroupedByTypeForTheComparison() {
        let events: [(type: String, data: JSON)] = [("start", ["a": 1]), ("stream", ["t": "x"]), ("stream", ["t": "y"]),
                                                    ("result", ["outputs": [:]])]
        #expect(FidelityShadow.eventsByType(events) == ["start": [["a": 1]], "stream": [["t": "x"], ["t": "y"]],
                                                        "result": [["outputs": [:]]]])
    }
}
