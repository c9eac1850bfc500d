// The TPM2 Software Stack (tpm2-tss): marshalling (mu), response-code decoding (rc), and, for the
// measured-boot work, the enhanced system API (esys) with the TCTI loader (tctildr).
// Only the TPM2 module imports this, with `internal import`.
#ifndef CMK_CTSS2_SHIM_H
#define CMK_CTSS2_SHIM_H
#include <tss2/tss2_common.h>
#include <tss2/tss2_tpm2_types.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#endif
