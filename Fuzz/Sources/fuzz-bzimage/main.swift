// Linux bzImages: `LinuxSetupHeader.parse` (boot flag, "HdrS", protocol version, setup sectors,
// payload offset and length), the payload's compression, its decompression on the host and the
// vmlinux inside. The input is the kernel file.
//
// Checked: nothing traps; a parsed header's ranges lie inside the file.
import FuzzSupport
import Machine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBzImage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    if let header = try? LinuxSetupHeader.parse(bytes) {
        precondition(header.payloadRange.lowerBound >= 0 && header.payloadRange.upperBound <= bytes.count,
                     "bzImage payload range outside the file")
        precondition(header.setupHeaderRange.upperBound <= bytes.count, "setup header range outside the file")
        _ = header.payloadCompression(in: bytes)
    }
    KernelFile.openAndLoad(bytes)
    return 0
}
