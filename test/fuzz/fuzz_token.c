/*
 * fuzz_token.c
 *		libFuzzer harness for the token parser (src/token.c): the bytes a
 *		client sends to apikey_verify are untrusted.
 *
 *		Not only "does not crash": every classification is compared with an
 *		independent reference implementation written here from the public
 *		contract (CONTRACT.md, "Tokens"):
 *
 *		- the verify argument may be a bare token or "Bearer <token>"
 *		  (scheme case-insensitive); blanks (space, tab, CR, LF) around it
 *		  are ignored;
 *		- empty, more than 255 bytes, or containing NUL: MALFORMED;
 *		- not starting with "{prefix}_": FOREIGN (looked up by hash);
 *		- otherwise OURS if the token is {prefix}_{environment}_{body}{checksum}
 *		  with environment [a-z][a-z0-9]{0,15}, body at least 32 base62
 *		  characters and checksum the standard (zlib) CRC-32 of everything
 *		  before it as 6 zero-padded base62 digits (0-9A-Za-z); else
 *		  MALFORMED.
 *
 *		The first input byte selects a mode (low 2 bits):
 *
 *		  0  raw: the rest is the verify argument.
 *		  1  fix-up: as raw, but the last 6 bytes of the (reference-)unwrapped
 *			 token are first replaced by the correct checksum of what
 *			 precedes them, so inputs with valid checksums -- the OURS
 *			 branch -- are reached as often as malformed ones.
 *		  2  structured: prefix, environment and body come from the input
 *			 (optionally coerced into the valid alphabets), are formatted
 *			 like apikey_token_generate does, given the right (or a
 *			 corrupted) checksum and wrapped in a Bearer header / blanks.
 *		  3  generator: apikey_token_generate / apikey_key_id_generate with
 *			 pg_strong_random fed from the input (or failing), and
 *			 apikey_base62_fixed round trips.
 *
 *		The upper bits choose one of a few configured prefixes; every input
 *		is also classified under "ak" and under the prefix the token itself
 *		starts with (so the fuzzer can make its own tokens "ours").
 *
 *		On every path: apikey_token_unwrap returns exactly the reference
 *		slice, apikey_token_hint writes a NUL-terminated prefix of the token
 *		within APIKEY_HINT_BUFSIZE and, for tokens classified OURS, exactly
 *		"{prefix}_{environment}_" and 4 body characters; apikey_crc32
 *		equals a bitwise CRC-32; apikey_valid_name equals the reference;
 *		apikey_equal_ct equals memcmp() == 0.
 *		Buffers handed to the C code are exactly sized heap copies, so
 *		AddressSanitizer reports any read or write past them.
 *
 *		Set APIKEY_FUZZ_TRACE=1 to print every classification (for running
 *		single inputs).  The documented hint bound for tokens that are not
 *		shaped like ours ("their first 8 characters, never more than half the
 *		token") is checked too (APIKEY_FUZZ_STRICT_HINT=0 turns that off).
 */
#include "postgres_fe.h"

#include "token.h"

#include "fuzz_support.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------
 * Reference implementation, from the contract alone.
 * ------------------------------------------------------------------------
 */
#define REF_MAX_LEN		255
#define REF_MIN_BODY	32
#define REF_CHECK_LEN	6
#define REF_MAX_NAME	16

static const char ref_alphabet[] =
"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool
ref_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
ref_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static bool
ref_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
ref_base62(unsigned char c)
{
	return c != '\0' && strchr(ref_alphabet, c) != NULL;
}

static unsigned char
ref_ascii_fold(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char) (c - 'A' + 'a') : c;
}

/* CRC-32 (IEEE 802.3, zlib), bit by bit. */
static uint32
ref_crc32(const unsigned char *p, size_t n)
{
	uint32		crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < n; i++)
	{
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* value as 6 base62 digits, most significant first */
static void
ref_checksum_digits(uint32 value, char out[REF_CHECK_LEN])
{
	uint64		weight = 1;

	for (int i = 0; i < REF_CHECK_LEN - 1; i++)
		weight *= 62;
	for (int i = 0; i < REF_CHECK_LEN; i++)
	{
		out[i] = ref_alphabet[(value / weight) % 62];
		weight /= 62;
	}
}

/* [a-z][a-z0-9]{0,15} */
static bool
ref_name(const unsigned char *s, size_t n)
{
	if (n == 0 || n > REF_MAX_NAME || !ref_lower(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!ref_lower(s[i]) && !ref_digit(s[i]))
			return false;
	return true;
}

/*
 * Drop blanks around the argument; if its first word (up to a blank) is
 * "bearer" in any case, the token is what follows it, blanks dropped.
 */
static void
ref_unwrap(const unsigned char *in, size_t n, size_t *off, size_t *len)
{
	size_t		a = 0;
	size_t		b = n;
	size_t		w;

	while (a < b && ref_blank(in[a]))
		a++;
	while (b > a && ref_blank(in[b - 1]))
		b--;
	for (w = a; w < b && !ref_blank(in[w]); w++)
		;
	if (w - a == 6)
	{
		static const char scheme[] = "bearer";
		bool		same = true;

		for (int i = 0; i < 6; i++)
			same &= ref_ascii_fold(in[a + i]) == (unsigned char) scheme[i];
		if (same)
		{
			a = w;
			while (a < b && ref_blank(in[a]))
				a++;
		}
	}
	*off = a;
	*len = b - a;
}

/*
 * The shape {prefix}_{env}_{body}{checksum} without looking at the checksum
 * value; env_len gets the environment's length.
 */
static bool
ref_shaped(const unsigned char *t, size_t n, size_t plen, size_t *env_len)
{
	size_t		i = plen + 1;
	size_t		e;

	/* environment: [a-z][a-z0-9]{0,15} then '_' */
	if (i >= n || !ref_lower(t[i]))
		return false;
	for (e = 1; i + e < n && (ref_lower(t[i + e]) || ref_digit(t[i + e])); e++)
		;
	if (e > REF_MAX_NAME || i + e >= n || t[i + e] != '_')
		return false;
	i += e + 1;
	/* at least 32 body and exactly 6 checksum characters, all base62 */
	if (n - i < REF_MIN_BODY + REF_CHECK_LEN)
		return false;
	for (; i < n; i++)
		if (!ref_base62(t[i]))
			return false;
	*env_len = e;
	return true;
}

static bool
ref_has_prefix(const unsigned char *t, size_t n, const char *prefix)
{
	size_t		plen = strlen(prefix);

	return n > plen && memcmp(t, prefix, plen) == 0 && t[plen] == '_';
}

static ApikeyTokenShape
ref_classify(const unsigned char *t, size_t n, const char *prefix)
{
	size_t		env_len;
	char		want[REF_CHECK_LEN];

	if (n == 0 || n > REF_MAX_LEN || memchr(t, '\0', n) != NULL)
		return APIKEY_TOKEN_MALFORMED;
	if (!ref_has_prefix(t, n, prefix))
		return APIKEY_TOKEN_FOREIGN;
	if (!ref_shaped(t, n, strlen(prefix), &env_len))
		return APIKEY_TOKEN_MALFORMED;
	ref_checksum_digits(ref_crc32(t, n - REF_CHECK_LEN), want);
	if (memcmp(want, t + n - REF_CHECK_LEN, REF_CHECK_LEN) != 0)
		return APIKEY_TOKEN_MALFORMED;
	return APIKEY_TOKEN_OURS;
}

/* The prefix a token claims: its text before the first '_', if a name. */
static bool
ref_own_prefix(const unsigned char *t, size_t n, char out[REF_MAX_NAME + 1])
{
	const unsigned char *u = memchr(t, '_', n);

	if (u == NULL || !ref_name(t, u - t))
		return false;
	memcpy(out, t, u - t);
	out[u - t] = '\0';
	return true;
}

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------
 */
static bool strict_hint;
static bool trace;

static size_t stat_runs;
static size_t stat_shape[3];

static const char *
shape_name(ApikeyTokenShape s)
{
	switch (s)
	{
		case APIKEY_TOKEN_MALFORMED:
			return "MALFORMED";
		case APIKEY_TOKEN_OURS:
			return "OURS";
		case APIKEY_TOKEN_FOREIGN:
			return "FOREIGN";
	}
	return "?";
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------
 */

/*
 * Run apikey_token_hint and check it: returns the hint length.  The hint
 * buffer is exactly APIKEY_HINT_BUFSIZE; it is run twice with different
 * filler bytes to find out how much was written.
 */
static size_t
check_hint(const char *tok, size_t len)
{
	char	   *a = malloc(APIKEY_HINT_BUFSIZE);
	char	   *b = malloc(APIKEY_HINT_BUFSIZE);
	char	   *t = exact_copy(tok, len);
	size_t		n;
	ssize_t		last = -1;

	memset(a, 0xAA, APIKEY_HINT_BUFSIZE);
	memset(b, 0x55, APIKEY_HINT_BUFSIZE);
	apikey_token_hint(a, t, len);
	apikey_token_hint(b, t, len);
	for (size_t i = 0; i < APIKEY_HINT_BUFSIZE; i++)
		if ((unsigned char) a[i] != 0xAA || (unsigned char) b[i] != 0x55)
			last = i;
	if (last < 0 || a[last] != '\0' || memcmp(a, b, last + 1) != 0)
		fail("apikey_token_hint did not write a NUL-terminated string");
	n = last;
	if (n > len)
		fail("hint is %zu bytes, longer than the %zu-byte token", n, len);
	if (memcmp(a, tok, n) != 0)
	{
		dump("token", tok, len);
		dump("hint", a, n);
		fail("hint is not a prefix of the token");
	}
	free(a);
	free(b);
	free(t);
	return n;
}

/* Classify tok under prefix with the C code and the reference. */
static void
check_classify(const char *tok, size_t len, const char *prefix)
{
	char	   *t = exact_copy(tok, len);
	ApikeyTokenShape got = apikey_token_classify(t, len, prefix);
	ApikeyTokenShape want = ref_classify((const unsigned char *) tok, len, prefix);

	free(t);
	if (trace)
	{
		dump("token", tok, len);
		dump_flush();
		fprintf(stderr, "    prefix \"%s\": %s (reference %s)\n",
				prefix, shape_name(got), shape_name(want));
	}
	if ((unsigned) got > APIKEY_TOKEN_FOREIGN)
		fail("apikey_token_classify returned %d", (int) got);
	stat_shape[got]++;
	if (got != want)
	{
		dump("token", tok, len);
		fail("apikey_token_classify(prefix \"%s\") = %s, reference says %s",
			 prefix, shape_name(got), shape_name(want));
	}
	/* the hint of our tokens (prefixes are names: they have no '_') */
	if (got == APIKEY_TOKEN_OURS && ref_name((const unsigned char *) prefix, strlen(prefix)))
	{
		size_t		env_len = 0;
		size_t		want_hint;
		size_t		n;

		ref_shaped((const unsigned char *) tok, len, strlen(prefix), &env_len);
		want_hint = strlen(prefix) + 1 + env_len + 1 + APIKEY_HINT_BODY_CHARS;
		n = check_hint(tok, len);
		if (n != want_hint)
		{
			dump("token", tok, len);
			fail("hint of our token is %zu bytes, expected %zu "
				 "({prefix}_{environment}_ and %d body characters)",
				 n, want_hint, APIKEY_HINT_BODY_CHARS);
		}
	}
}

static const char *const prefixes[] = {
	"ak", "zz", "a", "p23456789012345x", "live", "key", "bearer", "x9"
};
#define NPREFIXES lengthof(prefixes)

/*
 * The full check of one verify argument: unwrap, then classify under "ak",
 * the chosen configured prefix and the token's own prefix; hint bounds.
 */
static void
check_argument(const uint8_t *arg, size_t n, unsigned choice)
{
	char	   *in = exact_copy(arg, n);
	const char *tok;
	size_t		toklen;
	size_t		off;
	size_t		len;
	char		own[REF_MAX_NAME + 1];

	stat_runs++;
	apikey_token_unwrap(in, n, &tok, &toklen);
	ref_unwrap(arg, n, &off, &len);
	if (tok != in + off || toklen != len)
	{
		dump("C token", tok, (tok >= in && tok <= in + n) ?
			 Min(toklen, (size_t) (in + n - tok)) : 0);
		fail("apikey_token_unwrap gave bytes [%ld, %ld), reference [%zu, %zu)",
			 (long) (tok - in), (long) (tok - in) + (long) toklen, off, off + len);
	}

	check_classify(tok, toklen, "ak");
	check_classify(tok, toklen, prefixes[choice % NPREFIXES]);
	if (ref_own_prefix((const unsigned char *) tok, toklen, own))
		check_classify(tok, toklen, own);

	/* hint: never past the token nor the buffer, always a prefix */
	{
		size_t		h = check_hint(tok, toklen);
		size_t		env_len;
		bool		ours_shape = ref_own_prefix((const unsigned char *) tok, toklen, own) &&
			ref_shaped((const unsigned char *) tok, toklen, strlen(own), &env_len);

		if (strict_hint && !ours_shape && h > Min(toklen / 2, 8))
		{
			dump("token", tok, toklen);
			dump("hint", tok, h);
			fail("hint of a token not shaped like ours is %zu bytes; documented: "
				 "first 8 characters, never more than half the token", h);
		}
	}
	free(in);
}

/* Generic pure-function checks on any bytes. */
static void
check_misc(const uint8_t *p, size_t n)
{
	char	   *c = exact_copy(p, n);
	size_t		half = n / 2;

	if (apikey_crc32(c, n) != ref_crc32(p, n))
		fail("apikey_crc32 differs from the bitwise CRC-32");
	if (apikey_equal_ct(c, c + half, half) != (memcmp(p, p + half, half) == 0))
		fail("apikey_equal_ct differs from memcmp");
	for (size_t k = 0; k <= Min(n, 20); k++)
		if (apikey_valid_name(c, k) != ref_name(p, k))
			fail("apikey_valid_name(%zu bytes) = %d, reference %d",
				 k, apikey_valid_name(c, k), ref_name(p, k));
	free(c);
}

/* mode 1: give the unwrapped token a correct checksum, then check */
static void
mode_fixup(const uint8_t *p, size_t n, unsigned choice)
{
	uint8_t    *m = (uint8_t *) exact_copy(p, n);
	size_t		off;
	size_t		len;

	ref_unwrap(m, n, &off, &len);
	if (len >= REF_CHECK_LEN)
		ref_checksum_digits(ref_crc32(m + off, len - REF_CHECK_LEN),
							(char *) m + off + len - REF_CHECK_LEN);
	check_argument(m, n, choice);
	free(m);
}

/* a byte into [a-z], [a-z0-9] or base62 (bytes already in it are kept) */
static char
coerce(uint8_t b, int alphabet)
{
	switch (alphabet)
	{
		case 0:
			return ref_lower(b) ? (char) b : 'a' + b % 26;
		case 1:
			return ref_lower(b) || ref_digit(b) ? (char) b :
				"abcdefghijklmnopqrstuvwxyz0123456789"[b % 36];
		default:
			return ref_base62(b) ? (char) b : ref_alphabet[b % 62];
	}
}

static const char *const wrappers[][2] = {
	{"", ""},
	{"Bearer ", ""},
	{"bearer\t", ""},
	{"  BEARER  ", "\r\n"},
	{" \t\r\n", " \n"},
	{"Bearer", ""},				/* no blank: not unwrapped */
	{"Bearer Bearer ", ""},		/* only one scheme is stripped */
	{"Basic ", ""},				/* other schemes are not stripped */
};

/*
 * mode 2: flags, prefix length, env length, prefix, env, body.
 * flags: bits 0-2 wrapper, 3 coerce names, 4 coerce body, 5 corrupt a
 * checksum digit (position from the env length byte), 6 prefix from the
 * table instead of the input.
 */
static void
mode_structured(const uint8_t *p, size_t n, unsigned choice)
{
	uint8_t		flags;
	size_t		plen;
	size_t		elen;
	size_t		blen;
	char		prefix[64];
	char		tok[1024];
	char		arg[1100];
	size_t		len = 0;
	int			wrap;
	bool		corrupt;
	size_t		corrupt_at;

	if (n < 3)
		return;
	flags = p[0];
	plen = p[1] % 20;
	elen = p[2] % 20;
	corrupt_at = (p[1] / 20) % REF_CHECK_LEN;
	p += 3;
	n -= 3;
	wrap = flags & 7;
	corrupt = (flags & 0x20) != 0;

	if (flags & 0x40)
	{
		strcpy(prefix, prefixes[choice % NPREFIXES]);
		plen = strlen(prefix);
	}
	else
	{
		if (plen > n)
			plen = n;
		for (size_t i = 0; i < plen; i++)
			prefix[i] = (flags & 0x08) ? coerce(p[i], i == 0 ? 0 : 1) : (char) p[i];
		prefix[plen] = '\0';
		p += plen;
		n -= plen;
		/* a configured prefix is a C string: stop at an embedded NUL */
		plen = strlen(prefix);
		if (plen == 0)
			return;
	}
	if (elen > n)
		elen = n;
	blen = Min(n - elen, 400);

	memcpy(tok, prefix, plen);
	len = plen;
	tok[len++] = '_';
	for (size_t i = 0; i < elen; i++)
		tok[len++] = (flags & 0x08) ? coerce(p[i], i == 0 ? 0 : 1) : (char) p[i];
	tok[len++] = '_';
	for (size_t i = 0; i < blen; i++)
		tok[len++] = (flags & 0x10) ? coerce(p[elen + i], 2) : (char) p[elen + i];
	ref_checksum_digits(ref_crc32((unsigned char *) tok, len), tok + len);
	if (corrupt)
	{
		size_t		at = len + corrupt_at;
		const char *d = strchr(ref_alphabet, tok[at]);

		tok[at] = ref_alphabet[(d - ref_alphabet + 1) % 62];
	}
	len += REF_CHECK_LEN;

	{
		size_t		w0 = strlen(wrappers[wrap][0]);
		size_t		w1 = strlen(wrappers[wrap][1]);

		memcpy(arg, wrappers[wrap][0], w0);
		memcpy(arg + w0, tok, len);
		memcpy(arg + w0 + len, wrappers[wrap][1], w1);
		check_argument((const uint8_t *) arg, w0 + len + w1, choice);
		/*
		 * Wrappers 0-4 must give back exactly this token, if the token is
		 * one that unwrapping leaves alone (no blanks around it, does not
		 * start with a Bearer scheme of its own).
		 */
		size_t		o;
		size_t		l;

		ref_unwrap((unsigned char *) tok, len, &o, &l);
		if (wrap <= 4 && o == 0 && l == len)
		{
			char	   *a = exact_copy(arg, w0 + len + w1);
			const char *t;
			size_t		tl;

			apikey_token_unwrap(a, w0 + len + w1, &t, &tl);
			if (tl != len || memcmp(t, tok, len) != 0)
				fail("wrapper %d was not removed", wrap);
			free(a);
		}
	}

	/* Direct statement of the contract for well-formed inputs. */
	if (ref_name((unsigned char *) prefix, plen) &&
		ref_name((unsigned char *) tok + plen + 1, elen) &&
		blen >= REF_MIN_BODY && len <= REF_MAX_LEN)
	{
		bool		body_ok = true;
		char	   *t = exact_copy(tok, len);
		ApikeyTokenShape got;

		for (size_t i = 0; i < blen; i++)
			body_ok &= ref_base62((unsigned char) tok[plen + elen + 2 + i]);
		got = apikey_token_classify(t, len, prefix);
		free(t);
		if (body_ok && got != (corrupt ? APIKEY_TOKEN_MALFORMED : APIKEY_TOKEN_OURS))
		{
			dump("token", tok, len);
			fail("well-formed token%s classified %s",
				 corrupt ? " with a corrupted checksum" : "", shape_name(got));
		}
	}
}

/* mode 3: generation and base62 */
static void
mode_generate(const uint8_t *p, size_t n)
{
	char		prefix[REF_MAX_NAME + 1];
	char		env[REF_MAX_NAME + 1];
	size_t		plen;
	size_t		elen;
	char	   *out;
	bool		fail_random;
	bool		ok;
	size_t		len;
	uint64		seed = 0;

	if (n < 8)
		return;
	plen = 1 + p[0] % REF_MAX_NAME;
	elen = 1 + p[1] % REF_MAX_NAME;
	fail_random = (p[2] & 0xF0) == 0xF0;

	/* apikey_base62_fixed: value from p[3..6], width from p[2] */
	{
		uint32		v = (uint32) p[3] << 24 | (uint32) p[4] << 16 | (uint32) p[5] << 8 | p[6];
		int			width = p[2] % 11;
		char	   *b = malloc(Max(width, 1));
		uint64		back = 0;
		uint64		mod = 1;

		apikey_base62_fixed(v, b, width);
		for (int i = 0; i < width; i++)
		{
			const char *d = b[i] != '\0' ? strchr(ref_alphabet, b[i]) : NULL;

			if (d == NULL)
				fail("apikey_base62_fixed wrote a non-base62 character");
			back = back * 62 + (d - ref_alphabet);
			mod *= 62;
		}
		if (back != (uint64) v % mod)
			fail("apikey_base62_fixed(%u, width %d) decodes to %llu",
				 v, width, (unsigned long long) back);
		if (width == APIKEY_CHECKSUM_LEN)
		{
			char		r[REF_CHECK_LEN];

			ref_checksum_digits(v, r);
			if (memcmp(r, b, REF_CHECK_LEN) != 0)
				fail("apikey_base62_fixed differs from the reference digits");
		}
		free(b);
	}

	for (size_t i = 0; i < plen; i++)
		prefix[i] = coerce(p[7 + i % (n - 7)], i == 0 ? 0 : 1);
	prefix[plen] = '\0';
	for (size_t i = 0; i < elen; i++)
		env[i] = coerce(p[7 + (plen + i) % (n - 7)], i == 0 ? 0 : 1);
	env[elen] = '\0';
	memcpy(&seed, p + 3, 4);

	/* the random bytes: what follows the names in the input */
	{
		size_t		skip = Min(n, 7 + plen + elen);

		fuzz_random_set(p + skip, n - skip, seed, fail_random);
	}
	out = malloc(APIKEY_TOKEN_BUFSIZE);
	ok = apikey_token_generate(out, prefix, env);
	if (fail_random)
	{
		if (ok)
			fail("apikey_token_generate succeeded although pg_strong_random failed");
		free(out);
		out = malloc(APIKEY_KEY_ID_BUFSIZE);
		if (apikey_key_id_generate(out))
			fail("apikey_key_id_generate succeeded although pg_strong_random failed");
		free(out);
		return;
	}
	if (!ok)
		fail("apikey_token_generate failed");
	len = strnlen(out, APIKEY_TOKEN_BUFSIZE);
	if (len != plen + elen + 2 + APIKEY_BODY_LEN + APIKEY_CHECKSUM_LEN)
		fail("generated token is %zu bytes", len);
	if (memcmp(out, prefix, plen) != 0 || out[plen] != '_' ||
		memcmp(out + plen + 1, env, elen) != 0 || out[plen + 1 + elen] != '_')
		fail("generated token does not start with {prefix}_{environment}_");
	check_classify(out, len, prefix);
	if (ref_classify((unsigned char *) out, len, prefix) != APIKEY_TOKEN_OURS)
	{
		dump("token", out, len);
		fail("generated token is not OURS for the reference");
	}
	/* and as a Bearer header, under the default prefix too */
	{
		char		arg[APIKEY_TOKEN_BUFSIZE + 16];

		memcpy(arg, " Bearer\t", 8);
		memcpy(arg + 8, out, len);
		check_argument((uint8_t *) arg, len + 8, p[0]);
	}
	free(out);

	fuzz_random_set(p + 7, n - 7, seed, false);
	out = malloc(APIKEY_KEY_ID_BUFSIZE);
	if (!apikey_key_id_generate(out))
		fail("apikey_key_id_generate failed");
	if (strnlen(out, APIKEY_KEY_ID_BUFSIZE) != 4 + APIKEY_KEY_ID_RANDOM_LEN ||
		memcmp(out, "key_", 4) != 0)
		fail("key_id is not key_ and %d characters", APIKEY_KEY_ID_RANDOM_LEN);
	for (int i = 4; i < 4 + APIKEY_KEY_ID_RANDOM_LEN; i++)
		if (!ref_base62((unsigned char) out[i]))
			fail("key_id has a non-base62 character");
	free(out);
}

static void
print_stats(void)
{
	fprintf(stderr, "fuzz_token: %zu arguments checked; classified OURS %zu, "
			"MALFORMED %zu, FOREIGN %zu\n", stat_runs,
			stat_shape[APIKEY_TOKEN_OURS], stat_shape[APIKEY_TOKEN_MALFORMED],
			stat_shape[APIKEY_TOKEN_FOREIGN]);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *s = getenv("APIKEY_FUZZ_STRICT_HINT");

	fuzz_support_init();
	/* on by default since the hint follows its documented bound */
	strict_hint = s == NULL || strcmp(s, "0") != 0;
	s = getenv("APIKEY_FUZZ_TRACE");
	trace = s != NULL && strcmp(s, "1") == 0;
	if (apikey_crc32("123456789", 9) != 0xCBF43926u ||
		ref_crc32((const unsigned char *) "123456789", 9) != 0xCBF43926u)
	{
		fprintf(stderr, "fuzz_token: CRC-32 check value is wrong\n");
		abort();
	}
	atexit(print_stats);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned	mode;
	unsigned	choice;

	fuzz_set_input("fuzz_token", data, size);
	if (size == 0)
	{
		check_argument(data, 0, 0);
		return 0;
	}
	mode = data[0] & 3;
	choice = data[0] >> 2;
	data++;
	size--;

	check_misc(data, size);
	switch (mode)
	{
		case 0:
			check_argument(data, size, choice);
			break;
		case 1:
			mode_fixup(data, size, choice);
			break;
		case 2:
			mode_structured(data, size, choice);
			break;
		case 3:
			mode_generate(data, size);
			break;
	}
	return 0;
}
