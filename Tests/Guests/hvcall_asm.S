/* hvcall_regs(struct hc_regs *r): loads every general register but RSP from *r, calls the
 * hypercall page (hv_hypercall_pg) and stores every register back into *r, so that hvcall can
 * check which ones the call changed. Layout of struct hc_regs (hvcall.c): rax rbx rcx rdx rsi
 * rdi rbp r8 r9 r10 r11 r12 r13 r14 r15, 8 bytes each. */
    .code64
    .text
    .globl hvcall_regs
hvcall_regs:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                   /* the struct, for after the call */
    mov 0(%rdi), %rax
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 48(%rdi), %rbp
    mov 56(%rdi), %r8
    mov 64(%rdi), %r9
    mov 72(%rdi), %r10
    mov 80(%rdi), %r11
    mov 88(%rdi), %r12
    mov 96(%rdi), %r13
    mov 104(%rdi), %r14
    mov 112(%rdi), %r15
    mov 40(%rdi), %rdi
    call *hv_hypercall_pg(%rip)
    xchg %rdi, (%rsp)           /* RDI = the struct; the stack slot = RDI after the call */
    mov %rax, 0(%rdi)
    mov %rbx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rdx, 24(%rdi)
    mov %rsi, 32(%rdi)
    mov %rbp, 48(%rdi)
    mov %r8, 56(%rdi)
    mov %r9, 64(%rdi)
    mov %r10, 72(%rdi)
    mov %r11, 80(%rdi)
    mov %r12, 88(%rdi)
    mov %r13, 96(%rdi)
    mov %r14, 104(%rdi)
    mov %r15, 112(%rdi)
    pop %rax
    mov %rax, 40(%rdi)
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    .section .note.GNU-stack, "", @progbits
