/* Faulting instructions at known addresses, for the exceptions guest. */
    .code64
    .text

    .globl do_ud2, ud2_insn
do_ud2:
ud2_insn:
    ud2                         /* 2 bytes; the #UD handler resumes after it */
    ret

    .globl do_rdmsr, rdmsr_insn
do_rdmsr:                       /* u64 do_rdmsr(u32 msr) */
    mov %edi, %ecx
    xor %eax, %eax
    xor %edx, %edx
rdmsr_insn:
    rdmsr                       /* 2 bytes (0f 32) */
    shl $32, %rdx
    or %rdx, %rax
    ret

    .globl do_div0, div0_insn, div0_resume
do_div0:                        /* u32 do_div0(void): returns 0xd100 once resumed */
    mov $1, %eax
    xor %edx, %edx
    xor %ecx, %ecx
div0_insn:
    divl %ecx
div0_resume:
    mov $0xd100, %eax
    ret

    .section .note.GNU-stack, "", @progbits
