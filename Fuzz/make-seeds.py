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


# --- ring: header (record size, capacity, offset selectors), ops -------------------------------

def ring_seeds():
    push = lambda data: u8(0) + u8(len(data)) + data
    pop = u8(1)
    write("ring", "fifo", u8(2) + u8(2) + u8(1) + push(b"one") + push(b"two") + pop + push(b"three")
          + pop + pop + pop + push(b"") + push(b"x" * 56) + pop)
    write("ring", "full", u8(0) + u8(1) + u8(0) + push(b"a") + push(b"b") + push(b"c") + pop + pop + pop)
    write("ring", "reattach", u8(1) + u8(3) + u8(0) + push(b"keep") + u8(4) + pop + u8(5) + push(b"more") + pop)
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
