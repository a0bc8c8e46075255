/* storvsc: the storage worker's SCSI controller driven from a freestanding guest as Linux's
 * storvsc does (docs/storage.md; wire layouts in ../shared/reference/vmbus-storvsc.md section 4).
 * Run with `--disk a.img[,serial=S] --disk b.img,readonly` (LUN 0 writable, LUN 1 read-only,
 * its first MiB filled by the host with pattern(off, RO_SEED)), 1 or 2 vCPUs. VP 0 does
 * everything; with 2 vCPUs the last session's channel targets VP 1 (its SIEF bit and SINT2
 * interrupts land there). Every completion must be a VM_PKT_COMP of exactly 12 + the version's
 * SRB size with the request's transaction id, announced by the channel's SIEF bit and a SINT2
 * interrupt on the channel's VP.
 * Command line: `seed=N` (the write pattern), `maxver=0xNNNN` (the highest version the host
 * accepts: `--disk ...,protocol=`), `quick=1` (handshakes, INQUIRY and one read per version only).
 *  1. Versions: for every version the host accepts (0x0602, 0x0600, 0x0501, 0x0402, 0x0200, those
 *     above maxver refused with REVISION_MISMATCH), a fresh ring GPADL and OPENCHANNEL, BEGIN_
 *     INITIALIZATION, QUERY_PROTOCOL_VERSION (0x0A00 and, below the first, every version above
 *     maxver refused first), QUERY_PROPERTIES, END_INITIALIZATION, with packets of that version's
 *     size (64 bytes, 48 before Win8) and replies of exactly the request's size before a version
 *     is agreed and 12 + SRB size after; out of order QUERY_PROPERTIES gets INVALID_DEVICE_STATE;
 *     then INQUIRY and READ(10) of the read-only disk at that SRB size; CLOSECHANNEL and
 *     GPADL_TEARDOWN. The last session (maxver) stays open.
 *  2. REPORT LUNS, INQUIRY (standard and VPD 00, 80, 83, B0, B1, B2), READ CAPACITY (10)/(16),
 *     MODE SENSE (6) (WP, WCE), TEST UNIT READY on both LUNs.
 *  3. Write / read-back / compare at random LBAs and sizes: one block, a page, page-crossing
 *     buffers with a non-zero first-page offset, the maximum transfer (aligned and offset), with
 *     WRITE/READ (6), (10), (12), (16); FUA writes; SYNCHRONIZE CACHE (10)/(16). Each is printed
 *     as `storvsc: wrote lun=0 lba=L blocks=N ...` for the host to check the image.
 *  4. UNMAP of a written range: reads back zeros (`storvsc: unmapped lun=0 lba=L blocks=N`).
 *  5. The read-only disk: its data reads back; WRITE, FUA WRITE and UNMAP get DATA PROTECT.
 *  6. LBAs past the end: ILLEGAL REQUEST / LBA OUT OF RANGE (21/00), 64-bit overflow included.
 *  7. Missing LUN and target: INQUIRY GOOD with byte 0 0x7F, other commands SRB_STATUS_INVALID_LUN,
 *     VPD INVALID_REQUEST.
 *  8. Hostile packets: PFNs outside RAM, a transfer longer than the buffer, a CDB's transfer longer
 *     than the SRB's, range count 0 and a first-page offset >= 4096, transfer above the maximum,
 *     cdb_length 0 and 17, a truncated SRB, an 8-byte packet, an unknown operation: each answered,
 *     nothing moved, and the disk still serves (TEST UNIT READY and a read after each).
 *  9. Sub-channels: with 1 vCPU QUERY_PROPERTIES offers none; with 2, max_channel_cnt 1 and flags
 *     bit 0: CREATE_SUB_CHANNELS above the limit (and 10^9 cut to 16 bits) INVALID_PARAMETER with
 *     no offer; 1: status 0 and one offer (the controller's GUIDs, index 1, a new relid and
 *     connection); 1 again: no second offer; 0: INVALID_PARAMETER; GPADL and OPEN on VP 1, a
 *     write, read-back and a LUN 1 read there (completions on its ring, SIEF bit and SINT2 on
 *     VP 1); CREATE_SUB_CHANNELS and BEGIN_INITIALIZATION on it INVALID_DEVICE_STATE; the primary
 *     reads the sub-channel's data; then the sub-channel closes, the primary closes, the host
 *     rescinds the sub-channel and the guest releases it.
 * `storvsc: ok` at the end.
 * `faults=1` (io-error) or `faults=2` (torn): after 1., the fault mode of storvsc_faults.c instead of 2.-9. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "synictest.h"
#include "vmbus_guest.h"
#include "storvsc_guest.h"

#define NAME "storvsc"

#define RO_SEED 0x0123456789abcdefull

static struct channel sub = {"scsi sub-channel 1", {0}};
static u8 ring_sub[RING_PAGES * 4096] __attribute__((aligned(4096)));
static u8 wbuf[MAX_XFER + 8192] __attribute__((aligned(4096)));
static u8 rbuf[MAX_XFER + 8192] __attribute__((aligned(4096)));
static u32 conn_sub;
static u64 seed;
static u64 rng;
static u64 cap0, cap1;                 /* blocks */
static u32 max_channels, prop_flags;

static u64 rand64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

/* ---- 1. versions ---- */

static const u16 all_versions[] = {0x0602, 0x0600, 0x0501, 0x0402, 0x0200};

static void teardown(struct channel *ch)
{
    close_channel(ch);
    begin(GPADL_TEARDOWN);
    put32(out, 8, ch->relid);
    put32(out, 12, ch->gpadl);
    send(1, 16, "GPADL_TEARDOWN");
    expect(GPADL_TORNDOWN, 12, "ring GPADL_TEARDOWN after CLOSECHANNEL");
    if (get32(msg, 8) != ch->gpadl)
        fail("GPADL_TORNDOWN for 0x%x, expected 0x%x", get32(msg, 8), ch->gpadl);
    ch->gpadl = 0;
}

/* A session at `version`: open, the handshake (refusing every version above it first when
 * `refuse_above`), INQUIRY and a read of the read-only disk. */
static void session(u16 version, u16 maxver, u32 vp, bool refuse_above)
{
    struct reply r;
    u32 size = version >= 0x0501 ? 64 : 48;
    scsi.vp = vp;
    open_ic(&scsi, ring_scsi);
    /* Out of order: QUERY_PROPERTIES before BEGIN_INITIALIZATION. */
    if (vstor_op(OP_QUERY_PROPERTIES, size, size, 0, &r, "QUERY_PROPERTIES first") != ST_INVALID_DEVICE_STATE)
        fail("QUERY_PROPERTIES before BEGIN_INITIALIZATION: status 0x%x, expected INVALID_DEVICE_STATE", r.status);
    if (vstor_op(OP_BEGIN_INIT, size, size, 0, &r, "BEGIN_INITIALIZATION"))
        fail("BEGIN_INITIALIZATION: status 0x%x", r.status);
    u32 refused = 0;
    if (vstor_op(OP_QUERY_VERSION, size, size, 0x0A00, &r, "QUERY_PROTOCOL_VERSION 0x0A00") != ST_REVISION_MISMATCH)
        fail("version 0x0A00: status 0x%x, expected REVISION_MISMATCH", r.status);
    refused++;
    for (u32 i = 0; refuse_above && i < ARRAY_SIZE(all_versions); i++) {
        if (all_versions[i] <= version)
            break;
        if (vstor_op(OP_QUERY_VERSION, size, size, all_versions[i], &r, "QUERY_PROTOCOL_VERSION above") != ST_REVISION_MISMATCH)
            fail("version 0x%04x above 0x%04x: status 0x%x, expected REVISION_MISMATCH", all_versions[i], maxver, r.status);
        refused++;
    }
    srb_size = version >= 0x0501 ? 0x34 : 0x24;
    if (vstor_op(OP_QUERY_VERSION, size, 12 + srb_size, version, &r, "QUERY_PROTOCOL_VERSION"))
        fail("version 0x%04x: status 0x%x", version, r.status);
    if (vstor_op(OP_QUERY_PROPERTIES, size, 12 + srb_size, 0, &r, "QUERY_PROPERTIES"))
        fail("QUERY_PROPERTIES at 0x%04x: status 0x%x", version, r.status);
    max_channels = get16(pkt, 16);
    prop_flags = get32(pkt, 20);
    u32 mt = get32(pkt, 24);
    if (mt < 4096 || mt % 4096)
        fail("max_transfer_bytes 0x%x", mt);
    max_transfer = mt < MAX_XFER ? mt : MAX_XFER;
    if (version < 0x0501 && (prop_flags & 1))
        fail("multi-channel offered at 0x%04x (before Win8)", version);
    if (vstor_op(OP_END_INIT, size, 12 + srb_size, 0, &r, "END_INITIALIZATION"))
        fail("END_INITIALIZATION: status 0x%x", r.status);
    /* INQUIRY and a read at this SRB size. */
    u8 *b = rbuf;
    inquiry(0, 0, 0, 0xff, b, 36, &r, "INQUIRY in a session");
    expect_good(&r, 36, "INQUIRY in a session");
    if (memcmp(b + 8, "Msft    Virtual Disk    ", 24))
        fail("INQUIRY at 0x%04x: vendor/product \"%.24s\"", version, (const char *)b + 8);
    poison(b, 8 * BLOCK);
    struct req q = rw(1, false, 10, 8, 8, false, b);
    exec(&q, &r, "READ(10) in a session");
    expect_good(&r, 8 * BLOCK, "READ(10) in a session");
    compare(b, 8 * BLOCK, 8 * BLOCK, RO_SEED, "READ(10) of the read-only disk in a session");
    st_printf(NAME ": protocol 0x%04x: %u refused first, packets of %u bytes, SRB 0x%x, max_transfer 0x%x, channels %u flags 0x%x; "
              "INQUIRY and READ(10) ok (vp %u)\n", version, refused, size, srb_size, mt, max_channels, prop_flags, vp);
}

/* ---- 2. identification ---- */

static void identify(void)
{
    struct reply r;
    u8 *b = rbuf;
    /* REPORT LUNS */
    struct req q = data_req(0, 1, b, 4096);
    q.cdb[0] = 0xa0;
    pbe32(q.cdb + 6, 4096);
    q.cdb_len = 12;
    exec(&q, &r, "REPORT LUNS");
    if (r.srb_status != SRB_SUCCESS || be32(b) != 16 || b[9] != 0 || b[17] != 1)
        fail("REPORT LUNS: srb 0x%x list of %u bytes, LUNs %u %u", r.srb_status, be32(b), b[9], b[17]);
    st_printf(NAME ": REPORT LUNS: 2 LUNs\n");
    for (u8 lun = 0; lun < 2; lun++) {
        inquiry(0, 0, lun, 0xff, b, 96, &r, "INQUIRY");
        expect_good(&r, 36, "INQUIRY");
        if ((b[0] & 0x1f) != 0 || b[2] != 5 || (b[3] & 15) != 2 || !(b[7] & 2))
            fail("INQUIRY lun %u: pdt 0x%x version %u format %u flags 0x%x", lun, b[0], b[2], b[3], b[7]);
        char vendor[29];
        memcpy(vendor, b + 8, 28);
        vendor[28] = 0;
        /* VPD 00 */
        inquiry(0, 0, lun, 0, b, 255, &r, "VPD 00");
        u32 n = be16(b + 2);
        if (r.srb_status != SRB_SUCCESS || b[1] != 0 || n != 6 || memcmp(b + 4, "\x00\x80\x83\xb0\xb1\xb2", 6))
            fail("VPD 00 lun %u: srb 0x%x %u pages", lun, r.srb_status, n);
        /* VPD 80: the serial */
        inquiry(0, 0, lun, 0x80, b, 255, &r, "VPD 80");
        u32 sn = be16(b + 2);
        if (r.srb_status != SRB_SUCCESS || b[1] != 0x80 || sn == 0 || sn > 64)
            fail("VPD 80 lun %u: srb 0x%x length %u", lun, r.srb_status, sn);
        char serial[65];
        memcpy(serial, b + 4, sn);
        serial[sn] = 0;
        /* VPD 83: a T10 vendor ID designator with the serial in it */
        inquiry(0, 0, lun, 0x83, b, 255, &r, "VPD 83");
        if (r.srb_status != SRB_SUCCESS || b[1] != 0x83 || (b[5] & 15) != 1 || b[7] < 8 + sn
            || memcmp(b + 8, "Msft    ", 8) || memcmp(b + 8 + b[7] - sn, serial, sn))
            fail("VPD 83 lun %u: srb 0x%x designator type %u length %u", lun, r.srb_status, b[5] & 15, b[7]);
        /* VPD B0 */
        inquiry(0, 0, lun, 0xb0, b, 64, &r, "VPD B0");
        u32 max_blocks = be32(b + 8), max_unmap = be32(b + 20);
        if (r.srb_status != SRB_SUCCESS || b[1] != 0xb0 || be16(b + 2) != 0x3c || max_blocks * BLOCK != max_transfer)
            fail("VPD B0 lun %u: srb 0x%x length %u max transfer %u blocks", lun, r.srb_status, be16(b + 2), max_blocks);
        if ((lun == 0) != (max_unmap != 0))
            fail("VPD B0 lun %u: max unmap %u", lun, max_unmap);
        /* VPD B1 */
        inquiry(0, 0, lun, 0xb1, b, 64, &r, "VPD B1");
        if (r.srb_status != SRB_SUCCESS || b[1] != 0xb1 || be16(b + 4) != 1)
            fail("VPD B1 lun %u: rotation rate %u", lun, be16(b + 4));
        /* VPD B2 */
        inquiry(0, 0, lun, 0xb2, b, 64, &r, "VPD B2");
        if (r.srb_status != SRB_SUCCESS || b[1] != 0xb2 || (lun == 0) != ((b[5] & 0x80) != 0))
            fail("VPD B2 lun %u: byte 5 0x%x", lun, b[5]);
        /* READ CAPACITY (10) and (16) */
        struct req c = data_req(lun, 1, b, 8);
        c.cdb[0] = 0x25;
        c.cdb_len = 10;
        exec(&c, &r, "READ CAPACITY(10)");
        expect_good(&r, 8, "READ CAPACITY(10)");
        u64 last10 = be32(b);
        if (be32(b + 4) != BLOCK)
            fail("READ CAPACITY(10) lun %u: block size %u", lun, be32(b + 4));
        c = data_req(lun, 1, b, 32);
        c.cdb[0] = 0x9e;
        c.cdb[1] = 0x10;
        pbe32(c.cdb + 10, 32);
        c.cdb_len = 16;
        exec(&c, &r, "READ CAPACITY(16)");
        expect_good(&r, 32, "READ CAPACITY(16)");
        u64 last16 = be64(b);
        if (last16 != last10 || be32(b + 8) != BLOCK || (lun == 0) != ((b[14] & 0x80) != 0))
            fail("READ CAPACITY(16) lun %u: last %llu (10: %llu) block %u byte14 0x%x", lun, last16, last10, be32(b + 8), b[14]);
        if (lun == 0)
            cap0 = last16 + 1;
        else
            cap1 = last16 + 1;
        /* MODE SENSE(6) 3F: WP; 08: WCE */
        struct req m = data_req(lun, 1, b, 255);
        m.cdb[0] = 0x1a;
        m.cdb[2] = 0x3f;
        m.cdb[4] = 255;
        exec(&m, &r, "MODE SENSE(6) 3F");
        if (r.srb_status != SRB_SUCCESS || ((b[2] & 0x80) != 0) != (lun == 1) || (lun == 0 && !(b[2] & 0x10)))
            fail("MODE SENSE lun %u: device-specific 0x%x", lun, b[2]);
        m.cdb[2] = 0x08;
        exec(&m, &r, "MODE SENSE(6) 08");
        if (r.srb_status != SRB_SUCCESS || (b[4 + b[3]] & 0x3f) != 8 || !(b[4 + b[3] + 2] & 4))
            fail("MODE SENSE 08 lun %u: page 0x%x byte 2 0x%x", lun, b[4 + b[3]], b[4 + b[3] + 2]);
        struct req t = simple(lun, 0x00);
        exec(&t, &r, "TEST UNIT READY");
        expect_good(&r, 0, "TEST UNIT READY");
        st_printf(NAME ": lun %u: %s serial \"%s\", VPD 00 80 83 b0 b1 b2, %llu blocks of 512 (RC10 = RC16), max transfer %u "
                  "blocks, max unmap %u, %s%s, write cache on\n", lun, vendor, serial, last16 + 1, max_blocks, max_unmap,
                  lun == 0 ? "thin" : "not thin", lun == 1 ? ", write-protected" : "");
    }
}

/* ---- 3. data ---- */

static void write_read(u32 kind, u64 lba, u32 blocks, u32 offset, bool fua, const char *how)
{
    struct reply r;
    u32 len = blocks * BLOCK;
    u8 *w = wbuf + offset, *rd = rbuf + (offset ? 4096 - offset : 0);
    fill(w, lba * BLOCK, len, seed);
    struct req q = rw(0, true, kind, lba, kind == 6 && blocks == 256 ? 0 : blocks, fua, w);
    q.xfer = q.buf_len = len;
    exec(&q, &r, how);
    expect_good(&r, len, how);
    poison(rd, len);
    q = rw(0, false, kind, lba, kind == 6 && blocks == 256 ? 0 : blocks, false, rd);
    q.xfer = q.buf_len = len;
    exec(&q, &r, how);
    expect_good(&r, len, how);
    compare(rd, lba * BLOCK, len, seed, how);
    st_printf(NAME ": wrote lun=0 lba=%llu blocks=%u offset=0x%x %s%s, read back at offset 0x%x, compared\n", lba, blocks, offset,
              how, fua ? " FUA" : "", (u32)((uptr)rd & 4095));
}

/* Random writes stay below 48 MiB (the UNMAP range is above). */
static u64 random_lba(u32 blocks, u64 limit)
{
    u64 top = (cap0 < limit ? cap0 : limit) - blocks;
    return rand64() % (top + 1);
}

static void data_tests(void)
{
    u64 low = 48ull << 11;   /* 48 MiB in blocks */
    u32 maxb = max_transfer / BLOCK;
    write_read(10, random_lba(1, low), 1, 0, false, "WRITE(10)/READ(10)");
    write_read(16, random_lba(8, low), 8, 0, false, "WRITE(16)/READ(16)");
    write_read(6, random_lba(8, 0x1fffff), 8, 0x200, false, "WRITE(6)/READ(6)");
    write_read(12, random_lba(9, low), 9, 0xe00, false, "WRITE(12)/READ(12)");
    for (u32 i = 0; i < 4; i++) {
        u32 blocks = 1 + (u32)(rand64() % (maxb < 512 ? maxb : 512));
        u32 offset = (u32)(rand64() % 8) * BLOCK;
        static const u32 kinds[] = {10, 16, 12, 10};
        write_read(kinds[i], random_lba(blocks, low), blocks, offset, false, i == 1 ? "WRITE(16)/READ(16)" : i == 2 ? "WRITE(12)/READ(12)"
                   : "WRITE(10)/READ(10)");
    }
    write_read(10, random_lba(maxb, low), maxb, 0, false, "WRITE(10)/READ(10) max transfer");
    write_read(16, random_lba(maxb, low), maxb, 0x600, false, "WRITE(16)/READ(16) max transfer");
    write_read(10, random_lba(16, low), 16, 0x400, true, "WRITE(10)/READ(10)");
    write_read(16, random_lba(3, low), 3, 0, true, "WRITE(16)/READ(16)");
    /* The last blocks of the disk. */
    write_read(16, cap0 - 8, 8, 0, false, "WRITE(16)/READ(16) at the end");
    /* SYNCHRONIZE CACHE (10) and (16). */
    struct reply r;
    struct req s = simple(0, 0x35);
    s.cdb_len = 10;
    exec(&s, &r, "SYNCHRONIZE CACHE(10)");
    expect_good(&r, 0, "SYNCHRONIZE CACHE(10)");
    s = simple(0, 0x91);
    s.cdb_len = 16;
    exec(&s, &r, "SYNCHRONIZE CACHE(16)");
    expect_good(&r, 0, "SYNCHRONIZE CACHE(16)");
    st_printf(NAME ": SYNCHRONIZE CACHE(10) and (16): GOOD\n");
}

/* ---- 4. UNMAP ---- */

static void unmap_list(u8 *b, u64 lba, u32 blocks)
{
    for (u32 i = 0; i < 24; i++)
        b[i] = 0;
    pbe16(b, 22);
    pbe16(b + 2, 16);
    pbe64(b + 8, lba);
    pbe32(b + 16, blocks);
}

static void unmap_test(void)
{
    struct reply r;
    u64 lba = 56ull << 11;   /* 56 MiB */
    u32 blocks = 256;        /* 128 KiB */
    write_read(10, lba, blocks, 0, false, "WRITE(10)/READ(10) before UNMAP");
    u8 *b = wbuf;
    unmap_list(b, lba, blocks);
    struct req q = data_req(0, 0, b, 24);
    q.cdb[0] = 0x42;
    pbe16(q.cdb + 7, 24);
    q.cdb_len = 10;
    exec(&q, &r, "UNMAP");
    /* The parameter list was read, though the host reports no data moved (Linux's sd ignores the
     * residual of an UNMAP). */
    expect_good(&r, r.xfer == 24 ? 24 : 0, "UNMAP");
    u32 unmap_xfer = r.xfer;
    q = rw(0, false, 16, lba, blocks, false, rbuf);
    poison(rbuf, blocks * BLOCK);
    exec(&q, &r, "READ(16) after UNMAP");
    expect_good(&r, blocks * BLOCK, "READ(16) after UNMAP");
    expect_zero(rbuf, blocks * BLOCK, "READ(16) after UNMAP");
    st_printf(NAME ": unmapped lun=0 lba=%llu blocks=%u (data_transfer_length %u): reads zeros\n", lba, blocks, unmap_xfer);
}

/* ---- 5. the read-only disk ---- */

static void readonly_test(void)
{
    struct reply r;
    u32 blocks = 128;
    poison(rbuf, blocks * BLOCK);
    struct req q = rw(1, false, 10, 0, blocks, false, rbuf);
    exec(&q, &r, "READ(10) of the read-only disk");
    expect_good(&r, blocks * BLOCK, "READ(10) of the read-only disk");
    compare(rbuf, 0, blocks * BLOCK, RO_SEED, "READ(10) of the read-only disk");
    fill(wbuf, 0, 8 * BLOCK, seed);
    q = rw(1, true, 10, 0, 8, false, wbuf);
    exec(&q, &r, "WRITE(10) to the read-only disk");
    expect_sense(&r, SRB_ERROR, KEY_DATA_PROTECT, 0x27, 0, "WRITE(10) to the read-only disk");
    q = rw(1, true, 16, 16, 8, true, wbuf);
    exec(&q, &r, "WRITE(16) FUA to the read-only disk");
    expect_sense(&r, SRB_ERROR, KEY_DATA_PROTECT, 0x27, 0, "WRITE(16) FUA to the read-only disk");
    unmap_list(wbuf, 0, 8);
    q = data_req(1, 0, wbuf, 24);
    q.cdb[0] = 0x42;
    pbe16(q.cdb + 7, 24);
    q.cdb_len = 10;
    exec(&q, &r, "UNMAP of the read-only disk");
    if ((r.srb_status & 0x3f) == SRB_SUCCESS)
        fail("UNMAP of the read-only disk succeeded");
    if ((r.sense[2] & 15) != KEY_DATA_PROTECT && (r.sense[2] & 15) != KEY_ILLEGAL_REQUEST)
        fail("UNMAP of the read-only disk: sense key %x", r.sense[2] & 15);
    u32 unmap_key = r.sense[2] & 15, unmap_asc = r.sense[12];
    struct req s = simple(1, 0x35);
    s.cdb_len = 10;
    exec(&s, &r, "SYNCHRONIZE CACHE of the read-only disk");
    expect_good(&r, 0, "SYNCHRONIZE CACHE of the read-only disk");
    st_printf(NAME ": read-only lun 1: data reads back; WRITE(10), WRITE(16) FUA: DATA PROTECT 27/00; UNMAP refused (%x/%02x); "
              "SYNCHRONIZE CACHE GOOD\n", unmap_key, unmap_asc);
}

/* ---- 6. past the end ---- */

static void past_end(void)
{
    struct reply r;
    struct { u8 lun; bool write; u32 kind; u64 lba; u32 blocks; } cases[] = {
        {0, false, 10, cap0, 1, },
        {0, false, 10, cap0 - 1, 2},
        {0, true, 16, cap0, 8},
        {0, false, 16, 0xfffffffffffffff0ull, 32},
        {1, false, 10, cap1, 1},
    };
    for (u32 i = 0; i < ARRAY_SIZE(cases); i++) {
        u8 *b = cases[i].write ? wbuf : rbuf;
        struct req q = rw(cases[i].lun, cases[i].write, cases[i].kind, cases[i].lba, cases[i].blocks, false, b);
        exec(&q, &r, "past the end");
        expect_sense(&r, SRB_ERROR, KEY_ILLEGAL_REQUEST, 0x21, 0, "past the end");
    }
    st_printf(NAME ": %u requests past the end (64-bit overflow included): ILLEGAL REQUEST 21/00\n", (u32)ARRAY_SIZE(cases));
}

/* ---- 7. missing LUNs ---- */

static void missing(void)
{
    struct reply r;
    u8 *b = rbuf;
    struct { u8 path, target, lun; } where[] = {{0, 0, 5}, {0, 1, 0}, {1, 0, 0}};
    for (u32 i = 0; i < ARRAY_SIZE(where); i++) {
        inquiry(where[i].path, where[i].target, where[i].lun, 0xff, b, 36, &r, "INQUIRY of a missing LUN");
        expect_good(&r, 36, "INQUIRY of a missing LUN");
        if (b[0] != 0x7f)
            fail("INQUIRY %u:%u:%u: byte 0 0x%x, expected 0x7F", where[i].path, where[i].target, where[i].lun, b[0]);
        struct req t = simple(where[i].lun, 0x00);
        t.path = where[i].path;
        t.target = where[i].target;
        exec(&t, &r, "TEST UNIT READY of a missing LUN");
        if ((r.srb_status & 0x3f) != SRB_INVALID_LUN)
            fail("TEST UNIT READY %u:%u:%u: srb 0x%x, expected INVALID_LUN", where[i].path, where[i].target, where[i].lun,
                 r.srb_status);
        struct req rd = rw(where[i].lun, false, 10, 0, 1, false, b);
        rd.path = where[i].path;
        rd.target = where[i].target;
        exec(&rd, &r, "READ(10) of a missing LUN");
        if ((r.srb_status & 0x3f) != SRB_INVALID_LUN || r.xfer != 0)
            fail("READ(10) %u:%u:%u: srb 0x%x, %u bytes", where[i].path, where[i].target, where[i].lun, r.srb_status, r.xfer);
    }
    inquiry(0, 0, 5, 0x80, b, 255, &r, "VPD 80 of a missing LUN");
    if ((r.srb_status & 0x3f) != SRB_INVALID_REQUEST || r.scsi_status != CHECK_CONDITION)
        fail("VPD 80 of LUN 5: srb 0x%x scsi 0x%x", r.srb_status, r.scsi_status);
    st_printf(NAME ": missing LUN 5, target 1, path 1: INQUIRY GOOD with 0x7F, TEST UNIT READY and READ INVALID_LUN, VPD "
              "INVALID_REQUEST\n");
}

/* ---- 8. hostile packets ---- */

static void still_serving(const char *what)
{
    struct reply r;
    struct req t = simple(0, 0x00);
    exec(&t, &r, what);
    expect_good(&r, 0, what);
    poison(rbuf, 8 * BLOCK);
    struct req q = rw(1, false, 10, 0, 8, false, rbuf);
    exec(&q, &r, what);
    expect_good(&r, 8 * BLOCK, what);
    compare(rbuf, 0, 8 * BLOCK, RO_SEED, what);
}

/* An SRB with a hand-made range list (ext: reserved/count, then ranges). */
static void raw_gpa(const struct req *q, const u64 *ext, u32 ext_words, struct reply *r, const char *what)
{
    u8 p[64] __attribute__((aligned(8)));
    srb_packet(p, q);
    u64 id = next_id++;
    submit(&scsi, conn_scsi, 9, id, ext, ext_words, p, 12 + srb_size);
    wait_reply(&scsi, id, 12 + srb_size, r, what);
}

static void hostile(void)
{
    struct reply r;
    u32 n = 0;
    /* PFNs outside RAM (a write: nothing may land anywhere). */
    u64 bad_pfns[] = {ram_pages + 100, 0xfffffffffull, 0xffffffffffffull};
    for (u32 i = 0; i < ARRAY_SIZE(bad_pfns); i++) {
        struct req q = rw(0, i != 1, 10, 64, 8, false, NULL);
        q.xfer = 8 * BLOCK;
        u64 ext[3] = {1ull << 32, (u64)(8 * BLOCK), bad_pfns[i]};
        raw_gpa(&q, ext, 3, &r, "PFN outside RAM");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "PFN outside RAM");
        n++;
    }
    /* A buffer crossing from RAM to outside it: the second PFN is bad. */
    {
        struct req q = rw(0, false, 10, 64, 8, false, NULL);
        u64 ext[4] = {1ull << 32, 4096ull | 0x200ull << 32, (u64)(uptr)rbuf >> 12, ram_pages + 1};
        q.xfer = 4096;
        raw_gpa(&q, ext, 4, &r, "second PFN outside RAM");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "second PFN outside RAM");
        n++;
    }
    still_serving("after PFNs outside RAM");
    /* data_transfer_length beyond the buffer's range. */
    {
        struct req q = rw(0, false, 10, 64, 16, false, rbuf);
        q.buf_len = 4096;   /* the range: one page; the SRB and CDB: 8 KiB */
        exec(&q, &r, "transfer beyond the buffer");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "transfer beyond the buffer");
        n++;
    }
    /* The CDB's transfer beyond data_transfer_length (a write of 16 blocks with a 4 KiB buffer). */
    {
        fill(wbuf, 0, 4096, 0x5555);
        struct req q = rw(0, true, 10, 0, 16, false, wbuf);
        q.xfer = q.buf_len = 4096;
        exec(&q, &r, "CDB transfer beyond the SRB's");
        if ((r.srb_status & 0x3f) == SRB_SUCCESS || r.scsi_status != CHECK_CONDITION || (r.sense[2] & 15) != KEY_ILLEGAL_REQUEST)
            fail("WRITE(10) of 16 blocks with 4 KiB: srb 0x%x scsi 0x%x key %x", r.srb_status, r.scsi_status, r.sense[2] & 15);
        n++;
    }
    /* Range count 0; a first-page offset of 4096; two ranges. */
    {
        struct req q = rw(0, false, 10, 64, 8, false, NULL);
        q.xfer = 4096;
        u64 pfn = (u64)(uptr)rbuf >> 12;
        u64 e0[3] = {0, 4096, pfn};
        raw_gpa(&q, e0, 3, &r, "range count 0");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "range count 0");
        u64 e1[4] = {1ull << 32, 4096 | 4096ull << 32, pfn, pfn + 1};
        raw_gpa(&q, e1, 4, &r, "offset 4096");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "offset 4096");
        u64 e2[5] = {2ull << 32, 2048, pfn, 2048, pfn + 1};
        raw_gpa(&q, e2, 5, &r, "two ranges");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "two ranges");
        n += 3;
    }
    still_serving("after bad range lists");
    /* data_transfer_length above the maximum transfer. */
    {
        struct req q = rw(0, false, 16, 0, (max_transfer + 4096) / BLOCK, false, rbuf);
        exec(&q, &r, "transfer above the maximum");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "transfer above the maximum");
        n++;
    }
    /* cdb_length 0 and 17. */
    for (u32 len = 0; len <= 17; len += 17) {
        struct req t = simple(0, 0x00);
        t.cdb_len = (u8)len;
        exec(&t, &r, "bad cdb_length");
        expect_sense(&r, SRB_INVALID_REQUEST, KEY_ILLEGAL_REQUEST, 0x24, 0, "bad cdb_length");
        n++;
    }
    /* A truncated SRB (12 + 0x1c bytes: shorter than any SRB), an 8-byte packet, an unknown operation. */
    {
        u8 p[64] __attribute__((aligned(8)));
        struct req t = simple(0, 0x00);
        srb_packet(p, &t);
        u64 id = next_id++;
        submit(&scsi, conn_scsi, 6, id, NULL, 0, p, 12 + 0x1c);
        wait_reply(&scsi, id, 12 + srb_size, &r, "truncated SRB");
        /* No sense: the SRB's sense_info_length is not there to read. */
        if (r.status != ST_INVALID_PARAMETER || r.srb_status != SRB_INVALID_REQUEST || r.xfer != 0)
            fail("truncated SRB: status 0x%x srb 0x%x, expected INVALID_PARAMETER and INVALID_REQUEST", r.status, r.srb_status);
        id = next_id++;
        submit(&scsi, conn_scsi, 6, id, NULL, 0, p, 8);
        wait_reply(&scsi, id, 12 + srb_size, &r, "8-byte packet");
        if (r.status != ST_INVALID_PARAMETER)
            fail("8-byte packet: status 0x%x, expected INVALID_PARAMETER", r.status);
        put32(p, 0, 0x55);
        id = next_id++;
        submit(&scsi, conn_scsi, 6, id, NULL, 0, p, 12 + srb_size);
        wait_reply(&scsi, id, 12 + srb_size, &r, "unknown operation");
        if (r.status != ST_INVALID_PARAMETER)
            fail("unknown operation: status 0x%x, expected INVALID_PARAMETER", r.status);
        n += 3;
    }
    still_serving("after truncated packets");
    st_printf(NAME ": %u hostile packets answered, nothing moved; still serving\n", n);
}

/* ---- 9. sub-channels ---- */

#define RESCIND_CHANNELOFFER 2
static bool sub_used;                  /* the primary was closed here, with its sub-channel */

/* One vstor operation on `ch` with the request's transaction id; returns the NTSTATUS. */
static u32 vstor_op_on(struct channel *ch, u32 conn, u32 op, u16 arg, struct reply *r, const char *what)
{
    return vstor_op_id(ch, conn, next_id++, op, 64, 64, arg, r, what);
}

/* Sub-channels (reference 4.8): offered by QUERY_PROPERTIES only with 2 vCPUs (max_channel_cnt
 * vCPUs - 1), created on request, each a channel of its own whose completions come back on its
 * own ring and VP. */
static void subchannels(void)
{
    if (ncpus < 2) {
        if ((prop_flags & 1) || max_channels != 0)
            fail("1 vCPU: QUERY_PROPERTIES offers %u sub-channels (flags 0x%x), expected none", max_channels, prop_flags);
        st_printf(NAME ": no sub-channels offered (max_channel_cnt %u, flags 0x%x, %u vCPUs)\n", max_channels, prop_flags, ncpus);
        return;
    }
    if (!(prop_flags & 1) || max_channels != ncpus - 1)
        fail("%u vCPUs: QUERY_PROPERTIES max_channel_cnt %u flags 0x%x, expected %u and bit 0", ncpus, max_channels, prop_flags,
             ncpus - 1);
    struct reply r;
    /* More than the limit, and 10^9 cut to its u16: INVALID_PARAMETER, and no offer. */
    if (vstor_op(OP_CREATE_SUB_CHANNELS, 64, 64, (u16)(max_channels + 1), &r, "CREATE_SUB_CHANNELS above the limit")
        != ST_INVALID_PARAMETER)
        fail("CREATE_SUB_CHANNELS %u: status 0x%x, expected INVALID_PARAMETER", max_channels + 1, r.status);
    if (vstor_op(OP_CREATE_SUB_CHANNELS, 64, 64, (u16)1000000000u, &r, "CREATE_SUB_CHANNELS 10^9") != ST_INVALID_PARAMETER)
        fail("CREATE_SUB_CHANNELS 10^9: status 0x%x, expected INVALID_PARAMETER", r.status);
    probe("no offer after refused CREATE_SUB_CHANNELS");
    /* One sub-channel: status 0, then its offer. */
    if (vstor_op(OP_CREATE_SUB_CHANNELS, 64, 64, 1, &r, "CREATE_SUB_CHANNELS"))
        fail("CREATE_SUB_CHANNELS 1: status 0x%x", r.status);
    u32 t = recv(0, 5 * SECOND);
    if (t != OFFERCHANNEL || msg_len < 196)
        fail("CREATE_SUB_CHANNELS: message type %u (%u bytes), expected an offer", t, msg_len);
    if (!guid_is(msg + 8, scsi.guid) || !guid_is(msg + 24, scsi_instance))
        fail("sub-channel offer: interface type or instance differs from the controller's");
    if (get16(msg, 180) != 1)
        fail("sub-channel offer: sub_channel_index %u, expected 1", get16(msg, 180));
    sub.relid = get32(msg, 184);
    conn_sub = get32(msg, 192);
    if (sub.relid == scsi.relid || sub.relid == 0 || sub.relid > 2047 || conn_sub != (sub.relid | 0x2000))
        fail("sub-channel offer: relid %u connection 0x%x (controller relid %u)", sub.relid, conn_sub, scsi.relid);
    if (msg[188] != 0xff || (msg[189] & 1) || !(get16(msg, 190) & 1))
        fail("sub-channel offer: monitorid 0x%x monitor_allocated %u dedicated %u", msg[188], msg[189] & 1, get16(msg, 190) & 1);
    /* The same count again: status 0, no second offer; fewer: INVALID_PARAMETER. */
    if (vstor_op(OP_CREATE_SUB_CHANNELS, 64, 64, 1, &r, "CREATE_SUB_CHANNELS again"))
        fail("CREATE_SUB_CHANNELS 1 again: status 0x%x", r.status);
    if (vstor_op(OP_CREATE_SUB_CHANNELS, 64, 64, 0, &r, "CREATE_SUB_CHANNELS 0") != ST_INVALID_PARAMETER)
        fail("CREATE_SUB_CHANNELS 0 after 1: status 0x%x, expected INVALID_PARAMETER", r.status);
    probe("no second sub-channel offer");
    st_printf(NAME ": sub-channel 1 offered: relid %u connection 0x%x, the controller's GUIDs\n", sub.relid, conn_sub);

    sub.vp = 1;
    open_ic(&sub, ring_sub);
    /* Write a pattern through the sub-channel, read it back there and on the primary. */
    u64 lba = 4096 + (rand64() % 1024) * 8;
    u32 blocks = 16;
    fill(wbuf, lba * BLOCK, blocks * BLOCK, seed);
    struct req q = rw(0, true, 10, lba, blocks, false, wbuf);
    exec_on(&sub, conn_sub, &q, &r, "WRITE(10) on the sub-channel");
    expect_good(&r, blocks * BLOCK, "WRITE(10) on the sub-channel");
    st_printf(NAME ": wrote lun=0 lba=%llu blocks=%u seed=%llu (sub-channel)\n", lba, blocks, seed);
    poison(rbuf, blocks * BLOCK);
    q = rw(0, false, 16, lba, blocks, false, rbuf);
    exec_on(&sub, conn_sub, &q, &r, "READ(16) on the sub-channel");
    expect_good(&r, blocks * BLOCK, "READ(16) on the sub-channel");
    compare(rbuf, lba * BLOCK, blocks * BLOCK, seed, "READ(16) on the sub-channel");
    poison(rbuf, 8 * BLOCK);
    q = rw(1, false, 10, 0, 8, false, rbuf);
    exec_on(&sub, conn_sub, &q, &r, "READ(10) of LUN 1 on the sub-channel");
    expect_good(&r, 8 * BLOCK, "READ(10) of LUN 1 on the sub-channel");
    compare(rbuf, 0, 8 * BLOCK, RO_SEED, "READ(10) of LUN 1 on the sub-channel");
    /* Not on a sub-channel: CREATE_SUB_CHANNELS and init operations get INVALID_DEVICE_STATE. */
    if (vstor_op_on(&sub, conn_sub, OP_CREATE_SUB_CHANNELS, 1, &r, "CREATE_SUB_CHANNELS on the sub-channel") != ST_INVALID_DEVICE_STATE)
        fail("CREATE_SUB_CHANNELS on the sub-channel: status 0x%x, expected INVALID_DEVICE_STATE", r.status);
    if (vstor_op_on(&sub, conn_sub, OP_BEGIN_INIT, 0, &r, "BEGIN_INITIALIZATION on the sub-channel") != ST_INVALID_DEVICE_STATE)
        fail("BEGIN_INITIALIZATION on the sub-channel: status 0x%x, expected INVALID_DEVICE_STATE", r.status);
    /* The primary still serves, and sees the sub-channel's write. */
    poison(rbuf, blocks * BLOCK);
    q = rw(0, false, 10, lba, blocks, false, rbuf);
    exec(&q, &r, "READ(10) on the primary after the sub-channel");
    expect_good(&r, blocks * BLOCK, "READ(10) on the primary after the sub-channel");
    compare(rbuf, lba * BLOCK, blocks * BLOCK, seed, "READ(10) on the primary after the sub-channel");
    st_printf(NAME ": sub-channel 1 (relid %u) open on vp 1: write, read-back and a read of LUN 1 ok; the primary still serves\n",
              sub.relid);

    /* As Linux: the sub-channel closes first, then the primary; the host then rescinds the
     * sub-channel (it goes with its primary) and the guest releases it. */
    teardown(&sub);
    close_channel(&scsi);
    t = recv(0, 5 * SECOND);
    if (t != RESCIND_CHANNELOFFER || get32(msg, 8) != sub.relid)
        fail("after closing the primary: message type %u relid %u, expected RESCIND_CHANNELOFFER of %u", t, get32(msg, 8), sub.relid);
    begin(RELID_RELEASED);
    put32(out, 8, sub.relid);
    send(1, 12, "RELID_RELEASED");
    begin(GPADL_TEARDOWN);
    put32(out, 8, scsi.relid);
    put32(out, 12, scsi.gpadl);
    send(1, 16, "GPADL_TEARDOWN");
    expect(GPADL_TORNDOWN, 12, "the primary's GPADL_TEARDOWN");
    scsi.gpadl = 0;
    sub_used = true;
    st_printf(NAME ": sub-channel closed, the primary closed, the sub-channel rescinded and released\n");
}

#include "storvsc_faults.c"

/* REQUESTOFFERS: the SCSI controller's relid and connection. */
static void find_controller(void)
{
    scsi_find_controller();
    st_printf(NAME ": SCSI controller offered: relid %u connection 0x%x\n", scsi.relid, conn_scsi);
}

void guest_main(const struct boot_info *bi)
{
    st_init(NAME);
    printf(NAME ": start\n");
    const char *cmdline = (const char *)phys_ptr(bi->cmdline);
    u64 maxver = 0x0602, quick = 0, faults = 0;
    seed = rdtsc() | 1;
    cmdline_get_u64(cmdline, "seed", &seed);
    cmdline_get_u64(cmdline, "maxver", &maxver);
    cmdline_get_u64(cmdline, "quick", &quick);
    cmdline_get_u64(cmdline, "faults", &faults);
    rng = seed * 0x9E3779B97F4A7C15ull | 1;
    vmbus_guest_start(bi);
    st_printf(NAME ": seed=%llu maxver=0x%04llx vcpus=%u\n", seed, maxver, ncpus);
    u32 state, conn_id;
    if (!contact(4, 0x50003, 0, &state, &conn_id))
        fail("VMBus 5.3 refused");
    find_controller();

    /* 1. Every version the host accepts, oldest first; the last (maxver) stays open. */
    u32 nv = 0;
    for (u32 i = ARRAY_SIZE(all_versions); i-- > 0;) {
        u16 v = all_versions[i];
        if (v > maxver)
            continue;
        bool last = v == maxver;
        session(v, (u16)maxver, last ? ncpus - 1 : 0, last);
        nv++;
        if (!last)
            teardown(&scsi);
    }
    if (nv == 0 || scsi.gpadl == 0)
        fail("maxver 0x%llx is not a version this host accepts", maxver);

    if (faults) {
        fault_tests(faults);
    } else if (!quick) {
        /* 2.-8. */
        identify();
        data_tests();
        unmap_test();
        readonly_test();
        past_end();
        missing();
        hostile();
        /* 9. */
        if (maxver >= 0x0501)
            subchannels();
    }
    if (!sub_used)
        teardown(&scsi);
    st_printf(NAME ": %u requests, channel closed\n", requests);
    unload(0, "UNLOAD");
    vmbus_guest_finish();
    printf(NAME ": ok\n");
    guest_exit_success();
}
