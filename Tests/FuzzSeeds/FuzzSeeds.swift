import Glibc

/// The checked-in seed corpus of fuzz target `target` (Fuzz/Corpus/<target>, written by
/// Fuzz/make-seeds.py): file name -> bytes. Empty when the folder is missing (the tests then fail
/// on the count, never pass vacuously). Shared by every suite's FuzzSeedTests.
public func fuzzSeeds(_ target: String) -> [String: [UInt8]] {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    let dir = parts.joined(separator: "/") + "/Fuzz/Corpus/" + target
    var seeds: [String: [UInt8]] = [:]
    guard let d = opendir(dir) else { return seeds }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard !name.hasPrefix("."), let f = fopen(dir + "/" + name, "r") else { continue }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let n = fread(&buffer, 1, buffer.count, f), n > 0 { bytes += buffer[0..<n] }
        fclose(f)
        seeds[name] = bytes
    }
    return seeds
}
