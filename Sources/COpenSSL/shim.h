// OpenSSL libcrypto, as cmk uses it: X.509 parsing helpers, EVP signature verification (RSA-PSS), and — for the
// simulated platform only — RSA key generation and RSA-PSS signing. Imported with `internal import` by Attestation
// and PlatformSimulator.
#ifndef CMK_COPENSSL_SHIM_H
#define CMK_COPENSSL_SHIM_H
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

// EVP_PKEY_CTX_set_rsa_padding and friends are functions in OpenSSL 3, but their names in older
// headers were macros; these thin wrappers keep the Swift side independent of that.
static inline int cmk_pkey_ctx_set_rsa_pss(EVP_PKEY_CTX *ctx, const EVP_MD *mgf1, int salt_length) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0) return 0;
    if (EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) <= 0) return 0;
    if (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt_length) <= 0) return 0;
    return 1;
}

// A new RSA key of `bits` bits with public exponent 65537 (EVP_RSA_gen is a variadic macro Swift cannot call).
// Returns NULL on failure; the caller owns the key.
static inline EVP_PKEY *cmk_rsa_generate(unsigned int bits) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    EVP_PKEY *key = NULL;
    if (ctx == NULL) return NULL;
    if (EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) <= 0
        || EVP_PKEY_generate(ctx, &key) <= 0) {
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return key;
}
#endif
