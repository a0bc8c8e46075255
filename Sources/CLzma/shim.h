// liblzma (liblzma-dev) for Swift: the xz and LZMA-alone decoders of bzImage payloads
// (Sources/Machine/Decompression). LZMA_STREAM_INIT is all zeros, which Swift's
// lzma_stream() also gives, so no wrapper is needed.
#ifndef SYNTHVM_CLZMA_SHIM_H
#define SYNTHVM_CLZMA_SHIM_H

#include <lzma.h>

#endif
