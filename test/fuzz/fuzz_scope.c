/*
 * fuzz_scope.c
 *		libFuzzer harness for scope parsing and matching (src/scope.c):
 *		scope text comes from callers of apikey_create, apikey_verify and
 *		apikey_scope_matches.
 *
 *		Compared with a reference written here from the contract
 *		(CONTRACT.md, "Scopes"):
 *
 *		- a scope is "resource:action", each side [a-z0-9_.-]+ or "*";
 *		  a bare "*" means "*:*"; empty or longer than APIKEY_MAX_SCOPE_LEN
 *		  bytes is invalid;
 *		- granted g covers required r iff (g.resource is "*" or equal) and
 *		  (g.action is "*" or equal); a "*" on the required side is matched
 *		  literally.
 *
 *		The whole input is parsed as one scope; then it is split at '\n'
 *		into up to 16 scopes, each parsed, and every (granted, required)
 *		pair of valid ones is matched.  Checked:
 *
 *		- apikey_scope_parse accepts exactly what the reference accepts and
 *		  returns the same resource and action, as slices of the input;
 *		- apikey_scope_part_valid agrees with the reference on both sides
 *		  and on arbitrary slices;
 *		- format "resource:action" -> parse gives back the same parts;
 *		- apikey_scope_covers agrees with the reference for every pair, is
 *		  reflexive, "*" covers everything, and covering is transitive (on
 *		  the first 8 scopes);
 *		- apikey_scope_set_sort permutes the set, and apikey_scope_set_covers
 *		  on the sorted set (all valid scopes, and the first half) answers
 *		  "does some scope of the set cover r" like the reference, for every
 *		  scope r and its variants with "*" as resource and/or action.
 *
 *		Set APIKEY_FUZZ_TRACE=1 to print every parse (for running single
 *		inputs).  Scope texts are handed over as exactly sized heap copies, so
 *		AddressSanitizer reports any read past them.
 */
#include "postgres_fe.h"

#include "scope.h"

#include "fuzz_support.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------
 * Reference implementation, from the contract alone.
 * ------------------------------------------------------------------------
 */
#define REF_MAX_SCOPE	255

typedef struct RefScope
{
	char		resource[REF_MAX_SCOPE + 1];
	char		action[REF_MAX_SCOPE + 1];
	size_t		resource_len;
	size_t		action_len;
} RefScope;

static bool
ref_part(const unsigned char *s, size_t n)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyz0123456789_.-";

	if (n == 1 && s[0] == '*')
		return true;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(allowed, s[i]) == NULL)
			return false;
	return true;
}

static bool
ref_parse(const unsigned char *t, size_t n, RefScope *out)
{
	size_t		colons = 0;
	size_t		at = 0;

	if (n == 0 || n > REF_MAX_SCOPE)
		return false;
	if (n == 1 && t[0] == '*')
	{
		strcpy(out->resource, "*");
		strcpy(out->action, "*");
		out->resource_len = out->action_len = 1;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		if (t[i] == ':')
		{
			colons++;
			at = i;
		}
	if (colons != 1)
		return false;
	if (!ref_part(t, at) || !ref_part(t + at + 1, n - at - 1))
		return false;
	memcpy(out->resource, t, at);
	out->resource_len = at;
	memcpy(out->action, t + at + 1, n - at - 1);
	out->action_len = n - at - 1;
	return true;
}

static bool
ref_side_covers(const char *g, size_t glen, const char *r, size_t rlen)
{
	if (glen == 1 && g[0] == '*')
		return true;
	return glen == rlen && memcmp(g, r, glen) == 0;
}

static bool
ref_covers(const RefScope *g, const RefScope *r)
{
	return ref_side_covers(g->resource, g->resource_len, r->resource, r->resource_len) &&
		ref_side_covers(g->action, g->action_len, r->action, r->action_len);
}

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------
 */
static size_t stat_parsed;
static size_t stat_valid;
static size_t stat_pairs;
static size_t stat_covered;
static size_t stat_set_checks;
static bool trace;

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------
 */
static bool
same_part(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * Parse text (n bytes) with the C code and the reference; they must agree.
 * On success, *sc points into the caller's copy *keep (freed by the
 * caller) and *ref holds the reference's parts.
 */
static bool
check_parse(const uint8_t *text, size_t n, ApikeyScope *sc, RefScope *ref,
			char **keep)
{
	char	   *t = exact_copy(text, n);
	bool		got;
	bool		want;

	stat_parsed++;
	memset(sc, 0, sizeof(*sc));
	got = apikey_scope_parse(t, n, sc);
	want = ref_parse(text, n, ref);
	if (trace)
	{
		dump("scope", text, n);
		dump_flush();
		fprintf(stderr, "    %s (reference %s)\n", got ? "valid" : "invalid",
				want ? "valid" : "invalid");
	}
	if (got != want)
	{
		dump("scope", text, n);
		fail("apikey_scope_parse = %s, reference says %s",
			 got ? "valid" : "invalid", want ? "valid" : "invalid");
	}
	if (!got)
	{
		free(t);
		*keep = NULL;
		return false;
	}
	stat_valid++;

	/* the parts are slices of the text, and the reference's parts */
	if (sc->resource < t || sc->resource + sc->resource_len > t + n ||
		sc->action < t || sc->action + sc->action_len > t + n)
	{
		dump("scope", text, n);
		fail("parsed parts are not inside the scope text");
	}
	if (!same_part(sc->resource, sc->resource_len, ref->resource, ref->resource_len) ||
		!same_part(sc->action, sc->action_len, ref->action, ref->action_len))
	{
		dump("scope", text, n);
		dump("C resource", sc->resource, sc->resource_len);
		dump("C action", sc->action, sc->action_len);
		dump("reference resource", ref->resource, ref->resource_len);
		dump("reference action", ref->action, ref->action_len);
		fail("parsed parts differ from the reference");
	}
	if (!apikey_scope_part_valid(sc->resource, sc->resource_len) ||
		!apikey_scope_part_valid(sc->action, sc->action_len))
		fail("a parsed part is not a valid part");

	/* format -> parse round trip */
	{
		size_t		flen = sc->resource_len + 1 + sc->action_len;
		char	   *f = malloc(flen);
		ApikeyScope again;

		memcpy(f, sc->resource, sc->resource_len);
		f[sc->resource_len] = ':';
		memcpy(f + sc->resource_len + 1, sc->action, sc->action_len);
		if (flen <= APIKEY_MAX_SCOPE_LEN)
		{
			if (!apikey_scope_parse(f, flen, &again) ||
				!same_part(again.resource, again.resource_len, sc->resource, sc->resource_len) ||
				!same_part(again.action, again.action_len, sc->action, sc->action_len))
			{
				dump("scope", text, n);
				dump("formatted", f, flen);
				fail("format -> parse does not give back the same parts");
			}
		}
		else if (!(n == 1 && text[0] == '*'))
			fail("a valid scope formats to more than %d bytes", APIKEY_MAX_SCOPE_LEN);
		free(f);
	}
	*keep = t;
	return true;
}

static void
check_part(const uint8_t *p, size_t n)
{
	char	   *c = exact_copy(p, n);

	if (apikey_scope_part_valid(c, n) != ref_part(p, n))
	{
		dump("part", p, n);
		fail("apikey_scope_part_valid differs from the reference");
	}
	free(c);
}

/*
 * apikey_scope_part_valid on a piece of the input, and on what is before
 * its first colon and after its first and last colons.
 */
static void
check_parts(const uint8_t *p, size_t n)
{
	const uint8_t *first = memchr(p, ':', n);
	const uint8_t *last = first;

	check_part(p, n);
	if (first == NULL)
		return;
	for (const uint8_t *q = first; q < p + n; q++)
		if (*q == ':')
			last = q;
	check_part(p, first - p);
	check_part(first + 1, p + n - first - 1);
	check_part(last + 1, p + n - last - 1);
}

#define MAX_SCOPES 16

static RefScope *
ref_from(const ApikeyScope *sc, RefScope *out)
{
	memcpy(out->resource, sc->resource, sc->resource_len);
	out->resource_len = sc->resource_len;
	memcpy(out->action, sc->action, sc->action_len);
	out->action_len = sc->action_len;
	return out;
}

/*
 * apikey_scope_set_sort / apikey_scope_set_covers on the first m scopes:
 * the sort is a permutation, and the set covers a required scope iff one of
 * its scopes does (reference), for every scope and its "*" variants.
 */
static void
check_set(const ApikeyScope *sc, const RefScope *ref, int n, int m)
{
	ApikeyScope *set = malloc(sizeof(ApikeyScope) * m);
	RefScope   *want_ref = malloc(sizeof(RefScope));

	memcpy(set, sc, sizeof(ApikeyScope) * m);
	apikey_scope_set_sort(set, m);
	for (int i = 0; i < m; i++)
	{
		int			in_set = 0;
		int			in_orig = 0;

		for (int j = 0; j < m; j++)
		{
			in_set += set[j].resource == sc[i].resource && set[j].action == sc[i].action &&
				set[j].resource_len == sc[i].resource_len && set[j].action_len == sc[i].action_len;
			in_orig += sc[j].resource == sc[i].resource && sc[j].action == sc[i].action &&
				sc[j].resource_len == sc[i].resource_len && sc[j].action_len == sc[i].action_len;
		}
		if (in_set != in_orig)
			fail("apikey_scope_set_sort(%d scopes) is not a permutation", m);
	}

	for (int r = 0; r < n; r++)
	{
		for (int variant = 0; variant < 4; variant++)
		{
			ApikeyScope req = sc[r];
			bool		want = false;
			bool		got;

			if (variant & 1)
			{
				req.resource = "*";
				req.resource_len = 1;
			}
			if (variant & 2)
			{
				req.action = "*";
				req.action_len = 1;
			}
			ref_from(&req, want_ref);
			for (int g = 0; g < m && !want; g++)
				want = ref_covers(&ref[g], want_ref);
			got = apikey_scope_set_covers(set, m, &req);
			stat_set_checks++;
			if (got != want)
			{
				for (int g = 0; g < m; g++)
				{
					dump("granted resource", ref[g].resource, ref[g].resource_len);
					dump("granted action", ref[g].action, ref[g].action_len);
				}
				dump("required resource", req.resource, req.resource_len);
				dump("required action", req.action, req.action_len);
				fail("apikey_scope_set_covers(%d scopes) = %d, reference %d", m, got, want);
			}
		}
	}
	free(want_ref);
	free(set);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *s = getenv("APIKEY_FUZZ_TRACE");

	fuzz_support_init();
	trace = s != NULL && strcmp(s, "1") == 0;
	return 0;
}

static void
print_stats(void)
{
	fprintf(stderr, "fuzz_scope: %zu scopes parsed, %zu valid; %zu pairs matched, %zu covered; "
			"%zu set lookups\n",
			stat_parsed, stat_valid, stat_pairs, stat_covered, stat_set_checks);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ApikeyScope sc[MAX_SCOPES];
	RefScope   *ref = malloc(sizeof(RefScope) * MAX_SCOPES);
	char	   *keep[MAX_SCOPES];
	int			n = 0;
	static bool registered = false;

	if (!registered)
	{
		atexit(print_stats);
		registered = true;
	}
	fuzz_set_input("fuzz_scope", data, size);

	/* the whole input as one scope */
	{
		ApikeyScope one;
		char	   *k;

		if (check_parse(data, size, &one, &ref[0], &k))
			free(k);
	}

	/* the input as '\n'-separated scopes */
	for (size_t start = 0; start <= size && n < MAX_SCOPES;)
	{
		const uint8_t *nl = memchr(data + start, '\n', size - start);
		size_t		end = nl ? (size_t) (nl - data) : size;

		check_parts(data + start, end - start);
		if (check_parse(data + start, end - start, &sc[n], &ref[n], &keep[n]))
			n++;
		start = end + 1;
	}

	for (int g = 0; g < n; g++)
	{
		ApikeyScope all;
		RefScope	ref_all;
		char	   *k;

		/* reflexive, and "*" covers everything */
		if (!apikey_scope_covers(&sc[g], &sc[g]))
			fail("scope %d does not cover itself", g);
		check_parse((const uint8_t *) "*", 1, &all, &ref_all, &k);
		if (!apikey_scope_covers(&all, &sc[g]))
			fail("\"*\" does not cover scope %d", g);
		free(k);

		for (int r = 0; r < n; r++)
		{
			bool		got = apikey_scope_covers(&sc[g], &sc[r]);

			stat_pairs++;
			stat_covered += got;
			if (got != ref_covers(&ref[g], &ref[r]))
			{
				dump("granted resource", ref[g].resource, ref[g].resource_len);
				dump("granted action", ref[g].action, ref[g].action_len);
				dump("required resource", ref[r].resource, ref[r].resource_len);
				dump("required action", ref[r].action, ref[r].action_len);
				fail("apikey_scope_covers(scope %d, scope %d) = %d, reference %d",
					 g, r, got, !got);
			}
			/* transitivity over the first 8 scopes (cubic: kept small) */
			if (!got || g >= 8 || r >= 8)
				continue;
			for (int t = 0; t < Min(n, 8); t++)
				if (apikey_scope_covers(&sc[r], &sc[t]) &&
					!apikey_scope_covers(&sc[g], &sc[t]))
					fail("covering is not transitive: %d covers %d covers %d", g, r, t);
		}
	}

	/* the sorted-set matcher, on all valid scopes and on the first half */
	check_set(sc, ref, n, n);
	check_set(sc, ref, n, n / 2);

	for (int i = 0; i < n; i++)
		free(keep[i]);
	free(ref);
	return 0;
}
