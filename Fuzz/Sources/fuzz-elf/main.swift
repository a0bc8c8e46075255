// ELF kernels (`ElfImage.parse`, its notes, the PVH/Linux/direct-boot decision and the segment
// loader). The input is the kernel file. Operator input rather than guest input, but a bad file
// must give a clear error, not a crash of the launcher.
//
// Checked: nothing traps; every parsed segment and note lies inside the file; the entry
// address, when one is found, is inside a loaded segment's physical range.
import FuzzSupport
import Machine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzElf(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    if let image = try? ElfImage.parse(bytes) {
        for s in image.segments {
            precondition(s.fileOffset <= UInt64(bytes.count) && s.fileSize <= UInt64(bytes.count) - s.fileOffset,
                         "an ELF segment reaches past the file")
        }
        if let entry = image.entryPhysicalAddress() {
            precondition(image.segments.contains { entry >= $0.physicalAddress && entry - $0.physicalAddress < $0.memorySize },
                         "entry outside every segment")
        }
        for note in (try? image.notes(in: bytes)) ?? [] {
            precondition(note.descriptor.lowerBound >= 0 && note.descriptor.upperBound <= bytes.count,
                         "an ELF note's descriptor lies outside the file")
        }
    }
    KernelFile.openAndLoad(bytes)
    return 0
}
