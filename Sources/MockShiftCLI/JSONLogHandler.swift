import Foundation
import Logging
import MockShift

/// `serve --log-format json` (SPEC §1): each log record as one JSON object on its own line on standard error,
/// `{"at":ISO 8601 UTC,"level":…,"label":…,"message":…}` plus the record's metadata as string fields.
/// Lives outside main.swift (TECH-NOTES P1): it runs on any thread.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    private static let lock = NSLock()  // one line at a time

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level, message = event.message, explicit = event.metadata
        var record: JSONObject = ["at": .string(iso8601(micros: wallClockMicros())), "level": .string(level.rawValue),
                                  "label": .string(label), "message": .string(message.description)]
        for (key, value) in metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) where record[key] == nil {
            record[key] = .string(value.description)
        }
        let bytes = JSON.object(record).encoded() + [10]
        Self.lock.lock()
        // try?: a reader that has gone (the starter died, --exit-with-parent) must not stop the daemon.
        try? FileHandle.standardError.write(contentsOf: Data(bytes))
        Self.lock.unlock()
    }
}
