/* The storvsc guest side shared by storvsc.c, soak.c and storvscbench.c: the disk pattern, vstor packets on the
 * SCSI controller's channel, SRBs and their completions. Declarations in storvsc_guest.h. */
#include "storvsc_guest.h"
#include "hyperv.h"
#include "synictest.h"

struct channel scsi = {"scsi", {0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f}};
u8 ring_scsi[RING_PAGES * 4096] __attribute__((aligned(4096)));
u8 scsi_instance[16];
u32 conn_scsi;
u64 next_id = 1;
u32 srb_size = 0x34;
u32 max_transfer = MAX_XFER;
u32 requests;

void fill(u8 *b, u64 off, u32 len, u64 s)
{
    u64 *p = (u64 *)b;
    for (u32 i = 0; i < len / 8; i++)
        p[i] = pattern(off + 8 * (u64)i, s);
}

/* One sentinel word per block: a block the host did not fill keeps it. */
void poison(u8 *b, u32 len)
{
    for (u32 i = 0; i < len; i += BLOCK)
        *(u64 *)(b + i) = 0xdeadbeefdeadbeefull;
}

void compare(const u8 *b, u64 off, u32 len, u64 s, const char *what)
{
    const u64 *p = (const u64 *)b;
    for (u32 i = 0; i < len / 8; i++)
        if (p[i] != pattern(off + 8 * (u64)i, s))
            fail("%s: byte %u of %u read back 0x%llx, expected 0x%llx", what, 8 * i, len, p[i], pattern(off + 8 * (u64)i, s));
}

void expect_zero(const u8 *b, u32 len, const char *what)
{
    const u64 *p = (const u64 *)b;
    for (u32 i = 0; i < len / 8; i++)
        if (p[i])
            fail("%s: byte %u of %u is 0x%llx, expected zeros", what, 8 * i, len, p[i]);
}

void signal_host(struct channel *ch, u32 conn)
{
    (void)ch;
    u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, conn));
    if (st != HV_STATUS_SUCCESS)
        fail("HvSignalEvent(0x%x) status 0x%x", conn, st);
}

/* Publishes a packet: type 6 (ext_words 0) or 9 (GPA direct: ext = range list). */
void submit(struct channel *ch, u32 conn, u16 type, u64 id, const u64 *ext, u32 ext_words, const u8 *p, u32 len)
{
    u32 cursor = ctl(ch->ring, false)[0];
    ring_put_packet(ch->ring, &cursor, type, 1, id, ext, ext_words, p, len);
    if (ring_commit(ch->ring, cursor))
        signal_host(ch, conn);
}

/* Waits for the completion with transaction id `id` (the only one outstanding) and checks its
 * framing and its interrupt. */
void wait_reply(struct channel *ch, u64 id, u32 want_len, struct reply *r, const char *what)
{
    u64 end = st_now() + 20 * SECOND;
    u32 before = ch->irq_mark;
    bool flagged = false;
    u32 len;
    u64 got_id;
    u16 type;
    for (;;) {
        flagged |= sief_take_on(ch->vp, ch->relid);
        if (ring_read(ch->ring, &len, &got_id, &type))
            break;
        if (st_now() >= end)
            fail("%s: no completion within 20 s", what);
        st_idle();
    }
    u64 until = st_now() + SECOND;
    while (!(flagged |= sief_take_on(ch->vp, ch->relid)) && st_now() < until)
        st_idle();
    if (!flagged)
        fail("%s: a completion without SIEF bit %u on vp %u", what, ch->relid, ch->vp);
    if (!st_wait_count(&irqs[ch->vp], before + 1, SECOND))
        fail("%s: a completion without a SINT2 interrupt on vp %u", what, ch->vp);
    ch->irq_mark = irqs[ch->vp];
    if (type != 0xb)
        fail("%s: packet type %u, expected 11 (completion)", what, type);
    if (got_id != id)
        fail("%s: completion for transaction 0x%llx, expected 0x%llx", what, got_id, id);
    if (len != want_len)
        fail("%s: completion of %u bytes, expected %u", what, len, want_len);
    r->len = len;
    r->op = get32(pkt, 0);
    r->status = get32(pkt, 8);
    r->srb_status = pkt[14];
    r->scsi_status = pkt[15];
    r->sense_len = pkt[21];
    r->xfer = get32(pkt, 24);
    for (u32 i = 0; i < 20; i++)
        r->sense[i] = pkt[28 + i];
    if (r->op != OP_COMPLETE_IO)
        fail("%s: reply operation %u, expected COMPLETE_IO", what, r->op);
    requests++;
}

/* One vstor operation on `ch` with transaction id `id`; returns the NTSTATUS. */
u32 vstor_op_id(struct channel *ch, u32 conn, u64 id, u32 op, u32 size, u32 want_len, u16 arg, struct reply *r,
                const char *what)
{
    u8 p[64] __attribute__((aligned(8)));
    for (u32 i = 0; i < 8; i++)
        ((u64 *)p)[i] = 0;
    put32(p, 0, op);
    put32(p, 4, 1);
    put16(p, 12, arg);
    submit(ch, conn, 6, id, NULL, 0, p, size);
    wait_reply(ch, id, want_len, r, what);
    return r->status;
}

/* One vstor operation on the primary channel (init steps); returns the NTSTATUS. */
u32 vstor_op(u32 op, u32 size, u32 want_len, u16 arg, struct reply *r, const char *what)
{
    return vstor_op_id(&scsi, conn_scsi, INIT_ID, op, size, want_len, arg, r, what);
}

void srb_packet(u8 *p, const struct req *q)
{
    for (u32 i = 0; i < 8; i++)
        ((u64 *)p)[i] = 0;
    put32(p, 0, OP_EXECUTE_SRB);
    put32(p, 4, 1);
    put16(p, 12, (u16)srb_size);
    p[17] = q->path;
    p[18] = q->target;
    p[19] = q->lun;
    p[20] = q->cdb_len;
    p[21] = srb_size == 0x34 ? 20 : 18;
    p[22] = q->data_in;
    put32(p, 24, q->xfer);
    for (u32 i = 0; i < 16; i++)
        p[28 + i] = q->cdb[i];
    if (srb_size == 0x34) {
        p[50] = 0xff;
        p[51] = 0x20;
        put32(p, 52, 0x8 | (q->data_in == 1 ? 0x40 : q->data_in == 0 ? 0x80 : 0));
        put32(p, 56, 60);
    }
}

/* Sends the SRB (GPA direct when it has a buffer) on ch and waits for its completion. */
void exec_on(struct channel *ch, u32 conn, const struct req *q, struct reply *r, const char *what)
{
    u8 p[64] __attribute__((aligned(8)));
    srb_packet(p, q);
    u64 id = next_id++;
    u32 size = 12 + srb_size;
    if (q->buf) {
        static u64 ext[2 + 260];
        u64 gpa = (u64)(uptr)q->buf;
        u32 off = (u32)(gpa & 4095), n = (off + q->buf_len + 4095) / 4096;
        ext[0] = 1ull << 32;                          /* reserved, range count 1 */
        ext[1] = q->buf_len | (u64)off << 32;         /* len, offset */
        for (u32 i = 0; i < n; i++)
            ext[2 + i] = (gpa >> 12) + i;
        submit(ch, conn, 9, id, ext, 2 + n, p, size);
    } else {
        submit(ch, conn, 6, id, NULL, 0, p, size);
    }
    wait_reply(ch, id, size, r, what);
}

void exec(const struct req *q, struct reply *r, const char *what) { exec_on(&scsi, conn_scsi, q, r, what); }

void expect_good(const struct reply *r, u32 xfer, const char *what)
{
    if (r->srb_status != SRB_SUCCESS || r->scsi_status != 0 || r->status != 0)
        fail("%s: srb 0x%x scsi 0x%x status 0x%x sense %x/%02x/%02x, expected success", what, r->srb_status, r->scsi_status,
             r->status, r->sense[2] & 15, r->sense[12], r->sense[13]);
    if (r->xfer != xfer)
        fail("%s: %u bytes moved, expected %u", what, r->xfer, xfer);
}

void expect_sense(const struct reply *r, u8 srb, u8 key, u8 asc, u8 ascq, const char *what)
{
    if (r->srb_status != (srb | SRB_AUTOSENSE) || r->scsi_status != CHECK_CONDITION)
        fail("%s: srb 0x%x scsi 0x%x, expected 0x%x and CHECK CONDITION", what, r->srb_status, r->scsi_status,
             srb | SRB_AUTOSENSE);
    if (r->sense[0] != 0x70 || (r->sense[2] & 15) != key || r->sense[12] != asc || r->sense[13] != ascq)
        fail("%s: sense %02x key %x asc %02x/%02x, expected 70 %x %02x/%02x", what, r->sense[0], r->sense[2] & 15, r->sense[12],
             r->sense[13], key, asc, ascq);
    if (r->xfer != 0)
        fail("%s: %u bytes moved with an error", what, r->xfer);
}

struct req simple(u8 lun, u8 op)
{
    struct req q;
    memset(&q, 0, sizeof(q));
    q.lun = lun;
    q.cdb[0] = op;
    q.cdb_len = 6;
    q.data_in = 2;
    return q;
}

struct req data_req(u8 lun, u8 data_in, u8 *buf, u32 len)
{
    struct req q = simple(lun, 0);
    q.data_in = data_in;
    q.buf = buf;
    q.xfer = len;
    q.buf_len = len;
    return q;
}

void inquiry(u8 path, u8 target, u8 lun, u8 page, u8 *buf, u32 len, struct reply *r, const char *what)
{
    struct req q = data_req(lun, 1, buf, len);
    q.path = path;
    q.target = target;
    q.cdb[0] = 0x12;
    q.cdb[1] = page != 0xff ? 1 : 0;
    q.cdb[2] = page != 0xff ? page : 0;
    pbe16(q.cdb + 3, (u16)len);
    exec(&q, r, what);
}

/* READ/WRITE with the CDB of `kind` (6, 10, 12, 16). */
struct req rw(u8 lun, bool write, u32 kind, u64 lba, u32 blocks, bool fua, u8 *buf)
{
    struct req q = data_req(lun, write ? 0 : 1, buf, blocks * BLOCK);
    switch (kind) {
    case 6:
        q.cdb[0] = write ? 0x0a : 0x08;
        q.cdb[1] = (u8)(lba >> 16 & 0x1f);
        q.cdb[2] = (u8)(lba >> 8);
        q.cdb[3] = (u8)lba;
        q.cdb[4] = (u8)blocks;   /* 0 means 256 */
        q.cdb_len = 6;
        break;
    case 10:
        q.cdb[0] = write ? 0x2a : 0x28;
        pbe32(q.cdb + 2, (u32)lba);
        pbe16(q.cdb + 7, (u16)blocks);
        q.cdb_len = 10;
        break;
    case 12:
        q.cdb[0] = write ? 0xaa : 0xa8;
        pbe32(q.cdb + 2, (u32)lba);
        pbe32(q.cdb + 6, blocks);
        q.cdb_len = 12;
        break;
    default:
        q.cdb[0] = write ? 0x8a : 0x88;
        pbe64(q.cdb + 2, lba);
        pbe32(q.cdb + 10, blocks);
        q.cdb_len = 16;
        break;
    }
    if (fua)
        q.cdb[1] |= 0x08;
    return q;
}

void scsi_find_controller(void)
{
    begin(REQUESTOFFERS);
    send(1, 8, "REQUESTOFFERS");
    for (;;) {
        u32 t = recv(0, 5 * SECOND);
        if (t == ALLOFFERS_DELIVERED)
            break;
        if (t != OFFERCHANNEL || msg_len < 196)
            fail("REQUESTOFFERS: message type %u of %u bytes", t, msg_len);
        if (guid_is(msg + 8, scsi.guid) && get16(msg, 180) == 0) {
            scsi.relid = get32(msg, 184);
            conn_scsi = get32(msg, 192);
            for (u32 i = 0; i < 16; i++)
                scsi_instance[i] = msg[24 + i];
        }
    }
    if (!scsi.relid)
        fail("no SCSI controller offered (run with --disk)");
}

void scsi_open_0602(void)
{
    struct reply r;
    open_ic(&scsi, ring_scsi);
    if (vstor_op(OP_BEGIN_INIT, 64, 64, 0, &r, "BEGIN_INITIALIZATION"))
        fail("BEGIN_INITIALIZATION: status 0x%x", r.status);
    srb_size = 0x34;
    if (vstor_op(OP_QUERY_VERSION, 64, 12 + srb_size, 0x0602, &r, "QUERY_PROTOCOL_VERSION"))
        fail("QUERY_PROTOCOL_VERSION 0x0602: status 0x%x", r.status);
    if (vstor_op(OP_QUERY_PROPERTIES, 64, 12 + srb_size, 0, &r, "QUERY_PROPERTIES"))
        fail("QUERY_PROPERTIES: status 0x%x", r.status);
    if (vstor_op(OP_END_INIT, 64, 12 + srb_size, 0, &r, "END_INITIALIZATION"))
        fail("END_INITIALIZATION: status 0x%x", r.status);
}
