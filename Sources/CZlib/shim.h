// zlib (zlib1g-dev) for Swift: the gzip decoder of bzImage payloads (Sources/Machine/Decompression).
// inflateInit2 is a macro over inflateInit2_, which Swift cannot import; this wraps it.
#ifndef SYNTHVM_CZLIB_SHIM_H
#define SYNTHVM_CZLIB_SHIM_H

#include <zlib.h>

static inline int svm_inflate_init2(z_stream *stream, int window_bits) {
    return inflateInit2(stream, window_bits);
}

#endif
