// libcbor: the CBOR encoder and decoder behind cmk's COSE and CWT attestation results.
// Only the AttestationResults module imports this, with `internal import`.
#ifndef CMK_CCBOR_SHIM_H
#define CMK_CCBOR_SHIM_H
#include <cbor.h>
#endif
