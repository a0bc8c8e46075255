// A Swift -O miscompile that leaked the SynIC router's ring buffer (issue 11; docs/toolchain.md).
// An infinite loop whose only way out is exit() makes every block of it a "dead-end block";
// there SILCombine (Swift 6.3.1) turns the ArraySlice built by `Array(buffer[0..<n])` into a
// copy_value whose destroy it places on the copying path only, so when the slice covers the whole
// array (the storage is shared, not copied) one retain per iteration is never released, and the
// next in-place mutation copies the 4 KiB buffer. scripts/toolchain/check-dead-end-loop-leak.sh
// builds and runs it: "leaks" on an affected compiler.
import Glibc

@inline(never) func pop(into array: inout [UInt8]) -> Int {
    array[0] &+= 1
    return array.count
}
@inline(never) func consume(_ bytes: [UInt8]) -> Int {
    Int(bytes[0])
}
func rssAnonKiB() -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(cString: line)
        if s.hasPrefix("RssAnon:") { return Int(s.split(separator: " ")[1]) ?? -1 }
    }
    return -1
}
func run() {
    var buffer = [UInt8](repeating: 0, count: 4096)
    var sum = 0
    var i = 0
    let before = rssAnonKiB()
    while true {
        let length = pop(into: &buffer)
        sum &+= consume(Array(buffer[0..<length]))
        i += 1
        if i == 100_000 {
            print("RssAnon before \(before) KiB, after 100000 records \(rssAnonKiB()) KiB (sum \(sum))")
            exit(0)
        }
    }
}
run()
