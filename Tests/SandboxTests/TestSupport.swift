import Glibc

/// Repository root, from this file's path (Tests/SandboxTests/TestSupport.swift).
let repositoryRoot: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

func readTextFile(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

func writeTextFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "w") else { return false }
    defer { fclose(f) }
    return fputs(text, f) >= 0
}

let gccAvailable: Bool = system("command -v gcc >/dev/null 2>&1") == 0

/// Compiles `source` with gcc, runs it and returns its stdout as `name value` pairs.
func runC(_ source: String) -> [String: UInt64]? {
    var template = Array("/tmp/sandbox-tests-XXXXXX".utf8CString)
    guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return nil }
    let dir = String(cString: dirPtr)
    defer { _ = system("rm -rf '\(dir)'") }
    guard writeTextFile("\(dir)/p.c", source),
          system("gcc -o '\(dir)/p' '\(dir)/p.c' 2>'\(dir)/err'") == 0,
          let out = popen("'\(dir)/p'", "r") else { return nil }
    var text = ""
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, Int32(line.count), out) != nil {
        text += String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    guard pclose(out) == 0 else { return nil }
    var result: [String: UInt64] = [:]
    for l in text.split(separator: "\n") {
        let w = l.split(separator: " ")
        if w.count == 2, let v = UInt64(w[1]) { result[String(w[0])] = v }
    }
    return result
}
