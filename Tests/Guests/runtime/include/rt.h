/* SynthVM test-guest runtime: freestanding, no host headers.
 * Shared by the 64-bit (direct boot) guests and the 32-bit multiboot guest. */
#ifndef RT_H
#define RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;
typedef unsigned long uptr;   /* pointer-sized: 32 or 64 bits */
typedef unsigned long usize;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_arg(ap, type) __builtin_va_arg(ap, type)
#define va_end(ap) __builtin_va_end(ap)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Turns a guest-physical address into a pointer (identity mapped) without letting
 * the compiler reason about "object sizes" at constant addresses. */
static inline void *phys_ptr(u64 addr)
{
    uptr p = (uptr)addr;
    __asm__("" : "+r"(p));
    return (void *)p;
}

/* string.c-style helpers (also what gcc may call for struct copies) */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
void *memmove(void *d, const void *s, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, usize n);

/* COM1 serial console */
void serial_putc(char c);
void serial_write(const char *s, usize n);
void puts(const char *s);   /* writes s and a newline */
int printf(const char *fmt, ...) PRINTF_LIKE(1, 2);
int vprintf(const char *fmt, va_list ap);

/* Ending the VM */
NORETURN void guest_exit_success(void);   /* cli; hlt forever: status 0 once every vCPU is halted */
NORETURN void guest_exit(u32 code);       /* 32-bit out of code to port 0xf4: status (code << 1) | 1 */
NORETURN void guest_fail(const char *name, const char *fmt, ...) PRINTF_LIKE(2, 3);  /* "<name>: FAIL <why>", exit 1 */

/* Command line: space-separated words, "key=value" or "key". */
/* Finds key; on success *val and *len describe the value (empty for a bare "key"). */
bool cmdline_find(const char *cmdline, const char *key, const char **val, usize *len);
/* Copies the value of key into buf (NUL-terminated, truncated to size-1). */
bool cmdline_get(const char *cmdline, const char *key, char *buf, usize size);
/* Parses the value of key as an unsigned number (decimal, or hex with 0x). */
bool cmdline_get_u64(const char *cmdline, const char *key, u64 *out);
/* True if key=value appears exactly. */
bool cmdline_is(const char *cmdline, const char *key, const char *value);
bool parse_u64(const char *s, usize len, u64 *out);

#endif
