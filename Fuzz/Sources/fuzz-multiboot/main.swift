// Multiboot v1 kernels: `MultibootHeader.find` (the header in the first 8 KiB), the a.out-kludge
// load plan, and the loader behind them. The input is the kernel file.
//
// Checked: nothing traps; a load plan reads only bytes of the file and its entry lies inside
// what it loads or zeroes.
import FuzzSupport
import Machine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultiboot(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    if let header = try? MultibootHeader.find(in: bytes), header.addresses != nil,
       let plan = try? header.aoutLoadPlan(fileSize: bytes.count) {
        precondition(plan.fileOffset >= 0 && plan.loadSize >= 0 && plan.fileOffset <= bytes.count
                     && plan.loadSize <= bytes.count - plan.fileOffset, "an a.out load plan reads past the file")
        precondition(plan.entry >= plan.loadAddress && plan.entry < max(plan.bssEnd, plan.loadAddress + UInt64(plan.loadSize)),
                     "multiboot entry outside the loaded image")
    }
    KernelFile.openAndLoad(bytes)
    return 0
}
