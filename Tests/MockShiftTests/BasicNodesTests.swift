import Testing
@testable import MockShift

@Suite struct BasicNodesTests {
    func run(_ type: String, _ inputs: JSONObject) -> JSONObject { ((try? BasicNodes.evaluate(type: type, inputs)) ?? nil) ?? [:] }

    @Test func textMergeAndLists() {
        #expect(run("text", ["text": "hi there"])["text"] == "hi there")
        #expect(run("merge", ["function": "first", "fields": ["", .null, "b", "c"]])["output"] == "b")
        #expect(run("merge", ["function": "join", "fields": ["a", "", "c"]])["output"] == ["a", "c"])
        #expect(run("create_list", ["list": ["x", "y"]])["output"] == ["x", "y"])
        #expect(run("get_list_item", ["list": ["x", "y"], "index": 1])["output"] == "y")
        #expect(run("get_list_item", ["list": ["x"], "index": 5])["output"] == .null)
        #expect(run("join_list_item", ["list": ["a", "b"], "join_characters": ", "])["joined_text"] == "a, b")
        #expect(run("join_list_item", ["list": ["a", "b"], "join_by_newline": true])["joined_text"] == "a\nb")
    }

    @Test func textOperations() {
        #expect(run("combine_text", ["text": ["a", "b"]])["processed_text"] == "ab")
        #expect(run("split_text", ["text": "a b  c", "delimiter": "space"])["processed_text"] == ["a", "b", "c"])
        #expect(run("split_text", ["text": "a;b", "delimiter": "character(s)", "character": ";"])["processed_text"] == ["a", "b"])
        #expect(run("split_text", ["text": "a\nb", "delimiter": "newline"])["processed_text"] == ["a", "b"])
        #expect(run("find_and_replace", ["text_to_manipulate": "cat hat",
                                         "replacements": [["find": "at", "replace": "og"], ["find": "cog", "replace": "dog"]]])["processed_text"] == "dog hog")
        #expect(run("text_formatter", ["text": "Hello", "formatter": "To Uppercase"])["output"] == "HELLO")
        #expect(run("text_formatter", ["text": "one two three", "formatter": "Truncate", "max_num_token": 2])["output"] == "one two")
        #expect(run("convert_type", ["value": "42", "target_type": "int32"])["converted_value"] == .int(42))
        #expect(run("convert_type", ["value": "2.5", "target_type": "float"])["converted_value"] == .double(2.5))
        #expect(run("convert_type", ["value": "true", "target_type": "bool"])["converted_value"] == .bool(true))
    }

    func clause(_ op: String, _ a: JSON, _ b: JSON? = nil) -> JSON {
        var term: JSONObject = ["operand1": a, "operator": .string(op), "termType": "Clause"]
        if let b { term["operand2"] = b }
        return .object(term)
    }

    @Test func conditionTakesTheFirstGroupThatHoldsElsePathElse() {
        let groups: JSON = [
            ["terms": [clause("GreaterThanEqual", "95", "90")], "operators": []],
            ["terms": [clause("TextContains", "hello world", "world")], "operators": []],
        ]
        let outputs: JSON = ["path_0": "path", "path_1": "path", "path_else": "path"]
        let first = run("condition", ["conditions": groups, "outputs": outputs])
        #expect(first["path_0"] == true && first["path_1"] == false && first["path_else"] == false)
        let none = run("condition", ["conditions": [["terms": [clause("LessThan", "95", "90")], "operators": []]],
                                     "outputs": ["path_0": "path", "path_else": "path"]])
        #expect(none["path_0"] == false && none["path_else"] == true)
    }

    @Test(arguments: [
        ("Equal", "a", "a", true), ("NotEqual", "a", "b", true), ("GreaterThan", "10", "9", true),
        ("LessThan", "10", "9", false), ("LessThanEqual", "9", "9", true), ("TextStartsWith", "robot", "rob", true),
        ("TextDoesNotStartWith", "robot", "rob", false), ("TextEndsWith", "robot", "bot", true),
        ("TextDoesNotEndWith", "robot", "x", true), ("TextDoesNotContains", "robot", "x", true),
        ("TextGreaterThanNCharacters", "robot", "3", true), ("TextLessThanNCharacters", "robot", "3", false),
        ("VecContainsItem", "[\"a\",\"b\"]", "b", true), ("VecDoesNotContainsItem", "[\"a\"]", "b", true),
        ("MapContainsKey", "{\"k\":1}", "k", true),
    ])
    func binaryOperators(op: String, a: String, b: String, expected: Bool) {
        #expect(BasicNodes.clause(clause(op, .string(a), .string(b))) == expected, "\(a) \(op) \(b)")
    }

    @Test func unaryOperatorsAndAndOr() {
        #expect(BasicNodes.clause(clause("IsEmpty", "")))
        #expect(BasicNodes.clause(clause("IsNotEmpty", "x")))
        #expect(BasicNodes.clause(clause("IsTrue", true)))
        #expect(BasicNodes.clause(clause("IsFalse", "false")))
        let orGroup: JSON = ["terms": [clause("Equal", "a", "b"), clause("Equal", "c", "c")], "operators": ["OR"]]
        let andGroup: JSON = ["terms": [clause("Equal", "a", "b"), clause("Equal", "c", "c")], "operators": ["AND"]]
        #expect(BasicNodes.holds(orGroup))
        #expect(!BasicNodes.holds(andGroup))
    }
}
