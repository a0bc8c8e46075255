/* Instructions that may fault, with fixups (extable.h): the 64-bit runtime's rdmsr_safe,
 * wrmsr_safe and rdtsc_safe. Each returns 0 when the instruction completed and nonzero when it
 * raised an exception. */
#include "extable.h"

    .code64
    .text

    /* bool rdmsr_safe(u32 msr, u64 *val): true if rdmsr raised #GP (then *val = 0). */
    .globl rdmsr_safe
rdmsr_safe:
    mov %edi, %ecx
    xor %eax, %eax
    xor %edx, %edx
1:  rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, (%rsi)
    xor %eax, %eax
    ret
2:  movq $0, (%rsi)
    mov $1, %eax
    ret
    EXTABLE 1b, 2b, EXTABLE_GP

    /* bool wrmsr_safe(u32 msr, u64 val): true if wrmsr raised #GP. */
    .globl wrmsr_safe
wrmsr_safe:
    mov %edi, %ecx
    mov %rsi, %rax
    mov %rsi, %rdx
    shr $32, %rdx
1:  wrmsr
    xor %eax, %eax
    ret
2:  mov $1, %eax
    ret
    EXTABLE 1b, 2b, EXTABLE_GP

    /* u32 rdtsc_safe(u64 *val): 0 if rdtsc ran, else 1 + the vector it raised (#UD or #GP). */
    .globl rdtsc_safe
rdtsc_safe:
1:  rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, (%rdi)
    xor %eax, %eax
    ret
2:  movq $0, (%rdi)
    inc %eax                    /* RAX = vector (set by the dispatcher) */
    ret
    EXTABLE 1b, 2b, (EXTABLE_GP | EXTABLE_UD)

    .section .note.GNU-stack, "", @progbits
