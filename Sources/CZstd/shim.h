// libzstd (libzstd-dev) for Swift: the zstd decoder of bzImage payloads
// (Sources/Machine/Decompression). zstd_errors.h gives ZSTD_getErrorCode, to tell an
// output-too-small error from corrupt input.
#ifndef SYNTHVM_CZSTD_SHIM_H
#define SYNTHVM_CZSTD_SHIM_H

#include <zstd.h>
#include <zstd_errors.h>

#endif
