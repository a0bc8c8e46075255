/* vmbus: the VMBus control plane and the integration-service channels of the synthvm-vmbus worker,
 * seen from a freestanding guest (docs/vmbus.md; wire layouts in
 * ../shared/reference/vmbus-storvsc.md sections 2, 3 and 5). Run with 1 or 2 vCPUs and the
 * default enlightenments (VMBus is on with the SynIC). VP 0 does everything; with 2 vCPUs VP 1
 * only enables its SynIC and counts its SINT2 interrupts (and writes EOM when asked).
 *  1. SIMP, SIEFP, SCONTROL and SINT2 = vector 0xf3 on each VP. Every version the server serves
 *     is accepted (5.3, 5.2, 5.1, 5.0 on connection 4; 4.1, 4.0, 3.0, 2.4 on connection 1; msg_conn_id
 *     1 from 5.0 on), each followed by UNLOAD -> UNLOAD_RESPONSE; 6.0 and 0.13 are refused
 *     (version_supported 0, state 0), target VP 9 at 5.3 too (state 2). With 2 vCPUs,
 *     INITIATE_CONTACT with target_vcpu 1: the reply (and UNLOAD's) lands in VP 1's slot with an
 *     interrupt there.
 *  2. Connected at 5.3: REQUESTOFFERS; every OFFERCHANNEL is checked (size 196, relids 1, 2, ...
 *     in order, connection id relid | 0x2000, monitorid 0xff, not monitor-allocated, dedicated
 *     interrupt, sub-channel 0, the ICs as named pipes in message mode), then ALLOFFERS_DELIVERED.
 *  3. Truncated messages of every guest-to-host type, an unknown type, a host-to-guest type and an
 *     empty message: no reply to any (the next message is the probe's answer: a GPADL_HEADER for
 *     relid 0x7ff, refused at once with GPADL_CREATED failure).
 *  4. With offers: a ring GPADL (8 pages, header only) and a 40-page GPADL (header + body), both
 *     GPADL_CREATED 0; PFNs outside RAM: GPADL_CREATED failure; a GPADL_BODY for an unknown gpadl
 *     and an OPENCHANNEL for an unknown relid: dropped (probe). The 40-page GPADL is torn down.
 *  5. Heartbeat and shutdown channels opened (OPENCHANNEL_RESULT 0): the host's NEGOTIATE arrives
 *     in the host-to-guest ring with SIEF bit relid and a SINT2 interrupt; the guest answers like
 *     hv_utils (same buffer, icflags 5, counts 1/1) and signals HvSignalEvent(connection id). Then
 *     `heartbeats=N` heartbeat requests (default 1), each answered with seq + 1.
 *  6. A descriptor whose length runs past the ring, written into the heartbeat channel's
 *     guest-to-host ring and signalled: the control path (probe) still answers, and the time-sync
 *     channel then opens (with 2 vCPUs targeting VP 1: its SIEF bit and SINT2 interrupts land
 *     there), negotiates and delivers its first SYNC, which is answered; heartbeat is
 *     closed and its ring GPADL torn down (GPADL_TORNDOWN).
 *  7. With `shutdown=1`: prints `vmbus: waiting for a shutdown request` and waits (up to 60 s) for
 *     the shutdown IC's request, answers S_OK.
 *  8. UNLOAD -> UNLOAD_RESPONSE, then a fresh INITIATE_CONTACT 5.3 and REQUESTOFFERS: the same
 *     offers again. `vmbus: ok`.
 * With `bench=N` (synthvm-bench vmbus; the worker needs `--test-echo-device`) it only connects
 * and measures the echo device's channel: N signals against the floor mode (interrupt only),
 * N one-packet round trips, `batches` batches of `batch` packets with one signal each, and the
 * guest's own ring code alone; one `vmbus-bench: ...` line (100 ns units), then `vmbus: ok`. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"
#include "vmbus_guest.h"

#define NAME "vmbus"

static struct channel heartbeat = {"heartbeat", {0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d}};
static struct channel shutdown_ic = {"shutdown", {0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb}};
/* The worker's test-only echo device (VMBusEchoDevice, `--test-echo-device`): 5e1f0c4a-9d2b-4c1e-8f3a-0123456789ec. */
static struct channel echo = {"echo", {0x4a, 0x0c, 0x1f, 0x5e, 0x2b, 0x9d, 0x1e, 0x4c, 0x8f, 0x3a, 0x01, 0x23, 0x45, 0x67, 0x89, 0xec}};
static struct channel timesync = {"timesync", {0x30, 0xe6, 0x27, 0x95, 0xae, 0xd0, 0x7b, 0x49, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf}};

static u8 ring_hb[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 ring_sd[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 ring_ts[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 ring_echo[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 ring_scratch[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u32 offers_seen;

static void versions(void)
{
    static const struct { u32 version, conn; } ok[] = {
        {0x50003, 4}, {0x50002, 4}, {0x50001, 4}, {0x50000, 4}, {0x40001, 1}, {0x40000, 1}, {0x30000, 1}, {0x20004, 1},
    };
    u32 state, conn_id;
    for (u32 i = 0; i < ARRAY_SIZE(ok); i++) {
        u32 v = ok[i].version;
        if (!contact(ok[i].conn, v, 0, &state, &conn_id) || state != 0)
            fail("version %u.%u on connection %u: supported=%u state=%u", v >> 16, v & 0xffff, ok[i].conn, msg[8], state);
        if (v >= 0x50000 && conn_id != 1)
            fail("version %u.%u: msg_conn_id %u, expected 1", v >> 16, v & 0xffff, conn_id);
        unload(0, "UNLOAD after an accepted version");
        st_printf(NAME ": version %u.%u on connection %u accepted, unloaded\n", v >> 16, v & 0xffff, ok[i].conn);
    }
    static const u32 refused[] = {0x60000, 0x0000d};
    for (u32 i = 0; i < ARRAY_SIZE(refused); i++) {
        u32 v = refused[i];
        if (contact(4, v, 0, &state, &conn_id) || state != 0)
            fail("version %u.%u: supported=%u state=%u, expected 0/0", v >> 16, v & 0xffff, msg[8], state);
        st_printf(NAME ": version %u.%u refused\n", v >> 16, v & 0xffff);
    }
    if (contact(4, 0x50003, 9, &state, &conn_id) || state != 2)
        fail("target vp 9: supported=%u state=%u, expected 0/2", msg[8], state);
    st_printf(NAME ": target vp 9 refused (state 2)\n");
    if (ncpus > 1) {
        u32 before = irqs[1];
        if (!contact(4, 0x50003, 1, &state, &conn_id))
            fail("5.3 with target vp 1 refused");
        if (!st_wait_count(&irqs[1], before + 1, 2 * SECOND))
            fail("VERSION_RESPONSE in vp 1's slot without an interrupt on vp 1");
        unload(1, "UNLOAD with target vp 1");
        if (*(volatile u32 *)(simp[0] + SINT * HV_MESSAGE_SLOT_SIZE))
            fail("a message in vp 0's slot while connected with target vp 1");
        st_printf(NAME ": target vp 1: VERSION_RESPONSE and UNLOAD_RESPONSE in vp 1's slot (%u interrupts there)\n",
                  irqs[1] - before);
    }
}

/* REQUESTOFFERS: every offer checked, then ALLOFFERS_DELIVERED. Returns the count. */
static u32 offers(bool print)
{
    begin(REQUESTOFFERS);
    send(1, 8, "REQUESTOFFERS");
    u32 n = 0;
    for (;;) {
        u32 t = recv(0, 5 * SECOND);
        if (t == ALLOFFERS_DELIVERED)
            break;
        if (t != OFFERCHANNEL)
            fail("REQUESTOFFERS: message type %u, expected OFFERCHANNEL or ALLOFFERS_DELIVERED", t);
        if (msg_len < 196)
            fail("OFFERCHANNEL of %u bytes", msg_len);
        u32 relid = get32(msg, 184), conn = get32(msg, 192);
        u16 flags = get16(msg, 56), subchannel = get16(msg, 180), dedicated = get16(msg, 190);
        u32 pipe_mode = get32(msg, 60);
        n++;
        if (relid != n)
            fail("offer %u has relid %u", n, relid);
        if (conn != (relid | 0x2000))
            fail("relid %u: connection id 0x%x, expected 0x%x", relid, conn, relid | 0x2000);
        if (msg[188] != 0xff || (msg[189] & 1) || !(dedicated & 1) || subchannel != 0)
            fail("relid %u: monitorid 0x%x allocated %u dedicated 0x%x sub-channel %u", relid, msg[188], msg[189],
                 dedicated, subchannel);
        struct channel *ic = guid_is(msg + 8, heartbeat.guid) ? &heartbeat : guid_is(msg + 8, shutdown_ic.guid) ? &shutdown_ic
                        : guid_is(msg + 8, timesync.guid) ? &timesync : NULL;
        bool is_ic = ic != NULL;
        if (guid_is(msg + 8, echo.guid))
            ic = &echo;
        if (is_ic && (!(flags & 0x10) || pipe_mode != 4))
            fail("relid %u: an IC offered with flags 0x%x pipe mode %u, expected a message-mode pipe", relid, flags,
                 pipe_mode);
        if (ic) {
            if (ic->relid && ic->relid != relid)
                fail("%s offered as relid %u, before as %u", ic->name, relid, ic->relid);
            ic->relid = relid;
        }
        if (print) {
            char g[40], inst[40];
            guid_str(msg + 8, g);
            guid_str(msg + 24, inst);
            st_printf(NAME ": offer relid=%u class=%s instance=%s conn=0x%x flags=0x%x\n", relid, g, inst, conn, flags);
        }
    }
    return n;
}

static void truncations(void)
{
    /* Every guest-to-host type, one byte short of its layout (and 4 bytes: not even a header). */
    static const struct { u32 type, size; } cut[] = {
        {REQUESTOFFERS, 7}, {OPENCHANNEL, 147}, {CLOSECHANNEL, 11}, {GPADL_HEADER, 19}, {GPADL_BODY, 15},
        {GPADL_TEARDOWN, 15}, {RELID_RELEASED, 11}, {INITIATE_CONTACT, 39}, {UNLOAD, 7}, {MODIFYCHANNEL, 15},
        {INITIATE_CONTACT, 4}, {UNLOAD, 0}, {99, 40}, {OFFERCHANNEL, 196}, {VERSION_RESPONSE, 16},
    };
    for (u32 i = 0; i < ARRAY_SIZE(cut); i++) {
        begin(cut[i].type);
        put32(out, 8, 1);          /* a relid, a version ... */
        put32(out, 12, 0x50003);
        send(i & 1 ? 4 : 1, cut[i].size, "truncated message");
    }
    probe("truncated messages");
    st_printf(NAME ": %u truncated, unknown and host-to-guest messages dropped; still serving\n", (u32)ARRAY_SIZE(cut));
}

/* Waits for the channel's interrupt (SIEF bit + SINT2) and its next packet (an IC message). */
static u32 ic_receive(struct channel *ic, u64 *trans_id, u64 timeout, bool need_interrupt)
{
    u64 end = st_now() + timeout;
    u32 before = ic->irq_mark;
    bool flagged = false;
    u32 len;
    u16 type;
    for (;;) {
        flagged |= sief_take_on(ic->vp, ic->relid);
        if (ring_read(ic->ring, &len, trans_id, &type))
            break;
        if (st_now() >= end)
            return 0;
        st_idle();
    }
    if (need_interrupt) {
        /* The interrupt may still be on its way when the packet is already visible. */
        u64 until = st_now() + SECOND;
        while (!(flagged |= sief_take_on(ic->vp, ic->relid)) && st_now() < until)
            st_idle();
        if (!flagged)
            fail("%s: a packet without SIEF bit %u", ic->name, ic->relid);
        /* The bit went from 0 to 1 after it was last taken: that raised SINT2 (perhaps before
         * this wait began). */
        if (!st_wait_count(&irqs[ic->vp], before + 1, SECOND))
            fail("%s: a packet without a SINT2 interrupt on vp %u", ic->name, ic->vp);
        ic->irq_mark = irqs[ic->vp];
    }
    if (type != 6)
        fail("%s: packet type %u, expected 6 (inband)", ic->name, type);
    if (len < 28)
        fail("%s: IC packet of %u bytes", ic->name, len);
    return len;
}

static void ic_reply(struct channel *ic, u64 trans_id, u32 len)
{
    pkt[25] = 5;   /* icflags: TRANSACTION | RESPONSE */
    if (ring_write(ic->ring, trans_id, pkt, len)) {
        u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, ic->relid | 0x2000));
        if (st != HV_STATUS_SUCCESS)
            fail("%s: HvSignalEvent(0x%x) status 0x%x", ic->name, ic->relid | 0x2000, st);
    }
}

static void ic_negotiate(struct channel *ic, const u16 (*mine)[2], u32 nmine)
{
    u64 trans_id;
    u32 len = ic_receive(ic, &trans_id, 5 * SECOND, true);
    if (len == 0)
        fail("%s: no NEGOTIATE within 5 s of the open", ic->name);
    u16 msgtype = get16(pkt, 12);
    u8 icflags = pkt[25];
    if (msgtype != 0 || icflags != 3)
        fail("%s: first message type %u icflags %u, expected NEGOTIATE (0) with flags 3", ic->name, msgtype, icflags);
    u16 fw = get16(pkt, 28), nmsg = get16(pkt, 30);
    if (fw == 0 || nmsg == 0 || fw > 100 || nmsg > 100 || 28 + 8 + 4 * (fw + nmsg) > len)
        fail("%s: NEGOTIATE with %u framework and %u message versions in %u bytes", ic->name, fw, nmsg, len);
    /* Framework 3.0 if offered, else 1.0; the message version: the first of mine the host has. */
    u32 fw_pick = 0xffffffff, msg_pick = 0xffffffff;
    for (u32 i = 0; i < fw; i++) {
        u32 v = get32(pkt, 36 + 4 * i);
        if (v == 3 || (v == 1 && fw_pick != 3))
            fw_pick = v;
    }
    for (u32 k = 0; k < nmine && msg_pick == 0xffffffff; k++)
        for (u32 i = 0; i < nmsg; i++) {
            u32 v = get32(pkt, 36 + 4 * (fw + i));
            if (v == ((u32)mine[k][1] << 16 | mine[k][0]))
                msg_pick = v;
        }
    if (fw_pick == 0xffffffff || msg_pick == 0xffffffff)
        fail("%s: no common framework or message version", ic->name);
    put16(pkt, 28, 1);
    put16(pkt, 30, 1);
    put32(pkt, 36, fw_pick);
    put32(pkt, 40, msg_pick);
    put16(pkt, 18, 16);    /* icmsgsize */
    put32(pkt, 20, 0);     /* status */
    ic->msg_major = msg_pick & 0xffff;
    ic_reply(ic, trans_id, len);
    st_printf(NAME ": %s negotiated framework %u.%u message %u.%u (host offered %u/%u)\n", ic->name, fw_pick & 0xffff,
              fw_pick >> 16, msg_pick & 0xffff, msg_pick >> 16, fw, nmsg);
}

static void gpadls(void)
{
    u32 relid = heartbeat.relid;
    /* 40 pages: 26 in the header, 14 in a body. */
    u64 pfns[40];
    for (u32 i = 0; i < 40; i++)
        pfns[i] = 0x400 + i;   /* 4 MiB on: RAM the guest does not use */
    u32 h = gpadl_header(relid, pfns, 26, 40, next_gpadl++);
    expect_quiet("GPADL_HEADER with a body to come");
    gpadl_body(h, pfns + 26, 14);
    u32 st = expect_created(relid, h, "GPADL header + body");
    if (st != 0)
        fail("GPADL of 40 pages (header + body): status 0x%x", st);
    st_printf(NAME ": gpadl 0x%x of 40 pages (header + body) created\n", h);
    /* PFNs outside guest RAM. */
    u64 bad[2] = {ram_pages + 16, 0xfffffffffull};
    u32 hb = gpadl_header(relid, bad, 2, 2, next_gpadl++);
    if ((st = expect_created(relid, hb, "GPADL outside RAM")) == 0)
        fail("GPADL with PFNs outside RAM created");
    st_printf(NAME ": gpadl with pfns outside RAM refused (status 0x%x)\n", st);
    /* A body for a gpadl nobody announced: dropped. */
    gpadl_body(0x7777777, pfns, 4);
    probe("GPADL_BODY for an unknown gpadl");
    st_printf(NAME ": body for an unknown gpadl dropped; still serving\n");
    /* OPENCHANNEL for a relid nobody offers: dropped. */
    begin(OPENCHANNEL);
    put32(out, 8, 77);
    put32(out, 12, 77);
    put32(out, 16, h);
    put32(out, 24, 2);
    send(1, 148, "OPENCHANNEL");
    probe("OPENCHANNEL for an unknown relid");
    st_printf(NAME ": open of unknown relid 77 dropped; still serving\n");
    begin(GPADL_TEARDOWN);
    put32(out, 8, relid);
    put32(out, 12, h);
    send(1, 16, "GPADL_TEARDOWN");
    expect(GPADL_TORNDOWN, 12, "GPADL_TEARDOWN");
    if (get32(msg, 8) != h)
        fail("GPADL_TORNDOWN for 0x%x, expected 0x%x", get32(msg, 8), h);
    st_printf(NAME ": gpadl 0x%x torn down\n", h);
}

static void heartbeats(u32 n)
{
    for (u32 i = 0; i < n; i++) {
        u64 trans_id;
        u32 len = ic_receive(&heartbeat, &trans_id, 30 * SECOND, true);
        if (len == 0)
            fail("heartbeat: no request within 30 s");
        if (get16(pkt, 12) != 1 || len < 36 || pkt[25] != 3)
            fail("heartbeat: message type %u icflags %u of %u bytes", get16(pkt, 12), pkt[25], len);
        u64 seq = *(u64 *)(pkt + 28);
        put64(pkt, 28, seq + 1);
        ic_reply(&heartbeat, trans_id, len);
        st_printf(NAME ": heartbeat seq=%llu answered\n", seq);
    }
}

static void bad_descriptor(void)
{
    /* A descriptor claiming 0xfff0 * 8 bytes in a 12 KiB ring, published with a trailer's worth. */
    volatile u32 *c = ctl(heartbeat.ring, false);
    u8 *d = data(heartbeat.ring, false);
    u32 w = c[0];
    u64 desc[3] = {6ull | 2ull << 16 | 0xfff0ull << 32, 0, (u64)w << 32};
    u32 o = w;
    put_words(d, &o, desc, 3);
    full_fence();
    c[0] = (w + 24) % RING_DATA;
    full_fence();
    u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, heartbeat.relid | 0x2000));
    if (st != HV_STATUS_SUCCESS)
        fail("HvSignalEvent after the bad descriptor: 0x%x", st);
    st_sleep_until(st_now() + 20 * ST_MS);
    probe("after a bad ring descriptor");
    st_printf(NAME ": descriptor past the ring in heartbeat's ring: control path still served\n");
}

static void close_heartbeat(void)
{
    begin(CLOSECHANNEL);
    put32(out, 8, heartbeat.relid);
    send(1, 12, "CLOSECHANNEL");
    begin(GPADL_TEARDOWN);
    put32(out, 8, heartbeat.relid);
    put32(out, 12, heartbeat.gpadl);
    send(1, 16, "GPADL_TEARDOWN");
    expect(GPADL_TORNDOWN, 12, "ring GPADL_TEARDOWN after CLOSECHANNEL");
    if (get32(msg, 8) != heartbeat.gpadl)
        fail("GPADL_TORNDOWN for 0x%x, expected 0x%x", get32(msg, 8), heartbeat.gpadl);
    st_printf(NAME ": heartbeat closed, ring gpadl 0x%x torn down\n", heartbeat.gpadl);
}

static void shutdown_request(void)
{
    st_printf(NAME ": waiting for a shutdown request\n");
    u64 trans_id;
    u32 len = ic_receive(&shutdown_ic, &trans_id, 60 * SECOND, true);
    if (len == 0)
        fail("shutdown: no request within 60 s");
    if (get16(pkt, 12) != 3 || pkt[25] != 3 || len < 40)
        fail("shutdown: message type %u icflags %u of %u bytes", get16(pkt, 12), pkt[25], len);
    u32 reason = get32(pkt, 28), timeout = get32(pkt, 32), flags = get32(pkt, 36);
    put32(pkt, 20, 0);   /* S_OK */
    ic_reply(&shutdown_ic, trans_id, len);
    st_printf(NAME ": shutdown request flags=0x%x reason=0x%x timeout=%u (%u bytes) answered\n", flags, reason, timeout,
              len);
}

/* ---- bench=N: synthvm-bench vmbus, with the worker's echo device ---- */

static u64 hlt_wait = 1;

/* One wait step with interrupts on: `sti; hlt` (woken by any interrupt, so a SINT2 for a control
 * message too), or spinning with `spin=1`. The same for every measurement. */
static void bench_wait(void)
{
    if (hlt_wait)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    else
        __asm__ volatile("sti; pause; pause; cli" ::: "memory");
}

/* Waits until the echo channel's SIEF bit is set (and takes it). */
static void wait_flag(const char *what)
{
    u64 end = st_now() + 5 * SECOND;
    u32 i = 0;
    while (!sief_take(echo.relid)) {
        bench_wait();
        if (++i % 1024 == 0 && st_now() > end)
            fail("%s: no channel interrupt within 5 s", what);
    }
}

static void bench(u32 n, u32 batch, u32 batches)
{
    if (!echo.relid)
        fail("no echo device offered (run the worker with --test-echo-device)");
    static u8 payload[64] __attribute__((aligned(8)));
    /* (b) the floor: HvSignalEvent with an empty ring; the device only raises the interrupt. */
    open_mode(&echo, ring_echo, 1);
    u32 conn = echo.relid | 0x2000;
    u64 t0 = st_now();
    for (u32 i = 0; i < n; i++) {
        hv_fast8(HVCALL_SIGNAL_EVENT, conn);
        wait_flag("floor");
    }
    u64 floor = st_now() - t0;
    close_channel(&echo);
    /* (a) the ring round trip: one packet, signal, the echoed packet and its interrupt. */
    open_mode(&echo, ring_echo, 0);
    t0 = st_now();
    for (u32 i = 0; i < n; i++) {
        put64(payload, 0, i);
        if (ring_write(echo.ring, i, payload, sizeof(payload)))
            hv_fast8(HVCALL_SIGNAL_EVENT, conn);
        wait_flag("round trip");
        u32 len = 0;
        u64 id = 0;
        u16 type;
        if (!ring_read(echo.ring, &len, &id, &type) || id != i || len != sizeof(payload) || get32(pkt, 0) != i)
            fail("round trip %u: no echo or the wrong one (id %llu len %u)", i, id, len);
    }
    u64 roundtrip = st_now() - t0;
    /* (c) batches: `batch` packets, one signal (the ring rules: only the first write of a batch
     * finds the ring empty), then every echo taken as it comes. */
    u32 signals = 0;
    t0 = st_now();
    for (u32 b = 0; b < batches; b++) {
        u32 cursor = ctl(echo.ring, false)[0];
        for (u32 k = 0; k < batch; k++) {
            put64(payload, 0, (u64)b * batch + k);
            ring_put(echo.ring, &cursor, (u64)b * batch + k, payload, sizeof(payload));
        }
        if (ring_commit(echo.ring, cursor)) {
            hv_fast8(HVCALL_SIGNAL_EVENT, conn);
            signals++;
        }
        u32 got = 0;
        u64 end = st_now() + 5 * SECOND;
        while (got < batch) {
            u32 len;
            u64 id;
            u16 type;
            if (ring_read(echo.ring, &len, &id, &type)) {
                if (id != (u64)b * batch + got)
                    fail("batch %u: echo %llu, expected %llu", b, id, (u64)b * batch + got);
                got++;
                continue;
            }
            bench_wait();
            if (st_now() > end)
                fail("batch %u: %u of %u echoes within 5 s", b, got, batch);
        }
        sief_take(echo.relid);
    }
    u64 batched = st_now() - t0;
    close_channel(&echo);
    /* The guest's own share of a round trip: the same ring_write and ring_read on a ring no host
     * sees (one 64-byte packet published in its host-to-guest half, indices reset each time). */
    ring_init(ring_scratch);
    u64 words[11] = {6ull | 2ull << 16 | 10ull << 32, 7};
    u32 o = 0;
    put_words(data(ring_scratch, true), &o, words, 11);
    ctl(ring_scratch, true)[0] = o;
    t0 = st_now();
    for (u32 i = 0; i < n; i++) {
        ctl(ring_scratch, false)[0] = 0;
        ctl(ring_scratch, false)[1] = 0;
        ctl(ring_scratch, true)[1] = 0;
        put64(payload, 0, i);
        ring_write(ring_scratch, i, payload, sizeof(payload));
        u32 len;
        u64 id;
        u16 type;
        if (!ring_read(ring_scratch, &len, &id, &type) || id != 7)
            fail("scratch ring: no packet");
    }
    u64 guestring = st_now() - t0;
    printf("vmbus-bench: n=%u floor=%llu roundtrip=%llu guestring=%llu batch=%u batches=%u batched=%llu signals=%u (100 ns units)\n",
           n, floor, roundtrip, guestring, batch, batches, batched, signals);
}

static const u16 heartbeat_versions[][2] = {{3, 0}, {1, 0}};
static const u16 shutdown_versions[][2] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};
static const u16 timesync_versions[][2] = {{4, 0}, {3, 0}, {1, 0}};

/* Another channel after heartbeat's ring was cut off: time sync opens, negotiates, and its first
 * message (SYNC) arrives and is answered. */
static void timesync_after_corruption(void)
{
    timesync.vp = ncpus - 1;   /* with 2 vCPUs: its SIEF bit and interrupts on VP 1 */
    open_ic(&timesync, ring_ts);
    ic_negotiate(&timesync, timesync_versions, ARRAY_SIZE(timesync_versions));
    u64 trans_id;
    u32 len = ic_receive(&timesync, &trans_id, 5 * SECOND, true);
    if (len == 0)
        fail("timesync: no message within 5 s of negotiating");
    if (get16(pkt, 12) != 4 || pkt[25] != 3 || len < 48)
        fail("timesync: message type %u icflags %u of %u bytes", get16(pkt, 12), pkt[25], len);
    u8 flags = pkt[44];
    ic_reply(&timesync, trans_id, len);
    st_printf(NAME ": timesync (relid %u) served after heartbeat's ring was cut off: flags=0x%x answered (vp %u)\n",
              timesync.relid, flags, timesync.vp);
}

void guest_main(const struct boot_info *bi)
{
    st_init(NAME);
    printf(NAME ": start\n");
    const char *cmdline = (const char *)phys_ptr(bi->cmdline);
    u64 nbeats = 1, want_shutdown = 0;
    cmdline_get_u64(cmdline, "heartbeats", &nbeats);
    cmdline_get_u64(cmdline, "shutdown", &want_shutdown);
    u64 nbench = 0, batch = 32, batches = 100;
    cmdline_get_u64(cmdline, "bench", &nbench);
    cmdline_get_u64(cmdline, "batch", &batch);
    cmdline_get_u64(cmdline, "batches", &batches);
    u64 spin = 0;
    cmdline_get_u64(cmdline, "spin", &spin);
    hlt_wait = !spin;
    if (batch == 0 || batch > 100)
        guest_fail(NAME, "batch=%llu: 1 to 100", batch);
    vmbus_guest_start(bi);

    /* 1. Versions. */
    if (!nbench)
        versions();

    /* 2. Connected at 5.3: offers. */
    u32 state, conn_id;
    if (!contact(4, 0x50003, 0, &state, &conn_id))
        fail("5.3 refused");
    offers_seen = offers(!nbench);
    st_printf(NAME ": %u offers, then ALLOFFERS_DELIVERED\n", offers_seen);

    if (nbench) {
        bench((u32)nbench, (u32)batch, (u32)batches);
        st_watchdog_stop();
        printf(NAME ": ok\n");
        guest_exit_success();
    }

    /* 3. Truncated messages. */
    truncations();

    if (heartbeat.relid && shutdown_ic.relid) {
        /* 4. GPADLs. */
        gpadls();
        /* 5. The heartbeat and shutdown channels. */
        open_ic(&heartbeat, ring_hb);
        ic_negotiate(&heartbeat, heartbeat_versions, ARRAY_SIZE(heartbeat_versions));
        open_ic(&shutdown_ic, ring_sd);
        ic_negotiate(&shutdown_ic, shutdown_versions, ARRAY_SIZE(shutdown_versions));
        heartbeats((u32)nbeats);
        /* 6. A bad descriptor, then close. */
        bad_descriptor();
        if (timesync.relid)
            timesync_after_corruption();
        close_heartbeat();
        /* 7. Shutdown. */
        if (want_shutdown)
            shutdown_request();
    } else {
        st_printf(NAME ": no heartbeat and shutdown offers: channel steps skipped\n");
    }

    /* 8. UNLOAD, reconnect. */
    unload(0, "UNLOAD");
    if (!contact(4, 0x50003, 0, &state, &conn_id))
        fail("5.3 refused after UNLOAD");
    u32 again = offers(false);
    if (again != offers_seen)
        fail("%u offers after reconnecting, %u before", again, offers_seen);
    st_printf(NAME ": unloaded, reconnected at 5.3, %u offers again\n", again);
    vmbus_guest_finish();
    printf(NAME ": ok\n");
    guest_exit_success();
}
