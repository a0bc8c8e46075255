/* storvscbench: the guest-level storvsc figure (issue 13 item 7, "for the record"; run by
 * `synthvm-bench storvsc`, docs/storage.md "Benchmark"). Run with `--disk scratch.img`, 1 vCPU;
 * the host fills the whole image with pattern(off, seed) (storvsc_guest.h) first.
 * Command line: `qd1=N` 4 KiB requests per QD1 workload (default 2000), `deep=N` per deep-queue
 * workload (4000), `depth=D` their queue depth (2...32, default 16), `seq=N` 1 MiB requests per
 * sequential workload (128), `verify=N` requests read back after each write workload (32),
 * `own=N` iterations of the own-cost loop (2000), `seed=N` the image's pattern (1).
 *
 * Setup: VMBus 5.3, REQUESTOFFERS (the SCSI controller must be offered), the channel opened and
 * initialised at protocol 0x0602, READ CAPACITY (10). The disk is four quarters of Q bytes (a
 * quarter of the capacity, whole MiB, at least 1): 4 KiB random reads in the first, random
 * writes in the second, 1 MiB sequential reads in the third, sequential writes in the fourth
 * (wrapping). Random 4 KiB slots are a permutation of the quarter's slots (slot = (i + k) * odd
 * mod a power of two), so no LBA repeats within a workload while it has fewer requests than
 * slots; every request is one READ(10) or WRITE(10) with a GPA-direct buffer (one page per 4 KiB,
 * 256 per 1 MiB: page lists made once, before timing).
 *
 * Each workload keeps `depth` SRBs outstanding on the ring (1 for QD1 and 1 MiB): it publishes
 * the first `depth`, then reads every completion there is, matches it by transaction id (the
 * low 6 bits name the slot; the id must be the slot's outstanding one, else FAIL), checks it
 * (VM_PKT_COMP, 12 + SRB size bytes, COMPLETE_IO, status 0, SRB_STATUS_SUCCESS, GOOD, the whole
 * transfer moved) and refills the slot, with one commit (and a signal only when the ring rules
 * say so) per pass; with nothing to read it takes the SIEF bit and waits with `sti; hlt`
 * (woken by SINT2 or the 10 ms watchdog tick). The time is TIME_REF_COUNT (100 ns units) from
 * the first publish to the last completion, and includes the guest's per-request data work:
 * - reads: three sample words of each request's buffer (its first, its last and one picked by
 *   the offset) are poisoned before the request and must hold pattern(disk offset, seed) after;
 * - writes: the same three words are stamped with pattern(disk offset, seed ^ workload tag);
 *   after the workload (not timed) `verify` of its requests, evenly spread, are read back at
 *   QD1 and their sample words compared.
 * The guest's own cost of one 4 KiB request (the SRB built, put into a ring no host sees with
 * its page list, committed, and a completion read back and checked: what a request costs the
 * guest with no host at all) is timed over `own` iterations.
 * Lines: `storvscbench: own n=<n> elapsed=<100 ns units>`, then per workload
 * `storvscbench: workload <name> requests=<n> depth=<d> bytes=<b> elapsed=<100 ns units>
 * req/s=<n> MiB/s=<n.n> verified=<requests whose data was checked>`, then `storvscbench: ok`.
 * Any failed check: `storvscbench: FAIL <why>` (status 3). */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "synictest.h"
#include "vmbus_guest.h"
#include "storvsc_guest.h"

#define NAME "storvscbench"
#define MAX_DEPTH 32
#define SMALL 4096u
#define LARGE (1u << 20)
#define LARGE_PAGES (LARGE / 4096)
#define WAIT (20 * SECOND)
#define POISON 0xdeadbeefdeadbeefull

static u8 small_bufs[MAX_DEPTH][SMALL] __attribute__((aligned(4096)));
static u8 large_buf[LARGE] __attribute__((aligned(4096)));
static u8 ring_scratch[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u64 small_ext[MAX_DEPTH][3];
static u64 large_ext[2 + LARGE_PAGES];
static u64 seed = 1;
static u64 quarter;        /* bytes */
static u32 slot_mask;      /* 4 KiB slots in a quarter, minus one (a power of two) */
static u64 large_slots;    /* MiB in a quarter */

/* One workload. */
struct workload {
    const char *name;
    bool write;
    bool large;
    u32 depth;
    u32 requests;
    u64 tag;               /* writes: the pattern is seed ^ tag */
};

/* A request in flight. */
struct slot {
    u64 id;
    u64 off;               /* disk byte offset */
    bool busy;
};

static struct slot slots[MAX_DEPTH];
static u64 next_seq = 1;

/* ---- the layout ---- */

/* The disk byte offset of request i of workload w. */
static u64 offset_of(const struct workload *w, u32 i)
{
    if (w->large)
        return (w->write ? 3 : 2) * quarter + (i % large_slots) * LARGE;
    u32 slot = (u32)(((u64)i + 0x5bd1e995u) * 0x9E3779B1u) & slot_mask;
    return (w->write ? 1 : 0) * quarter + (u64)slot * SMALL;
}

static u64 seed_of(const struct workload *w) { return w->write ? seed ^ w->tag : seed; }

/* The three sample word offsets in a buffer of len bytes at disk offset off. */
static inline void samples(u64 off, u32 len, u32 at[3])
{
    at[0] = 0;
    at[1] = len - 8;
    at[2] = (u32)((pattern(off, 0x5a5a) >> 7) % (len / 8)) * 8;
}

static u8 *buffer_of(const struct workload *w, u32 s) { return w->large ? large_buf : small_bufs[s]; }

/* ---- requests ---- */

/* Builds request i of w into slot s and puts it at *cursor (not published). */
static void put_request(const struct workload *w, u32 s, u32 i, u32 *cursor)
{
    u32 len = w->large ? LARGE : SMALL;
    u64 off = offset_of(w, i);
    u8 *buf = buffer_of(w, s);
    u32 at[3];
    samples(off, len, at);
    u64 sd = seed_of(w);
    for (u32 k = 0; k < 3; k++)
        *(u64 *)(buf + at[k]) = w->write ? pattern(off + at[k], sd) : POISON;
    struct req q = rw(0, w->write, 10, off / BLOCK, len / BLOCK, false, buf);
    u8 p[64] __attribute__((aligned(8)));
    srb_packet(p, &q);
    slots[s].id = next_seq++ << 6 | s;
    slots[s].off = off;
    slots[s].busy = true;
    if (w->large)
        ring_put_packet(scsi.ring, cursor, 9, 1, slots[s].id, large_ext, 2 + LARGE_PAGES, p, 12 + srb_size);
    else
        ring_put_packet(scsi.ring, cursor, 9, 1, slots[s].id, small_ext[s], 3, p, 12 + srb_size);
}

/* Checks the completion in pkt (transaction id, type, length) for w; returns its slot. */
static u32 take_completion(const struct workload *w, u64 id, u16 type, u32 len)
{
    u32 s = (u32)(id & 63);
    if (s >= w->depth || !slots[s].busy || slots[s].id != id)
        fail("%s: a completion for transaction 0x%llx, which is not outstanding", w->name, id);
    u32 bytes = w->large ? LARGE : SMALL;
    u32 srb = pkt[14], scsi_status = pkt[15], xfer = get32(pkt, 24);
    if (type != 0xb || len != 12 + srb_size || get32(pkt, 0) != OP_COMPLETE_IO || get32(pkt, 8) != 0 || srb != SRB_SUCCESS
        || scsi_status != 0 || xfer != bytes)
        fail("%s: offset 0x%llx: packet type %u len %u op %u status 0x%x srb 0x%x scsi 0x%x sense %x/%02x/%02x, %u bytes moved",
             w->name, slots[s].off, type, len, get32(pkt, 0), get32(pkt, 8), srb, scsi_status, pkt[30] & 15, pkt[40], pkt[41],
             xfer);
    slots[s].busy = false;
    return s;
}

/* Compares the sample words of the buffer of a request at disk offset off. */
static void check_samples(const char *what, const u8 *buf, u64 off, u32 len, u64 sd)
{
    u32 at[3];
    samples(off, len, at);
    for (u32 k = 0; k < 3; k++) {
        u64 got = *(const u64 *)(buf + at[k]), want = pattern(off + at[k], sd);
        if (got != want)
            fail("%s: disk offset 0x%llx: read 0x%llx, expected 0x%llx%s", what, off + at[k], got, want,
                 got == POISON ? " (the buffer was not written)" : "");
    }
}

/* Runs w; returns the elapsed reference time. */
static u64 run(const struct workload *w)
{
    u32 issued = 0, done = 0, waits = 0;
    u64 t0 = st_now(), last = t0;
    u32 cursor = ctl(scsi.ring, false)[0];
    while (issued < w->depth && issued < w->requests) {
        put_request(w, issued, issued, &cursor);
        issued++;
    }
    if (ring_commit(scsi.ring, cursor))
        signal_host(&scsi, conn_scsi);
    while (done < w->requests) {
        u32 len;
        u64 id;
        u16 type;
        bool refill = false;
        cursor = ctl(scsi.ring, false)[0];
        while (ring_read(scsi.ring, &len, &id, &type)) {
            u32 s = take_completion(w, id, type, len);
            done++;
            if (!w->write)
                check_samples(w->name, buffer_of(w, s), slots[s].off, w->large ? LARGE : SMALL, seed);
            if (issued < w->requests) {
                put_request(w, s, issued++, &cursor);
                refill = true;
            }
        }
        if (refill) {
            if (ring_commit(scsi.ring, cursor))
                signal_host(&scsi, conn_scsi);
            waits = 0;
            continue;
        }
        if (done == w->requests)
            break;
        if (sief_take(scsi.relid))
            continue;   /* a completion was announced: read again before halting */
        if (++waits % 256 == 0) {
            u64 now = st_now();
            if (now - last > WAIT)
                fail("%s: %u of %u requests completed, none for 20 s", w->name, done, w->requests);
        } else if (waits == 1) {
            last = st_now();
        }
        st_idle();
    }
    return st_now() - t0;
}

/* After a write workload: `verify` of its requests read back at QD1, sample words compared. */
static u32 verify_writes(const struct workload *w, u32 verify)
{
    u32 n = verify < w->requests ? verify : w->requests;
    u32 len = w->large ? LARGE : SMALL;
    u8 *buf = w->large ? large_buf : small_bufs[0];
    struct reply r;
    for (u32 k = 0; k < n; k++) {
        u32 i = (u32)((u64)k * w->requests / n);
        /* A later request of the workload may have written the same place (1 MiB wraps): then
         * it holds the same pattern, which depends only on the offset and the seed. */
        u64 off = offset_of(w, i);
        u32 at[3];
        samples(off, len, at);
        for (u32 j = 0; j < 3; j++)
            *(u64 *)(buf + at[j]) = POISON;
        struct req q = rw(0, false, 10, off / BLOCK, len / BLOCK, false, buf);
        exec(&q, &r, "read back");
        expect_good(&r, len, "read back");
        check_samples(w->name, buf, off, len, seed_of(w));
    }
    return n;
}

/* The guest's own cost of one 4 KiB request, no host involved: the SRB built, put into the
 * guest-to-host half of a ring no host sees with its page list and committed, then a 64-byte
 * completion read from its host-to-guest half and checked (indices reset every time). */
static u64 own_cost(u32 n)
{
    ring_init(ring_scratch);
    /* The descriptor (completion, offset8 2, len8 10), the transaction id, then the 64-byte
     * vstor_packet: COMPLETE_IO, status 0, SRB_STATUS_SUCCESS (byte 14), the whole 4 KiB moved
     * (bytes 24-27); the trailer (0: the packet starts at 0) last. */
    u64 words[11] = {0xbull | 2ull << 16 | 10ull << 32, 7, OP_COMPLETE_IO, (u64)SRB_SUCCESS << 48, 0, SMALL};
    u32 o = 0;
    put_words(data(ring_scratch, true), &o, words, 11);
    ctl(ring_scratch, true)[0] = o;
    struct workload w = {"own", false, false, 1, n, 0};
    u64 t0 = st_now();
    for (u32 i = 0; i < n; i++) {
        ctl(ring_scratch, false)[0] = 0;
        ctl(ring_scratch, false)[1] = 0;
        ctl(ring_scratch, true)[1] = 0;
        u32 cursor = 0;
        u64 off = offset_of(&w, i);
        struct req q = rw(0, false, 10, off / BLOCK, SMALL / BLOCK, false, small_bufs[0]);
        u8 p[64] __attribute__((aligned(8)));
        srb_packet(p, &q);
        ring_put_packet(ring_scratch, &cursor, 9, 1, i, small_ext[0], 3, p, 12 + srb_size);
        ring_commit(ring_scratch, cursor);
        u32 len;
        u64 id;
        u16 type;
        if (!ring_read(ring_scratch, &len, &id, &type) || id != 7 || type != 0xb || get32(pkt, 0) != OP_COMPLETE_IO
            || pkt[14] != SRB_SUCCESS || get32(pkt, 24) != SMALL)
            fail("own cost: the scratch ring's completion did not read back");
    }
    return st_now() - t0;
}

/* ---- setup ---- */

/* dst = prefix followed by d in decimal (d < 100). */
static void name_qd(char *dst, const char *prefix, u32 d)
{
    u32 n = 0;
    while (prefix[n]) {
        dst[n] = prefix[n];
        n++;
    }
    if (d >= 10)
        dst[n++] = (char)('0' + d / 10);
    dst[n++] = (char)('0' + d % 10);
    dst[n] = 0;
}

/* READ CAPACITY (10): the disk's size in bytes. */
static u64 capacity(void)
{
    struct reply r;
    u8 *b = small_bufs[0];
    struct req q = data_req(0, 1, b, 8);
    q.cdb[0] = 0x25;
    q.cdb_len = 10;
    exec(&q, &r, "READ CAPACITY(10)");
    expect_good(&r, 8, "READ CAPACITY(10)");
    if (be32(b + 4) != BLOCK)
        fail("READ CAPACITY(10): block size %u", be32(b + 4));
    return ((u64)be32(b) + 1) * BLOCK;
}

/* The page lists, made once: one page per 4 KiB buffer, 256 for the 1 MiB one. */
static void page_lists(void)
{
    for (u32 s = 0; s < MAX_DEPTH; s++) {
        small_ext[s][0] = 1ull << 32;   /* reserved, range count 1 */
        small_ext[s][1] = SMALL;        /* len, offset 0 */
        small_ext[s][2] = (u64)(uptr)small_bufs[s] >> 12;
    }
    large_ext[0] = 1ull << 32;
    large_ext[1] = LARGE;
    for (u32 i = 0; i < LARGE_PAGES; i++)
        large_ext[2 + i] = ((u64)(uptr)large_buf >> 12) + i;
}

void guest_main(const struct boot_info *bi)
{
    st_init(NAME);
    printf(NAME ": start\n");
    const char *cmdline = (const char *)phys_ptr(bi->cmdline);
    u64 qd1 = 2000, deep = 4000, depth = 16, seq = 128, verify = 32, own = 2000;
    cmdline_get_u64(cmdline, "qd1", &qd1);
    cmdline_get_u64(cmdline, "deep", &deep);
    cmdline_get_u64(cmdline, "depth", &depth);
    cmdline_get_u64(cmdline, "seq", &seq);
    cmdline_get_u64(cmdline, "verify", &verify);
    cmdline_get_u64(cmdline, "own", &own);
    cmdline_get_u64(cmdline, "seed", &seed);
    if (!qd1 || !deep || !seq || !verify || !own || qd1 > 1000000 || deep > 1000000 || seq > 100000 || own > 1000000
        || depth < 2 || depth > MAX_DEPTH)
        guest_fail(NAME, "qd1=%llu deep=%llu seq=%llu verify=%llu own=%llu depth=%llu: counts 1...1000000 (seq 100000), "
                   "depth 2...%u", qd1, deep, seq, verify, own, depth, MAX_DEPTH);
    vmbus_guest_start(bi);
    if (ncpus != 1)
        fail("run with 1 vCPU");
    u32 state, conn_id;
    if (!contact(4, 0x50003, 0, &state, &conn_id))
        fail("VMBus 5.3 refused");
    scsi_find_controller();
    scsi_open_0602();
    page_lists();
    u64 bytes = capacity();
    quarter = bytes / 4 / LARGE * LARGE;
    if (quarter < LARGE)
        fail("a disk of %llu bytes: at least 4 MiB needed", bytes);
    large_slots = quarter / LARGE;
    u32 nslots = 1;
    while ((u64)nslots * 2 * SMALL <= quarter)
        nslots *= 2;
    slot_mask = nslots - 1;
    st_printf(NAME ": scsi (relid %u) open, protocol 0x0602, %llu MiB disk: quarters of %llu MiB, %u 4 KiB slots each; "
              "qd1=%llu deep=%llu depth=%llu seq=%llu verify=%llu seed=%llu\n", scsi.relid, bytes >> 20, quarter >> 20, nslots,
              qd1, deep, depth, seq, verify, seed);
    u64 t = own_cost((u32)own);
    st_printf(NAME ": own n=%llu elapsed=%llu\n", own, t);
    static char deep_read[32], deep_write[32];
    name_qd(deep_read, "4k-randread-qd", (u32)depth);
    name_qd(deep_write, "4k-randwrite-qd", (u32)depth);
    const struct workload all[] = {
        {"4k-randread-qd1", false, false, 1, (u32)qd1, 0},
        {"4k-randwrite-qd1", true, false, 1, (u32)qd1, 0x1111},
        {deep_read, false, false, (u32)depth, (u32)deep, 0},
        {deep_write, true, false, (u32)depth, (u32)deep, 0x2222},
        {"1m-seqread-qd1", false, true, 1, (u32)seq, 0},
        {"1m-seqwrite-qd1", true, true, 1, (u32)seq, 0x3333},
    };
    for (u32 k = 0; k < ARRAY_SIZE(all); k++) {
        const struct workload *w = &all[k];
        u64 elapsed = run(w);
        if (elapsed == 0)
            elapsed = 1;
        u32 verified = w->write ? verify_writes(w, (u32)verify) : w->requests;
        u32 len = w->large ? LARGE : SMALL;
        u64 rate = (u64)w->requests * 10000000ull / elapsed;
        u64 mib10 = (u64)w->requests * (len >> 10) * 10000000ull / elapsed * 10 / 1024;
        st_printf(NAME ": workload %s requests=%u depth=%u bytes=%u elapsed=%llu req/s=%llu MiB/s=%llu.%llu verified=%u\n",
                  w->name, w->requests, w->depth, len, elapsed, rate, mib10 / 10, mib10 % 10, verified);
    }
    vmbus_guest_finish();
    printf(NAME ": ok\n");
    guest_exit_success();
}
