// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "MockShift",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mockshift", targets: ["MockShiftCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
    ],
    targets: [
        // C libraries, each a module map plus one shim header (TECH-NOTES §1).
        .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd",
                       providers: [.apt(["libmicrohttpd-dev"])]),
        .systemLibrary(name: "CSQLite3", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        // WebSocket framing (SPEC §10). Debian's libwslay-dev has no pkg-config file: the module map links it.
        .systemLibrary(name: "CWslay", providers: [.apt(["libwslay-dev"])]),
        // HTTP transport: libmicrohttpd, request/response values, suspend/resume, WebSocket upgrades (handshake
        // with swift-crypto's SHA-1, framing by wslay, one epoll thread for every upgraded socket). Knows nothing
        // of pipelines or sessions.
        .target(name: "MockShiftHTTP", dependencies: [
            "CMicroHTTPD", "CWslay",
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // API (routes, handlers) → Engine (runs, scheduler, LLM simulation) → Store (SQLite); Model is shared.
        // The dashboard's files (Sources/MockShift/Dashboard) are compiled in as byte arrays (`PackageResources`):
        // no bundle to find at run time, so the binary can be moved anywhere.
        .target(name: "MockShift", dependencies: [
            "MockShiftHTTP", "CSQLite3",
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], resources: [.embedInCode("Dashboard")]),
        // The `mockshift` executable: parses options and starts things, nothing else.
        .executableTarget(name: "MockShiftCLI", dependencies: [
            "MockShift", "MockShiftHTTP",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "MockShiftTests", dependencies: ["MockShift", "MockShiftHTTP"]),
    ]
)
