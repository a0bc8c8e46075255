/* Instructions at known addresses for the emulate guest. Each probe_<name> executes one
 * instruction at probe_<name>_insn and returns a value that shows it ran correctly. */
    .code64
    .text

    .globl do_int3, int3_insn, int3_next
do_int3:
int3_insn:
    int3                            /* cc: #BP is a trap, the handler sees int3_next */
int3_next:
    ret

    .globl do_fwait, fwait_insn, fwait_next
do_fwait:
fwait_insn:
    fwait                           /* 9b */
fwait_next:
    ret

    .globl probe_popcnt, probe_popcnt_insn
probe_popcnt:                       /* u64 (u64 x): popcount */
probe_popcnt_insn:
    popcnt %rdi, %rax
    ret

    .globl probe_cmpxchg16b, probe_cmpxchg16b_insn
probe_cmpxchg16b:                   /* u64 (u64 *p16): swaps {1, 2} for {3, 4}; returns ZF */
    push %rbx
    mov $1, %rax
    mov $2, %rdx
    mov $3, %rbx
    mov $4, %rcx
probe_cmpxchg16b_insn:
    lock cmpxchg16b (%rdi)
    setz %al
    movzbl %al, %eax
    pop %rbx
    ret

    .globl probe_ldmxcsr, probe_ldmxcsr_insn
probe_ldmxcsr:                      /* u64 (u32 *mxcsr): loads *mxcsr, stores it back */
probe_ldmxcsr_insn:
    ldmxcsr (%rdi)
    stmxcsr 4(%rdi)
    mov 4(%rdi), %eax
    ret

    .globl probe_xsetbv, probe_xsetbv_insn
probe_xsetbv:                       /* u64 (void): XCR0 = x87 | SSE; returns 1 */
    xor %ecx, %ecx
    xor %edx, %edx
    mov $3, %eax
probe_xsetbv_insn:
    xsetbv
    mov $1, %eax
    ret

    .globl probe_xgetbv, probe_xgetbv_insn
probe_xgetbv:                       /* u64 (void): XCR0 (1, x87 only, at reset) */
    xor %ecx, %ecx
probe_xgetbv_insn:
    xgetbv
    ret

    .globl probe_xrstor, probe_xrstor_insn
probe_xrstor:                       /* u64 (void *area): xrstor of x87 (XCR0's reset value) from a 64-byte-aligned area */
    xor %edx, %edx
    mov $1, %eax
probe_xrstor_insn:
    xrstor (%rdi)
    mov $1, %eax
    ret

    .globl probe_fxsave, probe_fxsave_insn
probe_fxsave:                       /* u64 (void *area): fxsave; returns the saved FCW */
probe_fxsave_insn:
    fxsave (%rdi)
    movzwl (%rdi), %eax
    ret

    .globl probe_pxor, probe_pxor_insn
probe_pxor:                         /* u64 (void): an SSE2 integer instruction */
probe_pxor_insn:
    pxor %xmm0, %xmm0
    movq %xmm0, %rax
    ret

    .globl probe_movsb, probe_movsb_insn
probe_movsb:                        /* u64 (void *dst, void *src, u64 n): rep movsb; returns n left */
    mov %rdx, %rcx
probe_movsb_insn:
    rep movsb
    mov %rcx, %rax
    ret

    .globl probe_fninit, probe_fninit_insn
probe_fninit:                       /* u64 (void): fninit, then fnstcw */
probe_fninit_insn:
    fninit
    sub $8, %rsp
    fnstcw (%rsp)
    movzwl (%rsp), %eax
    add $8, %rsp
    ret

    .globl probe_crc32, probe_crc32_insn
probe_crc32:                        /* u64 (u64 x): crc32q with seed 0 */
    xor %eax, %eax
probe_crc32_insn:
    crc32q %rdi, %rax
    ret

    .globl probe_movbe, probe_movbe_insn
probe_movbe:                        /* u64 (u64 *p): movbe load */
probe_movbe_insn:
    movbe (%rdi), %rax
    ret

    .globl probe_ud2, probe_ud2_insn
probe_ud2:
probe_ud2_insn:
    ud2

    .globl probe_clac, probe_clac_insn
probe_clac:                         /* u64 (void): sets RFLAGS.AC, runs clac, returns AC (0) */
    pushfq
    orq $0x40000, (%rsp)
    popfq
probe_clac_insn:
    clac                            /* 0f 01 ca; CR4.SMAP is set by the caller */
    pushfq
    popq %rax
    shr $18, %rax
    and $1, %rax
    ret

    .section .note.GNU-stack, "", @progbits

    .text
    .globl do_stac_clac
do_stac_clac:                       /* void (u64 out[2]): RFLAGS after stac, then after clac */
    stac                            /* 0f 01 cb */
    pushfq
    popq (%rdi)
    clac                            /* 0f 01 ca */
    pushfq
    popq 8(%rdi)
    ret
