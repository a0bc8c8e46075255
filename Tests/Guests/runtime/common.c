/* Architecture-neutral part of the guest runtime (built for -m64 and -m32):
 * memory/string helpers, COM1 output, printf, exit, command-line parsing. */
#include "rt.h"
#include "x86.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20
#define EXIT_PORT 0xf4

/* ---- memory and strings (gcc may emit calls to the mem* ones) ---- */

void *memset(void *d, int c, usize n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, usize n)
{
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, usize n)
{
    u8 *dp = d;
    const u8 *sp = s;
    if (dp < sp) {
        while (n--)
            *dp++ = *sp++;
    } else {
        while (n--)
            dp[n] = sp[n];
    }
    return d;
}

int memcmp(const void *a, const void *b, usize n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

usize strlen(const char *s)
{
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}

int strncmp(const char *a, const char *b, usize n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

/* ---- serial ---- */

void serial_putc(char c)
{
    /* Wait (bounded) for the transmit holding register to be empty. An absent UART
     * reads as all-ones, which has the bit set, so this never spins long. */
    for (int i = 0; i < 100000; i++)
        if (inb(COM1_LSR) & LSR_THRE)
            break;
    outb(COM1, (u8)c);
}

void serial_write(const char *s, usize n)
{
    while (n--)
        serial_putc(*s++);
}

void puts(const char *s)
{
    serial_write(s, strlen(s));
    serial_putc('\n');
}

/* ---- printf: %d %i %u %x %X %c %s %p %%, flags '-' '0', width (or '*'), l/ll/z ---- */

/* Divides *v by 10 and returns the remainder using only 32-bit divisions, so that the
 * 32-bit build needs no libgcc (__udivdi3). */
static u32 divmod10(u64 *v)
{
    u64 x = *v, q = 0;
    u32 r = 0;
    for (int shift = 48; shift >= 0; shift -= 16) {
        u32 cur = (r << 16) | (u32)((x >> shift) & 0xffff);
        q = (q << 16) | (cur / 10);
        r = cur % 10;
    }
    *v = q;
    return r;
}

static int utoa(char *buf, u64 v, int base, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        if (base == 16) {
            tmp[n++] = digits[v & 0xf];
            v >>= 4;
        } else {
            tmp[n++] = digits[divmod10(&v)];
        }
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void pad(char c, int n)
{
    while (n-- > 0)
        serial_putc(c);
}

int vprintf(const char *fmt, va_list ap)
{
    int out = 0;
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            out++;
            continue;
        }
        fmt++;
        bool left = false, zero = false;
        for (;; fmt++) {
            if (*fmt == '-')
                left = true;
            else if (*fmt == '0')
                zero = true;
            else
                break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int lng = 0;   /* 0 int, 1 long, 2 long long */
        if (*fmt == 'l') {
            lng = 1;
            fmt++;
            if (*fmt == 'l') {
                lng = 2;
                fmt++;
            }
        } else if (*fmt == 'z') {
            lng = 1;
            fmt++;
        }
        char buf[26];
        int len = 0;
        const char *str = buf;
        bool neg = false;
        switch (*fmt) {
        case 'd':
        case 'i': {
            s64 v = lng == 2 ? va_arg(ap, s64) : lng == 1 ? (s64)va_arg(ap, long) : (s64)va_arg(ap, int);
            u64 m = (u64)v;
            if (v < 0) {
                neg = true;
                m = -m;
            }
            len = utoa(buf, m, 10, false);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            u64 v = lng == 2 ? va_arg(ap, u64)
                  : lng == 1 ? (u64)va_arg(ap, unsigned long)
                             : (u64)va_arg(ap, unsigned int);
            len = utoa(buf, v, *fmt == 'u' ? 10 : 16, *fmt == 'X');
            break;
        }
        case 'p': {
            u64 v = (uptr)va_arg(ap, void *);
            buf[0] = '0';
            buf[1] = 'x';
            len = 2 + utoa(buf + 2, v, 16, false);
            break;
        }
        case 'c':
            buf[0] = (char)va_arg(ap, int);
            len = 1;
            break;
        case 's':
            str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            len = (int)strlen(str);
            break;
        case '%':
            buf[0] = '%';
            len = 1;
            break;
        case '\0':
            return out;
        default:   /* unknown: print it verbatim */
            buf[0] = '%';
            buf[1] = *fmt;
            len = 2;
            break;
        }
        int fill = width - len - (neg ? 1 : 0);
        if (!left && !(zero && *fmt != 's' && *fmt != 'c'))
            pad(' ', fill);
        if (neg)
            serial_putc('-');
        if (!left && zero && *fmt != 's' && *fmt != 'c')
            pad('0', fill);
        serial_write(str, (usize)len);
        if (left)
            pad(' ', fill);
        out += len + (neg ? 1 : 0) + (fill > 0 ? fill : 0);
    }
    return out;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

/* ---- exit ---- */

void guest_exit_success(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

void guest_exit(u32 code)
{
    outl(EXIT_PORT, code);
    /* The VMM stops the VM at the write; should it not, stay halted. */
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

void guest_fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    printf("%s: FAIL ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    serial_putc('\n');
    guest_exit(1);
}

/* ---- command line ---- */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool cmdline_find(const char *cmdline, const char *key, const char **val, usize *len)
{
    if (!cmdline)
        return false;
    usize klen = strlen(key);
    const char *p = cmdline;
    while (*p) {
        while (*p && is_space(*p))
            p++;
        const char *w = p;
        while (*p && !is_space(*p))
            p++;
        usize wlen = (usize)(p - w);
        if (wlen >= klen && strncmp(w, key, klen) == 0) {
            if (wlen == klen) {
                *val = w + wlen;
                *len = 0;
                return true;
            }
            if (w[klen] == '=') {
                *val = w + klen + 1;
                *len = wlen - klen - 1;
                return true;
            }
        }
    }
    return false;
}

bool cmdline_get(const char *cmdline, const char *key, char *buf, usize size)
{
    const char *v;
    usize n;
    if (!cmdline_find(cmdline, key, &v, &n) || size == 0)
        return false;
    if (n > size - 1)
        n = size - 1;
    memcpy(buf, v, n);
    buf[n] = 0;
    return true;
}

bool parse_u64(const char *s, usize len, u64 *out)
{
    u64 v = 0;
    usize i = 0;
    bool hex = len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    if (hex)
        i = 2;
    if (i == len)
        return false;
    for (; i < len; i++) {
        char c = s[i];
        u32 d;
        if (c >= '0' && c <= '9')
            d = (u32)(c - '0');
        else if (hex && c >= 'a' && c <= 'f')
            d = (u32)(c - 'a' + 10);
        else if (hex && c >= 'A' && c <= 'F')
            d = (u32)(c - 'A' + 10);
        else
            return false;
        v = hex ? (v << 4) | d : v * 10 + d;
    }
    *out = v;
    return true;
}

bool cmdline_get_u64(const char *cmdline, const char *key, u64 *out)
{
    const char *v;
    usize n;
    return cmdline_find(cmdline, key, &v, &n) && parse_u64(v, n, out);
}

bool cmdline_is(const char *cmdline, const char *key, const char *value)
{
    const char *v;
    usize n;
    return cmdline_find(cmdline, key, &v, &n) && n == strlen(value) && strncmp(v, value, n) == 0;
}
