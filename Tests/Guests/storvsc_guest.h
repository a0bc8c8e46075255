/* The storvsc guest side shared by the freestanding guests that drive the storage worker's SCSI
 * controller (storvsc.c, soak.c, storvscbench.c): the vstor and SRB constants (Linux drivers/scsi/storvsc_drv.c;
 * ../shared/reference/vmbus-storvsc.md section 4), the disk pattern, the primary channel's state
 * and one-request-at-a-time helpers (storvsc_guest.c). Needs vmbus_guest.h; failures are
 * fail(...) ("<st_name>: FAIL ..."). */
#ifndef STORVSC_GUEST_H
#define STORVSC_GUEST_H
#include "rt.h"
#include "vmbus_guest.h"

/* vstor operations and statuses. */
#define OP_COMPLETE_IO 1
#define OP_EXECUTE_SRB 3
#define OP_BEGIN_INIT 7
#define OP_END_INIT 8
#define OP_QUERY_VERSION 9
#define OP_QUERY_PROPERTIES 10
#define OP_CREATE_SUB_CHANNELS 13
#define ST_REVISION_MISMATCH 0xC0000059u
#define ST_INVALID_DEVICE_STATE 0xC0000184u
#define ST_INVALID_PARAMETER 0xC000000Du
#define INIT_ID 0xFFFFFFFFFFFFFFFDull

/* SRB status, SCSI status, sense keys. */
#define SRB_SUCCESS 0x01
#define SRB_ERROR 0x04
#define SRB_INVALID_REQUEST 0x06
#define SRB_INVALID_LUN 0x20
#define SRB_AUTOSENSE 0x80
#define CHECK_CONDITION 0x02
#define KEY_ILLEGAL_REQUEST 5
#define KEY_DATA_PROTECT 7

#define MAX_XFER (1u << 20)
#define BLOCK 512u

/* The reply to the last request. */
struct reply {
    u32 len;       /* payload bytes */
    u32 op, status;
    u8 srb_status, scsi_status, sense_len;
    u32 xfer;
    u8 sense[20];
};

/* A SCSI request. */
struct req {
    u8 cdb[16];
    u8 cdb_len;
    u8 path, target, lun;
    u8 data_in;        /* 0 write, 1 read, 2 none */
    u32 xfer;          /* data_transfer_length */
    u8 *buf;           /* the buffer (identity mapped: its address is its GPA), or NULL */
    u32 buf_len;       /* the range's length (usually xfer) */
};

/* The data at byte offset `off` (a multiple of 8) of a disk: the host recomputes it. */
static inline u64 pattern(u64 off, u64 s)
{
    u64 x = (off ^ s) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static inline u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

static inline u32 be32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }

static inline u64 be64(const u8 *p) { return (u64)be32(p) << 32 | be32(p + 4); }

static inline void pbe16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }

static inline void pbe32(u8 *p, u32 v) { pbe16(p, (u16)(v >> 16)); pbe16(p + 2, (u16)v); }

static inline void pbe64(u8 *p, u64 v) { pbe32(p, (u32)(v >> 32)); pbe32(p + 4, (u32)v); }

/* The SCSI controller's primary channel and its session. */
extern struct channel scsi;
extern u8 ring_scsi[RING_PAGES * 4096];
extern u32 conn_scsi;
extern u8 scsi_instance[16];           /* the controller's if_instance (scsi_find_controller) */
extern u64 next_id;
extern u32 srb_size;        /* of the session */
extern u32 max_transfer;    /* QUERY_PROPERTIES and VPD B0 */
extern u32 requests;        /* completions taken by wait_reply */

void fill(u8 *b, u64 off, u32 len, u64 s);
/* One sentinel word per block: a block the host did not fill keeps it. */
void poison(u8 *b, u32 len);
void compare(const u8 *b, u64 off, u32 len, u64 s, const char *what);
void expect_zero(const u8 *b, u32 len, const char *what);
void signal_host(struct channel *ch, u32 conn);
/* Publishes a packet: type 6 (ext_words 0) or 9 (GPA direct: ext = range list). */
void submit(struct channel *ch, u32 conn, u16 type, u64 id, const u64 *ext, u32 ext_words, const u8 *p, u32 len);
/* Waits for the completion with transaction id `id` (the only one outstanding) and checks its
 * framing and its interrupt. */
void wait_reply(struct channel *ch, u64 id, u32 want_len, struct reply *r, const char *what);
/* One vstor operation on `ch` with transaction id `id` (a request of `size` bytes, a reply of
 * `want_len`); returns the NTSTATUS. */
u32 vstor_op_id(struct channel *ch, u32 conn, u64 id, u32 op, u32 size, u32 want_len, u16 arg, struct reply *r,
                const char *what);
/* One vstor operation on the primary channel (init steps); returns the NTSTATUS. */
u32 vstor_op(u32 op, u32 size, u32 want_len, u16 arg, struct reply *r, const char *what);
void srb_packet(u8 *p, const struct req *q);
/* Sends the SRB (GPA direct when it has a buffer) on ch and waits for its completion. */
void exec_on(struct channel *ch, u32 conn, const struct req *q, struct reply *r, const char *what);
void exec(const struct req *q, struct reply *r, const char *what);
void expect_good(const struct reply *r, u32 xfer, const char *what);
void expect_sense(const struct reply *r, u8 srb, u8 key, u8 asc, u8 ascq, const char *what);
struct req simple(u8 lun, u8 op);
struct req data_req(u8 lun, u8 data_in, u8 *buf, u32 len);
void inquiry(u8 path, u8 target, u8 lun, u8 page, u8 *buf, u32 len, struct reply *r, const char *what);
/* READ/WRITE with the CDB of `kind` (6, 10, 12, 16). */
struct req rw(u8 lun, bool write, u32 kind, u64 lba, u32 blocks, bool fua, u8 *buf);
/* REQUESTOFFERS: the SCSI controller's relid and connection into scsi and conn_scsi, its
 * if_instance into scsi_instance (fails without one). */
void scsi_find_controller(void);
/* Opens the SCSI channel and runs Linux's init handshake at protocol 0x0602 (fails on any
 * status but success). */
void scsi_open_0602(void);

#endif
