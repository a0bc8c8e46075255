/* rtc: the CMOS RTC at 0x70/0x71. Reads the time the way Linux's mc146818_get_time does (wait
 * while UIP is set, read, retry if UIP rose or the seconds changed) in BCD / 24-hour mode (the
 * reset state), in binary mode and in 12-hour mode, and checks they agree; watches one update
 * (UIP must be seen, and the seconds must have advanced when it falls); sets the clock with SET
 * and reads it back; writes and reads CMOS RAM with the NMI-disable bit set in the index.
 * Output: "rtc: status a=.. b=.. c=.. d=..", "rtc: bcd <Y-M-D h:m:s> wday <n>",
 * "rtc: binary <...>", "rtc: 12h hour=<1-12> pm=<0/1>", "rtc: update seen after <n> reads",
 * "rtc: set <...>", "rtc: ram ok", "rtc: ok". */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"

#define A 0x0a
#define B 0x0b
#define C 0x0c
#define D 0x0d
#define UIP 0x80

static u8 rd(u8 index)
{
    outb(0x70, index);
    return inb(0x71);
}

static void wr(u8 index, u8 value)
{
    outb(0x70, index);
    outb(0x71, value);
}

struct rtc_time {
    u32 sec, min, hour, wday, mday, mon, year, century;
};

static u32 bcd(u8 v) { return (v >> 4) * 10 + (v & 15); }

/* Raw register values, consistent (no update in between), like mc146818_get_time. */
static struct rtc_time read_raw(void)
{
    struct rtc_time t;
    for (u32 tries = 0;; tries++) {
        if (tries > 1000000)
            guest_fail("rtc", "no consistent read in a million tries");
        u8 sec = rd(0x00);
        if (rd(A) & UIP)
            continue;
        t.sec = sec;
        t.min = rd(0x02);
        t.hour = rd(0x04);
        t.wday = rd(0x06);
        t.mday = rd(0x07);
        t.mon = rd(0x08);
        t.year = rd(0x09);
        t.century = rd(0x32);
        if (!(rd(A) & UIP) && rd(0x00) == sec)
            return t;
    }
}

static struct rtc_time decode(struct rtc_time r, bool binary)
{
    if (binary)
        return r;
    struct rtc_time t = { bcd(r.sec), bcd(r.min), bcd(r.hour), bcd(r.wday), bcd(r.mday), bcd(r.mon), bcd(r.year),
                          bcd(r.century) };
    return t;
}

static u32 seconds_of_day(struct rtc_time t) { return t.hour * 3600 + t.min * 60 + t.sec; }

static void print(const char *what, struct rtc_time t)
{
    printf("rtc: %s %u%02u-%02u-%02u %02u:%02u:%02u wday %u\n", what, t.century, t.year, t.mon, t.mday, t.hour, t.min,
           t.sec, t.wday);
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    u8 a = rd(A), b = rd(B), c = rd(C), d = rd(D);
    printf("rtc: status a=0x%02x b=0x%02x c=0x%02x d=0x%02x\n", a, b, c, d);
    if ((a & 0x7f) != 0x26 || b != 0x02 || d != 0x80)
        guest_fail("rtc", "unexpected reset status");

    struct rtc_time t1 = decode(read_raw(), false);
    print("bcd", t1);
    wr(B, 0x06); /* binary, 24-hour */
    struct rtc_time t2 = decode(read_raw(), true);
    print("binary", t2);
    if (t2.mday != t1.mday && seconds_of_day(t2) > 60)
        guest_fail("rtc", "BCD and binary readings disagree on the day");
    if (seconds_of_day(t2) - seconds_of_day(t1) > 60 && seconds_of_day(t2) > 60)
        guest_fail("rtc", "BCD and binary readings are %u s apart", seconds_of_day(t2) - seconds_of_day(t1));

    /* 12-hour mode (BCD): compare with a 24-hour read of the same second. */
    for (;;) {
        wr(B, 0x02);
        struct rtc_time h24 = decode(read_raw(), false);
        wr(B, 0x00);
        struct rtc_time h12raw = read_raw();
        if (bcd(h12raw.sec) != h24.sec)
            continue; /* an update came in between: try again */
        u32 hour12 = bcd(h12raw.hour & 0x7f), pm = h12raw.hour >> 7;
        printf("rtc: 12h hour=%u pm=%u\n", hour12, pm);
        if (hour12 < 1 || hour12 > 12 || (hour12 % 12) + 12 * pm != h24.hour)
            guest_fail("rtc", "12-hour %u%s does not match 24-hour %u", hour12, pm ? " PM" : " AM", h24.hour);
        break;
    }
    wr(B, 0x02);

    /* One update: UIP rises before the seconds change, and once it has fallen they have
     * changed. A read can miss the 244 us window (the vCPU may be descheduled between two
     * reads), so seconds changing unseen only means "look again"; ten misses in a row fail. */
    u32 reads = 0, misses = 0;
    u8 before = rd(0x00);
    for (;;) {
        reads++;
        u8 sec = rd(0x00);
        if (rd(A) & UIP) {
            before = sec;
            break;
        }
        if (sec != before && ++misses > 10)
            guest_fail("rtc", "UIP not seen in %u updates", misses);
        before = sec;
    }
    while (rd(A) & UIP)
        reads++;
    u8 after = rd(0x00);
    if (after == before)
        guest_fail("rtc", "UIP fell but the seconds stayed at %02x", after);
    printf("rtc: update seen after %u reads\n", reads);

    /* Set 2001-02-03 04:05:06 (BCD), read it back frozen, let it run. */
    wr(B, 0x82);
    if ((rd(A) & UIP) || !(rd(B) & 0x80))
        guest_fail("rtc", "SET did not freeze the clock");
    wr(0x00, 0x06);
    wr(0x02, 0x05);
    wr(0x04, 0x04);
    wr(0x06, 0x07);
    wr(0x07, 0x03);
    wr(0x08, 0x02);
    wr(0x09, 0x01);
    wr(0x32, 0x20);
    struct rtc_time s = decode(read_raw(), false);
    print("set", s);
    if (s.sec != 6 || s.min != 5 || s.hour != 4 || s.wday != 7 || s.mday != 3 || s.mon != 2 || s.year != 1 ||
        s.century != 20)
        guest_fail("rtc", "the frozen clock does not read back what was written");
    wr(B, 0x02);
    struct rtc_time r = decode(read_raw(), false);
    if (r.year != 1 || r.mon != 2 || r.mday != 3 || r.hour != 4 || r.min != 5 || r.sec < 6)
        guest_fail("rtc", "the clock did not run on from the written time");

    /* CMOS RAM, with the NMI-disable bit in every index. */
    for (u32 i = 0x40; i < 0x80; i++) {
        outb(0x70, 0x80 | i);
        outb(0x71, (u8)(i * 7 + 1));
    }
    for (u32 i = 0x40; i < 0x80; i++)
        if (rd((u8)i) != (u8)(i * 7 + 1))
            guest_fail("rtc", "CMOS RAM byte 0x%x reads 0x%x", i, rd((u8)i));
    puts("rtc: ram ok");
    puts("rtc: ok");
}
