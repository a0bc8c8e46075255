import HyperV
import Partition
import Testing

/// Memory-based input blocks (alignment, page crossing, RAM bounds) and the fast-call register
/// block.
@Suite struct HypercallInputBlockTests {
    let memory = FakeMemory(size: 0x10000)  // 64 KiB of RAM at GPA 0

    @Test func alignedInPageRAMIsAccepted() {
        #expect(HypercallInputBlock.validate(gpa: 0x1000, size: 16, memory: memory) == nil)
        #expect(HypercallInputBlock.validate(gpa: 0x1FF0, size: 16, memory: memory) == nil, "ends exactly at the page end")
        #expect(HypercallInputBlock.validate(gpa: 0x1F00, size: 256, memory: memory) == nil)
        #expect(HypercallInputBlock.validate(gpa: 0xFFF8, size: 8, memory: memory) == nil, "last quadword of RAM")
    }

    @Test func misalignedGPAIsInvalidAlignment() {
        for gpa: UInt64 in [0x1001, 0x1002, 0x1004, 0x1007] {
            #expect(HypercallInputBlock.validate(gpa: gpa, size: 8, memory: memory) == .invalidAlignment)
        }
    }

    @Test func pageCrossingIsInvalidAlignment() {
        #expect(HypercallInputBlock.validate(gpa: 0x1FF8, size: 16, memory: memory) == .invalidAlignment)
        #expect(HypercallInputBlock.validate(gpa: 0x1F08, size: 256, memory: memory) == .invalidAlignment)
        #expect(HypercallInputBlock.validate(gpa: 0x1000, size: 4097, memory: memory) == .invalidAlignment)
    }

    @Test func outsideRAMIsInvalidAlignment() {
        #expect(HypercallInputBlock.validate(gpa: 0x10000, size: 8, memory: memory) == .invalidAlignment)
        #expect(HypercallInputBlock.validate(gpa: 0xFEE0_0000, size: 16, memory: memory) == .invalidAlignment)
        #expect(HypercallInputBlock.validate(gpa: 0xFFFF_FFFF_FFFF_FFF8, size: 8, memory: memory) == .invalidAlignment)
        #expect(HypercallInputBlock.validate(gpa: 0xFFFF_FFFF_FFFF_F000, size: 4096, memory: memory) == .invalidAlignment, "no overflow trap")
    }

    @Test func emptyBlocksAreNotChecked() {
        #expect(HypercallInputBlock.validate(gpa: 0xFFFF_FFFF_FFFF_FFFF, size: 0, memory: memory) == nil)
    }

    @Test func readReturnsTheBytesOrTheStatus() throws {
        memory.write(gpa: 0x3000, bytes: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
        let block = try HypercallInputBlock.read(gpa: 0x3000, size: 16, memory: memory).get()
        #expect(block.u32(at: 0) == 0x0403_0201)
        #expect(block.u16(at: 4) == 0x0605)
        #expect(block.u64(at: 8) == 0x100F_0E0D_0C0B_0A09)
        #expect(block.quadwords(from: 0, count: 2) == [0x0807_0605_0403_0201, 0x100F_0E0D_0C0B_0A09])
        #expect(throws: HvStatus.invalidAlignment) { try HypercallInputBlock.read(gpa: 0x3004, size: 16, memory: memory).get() }
        #expect(try HypercallInputBlock.read(gpa: 0x3004, size: 0, memory: memory).get().bytes == [])
    }

    @Test func overlapRules() {
        #expect(HypercallInputBlock.overlaps(inputGPA: 0x1000, inputSize: 16, outputGPA: 0x1008, outputSize: 8))
        #expect(HypercallInputBlock.overlaps(inputGPA: 0x1008, inputSize: 8, outputGPA: 0x1000, outputSize: 16))
        #expect(!HypercallInputBlock.overlaps(inputGPA: 0x1000, inputSize: 16, outputGPA: 0x1010, outputSize: 8))
        #expect(!HypercallInputBlock.overlaps(inputGPA: 0x1000, inputSize: 16, outputGPA: 0x1000, outputSize: 0))
    }

    @Test func registerBlockIsRDXThenR8ThenXMM() throws {
        let xmm: [UInt64] = [0x1111, 0x2222, 0x3333]
        let eight = try #require(HypercallInputBlock.fromRegisters(inputValue: 0xAABB, outputValue: 0xCCDD, xmm: [], size: 8))
        #expect(eight.bytes.count == 8 && eight.u64(at: 0) == 0xAABB)
        let sixteen = try #require(HypercallInputBlock.fromRegisters(inputValue: 0xAABB, outputValue: 0xCCDD, xmm: [], size: 16))
        #expect(sixteen.quadwords(from: 0, count: 2) == [0xAABB, 0xCCDD])
        let forty = try #require(HypercallInputBlock.fromRegisters(inputValue: 1, outputValue: 2, xmm: xmm, size: 40))
        #expect(forty.quadwords(from: 0, count: 5) == [1, 2, 0x1111, 0x2222, 0x3333])
        #expect(HypercallInputBlock.fromRegisters(inputValue: 1, outputValue: 2, xmm: xmm, size: 48) == nil, "XMM2 low missing")
        let full = [UInt64](repeating: 7, count: 12)
        #expect(HypercallInputBlock.fromRegisters(inputValue: 1, outputValue: 2, xmm: full, size: 112)?.bytes.count == 112)
        #expect(HypercallInputBlock.fromRegisters(inputValue: 1, outputValue: 2, xmm: full + [8], size: 120) == nil)
    }

    // MARK: Through the dispatcher

    @Test func slowCallAtABadGPAIsInvalidAlignment() {
        let h = HcHarness()
        let ipi = HvHypercallControl(callCode: .sendSyntheticClusterIpi)
        h.store([hcVectorWord(0x30), 1], at: 0x2000)
        #expect(h.status(ipi, input: 0x2000) == .success)
        #expect(h.status(ipi, input: 0x2004) == .invalidAlignment, "misaligned")
        #expect(h.status(ipi, input: 0x2FF8) == .invalidAlignment, "crosses into the next page")
        #expect(h.status(ipi, input: 0x10_0000) == .invalidAlignment, "just past the end of RAM")
        #expect(h.status(ipi, input: 0xFFFF_FFFF_FFFF_FFF8) == .invalidAlignment)
        #expect(h.interrupts.sent.count == 1)
    }

    @Test func postMessageBlockMustFitInItsPage() {
        let h = HcHarness()
        let post = HvHypercallControl(callCode: .postMessage)
        let message = HvPostMessageInput(connectionID: 1, messageType: 1, payload: [0xAB]).encoded()
        h.memory.write(gpa: 0x3F00, bytes: message)
        h.memory.write(gpa: 0x4F08, bytes: message)
        #expect(h.status(post, input: 0x3F00) == .invalidConnectionID, "256 bytes ending at the page end")
        #expect(h.status(post, input: 0x4F08) == .invalidAlignment, "crosses a page")
    }
}
