/*
 * token.h
 *		The token format, base62, CRC32 checksum, SHA-256 and constant-time
 *		comparison.  Pure functions over caller-provided buffers: no catalog
 *		access and no palloc, so they also build outside the server for the
 *		unit tests (APIKEY_FRONTEND).
 */
#ifndef APIKEY_TOKEN_H
#define APIKEY_TOKEN_H

#include <stddef.h>

/* Longest token (after stripping "Bearer ") we ever look at. */
#define APIKEY_MAX_TOKEN_LEN		255
/* 32 base62 characters carry 32 * log2(62) = 190.5 bits. */
#define APIKEY_BODY_LEN				32
/* CRC32 < 2^32 < 62^6, so 6 base62 digits always suffice. */
#define APIKEY_CHECKSUM_LEN			6
/* Prefixes and environments: [a-z][a-z0-9]{0,15}. */
#define APIKEY_MAX_NAME_LEN			16
#define APIKEY_HASH_LEN				32
#define APIKEY_HINT_BODY_CHARS		4
/* Random part of a generated key_id ("key_" + 16 base62 = 95 bits). */
#define APIKEY_KEY_ID_RANDOM_LEN	16
#define APIKEY_KEY_ID_PREFIX		"key_"
/* Buffer sizes that always fit, including the terminating NUL. */
#define APIKEY_TOKEN_BUFSIZE		(APIKEY_MAX_TOKEN_LEN + 1)
#define APIKEY_HINT_BUFSIZE		(2 * APIKEY_MAX_NAME_LEN + 2 + APIKEY_HINT_BODY_CHARS + 1)
#define APIKEY_KEY_ID_BUFSIZE		(sizeof(APIKEY_KEY_ID_PREFIX) + APIKEY_KEY_ID_RANDOM_LEN)

/* What a presented token looks like before any table is touched. */
typedef enum ApikeyTokenShape
{
	APIKEY_TOKEN_MALFORMED,		/* empty, oversized, or our prefix but wrong
								 * shape or checksum */
	APIKEY_TOKEN_OURS,			/* our prefix, shape and checksum are right */
	APIKEY_TOKEN_FOREIGN		/* another prefix: imported key, look up by
								 * hash */
} ApikeyTokenShape;

extern bool apikey_valid_name(const char *s, size_t len);
extern void apikey_token_unwrap(const char *in, size_t inlen,
								const char **tok, size_t *toklen);
extern ApikeyTokenShape apikey_token_classify(const char *tok, size_t len,
											  const char *prefix);
extern uint32 apikey_crc32(const char *data, size_t len);
extern void apikey_base62_fixed(uint32 value, char *out, int width);
extern bool apikey_random_base62(char *out, size_t n);
extern bool apikey_token_generate(char *out, const char *prefix,
								  const char *environment);
extern bool apikey_key_id_generate(char *out);
extern void apikey_token_hint(char *out, const char *tok, size_t len);
extern bool apikey_sha256(const char *data, size_t len,
						  uint8 out[APIKEY_HASH_LEN], const char **errstr);
extern bool apikey_equal_ct(const void *a, const void *b, size_t n);

#endif							/* APIKEY_TOKEN_H */
