import Testing
@testable import MockShift

@Suite struct JSONParserTests {
    @Test func valuesKeysInDocumentOrderAndNumbers() throws {
        let v = try JSON.parse(#" {"z": 1, "a": [true, false, null, -0.5, 1e3, 12345678901234567890], "m": {"k": "v"}, "z": 2} "#)
        #expect(v.objectValue?.keys == ["z", "a", "m"])
        #expect(v["z"] == .int(2))  // a repeated key keeps its first place and its last value
        #expect(v["a"] == [true, false, nil, .double(-0.5), .double(1000), .double(12345678901234567890)])
        #expect(v["m"]?["k"] == "v")
        #expect(try JSON.parse("-42") == .int(-42))
    }

    @Test func escapesAndUnicode() throws {
        #expect(try JSON.parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#) == .string("a\"b\\c/d\n\té😀"))
        #expect(try JSON.parse(#""\ud800x""#) == .string("\u{FFFD}x"))  // a lone surrogate
        #expect(try JSON.parse("\"é ü\"") == .string("é ü"))
        #expect(try JSON.parse(#""nul\u0000in""#).stringValue?.utf8.count == 6)
    }

    @Test(arguments: ["", " ", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e", "tru", "nul",
                      "\"abc", "\"a\u{01}b\"", "\"\\x\"", "\"\\u12\"", "[1] x", "NaN", "1e999", "{\"a\":1,}"])
    func malformedTextIsRefused(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
    }

    @Test func errorOffsetIsShownAsLineAndColumnCountingCharacters() {
        let text = Array("{\n  \"a\": 1,\n  \"é\": tru\n}".utf8)
        do {
            _ = try JSON.parse(text)
            Issue.record("expected a parse error")
        } catch let error as JSONParseError {
            let (line, column) = error.position(in: text)
            #expect(line == 3 && column == 8, "expected line 3, column 8 (the t of tru; é is one character of two bytes); got \(line):\(column)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(JSONParseError(message: "x", offset: 0).position(in: Array("abc".utf8)) == (1, 1))
    }

    @Test func invalidUTF8IsRefused() {
        #expect(throws: JSONParseError.self) { try JSON.parse([UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")]) }
        #expect(throws: JSONParseError.self) { try JSON.parse([UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")]) }
    }

    @Test func deepNestingIsRefusedWithoutRecursingIntoIt() throws {
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        #expect(try JSON.parse(ok).arrayValue != nil)
        let deep = String(repeating: "[", count: 200_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        let deepObjects = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deepObjects) }
    }

    @Test func manyKeysParseInLinearTime() throws {
        let n = 100_000
        let text = "{" + (0..<n).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        let object = try JSON.parse(text).objectValue
        #expect(object?.count == n)
        #expect(object?.keys.last == "k\(n - 1)")
    }

    @Test func roundTripsThroughTheEncoder() throws {
        let v: JSON = ["status": "ok", "n": 3, "list": [1.5, "x\n\"y\"", nil, ["deep": true]]]
        #expect(try JSON.parse(v.encoded()) == v)
    }
}
