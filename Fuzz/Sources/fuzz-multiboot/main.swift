// Multiboot v1 kernels: `MultibootHeader.find` (the header in the first 8 KiB), the a.out-kludge
// load plan, and the loader behind them. The input is the kernel file.
//
// Checked: nothing traps; a load plan reads only bytes of the file and stays below 4 GiB (the
// entry is the loader's check, against what it loaded).
import FuzzSupport
import Machine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultiboot(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    if let header = try? MultibootHeader.find(in: bytes), header.addresses != nil,
       let plan = try? header.aoutLoadPlan(fileSize: bytes.count) {
        precondition(plan.fileOffset >= 0 && plan.loadSize >= 0 && plan.fileOffset <= bytes.count
                     && plan.loadSize <= bytes.count - plan.fileOffset, "an a.out load plan reads past the file")
        precondition(plan.loadAddress + UInt64(plan.loadSize) <= 0x1_0000_0000, "an a.out load plan passes 4 GiB")
    }
    KernelFile.openAndLoad(bytes)
    return 0
}
