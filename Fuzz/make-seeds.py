#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into Fuzz/Corpus/<target>/ (checked in).

The seeds are small, valid starting points that the fuzzer mutates: one operation sequence per
interesting path for the structured targets (the byte layouts are documented at the top of each
Fuzz/Sources/fuzz-<target>/main.swift), and real file formats for the loaders. Re-run it after a
harness's input layout changes: `python3 Fuzz/make-seeds.py` (needs xz, lz4, zstd:
scripts/install-deps.sh installs them). Output is deterministic.
"""
import gzip
import os
import shutil
import struct
import subprocess

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "Corpus")
POLICIES = os.path.join(ROOT, "..", "Policies")


def u8(v): return struct.pack("<B", v & 0xFF)
def u16(v): return struct.pack("<H", v & 0xFFFF)
def u32(v): return struct.pack("<I", v & 0xFFFFFFFF)
def u64(v): return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- hypercall: ops 0 scribble (u16 gpa, u8 len, bytes), 1 call --------------------------------

def hc_scribble(gpa, data):
    out = b""
    while data:
        chunk, data = data[:255], data[255:]
        out += u8(0) + u16(gpa) + u8(len(chunk)) + chunk
        gpa += len(chunk)
    return out


def hc_call(control, inp=0, outp=0, mode=0, vp=0, vpcount=2, bits=7, answer=1, xmm=None):
    # pick byte even: the control word is used as given. flags: bits 0-1 mode (0 long64,
    # 2 protected32, 3 other), bit 2 interface off, bit 3 CPL 3.
    b = u8(1) + u64(control) + u8(0) + u64(inp) + u64(outp) + u8(mode) + u8(vp) + u8(vpcount) + u8(bits) + u8(answer)
    if xmm is None:
        return b + u8(0)
    return b + u8(1) + b"".join(u64(x) for x in xmm)


FAST = 1 << 16


def rep(count, start=0): return count << 32 | start << 48


def hypercall_seeds():
    post = u32(1) + u32(0) + u32(1) + u32(16) + bytes(range(16))  # conn 1, type 1, 16 bytes
    post += bytes(256 - len(post))
    write("hypercall", "post-message", hc_scribble(0x1000, post) + hc_call(0x5C, inp=0x1000))
    write("hypercall", "post-message-32bit", hc_scribble(0x1000, post) + hc_call(0x5C, inp=0x1000, mode=2))
    write("hypercall", "signal-event-fast", hc_call(0x5D | FAST, inp=1 | 5 << 32))
    write("hypercall", "cluster-ipi-fast", hc_call(0x0B | FAST, inp=0x40, outp=0b11, vpcount=4))
    # HvCallSendSyntheticClusterIpiEx: vector, reserved, then an HV_VP_SET (format 0 sparse:
    # valid-bank mask 1, one bank) through memory, variable header of 1 qword.
    ex = u32(0x41) + u32(0) + u64(0) + u64(1) + u64(0b101)
    write("hypercall", "cluster-ipi-ex", hc_scribble(0x2000, ex) + hc_call(0x15 | 1 << 17, inp=0x2000, vpcount=4))
    write("hypercall", "long-spin-wait", hc_call(0x08 | FAST, inp=3))
    write("hypercall", "xmm-cluster-ipi-ex", hc_call(0x15 | FAST | 1 << 17, inp=0x42, outp=0, bits=7,
                                                     xmm=[0, 1, 0b11, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    write("hypercall", "rep-flush", hc_call(0x14 | rep(2), inp=0x3000))
    write("hypercall", "misaligned", hc_call(0x5C, inp=0x1008) + hc_call(0x5C, inp=0xFFF8))


# --- msr: header (enl, enl2, vpcount-1, queue depth-1), ops ----------------------------------
# op 0 WRMSR (vp, idx, form, value), 1 RDMSR (vp, idx), 2 time, 3 postMessage, 4 signalEvent,
# 5 guest write, 6 reset; every op is followed by one byte (the snapshot's VP).
MSR = {"guestOsId": 0, "hypercall": 1, "vpIndex": 2, "reset": 3, "vpRuntime": 4, "timeRefCount": 5,
       "referenceTsc": 6, "tscFrequency": 7, "apicFrequency": 8, "vpAssistPage": 9, "scontrol": 10,
       "sversion": 11, "siefp": 12, "simp": 13, "eom": 14, "crashCtl": 15}
SINT0, STIMER0, CRASHP0 = 18, 34, 42


def wr(idx, value, vp=0, form=0):
    if form == 0:
        v = u64(value)
    elif form == 1:
        v = u8(value >> 12) + u8(value & 3)
    elif form == 2:
        v = u32(value & 0xFFFFFFFF) + u8((value >> 16) & 0xF)
    else:
        v = u16(value)
    return u8(0) + u8(vp) + u8(idx) + u8(form) + v + u8(0)


def rd(idx, vp=0): return u8(1) + u8(vp) + u8(idx) + u8(0)
def time(ticks, shift=0): return u8(2) + u32(ticks) + u8(shift) + u8(0)
def post(vp, sint, typ, payload): return u8(3) + u8(vp) + u8(sint) + u32(typ) + u8(len(payload)) + payload + u8(0)
def signal(vp, sint, flag): return u8(4) + u8(vp) + u8(sint) + u16(flag) + u8(0)
def guest_write(page, off16, data): return u8(5) + u16(page) + u8(off16) + u8(len(data)) + data + u8(0)


def msr_seeds():
    every = 0xFE  # all of the first eight features but the first: then dependencies are added
    head = u8(every) + u8(0x1F) + u8(1) + u8(3)
    enable = wr(MSR["guestOsId"], 0x8100_0006_0100_0000) + wr(MSR["hypercall"], 0x10 << 12 | 1, form=1)
    synic = (wr(MSR["scontrol"], 1, form=3) + wr(MSR["simp"], 0x20 << 12 | 1, form=1)
             + wr(MSR["siefp"], 0x21 << 12 | 1, form=1) + wr(SINT0 + 2, 0x52, form=2))
    write("msr", "hypercall-page", head + enable + rd(MSR["hypercall"]) + rd(MSR["vpIndex"], vp=1))
    write("msr", "reference-time", head + enable + rd(MSR["timeRefCount"]) + time(100000)
          + rd(MSR["timeRefCount"]) + wr(MSR["referenceTsc"], 0x30 << 12 | 1, form=1) + rd(MSR["tscFrequency"]))
    write("msr", "synic-message", head + enable + synic + post(0, 2, 1, b"hello")
          + post(0, 2, 1, b"again") + guest_write(0x20, 0x20, bytes(4)) + wr(MSR["eom"], 0, form=3))
    write("msr", "synic-event", head + enable + synic + signal(0, 2, 7) + signal(0, 2, 7) + rd(SINT0 + 2))
    # STIMER0: enable | periodic, SINTx 2, count 10000 (1 ms), then time passes.
    write("msr", "stimer", head + enable + synic + wr(STIMER0 + 1, 10000) + wr(STIMER0, 0x3 | 2 << 16, form=2)
          + time(5_000_000) + time(5_000_000, 4) + wr(MSR["eom"], 0, form=3) + rd(STIMER0))
    write("msr", "stimer-direct", head + enable + synic + wr(STIMER0 + 1, 10000) + wr(STIMER0, 0x1 | 0x1000 | 0x40 << 4, form=0)
          + time(5_000_000))
    crash = b"".join(wr(CRASHP0 + i, 0x1000 * i) for i in range(5))
    write("msr", "crash", head + enable + guest_write(0x2, 0, b"panic!") + crash
          + wr(CRASHP0 + 3, 0x2000) + wr(CRASHP0 + 4, 6) + wr(MSR["crashCtl"], 1 << 63 | 1 << 62) + u8(6) + u8(0))
    write("msr", "off", u8(0xFF) + u8(0) + u8(0) + u8(0) + rd(MSR["guestOsId"]) + wr(MSR["hypercall"], 1))


# --- synic-router: header (vpcount-1, polling), ops ------------------------------------------

def td(ctl, conn, vp, sint): return u8(0) + u32(conn << 24 | ctl << 16 | vp << 8 | sint)
def rpost(conn, frm, typ, payload): return u8(1) + u8(conn) + u8(frm) + u32(typ) + u8(len(payload)) + payload
def rraw(ring, data): return u8(2) + u8(ring) + u16(len(data)) + data
def rsignal(conn): return u8(3) + u8(conn)
def reom(vp): return u8(4) + u8(vp)
def rscribble(off, data): return u8(5) + u32(off) + u8(len(data)) + data
def rpublish(vp, form): return u8(6) + u8(vp) + u8(form)
def rhost(vp, sint, typ, payload): return u8(7) + u8(vp) + u8(sint) + u32(typ) + u8(len(payload)) + payload


def router_seeds():
    head = u8(1) + u8(1)  # 2 VPs, polling available
    slot = lambda vp, sint: vp * 0x1000 + sint * 256  # offset from SIMP
    write("synic-router", "message", head + td(4, 7, 1, 3) + rpost(7, 0, 0x1234, b"abc")
          + rpost(7, 0, 0x1234, b"def") + rscribble(slot(1, 3), bytes(4)) + reom(1) + td(5, 7, 1, 3))
    write("synic-router", "event", head + td(6, 5, 0, 1) + rsignal(5) + rsignal(5) + td(7, 5, 0, 1))
    write("synic-router", "routes", head + td(1, 0, 0, 2) + td(3, 0, 0, 2) + rpublish(0, 0x04) + td(3, 0, 0, 2) + td(2, 0, 0, 2))
    write("synic-router", "host-message", head + rhost(0, 2, 1, b"x" * 32) + rhost(0, 2, 1, b"y") + rpublish(0, 0x01)
          + rscribble(slot(0, 2), bytes(4)) + reom(0) + rpublish(0, 0))
    # Killed with a message in the slot and another queued; the successor finishes and continues.
    write("synic-router", "restart", head + td(4, 7, 1, 3) + rpost(7, 0, 0x1234, b"abc") + rhost(1, 3, 1, b"q")
          + u8(9) + u8(0) + rscribble(slot(1, 3), bytes(4)) + reom(1) + u8(9) + u8(1) + u8(4) + u32(128) + b"\xff\xff\xff\xff")
    write("synic-router", "stale-record", head + td(4, 3, 0, 0) + u8(8) + u8(0) + u32(0) + u32(3) + u32(0)
          + u32(1) + u32(9) + u8(1) + b"z")
    # A compromised monitor: a posted-message record for a live connection with a stale
    # generation, and a test-device record, written straight into the rings.
    posted = record(6, u32(0) + u32(3) + u32(0) + u32(7) + u32(0x1234) + u32(2) + b"hi")
    write("synic-router", "raw-rings", head + td(4, 3, 0, 0) + rraw(0, posted) + rraw(2, record(7, u32(0) + u32(0x03040000) + u64(1)))
          + rraw(1, b"\x06\x00\x01\x00"))


# --- testdev: u32 port values, each followed by a VP byte -------------------------------------

def testdev_seeds():
    write("testdev", "all-controls", b"".join(u32(c << 24 | ctl << 16 | 1 << 8 | 2) + u8(1) for ctl in range(0, 9) for c in (0, 7)))


# --- wire: one record each ----------------------------------------------------------------------

def record(typ, body, version=1): return u16(typ) + u16(version) + u32(len(body)) + body


def wire_seeds():
    write("wire", "worker-hello", record(1, u32(1) + u16(1) + u16(0) + u32(42)))
    write("wire", "region-layout", record(2, u32(2) + u32(0) + u32(1) + u32(0) + u64(1 << 20) + u64(0)
                                          + u32(2) + u32(0) + u64(0x3000) + u64(0x1000)))
    write("wire", "seccomp-program", record(3, u32(2) + u32(0) + bytes.fromhex("2000000004000000") + bytes.fromhex("060000000000ff7f")))
    write("wire", "synic-router-setup", record(4, u32(2) + u32(3) + u32(512) + u32(8) + u32(1) + u32(0)
                                               + u64(0) + u64(1 << 30) + u64(0)))
    write("wire", "sint-eventfds", record(5, u32(0) + u32(32)))
    write("wire", "posted-message", record(6, u32(1) + u32(7) + u32(3) + u32(1) + u32(0x1234) + u32(3) + b"abc"))
    write("wire", "testdev-write", record(7, u32(0) + u32(0x07040102) + u64(9)))
    write("wire", "vmbus-worker-setup", record(8, u32(2) + u32(1) + u32(512) + u32(64) + u64(2_000_000_000) + u64(77)
                                               + u64(1 << 63) + u32(1) + u32(0) + u64(0) + u64(1 << 30) + u64(0), version=2))
    write("wire", "router-connections", record(9, u32(3) + u32(0) + u32(1) + u32(1) + u32(2) + u32(16)
                                               + u32(4) + u32(1) + u32(2) + u32(16) + u32(0x2001) + u32(2) + u32(2) + u32(0)))
    write("wire", "host-message", record(10, u32(0) + u32(2) + u32(1) + u32(4) + b"\x0e\x00\x00\x00"))
    write("wire", "guest-shutdown-request", record(11, u32(0) + u32(0)))
    write("wire", "channel-control", record(12, u32(1) + u32(5) + u32(0x2005) + u32(1) + u32(2) + u32(0) + u32(4) + u32(1)
                                            + b"".join(u64(0x100 + i) for i in range(4)), version=2))
    write("wire", "channel-answer", record(13, u32(1) + u32(4) + u32(0) + u32(0)))
    serial = b"disk0".ljust(64, b"\0")
    write("wire", "storage-worker-setup", record(14, u32(2) + u32(1) + u32(512) + u32(64) + u32(2048) + u32(32) + u32(1) + u32(2)
                                                 + u64(0) + u64(1 << 30) + u64(0)
                                                 + u64(64 << 20) + u32(0) + u32(0) + serial
                                                 + u64(8 << 20) + u32(1) + u32(2) + b"\0" * 64
                                                 + u32(0x0600) + u32(1), version=3))
    write("wire", "vmbus-remote-device-setup", record(15, u32(3) + u32(3) + u32(2048) + u32(32) + u32(1), version=2))
    write("wire", "sub-channel-request", record(16, u32(4) + u32(1) + u64(0)))
    write("wire", "worker-fault", record(20, u16(2) + u16(0) + u32(30)))


# --- ring: header (record size, capacity, offset selectors), ops -------------------------------

def ring_seeds():
    push = lambda data: u8(0) + u8(len(data)) + data
    pop = u8(1)
    write("ring", "fifo", u8(2) + u8(2) + u8(1) + push(b"one") + push(b"two") + pop + push(b"three")
          + pop + pop + pop + push(b"") + push(b"x" * 56) + pop)
    write("ring", "full", u8(0) + u8(1) + u8(0) + push(b"a") + push(b"b") + push(b"c") + pop + pop + pop)
    write("ring", "reattach", u8(1) + u8(3) + u8(0) + push(b"keep") + u8(4) + pop + u8(5) + push(b"more") + pop)
    # tryTake: kept (lent again), a consumer killed before committing (reattach), then committed.
    take = lambda commit: u8(7) + u8(commit)
    write("ring", "take", u8(1) + u8(2) + u8(0) + push(b"first") + push(b"second") + take(0) + take(0) + u8(4)
          + take(1) + take(0) + u8(4) + take(1) + take(1))
    write("ring", "scribbled", u8(1) + u8(2) + u8(2) + push(b"abc") + u8(3) + u8(0) + u32(0xFFFF)
          + pop + u8(6) + u8(0) + u64(1 << 40) + push(b"z"))


# --- the loaders ------------------------------------------------------------------------------

def note(name, typ, desc):
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return u32(len(n)) + u32(len(desc)) + u32(typ) + pad(n) + pad(desc)


def elf64(notes=b"", entry=0x100000, vaddr=0x100000, etype=2):
    code = b"\xf4" * 16  # hlt
    phnum = 2 if notes else 1
    phoff = 64
    data_off = phoff + 56 * phnum
    load = u32(1) + u32(5) + u64(0) + u64(vaddr) + u64(0x100000) + u64(data_off + len(code)) + u64(data_off + len(code) + 0x1000) + u64(0x1000)
    ph = load
    if notes:
        ph += u32(4) + u32(4) + u64(data_off + len(code)) + u64(0) + u64(0) + u64(len(notes)) + u64(len(notes)) + u64(4)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    hdr = ident + u16(etype) + u16(62) + u32(1) + u64(entry + data_off) + u64(phoff) + u64(0) + u32(0) + u16(64) + u16(56) + u16(phnum) + u16(64) + u16(0) + u16(0)
    return hdr + ph + code + notes


def multiboot_header(flags, addresses=None):
    magic = 0x1BADB002
    h = u32(magic) + u32(flags) + u32(-(magic + flags))
    if addresses:
        h += b"".join(u32(a) for a in addresses)
    return h


def elf32_multiboot():
    mb = multiboot_header(0x3)
    code = b"\xf4" * 16
    data_off = 52 + 32
    body = mb + code
    ph = u32(1) + u32(0) + u32(0x100000) + u32(0x100000) + u32(data_off + len(body)) + u32(data_off + len(body)) + u32(5) + u32(0x1000)
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    hdr = ident + u16(2) + u16(3) + u32(1) + u32(0x100000 + data_off + len(mb)) + u32(52) + u32(0) + u32(0) + u16(52) + u16(32) + u16(1) + u16(40) + u16(0) + u16(0)
    return hdr + ph + body


def aout_kludge():
    load = 0x100000
    size = 64
    h = multiboot_header(0x10003, [load, load, load + size, load + size + 0x1000, load + 48])
    return h + bytes(48 - len(h)) + b"\xf4" * (size - 48)


def compress(data, fmt):
    if fmt == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    cmd = {"xz": ["xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c"],
           "lzma": ["xz", "--format=lzma", "-9", "-c"],
           "lz4": ["lz4", "-l", "-9", "-c"],
           "zstd": ["zstd", "-q", "-19", "-c"]}[fmt]
    return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout + u32(len(data))


def bzimage(payload, setup_sects=3, payload_offset=0x3A0):
    prot = (setup_sects + 1) * 512
    b = bytearray(prot + payload_offset + len(payload))
    def put(v, at, w): b[at:at + w] = v.to_bytes(w, "little")
    b[0x1F1] = setup_sects
    put(0xAA55, 0x1FE, 2)
    b[0x200] = 0xEB
    b[0x201] = 0x6A
    put(0x53726448, 0x202, 4)
    put(0x020F, 0x206, 2)
    b[0x211] = 1
    put(0x7FFFFFFF, 0x22C, 4)
    put(0x200000, 0x230, 4)
    b[0x234] = 1
    b[0x235] = 21
    put(3, 0x236, 2)
    put(2047, 0x238, 4)
    put(payload_offset, 0x248, 4)
    put(len(payload), 0x24C, 4)
    put(0x1000000, 0x258, 8)
    put(0x4000000, 0x260, 4)
    b[prot + payload_offset:] = payload
    return bytes(b)


FORMATS = ["gzip", "xz", "lzma", "lz4", "zstd"]


def loader_seeds():
    pvh = elf64(note("Xen", 18, u32(0x100000)))
    linux = elf64(note("Linux", 0x100, b"salt"), vaddr=0xFFFFFFFF81000000, entry=0xFFFFFFFF81000000)
    write("elf", "direct", elf64())
    write("elf", "pvh", pvh)
    write("elf", "linux", linux)
    write("elf", "pie", elf64(etype=3))
    write("elf", "elf32-multiboot", elf32_multiboot())
    write("multiboot", "aout-kludge", aout_kludge())
    write("multiboot", "elf32", elf32_multiboot())
    write("multiboot", "header-at-4k", bytes(4096) + aout_kludge()[:32] + bytes(32))
    write("bzimage", "uncompressed", bzimage(pvh))
    for fmt in FORMATS:
        write("bzimage", fmt, bzimage(compress(linux if fmt == "lz4" else pvh, fmt)))
        write("decompress", fmt, u8(FORMATS.index(fmt)) + compress(pvh, fmt))


def policy_seeds():
    common = open(os.path.join(POLICIES, "common.policy"), "rb").read()
    for name in sorted(os.listdir(POLICIES)):
        if name.endswith(".policy") and name != "common.policy":
            write("policy", name, open(os.path.join(POLICIES, name), "rb").read() + b"\0" + common)
    write("policy", "runtime-values", b"@default trap\nkill: arg0 == $SELF_PID && arg1 in {SIGTERM, SIGKILL}\n"
          b"mmap: arg2 & PROT_EXEC == 0 || arg3 != 0x22\n\0")
    write("policy", "include-cycle", b"@include common.policy\n@default errno 1\n\0@include common.policy\n")


# --- vmbus-server: header (VP count - 1, offers - 1, limits), ops (Fuzz/Sources/fuzz-vmbus-server) -

def vs_contact(version=0, target=0, sint=2, pages=0, vp=0): return u8(1) + u8(version) + u8(target) + u8(sint) + u8(pages) + u8(vp)
def vs_offers(vp=0): return u8(2) + u8(vp)
def vs_gpadl(relid, handle, pages, shape=0, in_header=27): return u8(3) + u8(relid) + u8(handle) + u8(pages - 1) + u8(shape) + u8(in_header)
def vs_teardown(relid, handle): return u8(5) + u8(relid) + u8(handle)
def vs_open(relid, openid, handle, vp=0, offset=2): return u8(6) + u8(relid) + u8(openid) + u8(handle) + u8(vp) + u8(offset)
def vs_close(relid): return u8(7) + u8(relid)
def vs_released(relid): return u8(8) + u8(relid)
def vs_modify(relid, vp): return u8(9) + u8(relid) + u8(vp)
def vs_unload(vp=0): return u8(10) + u8(vp)
def vs_open_complete(relid, fail=0): return u8(11) + u8(relid) + u8(fail)
def vs_close_complete(relid): return u8(12) + u8(relid)
def vs_posted(n=0): return u8(13) + u8(n)
def vs_rescind(relid): return u8(14) + u8(relid)
def vs_sub_channels(relid, total): return u8(14) + u8(0x80 | relid) + u8(total)
def vs_round_trip(): return u8(15)
def vs_saved(blob): return u8(16) + u16(len(blob)) + blob
def vs_flip(pairs): return u8(17) + u8(len(pairs)) + b"".join(u16(at) + u8(x) for at, x in pairs)


def vmbus_saved_state():
    """A connected 5.0 server, offers sent, relid 1 open on a 4-page ring GPADL (0xE1E10), one
    OPENCHANNEL_RESULT waiting to be confirmed: VMBusServer.Saved's encoding
    (Sources/VMBus/VMBusSavedStateCodec.swift)."""
    conn = u32(1) + u32(1) + u32(0x00050000) + u32(0) + u64(0) + u64(0) + bytes(48) + u64(2)
    guid_type = bytes(range(0x10, 0x20))
    guid_inst = bytes(range(0, 16))
    user_def = u32(4) + bytes(116)
    channel = (u32(1) + u16(0) + u16(2) + u64(0) + guid_type + guid_inst + u16(0x11) + u16(0) + u16(0) + u16(0)
               + user_def + u32(1) + u32(0xE1E10) + u32(0) + u32(2) + bytes([0xAB]) * 120)
    words = [4 * 4096, 16, 17, 18, 19]
    gpadl = u32(0xE1E10) + u32(1) + u32(1) + u16(1) + u16(0) + u32(len(words)) + u32(len(words)) + b"".join(u64(w) for w in words)
    result = u32(6) + u32(0) + u32(1) + u32(1) + u32(0)
    outbound = u64(1) + u32(0) + u32(len(result)) + result + bytes(4)
    body = conn + u32(1) + u32(0) + channel + u32(1) + u32(0) + gpadl + u32(1) + u32(0) + outbound
    return u32(0x53424D56) + u16(1) + u16(0) + u32(len(body)) + u32(0) + body


def vmbus_server_seeds():
    hdr = u8(1) + u8(1) + u8(0)                    # 2 VPs, offers at relids 1 and 2, default limits
    connect = vs_contact(version=3) + vs_offers()  # 5.0
    ring = vs_gpadl(1, 0, 4) + vs_open(1, 1, 0)
    write("vmbus-server", "connect", hdr + connect + vs_posted() + vs_round_trip())
    write("vmbus-server", "open-close", hdr + vs_contact(version=0, target=1) + vs_offers() + ring + vs_open_complete(1)
          + vs_modify(1, 0) + vs_posted() + vs_round_trip() + vs_close(1) + vs_close_complete(1) + vs_teardown(1, 0)
          + vs_unload())
    write("vmbus-server", "gpadl-bodies", hdr + connect + vs_gpadl(2, 1, 40, in_header=5) + vs_gpadl(1, 2, 3, shape=1)
          + vs_gpadl(1, 3, 6, shape=8) + vs_teardown(2, 1) + vs_round_trip())
    write("vmbus-server", "teardown-while-open", hdr + connect + ring + vs_open_complete(1) + vs_teardown(1, 0)
          + vs_round_trip() + vs_close(1) + vs_close_complete(1))
    write("vmbus-server", "rescind", hdr + connect + ring + vs_open_complete(1) + vs_rescind(1) + vs_close(1)
          + vs_released(1) + vs_round_trip() + vs_close_complete(1) + vs_rescind(2))
    write("vmbus-server", "reconnect", hdr + connect + ring + vs_open_complete(1) + vs_gpadl(2, 4, 4) + vs_open(2, 2, 4)
          + vs_contact(version=7, vp=1) + vs_round_trip() + vs_close_complete(1) + vs_open_complete(2, fail=1)
          + vs_close_complete(2) + vs_offers())
    write("vmbus-server", "open-refused", hdr + vs_contact(version=4, target=3) + connect + ring + vs_open_complete(1, fail=1)
          + vs_open(1, 1, 0, offset=1) + vs_open(1, 1, 0, vp=4) + vs_unload(1))
    # Sub-channels of relid 1 (relids 5-7): asked for, one opened on VP 1, a round trip, the
    # primary closed (rescinding them), released, asked for again, then UNLOAD.
    write("vmbus-server", "sub-channels", hdr + connect + ring + vs_open_complete(1) + vs_sub_channels(1, 2)
          + vs_gpadl(5, 5, 4) + vs_open(5, 5, 5, vp=1) + vs_open_complete(5) + vs_sub_channels(1, 5) + vs_round_trip()
          + vs_close(5) + vs_close_complete(5) + vs_close(1) + vs_released(5) + vs_released(6) + vs_released(7)
          + vs_close_complete(1) + vs_teardown(1, 0) + vs_gpadl(1, 1, 4) + vs_open(1, 1, 1) + vs_open_complete(1)
          + vs_sub_channels(1, 1) + vs_posted() + vs_unload())
    blob = vmbus_saved_state()
    write("vmbus-server", "saved-state", hdr + vs_saved(blob) + vs_round_trip() + vs_flip([(20, 1), (200, 0x80)]))
    # The worker's envelope (VMBusWorkerSaved) around a connected server with one IC device's
    # state, then damaged at a few offsets.
    worker = (u8(18) + u8(1) + u8(7) + bytes(range(8)) + u8(0) + u64(5) + u64(3) + u8(3)
              + u16(8) + u8(1) + u16(30) + u8(0xFF) + u16(60) + u8(0x10))
    write("vmbus-server", "worker-state", hdr + connect + ring + vs_open_complete(1) + worker)
    # Findings, replayed on every run (their regression tests are in Tests/VMBusTests).
    # GPADL_TEARDOWN of an open channel's ring, then a reset: the device let go of that channel
    # while another was still closing, and the ring GPADL stayed behind, tearing down, in no
    # channel's use (ServerChannelTests.aRingTornDownBeforeAResetIsFreedWhenItsDeviceLetsGo).
    write("vmbus-server", "finding-teardown-during-reset", bytes.fromhex(
        "01010001030002000002000301000300040000001b01010001030002000002000301000300018b8b8b8b8b8b8b8b8b8b"
        "8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b000801000000000000000001017a0c07003f0000000000010000000000"
        "01000000010000010000000000000000000000000000010100010300020000020003010003401b0601010000020b0100"
        "03020403001b060202040002010700436861726163746502ff013bf4927b000003000500010b02015000000000000000"
        "00000000010100012c0d000000000000000000000000000000000000000f010100012c0001e9e9e9e9e9e9e9e9e9e90c"
        "020200e9020b01000501000f07015a0c06010100000606060606060606060606020b01000e01070108010f0c010e02"))
    write("vmbus-server", "raw", hdr + u8(0) + u8(0) + u8(0) + u8(0) + u8(8) + u32(3) + u32(0)
          + u8(0) + u8(1) + u8(1) + u8(0) + u8(12) + u32(7) + u32(0) + u32(1))


# --- vmbus-ring: u8 data size (8 * (1 + n % 64)), ops (Fuzz/Sources/fuzz-vmbus-ring) -----------

def vr_write(ptype, payload, ext=b"", flags=0): return u8(0) + u8(ptype) + u8(flags) + u8(len(ext) // 8) + u8(len(payload)) + ext + payload
def vr_commit(): return u8(1)
def vr_next(): return u8(2)
def vr_read_commit(): return u8(3)
def vr_enable(disable=0): return u8(4) + u8(disable)
def vr_arm(n): return u8(5) + u16(n)
def vr_control(which, value): return u8(6) + u8(which) + u32(value)
def vr_data(at, data): return u8(7) + u16(at) + u8(len(data)) + data
def vr_reattach(which): return u8(8) + u8(which)


def vmbus_ring_seeds():
    big = u8(63)     # 512 data bytes
    small = u8(15)   # 128 data bytes
    write("vmbus-ring", "write-read", big + vr_write(6, b"hello, vmbus!", flags=1) + vr_commit() + vr_next()
          + vr_read_commit() + vr_enable() + vr_next())
    ranges = u32(0) + u32(2) + u32(100) + u32(8) + u64(0x1234) + u32(5000) + u32(96) + u64(0x2000) + u64(0x2001)
    write("vmbus-ring", "gpa-direct", big + vr_write(9, b"request", ext=ranges, flags=1) + vr_commit() + vr_next()
          + vr_read_commit())
    wrap = b"".join(vr_write(6, bytes([i]) * (20 + i)) + vr_commit() + vr_next() + vr_read_commit() for i in range(6))
    write("vmbus-ring", "wrap", small + wrap)
    write("vmbus-ring", "corrupt-index", big + vr_write(6, b"x" * 24) + vr_commit() + vr_control(0, 0x80000000 | 3)
          + vr_next() + vr_next() + vr_reattach(3) + vr_next())
    write("vmbus-ring", "corrupt-descriptor", big + vr_write(6, b"y" * 16) + vr_commit() + vr_data(2, u16(1)) + vr_next()
          + vr_read_commit() + vr_enable())
    full = b"".join(vr_write(6, b"z" * 40) for _ in range(3))
    write("vmbus-ring", "pending-send", small + vr_control(4, 1) + full + vr_arm(64) + vr_commit() + vr_next()
          + vr_read_commit() + vr_enable(disable=1) + vr_write(6, b"z" * 40) + vr_commit())


# --- vmbus-ic: u8 kind (% 3), u8 ring size (8 * (32 + 2n)), ops (Fuzz/Sources/fuzz-vmbus-ic) ---------

def ic_packet(ptype, tid, payload): return u8(0) + (u8(0) if ptype == 6 else u8(0x80) + u8(ptype)) + u8(tid) + u16(len(payload)) + payload
def ic_answer(damage=0, at=0, value=0): return u8(1) + u8(damage) + u16(at) + u8(value)
def ic_pump(): return u8(2)
def ic_time(ms): return u8(3) + u16(ms // 16)
def ic_shutdown(flags=0): return u8(4) + u8(flags)
def ic_drain(): return u8(5)
def ic_control(ring, which, value): return u8(6) + u8(ring) + u8(which) + u32(value)
def ic_data(ring, at, data): return u8(7) + u8(ring) + u16(at) + u8(len(data)) + data
def ic_restore(): return u8(8)
def ic_saved(blob=b"", flips=()): return u8(9) + u8(len(blob)) + (blob if blob else u8(len(flips)) + b"".join(u8(a) + u8(x) for a, x in flips))


def vmbus_ic_seeds():
    big = 255    # 4336 data bytes per ring
    talk = ic_answer() + ic_pump() + ic_answer() + ic_pump()
    for kind, name in ((0, "heartbeat"), (1, "shutdown"), (2, "timesync")):
        periodic = b"".join(ic_time(1000) + ic_answer() + ic_pump() for _ in range(3))
        write("vmbus-ic", name, u8(kind) + u8(big) + talk + periodic + ic_shutdown() + ic_answer() + ic_pump()
              + ic_restore() + ic_time(1000) + ic_answer() + ic_pump() + ic_saved())
    write("vmbus-ic", "bad-version-counts", u8(0) + u8(big) + ic_answer(damage=1, at=28, value=0) + ic_pump() + ic_time(3000))
    write("vmbus-ic", "shutdown-small-ring", u8(1) + u8(0) + talk + ic_shutdown(2) + ic_shutdown() + ic_drain() + ic_pump()
          + ic_answer() + ic_pump())
    write("vmbus-ic", "garbage", u8(2) + u8(big) + ic_packet(6, 1, b"\x01\x00\x00\x00" + b"\x00" * 40) + ic_packet(11, 1, b"x" * 8)
          + ic_pump() + ic_answer(damage=0x80) + ic_pump() + ic_control(0, 0, 0x80000003) + ic_pump())
    write("vmbus-ic", "saved-damage", u8(0) + u8(big) + talk + ic_saved(flips=((16, 2), (40, 1))) + ic_restore() + ic_pump())
# --- storage: header (version index, sub-channel limit, disk flags), ops (Fuzz/Sources/fuzz-storage)

def st_step(step, value=0): return u8(1) + u8(step) + (u16(value) if step in (1, 3) else b"")
def st_linux(version=0x0602): return st_step(0) + st_step(1, version) + st_step(2) + st_step(4)
def st_srb(cdb, data_in, length, lun=0, addr=0, shape=0, failures=0, offset=0, fill=b""):
    return (u8(2) + u8(lun) + u8(addr) + u8(len(cdb)) + (cdb + bytes(16))[:16] + u8(data_in) + u32(length)
            + u8(shape) + u8(failures) + u8(offset) + fill)


def storage_seeds():
    hdr = u8(0) + u8(0) + u8(2)          # 0x0602, no sub-channels, two writable LUNs, writeback
    inquiry = bytes([0x12, 0, 0, 0, 36, 0])
    write("storage", "linux-handshake", hdr + st_linux())
    write("storage", "boot-scan", hdr + st_linux() + st_srb(inquiry, 1, 36) + st_srb(inquiry, 1, 36, addr=8)
          + st_srb(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]), 1, 4096)
          + st_srb(bytes([0x12, 1, 0xB0, 0, 64, 0]), 1, 64)
          + st_srb(bytes([0x9E, 0x10] + [0] * 11 + [32, 0, 0]), 1, 32)
          + st_srb(bytes([0x1A, 0, 0x3F, 0, 4, 0]), 1, 4)
          + st_srb(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 1, 4096))
    write("storage", "write-flush-unmap", hdr + st_linux()
          + st_srb(bytes([0x2A, 8, 0, 0, 0, 4, 0, 0, 2, 0]), 0, 1024, fill=b"\xab" * 64)
          + st_srb(bytes([0x35] + [0] * 9), 2, 0)
          + st_srb(bytes([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]), 0, 24,
                   fill=bytes([0, 22, 0, 16, 0, 0, 0, 0]) + bytes(7) + bytes([4]) + bytes([0, 0, 0, 2]) + bytes(4))
          + st_srb(bytes([0x93, 8] + [0] * 7 + [16, 0, 0, 0, 4, 0, 0]), 0, 512))
    write("storage", "errors", u8(0) + u8(0) + u8(1) + st_linux()
          + st_srb(bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 0, 512)
          + st_srb(bytes([0x28, 0, 0, 0, 0, 0xFF, 0, 0, 8, 0]), 1, 4096)
          + st_srb(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 1, 4096, failures=1)
          + st_srb(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 1, 4096, shape=4)
          + st_srb(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 1, 4096, shape=8)
          + st_srb(bytes([0x00] * 6), 2, 0, lun=3))
    write("storage", "old-version-subchannels", u8(1) + u8(4) + u8(4) + st_step(0) + st_step(1, 0x0602)
          + st_step(1, 0x0600) + st_step(2) + st_step(3, 2) + st_step(4) + u8(3) + st_step(3, 4)
          + u8(0) + u8(64) + bytes(64) + u8(2) + u8(5))
    write("storage", "saved-state", hdr + st_linux() + u8(3) + u8(4) + u8(32)
          + bytes.fromhex("56535452010000001000000000000000040000000206000000000000000000000000"))


# --- api-json: a read size byte, then request lines as a client sends them ---------------------
def api_json_seeds():
    lines = [b'{"execute":"status"}', b'{"execute":"metrics","id":1}', b'{"execute":"stop"}', b'{"execute":"shutdown"}',
             b'{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill"},"id":"x"}',
             b'{"execute":"fault","arguments":{"worker":"synic-router","kind":"hang","arg":5}}',
             b'{"execute":"status","arguments":{}}', b'[1,2.5e3,-0,true,false,null,"\\u00e9\\ud83d\\ude00"]']
    write("api-json", "requests", bytes([7]) + b"\n".join(lines) + b"\n")
    write("api-json", "one-status", bytes([63]) + b'{"execute":"status"}\r\n')
    write("api-json", "bad", bytes([0]) + b'nope\n{"execute":1}\n{"a":1,"a":2}\n[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]\n')


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    hypercall_seeds()
    msr_seeds()
    router_seeds()
    testdev_seeds()
    wire_seeds()
    ring_seeds()
    loader_seeds()
    policy_seeds()
    vmbus_server_seeds()
    vmbus_ring_seeds()
    vmbus_ic_seeds()
    storage_seeds()
    api_json_seeds()
