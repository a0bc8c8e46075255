/* The VMBus guest side shared by vmbus.c and storvsc.c (vmbus_guest.c): wire constants of the
 * control plane (Linux include/linux/hyperv.h; ../shared/reference/vmbus-storvsc.md sections 2
 * and 3), the state every such guest keeps, and the helpers. VP 0 does the talking; with 2 vCPUs
 * VP 1 runs ap_entry: it enables its SynIC, counts its SINT2 interrupts and writes EOM when asked.
 * Failures are st_fail(0, ...) ("<st_name>: FAIL ..."). */
#ifndef VMBUS_GUEST_H
#define VMBUS_GUEST_H
#include "rt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "synictest.h"

#define VEC 0xf3
#define SINT 2
#define SECOND (1000 * ST_MS)
#define MAX_CPUS 2

/* Control messages. */
#define OFFERCHANNEL 1
#define REQUESTOFFERS 3
#define ALLOFFERS_DELIVERED 4
#define OPENCHANNEL 5
#define OPENCHANNEL_RESULT 6
#define CLOSECHANNEL 7
#define GPADL_HEADER 8
#define GPADL_BODY 9
#define GPADL_CREATED 10
#define GPADL_TEARDOWN 11
#define GPADL_TORNDOWN 12
#define RELID_RELEASED 13
#define INITIATE_CONTACT 14
#define VERSION_RESPONSE 15
#define UNLOAD 16
#define UNLOAD_RESPONSE 17
#define MODIFYCHANNEL 22

#define RING_PAGES 8
#define RING_OFFSET 4   /* downstream page offset: 4 pages each way, as hv_utils */
#define RING_DATA ((RING_OFFSET - 1) * 4096u)
#define PROBE_RELID 0x7ff

#define fail(...) st_fail(0, __VA_ARGS__)

/* One channel the guest opens. */
struct channel {
    const char *name;
    u8 guid[16];
    u32 relid;
    u32 gpadl;
    u8 *ring;
    u32 msg_major;   /* ICs: the message version hv_utils prefers: first of its list the host offers */
    u32 irq_mark;    /* SINT2 interrupts on its VP when this channel's SIEF bit was last taken */
    u32 vp;          /* OPENCHANNEL's target_vp: where its SIEF bit and SINT2 interrupt go */
};

extern u8 hypercall_page[4096];
extern u8 simp[MAX_CPUS][4096];
extern u8 siefp[MAX_CPUS][4096];
extern u8 interrupt_page[4096];
extern u8 out[240];            /* the control message being built (begin) */
extern u8 msg[240];            /* the last control message received (recv) */
extern u32 msg_len;
extern u8 pkt[4096];           /* the payload of the last packet read (ring_read) */
extern volatile u32 irqs[MAX_CPUS];   /* SINT2 interrupts per VP */
extern volatile u32 stray;
extern volatile u32 ap_eom, ap_done, ap_finished, ap_ready;
extern u32 ncpus;
extern u32 next_gpadl;
extern u32 ram_pages;

static inline void full_fence(void) { __asm__ volatile("lock orl $0, (%%rsp)" ::: "memory"); }
static inline u32 get32(const u8 *p, u32 off) { return *(const u32 *)(p + off); }
static inline u16 get16(const u8 *p, u32 off) { return *(const u16 *)(p + off); }
static inline u64 get64(const u8 *p, u32 off) { return *(const u64 *)(p + off); }
static inline void put32(u8 *p, u32 off, u32 v) { *(u32 *)(p + off) = v; }
static inline void put16(u8 *p, u32 off, u16 v) { *(u16 *)(p + off) = v; }
static inline void put64(u8 *p, u32 off, u64 v) { *(u64 *)(p + off) = v; }

void vmbus_guest_start(const struct boot_info *bi);
void vmbus_guest_finish(void);
void synic_on(u32 vp);
void ap_entry(u32 slot);

/* Control messages. */
u32 post(u32 conn, const void *p, u32 size);
void send(u32 conn, u32 size, const char *what);
void begin(u32 type);
u32 recv(u32 vp, u64 timeout);
void expect_on(u32 vp, u32 type, u32 min_size, const char *what);
void expect(u32 type, u32 min_size, const char *what);
void expect_quiet(const char *what);
u32 gpadl_header(u32 relid, const u64 *pfns, u32 n, u32 total, u32 handle);
void gpadl_body(u32 handle, const u64 *pfns, u32 n);
u32 expect_created(u32 relid, u32 handle, const char *what);
void probe(const char *what);
void initiate(u32 conn, u32 version, u32 target);
void unload(u32 vp, const char *what);
u32 contact(u32 conn, u32 version, u32 target, u32 *state, u32 *conn_id);
bool guid_is(const u8 *p, const u8 *g);
void guid_str(const u8 *g, char *buf);

/* Rings. */
volatile u32 *ctl(u8 *ring, bool inbound);
u8 *data(u8 *ring, bool inbound);
void ring_init(u8 *ring);
u32 wrap(u32 o);
void put_words(u8 *d, u32 *off, const u64 *src, u32 words);
void get_words(const u8 *d, u32 off, u64 *dst, u32 words);
void ring_put_packet(u8 *ring, u32 *cursor, u16 type, u16 flags, u64 trans_id, const u64 *ext, u32 ext_words,
                     const u8 *payload, u32 len);
void ring_put(u8 *ring, u32 *cursor, u64 trans_id, const u8 *payload, u32 len);
bool ring_commit(u8 *ring, u32 cursor);
bool ring_write(u8 *ring, u64 trans_id, const u8 *payload, u32 len);
bool ring_read(u8 *ring, u32 *len, u64 *trans_id, u16 *type);
bool sief_take_on(u32 vp, u32 relid);
bool sief_take(u32 relid);

/* Channels: the ring GPADL (made once, kept in ch->gpadl) and OPENCHANNEL with user data byte
 * `mode`, OPENCHANNEL_RESULT 0 expected; CLOSECHANNEL (no answer). */
void open_mode(struct channel *ch, u8 *ring, u8 mode);
void open_ic(struct channel *ch, u8 *ring);
void close_channel(struct channel *ch);

#endif
