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
#include <string.h>

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
// RSA-OAEP encryption with a label (TPM 2.0 Part 1 §24.2: MakeCredential encrypts its seed to the EK with the label
// "IDENTITY"). OpenSSL takes ownership of the label, so it is copied into OpenSSL's own allocation here.
// Returns 1 on success; *out_len is the capacity on entry and the ciphertext length on return.
static inline int cmk_rsa_oaep_encrypt(EVP_PKEY *key, const EVP_MD *md, const unsigned char *label, size_t label_len,
                                       const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    unsigned char *copy = NULL;
    int ok = 0;
    if (ctx == NULL) return 0;
    if (EVP_PKEY_encrypt_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0
        || EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0) goto done;
    copy = OPENSSL_malloc(label_len);
    if (copy == NULL) goto done;
    memcpy(copy, label, label_len);
    if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, (int)label_len) <= 0) {
        OPENSSL_free(copy);
        goto done;
    }
    ok = EVP_PKEY_encrypt(ctx, out, out_len, in, in_len) > 0;
done:
    EVP_PKEY_CTX_free(ctx);
    return ok;
}
#endif
