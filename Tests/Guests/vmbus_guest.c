/* The VMBus guest side shared by the freestanding guests that talk to the VMBus worker (vmbus.c,
 * storvsc.c): SynIC set-up on each VP, the AP loop, control messages (HvPostMessage, the SINT2
 * slot), GPADLs, INITIATE_CONTACT/UNLOAD, opening and closing a channel, and the ring code (as
 * Linux ring_buffer.c). Declarations and the layout constants in vmbus_guest.h. */
#include "vmbus_guest.h"
#include "x86.h"
#include "idt.h"
#include "mp.h"

u8 hypercall_page[4096] __attribute__((aligned(4096)));
u8 simp[MAX_CPUS][4096] __attribute__((aligned(4096)));
u8 siefp[MAX_CPUS][4096] __attribute__((aligned(4096)));
u8 interrupt_page[4096] __attribute__((aligned(4096)));
static struct hv_post_message_input pin __attribute__((aligned(256)));
u8 out[240];
u8 msg[240];
u32 msg_len;
u8 pkt[4096] __attribute__((aligned(8)));
volatile u32 irqs[MAX_CPUS];
volatile u32 stray;
volatile u32 ap_eom, ap_done, ap_finished, ap_ready;
u32 ncpus;
u32 next_gpadl = 0xe1e10;
u32 ram_pages;

void st_irq(u32 vector)
{
    u32 vp = st_current_vp();
    if (vector != VEC || vp >= MAX_CPUS) {
        __atomic_add_fetch(&stray, 1, __ATOMIC_SEQ_CST);
        return;
    }
    irqs[vp]++;
}


void synic_on(u32 vp)
{
    wrmsr(HV_MSR_SIMP, (u64)(uptr)simp[vp] | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SIEFP, (u64)(uptr)siefp[vp] | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SINT(SINT), VEC);
    wrmsr(HV_MSR_SCONTROL, HV_SCONTROL_ENABLE);
}

void ap_entry(u32 slot)
{
    (void)slot;
    u32 vp = st_register_vp(MAX_CPUS);
    synic_on(vp);
    st_watchdog_start();
    __atomic_store_n(&ap_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&ap_done, __ATOMIC_SEQ_CST)) {
        if (__atomic_exchange_n(&ap_eom, 0, __ATOMIC_SEQ_CST))
            wrmsr(HV_MSR_EOM, 0);
        st_idle();
    }
    st_watchdog_stop();
    __atomic_store_n(&ap_finished, 1, __ATOMIC_SEQ_CST);
}

/* HvPostMessage type 1 on conn; retried while the router's buffers are busy. */
u32 post(u32 conn, const void *p, u32 size)
{
    for (u32 tries = 0;; tries++) {
        memset(&pin, 0, sizeof(pin));
        pin.connection_id = conn;
        pin.message_type = 1;
        pin.payload_size = size;
        memcpy(pin.payload, p, size);
        u32 st = HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)&pin, 0));
        if ((st != 0x13 && st != 0x0b) || tries >= 200)
            return st;
        st_sleep_until(st_now() + ST_MS);
    }
}

void send(u32 conn, u32 size, const char *what)
{
    u32 st = post(conn, out, size);
    if (st != HV_STATUS_SUCCESS)
        fail("%s: HvPostMessage status 0x%x", what, st);
}

void begin(u32 type)
{
    memset(out, 0, sizeof(out));
    put32(out, 0, type);
}

/* Takes the message in vp's SINT2 slot (waiting up to timeout): its VMBus type, or 0 for none. */
u32 recv(u32 vp, u64 timeout)
{
    volatile u8 *s = simp[vp] + SINT * HV_MESSAGE_SLOT_SIZE;
    u64 end = st_now() + timeout;
    while (*(volatile u32 *)s == HV_MESSAGE_TYPE_NONE) {
        if (st_now() >= end)
            return 0;
        st_idle();
    }
    u32 hvtype = *(volatile u32 *)s;
    u32 size = s[HV_MSG_PAYLOAD_SIZE];
    if (size > 240)
        fail("message of %u bytes in slot 2 of vp %u", size, vp);
    for (u32 i = 0; i < size; i++)
        msg[i] = s[HV_MSG_PAYLOAD + i];
    msg_len = size;
    /* Free the slot, then look at MessagePending (TLFS order, as Linux's vmbus_signal_eom): the
     * host may set it in the occupant up to the moment the slot is freed. */
    *(volatile u32 *)s = HV_MESSAGE_TYPE_NONE;
    full_fence();
    if (s[HV_MSG_FLAGS] & HV_MSG_FLAG_PENDING) {
        if (vp == 0)
            wrmsr(HV_MSR_EOM, 0);
        else
            __atomic_store_n(&ap_eom, 1, __ATOMIC_SEQ_CST);
    }
    if (hvtype != 1)
        fail("slot 2 of vp %u: HvMessage type 0x%x, expected 1", vp, hvtype);
    if (size < 8)
        fail("VMBus message of %u bytes", size);
    return get32(msg, 0);
}

void expect_on(u32 vp, u32 type, u32 min_size, const char *what)
{
    u32 t = recv(vp, 5 * SECOND);
    if (t == 0)
        fail("%s: no message (expected type %u) within 5 s", what, type);
    if (t != type)
        fail("%s: message type %u (%u bytes), expected %u", what, t, msg_len, type);
    if (msg_len < min_size)
        fail("%s: type %u of %u bytes, expected at least %u", what, t, msg_len, min_size);
}

void expect(u32 type, u32 min_size, const char *what) { expect_on(0, type, min_size, what); }

void expect_quiet(const char *what)
{
    u32 t = recv(0, 30 * ST_MS);
    if (t)
        fail("%s: unexpected message type %u", what, t);
}

/* GPADL_HEADER for relid with n PFNs starting at pfns[0] (at most 26 in the header); returns the
 * handle. */
u32 gpadl_header(u32 relid, const u64 *pfns, u32 n, u32 total, u32 handle)
{
    begin(GPADL_HEADER);
    put32(out, 8, relid);
    put32(out, 12, handle);
    put16(out, 16, (u16)(8 + 8 * total));   /* range_buflen */
    put16(out, 18, 1);                      /* rangecount */
    put32(out, 20, total * 4096);           /* byte_count */
    put32(out, 24, 0);                      /* byte_offset */
    for (u32 i = 0; i < n; i++)
        put64(out, 28 + 8 * i, pfns[i]);
    send(1, 28 + 8 * n, "GPADL_HEADER");
    return handle;
}

void gpadl_body(u32 handle, const u64 *pfns, u32 n)
{
    begin(GPADL_BODY);
    put32(out, 8, 0);
    put32(out, 12, handle);
    for (u32 i = 0; i < n; i++)
        put64(out, 16 + 8 * i, pfns[i]);
    send(1, 16 + 8 * n, "GPADL_BODY");
}

u32 expect_created(u32 relid, u32 handle, const char *what)
{
    expect(GPADL_CREATED, 20, what);
    if (get32(msg, 8) != relid || get32(msg, 12) != handle)
        fail("%s: GPADL_CREATED for relid %u gpadl 0x%x, expected %u/0x%x", what, get32(msg, 8), get32(msg, 12), relid,
             handle);
    return get32(msg, 16);
}

/* The server still serves: a GPADL_HEADER for a relid nobody offers is refused at once, and its
 * GPADL_CREATED is the next message (so whatever was sent before got no reply). */
void probe(const char *what)
{
    u64 pfn = (u64)(uptr)interrupt_page >> 12;
    u32 h = gpadl_header(PROBE_RELID, &pfn, 1, 1, next_gpadl++);
    u32 t = recv(0, 5 * SECOND);
    if (t == 0)
        fail("%s: the probe got no answer within 5 s", what);
    if (t != GPADL_CREATED || get32(msg, 12) != h)
        fail("%s: message type %u (gpadl 0x%x) before the probe's answer", what, t, get32(msg, 12));
    if (get32(msg, 16) == 0)
        fail("%s: the probe's GPADL for relid 0x%x succeeded", what, PROBE_RELID);
}

void initiate(u32 conn, u32 version, u32 target)
{
    begin(INITIATE_CONTACT);
    put32(out, 8, version);
    put32(out, 12, target);
    if (version >= 0x50000)
        out[16] = SINT;   /* msg_sint */
    else
        put64(out, 16, (u64)(uptr)interrupt_page);
    send(conn, 40, "INITIATE_CONTACT");
}

void unload(u32 vp, const char *what)
{
    begin(UNLOAD);
    send(1, 8, "UNLOAD");
    expect_on(vp, UNLOAD_RESPONSE, 8, what);
}

/* INITIATE_CONTACT and its VERSION_RESPONSE (in vp's slot): returns version_supported. */
u32 contact(u32 conn, u32 version, u32 target, u32 *state, u32 *conn_id)
{
    initiate(conn, version, target);
    expect_on(target < ncpus ? target : 0, VERSION_RESPONSE, 16, "INITIATE_CONTACT");
    *state = msg[9];
    *conn_id = get32(msg, 12);
    return msg[8];
}

bool guid_is(const u8 *p, const u8 *g) { return memcmp(p, g, 16) == 0; }

void guid_str(const u8 *g, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    static const u8 order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    u32 j = 0;
    for (u32 i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[j++] = '-';
        buf[j++] = hex[g[order[i]] >> 4];
        buf[j++] = hex[g[order[i]] & 15];
    }
    buf[j] = 0;
}

/* ---- rings (guest side, as Linux ring_buffer.c) ---- */

volatile u32 *ctl(u8 *ring, bool inbound) { return (volatile u32 *)(ring + (inbound ? RING_OFFSET * 4096 : 0)); }
u8 *data(u8 *ring, bool inbound) { return ring + (inbound ? RING_OFFSET * 4096 : 0) + 4096; }

void ring_init(u8 *ring)
{
    for (u32 i = 0; i < RING_PAGES * 4096 / 8; i++)
        ((volatile u64 *)ring)[i] = 0;
    ctl(ring, false)[16] = 1;   /* feature_bits: pending_send_sz honoured */
    ctl(ring, true)[16] = 1;
}

/* The rings' data areas are multiples of 8 bytes and every packet starts 8-aligned, so the
 * guest moves whole u64 words (this host emulates guest kernel code one instruction at a time:
 * a byte loop costs a millisecond a packet). */
u32 wrap(u32 o) { return o >= RING_DATA ? o - RING_DATA : o; }

void put_words(u8 *d, u32 *off, const u64 *src, u32 words)
{
    u32 o = *off;
    if (o + 8 * words <= RING_DATA) {   /* the usual case: no wrap inside */
        volatile u64 *p = (volatile u64 *)(d + o);
        for (u32 i = 0; i < words; i++)
            p[i] = src[i];
        *off = wrap(o + 8 * words);
        return;
    }
    for (u32 i = 0; i < words; i++) {
        *(volatile u64 *)(d + o) = src[i];
        o = wrap(o + 8);
    }
    *off = o;
}

void get_words(const u8 *d, u32 off, u64 *dst, u32 words)
{
    if (off + 8 * words <= RING_DATA) {
        const volatile u64 *p = (const volatile u64 *)(d + off);
        for (u32 i = 0; i < words; i++)
            dst[i] = p[i];
        return;
    }
    for (u32 i = 0; i < words; i++) {
        dst[i] = *(volatile const u64 *)(d + off);
        off = wrap(off + 8);
    }
}

/* Writes one packet of `type` (6 inband, 9 GPA direct) into the guest-to-host ring at *cursor
 * (not yet published): the descriptor with `flags`, `ext_words` words of type-specific header
 * after it (the GPA-direct range list), then the payload (len bytes, zero-padded to 8). */
void ring_put_packet(u8 *ring, u32 *cursor, u16 type, u16 flags, u64 trans_id, const u64 *ext, u32 ext_words,
                     const u8 *payload, u32 len)
{
    volatile u32 *c = ctl(ring, false);
    u8 *d = data(ring, false);
    u32 padded = (len + 7) & ~7u;
    u32 w = *cursor, r = c[1];
    u32 free = r > w ? r - w : RING_DATA - (w - r);
    u32 offset8 = 2 + ext_words;
    if (free <= 8 * offset8 + padded + 8)
        fail("guest-to-host ring full (w=%u r=%u)", w, r);
    u64 desc[2] = {type | (u64)offset8 << 16 | (u64)(offset8 + padded / 8) << 32 | (u64)flags << 48, trans_id};
    u32 o = w;
    put_words(d, &o, desc, 2);
    if (ext_words)
        put_words(d, &o, ext, ext_words);
    put_words(d, &o, (const u64 *)payload, len / 8);
    if (len % 8) {
        u64 last = 0;
        for (u32 i = 0; i < len % 8; i++)
            last |= (u64)payload[len - len % 8 + i] << (8 * i);
        put_words(d, &o, &last, 1);
    }
    u64 trailer = (u64)w << 32;
    put_words(d, &o, &trailer, 1);
    *cursor = o;
}

/* Writes one inband packet (flags 0) at *cursor (not yet published). */
void ring_put(u8 *ring, u32 *cursor, u64 trans_id, const u8 *payload, u32 len)
{
    ring_put_packet(ring, cursor, 6, 0, trans_id, NULL, 0, payload, len);
}

/* Publishes what was written up to cursor; true when the host must be signalled (it had read
 * everything published before, and has not masked its interrupt). */
bool ring_commit(u8 *ring, u32 cursor)
{
    volatile u32 *c = ctl(ring, false);
    u32 before = c[0];
    full_fence();
    c[0] = cursor;
    full_fence();
    if (c[2])   /* interrupt_mask */
        return false;
    return c[1] == before;
}

/* Writes and publishes one inband packet; true when the host must be signalled. */
bool ring_write(u8 *ring, u64 trans_id, const u8 *payload, u32 len)
{
    u32 cursor = ctl(ring, false)[0];
    ring_put(ring, &cursor, trans_id, payload, len);
    return ring_commit(ring, cursor);
}

/* Takes one packet from the host-to-guest ring into pkt (the payload); false if it is empty. */
bool ring_read(u8 *ring, u32 *len, u64 *trans_id, u16 *type)
{
    volatile u32 *c = ctl(ring, true);
    u8 *d = data(ring, true);
    u32 w = c[0], r = c[1];
    if (w == r)
        return false;
    if (w >= RING_DATA || (w & 7))
        fail("host-to-guest ring: write_index %u", w);
    u64 desc[2];
    get_words(d, r, desc, 2);
    u32 off8 = (u16)(desc[0] >> 16), len8 = (u16)(desc[0] >> 32);
    u32 avail = w >= r ? w - r : RING_DATA - (r - w);
    if (off8 < 2 || len8 < off8 || len8 * 8 + 8 > avail || (len8 - off8) * 8 > sizeof(pkt))
        fail("host-to-guest packet: offset8 %u len8 %u with %u bytes published", off8, len8, avail);
    *type = (u16)desc[0];
    *trans_id = desc[1];
    *len = (len8 - off8) * 8;
    get_words(d, wrap(r + off8 * 8), (u64 *)pkt, *len / 8);
    u64 trailer;
    get_words(d, wrap(r + len8 * 8), &trailer, 1);
    if (trailer != (u64)r << 32)
        fail("host-to-guest packet at %u: trailer 0x%llx", r, trailer);
    full_fence();
    c[1] = wrap(r + len8 * 8 + 8);
    full_fence();
    return true;
}

bool sief_take_on(u32 vp, u32 relid)
{
    volatile u8 *b = siefp[vp] + SINT * 256 + relid / 8;
    u8 bit = (u8)(1u << (relid % 8));
    return __atomic_fetch_and(b, (u8)~bit, __ATOMIC_SEQ_CST) & bit;
}

bool sief_take(u32 relid) { return sief_take_on(0, relid); }

void open_mode(struct channel *ic, u8 *ring, u8 mode)
{
    ic->ring = ring;
    ring_init(ring);
    if (!ic->gpadl) {
        u64 pfns[RING_PAGES];
        for (u32 i = 0; i < RING_PAGES; i++)
            pfns[i] = ((u64)(uptr)ring >> 12) + i;
        ic->gpadl = gpadl_header(ic->relid, pfns, RING_PAGES, RING_PAGES, next_gpadl++);
        u32 st = expect_created(ic->relid, ic->gpadl, "ring GPADL");
        if (st != 0)
            fail("%s: ring GPADL status 0x%x", ic->name, st);
    }
    begin(OPENCHANNEL);
    put32(out, 8, ic->relid);
    put32(out, 12, ic->relid);
    put32(out, 16, ic->gpadl);
    put32(out, 20, ic->vp);
    put32(out, 24, RING_OFFSET);
    out[28] = mode;   /* user data (the echo device's mode) */
    sief_take_on(ic->vp, ic->relid);
    ic->irq_mark = irqs[ic->vp];
    send(1, 148, "OPENCHANNEL");
    expect(OPENCHANNEL_RESULT, 20, "OPENCHANNEL");
    if (get32(msg, 8) != ic->relid || get32(msg, 12) != ic->relid)
        fail("%s: OPENCHANNEL_RESULT for relid %u openid %u", ic->name, get32(msg, 8), get32(msg, 12));
    if (get32(msg, 16) != 0)
        fail("%s: OPENCHANNEL_RESULT status 0x%x", ic->name, get32(msg, 16));
    st_printf("%s: %s (relid %u) open on vp %u, ring gpadl 0x%x of %u pages\n", st_name, ic->name, ic->relid, ic->vp,
              ic->gpadl, RING_PAGES);
}

void open_ic(struct channel *ic, u8 *ring) { open_mode(ic, ring, 0); }

void close_channel(struct channel *ic)
{
    begin(CLOSECHANNEL);
    put32(out, 8, ic->relid);
    send(1, 12, "CLOSECHANNEL");
}

/* Everything a VMBus guest does first: the vCPU count (at most MAX_CPUS), guest RAM's size,
 * PostMessages and SignalEvents, the hypercall page, the SINT2 gate, the APs started into
 * ap_entry, SynIC on VP 0, the watchdog, and the APs ready. */
void vmbus_guest_start(const struct boot_info *bi)
{
    ncpus = st_require(bi, MAX_CPUS, 0, "nothing");
    ram_pages = (u32)(bi->memory_size >> 12);
    struct hv_info hv;
    hv_query(&hv);
    u32 need = HV_PRIV_POST_MESSAGES | HV_PRIV_SIGNAL_EVENTS;
    if ((hv.priv_ebx & need) != need)
        guest_fail(st_name, "0x40000003.EBX=0x%x lacks PostMessages and SignalEvents", hv.priv_ebx);
    if (!(hv_enable_hypercall_page(hypercall_page) & HV_HYPERCALL_ENABLE))
        guest_fail(st_name, "hypercall page not enabled");
    st_install_gate(VEC);
    st_register_vp(MAX_CPUS);
    if (mp_start_aps(bi, ap_entry) != ncpus - 1)
        fail("APs did not start");
    synic_on(0);
    if (!st_watchdog_start())
        st_printf("%s: LAPIC timer does not tick; waiting by spinning\n", st_name);
    while (ncpus > 1 && !__atomic_load_n(&ap_ready, __ATOMIC_SEQ_CST))
        st_idle();
}

/* The APs leave ap_entry (waiting up to 5 s), the watchdog stops, and no stray interrupt came. */
void vmbus_guest_finish(void)
{
    __atomic_store_n(&ap_done, 1, __ATOMIC_SEQ_CST);
    u64 end = st_now() + 5 * SECOND;
    while (ncpus > 1 && !__atomic_load_n(&ap_finished, __ATOMIC_SEQ_CST) && st_now() < end)
        st_idle();
    st_watchdog_stop();
    if (stray)
        fail("%u stray interrupts", stray);
}
