/*
 * run_unit.c
 *		Unit tests of the pure C parts -- token format and scopes -- built
 *		outside the server (make unittest).  Prints one TAP line per case.
 */
#include "postgres_fe.h"

#include "ratewindow.h"
#include "scope.h"
#include "token.h"

extern void unit_crc_table_init(void);

static int	unit_count = 0;
static int	unit_failed = 0;

static void
check(bool ok, const char *name)
{
	unit_count++;
	if (!ok)
		unit_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", unit_count, name);
}

static ApikeyTokenShape
classify(const char *tok)
{
	return apikey_token_classify(tok, strlen(tok), "ak");
}

static bool
scope_ok(const char *s)
{
	ApikeyScope sc;

	return apikey_scope_parse(s, strlen(s), &sc);
}

static bool
covers(const char *granted, const char *required)
{
	ApikeyScope g;
	ApikeyScope r;

	if (!apikey_scope_parse(granted, strlen(granted), &g) ||
		!apikey_scope_parse(required, strlen(required), &r))
		return false;
	return apikey_scope_covers(&g, &r);
}

static void
test_crc_and_base62(void)
{
	char		out[7];

	check(apikey_crc32("123456789", 9) == 0xCBF43926u, "crc32 check value of 123456789");
	check(apikey_crc32("", 0) == 0, "crc32 of empty input is 0");
	apikey_base62_fixed(0, out, 6);
	out[6] = '\0';
	check(strcmp(out, "000000") == 0, "base62 zero is zero-padded");
	apikey_base62_fixed(0xFFFFFFFFu, out, 6);
	check(strcmp(out, "4gfFC3") == 0, "base62 of 2^32-1 fits in 6 digits");
	apikey_base62_fixed(61, out, 6);
	check(strcmp(out, "00000z") == 0, "base62 digit 61 is z");
}

static void
test_generate(void)
{
	char		tok[APIKEY_TOKEN_BUFSIZE];
	char		tok2[APIKEY_TOKEN_BUFSIZE];
	char		hint[APIKEY_HINT_BUFSIZE];
	char		id[APIKEY_KEY_ID_BUFSIZE];
	bool		all_base62 = true;
	int			counts[256] = {0};
	int			distinct = 0;

	check(apikey_token_generate(tok, "ak", "live"), "generate a token");
	check(strncmp(tok, "ak_live_", 8) == 0, "token starts with prefix and environment");
	check(strlen(tok) == 8 + APIKEY_BODY_LEN + APIKEY_CHECKSUM_LEN, "token length is 46");
	check(classify(tok) == APIKEY_TOKEN_OURS, "generated token classifies as ours");
	apikey_token_generate(tok2, "ak", "live");
	check(strcmp(tok, tok2) != 0, "two tokens differ");
	apikey_token_hint(hint, tok, strlen(tok));
	check(strlen(hint) == 12 && strncmp(hint, tok, 12) == 0, "hint is prefix_env_ and 4 body chars");
	check(apikey_key_id_generate(id) && strncmp(id, "key_", 4) == 0 && strlen(id) == 20,
		  "key_id is key_ and 16 characters");

	/* the body alphabet: every base62 digit shows up, nothing else does */
	for (int i = 0; i < 2000; i++)
	{
		apikey_token_generate(tok, "ak", "t");
		for (const char *p = tok + 5; *p; p++)
		{
			all_base62 &= (*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
				(*p >= 'a' && *p <= 'z');
			counts[(unsigned char) *p]++;
		}
	}
	for (int c = 0; c < 256; c++)
		distinct += counts[c] > 0;
	check(all_base62, "bodies use only base62 characters");
	check(distinct == 62, "bodies use all 62 characters");
}

static void
test_classify(void)
{
	char		tok[APIKEY_TOKEN_BUFSIZE];
	char		bad[APIKEY_TOKEN_BUFSIZE];
	char		big[400];
	size_t		len;

	apikey_token_generate(tok, "ak", "live");
	len = strlen(tok);

	check(classify("") == APIKEY_TOKEN_MALFORMED, "empty token is malformed");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	check(classify(big) == APIKEY_TOKEN_MALFORMED, "token over 255 bytes is malformed");
	check(classify("legacy-key-123") == APIKEY_TOKEN_FOREIGN, "other prefix is foreign");
	check(classify("akx_live_abc") == APIKEY_TOKEN_FOREIGN, "prefix must be followed by _");
	check(classify("ak_live_short") == APIKEY_TOKEN_MALFORMED, "short body is malformed");
	check(classify("ak_Live_0123456789012345678901234567890123456789") == APIKEY_TOKEN_MALFORMED,
		  "uppercase environment is malformed");
	check(classify("ak__0123456789012345678901234567890123456789") == APIKEY_TOKEN_MALFORMED,
		  "empty environment is malformed");

	/* every single-character change breaks the checksum */
	for (size_t i = 8; i < len; i++)
	{
		bool		caught = true;

		for (const char *c = "0aZ9"; *c; c++)
		{
			strcpy(bad, tok);
			if (bad[i] == *c)
				continue;
			bad[i] = *c;
			caught &= classify(bad) == APIKEY_TOKEN_MALFORMED;
		}
		if (!caught)
		{
			check(false, "single-character change is caught by the checksum");
			return;
		}
	}
	check(true, "single-character change is caught by the checksum");

	strcpy(bad, tok);
	bad[10] = '-';
	check(classify(bad) == APIKEY_TOKEN_MALFORMED, "non-base62 body is malformed");
	strcpy(bad, tok);
	bad[len - 1] = '\0';
	check(classify(bad) == APIKEY_TOKEN_MALFORMED, "truncated token is malformed");
	check(apikey_token_classify(tok, len, "zz") == APIKEY_TOKEN_FOREIGN,
		  "our token under another configured prefix is foreign");
}

static void
test_unwrap(void)
{
	const char *tok;
	size_t		len;

	apikey_token_unwrap("Bearer abc", 10, &tok, &len);
	check(len == 3 && strncmp(tok, "abc", 3) == 0, "Bearer scheme is stripped");
	apikey_token_unwrap("  bEaReR \t abc  ", 16, &tok, &len);
	check(len == 3 && strncmp(tok, "abc", 3) == 0, "scheme is case-insensitive, blanks ignored");
	apikey_token_unwrap("Bearerabc", 9, &tok, &len);
	check(len == 9, "Bearer without a blank is part of the token");
	apikey_token_unwrap("   ", 3, &tok, &len);
	check(len == 0, "blanks only give an empty token");
	apikey_token_unwrap("Bearer", 6, &tok, &len);
	check(len == 0, "Bearer alone gives an empty token");
}

static void
test_names_and_compare(void)
{
	uint8		a[32] = {1, 2, 3};
	uint8		b[32] = {1, 2, 3};
	uint8		h[32];
	const char *err;

	check(apikey_valid_name("live", 4), "live is a valid environment");
	check(apikey_valid_name("a1234567890abcde", 16), "16 characters are allowed");
	check(!apikey_valid_name("a1234567890abcdef", 17), "17 characters are not");
	check(!apikey_valid_name("1live", 5), "must start with a letter");
	check(!apikey_valid_name("li-ve", 5), "no punctuation");
	check(!apikey_valid_name("", 0), "not empty");
	check(apikey_equal_ct(a, b, 32), "equal buffers compare equal");
	b[31] = 9;
	check(!apikey_equal_ct(a, b, 32), "last byte difference is found");
	check(apikey_sha256("abc", 3, h, &err) && h[0] == 0xba && h[1] == 0x78 && h[31] == 0xad,
		  "sha256 of abc matches the FIPS 180-2 vector");
}

static void
test_scopes(void)
{
	check(scope_ok("documents:read"), "resource:action parses");
	check(scope_ok("*"), "bare * parses");
	check(scope_ok("docs.v2-beta_x:read"), "[a-z0-9_.-] allowed");
	check(scope_ok("*:read") && scope_ok("documents:*"), "wildcard on either side");
	check(!scope_ok("documents"), "missing action");
	check(!scope_ok("documents:"), "empty action");
	check(!scope_ok(":read"), "empty resource");
	check(!scope_ok("Documents:read"), "uppercase rejected");
	check(!scope_ok("docs:read:write"), "second colon rejected");
	check(!scope_ok("docs:re ad"), "blank rejected");
	check(!scope_ok("do*cs:read"), "* only alone");
	check(!scope_ok(""), "empty rejected");

	check(covers("documents:read", "documents:read"), "exact match covers");
	check(!covers("documents:read", "documents:write"), "other action not covered");
	check(!covers("documents:read", "plugins:read"), "other resource not covered");
	check(covers("documents:*", "documents:delete"), "action wildcard covers");
	check(covers("*:read", "plugins:read"), "resource wildcard covers");
	check(covers("*", "anything:at_all"), "bare * covers all");
	check(!covers("documents:read", "documents:*"), "required * needs a * grant");
	check(covers("documents:*", "documents:*"), "* grant covers required *");
	check(!covers("documents:*", "*"), "documents:* does not cover *:*");
}

/* The sorted scope set answers exactly as comparing every pair does. */
static void
test_scope_set(void)
{
	static const char *const pool[] = {
		"documents:read", "documents:write", "documents:*", "plugins:execute",
		"*:read", "*", "a:b", "a:*", "*:b", "zz.top-1:x_y"
	};
	const int	npool = sizeof(pool) / sizeof(pool[0]);
	unsigned int seed = 12345;
	int			disagreements = 0;

	for (int round = 0; round < 2000; round++)
	{
		ApikeyScope granted[8];
		ApikeyScope required;
		int			ng = 0;
		bool		pairwise = false;

		seed = seed * 1103515245 + 12345;
		for (int i = 0; i < (int) (seed >> 16) % 8; i++)
		{
			const char *g = pool[(seed >> (i + 3)) % npool];

			apikey_scope_parse(g, strlen(g), &granted[ng++]);
		}
		seed = seed * 1103515245 + 12345;
		apikey_scope_parse(pool[(seed >> 16) % npool], strlen(pool[(seed >> 16) % npool]), &required);
		for (int i = 0; i < ng; i++)
			pairwise |= apikey_scope_covers(&granted[i], &required);
		apikey_scope_set_sort(granted, ng);
		if (apikey_scope_set_covers(granted, ng, &required) != pairwise)
			disagreements++;
	}
	check(disagreements == 0, "sorted scope set agrees with pairwise matching (2000 random sets)");
}

/* Fixed rate-limit windows (ratewindow.c). */
static void
test_rate_window(void)
{
	const int64_t hour = INT64_C(3600000000);
	ApikeyWindow w = {0, 0, 0};
	ApikeyWindowAnswer a;
	int64_t		t = 10 * hour + 123;

	check(apikey_window_start(t, hour) == 10 * hour, "windows align to multiples of their length");
	check(apikey_window_start(-1, hour) == -hour, "... also before the epoch");
	a = apikey_window_admit(&w, 2, hour, t, true);
	check(a.admitted && a.remaining == 1 && a.reset_at == 11 * hour,
		  "first request admitted, one left, reset at the end of the window");
	a = apikey_window_admit(&w, 2, hour, t + 1, false);
	check(a.admitted && a.remaining == 1 && w.count == 1, "looking uses no quota");
	a = apikey_window_admit(&w, 2, hour, t + 2, true);
	check(a.admitted && a.remaining == 0, "second request admitted, none left");
	a = apikey_window_admit(&w, 2, hour, t + 3, true);
	check(!a.admitted && a.remaining == 0 && w.count == 2, "third refused, refusal uses nothing");
	check(!apikey_window_expired(&w, 11 * hour - 1), "the window runs until its end");
	check(apikey_window_expired(&w, 11 * hour), "... and is over at its end");
	a = apikey_window_admit(&w, 2, hour, 11 * hour, true);
	check(a.admitted && a.remaining == 1 && w.start == 11 * hour, "a new window starts afresh");
	a = apikey_window_admit(&w, 2, 2 * hour, 11 * hour + 5, true);
	check(a.admitted && a.remaining == 1 && w.usec == 2 * hour,
		  "a changed window length starts a new window");
}

int
main(void)
{
	unit_crc_table_init();
	test_crc_and_base62();
	test_generate();
	test_classify();
	test_unwrap();
	test_names_and_compare();
	test_scopes();
	test_scope_set();
	test_rate_window();
	printf("1..%d\n", unit_count);
	return unit_failed == 0 ? 0 : 1;
}
