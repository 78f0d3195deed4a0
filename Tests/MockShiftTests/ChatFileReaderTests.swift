import Testing
@testable import MockShift

/// `chat_file_reader` nodes read the files a chatbot turn hands over (SPEC §9 "Files", issue 12 item 5).
@Suite struct ChatFileReaderTests {
    func reader() throws -> GraphNode {
        try #require(PipelineGraph(nodes: ["files": ["type": "chat_file_reader", "inputs": ["chunk_size": 1000]]], overrides: [:])
            .nodes.first)
    }

    @Test func textFilesAreReadAsTextAndOthersAsAPlaceholderInUploadOrder() throws {
        let files = [ChatFile(name: "a.txt", mimeType: "text/plain", bytes: Array("café\nline".utf8)),
                     ChatFile(name: "p.png", mimeType: "image/png", bytes: [0x89, 0x50, 0x4e, 0x47]),
                     ChatFile(name: "nul.txt", mimeType: "text/plain", bytes: [0x61, 0x00, 0x62]),
                     ChatFile(name: "empty", mimeType: "text/plain", bytes: [])]
        guard case let .done(outputs) = NodeEvaluator.evaluate(try reader(), resolvedInputs: [:], runInputs: [:], seed: 0,
                                                               strict: true, files: files) else {
            Issue.record("chat_file_reader did not complete at once")
            return
        }
        #expect(outputs["documents"] == ["café\nline", "[file p.png: 4 bytes, image/png]", "[file nul.txt: 3 bytes, text/plain]", ""])
    }

    @Test func outsideAChatbotTurnThereAreNoDocuments() throws {
        guard case let .done(outputs) = NodeEvaluator.evaluate(try reader(), resolvedInputs: [:], runInputs: [:], seed: 0,
                                                               strict: true) else {
            Issue.record("chat_file_reader did not complete at once (with --strict-nodes it is a supported type)")
            return
        }
        #expect(outputs["documents"] == [])
    }
}
