/*
 * token.c
 *		The 2.0 token format shared by every version of the extension:
 *
 *			{prefix}_{environment}_{body}{checksum}
 *
 *		prefix and environment are [a-z][a-z0-9]{0,15}; body is 32 base62
 *		characters from pg_strong_random; checksum is the standard CRC-32 of
 *		everything before it, as 6 zero-padded base62 digits.  The checksum
 *		lets apikey_verify reject typos and garbage without touching a table.
 *
 *		Only the SHA-256 of a token is ever stored; the comparison of stored
 *		and computed hashes is constant time.
 */
#ifdef APIKEY_FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "common/cryptohash.h"
#include "utils/pg_crc.h"

#include "token.h"

static const char apikey_base62_digits[] =
"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static inline bool
apikey_is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		(c >= 'a' && c <= 'z');
}

static inline bool
apikey_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Is s a valid prefix or environment name: [a-z][a-z0-9]{0,15}?
 */
bool
apikey_valid_name(const char *s, size_t len)
{
	if (len < 1 || len > APIKEY_MAX_NAME_LEN)
		return false;
	if (!(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < len; i++)
	{
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	}
	return true;
}

/*
 * Accept a bare token or an HTTP Authorization value "Bearer <token>"
 * (scheme case-insensitive, surrounding blanks ignored), so applications can
 * pass the header straight through.  Returns a slice of the input.
 */
void
apikey_token_unwrap(const char *in, size_t inlen, const char **tok,
					size_t *toklen)
{
	const char *start = in;
	const char *end = in + inlen;

	while (start < end && apikey_is_blank(*start))
		start++;
	while (end > start && apikey_is_blank(end[-1]))
		end--;

	if (end - start >= 6 && pg_strncasecmp(start, "bearer", 6) == 0 &&
		(end - start == 6 || apikey_is_blank(start[6])))
	{
		start += 6;
		while (start < end && apikey_is_blank(*start))
			start++;
	}
	*tok = start;
	*toklen = end - start;
}

/*
 * Decide, from the text alone, whether a token can possibly be valid.
 */
ApikeyTokenShape
apikey_token_classify(const char *tok, size_t len, const char *prefix)
{
	size_t		plen = strlen(prefix);
	const char *env;
	const char *p;
	const char *end = tok + len;
	size_t		rest;
	char		expect[APIKEY_CHECKSUM_LEN];

	if (len == 0 || len > APIKEY_MAX_TOKEN_LEN)
		return APIKEY_TOKEN_MALFORMED;
	if (memchr(tok, '\0', len) != NULL)
		return APIKEY_TOKEN_MALFORMED;

	/* Tokens without our prefix are imported keys: looked up by hash. */
	if (len <= plen || memcmp(tok, prefix, plen) != 0 || tok[plen] != '_')
		return APIKEY_TOKEN_FOREIGN;

	/* environment, then '_' */
	env = tok + plen + 1;
	p = env;
	while (p < end && *p != '_')
		p++;
	if (p >= end || !apikey_valid_name(env, p - env))
		return APIKEY_TOKEN_MALFORMED;
	p++;

	/* body and checksum: base62 only, body at least APIKEY_BODY_LEN long */
	rest = end - p;
	if (rest < APIKEY_BODY_LEN + APIKEY_CHECKSUM_LEN)
		return APIKEY_TOKEN_MALFORMED;
	for (const char *q = p; q < end; q++)
	{
		if (!apikey_is_base62(*q))
			return APIKEY_TOKEN_MALFORMED;
	}

	apikey_base62_fixed(apikey_crc32(tok, len - APIKEY_CHECKSUM_LEN),
						expect, APIKEY_CHECKSUM_LEN);
	if (memcmp(expect, end - APIKEY_CHECKSUM_LEN, APIKEY_CHECKSUM_LEN) != 0)
		return APIKEY_TOKEN_MALFORMED;
	return APIKEY_TOKEN_OURS;
}

/* Standard CRC-32 (the one zlib and Ethernet use), via PostgreSQL's table. */
uint32
apikey_crc32(const char *data, size_t len)
{
	pg_crc32	crc;

	INIT_TRADITIONAL_CRC32(crc);
	COMP_TRADITIONAL_CRC32(crc, data, len);
	FIN_TRADITIONAL_CRC32(crc);
	return crc;
}

/* value as exactly width base62 digits, most significant first, '0'-padded */
void
apikey_base62_fixed(uint32 value, char *out, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		out[i] = apikey_base62_digits[value % 62];
		value /= 62;
	}
}

/*
 * n uniformly distributed base62 characters from pg_strong_random.
 * Bytes >= 248 (= 4 * 62) are rejected so that "byte % 62" has no bias.
 */
bool
apikey_random_base62(char *out, size_t n)
{
	size_t		filled = 0;

	while (filled < n)
	{
		uint8		buf[64];

		if (!pg_strong_random(buf, sizeof(buf)))
			return false;
		for (size_t i = 0; i < sizeof(buf) && filled < n; i++)
		{
			if (buf[i] < 248)
				out[filled++] = apikey_base62_digits[buf[i] % 62];
		}
	}
	return true;
}

/*
 * Write a new NUL-terminated token into out (APIKEY_TOKEN_BUFSIZE bytes).
 * prefix and environment must already be valid names.
 */
bool
apikey_token_generate(char *out, const char *prefix, const char *environment)
{
	size_t		len;

	len = snprintf(out, APIKEY_TOKEN_BUFSIZE, "%s_%s_", prefix, environment);
	if (!apikey_random_base62(out + len, APIKEY_BODY_LEN))
		return false;
	len += APIKEY_BODY_LEN;
	apikey_base62_fixed(apikey_crc32(out, len), out + len, APIKEY_CHECKSUM_LEN);
	out[len + APIKEY_CHECKSUM_LEN] = '\0';
	return true;
}

/* A new key_id, "key_" and 16 base62 characters, into APIKEY_KEY_ID_BUFSIZE. */
bool
apikey_key_id_generate(char *out)
{
	size_t		plen = strlen(APIKEY_KEY_ID_PREFIX);

	memcpy(out, APIKEY_KEY_ID_PREFIX, plen);
	if (!apikey_random_base62(out + plen, APIKEY_KEY_ID_RANDOM_LEN))
		return false;
	out[plen + APIKEY_KEY_ID_RANDOM_LEN] = '\0';
	return true;
}

/*
 * The display hint: for tokens of our shape (a valid prefix and environment
 * name, then at least a body and checksum of base62) "{prefix}_{environment}_"
 * and the first 4 body characters; for any other token its first 8
 * characters, never more than half of it.  Enough to tell keys apart,
 * useless to an attacker.
 */
void
apikey_token_hint(char *out, const char *tok, size_t len)
{
	const char *end = tok + len;
	const char *env_end = NULL;
	const char *prefix_end = memchr(tok, '_', len);
	size_t		n = Min(len / 2, 8);

	if (prefix_end != NULL)
		env_end = memchr(prefix_end + 1, '_', end - (prefix_end + 1));
	if (env_end != NULL &&
		apikey_valid_name(tok, prefix_end - tok) &&
		apikey_valid_name(prefix_end + 1, env_end - (prefix_end + 1)) &&
		(size_t) (end - (env_end + 1)) >= APIKEY_BODY_LEN + APIKEY_CHECKSUM_LEN)
	{
		bool		base62 = true;

		for (const char *q = env_end + 1; q < end && base62; q++)
			base62 = apikey_is_base62(*q);
		if (base62)
			n = (env_end + 1 - tok) + APIKEY_HINT_BODY_CHARS;
	}
	memcpy(out, tok, n);
	out[n] = '\0';
}

/* SHA-256 through PostgreSQL's cryptohash (OpenSSL where built with it). */
bool
apikey_sha256(const char *data, size_t len, uint8 out[APIKEY_HASH_LEN],
			  const char **errstr)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bool		ok;

	if (ctx == NULL)
	{
		*errstr = "out of memory";
		return false;
	}
	ok = pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) data, len) == 0 &&
		pg_cryptohash_final(ctx, out, APIKEY_HASH_LEN) == 0;
	if (!ok)
		*errstr = pg_cryptohash_error(ctx);
	pg_cryptohash_free(ctx);
	return ok;
}

/*
 * Constant-time equality: the time taken does not depend on where the
 * inputs differ.  (timingsafe_bcmp only exists in PostgreSQL 15.18+.)
 */
bool
apikey_equal_ct(const void *a, const void *b, size_t n)
{
	const volatile uint8 *pa = (const volatile uint8 *) a;
	const volatile uint8 *pb = (const volatile uint8 *) b;
	uint8		diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= pa[i] ^ pb[i];
	return diff == 0;
}
