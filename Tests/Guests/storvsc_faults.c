/* storvsc's fault mode (`faults=1` io-error, `faults=2` torn; docs/faults.md), included by
 * storvsc.c (it uses that file's session, requests and checks). After the session at maxver it
 * prints `storvsc: faults: ready` and runs requests one at a time while the host injects the
 * fault through the control socket (`synthvm ctl PATH fault storage io-error 3` / `torn`):
 *
 *  1 (io-error): writes of 8 blocks at LBA 2048 + 8k, each followed by its read-back, until a run of
 *    MEDIUM ERROR completions (WRITE ERROR 0C/00 for a write, UNRECOVERED READ ERROR 11/00 for a
 *    read) has come and ended with a success; the run must be exactly 3 long, every other request
 *    GOOD (a read-back after a failed write is not compared). Then 4 more write/read pairs.
 *    `storvsc: faults: io-error: N requests, 3 MEDIUM ERROR (W writes, R reads), then success`.
 *  2 (torn): writes of 16 blocks at LBA 4096 + 16k (pattern seed ^ k), each completed exactly once
 *    (a second completion for it would be read as the next request's, with the wrong transaction
 *    id) and read back whole, until the host writes "TORNDONE" into the last block of the
 *    read-only LUN 1 (after it saw the storage worker restarted); then every write is read back
 *    again and, after 500 ms, the ring must hold no completion nobody asked for.
 *    `storvsc: faults: torn: N writes, each completed once and read back whole`.
 * Then `storvsc: faults: done; lingering 3 s`, and 3 s before the end (the host reads the metrics).
 * Each write is printed (`storvsc: wrote lun=0 lba=L blocks=N seed=S`) for the host to check the image. */

#define FAULT_LBA_IO 2048u
#define FAULT_LBA_TORN 4096u
#define KEY_MEDIUM_ERROR 3

/* One request; true if GOOD, false if MEDIUM ERROR with the sense of its direction (else fail). */
static bool fault_rw(bool write, u64 lba, u32 blocks, u8 *buf, const char *what)
{
    struct reply r;
    struct req q = rw(0, write, 10, lba, blocks, false, buf);
    exec(&q, &r, what);
    if (r.srb_status == SRB_SUCCESS && r.scsi_status == 0) {
        expect_good(&r, blocks * BLOCK, what);
        return true;
    }
    expect_sense(&r, SRB_ERROR, KEY_MEDIUM_ERROR, write ? 0x0c : 0x11, 0x00, what);
    return false;
}

static void faults_io_error(void)
{
    u32 n = 0, run = 0, werr = 0, rerr = 0, after = 0;
    bool seen = false, ended = false;
    u64 end = st_now() + 120 * SECOND;
    for (u32 k = 0; !ended || after < 8; k++) {
        if (st_now() >= end)
            fail("faults: no MEDIUM ERROR run within 120 s (%u requests)", n);
        u64 lba = FAULT_LBA_IO + 8 * (k % 64);
        u64 s = seed ^ (0x1000 + k);
        fill(wbuf, lba * BLOCK, 8 * BLOCK, s);
        bool results[2];
        results[0] = fault_rw(true, lba, 8, wbuf, "fault WRITE(10)");
        poison(rbuf, 8 * BLOCK);
        results[1] = fault_rw(false, lba, 8, rbuf, "fault READ(10)");
        n += 2;
        for (u32 i = 0; i < 2; i++) {
            if (!results[i]) {
                if (ended)
                    fail("faults: MEDIUM ERROR after the run of %u had ended (request %u)", run, n - 1 + i);
                seen = true;
                run++;
                if (i == 0)
                    werr++;
                else
                    rerr++;
            } else if (seen && !ended) {
                ended = true;
            } else if (ended) {
                after++;
            }
        }
        if (results[0] && results[1])
            compare(rbuf, lba * BLOCK, 8 * BLOCK, s, "fault READ(10) after its write");
        if (results[0])
            st_printf(NAME ": wrote lun=0 lba=%llu blocks=8 seed=%llu\n", lba, s);
        if (!seen)
            st_sleep_until(st_now() + 5 * ST_MS);
    }
    if (run != 3)
        fail("faults: a run of %u MEDIUM ERROR completions, expected 3", run);
    st_printf(NAME ": faults: io-error: %u requests, %u MEDIUM ERROR (%u writes, %u reads), then success\n", n, run, werr, rerr);
}

static bool torn_done(void)
{
    struct reply r;
    poison(rbuf, BLOCK);
    struct req q = rw(1, false, 10, cap1 - 1, 1, false, rbuf);
    exec(&q, &r, "READ(10) of the mailbox");
    expect_good(&r, BLOCK, "READ(10) of the mailbox");
    return memcmp(rbuf, "TORNDONE", 8) == 0;
}

static void faults_torn(void)
{
    u32 n = 0;
    u64 end = st_now() + 120 * SECOND;
    for (;;) {
        if (st_now() >= end)
            fail("faults: the host did not say TORNDONE within 120 s (%u writes)", n);
        if (n >= 200)
            fail("faults: 200 writes and the host did not say TORNDONE");
        u64 lba = FAULT_LBA_TORN + 16 * (u64)n, s = seed ^ (0x2000 + n);
        fill(wbuf, lba * BLOCK, 16 * BLOCK, s);
        if (!fault_rw(true, lba, 16, wbuf, "torn WRITE(10)"))
            fail("faults: torn WRITE(10) %u got MEDIUM ERROR", n);
        st_printf(NAME ": wrote lun=0 lba=%llu blocks=16 seed=%llu\n", lba, s);
        poison(rbuf, 16 * BLOCK);
        if (!fault_rw(false, lba, 16, rbuf, "torn READ(10)"))
            fail("faults: torn READ(10) %u got MEDIUM ERROR", n);
        compare(rbuf, lba * BLOCK, 16 * BLOCK, s, "READ(10) after a write (torn mode)");
        n++;
        if (torn_done())
            break;
        st_sleep_until(st_now() + 20 * ST_MS);
    }
    for (u32 k = 0; k < n; k++) {
        u64 lba = FAULT_LBA_TORN + 16 * (u64)k;
        poison(rbuf, 16 * BLOCK);
        if (!fault_rw(false, lba, 16, rbuf, "torn READ(10) again"))
            fail("faults: READ(10) of write %u got MEDIUM ERROR", k);
        compare(rbuf, lba * BLOCK, 16 * BLOCK, seed ^ (0x2000 + k), "READ(10) of every write at the end (torn mode)");
    }
    /* No completion nobody asked for. */
    st_sleep_until(st_now() + 500 * ST_MS);
    u32 len;
    u64 id;
    u16 type;
    if (ring_read(scsi.ring, &len, &id, &type))
        fail("faults: an extra packet in the ring after the last request: type %u id 0x%llx", type, id);
    st_printf(NAME ": faults: torn: %u writes, each completed once and read back whole\n", n);
}

static void fault_tests(u64 mode)
{
    identify(); /* cap1: the mailbox */
    st_printf(NAME ": faults: ready\n");
    if (mode == 1)
        faults_io_error();
    else if (mode == 2)
        faults_torn();
    else
        fail("faults=%llu: 1 (io-error) or 2 (torn)", mode);
    /* The host reads the control socket's metrics meanwhile (the VM ends with the guest). */
    st_printf(NAME ": faults: done; lingering 3 s\n");
    st_sleep_until(st_now() + 3 * SECOND);
}
