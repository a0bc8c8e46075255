/* Tight measurement loops for the bench guest, and a minimal #GP gate that skips the
 * rdmsr in bench_rdmsr_loop (anything else goes to the runtime's reporting stub). */
    .code64
    .text

    .globl bench_pio_loop
bench_pio_loop:                 /* void bench_pio_loop(u64 n): n x outb %al, $0x80 */
    test %rdi, %rdi
    jz 2f
    xor %eax, %eax
1:  outb %al, $0x80
    dec %rdi
    jnz 1b
2:  ret

    .globl bench_rdmsr_loop, bench_rdmsr_insn
bench_rdmsr_loop:               /* void bench_rdmsr_loop(u64 n, u32 msr) */
    test %rdi, %rdi
    jz 2f
1:  mov %esi, %ecx
bench_rdmsr_insn:
    rdmsr                       /* #GP: bench_gp_entry resumes 2 bytes later */
    dec %rdi
    jnz 1b
2:  ret

    .globl bench_gp_entry
bench_gp_entry:                 /* stack: error code, rip, cs, rflags, rsp, ss */
    push %rax
    lea bench_rdmsr_insn(%rip), %rax
    cmp %rax, 16(%rsp)
    pop %rax
    jne 3f
    add $8, %rsp                /* drop the error code */
    addq $2, (%rsp)             /* skip the rdmsr */
    iretq
3:  jmp *isr_stubs+13*8(%rip)   /* not ours: the runtime reports it */

    .section .note.GNU-stack, "", @progbits
