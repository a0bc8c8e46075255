/* soak: keeps every worker busy while synthvm-bench faults kills them (docs/faults.md, "Soak").
 * Run with `--hyperv-testdev --disk a.img` and the VMBus worker's `--test-echo-device`
 * (`synthvm-bench faults` passes them), 1 vCPU. Command line: `per=N` router records of each kind
 * per batch (default 10), `echoes=N` echo packets per batch (1...32, default 8), `writes=N` disk
 * writes per batch (1...8, default 4), `seed=N` (the disk pattern), `batches=N` (0: until stopped).
 *
 * Setup: VMBus 5.3, REQUESTOFFERS (the echo device and the SCSI controller must be offered), the
 * echo channel opened in echo mode, the SCSI channel opened and initialised at protocol 0x0602
 * (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION, QUERY_PROPERTIES, END_INITIALIZATION); a
 * test-device message connection (7) to SINT4 and an event connection (9) to SINT3. SINT2, 3
 * and 4 share the vector VMBus uses, so any of them wakes a wait.
 * Then per batch b (1, 2, ...):
 *   1. the SynIC router: `per` test-device writes it decodes and ignores; `per` HvPostMessage to
 *      connection 7, each checked in the SINT4 slot by its sequence number (one that never arrives
 *      is lost, a slot holding an earlier number duplicated), freed, EOM; `per` HvSignalEvent to
 *      connection 9, each seen as flag 9 of SINT3 and cleared;
 *   2. VMBus: `echoes` packets into the echo channel's ring in one commit (transaction id and
 *      payload the echo sequence number), then every echo read back: each exactly once, in order,
 *      payload intact (an earlier number is duplicated, a later one means one was lost);
 *   3. storage: `writes` WRITE(10)s of 8 blocks, all outstanding at once, to slots
 *      ((b - 1) * writes + j) mod 32 of 8 blocks from LBA 2048, filled with pattern(disk offset,
 *      seed ^ b * 0x9E3779B97F4A7C15) (storvsc_guest.h); then READ(10)s of the same blocks, all
 *      outstanding, compared. Every completion's transaction id must be one of those outstanding
 *      and not completed yet (else duplicated), with COMPLETE_IO, status 0, SRB_STATUS_SUCCESS,
 *      SCSI GOOD and the whole transfer (else a guest-visible error).
 * Any wait is bounded (10 s of reference time): what does not come is lost.
 * After each batch: `soak: batch <b> messages=<n> events=<n> echoes=<n> writes=<n> reads=<n>`
 * (totals verified so far). The first discrepancy stops the guest with
 * `soak: FAIL <lost|duplicated|error>: <what>` (status 3). With `batches=N`: `soak: ok` after N. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "synictest.h"
#include "vmbus_guest.h"
#include "storvsc_guest.h"

#define NAME "soak"
#define TESTDEV 0x3000
#define CTL_MSG_CREATE 4
#define CTL_EVT_CREATE 6
#define MSG_CONN 7
#define EVT_CONN 9
#define MSG_SINT 4
#define EVT_SINT 3
#define WAIT (10 * SECOND)
#define MAX_ECHOES 32
#define MAX_WRITES 8
#define SLOTS 32
#define SLOT_BLOCKS 8
#define SLOT_BYTES (SLOT_BLOCKS * BLOCK)
#define FIRST_LBA 2048

static struct channel echo = {"echo", {0x4a, 0x0c, 0x1f, 0x5e, 0x2b, 0x9d, 0x1e, 0x4c, 0x8f, 0x3a, 0x01, 0x23, 0x45, 0x67, 0x89, 0xec}};
static u8 ring_echo[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 wbufs[MAX_WRITES][SLOT_BYTES] __attribute__((aligned(4096)));
static u8 rbufs[MAX_WRITES][SLOT_BYTES] __attribute__((aligned(4096)));
static struct hv_post_message_input input __attribute__((aligned(256)));
static u32 conn_echo;
static u64 seed;
static u64 msg_seq, echo_seq;
static u64 n_messages, n_events, n_echoes, n_writes, n_reads;

#define lost(...) fail("lost: " __VA_ARGS__)
#define duplicated(...) fail("duplicated: " __VA_ARGS__)
#define error(...) fail("error: " __VA_ARGS__)

static void testdev(u32 ctl, u32 conn, u32 vp, u32 sint)
{
    outl(TESTDEV, conn << 24 | ctl << 16 | vp << 8 | sint);
}

/* ---- 1. the SynIC router ---- */

static volatile u8 *msg_slot(void) { return simp[0] + MSG_SINT * HV_MESSAGE_SLOT_SIZE; }

static void post_one(u64 n)
{
    input.connection_id = MSG_CONN;
    input.message_type = 0x100;
    input.payload_size = 16;
    input.payload[0] = n;
    input.payload[1] = ~n;
    /* A busy connection (its buffer not back yet, or the router restarting) answers
     * INSUFFICIENT_BUFFERS: retry, as Linux's vmbus_post_msg does. */
    u64 end = st_now() + WAIT;
    u32 st;
    while ((st = HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)&input, 0))) == HV_STATUS_INSUFFICIENT_BUFFERS) {
        if (st_now() >= end)
            lost("message %llu: connection %u still busy after 10 s (a buffer never came back)", n, MSG_CONN);
        st_idle();
    }
    if (st != HV_STATUS_SUCCESS)
        error("HvPostMessage %llu: status 0x%x", n, st);
    volatile u8 *s = msg_slot();
    while (*(volatile u32 *)s == HV_MESSAGE_TYPE_NONE) {
        if (st_now() >= end)
            lost("message %llu never reached the SINT%u slot", n, MSG_SINT);
        st_idle();
    }
    u32 type = *(volatile u32 *)s;
    u64 got = *(volatile u64 *)(s + HV_MSG_PAYLOAD), check = *(volatile u64 *)(s + HV_MSG_PAYLOAD + 8);
    if (type != 0x100 || s[HV_MSG_PAYLOAD_SIZE] != 16 || check != ~got)
        error("message %llu: slot holds type 0x%x size %u payload 0x%llx/0x%llx", n, type, s[HV_MSG_PAYLOAD_SIZE], got, check);
    if (got < n)
        duplicated("message %llu: slot holds message %llu again", n, got);
    if (got > n)
        lost("message %llu: slot holds message %llu", n, got);
    *(volatile u32 *)s = HV_MESSAGE_TYPE_NONE;
    full_fence();
    wrmsr(HV_MSR_EOM, 0);
    n_messages++;
}

static void signal_one(u64 n)
{
    u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, EVT_CONN));
    if (st != HV_STATUS_SUCCESS)
        error("HvSignalEvent %llu: status 0x%x", n, st);
    volatile u8 *flag = siefp[0] + EVT_SINT * 256 + EVT_CONN / 8;
    u8 bit = 1u << (EVT_CONN % 8);
    u64 end = st_now() + WAIT;
    while (!(*flag & bit)) {
        if (st_now() >= end)
            lost("event %llu never set flag %u of SINT%u", n, EVT_CONN, EVT_SINT);
        st_idle();
    }
    __atomic_and_fetch(flag, (u8)~bit, __ATOMIC_SEQ_CST);
    n_events++;
}

static void router(u32 per)
{
    for (u32 i = 0; i < per; i++)
        outl(TESTDEV, 0x05000003u);   /* conn 5, ctl 0: decoded and ignored by the router */
    for (u32 i = 0; i < per; i++)
        post_one(++msg_seq);
    for (u32 i = 0; i < per; i++)
        signal_one(i);
}

/* ---- 2. VMBus: the echo device ---- */

static void signal_channel(u32 conn)
{
    u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, conn));
    if (st != HV_STATUS_SUCCESS)
        error("HvSignalEvent(0x%x): status 0x%x", conn, st);
}

static void echoes(u32 n)
{
    u64 first = echo_seq + 1;
    u64 payload[2];
    u32 cursor = ctl(echo.ring, false)[0];
    for (u32 i = 0; i < n; i++) {
        payload[0] = first + i;
        payload[1] = ~(first + i);
        ring_put(echo.ring, &cursor, first + i, (const u8 *)payload, sizeof(payload));
    }
    if (ring_commit(echo.ring, cursor))
        signal_channel(conn_echo);
    u64 end = st_now() + WAIT;
    for (u64 want = first; want < first + n;) {
        sief_take(echo.relid);
        u32 len;
        u64 id;
        u16 type;
        if (!ring_read(echo.ring, &len, &id, &type)) {
            if (st_now() >= end)
                lost("echo %llu never came back (%llu of %u in this batch did)", want, want - first, n);
            st_idle();
            continue;
        }
        if (type != 6 || len != 16 || get64(pkt, 0) != id || get64(pkt, 8) != ~id)
            error("echo %llu: packet type %u len %u id %llu payload 0x%llx/0x%llx", want, type, len, id, get64(pkt, 0),
                  get64(pkt, 8));
        if (id < want)
            duplicated("echo %llu came back again (expected %llu)", id, want);
        if (id > want)
            lost("echo %llu came back before %llu", id, want);
        want++;
        n_echoes++;
    }
    echo_seq = first + n - 1;
}

/* ---- 3. storage: writes with read-back ---- */

static u64 disk_seed(u64 b) { return seed ^ (b * 0x9E3779B97F4A7C15ull); }

static u64 slot_lba(u64 b, u32 j, u32 writes) { return FIRST_LBA + ((b - 1) * writes + j) % SLOTS * SLOT_BLOCKS; }

/* Publishes one SRB per buffer (GPA direct, one page each) with one commit. */
static void submit_all(bool write, u64 b, u32 n, u64 *ids)
{
    u32 cursor = ctl(scsi.ring, false)[0];
    for (u32 j = 0; j < n; j++) {
        u8 *buf = write ? wbufs[j] : rbufs[j];
        struct req q = rw(0, write, 10, slot_lba(b, j, n), SLOT_BLOCKS, false, buf);
        u8 p[64] __attribute__((aligned(8)));
        srb_packet(p, &q);
        ids[j] = next_id++;
        u64 ext[3] = {1ull << 32, SLOT_BYTES, (u64)(uptr)buf >> 12};
        ring_put_packet(scsi.ring, &cursor, 9, 1, ids[j], ext, 3, p, 12 + srb_size);
    }
    if (ring_commit(scsi.ring, cursor))
        signal_channel(conn_scsi);
}

/* Takes completions until each of ids[0..n) has come exactly once. */
static void complete_all(const char *what, u64 b, u32 n, const u64 *ids)
{
    bool done[MAX_WRITES] = {0};
    u32 left = n;
    u64 end = st_now() + WAIT;
    while (left) {
        sief_take(scsi.relid);
        u32 len;
        u64 id;
        u16 type;
        if (!ring_read(scsi.ring, &len, &id, &type)) {
            if (st_now() >= end) {
                for (u32 j = 0; j < n; j++)
                    if (!done[j])
                        lost("batch %llu: %s lba %llu (transaction %llu) never completed", b, what, slot_lba(b, j, n), ids[j]);
            }
            st_idle();
            continue;
        }
        u32 j = 0;
        while (j < n && ids[j] != id)
            j++;
        if (j == n)
            duplicated("batch %llu: a completion for transaction %llu, which is not outstanding (ids %llu..%llu are)", b, id,
                       ids[0], ids[n - 1]);
        if (done[j])
            duplicated("batch %llu: %s lba %llu (transaction %llu) completed twice", b, what, slot_lba(b, j, n), id);
        done[j] = true;
        left--;
        u32 srb = pkt[14], scsi_status = pkt[15], xfer = get32(pkt, 24);
        if (type != 0xb || len != 12 + srb_size || get32(pkt, 0) != OP_COMPLETE_IO || get32(pkt, 8) != 0 || srb != SRB_SUCCESS
            || scsi_status != 0 || xfer != SLOT_BYTES)
            error("batch %llu: %s lba %llu: packet type %u len %u op %u status 0x%x srb 0x%x scsi 0x%x sense %x/%02x/%02x, "
                  "%u bytes moved", b, what, slot_lba(b, j, n), type, len, get32(pkt, 0), get32(pkt, 8), srb, scsi_status,
                  pkt[30] & 15, pkt[40], pkt[41], xfer);
    }
}

static void disk(u64 b, u32 n)
{
    u64 ids[MAX_WRITES];
    for (u32 j = 0; j < n; j++)
        fill(wbufs[j], slot_lba(b, j, n) * BLOCK, SLOT_BYTES, disk_seed(b));
    submit_all(true, b, n, ids);
    complete_all("WRITE(10)", b, n, ids);
    n_writes += n;
    for (u32 j = 0; j < n; j++)
        poison(rbufs[j], SLOT_BYTES);
    submit_all(false, b, n, ids);
    complete_all("READ(10)", b, n, ids);
    for (u32 j = 0; j < n; j++) {
        const u64 *p = (const u64 *)rbufs[j];
        u64 off = slot_lba(b, j, n) * BLOCK;
        for (u32 i = 0; i < SLOT_BYTES / 8; i++)
            if (p[i] != pattern(off + 8 * i, disk_seed(b)))
                error("batch %llu: lba %llu byte %u read back 0x%llx, expected 0x%llx", b, off / BLOCK, 8 * i, p[i],
                      pattern(off + 8 * i, disk_seed(b)));
    }
    n_reads += n;
}

/* ---- setup ---- */

static void find_offers(void)
{
    begin(REQUESTOFFERS);
    send(1, 8, "REQUESTOFFERS");
    for (;;) {
        u32 t = recv(0, 5 * SECOND);
        if (t == ALLOFFERS_DELIVERED)
            break;
        if (t != OFFERCHANNEL || msg_len < 196)
            fail("REQUESTOFFERS: message type %u of %u bytes", t, msg_len);
        if (get16(msg, 180) != 0)
            continue;
        if (guid_is(msg + 8, scsi.guid)) {
            scsi.relid = get32(msg, 184);
            conn_scsi = get32(msg, 192);
        } else if (guid_is(msg + 8, echo.guid)) {
            echo.relid = get32(msg, 184);
            conn_echo = get32(msg, 192);
        }
    }
    if (!scsi.relid)
        fail("no SCSI controller offered (run with --disk)");
    if (!echo.relid)
        fail("no echo device offered (run the VMBus worker with --test-echo-device)");
}

void guest_main(const struct boot_info *bi)
{
    st_init(NAME);
    printf(NAME ": start\n");
    const char *cmdline = (const char *)phys_ptr(bi->cmdline);
    u64 per = 10, necho = 8, nwrites = 4, batches = 0;
    seed = 1;
    cmdline_get_u64(cmdline, "per", &per);
    cmdline_get_u64(cmdline, "echoes", &necho);
    cmdline_get_u64(cmdline, "writes", &nwrites);
    cmdline_get_u64(cmdline, "seed", &seed);
    cmdline_get_u64(cmdline, "batches", &batches);
    if (per > 1000 || necho < 1 || necho > MAX_ECHOES || nwrites < 1 || nwrites > MAX_WRITES)
        guest_fail(NAME, "per=%llu echoes=%llu writes=%llu: per at most 1000, echoes 1...%u, writes 1...%u", per, necho, nwrites,
                   MAX_ECHOES, MAX_WRITES);
    vmbus_guest_start(bi);
    if (ncpus != 1)
        fail("run with 1 vCPU");
    wrmsr(HV_MSR_SINT(EVT_SINT), VEC);
    wrmsr(HV_MSR_SINT(MSG_SINT), VEC);
    u32 state, conn_id;
    if (!contact(4, 0x50003, 0, &state, &conn_id))
        fail("VMBus 5.3 refused");
    find_offers();
    open_mode(&echo, ring_echo, 0);
    scsi_open_0602();
    testdev(CTL_MSG_CREATE, MSG_CONN, 0, MSG_SINT);
    testdev(CTL_EVT_CREATE, EVT_CONN, 0, EVT_SINT);
    st_printf(NAME ": per=%llu echoes=%llu writes=%llu slots=%u of %u blocks from lba %u seed=%llu batches=%llu\n", per, necho,
              nwrites, SLOTS, SLOT_BLOCKS, FIRST_LBA, seed, batches);
    for (u64 b = 1; batches == 0 || b <= batches; b++) {
        router((u32)per);
        echoes((u32)necho);
        disk(b, (u32)nwrites);
        st_printf(NAME ": batch %llu messages=%llu events=%llu echoes=%llu writes=%llu reads=%llu\n", b, n_messages, n_events,
                  n_echoes, n_writes, n_reads);
    }
    printf(NAME ": ok\n");
    guest_exit_success();
}
