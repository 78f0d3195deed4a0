import Foundation
import Logging
import Testing
@testable import MockShift

/// Which webhook hosts are called (issue 11 item 6): loopback always, others only when `serve --webhook-host`
/// names them (or `*`), so made-up URLs never leave the machine.
@Suite struct WebhookHostTests {
    func webhooks() throws -> Webhooks {
        Webhooks(store: try Store(path: ":memory:"), clock: { 0 }, logger: Logger(label: "webhooks"))
    }

    @Test func loopbackIsCalledAndOtherHostsOnlyWhenAllowed() throws {
        let w = try webhooks()
        for url in ["http://127.0.0.1:9/x", "http://127.8.9.10/x", "http://localhost:8080/x", "https://api.localhost/x",
                    "http://[::1]:9/x"] {
            #expect(w.mayCall(URL(string: url)!), "\(url)")
        }
        for url in ["http://192.0.2.1/x", "http://example.com/x", "http://127.0.0.1.example.com/x", "http://10.0.0.1/x",
                    "http://[::2]/x", "http://1270.0.0.1/x"] {
            #expect(!w.mayCall(URL(string: url)!), "\(url)")
        }
        w.allowHosts(["Hooks.Test"])
        #expect(w.mayCall(URL(string: "http://hooks.test/x")!))
        #expect(!w.mayCall(URL(string: "http://example.com/x")!))
        w.allowHosts(["*"])
        #expect(w.mayCall(URL(string: "http://example.com/x")!))
    }
}
