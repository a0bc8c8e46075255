import CSynthVM
import Glibc
import Testing

@testable import IPC

@Suite struct SharedRegionTests {
    @Test func createStoreLoad() throws {
        let r = try SharedRegion(name: "ipc-test", size: 4096)
        #expect(r.size == 4096)
        try r.store(UInt64(0x1122_3344_5566_7788), at: 8)
        #expect(try r.load(UInt64.self, at: 8) == 0x1122_3344_5566_7788)
        #expect(try r.load(UInt32.self, at: 8) == 0x5566_7788)
        try r.store(UInt32(0xDEAD_BEEF), at: 4091)  // unaligned, ends one byte before the end
        #expect(try r.load(UInt32.self, at: 4091) == 0xDEAD_BEEF)
        try r.store(UInt8(0xAA), at: 4095)  // the last byte
        #expect(try r.load(UInt8.self, at: 4095) == 0xAA)
        try r.write([1, 2, 3], at: 100)
        #expect(try r.bytes(at: 99, count: 5) == [0, 1, 2, 3, 0])
        #expect(isCloseOnExec(r.fd.rawValue))
    }

    @Test func boundsAreChecked() throws {
        let r = try SharedRegion(name: "ipc-test", size: 4096)
        #expect(throws: IPCError.outOfBounds(offset: 4089, count: 8, size: 4096)) { try r.load(UInt64.self, at: 4089) }
        #expect(throws: IPCError.outOfBounds(offset: -1, count: 1, size: 4096)) { try r.store(UInt8(1), at: -1) }
        #expect(throws: IPCError.outOfBounds(offset: Int.max, count: 8, size: 4096)) { try r.load(UInt64.self, at: Int.max) }
        #expect(throws: IPCError.outOfBounds(offset: 1, count: Int.max, size: 4096)) { try r.bytes(at: 1, count: Int.max) }
        #expect(throws: IPCError.outOfBounds(offset: 0, count: -1, size: 4096)) { try r.bytes(at: 0, count: -1) }
        #expect(throws: IPCError.self) { try r.atomic(UInt64.self, at: 4) }  // misaligned
        #expect(throws: IPCError.self) { try r.atomic(UInt64.self, at: 4096) }
        #expect(try r.bytes(at: 4096, count: 0) == [])
        #expect(throws: IPCError.invalidArgument("region size must be positive, got 0")) { try SharedRegion(name: "x", size: 0) }
    }

    @Test func createdRegionIsSealed() throws {
        let r = try SharedRegion(name: "ipc-test", size: 8192)
        let seals = svm_memfd_get_seals(r.fd.rawValue)
        #expect(seals & (svm_F_SEAL_GROW | svm_F_SEAL_SHRINK | svm_F_SEAL_SEAL) == svm_F_SEAL_GROW | svm_F_SEAL_SHRINK | svm_F_SEAL_SEAL)
        #expect(ftruncate(r.fd.rawValue, 4096) == -1 && errno == EPERM)
        #expect(ftruncate(r.fd.rawValue, 16384) == -1 && errno == EPERM)
        // No one can add a write seal that would lock peers out of writable mappings.
        #expect(svm_memfd_add_seals(r.fd.rawValue, svm_F_SEAL_WRITE) == -EPERM)
    }

    @Test func twoMappingsShareBytes() throws {
        let a = try SharedRegion(name: "ipc-test", size: 8192)
        let b = try SharedRegion(adopting: try a.fd.duplicate(), size: 8192)
        try a.store(UInt64(42), at: 4096)
        #expect(try b.load(UInt64.self, at: 4096) == 42)
        try b.store(UInt16(7), at: 0)
        #expect(try a.load(UInt16.self, at: 0) == 7)
        // A window at a page offset.
        let c = try SharedRegion(adopting: try a.fd.duplicate(), size: 4096, offset: 4096)
        #expect(try c.load(UInt64.self, at: 0) == 42)
        #expect(throws: IPCError.self) { try c.load(UInt64.self, at: 4096) }
    }

    @Test func adoptionRefusesUnsealedFDs() throws {
        let none = unsealedMemfd(size: 4096)
        #expect(throws: IPCError.unsealedRegion(seals: 0)) { try SharedRegion(adopting: none, size: 4096) }
        let growOnly = unsealedMemfd(size: 4096)
        #expect(svm_memfd_add_seals(growOnly.rawValue, svm_F_SEAL_GROW) == 0)
        #expect(throws: IPCError.unsealedRegion(seals: svm_F_SEAL_GROW)) { try SharedRegion(adopting: growOnly, size: 4096) }
        let shrinkOnly = unsealedMemfd(size: 4096)
        #expect(svm_memfd_add_seals(shrinkOnly.rawValue, svm_F_SEAL_SHRINK) == 0)
        #expect(throws: IPCError.unsealedRegion(seals: svm_F_SEAL_SHRINK)) { try SharedRegion(adopting: shrinkOnly, size: 4096) }
    }

    @Test func adoptionRefusesWriteSealedFDsForWriting() throws {
        let fd = unsealedMemfd(size: 4096)
        let seals = svm_F_SEAL_GROW | svm_F_SEAL_SHRINK | svm_F_SEAL_WRITE
        #expect(svm_memfd_add_seals(fd.rawValue, seals) == 0)
        #expect(throws: IPCError.unsealedRegion(seals: seals)) { try SharedRegion(adopting: fd, size: 4096) }
        // Reading it is fine.
        let r = try SharedRegion(adopting: fd, size: 4096, access: .readOnly)
        #expect(try r.load(UInt64.self, at: 0) == 0)
    }

    @Test func adoptionRefusesShortFDs() throws {
        let r = try SharedRegion(name: "ipc-test", size: 4096)
        #expect(throws: IPCError.regionTooSmall(size: 4096, required: 8192)) {
            try SharedRegion(adopting: try r.fd.duplicate(), size: 8192)
        }
        #expect(throws: IPCError.regionTooSmall(size: 4096, required: 4097)) {
            try SharedRegion(adopting: try r.fd.duplicate(), size: 1, offset: 4096)
        }
        #expect(throws: IPCError.self) { try SharedRegion(adopting: try r.fd.duplicate(), size: 16, offset: 100) }
        #expect(throws: IPCError.self) { try SharedRegion(adopting: try r.fd.duplicate(), size: Int.max, offset: 4096) }
    }

    @Test func adoptionRefusesNonMemfds() throws {
        let (readEnd, _) = makePipe()
        #expect(throws: IPCError.system(call: "fcntl(F_GET_SEALS)", errno: EINVAL)) {
            try SharedRegion(adopting: readEnd, size: 4096)
        }
    }

    @Test func readOnlyMappingRefusesStores() throws {
        let a = try SharedRegion(name: "ipc-test", size: 4096)
        try a.store(UInt32(9), at: 0)
        let ro = try SharedRegion(adopting: try a.fd.duplicate(), size: 4096, access: .readOnly)
        #expect(try ro.load(UInt32.self, at: 0) == 9)
        #expect(throws: IPCError.readOnlyRegion) { try ro.store(UInt32(1), at: 0) }
        #expect(throws: IPCError.readOnlyRegion) { try ro.write([1], at: 0) }
        #expect(throws: IPCError.readOnlyRegion) { try ro.atomic(UInt64.self, at: 0) }
    }
}
