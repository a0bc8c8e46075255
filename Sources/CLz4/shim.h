// liblz4 (liblz4-dev) for Swift: block decompression for the LZ4 legacy frames of bzImage
// payloads (Sources/Machine/Decompression). The legacy frame itself is parsed in Swift.
#ifndef SYNTHVM_CLZ4_SHIM_H
#define SYNTHVM_CLZ4_SHIM_H

#include <lz4.h>

#endif
