/// The built-in default guest that `synthvm run` boots when no --kernel is given: a tiny ELF64
/// that prints a greeting and the command line from its boot info on COM1, then halts with
/// interrupts off (status 0). Hand-assembled here so a fresh machine needs no guest toolchain
/// to see SynthVM work, and so the ELF loader and direct boot path run on every first try.
public enum BuiltinGuest {
    public static let name = "built-in guest"
    public static let loadAddress: UInt64 = 0x10_0000
    public static let greeting = "Hello from the SynthVM built-in guest (ELF64, long mode). Command line: "

    public static func elf() -> [UInt8] {
        var code: [UInt8] = []
        func rel32(from next: Int, to target: Int) -> [UInt8] {
            withUnsafeBytes(of: Int32(target - next).littleEndian) { Array($0) }
        }
        // Offsets below are relative to the code start; `print` is at 40, messages at 53.
        let print = 40, msg1 = 53
        let msg1Bytes = Array(greeting.utf8) + [0]
        let msg2 = msg1 + msg1Bytes.count
        code += [0x48, 0x89, 0xFB]                               // 0:  mov rbx, rdi (boot info)
        code += [0x48, 0x8D, 0x35] + rel32(from: 10, to: msg1)   // 3:  lea rsi, [rip+msg1]
        code += [0xE8] + rel32(from: 15, to: print)              // 10: call print
        code += [0x48, 0x8B, 0x73, 0x20]                         // 15: mov rsi, [rbx+32] (cmdline)
        code += [0xE8] + rel32(from: 24, to: print)              // 19: call print
        code += [0x48, 0x8D, 0x35] + rel32(from: 31, to: msg2)   // 24: lea rsi, [rip+msg2]
        code += [0xE8] + rel32(from: 36, to: print)              // 31: call print
        code += [0xFA, 0xF4, 0xEB, 0xFD]                         // 36: cli; hlt; jmp hlt
        code += [0x66, 0xBA, 0xF8, 0x03]                         // 40: print: mov dx, 0x3f8
        code += [0xAC]                                           // 44: lodsb
        code += [0x84, 0xC0]                                     // 45: test al, al
        code += [0x74, 0x03]                                     // 47: jz 52
        code += [0xEE]                                           // 49: out dx, al
        code += [0xEB, 0xF8]                                     // 50: jmp 44
        code += [0xC3]                                           // 52: ret
        precondition(code.count == msg1)
        code += msg1Bytes
        code += Array("\n".utf8) + [0]
        return elf64(code: code)
    }

    /// A minimal ELF64 executable: one read-execute segment at `loadAddress` holding the headers
    /// and then `code`, entered at the code's first byte (SynthVM direct boot).
    public static func elf64(code: [UInt8]) -> [UInt8] {
        let headers = 64 + 56
        let fileSize = UInt64(headers + code.count)
        let entry = loadAddress + UInt64(headers)
        var elf: [UInt8] = []
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { elf += $0 } }
        elf += [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8) // ELF64, LE, v1
        le(UInt16(2)); le(UInt16(62)); le(UInt32(1))            // ET_EXEC, EM_X86_64, EV_CURRENT
        le(entry); le(UInt64(64)); le(UInt64(0))                // e_entry, e_phoff, e_shoff
        le(UInt32(0)); le(UInt16(64)); le(UInt16(56))           // e_flags, e_ehsize, e_phentsize
        le(UInt16(1)); le(UInt16(64)); le(UInt16(0)); le(UInt16(0)) // e_phnum, e_shentsize, e_shnum, e_shstrndx
        le(UInt32(1)); le(UInt32(5))                            // PT_LOAD, R+X
        le(UInt64(0)); le(loadAddress); le(loadAddress)         // p_offset, p_vaddr, p_paddr
        le(fileSize); le(fileSize); le(UInt64(0x1000))          // p_filesz, p_memsz, p_align
        elf += code
        return elf
    }
}
